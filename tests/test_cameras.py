"""Issue #18: every PFS camera gets the steps it really needs (pfscalib.plan.steps.ARMS).

n (NIR, H4RG): no bias or dark job; its ISR reads the site's nirDark, checked at each visit before any job.
m (medium resolution): bias and dark from r of the same spectrograph (the ISR's r<->m fallback); its own
bootstrap pair and fibre-profile groups (one profiles_run per epoch and mode: <epoch>_brn, <epoch>_m).
One end-to-end run on b2, r2, n1, m2 and one epoch, compared with the simulated truth (README tolerances).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from lsst.daf.butler import Butler, CollectionType, Timespan

from pfscalib.demo import detmap, simulate
from pfscalib.demo.make_repo import SITE_BIAS_RUN, SITE_DARK_RUN, SITE_NIR_DARK, load_demo
from pfscalib.job import butler as butlerops
from pfscalib.plan.config import ConfigError
from pfscalib.plan.steps import ARMS, STEP_NAMES, role
from pfscalib.plan.workflow import Workflow

from conftest import PROJECT
from helpers import snakemake

CAMERAS = ["b2", "r2", "n1", "m2"]
BRN, M = "b,r,n", "m"
# run1's visits (pfscalib.demo.simulate.epoch_visits): brn mode 100..127, the same lit set in m mode 128..147
TABLES = {
    "bias": [("100..104", "")],
    "dark": [("105..107", "")],
    "flat": [("108..113", BRN), ("128..133", M)],
    "bootstrap": [("108^114", BRN), ("128^134", M)],
    "detectorMap": [("108..109^114..115", BRN), ("128..129^134..135", M)],
    "fiberNorms": [("108..109", BRN), ("128..129", M)],
}
PROFILES = [
    (f"{first + 3 * g}..{first + 3 * g + 1}", cams, g, "bright")
    for first, cams in ((116, BRN), (136, M))
    for g in range(4)
]
PROFILES += [(str(first + 3 * g + 2), cams, g, "dark") for first, cams in ((116, BRN), (136, M)) for g in range(4)]


def cameras_workdir(tmp: Path, cameras=CAMERAS, tables=None, profiles=None, **changes) -> Path:
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config.update(cameras=cameras, pipelines_dir=str(PROJECT / "scripts/pfscalib/demo/pipelines"))
    config["limits"] = str(PROJECT / config["limits"])  # the demo's limits file, from any work directory
    config["spectralOffset"] = {c: simulate.DEFAULT_SPECTRAL_OFFSET[c] for c in cameras}
    config["epochs"] = {"run1": config["epochs"]["run1"]}
    config["demo"]["epochs"] = {"run1": config["demo"]["epochs"]["run1"]}
    (tmp / "visits").mkdir(parents=True, exist_ok=True)
    for step, rows in (tables or TABLES).items():
        text = "epoch\tvisits\tcameras\n" + "".join(f"run1\t{v}\t{c}\n" for v, c in rows)
        (tmp / f"visits/{step}.tsv").write_text(text)
        config["visits"][step] = str(tmp / f"visits/{step}.tsv")
    text = "epoch\tvisits\tcameras\tgroup\trole\n" + "".join(
        f"run1\t{v}\t{c}\t{g}\t{r}\n" for v, c, g, r in profiles or PROFILES
    )
    (tmp / "visits/fiberProfiles.tsv").write_text(text)
    config["visits"]["fiberProfiles"] = str(tmp / "visits/fiberProfiles.tsv")
    config.update(changes)
    (tmp / "config").mkdir(exist_ok=True)
    (tmp / "config/config.yaml").write_text(yaml.safe_dump(config))
    return tmp


@pytest.fixture(scope="module")
def cameras_run(tmp_path_factory):
    workdir = cameras_workdir(tmp_path_factory.mktemp("cameras"))
    snakemake(workdir, rerun_incomplete=False)
    return workdir


def calib(butler, dataset_type, arm, spectrograph=None):
    t = butlerops.parse_date("2025-03-10T09:00:00")
    data_id = {"arm": arm} | ({"spectrograph": spectrograph} if spectrograph else {})
    return butler.get(dataset_type, instrument="PFS", timespan=Timespan(t, t), collections="u/demo/calib", **data_id)


def robust_chi(flat, truth):
    """(measured/true - 1) over the photon noise of the dithers ditherCombine accepted (test_seed_sequence)."""
    var, count = np.zeros(flat.shape), np.zeros(flat.shape)
    for dither in simulate.DITHERS:
        counts = (
            truth.fiber_image(truth.quartz_flux(), np.ones(simulate.NFIBER, bool), dither) + truth.scattered_light()
        )
        accepted = counts * np.sqrt(2) / np.sqrt(counts + simulate.READ_NOISE**2) >= 50
        var += np.where(accepted, (counts + simulate.READ_NOISE**2) / (2 * counts**2), 0)
        count += accepted
    with np.errstate(invalid="ignore", divide="ignore"):
        chi = (flat / truth.pixel_response - 1) / (np.sqrt(var) / np.maximum(count, 1))
    return chi[(count > 0) & np.isfinite(chi)]


def test_each_camera_certifies_exactly_its_calibrations_matching_truth(cameras_run):
    built = {
        p.relative_to(cameras_run / "results/certified/run1").as_posix()
        for p in cameras_run.glob("results/certified/run1/*/*.json")
    }
    expected = {f"{s}/{c}.json" for s in ("flat", "bootstrap", "detectorMap", "fiberProfiles") for c in CAMERAS}
    expected |= {f"{s}/{c}.json" for s in ("bias", "dark") for c in ("b2", "r2")}  # none for n1 (no bias), m2 (r2's)
    assert built == expected | {f"fiberNorms/{a}.json" for a in "brnm"}
    assert not list(cameras_run.glob("logs/run1/bias/[nm]1.log")) and not list(
        cameras_run.glob("logs/run1/dark/[nm]1.log")
    )
    # one profiles_run per mode; each camera's fiberProfiles selected its own mode's
    for mode in ("brn", "m"):
        assert (
            json.loads((cameras_run / f"results/fiberProfilesInputs/run1/{mode}.json").read_text())["profiles_run"]
            == f"run1_{mode}"
        )
    for camera in CAMERAS:
        sentinel = json.loads((cameras_run / f"results/certified/run1/fiberProfiles/{camera}.json").read_text())
        assert f"profiles_run = 'run1_{'m' if camera == 'm2' else 'brn'}'" in " ".join(sentinel["commands"][0])
    # m2's and n1's ISRs ran with doBias and doDark: the workflow builds no m or n bias or dark; m2's took the
    # site's own m2 ones first (obs_pfs isrTask.py:666-697, r2's only as a fallback), n1's took none and the site's
    # nirDark (without it: test_missing_site_nir_dark_...)
    butler = Butler.from_config(str(cameras_run / "results/demo/repo"))
    for dataset_type in ("bias", "dark"):
        runs = butler.collections.query("u/*", collection_types={CollectionType.RUN})  # the workflow's own
        refs = butler.query_datasets(dataset_type, collections=runs, find_first=False, explain=False)
        assert {ref.dataId["arm"] for ref in refs} == {"b", "r"}
        site = butler.query_datasets(dataset_type, collections="PFS/calib", find_first=False, explain=False)
        assert {ref.dataId["arm"] for ref in site} == {"m"}
    demo = load_demo(cameras_run / "results/demo/repo")
    for camera in CAMERAS:
        truth, arm, spectrograph = demo.truth("run1", camera), camera[0], int(camera[1:])
        chi = robust_chi(calib(butler, "fiberFlat", arm, spectrograph), truth)
        assert chi.size > 0.5 * simulate.NX * simulate.NY and np.median(np.abs(chi)) / 0.6745 < 1.3, camera
        dm = calib(butler, "detectorMap_calib", arm, spectrograph)
        wavelengths, _ = simulate.arc_lines(arm)
        fitted = np.array([detmap.line_y(dm, i, wavelengths) for i in range(simulate.NFIBER)])
        assert np.sqrt(np.mean((fitted - truth.line_y(wavelengths)) ** 2)) < 0.1, camera
        profiles = calib(butler, "fiberProfiles", arm, spectrograph)
        sigma = np.array([profiles["fibers"][str(f)]["sigma"] for f in truth.fiber_ids])
        assert np.max(np.abs(sigma / truth.fiber_sigma - 1)) < 0.05, camera
        norms = calib(butler, "fiberNorms_calib", arm)
        measured = np.array([norms["norm"][str(f)] for f in truth.fiber_ids])
        assert np.max(np.abs(measured / (truth.throughput / truth.throughput.mean()) - 1)) < 0.01, camera
    # m's arc lines follow m's dispersion: 0.4/0.9 of r's nm per row
    m_span, r_span = (np.ptp(simulate.ARM_RANGE[a]) for a in "mr")
    assert m_span / r_span == pytest.approx(0.4 / 0.9)


def test_status_shows_what_does_not_apply(cameras_run, monkeypatch):
    from pfscalib.tools.status import status_table

    monkeypatch.chdir(cameras_run)
    wf = Workflow(yaml.safe_load(Path("config/config.yaml").read_text()))
    table = status_table(wf).set_index(["step", "camera"])["status"]
    assert table[("bias", "n1")] == "n/a" and table[("bias", "r2")] == "pass"
    # m2 builds no bias or dark, and its ISR took the site's own m2 ones, not r2's (obs_pfs isrTask.py:666-697):
    # status says what the ISR used (its header provenance, in the sentinel), never "from r2" by assumption
    for step, site_run in (("bias", SITE_BIAS_RUN), ("dark", SITE_DARK_RUN)):
        assert table[("flat", "m2")] == "pass" and table[(step, "m2")].startswith(f"n/a: m2's {step} from {site_run}")
    flat = json.loads(Path("results/certified/run1/flat/m2.json").read_text())["calibInputs"]
    assert flat["bias"]["dataId"] == {"instrument": "PFS", "arm": "m", "spectrograph": 2}
    assert flat["bias"]["run"].startswith(SITE_BIAS_RUN) and flat["dark"]["run"].startswith(SITE_DARK_RUN)
    b2 = json.loads(Path("results/certified/run1/flat/b2.json").read_text())["calibInputs"]
    assert b2["bias"]["run"].startswith("u/demo/run1/bias/b2/") and b2["dark"]["run"].startswith("u/demo/run1/dark/b2/")
    n1 = json.loads(Path("results/certified/run1/flat/n1.json").read_text())["calibInputs"]
    assert n1["nirdark"]["datasetType"] == "nirDark" and "bias" not in n1
    assert table[("flat", "n1")] == "pass" and table[("bias", "r2")] == "pass"


def test_missing_site_nir_dark_stops_the_run_before_any_job(cameras_run, tmp_path):
    workdir = cameras_workdir(tmp_path)
    shutil.copytree(cameras_run / "results/demo/repo", workdir / "results/demo/repo")
    butler = Butler.from_config(str(workdir / "results/demo/repo"), writeable=True)
    butler.registry.decertify(
        SITE_NIR_DARK, "nirDark", Timespan(None, None), dataIds=[{"instrument": "PFS", "arm": "n", "spectrograph": 1}]
    )
    proc = snakemake(workdir, check=False, rerun_incomplete=False)
    assert proc.returncode != 0
    # looked up at each of n1's visits (the site's cube is valid from its first dark visit on): the first one
    line = "n1: the site's nirDark is not certified at visit 108 ("
    log = (workdir / "logs/run1/check_visits.log").read_text()
    assert line in log and len([ln for ln in log.splitlines() if "check-visits" in ln]) == 1
    assert line in proc.stdout + proc.stderr  # on the console, not only in the job's log
    assert not (workdir / "results/registry").exists() and not list(workdir.glob("logs/run1/*/"))


# ------------------------------------------------------------------ applicability and grouping (no registry)
def test_applicability_defaults_and_overrides():
    assert [role(s, "n1", {}) for s in STEP_NAMES] == ["skip", "skip"] + ["build"] * 5
    assert [role(s, "m2", {}) for s in STEP_NAMES] == ["borrow", "borrow"] + ["build"] * 5
    assert all(role(s, c, {}) == "build" for s in STEP_NAMES for c in ("b3", "r4"))
    assert (
        role("bias", "m2", {"m": {"bias": "build"}}) == "build"
        and role("flat", "b1", {"b1": {"flat": "skip"}}) == "skip"
    )
    assert ARMS["n"].site_calibrations == ("nirDark",)
    site = Workflow(yaml.safe_load((PROJECT / "config/pfs.example-m.yaml").read_text()), "pfs.example-m.yaml")
    # m1's flat reads r1's dark; n1's flat reads no dark; fiberNorms of arm m waits for every m camera
    assert site.needs("flat", "run18", "m1") == ["results/certified/run18/dark/r1.json"]
    assert site.needs("flat", "run18", "n1") == []
    assert site.units("bias") == [c for c in site.cameras if c[0] in "br"] and "n1" in site.units("flat")
    assert site.needs("fiberNorms", "run18", "m") == [
        f"results/certified/run18/fiberProfiles/m{k}.json" for k in range(1, 5)
    ]


def test_fibre_profile_groups_per_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the record of a previous definition is read from results/
    config = yaml.safe_load((PROJECT / "config/pfs.example-m.yaml").read_text())
    config["visits"] = {k: str(PROJECT / v) for k, v in config["visits"].items()}
    site = Workflow(config, "pfs.example-m.yaml")
    assert (
        len(site.selections.profile_groups("run18", "brn")) == 4
        and len(site.selections.profile_groups("run18", "m")) == 2
    )
    assert "profiles_run = 'run18_m' AND arm='m' AND spectrograph=3" in site.commands.where(
        "fiberProfiles", "run18", "m3"
    )
    assert "profiles_run = 'run18_brn' AND arm='n'" in site.commands.where("fiberProfiles", "run18", "n2")
    define = site.commands.define_profiles("run18", "m")
    assert define.count("--bright") == 2 and "115855..115863" in define and "113855" not in define
    # defined before with other groups (the table was edited since): a new, still readable name
    record = Path("results/fiberProfilesInputs/run18/m.json")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"profiles_run": "run18_m", "groups": [["1", "2"]]}))
    renamed = Workflow(config, "pfs.example-m.yaml").profiles_run("run18", "m")
    assert renamed.startswith("run18_m_") and len(renamed) == len("run18_m_") + 6


def bad(tmp_path, **edit) -> str:
    with pytest.raises(ConfigError) as error:
        Workflow(yaml.safe_load((cameras_workdir(tmp_path, **edit) / "config/config.yaml").read_text()))
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_inputs_one_line_each(tmp_path):
    lacking = [p for p in PROFILES if not (p[1] == M and p[2] == 3 and p[3] == "dark")]
    assert "mode m: either every fiberProfiles group has dark visits or none has" in bad(
        tmp_path / "1", profiles=lacking
    )
    only_m2 = [(v, "m2" if (c == M and g == 3) else c, g, r) for v, c, g, r in PROFILES]
    message = bad(tmp_path / "2", cameras=[*CAMERAS, "m1", "r1"], profiles=only_m2)
    assert "camera m1 lacks group 3, group 3 dark of mode m's fibre-profile groups" in message
    no_m_pair = {**TABLES, "bootstrap": [("108^114", BRN)]}
    assert bad(tmp_path / "3", tables=no_m_pair).endswith("bootstrap.tsv: no visits for epoch run1 and camera m2")
    n_bias = {**TABLES, "bias": [("100..104", "r2"), ("100..104", "n1")]}
    message = bad(tmp_path / "4", tables=n_bias)
    assert (
        "bias.tsv: row 3 (column cameras): bias is not built for n1: the ISR of an n (H4RG) camera takes no bias"
        in message
    )
    assert "camera_steps.n1.bias: cannot be built" in bad(tmp_path / "5", camera_steps={"n1": {"bias": "build"}})
    assert "m2 takes its bias from r2" in bad(tmp_path / "6", cameras=["b2", "m2"], spectralOffset={"b2": 0, "m2": 2})
