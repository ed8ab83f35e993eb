"""Issue #5: 8 concurrent per-camera jobs on one SQLite registry; the workflow on PostgreSQL."""

from __future__ import annotations

import pytest

from pfscalib.demo.make_repo import make_repo

from helpers import RUN1, certifications, external_repo_config, snakemake, workdir_config

EIGHT = ["b1", "r1", "b2", "r2", "b3", "r3", "b4", "r4"]


def test_eight_concurrent_jobs_on_one_sqlite_registry(tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo, tuple(EIGHT), RUN1)
    workdir = workdir_config(tmp_path / "wd", cameras=EIGHT, epochs=("run1",))
    external_repo_config(workdir, str(repo), EIGHT)
    targets = [f"results/certified/run1/bias/{c}.json" for c in EIGHT]
    proc = snakemake(workdir, *targets, cores=8, check=False, rerun_incomplete=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = "".join(p.read_text() for p in (workdir / "logs").rglob("*.log"))
    assert "database is locked" not in logs and "OperationalError" not in logs
    assert len([k for k in certifications(repo) if k[0] == "bias"]) == 8
    assert not list((workdir / "results/state").rglob("*.json"))  # every job finished and certified once


@pytest.mark.postgres
def test_workflow_on_a_postgresql_registry(tmp_path, postgres_url):
    repo = tmp_path / "repo"
    make_repo(repo, ("b1",), RUN1, registry_db=postgres_url)
    assert "postgresql://" in (repo / "butler.yaml").read_text()
    workdir = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(repo), ["b1"])
    proc = snakemake(workdir, check=False, rerun_incomplete=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    certs = certifications(repo)
    assert len(certs) == 7 and {k[0] for k in certs} == {
        "bias",
        "dark",
        "fiberFlat",
        "detectorMap_bootstrap",
        "detectorMap_calib",
        "fiberProfiles",
        "fiberNorms_calib",
    }
