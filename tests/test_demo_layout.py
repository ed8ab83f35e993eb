"""The demo repository in the current layout looks like a Subaru datastore today (pfs-real-site.md sections
1-3): collections, visit records, the site's camera and defects that ISR requires, and the stand-ins for
drp_stella's scripts found in <repo>/bin rather than installed. The legacy layout is the guide's first
revision's (its commands run in test_seed_sequence)."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time
from lsst.daf.butler import Butler, CollectionType, Timespan

from pfscalib.demo import simulate
from pfscalib.demo.instrument import detector_id
from pfscalib.demo.make_repo import (
    CALIB,
    DEFAULTS,
    LAYOUTS,
    PFS_CONFIG_RUN,
    RAW_ALL,
    RAW_SPS,
    SHIMS,
    SITE_BIAS,
    SITE_CALIBRATIONS,
    SITE_CAMERA,
    SITE_DARK,
    SITE_DEFECTS,
    SITE_NIR,
    SITE_NIR_DARK,
    bin_dir,
    load_demo,
    main,
    make_repo,
)

from conftest import TEST_CAMERAS, VENV_BIN, pipetask_run, run

SUBARU_LAMPS = {"Ne", "HgAr", "Ar", "Kr", "Xe"}
FOREVER = Timespan(None, None)


def collection_types(butler: Butler) -> dict[str, CollectionType]:
    return {info.name: info.type for info in butler.collections.query_info("*")}


def chain(butler: Butler, name: str) -> list[str]:
    return list(butler.collections.get_info(name).children)


def certifications(butler: Butler, dataset_type: str, collection: str) -> dict[str, Timespan]:
    """Camera (or instrument) -> validity range of each certification in a CALIBRATION collection."""
    out = {}
    for assoc in butler.registry.queryDatasetAssociations(dataset_type, collections=collection):
        data_id = assoc.ref.dataId
        key = f"{data_id['arm']}{data_id['spectrograph']}" if "arm" in data_id else data_id["instrument"]
        out[key] = assoc.timespan
    return out


def check_current_collections(butler: Butler) -> None:
    types = collection_types(butler)
    assert types[RAW_SPS] is CollectionType.RUN
    assert types[PFS_CONFIG_RUN] is CollectionType.RUN
    assert RAW_ALL not in types  # only older repositories have it
    assert types[CALIB] is CollectionType.CHAINED
    # a site's PFS/calib: NIR dark cubes, NIR calibrations, (m's) bias and dark, defects, camera
    assert chain(butler, CALIB) == list(SITE_CALIBRATIONS)
    assert list(SITE_CALIBRATIONS) == [SITE_NIR_DARK, SITE_NIR, SITE_BIAS, SITE_DARK, SITE_DEFECTS, SITE_CAMERA]
    assert all(types[c] is CollectionType.CALIBRATION for c in SITE_CALIBRATIONS)
    assert types[DEFAULTS] is CollectionType.CHAINED
    assert chain(butler, DEFAULTS) == ["PFS/raw/pfsConfig", "PFS/raw/sps", "PFS/calib"]


def check_site_calibrations(butler: Butler, cameras: tuple[str, ...], defects: str, camera: str) -> None:
    assert certifications(butler, "defects", defects) == dict.fromkeys(cameras, FOREVER)
    assert certifications(butler, "camera", camera) == {"PFS": FOREVER}


# ----------------------------------------------------------------------------------------------- current
def test_current_layout_collections(demo_template):
    butler = Butler.from_config(str(demo_template))
    assert load_demo(demo_template).layout == "current"
    check_current_collections(butler)


def test_raws_only_in_raw_sps(demo_template):
    butler = Butler.from_config(str(demo_template))
    demo = load_demo(demo_template)
    raws = butler.query_datasets("raw", collections="*", find_first=False, explain=False)
    assert {ref.run for ref in raws} == {RAW_SPS} == {demo.raw_run}
    assert len(raws) == len(demo.visits) * len(TEST_CAMERAS)
    configs = butler.query_datasets("pfsConfig", collections="*", find_first=False, explain=False)
    assert {ref.run for ref in configs} == {PFS_CONFIG_RUN}


def test_visit_records_as_subaru_writes_them(demo_template):
    butler = Butler.from_config(str(demo_template))
    records = list(butler.registry.queryDimensionRecords("visit", instrument="PFS"))
    by_type: dict[str, list] = {}
    for record in records:
        by_type.setdefault(record.observation_type, []).append(record)
        assert record.target_name == record.observation_type  # lower case, as since 2023-12
    assert set(by_type) == {"bias", "dark", "flat", "comparison"}  # arcs are 'comparison', never 'arc'
    assert all(r.lamps == "Quartz" for r in by_type["flat"])  # every quartz, the fibre-profile ones too
    assert all(r.lamps and set(r.lamps.split(",")) <= SUBARU_LAMPS for r in by_type["comparison"])
    assert len({r.lamps for r in by_type["comparison"]}) > 1
    assert all(not r.lamps for t in ("bias", "dark") for r in by_type[t])
    # The demo's arcs, found the way a site selects them.
    arcs = {r.id for r in butler.registry.queryDimensionRecords("visit", where="visit.observation_type = 'comparison'")}
    assert arcs == {s.visit for s in load_demo(demo_template).visit_specs() if s.kind == "arc"}


def test_site_defects_and_camera_certified_per_camera(demo_template):
    butler = Butler.from_config(str(demo_template))
    check_site_calibrations(butler, TEST_CAMERAS, SITE_DEFECTS, SITE_CAMERA)
    # Found through PFS/defaults by detector and a visit's time, as ISR looks them up (real defects are keyed by
    # detector: obs_pfs PrimeFocusSpectrograph.py:176-182).
    t = Time("2025-03-10T09:00:00", scale="utc")
    for camera in TEST_CAMERAS:
        arm, spectrograph = simulate.split_camera(camera)
        defects = butler.get(
            "defects",
            instrument="PFS",
            detector=detector_id(arm, spectrograph),
            collections=DEFAULTS,
            timespan=Timespan(t, t + 1e-6),
        )
        assert defects == {"x0": [simulate.hot_column(camera)], "y0": [0], "width": [1], "height": [simulate.NY]}


def test_a_finished_repo_of_another_layout_is_not_reused(demo_repo):
    with pytest.raises(FileExistsError, match="current layout, not legacy"):
        make_repo(demo_repo, TEST_CAMERAS, layout="legacy")
    assert make_repo(demo_repo, TEST_CAMERAS).layout == "current"
    with pytest.raises(SystemExit):
        main([str(demo_repo), "--layout", "newest"])


# ----------------------------------------------------------------------------------------------- ISR
def pipetask_bias(repo: Path, camera: str, output: str):
    arm, spectrograph = simulate.split_camera(camera)
    where = (
        f"instrument='PFS' AND visit.target_name = 'bias' AND visit.day_obs = 20250310 "
        f"AND arm = '{arm}' AND spectrograph = {spectrograph}"
    )
    return pipetask_run(repo, DEFAULTS, output, "bias.yaml", where)


def test_isr_requires_the_site_defects(demo_repo):
    """A camera whose defects are decertified fails at QuantumGraph generation with the middleware's own
    error; the others still build (their ISR reads camera and defects through PFS/defaults)."""
    decertify = run(
        [
            str(bin_dir(demo_repo) / "butlerDecertify.py"),
            str(demo_repo),
            SITE_DEFECTS,
            "defects",
            "--id",
            "instrument=PFS",
            f"detector={detector_id('b', 1)}",  # defects are keyed by detector, as at a site
        ]
    )
    assert decertify.returncode == 0, decertify.stderr[-2000:]
    butler = Butler.from_config(str(demo_repo))
    assert set(certifications(butler, "defects", SITE_DEFECTS)) == set(TEST_CAMERAS) - {"b1"}

    bad = pipetask_bias(demo_repo, "b1", "u/t/bias/b1")
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "Not enough datasets (0) found for non-optional connection isr.defects (defects)" in out
    assert "arm: 'b', spectrograph: 1" in out
    assert "u/t/bias/b1" not in Butler.from_config(str(demo_repo)).collections.query("u/*")  # nothing written

    good = pipetask_bias(demo_repo, "r1", "u/t/bias/r1")
    assert good.returncode == 0, good.stderr[-3000:]
    butler = Butler.from_config(str(demo_repo))
    assert len(butler.query_datasets("bias", collections="u/t/bias/r1", explain=False)) == 1


def test_isr_defect_geometry():
    """Defects outside the data region are refused; with isr:doInterpolate=True a bad column is bridged."""
    from pfscalib.demo.tasks.calib import defect_mask, interpolate_defects

    with pytest.raises(RuntimeError, match="outside"):
        defect_mask({"x0": [simulate.NX], "y0": [0], "width": [1], "height": [1]}, (simulate.NY, simulate.NX))
    data = np.tile(np.arange(8.0), (3, 1))
    bad = defect_mask({"x0": [3], "y0": [0], "width": [2], "height": [3]}, data.shape)
    data[bad] = 1e4
    assert np.array_equal(interpolate_defects(data, bad), np.tile(np.arange(8.0), (3, 1)))


# ----------------------------------------------------------------------------------------------- scripts
def test_shims_are_in_the_repo_and_run(demo_repo, demo_template):
    """Written into the template, they run from a copy elsewhere: nothing in them names the repository."""
    directory = bin_dir(demo_repo)
    assert sorted(p.name for p in directory.iterdir()) == sorted(SHIMS)
    for script in SHIMS:
        path = directory / script
        assert os.access(path, os.X_OK)
        text = path.read_text()
        assert str(demo_template) not in text and str(demo_repo) not in text
        proc = run([str(path), "--help"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith(f"usage: {script}")


def test_no_drp_stella_script_is_installed():
    """Installed into a site's stack, stand-ins under drp_stella's names would shadow the real scripts."""
    assert not [s for s in SHIMS if (VENV_BIN / s).exists()]
    scripts = {ep.name for ep in metadata.distribution("pfscalib").entry_points if ep.group == "console_scripts"}
    assert scripts == {"pfscalib"}


# ----------------------------------------------------------------------------------------------- legacy
def test_legacy_layout_is_the_guides(legacy_template):
    butler = Butler.from_config(str(legacy_template))
    assert load_demo(legacy_template).layout == "legacy"
    types = collection_types(butler)
    assert types[RAW_ALL] is CollectionType.RUN
    assert types[RAW_SPS] is CollectionType.CHAINED and chain(butler, RAW_SPS) == [RAW_ALL]
    assert types[CALIB] is CollectionType.CALIBRATION
    assert DEFAULTS not in types and not set(SITE_CALIBRATIONS) & set(types)
    raws = butler.query_datasets("raw", collections="*", find_first=False, explain=False)
    assert {ref.run for ref in raws} == {RAW_ALL}
    check_site_calibrations(butler, TEST_CAMERAS, CALIB, CALIB)  # certified directly in PFS/calib
    records = list(butler.registry.queryDimensionRecords("visit", instrument="PFS"))
    assert {r.observation_type for r in records} == {"bias", "dark", "flat", "arc"}
    assert {r.target_name for r in records} == {"BIAS", "DARK", "FLAT", "ARC"}
    assert {r.lamps for r in records if r.observation_type == "arc"} == {"Ar,Kr,Ne"}
    assert sorted(p.name for p in bin_dir(legacy_template).iterdir()) == sorted(SHIMS)


# ----------------------------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
@pytest.mark.parametrize("layout", LAYOUTS)
def test_both_layouts_on_a_postgresql_registry(tmp_path, postgres_url, layout):
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:  # one database for both layouts: start each from an empty schema
        connection.execute(sqlalchemy.text("DROP SCHEMA IF EXISTS pfscalib_demo CASCADE"))
    engine.dispose()
    repo = tmp_path / "repo"
    build = ["python", "-m", "pfscalib.demo.make_repo", str(repo), "--cameras", "b1"]
    proc = run(build + ["--epochs", "run1=2025-03-10T08:00:00", "--registry-db", postgres_url, "--layout", layout])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert postgres_url in (repo / "butler.yaml").read_text()  # the demo's seed config, registry.db changed
    assert not list(repo.glob("*.sqlite3"))
    butler = Butler.from_config(str(repo))
    if layout == "current":
        check_current_collections(butler)
        check_site_calibrations(butler, ("b1",), SITE_DEFECTS, SITE_CAMERA)
    else:
        assert chain(butler, RAW_SPS) == [RAW_ALL]
        check_site_calibrations(butler, ("b1",), CALIB, CALIB)
    assert sorted(p.name for p in bin_dir(repo).iterdir()) == sorted(SHIMS)
