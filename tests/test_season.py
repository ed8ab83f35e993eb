"""Issue #33: the timing twin of the demo on the real SLURM (tests/slurm/cluster.sh) under a disk budget below
the unconstrained peak: the run finishes, what running jobs hold never exceeds the budget, and `pfscalib
plan`'s predictions (pfscalib.plan.season) stand against what the run measured. Runs for real in CI (root);
skips with a reason for a non-root user."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from astropy.io import fits

from pfscalib.demo.twin import PAD_EXTNAME
from pfscalib.plan import paths
from pfscalib.plan.realsite import duration
from pfscalib.plan.season import Cluster, predict, quanta
from pfscalib.plan.workflow import Workflow

from conftest import PROJECT
from helpers import (
    DatastoreSampler,
    datastore_bytes,
    held_by_running,
    slurm_cluster,
    slurm_jobcomp,
    snakemake,
    workdir_config,
)

SCALE = 0.005  # 1/200: fibre-profile fitting 22 s per camera, a postISRCCD 1 MB
PEAK_TOLERANCE = 0.25  # the prediction holds every job's whole footprint from its start; jobs write as they go
MB = 1_000_000


def twin_workdir(tmp_path: Path) -> Path:
    workdir = workdir_config(tmp_path, cameras=["b1", "r1"], epochs=("run1",))
    path = workdir / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["demo"]["twin"] = {"scale": SCALE}
    path.write_text(yaml.safe_dump(config))
    return workdir


def predicted(workdir: Path, monkeypatch, budget_mb: int | None):
    monkeypatch.chdir(workdir)  # the pipeline cache and the visit checks are relative to the work directory
    wf = Workflow(yaml.safe_load((workdir / "config/config.yaml").read_text()))
    return wf, predict(wf, Cluster(nodes=1, cores=2, budget_mb=budget_mb))


@pytest.mark.slurm
def test_twin_on_slurm_under_a_binding_disk_budget(tmp_path, monkeypatch):
    with slurm_cluster() as (env, state):
        workdir = twin_workdir(tmp_path)
        repo = workdir / "results/demo/repo"
        snakemake(workdir, paths.demo_marker("results/demo/repo"), cores=1)  # the demo repository, locally
        baseline = datastore_bytes(repo)

        wf, free = predicted(workdir, monkeypatch, None)
        largest = max(j.disk_mb for j in wf.disk.jobs())
        budget = largest + 1  # one fiberProfiles job at a time: below what running jobs hold unconstrained
        assert free.peak_held_mb > budget, (free.peak_held_mb, budget)
        _, bound = predicted(workdir, monkeypatch, budget)
        assert bound.peak_held_mb <= budget and not bound.stuck

        sampler = DatastoreSampler(repo)
        sampler.start()
        started = time.time()
        cmd = ["snakemake", "-s", str(PROJECT / "Snakefile"), "--profile", str(PROJECT / "profiles/slurm")]
        cmd += ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
        cmd += ["--resources", f"disk_mb={budget}"]
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
        wall = time.time() - started
        sampler.stop.set()
        sampler.join()
        (workdir / "snakemake.log").write_text(proc.stdout + proc.stderr)
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "rror" in ln]
        assert proc.returncode == 0, "\n".join(errors[:40]) + (proc.stdout + proc.stderr)[-3000:]
        comp = slurm_jobcomp(state)

    # every job certified; images carry the twin's padding
    assert len(list((workdir / "results/certified/run1").rglob("*.json"))) == len(wf.disk.jobs()) == 14
    padded = [p for p in repo.rglob("bias_*.fits") if PAD_EXTNAME in [h.name for h in fits.open(p)]]
    assert padded, "no certified bias carries the twin's padding"

    # the budget bound: what running jobs held never exceeded it
    held = held_by_running(workdir, sampler.samples, baseline)
    peak = max(size for _, size in sampler.samples) - baseline
    # the run's makespan from the SLURM records (first start to last end of the step jobs)
    done = [f for f in comp.values() if f.get("JobState") == "COMPLETED"]
    starts = [time.mktime(time.strptime(f["StartTime"], "%Y-%m-%dT%H:%M:%S")) for f in done]
    ends = [time.mktime(time.strptime(f["EndTime"], "%Y-%m-%dT%H:%M:%S")) for f in done]
    makespan = max(ends) - min(starts)
    # per-job start-up on this machine: a job's SLURM wall minus its quanta's sleep
    work = {j.name: SCALE * sum(n * duration(t).seconds for t, n in quanta(j).items()) for j in wf.disk.jobs()}
    walls = sorted(e - s for s, e in zip(starts, ends, strict=True))
    overhead = statistics.median(walls) - statistics.median(work.values())
    # dispatch: from a job's end to the start of the next job that waited for one (status check, submission)
    gaps = [s - max(e for e in ends if e <= s) for s in starts if any(e <= s for e in ends)]
    print(
        f"\ntwin x {SCALE} on SLURM (1 node x 2 cores), 2 cameras, 1 epoch, disk_mb={budget}: wall {wall:.0f} s;"
        f"\n  makespan {makespan:.0f} s measured (SLURM records) vs {bound.makespan:.0f} s predicted "
        f"(unconstrained {free.makespan:.0f} s; bound {bound.bound:.0f} s)"
        f"\n  peak of the datastore's growth {peak / MB:.1f} MB measured vs {bound.peak_bytes / MB:.1f} MB predicted"
        f" (unconstrained {free.peak_bytes / MB:.1f} MB)"
        f"\n  running jobs held at most {held / MB:.1f} MB (budget {budget} MB;"
        f" unconstrained plan {free.peak_held_mb} MB)"
        f"\n  per-job start-up: median SLURM job wall {statistics.median(walls):.1f} s - median quanta "
        f"{statistics.median(work.values()):.1f} s = {overhead:.1f} s; dispatch median {statistics.median(gaps):.0f} s"
        f" ({min(gaps):.0f}-{max(gaps):.0f} s)"
    )
    assert held <= budget * MB, (held, budget)
    assert abs(peak - bound.peak_bytes) <= PEAK_TOLERANCE * peak, (peak, bound.peak_bytes)
    assert makespan >= sum(work[f"{j.disk.name}"] for j in bound.critical_path)  # the chain's sleeps at least


def test_twin_is_off_by_default_and_sleeps_and_pads_its_scaled_figures(tmp_path, monkeypatch):
    from pfscalib.demo import twin
    from pfscalib.plan.realsite import TWIN_ENV, padded_mb

    class Quantum:
        def getName(self):
            return "bootstrap"

        def runQuantum(self, butlerQC, inputRefs, outputRefs):
            return "ran"

    timed = twin.timed(Quantum)
    monkeypatch.delenv(TWIN_ENV, raising=False)
    started = time.monotonic()
    assert timed().runQuantum(None, None, None) == "ran" and time.monotonic() - started < 0.05  # off: no sleep
    monkeypatch.setenv(TWIN_ENV, "0.002")
    started = time.monotonic()
    timed().runQuantum(None, None, None)
    assert time.monotonic() - started >= duration("bootstrap").seconds * 0.002  # 270 s x 0.002 = 0.54 s

    ref = SimpleNamespace(datasetType=SimpleNamespace(name="postISRCCD"), dataId=SimpleNamespace(mapping={"arm": "b"}))
    path = tmp_path / "x.fits"
    fits.PrimaryHDU(np.zeros((16, 16), dtype=np.float32)).writeto(path)
    twin.pad(str(path), ref)  # what the formatter passes: the dataset type and data ID
    target = padded_mb("postISRCCD", "b") * 0.002 * MB
    assert target - 2880 <= path.stat().st_size <= target + 2 * 2880
    with fits.open(path) as hdus:  # the demo's reader sees the image unchanged
        assert hdus[0].data.shape == (16, 16) and hdus[PAD_EXTNAME].header["EXTNAME"] == PAD_EXTNAME


def test_plan_predicts_the_twin_season_from_the_figures(tmp_path, monkeypatch):
    workdir = twin_workdir(tmp_path)
    wf, free = predicted(workdir, monkeypatch, None)
    largest = max(j.disk_mb for j in wf.disk.jobs())
    _, bound = predicted(workdir, monkeypatch, largest)
    for season in (free, bound):
        assert season.makespan >= season.bound - 1e-6 and season.jobs == 14 and not season.stuck
        steps = [j.disk.step for j in season.critical_path]
        assert steps == ["bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"]
    assert bound.peak_held_mb <= largest < free.peak_held_mb and bound.makespan > free.makespan
    # the twin's images count at their real size x scale (above the demo's own 0.27 MB)
    assert wf.disk.size("postISRCCD", "b") == pytest.approx(205.3 * SCALE * MB, rel=0.01)
