"""Helpers shared by the test modules: the one snakemake runner and the work-directory/config builders.

Test modules import only conftest, helpers, killtrials and reportcheck, never one another
(tests/test_test_layout.py checks it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import yaml
from lsst.daf.butler import Butler

from pfscalib.job import butler as butlerops
from pfscalib.plan.config import Settings
from pfscalib.plan.steps import STEP_NAMES, STEPS

from conftest import PROJECT, require_root, run

CAMERAS = ["b1", "r1"]
RUN1 = {"run1": "2025-03-10T08:00:00"}


def snakemake(
    workdir: Path,
    *args: str,
    check: bool = True,
    env: dict | None = None,
    cores: int = 2,
    rerun_incomplete: bool = True,
    mtime_only: bool = False,
) -> subprocess.CompletedProcess:
    """The real snakemake CLI on the project's Snakefile from `workdir`.

    check: raise with the output's tail on a non-zero exit (else return the process for the test to judge).
    rerun_incomplete: add --rerun-incomplete (a killed run's outputs are rebuilt, not refused).
    mtime_only: add --rerun-triggers mtime (a private copy of a work directory names another repository in
    the jobs' params, which would otherwise retrigger every job).
    """
    argv = ["snakemake", "-s", str(PROJECT / "Snakefile")]
    if mtime_only:
        argv += ["--rerun-triggers", "mtime"]
    argv += ["--cores", str(cores)]
    if rerun_incomplete:
        argv += ["--rerun-incomplete"]
    return run([*argv, *args], cwd=workdir, check=check, env=env)


def workdir_config(tmp: Path, cameras=CAMERAS, epochs=("run1", "run2"), **changes) -> Path:
    """A work directory with its own config and copies of the demo tables (tests edit them)."""
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config["cameras"] = cameras
    config["spectralOffset"] = {c: config["spectralOffset"].get(c, 0) for c in cameras}
    config["pipelines_dir"] = str(PROJECT / "scripts/pfscalib/demo/pipelines")
    config["epochs"] = {e: config["epochs"][e] for e in epochs}
    (tmp / "visits").mkdir(parents=True, exist_ok=True)
    for step, path in config["visits"].items():
        lines = (PROJECT / path).read_text().splitlines(keepends=True)
        (tmp / "visits" / f"{step}.tsv").write_text(
            "".join(lines[:1] + [ln for ln in lines[1:] if ln.split("\t")[0] in epochs])
        )
        config["visits"][step] = str(tmp / "visits" / f"{step}.tsv")
    config.update(changes)
    (tmp / "config").mkdir(parents=True, exist_ok=True)
    if config.get("limits"):  # a copy of the demo's limits file, named absolutely (configs are copied about)
        (tmp / config["limits"]).write_text((PROJECT / config["limits"]).read_text())
        config["limits"] = str(tmp / config["limits"])
    (tmp / "config/config.yaml").write_text(yaml.safe_dump(config))
    return tmp


def external_workdir(tmp: Path, repo: Path, cameras=("b1",), epochs=("run1",)) -> Path:
    """tmp/work: a config on a private copy of the demo repository (demo disabled: -F must not rebuild the
    repository)."""
    return workdir_config(
        tmp / "work",
        cameras=list(cameras),
        epochs=epochs,
        datastore=str(repo),
        demo={"enabled": False},
        executables={"defineFiberProfilesInputs": f"{repo}/bin/defineFiberProfilesInputs.py"},
    )


def use_limits(workdir: Path, name: str, metric: str, bounds: dict) -> None:
    """A limits file of its own name (the job's command changes: it is judged again) with the demo's limits
    and one metric's max bound replaced."""
    demo = yaml.safe_load((PROJECT / "config/limits-demo.yaml").read_text())
    demo["metrics"][metric] = {"max": bounds, "source": "test"}
    (workdir / name).write_text(yaml.safe_dump(demo))
    set_config(workdir, limits=str(workdir / name))


def set_config(workdir: Path, **changes) -> None:
    """Update top-level keys of a work directory's config."""
    path = workdir / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


def external_repo_config(workdir: Path, repo: str, cameras: list[str]) -> None:
    """Point a work dir's config at an existing repository instead of the demo rule."""
    set_config(
        workdir,
        datastore=repo,
        demo={"enabled": False},
        spectralOffset={c: {"b1": -10, "r1": 6, "b2": 0, "r2": 3}.get(c, 0) for c in cameras},
        executables={"defineFiberProfilesInputs": f"{repo}/bin/defineFiberProfilesInputs.py"},
    )


def calib_collection(step: str) -> str:
    """Where the demo config's build certifies a step's product (its own collection under the rerun)."""
    return Settings(yaml.safe_load((PROJECT / "config/config.yaml").read_text())).calib_collection(step)


def certifications(repo: Path) -> dict:
    """(type, data ID, begin) -> (dataset id, end) of every certification in the build's collections."""
    butler = Butler.from_config(str(repo))
    out = {}
    for step in STEP_NAMES:
        s = STEPS[step]
        for c in butlerops.certified(butler, calib_collection(step), s.certified_as):
            key = (s.certified_as, tuple(sorted(c["ref"].dataId.required.items())), c["begin"].isot[:19])
            out[key] = (str(c["ref"].id), c["end"].isot[:19] if c["end"] is not None else None)
    return out


# ---------------------------------------------------------------- SLURM and the datastore's size over time
@contextlib.contextmanager
def slurm_cluster():
    """A real single-node SLURM (tests/slurm/cluster.sh; root only, else the test skips with the reason):
    yields (env with SLURM_CONF, state dir). One at a time on the machine (a file lock): the cluster's
    slurm.conf is also installed at /etc/slurm, and two controllers would share its port."""
    require_root("SLURM (slurmctld, slurmd, munge)")
    cluster = PROJECT / "tests/slurm/cluster.sh"
    with open("/var/lock/pfscalib-slurm-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test module's cluster: wait until it stops
        state = Path(tempfile.mkdtemp(prefix="pfscalib-slurm-"))  # short, world-traversable: slurmctld runs as slurm
        state.chmod(0o755)
        started = run(["bash", str(cluster), "start", str(state)], check=True)
        try:
            yield {**os.environ, "SLURM_CONF": started.stdout.strip().splitlines()[-1]}, state
        finally:
            run(["bash", str(cluster), "stop", str(state)], check=True)


def slurm_jobcomp(state: Path) -> dict[int, dict[str, str]]:
    """Every finished SLURM job of the cluster (jobcomp/filetxt): job id -> its fields."""
    out = {}
    for line in (state / "log/jobcomp.txt").read_text().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        out[int(fields["JobId"])] = fields
    return out


NOT_DATASTORE = ("gen3.sqlite3", "bin")  # the registry and the demo's stand-in scripts


def datastore_bytes(repo: Path) -> int:
    """Bytes of every file of the repository's datastore (not the SQLite registry, not the demo's scripts)."""
    total = 0
    for root, dirs, files in os.walk(repo):
        if Path(root) == repo:
            dirs[:] = [d for d in dirs if d not in NOT_DATASTORE]
            files = [f for f in files if not f.startswith(NOT_DATASTORE)]
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # purged while we looked
                total += os.stat(os.path.join(root, name)).st_size
    return total


class DatastoreSampler(threading.Thread):
    """Samples the datastore's size every `interval` seconds while the test runs the workflow."""

    def __init__(self, repo: Path, interval: float = 0.5):
        super().__init__(daemon=True)
        self.repo, self.interval, self.stop = repo, interval, threading.Event()
        self.samples: list[tuple[float, int]] = []  # (time, datastore bytes)

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.time(), datastore_bytes(self.repo)))
            time.sleep(self.interval)


def held_by_running(workdir: Path, samples: list[tuple[float, int]], baseline: int) -> int:
    """The peak of what running jobs held: the datastore's growth minus what finished jobs left (each
    sentinel's recorded writes of the types its job did not clean, from the moment it was written)."""
    finished = []
    for path in (workdir / "results/certified").rglob("*.json"):
        s = json.loads(path.read_text())
        cleaned = set(s["cleaned"]["datasetTypes"])
        finished.append((path.stat().st_mtime, sum(b for t, (_, b) in s["written"].items() if t not in cleaned)))
    return max(size - baseline - sum(b for when, b in finished if when <= t) for t, size in samples)


TWIN_SCALE = 0.005  # 1/200: fibre-profile fitting 22 s per camera, a postISRCCD 1 MB


def twin_workdir(tmp_path: Path) -> Path:
    """The demo's b1 and r1, one epoch, as the timing twin (issue #33)."""
    workdir = workdir_config(tmp_path, cameras=["b1", "r1"], epochs=("run1",))
    path = workdir / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["demo"]["twin"] = {"scale": TWIN_SCALE}
    path.write_text(yaml.safe_dump(config))
    return workdir


def predicted(workdir: Path, monkeypatch, budget_mb: int | None):
    """The workflow of a twin work directory and `pfscalib plan`'s season for 1 node x 2 cores."""
    from pfscalib.plan.season import Cluster, predict
    from pfscalib.plan.workflow import Workflow

    monkeypatch.chdir(workdir)  # the pipeline cache and the visit checks are relative to the work directory
    wf = Workflow(yaml.safe_load((workdir / "config/config.yaml").read_text()))
    return wf, predict(wf, Cluster(nodes=1, cores=2, budget_mb=budget_mb))
