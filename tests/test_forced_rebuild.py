"""Issue #29: a rebuild is a rebuild. A job the user forces (-F, --forcerun, -f) is built from scratch in a
fresh RUN whatever the previous run's outcome (a held camera, a failed one); an unforced rerun after an
interruption resumes; a changed pipeline file or stack starts a fresh RUN instead of a resume pipetask
refuses. One camera (b1), one epoch, bias and dark; the dark held by a limits file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from lsst.daf.butler import Butler

from pfscalib.job import butler as butlerops
from pfscalib.plan import paths

from conftest import PROJECT, private_copy
from helpers import calib_collection, external_workdir, set_config, snakemake

BIAS = paths.sentinel("bias", "run1", "b1")
DARK = paths.sentinel("dark", "run1", "b1")
HELD_DARK = paths.held("dark", "run1", "b1")


def read(workdir: Path, path: str) -> dict:
    return json.loads((workdir / path).read_text())


def hold_darks(workdir: Path, hold: bool) -> None:
    """The work directory's limits file with dark.noise's red bound below any dark (hold) or the demo's."""
    path = workdir / "config/limits-demo.yaml"
    limits = yaml.safe_load(path.read_text())
    if hold:
        limits["metrics"]["dark.noise"] = {"unit": "ADU/s", "max": {"yellow": 1e-6, "red": 2e-6}, "source": "test"}
    else:
        limits["metrics"].pop("dark.noise", None)
    path.write_text(yaml.safe_dump(limits))


@pytest.fixture(scope="module")
def held_run(tmp_path_factory, demo_template):
    """b1's bias certified, its dark held: the run fails (keep-going), every job's state kept."""
    tmp = tmp_path_factory.mktemp("forced")
    repo = private_copy(tmp, demo_template)
    workdir = external_workdir(tmp, repo)
    hold_darks(workdir, True)
    proc = snakemake(workdir, "--keep-going", DARK, check=False)
    assert proc.returncode != 0 and (workdir / BIAS).exists() and (workdir / HELD_DARK).exists(), proc.stderr[-3000:]
    assert (workdir / paths.state("bias", "run1", "b1")).exists()  # a failed run forgets nothing
    return workdir, repo


def test_forceall_after_a_run_with_a_held_camera_rebuilds_every_job_in_a_fresh_run(held_run):
    workdir, repo = held_run
    bias, dark = read(workdir, BIAS), read(workdir, HELD_DARK)
    proc = snakemake(workdir, "--keep-going", "-F", DARK, check=False)
    assert proc.returncode != 0  # the dark is held again
    rebuilt = read(workdir, BIAS)
    assert rebuilt["run"] != bias["run"] and rebuilt["datasetId"] != bias["datasetId"]
    certified = butlerops.certified(
        Butler.from_config(str(repo)), calib_collection("bias"), "bias", {"arm": "b", "spectrograph": 1}
    )
    assert [str(c["ref"].id) for c in certified] == [rebuilt["datasetId"]]
    assert read(workdir, HELD_DARK)["run"] != dark["run"]
    # check, registration, bias, dark
    assert "pfscalib: 4 forced job(s) start from scratch (a fresh RUN, no resume)" in proc.stderr
    log = (workdir / paths.log("run1", "bias", "b1")).read_text()
    assert f"forced by this run (-F, -R, --forcerun or -f): a fresh RUN, not {bias['run']}" in log


def test_forcerun_of_a_held_camera_builds_a_new_product_and_an_unforced_rerun_resumes(held_run):
    workdir, _ = held_run
    bias, dark = read(workdir, BIAS), read(workdir, HELD_DARK)
    proc = snakemake(workdir, DARK, "--forcerun", DARK, check=False)
    assert proc.returncode != 0
    again = read(workdir, HELD_DARK)
    assert again["run"] != dark["run"] and again["datasetId"] != dark["datasetId"]
    assert read(workdir, BIAS) == bias  # not forced, not rebuilt
    # the limits loosened, an unforced rerun judges the held product again: same RUN, now certified
    hold_darks(workdir, False)
    snakemake(workdir, DARK)
    assert read(workdir, DARK)["run"] == again["run"] and read(workdir, DARK)["datasetId"] == again["datasetId"]


def test_a_resume_after_a_changed_pipeline_file_starts_a_fresh_run(tmp_path, demo_repo):
    workdir = external_workdir(tmp_path, demo_repo)
    pipelines = shutil.copytree(PROJECT / "scripts/pfscalib/demo/pipelines", workdir / "pipelines")
    set_config(workdir, pipelines_dir=str(pipelines))
    env = {**os.environ, "PFSCALIB_FAULT": "after-pipetask@/bias/", "PFSCALIB_FAULT_DIR": str(tmp_path / "faults")}

    killed = snakemake(workdir, BIAS, env=env, check=False)
    assert killed.returncode != 0 and not (workdir / BIAS).exists()
    state = read(workdir, paths.state("bias", "run1", "b1"))
    assert state["status"] == "pipetask-done"
    # a new stack's pipeline: another clipping threshold (pipetask would refuse to extend the old RUN)
    bias_yaml = pipelines / "bias.yaml"
    bias_yaml.write_text(
        bias_yaml.read_text().replace("calibrationType: bias\n", "calibrationType: bias\n      clip: 3.5\n")
    )
    proc = snakemake(workdir, BIAS, check=False)
    assert proc.returncode == 0, (workdir / paths.log("run1", "bias", "b1")).read_text()[-3000:]
    assert read(workdir, BIAS)["run"] != state["run"]
    log = (workdir / paths.log("run1", "bias", "b1")).read_text()
    assert f"a fresh RUN, not {state['run']}: its pipeline file {bias_yaml} changed" in log
