"""Issue #31: one verdict vocabulary (pass / warn / held / accepted), nothing passes silently, acceptance names
the product, promote obeys the verdict, one verdict per camera, spectrograph and run, and shipped limits with
real sources only.

The workflow tests run b1's bias of run1 on the demo (one camera, one epoch) under limits files that make
the same product warn or red, in turn (module-scoped: each test continues from the one before).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pfscalib.job import gate, metrics
from pfscalib.plan.limits import limits_note, load_limits, shipped_limits

from conftest import PROJECT, run
from helpers import snakemake, use_limits, workdir_config

BIAS = "results/certified/run1/bias/b1.json"
HELD = "results/held/run1/bias/b1.json"
# the sources a shipped limit may cite: published rules and real measurements (pfs-real-site.md)
REAL_SOURCES = ("test_weekly", "drp_qa", "cp_verify", "DMTN-101", "drp_pfs_data", "drp_doc", "camera.yaml",
                "drp_stella")  # fmt: skip


# ------------------------------------------------------------------ static: limits and the gate
def test_shipped_limits_cite_no_demo_source():
    """Every shipped metric has a source, none cites the demo; every fixed bound cites a real rule or
    measurement; the nominal read noise is the real detectors' (electrons)."""
    text = Path(shipped_limits()).read_text()
    shipped = yaml.safe_load(text)
    for name, spec in shipped["metrics"].items():
        assert spec["source"] and "demo" not in spec["source"].lower(), (name, spec["source"])
        if {"max", "min", "arms"} & set(spec):
            assert any(s in spec["source"] for s in REAL_SOURCES), (name, spec["source"])
        assert spec.get("unit", "") not in ("ADU", "ADU/s"), name
    assert "demo" not in text.lower()
    assert 3.2 <= shipped["nominal"]["read_noise"]["default"] <= 3.6  # e-, obs_pfs camera.yaml
    # the demo's own file keeps what does not transfer (ADU, demo-scaled bounds)
    demo = load_limits(str(PROJECT / "config/limits-demo.yaml"))
    assert demo["nominal"]["read_noise"]["default"] == 4.0
    assert {"dark.current", "fiberProfiles.width_max", "fiberNorms.min"} <= {
        n for n, s in demo["metrics"].items() if "max" in s or "min" in s
    }


def test_a_site_without_limits_is_told_which_it_runs_on():
    """One line at the run's start (Snakemake's onstart) when the config sets no `limits:`; none otherwise."""
    assert shipped_limits() in limits_note(None) and "no `limits:`" in limits_note(None)
    assert limits_note("config/limits-demo.yaml") == ""
    onstart = (PROJECT / "rules/common.smk").read_text()
    assert 'limits_note(WF.config.get("limits"))' in onstart


def test_a_metric_that_cannot_be_measured_holds_the_product():
    """The bootstrap numbers exist only if the task's log lines were captured, the detectorMap's only with
    detectorMapLines: without them the product is red (before #31 yellow, and certified)."""
    limits = load_limits()
    rules = gate.judge(metrics.bootstrap_metrics([]), limits, "bootstrap", "r")
    assert gate.verdict(rules) == "red"
    assert "bootstrap.matched_fraction not measured" in gate.failing(rules)
    rules = gate.judge({}, limits, "detectorMap", "b")
    assert gate.verdict(rules) == "red"
    # an optional metric (RESERVED lines: a fit may reserve none) lacking alone does not hold the map
    measured = {"detectorMap.min_lines": 20, "detectorMap.max_fiber_median": 0.001, "detectorMap.max_fiber_rms": 0.01}
    rules = gate.judge(measured, limits, "detectorMap", "b")
    assert gate.verdict(rules) == "green"
    assert "detectorMap.reserved_rms not measured (optional)" in [r["rule"] for r in rules]


# ------------------------------------------------------------------ the workflow: b1's bias, warned, held, accepted
@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    workdir = workdir_config(tmp_path_factory.mktemp("verdicts"), cameras=["b1"], epochs=("run1",))
    snakemake(workdir, BIAS)
    return workdir


def status(workdir: Path, fmt: str = "json") -> str:
    return run(["pfscalib", "status", "--config", "config/config.yaml", "--format", fmt], cwd=workdir,
               check=False).stdout  # fmt: skip


def rows(workdir: Path) -> tuple[dict, dict]:
    """(step, camera) -> product row; (scope, name) -> roll-up verdict."""
    records = json.loads(status(workdir))
    products = {(r["step"], r["camera"]): r for r in records if r["scope"] == "product"}
    roll = {(r["scope"], r["camera"]): r["verdict"] for r in records if r["scope"] != "product"}
    return products, roll


def promote(workdir: Path, *args: str):
    argv = ["pfscalib", "promote", "--ticket", "PIPE2D-1", "--tag", "t", "--steps", "bias", "--cameras", "b1", *args]
    return run(argv, cwd=workdir, check=False)


def test_a_warning_shows_as_warn_in_status_and_promote_asks_the_flag(workdir):
    use_limits(workdir, "limits-warn.yaml", "bias.noise_ratio", {"yellow": 0.01, "red": 100})
    snakemake(workdir, BIAS)
    quality = json.loads((workdir / BIAS).read_text())["quality"]
    assert quality["verdict"] == "warn" and quality["level"] == "yellow"
    products, roll = rows(workdir)
    bias = products[("bias", "b1")]
    assert bias["verdict"] == "warn" and bias["status"].startswith("warn: bias.noise_ratio"), bias
    assert roll[("camera", "b1")] == roll[("spectrograph", "sp1")] == roll[("run", "run1")].split()[0] == "incomplete"
    table = status(workdir, "table")
    b1 = next(ln for ln in table.splitlines() if ln.startswith("run1") and " b1 " in f" {ln} ")
    assert re.split(r"\s{2,}", b1)[2] == "warn", table
    assert " ok" not in f" {table}"
    refused = promote(workdir)
    assert refused.returncode != 0
    lines = [ln for ln in refused.stderr.splitlines() if ln.startswith("pfscalib: promote:")]
    assert len(lines) == 1 and "run1/bias/b1 warn" in lines[0] and "--accept-warnings" in lines[0], refused.stderr
    flagged = promote(workdir, "--accept-warnings")
    assert "refused by the quality gate" not in flagged.stderr, flagged.stderr


def test_a_held_product_prints_its_accept_entry_and_is_listed_in_holds_tsv(workdir):
    use_limits(workdir, "limits-red.yaml", "bias.noise_ratio", {"yellow": 0.005, "red": 0.01})
    # with the profiles' retries: a hold is a verdict, judged once and not started again (failure classes)
    proc = snakemake(workdir, BIAS, "--retries", "2", "--show-failed-logs", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    attempts = out.count("Error in rule bias:")
    judged = len(re.findall(r"held bias b1: bias\.noise_ratio", out))
    restarts = out.count("Trying to restart job")
    assert (attempts, judged, restarts) == (1, 1, 0), out[-4000:]
    # the same command again: the standing verdict ends the job at once, also not retried
    again = snakemake(workdir, BIAS, "--retries", "2", "--show-failed-logs", check=False)
    again = again.stdout + again.stderr
    assert again.count("a verdict, not retried") == 1 and "Trying to restart job" not in again, again[-3000:]
    record = json.loads((workdir / HELD).read_text())
    assert record["verdict"] == "held"
    entry = f'- {{epoch: run1, step: bias, camera: b1, datasetId: "{record["datasetId"]}", '
    assert record["accept"].startswith(entry)
    pastes = [ln for ln in proc.stderr.splitlines() if "add to accept: " in ln]
    assert len(pastes) == 1 and pastes[0].endswith(record["accept"]), proc.stderr
    holds = (workdir / "results/qa/holds.tsv").read_text().splitlines()
    header, *body = [ln.split("\t") for ln in holds]
    row = dict(zip(header, body[0], strict=True))
    assert len(body) == 1 and row["metric"] == "bias.noise_ratio" and row["limit"] == "max red 0.01"
    assert float(row["value"]) > 0.01 and record["accept"] in row["what_to_do"] and "snakemake -f" in row["what_to_do"]
    products, roll = rows(workdir)
    assert products[("bias", "b1")]["verdict"] == "held"
    assert roll[("spectrograph", "sp1")] == roll[("run", "run1")] == "held"
    summary = run(["pfscalib", "summary", "--config", "config/config.yaml"], cwd=workdir, check=False).stdout
    assert "run1 [2025-03-01, 2025-04-01): held (sp1 held);" in summary, summary
    refused = promote(workdir)
    assert "run1/bias/b1 held" in refused.stderr and refused.returncode != 0


def test_an_accepted_product_rebuilt_red_is_held_again(workdir):
    held = json.loads((workdir / HELD).read_text())
    entry = {"epoch": "run1", "step": "bias", "camera": "b1", "datasetId": held["datasetId"],
             "reason": "known noisy (test)", "by": "verdict-test"}  # fmt: skip
    assert yaml.safe_load(held["accept"])[0] == {**entry, "reason": "<why it is good enough>", "by": "<you>"}
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    (workdir / "config/config.yaml").write_text(yaml.safe_dump({**config, "accept": [entry]}))
    snakemake(workdir, BIAS)
    sentinel = json.loads((workdir / BIAS).read_text())
    assert sentinel["datasetId"] == held["datasetId"] and sentinel["quality"]["verdict"] == "accepted"
    assert not (workdir / HELD).exists()
    products, _ = rows(workdir)
    assert products[("bias", "b1")]["verdict"] == "accepted"
    # rebuilt (forced: a new dataset id), red again: the acceptance named the old product
    proc = snakemake(workdir, "-f", BIAS, check=False)
    assert proc.returncode != 0
    again = json.loads((workdir / HELD).read_text())
    assert again["datasetId"] != held["datasetId"] and again["verdict"] == "held"
    assert not (workdir / BIAS).exists()


def test_a_failure_retries_cannot_fix_is_not_run_again(tmp_path, monkeypatch):
    """pipe_base's exit codes tell a failure retries cannot fix (20: RepeatableQuantumError, 21:
    InvalidQuantumError) from a crash: the job records it, and a retry of the same build ends at once with the
    same status instead of running pipetask again; a crash (any other status) is retried."""
    import inspect

    from lsst.pipe.base import InvalidQuantumError, RepeatableQuantumError, mp_graph_executor

    from pfscalib.job import run as job
    from pfscalib.plan.contract import JobRequest
    from pfscalib.plan.records import write_json

    # the middleware facts the classes rest on (pinned lsst-pipe-base; fails loudly if they change)
    assert (RepeatableQuantumError.EXIT_CODE, InvalidQuantumError.EXIT_CODE) == (20, 21)
    assert 'f"Task {self} failed, exit code={exitcode}"' in inspect.getsource(mp_graph_executor)
    line = "lsst.pipe.base.mp_graph_executor ERROR: Task <isr dataId={arm: 'b'}> failed, exit code=21"
    assert job.QUANTUM_EXIT.search(line).group(1) == "21"

    state = tmp_path / "state.json"
    names = dict(repo="r", chain="c", dataset_type="bias", calib="k", step="bias", epoch="run1", arm="b")
    request = JobRequest(**names, begin_date="2025-03-01T00:00:00", state=str(state), sentinel=str(tmp_path / "s"))
    ident = {"command": ["pipetask", "run"], "needs": {}}
    for code, expected in ((21, 21), (20, 20), (1, 0)):  # 1: a crash, retried
        write_json(str(state), {"identity": ident, "run": "c/1", "status": "failed", "exit": code, "cause": "x"})
        assert job.standing_verdict(request, ident) == expected
    assert job.standing_verdict(request, {**ident, "needs": {"a": 1}}) == 0  # another build: runs
