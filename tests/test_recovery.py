"""Each way a killed run used to need a manual repair, reproduced without the fault seam, then recovered by
running the same job again (issue: crash anywhere, at any moment)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from lsst.daf.butler import Butler, CollectionType

from pfscalib.plan import paths
from pfscalib.plan.workflow import Workflow

from conftest import run
from helpers import workdir_config

CAMERA = "b1"


@pytest.fixture
def workdir(tmp_path, demo_repo) -> Path:
    """One camera and epoch on a private copy of the demo repository, jobs run by hand (no Snakemake)."""
    work = workdir_config(tmp_path / "work", cameras=[CAMERA], epochs=("run1",), datastore=str(demo_repo))
    # what the workflow does once before any job: dataset types and its own collections
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    old = Path.cwd()
    os.chdir(work)
    try:
        register = Workflow(config).commands.register()
    finally:
        os.chdir(old)
    run(register, cwd=work, check=True)
    return work


def job(work: Path, step: str) -> subprocess.CompletedProcess:
    """The workflow's own command for the step's job (as the rule runs it), run in the work directory."""
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    old = Path.cwd()
    os.chdir(work)
    try:
        command = Workflow(config).commands.job(step, "run1", CAMERA if step != "fiberNorms" else "b")
    finally:
        os.chdir(old)
    return run(f"{command} -j 1", cwd=work)


def runs_of(butler: Butler, chain: str) -> list[str]:
    return [
        c
        for c in butler.registry.getCollectionChain(chain)
        if butler.collections.get_info(c).type is CollectionType.RUN and c.startswith(chain)
    ]


def orphans(repo: Path, butler: Butler, run_name: str) -> list[Path]:
    """Files in the RUN's directory that no dataset of the RUN, or of a RUN named under it, owns."""
    runs = [run_name, *butler.collections.query(f"{run_name}/*", CollectionType.RUN)]
    known = {Path(butler.getURI(r).ospath) for r in butler.query_all_datasets(runs, find_first=False, limit=None)}
    return [p for p in (repo / run_name).rglob("*") if p.is_file() and p not in known]


def test_a_job_killed_after_its_sentinel_is_not_rebuilt(workdir, demo_repo):
    """Cause 1: killed after the sentinel, before Snakemake recorded the job (or the sentinel removed by
    Snakemake on SIGTERM): the rerun writes the sentinel again from the same RUN, it starts no new one."""
    first = job(workdir, "bias")
    assert first.returncode == 0, first.stderr[-2000:]
    sentinel = workdir / paths.sentinel("bias", "run1", CAMERA)
    before = json.loads(sentinel.read_text())
    sentinel.unlink()  # what Snakemake does on SIGTERM, and before rerunning an incomplete job
    again = job(workdir, "bias")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing rebuilt" in again.stderr
    after = json.loads(sentinel.read_text())
    assert (after["datasetId"], after["run"]) == (before["datasetId"], before["run"])
    assert runs_of(Butler.from_config(str(demo_repo)), f"u/demo/run1/bias/{CAMERA}") == [before["run"]]


def test_a_hot_journal_is_rolled_back_before_anything_reads(workdir, demo_repo):
    """Cause 2: SIGKILL inside an SQLite commit leaves a hot journal; read-only opens (mode=ro) cannot roll it
    back, so every job used to fail with "attempt to write a readonly database"."""
    killer = """
import os, signal, sys
import sqlalchemy
from lsst.daf.butler import Butler, CollectionType

def die_inside_commit(connection):
    raw = connection.connection.dbapi_connection
    raw.execute("PRAGMA cache_size = 2")  # spill to the database file, as a commit in progress does
    raw.execute("CREATE TABLE spill (x BLOB)")
    for _ in range(64):
        raw.execute("INSERT INTO spill VALUES (zeroblob(65536))")
    os.kill(os.getpid(), signal.SIGKILL)

butler = Butler.from_config(sys.argv[1], writeable=True)
sqlalchemy.event.listen(sqlalchemy.engine.Engine, "commit", die_inside_commit)
butler.registry.registerCollection("u/someone/killed", CollectionType.RUN)
"""
    proc = subprocess.run([sys.executable, "-c", killer, str(demo_repo)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert (demo_repo / "gen3.sqlite3-journal").exists()
    ro = run(
        [
            sys.executable,
            "-c",
            f"from lsst.daf.butler import Butler; Butler.from_config({str(demo_repo)!r}).collections.query('*')",
        ]
    )
    assert "readonly database" in ro.stderr  # the failure every rerun met
    result = job(workdir, "bias")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (demo_repo / "gen3.sqlite3-journal").exists()
    assert "u/someone/killed" not in Butler.from_config(str(demo_repo)).collections.query("*")  # rolled back


def test_a_half_made_output_chain_is_completed(workdir, demo_repo):
    """Cause 3: killed inside pipetask's output set-up (chain registered, RUN registered, chain not yet
    defined): every rerun used to fail the chain's consistency check."""
    from pfscalib.job.run import identity

    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    old = Path.cwd()
    os.chdir(workdir)
    try:
        command = Workflow(config).commands.pipetask("bias", "run1", CAMERA)
    finally:
        os.chdir(old)
    chain, run_name = f"u/demo/run1/bias/{CAMERA}", f"u/demo/run1/bias/{CAMERA}/20260101T000000000000Z"
    butler = Butler.from_config(str(demo_repo), writeable=True)
    butler.collections.register(chain, CollectionType.CHAINED)
    butler.collections.register(run_name, CollectionType.RUN)
    state = workdir / paths.state("bias", "run1", CAMERA)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"identity": identity(command, []), "run": run_name, "status": "started"}))
    assert command.identity()[0] == "pipetask"
    result = job(workdir, "bias")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "repaired output chain" in result.stderr
    butler = Butler.from_config(str(demo_repo))
    assert runs_of(butler, chain) == [run_name]
    inputs = list(command.inputs)  # as pipetask would have defined it: the flattened inputs
    flattened = list(butler.collections.query(inputs, flatten_chains=True, include_chains=False))
    assert list(butler.registry.getCollectionChain(chain))[1:] == flattened and "PFS/raw/sps" in flattened


def test_a_killed_demo_build_is_started_again(tmp_path):
    """Cause 4: killed while the demo repository is built, every rerun used to fail with FileExistsError on
    the butler.yaml of the half-made repository."""
    root = tmp_path / "results/demo/repo"
    root.mkdir(parents=True)  # Snakemake makes the output's directory before the job starts
    build = [sys.executable, "-m", "pfscalib.demo.make_repo", str(root), "--cameras", CAMERA]
    proc = subprocess.Popen(build, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(tmp_path.rglob("PFS/raw")) and time.monotonic() < deadline:  # killed while raws are written
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (root / "demo.json").exists()
    again = run(build, check=True)
    assert again.returncode == 0
    assert (root / "demo.json").exists() and (root / "butler.yaml").exists()
    assert not list(root.parent.glob("repo_building_*"))
    assert "PFS/raw/sps" in Butler.from_config(str(root)).collections.query("*")


def test_a_failed_pipetask_fails_the_job_with_its_cause(workdir):
    """Cause 5: a failed `pipetask run` was reported as success and the job went on to certify nothing; its
    last line must name pipetask's own error."""
    result = job(workdir, "dark")  # before any bias is certified: the ISR refuses
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pfscalib: pipetask failed (exit status 1):") and "no bias is certified" in last, last
    assert not (workdir / paths.sentinel("dark", "run1", CAMERA)).exists()


def test_a_file_without_registry_row_is_removed_and_its_quantum_rerun(workdir, demo_repo):
    """Cause 6: a kill inside the registry commit of a task's log left its file with no registry row, and
    --skip-existing took the quantum as done: the file stayed an orphan and the log was never written."""
    from pfscalib.plan.records import read_json, write_json

    assert job(workdir, "bias").returncode == 0
    state_path = workdir / paths.state("bias", "run1", CAMERA)
    state = read_json(str(state_path))
    run_name = state["run"]
    butler = Butler.from_config(str(demo_repo), writeable=True)
    log_ref = butler.query_all_datasets(run_name, name="isr_log", find_first=False, limit=1)[0]
    log_file = Path(butler.getURI(log_ref).ospath)
    content = log_file.read_bytes()
    butler.pruneDatasets([log_ref], disassociate=True, unstore=True, purge=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_bytes(content)  # the row is gone, the file stays: as after the killed commit
    assert orphans(demo_repo, butler, run_name)
    # a RUN named under the job's own keeps its files inside the job's RUN directory (the detectorMap copies'
    # <run>/certify): they are not orphans
    from pfscalib.job.butler import copy_datasets

    bias_ref = butler.get_dataset(__import__("uuid").UUID(state["sentinel"]["datasetId"]))
    nested = copy_datasets(butler, [bias_ref], "biasCopy", f"{run_name}/certify")[0]
    assert Path(butler.getURI(nested).ospath).is_relative_to((demo_repo / run_name).resolve())
    # the job was killed during pipetask: its state says started
    write_json(str(state_path), {"identity": state["identity"], "run": run_name, "status": "started"})
    (workdir / paths.sentinel("bias", "run1", CAMERA)).unlink()
    result = job(workdir, "bias")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "quanta without their log will run again" in result.stderr
    butler = Butler.from_config(str(demo_repo))
    assert not orphans(demo_repo, butler, run_name)
    logs = butler.query_all_datasets(run_name, name="isr_log", find_first=False, limit=None)
    metadata = butler.query_all_datasets(run_name, name="isr_metadata", find_first=False, limit=None)
    assert len(logs) == len(metadata) == 5  # every ISR quantum has its log again
    assert Path(butler.getURI(nested).ospath).exists()
