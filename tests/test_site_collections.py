"""A current Subaru site: the build certifies only into its own collections, uses its own products over
the site's overlapping ones, and `pfscalib promote` / `pfscalib rollback` change a shared chain only
deliberately, atomically and reversibly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time
from lsst.daf.butler import Butler, CollectionType, Timespan

from pfscalib.demo import simulate
from pfscalib.demo.instrument import detector_id
from pfscalib.demo.make_repo import load_demo
from pfscalib.internals.faults import PROMOTE_FAULT_POINTS

from conftest import PROJECT, outside_dump, run
from helpers import external_repo_config, snakemake, workdir_config

RERUN = "u/demo"
OBSERVATORY = "PFS/calib/observatory/bias.20250201a"


def certify_observatory_bias(repo: Path) -> str:
    """The observatory's own bias for b1 over a range overlapping run1, in a CALIBRATION collection prepended
    to the site's PFS/calib, as a calibration manager would have it. Deliberately wrong (5000 ADU)."""
    from pfscalib.job.butler import register_pipeline_dataset_types

    butler = Butler.from_config(str(repo), writeable=True)
    register_pipeline_dataset_types(butler, [str(PROJECT / "scripts/pfscalib/demo/pipelines/bias.yaml")], [])
    run_name = "PFS/calib/observatory/biasGen.20250201a"
    butler.collections.register(run_name, CollectionType.RUN)
    image = np.full((simulate.NY, simulate.NX), 5000.0, dtype=np.float32)
    ref = butler.put(image, "bias", instrument="PFS", arm="b", spectrograph=1, run=run_name)
    butler.collections.register(OBSERVATORY, CollectionType.CALIBRATION)
    span = Timespan(Time("2025-01-01T00:00:00", scale="tai"), Time("2026-01-01T00:00:00", scale="tai"))
    butler.registry.certify(OBSERVATORY, [ref], span)
    butler.collections.prepend_chain("PFS/calib", [OBSERVATORY])
    return str(ref.id)


@pytest.fixture(scope="module")
def site_build(tmp_path_factory, demo_template):
    """bias and dark of b1 for run1, built on a copy of the demo site that holds an observatory bias (the
    whole demo run is checked in test_workflow_e2e)."""
    import shutil

    tmp = tmp_path_factory.mktemp("site")
    repo = tmp / "repo"
    shutil.copytree(demo_template, repo)
    observatory = certify_observatory_bias(repo)
    workdir = workdir_config(tmp / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(repo), ["b1"])
    before = outside_dump(repo)
    proc = snakemake(workdir, "results/certified/run1/dark/b1.json", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, repo, observatory, before


def test_the_build_leaves_the_site_collections_untouched(site_build):
    workdir, repo, _, before = site_build
    assert outside_dump(repo) == before
    # a rebuild of the camera too
    targets = ["results/certified/run1/bias/b1.json", "results/certified/run1/dark/b1.json"]
    proc = snakemake(workdir, *targets, "--forcerun", *targets, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outside_dump(repo) == before
    # and a job killed inside its certification, then rerun
    env = {**os.environ, "PFSCALIB_FAULT": "certify", "PFSCALIB_FAULT_DIR": str(workdir / "faults-site")}
    killed = snakemake(workdir, targets[0], "--forcerun", targets[0], env=env, check=False)
    assert killed.returncode != 0
    assert snakemake(workdir, targets[0], env=env, check=False).returncode == 0
    assert outside_dump(repo) == before
    butler = Butler.from_config(str(repo))
    assert butler.collections.get_info(f"{RERUN}/calib").type is CollectionType.CHAINED
    assert f"{RERUN}/calib/bias" in butler.collections.get_info(f"{RERUN}/calib").children


def test_later_steps_use_the_build_s_own_bias(site_build):
    """The observatory's 5000 ADU bias overlaps run1; had the dark used it, its median would be far off."""
    workdir, repo, observatory, _ = site_build
    butler = Butler.from_config(str(repo))
    sentinel = json.loads((workdir / "results/certified/run1/dark/b1.json").read_text())
    dark = butler.get(butler.get_dataset(__import__("uuid").UUID(sentinel["datasetId"])))
    truth = load_demo(repo).truth("run1", "b1")
    assert abs(np.median(dark) / np.median(truth.dark_current) - 1) < 0.05
    bias = json.loads((workdir / "results/certified/run1/bias/b1.json").read_text())
    assert bias["calibCollection"] == f"{RERUN}/calib/bias" and bias["datasetId"] != observatory


def lookups(repo: Path, chain: str = "PFS/calib") -> dict:
    """What every demo visit's calibration lookup through the shared chain finds, per camera and type."""
    butler = Butler.from_config(str(repo))
    demo = load_demo(repo)
    out = {}
    for visit in butler.query_dimension_records("visit", where="instrument = 'PFS'", explain=False):
        for camera in demo.cameras:
            for dataset_type in ("bias", "dark", "defects"):
                data_id = {"instrument": "PFS", "arm": camera[0], "spectrograph": int(camera[1:])}
                if dataset_type == "defects":  # keyed by detector, as at a site (obs_pfs register())
                    data_id = {"instrument": "PFS", "detector": detector_id(camera[0], int(camera[1:]))}
                try:
                    ref = butler.find_dataset(dataset_type, data_id, collections=chain, timespan=visit.timespan)
                except Exception:  # a dataset type the registry does not know yet
                    ref = None
                out[(visit.id, camera, dataset_type)] = str(ref.id) if ref else None
    return out


def promote(workdir: Path, *args: str, env: dict | None = None):
    return run(["pfscalib", "promote", "--ticket", "PIPE2D-1", "--tag", "test", *args], cwd=workdir, env=env)


def test_promote_and_rollback_round_trip(site_build):
    workdir, repo, _, _ = site_build
    before = lookups(repo)
    proc = promote(workdir, "--steps", "bias,dark", "--cameras", "b1")
    assert proc.returncode == 0, proc.stderr
    after = lookups(repo)
    sentinel = json.loads((workdir / "results/certified/run1/dark/b1.json").read_text())
    run1_visit = next(k for k in after if k[1] == "b1" and k[2] == "dark" and 100 <= k[0] < 200)
    record = json.loads(sorted((workdir / "results/promotions").glob("*.json"))[-1].read_text())
    copy = record["copies"][sentinel["datasetId"]]
    assert after[run1_visit] == copy != sentinel["datasetId"]  # the shared chain now finds a copy of the build's dark
    butler = Butler.from_config(str(repo))
    first = butler.collections.get_info("PFS/calib").children[0]
    assert first.startswith("PFS/calib/PIPE2D-1/test/") and first[-9:-1].isdigit()  # <product>.<YYYYMMDD><letter>
    iteration = first.rsplit(".", 1)[1]
    assert butler.get_dataset(__import__("uuid").UUID(copy)).run == f"PFS/calib/PIPE2D-1/test/darkGen.{iteration}"
    # the same promotion again conflicts: refused in one line, nothing changed
    chain = butler.collections.get_info("PFS/calib").children
    again = promote(workdir, "--steps", "bias,dark", "--cameras", "b1")
    errors = [ln for ln in again.stderr.splitlines() if ln.startswith("pfscalib:")]
    assert again.returncode != 0 and len(errors) == 1 and "already certified in PFS/calib" in errors[0]
    assert Butler.from_config(str(repo)).collections.get_info("PFS/calib").children == chain
    record = sorted((workdir / "results/promotions").glob("*.json"))[-1]
    assert json.loads(record.read_text())["status"] == "done"
    proc = run(["pfscalib", "rollback", "--repo", str(repo), str(record)], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert lookups(repo) == before


@pytest.mark.parametrize("point", PROMOTE_FAULT_POINTS)
def test_a_killed_promotion_leaves_the_old_or_the_new_chain(site_build, point):
    workdir, repo, _, _ = site_build
    butler = Butler.from_config(str(repo))
    old = butler.collections.get_info("PFS/calib").children
    env = {**os.environ, "PFSCALIB_FAULT": point, "PFSCALIB_FAULT_DIR": str(workdir / f"faults-{point}")}
    killed = promote(workdir, "--steps", "bias", "--cameras", "b1", env=env)
    assert killed.returncode != 0 and "injected fault" in killed.stderr
    chain = Butler.from_config(str(repo)).collections.get_info("PFS/calib").children
    assert chain == old or (chain[1:] == old and chain[0].startswith("PFS/calib/PIPE2D-1/test/bias."))
    proc = promote(workdir, "--steps", "bias", "--cameras", "b1", env=env)  # finishes it
    assert proc.returncode == 0, proc.stderr
    butler = Butler.from_config(str(repo))
    new = butler.collections.get_info("PFS/calib").children
    assert new[1:] == old and new[0].startswith("PFS/calib/PIPE2D-1/test/bias.")
    gen = new[0].replace("/bias.", "/biasGen.")  # the resumed promotion copied nothing twice
    assert len(butler.query_datasets("bias", collections=gen, explain=False)) == 1
    record = sorted((workdir / "results/promotions").glob("*.json"))[-1]
    assert run(["pfscalib", "rollback", "--repo", str(repo), str(record)], cwd=workdir).returncode == 0
    assert Butler.from_config(str(repo)).collections.get_info("PFS/calib").children == old


def test_each_epoch_s_copy_of_one_camera_has_its_own_run():
    """A RUN holds one dataset per type and data ID: two epochs' b1 bias go to <Gen RUN>/<epoch>."""
    from pfscalib.tools.promote import gen_run, run_names

    names = {"bias": "PFS/calib/T/t/bias.20261207a", "dark": "PFS/calib/T/t/dark.20261207a"}
    assert gen_run(names["bias"]) == "PFS/calib/T/t/biasGen.20261207a"
    b1 = {"instrument": "PFS", "arm": "b", "spectrograph": 1}
    sentinels = [
        {"path": f"{e}/{t}", "epoch": e, "datasetType": t, "dataId": b1} for e in ("run1", "run2") for t in names
    ]
    sentinels = sentinels[:3]  # bias of run1 and run2, dark of run1 only
    assert run_names(names, sentinels) == {
        "run1/bias": "PFS/calib/T/t/biasGen.20261207a/run1",
        "run2/bias": "PFS/calib/T/t/biasGen.20261207a/run2",
        "run1/dark": "PFS/calib/T/t/darkGen.20261207a",
    }


def test_no_copy_links_and_says_what_it_risks(site_build):
    workdir, repo, _, _ = site_build
    proc = promote(workdir, "--steps", "bias", "--cameras", "b1", "--no-copy")
    assert proc.returncode == 0, proc.stderr
    sentinel = json.loads((workdir / "results/certified/run1/bias/b1.json").read_text())
    butler = Butler.from_config(str(repo))
    first = butler.collections.get_info("PFS/calib").children[0]
    assert [str(c.id) for c in butler.query_datasets("bias", collections=first, explain=False)] == [
        sentinel["datasetId"]
    ]  # the build's own dataset, not a copy
    warning = [ln for ln in proc.stderr.splitlines() if "--no-copy" in ln]
    assert len(warning) == 1 and f"depend on {sentinel['run']} surviving" in warning[0]
    record = sorted((workdir / "results/promotions").glob("*.json"))[-1]
    assert run(["pfscalib", "rollback", "--repo", str(repo), str(record)], cwd=workdir).returncode == 0


def test_promoted_calibrations_survive_removing_the_whole_rerun(site_build):
    """Finding 8: a routine `butler remove-runs 'u/<user>/*'` after a promotion leaves every promoted lookup
    through PFS/calib finding a dataset whose file is byte for byte the build's (the promotion copied it).
    Destroys the build's runs: the module's last test."""
    workdir, repo, _, _ = site_build
    proc = promote(workdir, "--steps", "bias,dark", "--cameras", "b1")
    assert proc.returncode == 0, proc.stderr
    butler = Butler.from_config(str(repo))
    record = json.loads(sorted((workdir / "results/promotions").glob("*.json"))[-1].read_text())
    assert record["status"] == "done" and record["copy"] is True
    expected = {}  # (dataset type, visit) -> the original file's bytes, for every visit of its validity
    for step in ("bias", "dark"):
        sentinel = json.loads((workdir / f"results/certified/run1/{step}/b1.json").read_text())
        original = butler.get_dataset(__import__("uuid").UUID(sentinel["datasetId"]))
        content = butler.getURI(original).read()
        bounds = [sentinel["validity"][k] for k in ("begin", "end")]
        validity = Timespan(*(Time(v, scale="tai") if v else None for v in bounds))
        gen = f"PFS/calib/PIPE2D-1/test/{step}Gen.{record['collections'][step].rsplit('.', 1)[1]}"
        assert record["runs"][str(Path("results/certified/run1") / step / "b1.json")] == gen
        for visit in butler.query_dimension_records("visit", where="instrument = 'PFS'", explain=False):
            if validity.contains(visit.timespan.begin):
                expected[(step, visit.id)] = (visit.timespan, sentinel["dataId"], content)
    assert len(expected) >= 2
    removed = run(["butler", "remove-runs", str(repo), f"{RERUN}/*", "--no-confirm", "--force"], cwd=workdir)
    assert removed.returncode == 0, removed.stderr
    butler = Butler.from_config(str(repo))
    assert not list(butler.collections.query(f"{RERUN}/*", collection_types={CollectionType.RUN}))
    for (step, visit), (timespan, data_id, content) in expected.items():
        ref = butler.find_dataset(step, data_id, collections="PFS/calib", timespan=timespan)
        assert ref is not None, f"{step} of visit {visit}: nothing found through PFS/calib"
        assert butler.getURI(ref).read() == content, f"{step} of visit {visit}: another file"
