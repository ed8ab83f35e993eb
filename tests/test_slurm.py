"""Issue #4: the workflow through `--profile profiles/slurm` on a real single-node SLURM
(Debian's slurmctld/slurmd/munge, started by tests/slurm/cluster.sh). Runs for real in CI (root);
skips with a reason for a non-root user."""

from __future__ import annotations

import os
import re
import shlex
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from astropy.io import fits

from pfscalib.demo.twin import PAD_EXTNAME
from pfscalib.plan import paths
from pfscalib.plan.realsite import duration
from pfscalib.plan.season import quanta
from pfscalib.plan.steps import STEP_NAMES

from conftest import PROJECT, run
from helpers import (
    TWIN_SCALE,
    DatastoreSampler,
    certifications,
    datastore_bytes,
    held_by_running,
    predicted,
    slurm_cluster,
    slurm_jobcomp,
    snakemake,
    twin_workdir,
    use_limits,
    workdir_config,
)

pytestmark = pytest.mark.slurm
PEAK_TOLERANCE = 0.25  # the prediction holds every job's whole footprint from its start; jobs write as they go
MB = 1_000_000
CLUSTER = PROJECT / "tests/slurm/cluster.sh"


@pytest.fixture(scope="module")
def slurm_env():
    with slurm_cluster() as (env, state):  # one cluster at a time on the machine (tests/helpers.py)
        yield env, state


def slurm_jobs(workdir: Path) -> list[tuple[str, str, int]]:
    """(rule, wildcards, job id) of every job the plugin submitted, from its log tree."""
    jobs = []
    for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"):
        parts = log.relative_to(workdir / ".snakemake/slurm_logs").parts
        jobs.append((parts[0].removeprefix("rule_"), "/".join(parts[1:-1]), int(log.stem)))
    return jobs


SLURM_CMD = [
    "snakemake",
    "-s",
    str(PROJECT / "Snakefile"),
    "--profile",
    str(PROJECT / "profiles/slurm"),
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--seconds-between-status-checks",
    "2",
]


def run_cancelling(cmd: list[str], workdir: Path, env: dict, rule: str, timeout: float = 900) -> tuple[int, str, int]:
    """Run Snakemake and scancel the first SLURM job of `rule` a few seconds into its run (as an operator or
    a node failure would): (exit status, output, the cancelled job's id)."""
    out = workdir / "snakemake.log"
    with out.open("w") as log:  # a file: a pipe read only at the end fills (64 KB) and blocks Snakemake's logging
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        cancelled = None
        deadline = time.time() + timeout
        while proc.poll() is None and time.time() < deadline:
            if cancelled is None:
                queue = run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], env=env).stdout
                running = [line.split() for line in queue.splitlines() if f"rule_{rule}" in line]
                if running:
                    time.sleep(3)  # mid-job: pipetask is running
                    cancelled = int(running[0][0])
                    run(["scancel", str(cancelled)], env=env, check=True)
            time.sleep(1)
        proc.wait(timeout=60)
    assert cancelled is not None, f"no {rule} job was seen running"
    return proc.returncode, out.read_text(), cancelled


SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "sacctmgr", "sinfo", "scontrol", "srun")


def test_dry_run_with_slurm_profile_needs_no_cluster(tmp_path):
    """A dry run through the SLURM profile needs no cluster: every SLURM command on PATH is a stand-in that
    records its call and fails. Nothing is submitted or polled; the one query is the pinned plugin's
    `scontrol show config` for MinJobAge, which it bounds (timeout=10) and ignores when it fails
    (snakemake_executor_plugin_slurm/job_status_query.py, get_min_job_age)."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "slurm-calls"
    bin_dir.mkdir()
    for name in SLURM_COMMANDS:
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {shlex.quote(str(calls))}\nexit 1\n')
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    workdir = workdir_config(tmp_path / "wd")
    proc = run(
        ["snakemake", "-n", "-s", str(PROJECT / "Snakefile"), "--profile", str(PROJECT / "profiles/slurm")],
        cwd=workdir,
        env=env,
        check=True,
    )
    assert "bootstrap" in proc.stdout
    asked = calls.read_text().splitlines() if calls.exists() else []
    assert set(asked) <= {"scontrol show config"}, asked


def test_bare_profile_name_is_found_from_the_project_root():
    proc = run(["snakemake", "-n", "--profile", "slurm"], cwd=PROJECT, check=True)
    assert re.search(r"profile.*slurm", proc.stdout + proc.stderr, re.I)


def test_twin_on_slurm_under_a_binding_disk_budget_with_a_cancelled_job(slurm_env, tmp_path, monkeypatch):
    """Issue #33: the timing twin under a disk budget below the unconstrained peak: the run finishes, what
    running jobs hold never exceeds the budget, and `pfscalib plan`'s predictions stand against the run.
    Issue #4 in the same run: every step job is a SLURM job with its threads as CPUs, and a dark job
    cancelled mid-run is retried and certified once. Then a held product is not retried (#31)."""
    env, state = slurm_env
    workdir = twin_workdir(tmp_path)
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["steps"]["bias"]["threads"] = 2  # -> --cpus-per-task 2 (the plan schedules it so)
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
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
    returncode, output, cancelled = run_cancelling(
        [*SLURM_CMD, "--resources", f"disk_mb={budget}"], workdir, env, "dark"
    )
    wall = time.time() - started
    sampler.stop.set()
    sampler.join()
    errors = [ln for ln in output.splitlines() if "rror" in ln]
    assert returncode == 0, "\n".join(errors[:40]) + output[-3000:]
    comp = slurm_jobcomp(state)

    jobs = slurm_jobs(workdir)
    # every step job ran as a SLURM job; the repository and check jobs stayed on the submit host
    assert {r for r, _, _ in jobs} == set(STEP_NAMES)
    completed = {(r, w) for r, w, j in jobs if comp.get(j, {}).get("JobState") == "COMPLETED"}
    assert len(completed) == 6 * 2 + 2
    # threads -> --cpus-per-task (ProcCnt), as configured per step (bias: 2)
    for rule, _, job_id in jobs:
        if comp.get(job_id, {}).get("JobState") == "COMPLETED":
            assert int(comp[job_id]["ProcCnt"]) == (2 if rule == "bias" else 1), (rule, comp[job_id])
    # the cancelled dark job was retried under a new job id (the profile's retries) and the run completed
    assert comp[cancelled]["JobState"] == "CANCELLED"
    assert next((r, w) for r, w, j in jobs if j == cancelled) in completed
    assert len(certifications(repo)) == 14  # everything once, nothing twice

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
    work = {j.name: TWIN_SCALE * sum(n * duration(t).seconds for t, n in quanta(j).items()) for j in wf.disk.jobs()}
    walls = sorted(e - s for s, e in zip(starts, ends, strict=True))
    overhead = statistics.median(walls) - statistics.median(work.values())
    # dispatch: from a job's end to the start of the next job that waited for one (status check, submission)
    gaps = [s - max(e for e in ends if e <= s) for s in starts if any(e <= s for e in ends)]
    print(
        f"\ntwin x {TWIN_SCALE} on SLURM (1 node x 2 cores), 2 cameras, 1 epoch, disk_mb={budget}: wall {wall:.0f} s;"
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

    # A held product on SLURM (issue #31's failure classes): judged once, and the profile's `retries: 2`
    # submit no second SLURM job for it (pfscalib.internals.snakemake.verdicts_not_retried).
    use_limits(workdir, "limits-red.yaml", "fiberNorms.max", {"yellow": 0.01, "red": 0.02})
    norms = paths.sentinel("fiberNorms", "run1", "b")
    before = {j for _, _, j in jobs}
    held = run(
        [*SLURM_CMD, norms, "--rerun-triggers", "mtime", "--show-failed-logs", "-R", norms], cwd=workdir, env=env
    )
    out = held.stdout + held.stderr
    assert held.returncode != 0, out[-3000:]
    attempts = [j for r, _, j in slurm_jobs(workdir) if r == "fiberNorms" and j not in before]
    assert len(attempts) == 1 and "Trying to restart job" not in out, out[-3000:]
    assert slurm_jobcomp(state)[attempts[0]]["JobState"] == "FAILED"
    assert len(re.findall(r"held fiberNorms b: fiberNorms\.max", out)) == 1, out[-4000:]  # one judgement
    assert (workdir / paths.held("fiberNorms", "run1", "b")).exists()
