"""Issue #4: the workflow through `--profile profiles/slurm` on a real single-node SLURM
(Debian's slurmctld/slurmd/munge, started by tests/slurm/cluster.sh). Runs for real in CI (root);
skips with a reason for a non-root user."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PROJECT, run
from helpers import certifications, slurm_cluster, workdir_config

pytestmark = pytest.mark.slurm
CLUSTER = PROJECT / "tests/slurm/cluster.sh"


@pytest.fixture(scope="module")
def slurm_env():
    with slurm_cluster() as (env, state):  # one cluster at a time on the machine (tests/helpers.py)
        yield env, state


def jobcomp(state: Path) -> dict[int, dict[str, str]]:
    out = {}
    for line in (state / "log/jobcomp.txt").read_text().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        out[int(fields["JobId"])] = fields
    return out


def slurm_jobs(workdir: Path) -> list[tuple[str, str, int]]:
    """(rule, wildcards, job id) of every job the plugin submitted, from its log tree."""
    jobs = []
    for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"):
        parts = log.relative_to(workdir / ".snakemake/slurm_logs").parts
        jobs.append((parts[0].removeprefix("rule_"), "/".join(parts[1:-1]), int(log.stem)))
    return jobs


def test_workflow_on_slurm_with_a_cancelled_job(slurm_env, tmp_path):
    env, state = slurm_env
    workdir = workdir_config(tmp_path, cameras=["b1", "r1"], epochs=("run1",))
    config = (workdir / "config/config.yaml").read_text().replace("bias:\n    threads: 1", "bias:\n    threads: 2")
    (workdir / "config/config.yaml").write_text(config)
    cmd = [
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
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cancelled = None
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        if cancelled is None:
            queue = run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], env=env).stdout
            running = [line.split() for line in queue.splitlines() if "rule_dark" in line]
            if running:
                time.sleep(3)  # mid-job: pipetask is running
                cancelled = int(running[0][0])
                run(["scancel", str(cancelled)], env=env, check=True)
        time.sleep(1)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output[-5000:]
    assert cancelled is not None, "no dark job was seen running"

    comp = jobcomp(state)
    jobs = slurm_jobs(workdir)
    step_rules = {"bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"}
    # every step job ran as a SLURM job; the repository and check jobs stayed on the submit host
    assert {r for r, _, _ in jobs} == step_rules
    done = {(r, w) for r, w, j in jobs if comp.get(j, {}).get("JobState") == "COMPLETED"}
    assert len(done) == 6 * 2 + 2
    # threads -> --cpus-per-task (ProcCnt), as configured per step
    for rule, _, job_id in jobs:
        if comp.get(job_id, {}).get("JobState") == "COMPLETED":
            assert int(comp[job_id]["ProcCnt"]) == (2 if rule == "bias" else 1), (rule, comp[job_id])
    # the cancelled job was retried under a new job id and the run completed
    assert comp[cancelled]["JobState"] == "CANCELLED"
    retried = next((r, w) for r, w, j in jobs if j == cancelled)
    assert retried in done
    # sentinels and certifications: everything once, nothing twice
    assert len(list((workdir / "results/certified/run1").rglob("*.json"))) == 14
    certs = certifications(workdir / "results/demo/repo")
    assert len(certs) == 14


def test_dry_run_with_slurm_profile_needs_no_cluster(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    workdir = workdir_config(tmp_path)
    started = time.time()
    proc = run(
        ["snakemake", "-n", "-s", str(PROJECT / "Snakefile"), "--profile", str(PROJECT / "profiles/slurm")],
        cwd=workdir,
        env=env,
        check=True,
    )
    assert "bootstrap" in proc.stdout
    assert time.time() - started < 8  # no wait for an absent controller


def test_bare_profile_name_is_found_from_the_project_root():
    proc = run(["snakemake", "-n", "--profile", "slurm"], cwd=PROJECT, check=True)
    assert re.search(r"profile.*slurm", proc.stdout + proc.stderr, re.I)
