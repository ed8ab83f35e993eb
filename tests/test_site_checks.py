"""Issue #28, findings 1-3 and 9: the epoch's check finds the site's calibrations as obs_pfs's ISR does, on a
demo registry shaped as a real site's (tests/test_site_facts.py holds the definitions and their sources).

- defects are keyed by detector (required dimensions instrument, detector): found from the camera's arm and
  spectrograph (obs_pfs fe94433 isrTask.py:588-616); a lookup that fails is one line, never a traceback.
- nirDark is valid from its first dark visit on, open-ended (combineNirDark.py:91-96, 179-182): looked up at
  each n visit, as nirDark_irp4 for a ramp of IRP ratio 4 (isrTask.py:736-760, 816-849).
- every visit a pipeline reads the pfsConfig of has one (drp_stella 3a705d9 bootstrap.py:155-156).
- badRefPixels / h4Linearity missing only make the ISR warn (isrTask.py:1568-1598): named, not refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from astropy.time import Time
from lsst.daf.butler import Butler, Timespan

from pfscalib.demo import simulate
from pfscalib.job.run import site_lacking
from pfscalib.plan.workflow import Workflow
from pfscalib.tools.status import status_table, summary

from conftest import PROJECT
from helpers import snakemake

CAMERAS = ("b1", "n1")
EPOCH = "run1"


@pytest.fixture
def workdir(tmp_path, nir_template) -> Path:
    """A work directory with the demo config for b1 and n1, the repository copied in."""
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config.update(cameras=list(CAMERAS), pipelines_dir=str(PROJECT / "scripts/pfscalib/demo/pipelines"))
    config["limits"] = str(PROJECT / config["limits"])
    config["spectralOffset"] = {c: simulate.DEFAULT_SPECTRAL_OFFSET[c] for c in CAMERAS}
    config["visits"] = {step: str(PROJECT / path) for step, path in config["visits"].items()}
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(nir_template, tmp_path / "results/demo/repo")
    return tmp_path


def check(workdir: Path, epoch: str = EPOCH):
    """The epoch's check job, as the workflow runs it before any pipetask job."""
    return snakemake(workdir, f"results/checks/{epoch}.json", cores=1, check=False, rerun_incomplete=False)


def check_line(workdir: Path, epoch: str = EPOCH) -> str:
    lines = (workdir / f"logs/{epoch}/check_visits.log").read_text().splitlines()
    return next(ln for ln in lines if "check-visits" in ln)


def writeable(workdir: Path) -> Butler:
    return Butler.from_config(str(workdir / "results/demo/repo"), writeable=True)


def n1_visits(butler: Butler, irp_ratio: int | None) -> list[int]:
    """The demo's n1 visits of one IRP ratio (the registry's visit.irp_ratio)."""
    refs = butler.query_datasets(
        "raw", collections="PFS/raw/sps", where="instrument = 'PFS' AND arm = 'n'", explain=False
    )
    records = butler.query_dimension_records("visit", where="instrument = 'PFS'", explain=False)
    ratio = {r.id: r.irp_ratio for r in records}
    return sorted({ref.dataId["visit"] for ref in refs if (ratio[ref.dataId["visit"]] or 1) == (irp_ratio or 1)})


@pytest.mark.parametrize("epoch", ["run1", "run2"])
def test_the_check_passes_on_the_site_shaped_registry(workdir, epoch):
    """Fails before the fix: DimensionNameError (no detector) as a traceback, and n1 refused because its
    nirDark begins at the first dark visit, not at the epoch's begin (run2's ramps: nirDark_irp4)."""
    butler = Butler.from_config(str(workdir / "results/demo/repo"))
    assert set(butler.get_dataset_type("defects").dimensions.required) == {"instrument", "detector"}
    nir = butler.registry.queryDatasetAssociations("nirDark", collections="PFS/calib", flattenChains=True)
    assert all(a.timespan.begin > Time("2025-03-10T08:00:00", scale="utc") for a in nir)  # at the first dark
    proc = check(workdir, epoch)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checked = json.loads((workdir / f"results/checks/{epoch}.json").read_text())
    assert checked["checked"] == "ok" and checked["lacking"] == {}


def test_missing_nir_linearity_is_named_not_refused(workdir, monkeypatch):
    butler = writeable(workdir)
    for association in butler.registry.queryDatasetAssociations(
        "h4Linearity", collections="PFS/calib", flattenChains=True
    ):
        butler.registry.decertify(association.collection, "h4Linearity", Timespan(None, None))
    proc = check(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lacking = json.loads((workdir / f"results/checks/{EPOCH}.json").read_text())["lacking"]
    assert list(lacking) == ["n1"] and len(lacking["n1"]) == 1
    assert lacking["n1"][0].startswith("h4Linearity not certified at") and "no linearity correction" in lacking["n1"][0]
    assert "n1: h4Linearity not certified" in (workdir / f"logs/{EPOCH}/check_visits.log").read_text()
    # what the products then lack reaches the summary and each n product's sentinel (job.site_lacking)
    monkeypatch.chdir(workdir)
    wf = Workflow(yaml.safe_load(Path("config/config.yaml").read_text()))
    text = summary(status_table(wf), wf)
    assert f"{EPOCH} n1: built without site calibrations: h4Linearity not certified" in text
    assert site_lacking(EPOCH, "n1") == site_lacking(EPOCH, "n") == lacking and site_lacking(EPOCH, "b1") == {}


def test_missing_defects_are_one_line_naming_camera_and_type(workdir):
    butler = writeable(workdir)
    detector = next(
        iter(butler.query_dimension_records("detector", where="instrument = 'PFS' AND arm = 'b' AND spectrograph = 1"))
    )
    for association in butler.registry.queryDatasetAssociations("defects", collections="PFS/calib", flattenChains=True):
        if association.ref.dataId["detector"] == detector.id:
            butler.registry.decertify(
                association.collection, "defects", Timespan(None, None), dataIds=[association.ref.dataId]
            )
    proc = check(workdir)
    assert proc.returncode != 0
    line = check_line(workdir)
    assert "prerequisite defects is not certified for camera b1 at visit" in line and "Traceback" not in proc.stderr
    assert "prerequisite defects is not certified for camera b1" in proc.stdout + proc.stderr  # on the console


def test_an_irp4_ramp_needs_nir_dark_irp4(workdir):
    butler = writeable(workdir)
    irp4 = n1_visits(butler, 4)
    assert irp4, "the demo has n visits of IRP ratio 4"
    for association in butler.registry.queryDatasetAssociations(
        "nirDark_irp4", collections="PFS/calib", flattenChains=True
    ):
        butler.registry.decertify(association.collection, "nirDark_irp4", Timespan(None, None))
    proc = check(workdir, "run2")
    assert proc.returncode != 0
    line = check_line(workdir, "run2")
    assert "n1: the site's nirDark_irp4 is not certified at visit" in line and "IRP ratio 4" in line
    visit = int(line.split("at visit ")[1].split()[0])
    assert visit in irp4


def test_a_visit_without_its_pfs_config_is_refused_before_any_job(workdir):
    butler = writeable(workdir)
    bootstrap = (PROJECT / "config/visits/bootstrap.tsv").read_text().splitlines()[1].split("\t")[1]
    visit = int(bootstrap.split("^")[1])  # the arc
    refs = butler.query_datasets(
        "pfsConfig", collections="PFS/raw/pfsConfig", where=f"instrument = 'PFS' AND visit = {visit}"
    )
    butler.pruneDatasets(refs, disassociate=True, unstore=True, purge=True)
    proc = check(workdir)
    assert proc.returncode != 0
    assert f"visit {visit} (bootstrap, epoch {EPOCH}, b1): has no pfsConfig in" in check_line(workdir)
    assert not (workdir / "results/registry").exists()
