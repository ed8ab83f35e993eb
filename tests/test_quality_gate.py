"""Issue #19: the quality gate between pipetask and certification.

One run on a demo with several defects at once (b1's biases noisy, r1's spectralOffset wrong, r2's darks noisy,
b2 clean; one epoch): each defect holds exactly that camera x step with the metric named, the clean camera goes
to the end of its chain, the run exits non-zero with a one-line summary, and an acceptance in the config certifies the
held bias with its reason. Then the candidate-vs-incumbent rule on b2's bias. Plus the static checks: no
workflow module imports the demo, and the metrics/QA code touches products only through the real API names.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml
from lsst.daf.butler import Butler

from pfscalib.job import butler as butlerops

from conftest import PROJECT, run
from helpers import calib_collection, set_config, snakemake, workdir_config

PACKAGE = PROJECT / "scripts/pfscalib"

# pfs-real-site.md section 6 (the real classes' Python API) and the getters of what those return
REAL_API = {
    "image", "mask", "variance", "array", "getMetadata",  # lsst.afw.image.ExposureF
    "getPlaneBitMask", "getMaskPlaneDict",  # lsst.afw.image.Mask (drp_stella pipelines/flat.py:278-279)
    "getFiberId", "getXCenter", "findPoint", "findWavelength", "getBBox",  # pfs.drp.stella.DetectorMap
    "getMinX", "getMaxX", "getMinY", "getMaxY",  # lsst.geom.Box2I
    "fiberId", "wavelength", "x", "y", "xErr", "yErr", "flux", "fluxErr", "flag", "status", "description",  # ArcLineSet
    "index", "profiles",  # FiberProfileSet[fiberId] -> FiberProfile
    "values",  # PfsFiberNorms
}  # fmt: skip
# the middleware's (daf_butler Butler, DatasetRef, ButlerLogRecords) and Python's own (str, dict, re.Match)
MIDDLEWARE = {"get", "get_dataset", "query_datasets", "run", "id", "message", "datasetType", "name", "dataId"}
PYTHON = {"items", "group", "finditer", "startswith", "removesuffix", "join", "append", "split", "read_text", "sum",
          "update", "splitlines", "__name__", "warning", "mkdir", "parse_args", "add_argument", "UUID", "rule", "level",
          "to_csv", "search", "fromkeys", "upper"}  # fmt: skip
# metrics.BootstrapLog's own fields (the parsed bootstrap log, not a product)
BOOTSTRAP_LOG = {"lines", "traces", "matched", "medians", "fits", "fitted", "fit_total"}
BOOTSTRAP_LOG |= {"worst_rms", "combined_rms", "median_dy"}
# argparse's namespace; steps.Step's
NAMESPACES = {"repo", "outdir", "sentinels", "drift", "table", "held_root", "not_built", "qa_plot", "limits", "trend"}
MATPLOTLIB = {"use", "imshow", "set_title", "set_xlabel", "set_ylabel", "set_xticks", "plot", "legend", "add_subplot",
              "axhline", "transAxes", "suptitle", "clf", "text", "tight_layout", "subplots_adjust",
              "savefig", "fill_between", "axes", "canvas", "colorbar", "draw", "get_text", "get_ticklabels",
              "set_label", "set_major_formatter", "set_xlim", "set_ylim", "xaxis", "yaxis", "bbox", "get_renderer",
              "get_window_extent", "height", "width", "x1", "y0", "remove", "set_position", "set_text", "texts",
              "get_figheight"}  # fmt: skip
# pfscalib.job.trend's own names (the drift panels' bands: numbers from the sentinels, not a product)
TREND = {"band", "DEFAULTS"}
# the limits file's keys QA reads (the units, the drift panels' fixed bounds) and the trend settings'
LIMITS_KEYS = {"metrics", "unit", "arms", "relative"}


def attribute_names(path: Path) -> set[str]:
    """Attributes the module reads on objects (not on imported modules such as np, plt, math, re)."""
    tree = ast.parse(path.read_text())
    modules = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}  # fmt: skip
    modules |= {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}  # fmt: skip
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id in modules):
            names.add(node.attr)
    return names


# The only string keys metrics/qa may look up (x["key"], x.get("key")): the workflow's own JSON records (the
# sentinel pfscalib writes, its quality record and acceptance; the held record), the metrics' own names
# ("<product>.<metric>", the dict metrics returns), and, on `table` only, the columns of metrics.line_residuals'
# own table of the ArcLineSet. A product is never a dict: dm["trace"] is not the real API.
SENTINEL_JSON = {"dataId", "arm", "spectrograph", "datasetId", "datasetType", "epoch", "step", "quality", "verdict",
                 "accepted", "reason", "by", "rules", "rule", "level", "metrics", "limit"}  # fmt: skip
HELD_JSON = {"epoch", "step", "unit", "failing"}
LINE_TABLE = {"fiberId", "x", "y", "wavelength", "residual", "snr", "group"}
METRIC_NAME = re.compile(r"[a-z][A-Za-z]*\.[a-z_]+")


def string_keys(path: Path) -> set[str]:
    """String constants the module looks up by key: `x["key"]` and `x.get("key", ...)`, as "receiver[key]"
    where the receiver is `table` (a line table's column) and as the bare key otherwise."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript):
            receiver, key = node.value, node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            receiver, key = node.func.value, node.args[0]
        else:
            continue
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            on_table = isinstance(receiver, ast.Name) and receiver.id == "table"
            keys.add(f"table[{key.value}]" if on_table else key.value)
    return keys


def test_no_workflow_module_imports_the_demo():
    offenders = []
    package = [p for p in PACKAGE.rglob("*.py") if "demo" not in p.parts]
    assert len(package) > 30
    for path in [*package, PROJECT / "Snakefile", *PROJECT.glob("rules/*.smk")]:
        text = path.read_text()
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and (
                    (node.module or "").startswith(("pfscalib.demo", "demo"))
                    or any(a.name == "demo" for a in node.names)
                ):
                    offenders.append(f"{path.name}:{node.lineno}")
                if isinstance(node, ast.Import) and any(a.name.startswith("pfscalib.demo") for a in node.names):
                    offenders.append(f"{path.name}:{node.lineno}")
        elif re.search(r"^\s*(from|import)\s+pfscalib\.demo", text, re.M):
            offenders.append(path.name)
    assert offenders == []


@pytest.mark.parametrize("module", ["job/metrics.py", "job/qa.py"])
def test_metrics_and_qa_use_only_the_real_api(module):
    """What QA and the gate call on objects: the real classes' names, the middleware's, and Python's/matplotlib's
    own (qa: axes methods); and the string keys it looks up (string_keys). A demo-only name (dm["trace"],
    dm.get("trace"), .residual, ...) would show up here."""
    used = attribute_names(PACKAGE / module)
    own = NAMESPACES | MATPLOTLIB | TREND if module == "job/qa.py" else BOOTSTRAP_LOG
    allowed = REAL_API | MIDDLEWARE | PYTHON | own
    assert used - allowed == set()
    keys = {k for k in string_keys(PACKAGE / module) if not METRIC_NAME.fullmatch(k)}
    assert keys - SENTINEL_JSON - HELD_JSON - LIMITS_KEYS - {f"table[{c}]" for c in LINE_TABLE} == set()


def test_the_key_walk_sees_a_product_read_as_a_dict(tmp_path):
    """The check itself: a subscript or .get with a demo-only key on a product shows up; the line table's
    columns count only on `table`."""
    module = tmp_path / "m.py"
    module.write_text('a = dm["trace"]\nb = dm.get("residual")\nc = table["residual"]\nd = out["bootstrap.rms"]\n')
    assert string_keys(module) == {"trace", "residual", "table[residual]", "bootstrap.rms"}


def test_malformed_limits_file_is_one_line_before_any_job(tmp_path):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    (workdir / "bad-limits.yaml").write_text(
        "version: 1\nmetrics:\n  bias.noise_ratio: {max: {yellow: 1.3}, source: x}\n"
    )
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["limits"] = "bad-limits.yaml"
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("pfscalib:")]
    assert lines == [
        "pfscalib: config/config.yaml: limits: bad-limits.yaml: "
        "metrics.bias.noise_ratio.max: 'red' is a required property"
    ]
    assert not (workdir / "results").exists()


# ------------------------------------------------------------------ one run, several defects
CAMERAS = ["b1", "r1", "b2", "r2"]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    workdir = workdir_config(tmp_path_factory.mktemp("gate"), cameras=CAMERAS, epochs=("run1",))
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    set_config(
        workdir,
        demo={**config["demo"], "faults": ["b1:bias-noise", "r2:dark-noise"]},
        spectralOffset={**config["spectralOffset"], "r1": -3},  # the truth is 6: 9 pixels off
    )
    # b2's bias from 4 frames (the others' from 5): its candidates below are measured against it
    (workdir / "visits/bias.tsv").write_text("epoch\tvisits\tcameras\nrun1\t100..104\tb1,r1,r2\nrun1\t100..103\tb2\n")
    proc = snakemake(workdir, "--keep-going", check=False)
    return workdir, proc


def held(workdir: Path) -> dict[str, dict]:
    return {str(p.relative_to(workdir / "results/held")): json.loads(p.read_text())
            for p in (workdir / "results/held").rglob("*.json")}  # fmt: skip


def test_each_defect_holds_exactly_its_camera_and_step(faulty_run):
    workdir, proc = faulty_run
    assert proc.returncode != 0
    records = held(workdir)
    assert sorted(records) == ["run1/bias/b1.json", "run1/bootstrap/r1.json", "run1/dark/r2.json"]
    assert any(r.startswith("bias.noise_ratio ") and "> red" in r for r in records["run1/bias/b1.json"]["failing"])
    # the demo's arcs carry its whole line list: a wrong offset shows in the lines matched (config/limits-demo.yaml)
    assert any(r.startswith("bootstrap.matched_fraction ") for r in records["run1/bootstrap/r1.json"]["failing"])
    assert any(r.startswith("dark.noise ") and "> red" in r for r in records["run1/dark/r2.json"]["failing"])
    summary = [ln for ln in proc.stderr.splitlines() if ln.startswith("pfscalib: held 3: ")]
    assert len(summary) == 1 and "run1/bias/b1 (bias.noise_ratio" in summary[0]
    assert "run1/bootstrap/r1 (bootstrap.matched_fraction" in summary[0] and "run1/dark/r2 (dark.noise" in summary[0]
    certified = workdir / "results/certified/run1"
    # nothing of a held product is certified, nothing downstream of it ran
    assert not (certified / "bias/b1.json").exists() and not (certified / "dark/b1.json").exists()
    assert not (certified / "bootstrap/r1.json").exists() and not (certified / "detectorMap/r1.json").exists()
    repo = Butler.from_config(str(workdir / "results/demo/repo"))
    assert not (certified / "dark/r2.json").exists() and not (certified / "flat/r2.json").exists()
    for step, camera, product in (
        ("bias", "b1", "bias"),
        ("bootstrap", "r1", "detectorMap_bootstrap"),
        ("dark", "r2", "dark"),
    ):
        data_id = {"arm": camera[0], "spectrograph": int(camera[1])}
        assert butlerops.certified(repo, calib_collection(step), product, data_id) == []
    # r1 up to its held step, and the clean camera to the end of its chain (fiberNorms b needs b1 too)
    assert all((certified / f"{s}/r1.json").exists() for s in ("bias", "dark", "flat"))
    for step in ("bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles"):
        sentinel = json.loads((certified / f"{step}/b2.json").read_text())
        assert sentinel["quality"]["verdict"] == "pass", (step, sentinel["quality"]["failing"])
    status = run(["pfscalib", "status", "--config", "config/config.yaml", "--format", "json"], cwd=workdir)
    rows = {(r["step"], r["camera"]): r["status"] for r in json.loads(status.stdout)}
    assert rows[("bias", "b1")].startswith("held: bias.noise_ratio")


def test_accepting_a_held_product_certifies_it_with_the_reason(faulty_run):
    workdir, _ = faulty_run
    reason = "b1 read noise known high this run (ticket PIPE2D-0000)"
    dataset_id = json.loads((workdir / "results/held/run1/bias/b1.json").read_text())["datasetId"]
    entry = {"epoch": "run1", "step": "bias", "camera": "b1", "datasetId": dataset_id, "reason": reason,
             "by": "gate-test"}  # fmt: skip
    set_config(workdir, accept=[entry])
    snakemake(workdir, "results/certified/run1/bias/b1.json")
    quality = json.loads((workdir / "results/certified/run1/bias/b1.json").read_text())["quality"]
    assert quality["verdict"] == "accepted" and quality["level"] == "red" and quality["accepted"]["reason"] == reason
    assert not (workdir / "results/held/run1/bias/b1.json").exists()


def test_a_worse_candidate_is_held_and_a_better_one_replaces_the_incumbent(faulty_run):
    """b2's bias (4 frames) is the incumbent; from 2 frames it is noisier by more than the margin: held, the
    incumbent stays certified; from 5 frames it is better and replaces it."""
    workdir, _ = faulty_run
    target = "results/certified/run1/bias/b2.json"
    incumbent = json.loads((workdir / target).read_text())
    repo = workdir / "results/demo/repo"

    def certified_ids() -> list[str]:
        certs = butlerops.certified(
            Butler.from_config(str(repo)), calib_collection("bias"), "bias", {"arm": "b", "spectrograph": 2}
        )
        return [str(c["ref"].id) for c in certs]

    table = workdir / "visits/bias.tsv"
    table.write_text("epoch\tvisits\tcameras\nrun1\t100..104\tb1,r1,r2\nrun1\t100..101\tb2\n")
    worse = snakemake(workdir, target, check=False)
    assert worse.returncode != 0
    record = json.loads((workdir / "results/held/run1/bias/b2.json").read_text())
    assert any("bias.noise" in r and "vs incumbent" in r for r in record["failing"]), record["failing"]
    assert record["incumbent"]["datasetId"] == incumbent["datasetId"]
    assert certified_ids() == [incumbent["datasetId"]]
    table.write_text("epoch\tvisits\tcameras\nrun1\t100..104\tb1,r1,r2,b2\n")
    snakemake(workdir, target)
    better = json.loads((workdir / target).read_text())
    assert certified_ids() == [better["datasetId"]] != [incumbent["datasetId"]]
    assert better["quality"]["incumbent"]["datasetId"] == incumbent["datasetId"]
    assert better["quality"]["metrics"]["bias.noise"] < better["quality"]["incumbent"]["metrics"]["bias.noise"]
