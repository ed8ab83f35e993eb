"""Issue #5: 8 concurrent per-camera jobs on one SQLite registry; the workflow on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pfscalib.demo.make_repo import make_repo

from conftest import PROJECT, run
from test_workflow_e2e import certifications, workdir_config

EIGHT = ["b1", "r1", "b2", "r2", "b3", "r3", "b4", "r4"]
RUN1 = {"run1": "2025-03-10T08:00:00"}


def external_repo_config(workdir: Path, repo: str, cameras: list[str]) -> None:
    """Point a work dir's config at an existing repository instead of the demo rule."""
    path = workdir / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(
        datastore=repo,
        demo={"enabled": False},
        spectralOffset={c: {"b1": -10, "r1": 6, "b2": 0, "r2": 3}.get(c, 0) for c in cameras},
        executables={"defineFiberProfilesInputs": f"{repo}/bin/defineFiberProfilesInputs.py"},
    )
    path.write_text(yaml.safe_dump(config))


def test_eight_concurrent_jobs_on_one_sqlite_registry(tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo, tuple(EIGHT), RUN1)
    workdir = workdir_config(tmp_path / "wd", cameras=EIGHT, epochs=("run1",))
    external_repo_config(workdir, str(repo), EIGHT)
    targets = [f"results/certified/run1/bias/{c}.json" for c in EIGHT]
    proc = run(["snakemake", "-s", str(PROJECT / "Snakefile"), "--cores", "8", *targets], cwd=workdir)
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
    proc = run(["snakemake", "-s", str(PROJECT / "Snakefile"), "--cores", "2"], cwd=workdir)
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
