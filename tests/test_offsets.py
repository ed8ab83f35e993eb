"""Issue #20: spectralOffset `auto`, proposed from the data by the site's own bootstrap task over a grid.

- the site example's dry run lists the scan jobs with the commands a site would run;
- on a demo repository whose true offsets the test draws at random (four cameras over +-150 px, one beyond
  100, plus a camera whose arcs carry no lines), `pfscalib propose-offsets` (the grid in one process per
  camera) recovers every offset within 1 px, refuses the camera with no usable arc in one line, and the
  guide's single -10 fits at least one camera badly;
- the workflow (one job per grid point) bootstraps a camera with its proposal (provenance in the sentinel,
  scan runs removed after certification, the picture in the report) while a refused camera is not
  bootstrapped and the other proceeds.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from lsst.daf.butler import Butler

from conftest import PROJECT, run
from helpers import snakemake, workdir_config
from reportcheck import check_pictures_render, png, report_results

SITE_AUTO = ["b1", "m1", "n2"]
DEMO_SEARCH = yaml.safe_load((PROJECT / "config/config.yaml").read_text())["offset_search"]
NO_ISR_CALIBS = ["isr:doBias=False", "isr:doDark=False", "isr:doFlat=False"]


def test_site_dry_run_lists_the_scan_jobs_a_site_would_run(tmp_path, monkeypatch):
    from pfscalib.plan.workflow import Workflow

    # the site example of a run that uses m (b, m, n x 4)
    config = yaml.safe_load((PROJECT / "config/pfs.example-m.yaml").read_text())
    config["spectralOffset"].update({c: "auto" for c in SITE_AUTO})
    config["visits"] = {k: str(PROJECT / v) for k, v in config["visits"].items()}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n", "-p", "--configfile", "site.yaml", cores=16, rerun_incomplete=False)
    out = out.stdout + out.stderr
    monkeypatch.chdir(PROJECT)
    wf = Workflow(config)
    commands = [shlex.split(c) for c in re.findall(r"\((pfscalib scan-offset .*?) -j 1\)", out)]
    assert len(commands) == sum(len(wf.offset_grid(c)) for c in SITE_AUTO)
    # grid steps no coarser than matchRadius / dispersion: b 14, m 25, n 12 px, covering +-150
    assert {c: wf.offset_grid(c)[1] - wf.offset_grid(c)[0] for c in SITE_AUTO} == {"b1": 14, "m1": 25, "n2": 12}
    for camera in SITE_AUTO:
        grid = wf.offset_grid(camera)
        assert grid[0] <= -150 and grid[-1] >= 150
        mine = [c for c in commands if c[c.index("--camera") + 1] == camera]
        offsets = sorted(int(c[c.index("--offset") + 1]) for c in mine)
        assert offsets == grid
        for c in mine:
            pipetask = c[c.index("--") + 1 :]
            assert pipetask[:2] == ["pipetask", "run"]
            assert pipetask[pipetask.index("-p") + 1] == "$DRP_STELLA_DIR/pipelines/bootstrap.yaml#bootstrap"
            assert pipetask[pipetask.index("-i") + 1] == f"u/pfsuser/run18/bootstrapIsr/{camera}"
            assert pipetask[-1] == f"bootstrap:spectralOffset={c[c.index('--offset') + 1]}"
    assert len(re.findall(r"\(pfscalib pipetask .*bootstrap\.yaml#isr", out)) == len(SITE_AUTO)
    bootstraps = re.findall(r"\((pfscalib job .*?--step bootstrap .*?) -j \d+\)", out)
    with_proposal = [b for b in bootstraps if "--spectral-offset-from" in b]
    assert len(bootstraps) == 16 and len(with_proposal) == len(SITE_AUTO)
    assert all("bootstrap:spectralOffset" not in b.split(" -- ")[1] for b in with_proposal)
    assert all("-c bootstrap:spectralOffset=-10" in b for b in bootstraps if b not in with_proposal)


def test_a_per_camera_match_radius_sets_that_camera_s_search(monkeypatch):
    """Finding 9: a camera's (or arm's) own -c bootstrap:matchRadius=, as real sites set it (drp_pfs_data
    6769d28 detectorMap/bootstrap/notes.md: matchRadius 2, m3 4), sets that camera's capture range and grid
    step; the others keep offset_search's."""
    from pfscalib.plan.workflow import Workflow

    config = yaml.safe_load((PROJECT / "config/pfs.example-m.yaml").read_text())
    config["spectralOffset"].update({c: "auto" for c in ("b1", "m1", "m3", "n2")})
    bootstrap = config["steps"]["bootstrap"]
    bootstrap["camera_config"] = {"m3": ["bootstrap:matchRadius=4"], "b": ["bootstrap:matchRadius=2"]}
    monkeypatch.chdir(PROJECT)
    wf = Workflow(config)
    dispersion, default = wf.offset_search["dispersion"], wf.offset_search["matchRadius"]
    assert wf.capture_range("m3") == pytest.approx(4 / dispersion["m"])
    assert wf.capture_range("m1") == pytest.approx(default / dispersion["m"])
    assert wf.capture_range("b1") == pytest.approx(2 / dispersion["b"])
    assert wf.offset_grid("m3")[1] - wf.offset_grid("m3")[0] == int(4 / dispersion["m"])
    propose = shlex.split(wf.commands.propose("run18", "m3"))
    search = json.loads(propose[propose.index("--search") + 1])  # what the proposal job judges with
    assert search["capture"] == pytest.approx(4 / dispersion["m"])
    # a -c in the step's extra_args comes last on pipetask's command line, so it wins there too
    bootstrap["extra_args"] = ["-c", "bootstrap:matchRadius=3"]
    assert Workflow(config).capture_range("m3") == pytest.approx(3 / dispersion["m"])


def truth_offsets(cameras: list[str], seed: int) -> dict[str, float]:
    """Offsets over +-150 px, at least one beyond 100, drawn from a seeded generator."""
    rng = np.random.default_rng(seed)
    while True:
        offsets = rng.uniform(-150, 150, len(cameras)).round(1)
        if np.abs(offsets).max() > 100 and np.ptp(offsets) > 150:
            return dict(zip(cameras, map(float, offsets)))


def demo_config(workdir: Path, cameras: list[str], isr_calibs: bool = False, **changes) -> Path:
    """The demo config on one epoch, every camera auto; matchRadius 4.5 nm (below half the demo's line spacing)
    for a grid of 4 px (b) and 3 px (r). Unless isr_calibs, the ISR of the bootstrap pair takes none of the
    chain's calibrations (there is no chain: the scan is driven by hand)."""
    workdir_config(
        workdir,
        cameras=cameras,
        epochs=("run1",),
        spectralOffset={c: "auto" for c in cameras},
        steps={"bootstrap": {"config": [*([] if isr_calibs else NO_ISR_CALIBS), "bootstrap:matchRadius=4.5"]}},
        **changes,
    )
    return workdir / "config/config.yaml"


def test_auto_recovers_random_offsets_and_refuses_a_camera_without_arc_lines(tmp_path):
    from pfscalib.demo.make_repo import make_repo
    from pfscalib.job import butler as butlerops
    from pfscalib.job import gate, metrics
    from pfscalib.job.scan import run_point
    from pfscalib.plan.limits import load_limits
    from pfscalib.plan.workflow import Workflow

    cameras, unlit = ["b1", "r1", "b2", "r2"], "b3"
    truth = truth_offsets(cameras, seed=20)
    demo = make_repo(tmp_path / "results/demo/repo", (*cameras, unlit), {"run1": "2025-03-10T08:00:00"},
                     spectral_offsets=truth, unlit_arcs=(unlit,))  # fmt: skip
    config = demo_config(tmp_path, [*cameras, unlit])
    wf = Workflow(yaml.safe_load(config.read_text()))
    run(wf.commands.register(), cwd=tmp_path, check=True)  # the build's own collections, as before any job
    proc = run(["pfscalib", "propose-offsets", "--config", str(config), "--output", "snippet.yaml"], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    snippet = yaml.safe_load((tmp_path / "snippet.yaml").read_text())["spectralOffset"]
    expected = {c: demo.truth("run1", c).spectral_offset + demo.truth("run1", c).epoch.spectral_shift for c in cameras}
    assert snippet.keys() == set(cameras)
    for camera in cameras:
        assert abs(snippet[camera] - expected[camera]) <= 1.0, (camera, snippet[camera], expected[camera])
        proposal = json.loads((tmp_path / f"results/offsets/run1/{camera}/proposal.json").read_text())
        assert proposal["score"] >= 2 * proposal["runnerUpScore"]
        assert (tmp_path / f"results/offsets/run1/{camera}/proposal.png").stat().st_size > 10_000
    refusals = [line for line in proc.stderr.splitlines() if "refused" in line]
    assert len(refusals) == 1 and "of b3 (run1) refused" in refusals[0] and "no usable arc" in refusals[0]

    # The guide's one value for every camera: the same task at -10, judged by the quality gate (#19).
    butler = butlerops.open_butler(str(tmp_path / "results/demo/repo"))
    limits = load_limits(str(tmp_path / wf.config["limits"]))
    bad = []
    for camera in cameras:
        command = wf.commands.offset_scan_pipetask("run1", camera)
        overrides = [o.text() for o in command.overrides]
        node, quantum = butlerops.build_quantum(
            butler, command.pipeline, overrides, "bootstrap", list(command.inputs), command.where
        )  # fmt: skip
        _, messages = run_point(butler, node, quantum, "spectralOffset", -10)
        rules = gate.judge(metrics.bootstrap_metrics(messages), limits, "bootstrap", camera[0])
        if gate.verdict(rules) == "red":
            bad.append(camera)
    assert bad, "the gate passed the guide's -10 for every camera"


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    """The workflow with one job per grid point on a small range: b1 (true offset 4 px) and b2 whose arcs
    carry no lines. The chain before bootstrap (bias, dark, flat) is built for real by the same run, and the
    bootstrap ISR takes its calibrations, as in a site's run."""
    workdir = tmp_path_factory.mktemp("auto")
    demo_config(
        workdir,
        ["b1", "b2"],
        isr_calibs=True,
        demo={"enabled": True, "epochs": {"run1": "2025-03-10T08:00:00"}, "spectral_offsets": {"b1": 4.0},
              "unlit_arcs": ["b2"]},
        offset_search={**DEMO_SEARCH, "range": [-6, 8]},
        executables={"defineFiberProfilesInputs": "results/demo/repo/bin/defineFiberProfilesInputs.py"},
    )  # fmt: skip
    targets = [f"results/certified/run1/bootstrap/{c}.json" for c in ("b1", "b2")]
    proc = snakemake(workdir, "--keep-going", *targets, check=False)
    return workdir, proc


def test_workflow_bootstraps_with_the_proposal_and_refuses_a_camera_without_arc_lines(auto_run):
    from pfscalib.demo.make_repo import load_demo

    workdir, proc = auto_run
    assert proc.returncode != 0  # b2 refused
    for step in ("bias", "dark", "flat"):  # the chain before bootstrap was built and certified by the run
        upstream = json.loads((workdir / f"results/certified/run1/{step}/b1.json").read_text())
        assert upstream["step"] == step and upstream["quality"]["verdict"] == "pass"
    sentinel = json.loads((workdir / "results/certified/run1/bootstrap/b1.json").read_text())
    truth = load_demo(workdir / "results/demo/repo").truth("run1", "b1")
    true_offset = truth.spectral_offset + truth.epoch.spectral_shift  # what the simulation put on b1's arcs
    provenance = sentinel["spectralOffsetProposal"]
    assert abs(provenance["spectralOffset"] - true_offset) <= 1.0, (provenance, true_offset)
    assert provenance["score"] > 0 and provenance["runnerUpOffset"] is not None
    assert f"bootstrap:spectralOffset={provenance['spectralOffset']:g}" in sentinel["commands"][0]
    # the gate judged the map bootstrapped at the proposal, on the real bias/dark/flat, and passed it
    assert sentinel["quality"]["verdict"] == "pass", sentinel["quality"]
    assert not (workdir / "results/certified/run1/bootstrap/b2.json").exists()
    log = (workdir / "logs/run1/propose_offset/b2.log").read_text().strip().splitlines()
    assert "spectralOffset of b2 (run1) refused, not bootstrapped: no usable arc: at most" in log[-1]
    # the scan runs of the certified camera are gone, the refused camera's stay for inspection
    butler = Butler.from_config(str(workdir / "results/demo/repo"))
    names = [c for c in butler.collections.query("u/demo/run1/*")]
    assert not [n for n in names if "/bootstrapScan/b1" in n or "/bootstrapIsr/b1" in n]
    assert [n for n in names if "/bootstrapScan/b2/" in n]
    scans = sorted((workdir / "results/offsets/run1/b1/scan").glob("*.json"))
    assert [int(p.stem) for p in sorted(scans, key=lambda p: int(p.stem))] == [-8, -4, 0, 4, 8]  # 4 px steps


def test_the_proposal_pictures_are_in_the_report(auto_run, tmp_path):
    workdir, _ = auto_run
    report = tmp_path / "report.html"
    snakemake(workdir, "--report", str(report), "results/certified/run1/bootstrap/b1.json")
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    # a refused camera's proposal job fails, so Snakemake keeps no picture of it
    proposed = {c for c, v in config["spectralOffset"].items() if v == "auto"} - set(config["demo"]["unlit_arcs"])
    pictures = {
        entry["labels"]["camera"]: png(entry["data_uri"])
        for path, entry in report_results(report.read_text()).items()
        if path.endswith("/proposal.png")
    }
    assert pictures.keys() == proposed == {"b1"}
    rendered = check_pictures_render(report, tmp_path)
    assert all(picture in rendered for picture in pictures.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"spectralOffset": {"b1": "automatic"}},
            "spectralOffset.b1: 'automatic' is neither a number of pixels nor auto",
        ),
        ({"offset_search": {"dispersion": {"r": 0.09}}}, "no dispersion (nm per pixel) for arm b of b1"),
        ({"offset_search": {"range": [20, -20]}}, "offset_search.range: [20, -20] is not a range"),
    ],
)
def test_a_bad_offset_setting_is_one_line_before_any_job(change, message, monkeypatch):
    from pfscalib.plan.config import ConfigError
    from pfscalib.plan.workflow import Workflow

    monkeypatch.chdir(PROJECT)
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config["spectralOffset"]["b1"] = "auto"
    for key, value in change.items():
        config[key] = {**config[key], **value}
    with pytest.raises(ConfigError) as error:
        Workflow(config, source="my.yaml")
    assert str(error.value).startswith("my.yaml") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_one_bootstrap_log_reader_two_rms_each_for_its_question():
    """The gate and the offset proposal read the same BootstrapTask log through one reader
    (metrics.BootstrapLog): the gate judges the worst CCD half, the scan ranks by the RMS of all kept points."""
    from pfscalib.job.metrics import bootstrap_metrics
    from pfscalib.job.offsets import parse_log

    log = [
        "Found 120 lines in 16 traces",
        "Matched 100 lines",
        "Median difference from detectorMap: 0.0,0.2 pixels",
        "Fit 90/100 points, rms: x=0.05 y=0.08 total=0.1 pixels",
        "Median difference from detectorMap: 0.0,1.2 pixels",
        "Fit 10/100 points, rms: x=0.5 y=0.8 total=1.0 pixels",
    ]
    gate = bootstrap_metrics(log)
    point = parse_log(0, log)
    assert gate["bootstrap.rms"] == pytest.approx(1.0)  # the bad half is not hidden by the good one
    assert point.rms == pytest.approx((0.109) ** 0.5)  # sqrt((90 * 0.1^2 + 10 * 1.0^2) / 100)
    assert gate["bootstrap.median_dy"] == pytest.approx(0.3) == point.median_dy  # (0.2 * 90 + 1.2 * 10) / 100
    assert (gate["bootstrap.fit_fraction"], point.fitted) == (pytest.approx(0.5), 100)
