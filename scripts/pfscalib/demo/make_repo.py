"""Build the demo PFS Butler repository: the site's dimension universe (obs_pfs gen3/dimensions.yaml), instrument,
collections, site calibrations, simulated raws and pfsConfigs, and shims for drp_stella's scripts in ROOT/bin.

python -m pfscalib.demo.make_repo ROOT [--cameras b1,r1,b2,r2] [--epochs run1=...,run2=...] [--registry-db URL]
    [--layout {current,legacy}]

Layouts (collections and visit records):
- current (default), a Subaru datastore today: raws in RUN PFS/raw/sps, pfsConfigs in RUN PFS/raw/pfsConfig,
  PFS/calib a CHAINED collection of the site's CALIBRATION collections (SITE_CALIBRATIONS), CHAINED
  PFS/defaults = [PFS/raw/pfsConfig, PFS/raw/sps, PFS/calib]; observation_type bias/dark/flat/comparison,
  lower-case target_name, arcs with their lamp names.
- legacy, the guide's first revision: raws in RUN PFS/raw/all, CHAINED PFS/raw/sps -> [PFS/raw/all],
  CALIBRATION PFS/calib holding the site calibrations; observation_type arc, upper-case target_name.

The site's calibrations, certified as a site certifies them (pfs-real-site.md sections 3 and 8):
- camera (instrument), valid forever;
- defects per detector (data ID instrument+detector; arm and spectrograph implied), valid forever (obs_pfs
  PrimeFocusSpectrograph.py:176-182, write-curated-calibrations);
- each n camera's dark cube per observing run, of the run's IRP ratio (simulate.irp_ratio: the first run at 1,
  `nirDark`; later runs at 4, `nirDark_irp4`; visit.irp_ratio says which), certified from the run's first dark
  visit, open-ended: Timespan(first dark begin, None) (obs_pfs combineNirDark.py:179-182, nirSuperdark.py:418);
  a later run's cube of the same type ends the earlier one's range (one CALIBRATION collection holds both);
- badRefPixels and h4Linearity of each n camera, valid forever (makePfsCalibs.py);
- each m camera's own bias and dark per observing run (a site builds m's: the ISR takes them before r's,
  isrTask.py:666-697), from the run's first bias / dark visit to the next run's (the last open-ended).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time
from lsst.daf.butler import Butler, CollectionType, Config, DatasetType, Timespan

from . import simulate
from .instrument import PrimeFocusSpectrograph, detector_id
from .simulate import CURRENT, LAYOUTS, LEGACY

DEFAULT_CAMERAS = ("b1", "r1", "b2", "r2")
DEFAULT_EPOCHS = {"run1": "2025-03-10T08:00:00", "run2": "2025-04-07T08:00:00"}
DEFAULT_LAYOUT = CURRENT
DEMO_FILE = "demo.json"
CAMERA_RE = r"^[brnm][1-4]$"
IAS = ("instrument", "arm", "spectrograph")

# Collections (PFS = PrimeFocusSpectrograph.getName(), the collection prefix).
RAW_SPS = "PFS/raw/sps"  # current: the raws' RUN; legacy: CHAINED -> [RAW_ALL]
RAW_ALL = "PFS/raw/all"  # legacy only: the raws' RUN
PFS_CONFIG_RUN = "PFS/raw/pfsConfig"
CALIB = "PFS/calib"  # current: CHAINED, maintained by hand at a site; legacy: CALIBRATION
DEFAULTS = "PFS/defaults"  # current only: CHAINED [PFS_CONFIG_RUN, RAW_SPS, CALIB]
# The site's own calibrations, named the DMTN-222 way (<root>/<ticket>/<tag>/<product>.<iteration>, generated
# in <product>Gen.<iteration>); the guide does not build them and the ISR requires them.
SITE_DEFECTS = "PFS/calib/demo/site/defects.20250101a"  # CALIBRATION (current: child of CALIB)
SITE_DEFECTS_RUN = "PFS/calib/demo/site/defectsGen.20250101a"
SITE_CAMERA = "PFS/calib/demo/site/camera.20250101a"  # CALIBRATION (current: child of CALIB)
SITE_CAMERA_RUN = "PFS/calib/demo/site/cameraGen.20250101a"
# The n (NIR) cameras' dark cubes (obs_pfs combineNirDark.py, certified by the site, one per observing run):
# the ISR of an n camera needs one, and never a bias.
SITE_NIR_DARK = "PFS/calib/demo/site/nirDark.20250101a"  # CALIBRATION (current: child of CALIB): nirDark*
SITE_NIR_DARK_RUN = "PFS/calib/demo/site/nirDarkGen.20250101a"
SITE_NIR = "PFS/calib/demo/site/nir.20250101a"  # CALIBRATION (current: child of CALIB): badRefPixels, h4Linearity
SITE_NIR_RUN = "PFS/calib/demo/site/nirGen.20250101a"
# m (medium resolution) cameras' own bias and dark (the r CCD behind the m grating), built by the site.
SITE_BIAS = "PFS/calib/demo/site/bias.20250101a"  # CALIBRATION (current: child of CALIB)
SITE_BIAS_RUN = "PFS/calib/demo/site/biasGen.20250101a"
SITE_DARK = "PFS/calib/demo/site/dark.20250101a"  # CALIBRATION (current: child of CALIB)
SITE_DARK_RUN = "PFS/calib/demo/site/darkGen.20250101a"
# current: CALIB's children, in this order
SITE_CALIBRATIONS = (SITE_NIR_DARK, SITE_NIR, SITE_BIAS, SITE_DARK, SITE_DEFECTS, SITE_CAMERA)

# Stand-ins for drp_stella's scripts, written as executable shims into ROOT/bin (never installed under these
# names: at a site they would shadow the real ones): file name -> function of pfscalib.demo.bin.
BIN_DIR = "bin"
SHIMS = {
    "certifyDetectorMaps.py": "certify_detector_maps",
    "defineFiberProfilesInputs.py": "define_fiber_profiles_inputs",
    "butlerCleanRun.py": "butler_clean_run",
    "butlerCertify.py": "butler_certify",
    "butlerDecertify.py": "butler_decertify",
}


@dataclasses.dataclass
class Truths:
    """The truth a test chooses per camera, unknown to the workflow's config: true spectral offsets (pixels,
    within +-simulate.MAX_SPECTRAL_OFFSET; others keep the demo's default) and cameras with no usable arc."""

    spectral_offsets: dict[str, float]
    unlit_arcs: list[str]

    def check(self, cameras: tuple[str, ...]) -> None:
        for camera in [*self.spectral_offsets, *self.unlit_arcs]:
            if camera not in cameras:
                raise ValueError(f"truth given for camera {camera}, which is not built ({', '.join(cameras)})")
        for camera, offset in self.spectral_offsets.items():
            if abs(offset) > simulate.MAX_SPECTRAL_OFFSET:
                raise ValueError(
                    f"spectral offset {offset:g} of camera {camera} is beyond +-{simulate.MAX_SPECTRAL_OFFSET:g} pixels"
                )


@dataclasses.dataclass
class DemoSpec:
    """What make_repo simulated: enough to regenerate every truth (see simulate.CameraTruth)."""

    seed: int
    cameras: list[str]
    epochs: dict[str, str]  # name -> start of the night (UTC ISO)
    visits: list[dict]
    layout: str = LEGACY  # a demo.json written before layouts existed is the legacy layout
    spectral_offsets: dict[str, float] = dataclasses.field(default_factory=dict)  # true offsets (px) by camera
    unlit_arcs: list[str] = dataclasses.field(default_factory=list)  # cameras whose arcs carry no lines
    faults: list[str] = dataclasses.field(default_factory=list)  # CAMERA:KIND defects simulated (simulate.FAULTS)

    @property
    def raw_run(self) -> str:
        """The RUN holding the raws."""
        return RAW_SPS if self.layout == CURRENT else RAW_ALL

    def epoch(self, name: str) -> simulate.Epoch:
        return simulate.Epoch(name, list(self.epochs).index(name))

    def truth(self, epoch: str, camera: str) -> simulate.CameraTruth:
        return simulate.CameraTruth(
            self.seed, self.epoch(epoch), camera, self.spectral_offsets.get(camera), camera not in self.unlit_arcs,
            simulate.faults_of(self.faults, camera),
        )  # fmt: skip

    def visit_specs(self, epoch: str | None = None) -> list[simulate.VisitSpec]:
        specs = [simulate.VisitSpec(**v) for v in self.visits]
        return [s for s in specs if epoch is None or s.epoch == epoch]


def load_demo(root: str | Path) -> DemoSpec:
    return DemoSpec(**json.loads((Path(root) / DEMO_FILE).read_text()))


def _data_file(name: str) -> str:
    return str(resources.files("pfscalib.demo").joinpath(name))


def bin_dir(root: str | Path) -> Path:
    """The directory of the drp_stella script shims of a demo repository (put it first on PATH)."""
    return Path(root) / BIN_DIR


def make_repo(
    root: str | Path,
    cameras: tuple[str, ...] = DEFAULT_CAMERAS,
    epochs: dict[str, str] | None = None,
    seed: int = 20250310,
    registry_db: str | None = None,
    layout: str = DEFAULT_LAYOUT,
    spectral_offsets: dict[str, float] | None = None,
    unlit_arcs: tuple[str, ...] = (),
    faults: tuple[str, ...] = (),
) -> DemoSpec:
    """Create and populate the demo repository at root; returns what was simulated. Atomic for a SQLite
    repository: built aside and renamed into place, so a build killed at any moment leaves no half-made
    repository (a rerun starts it again); a finished one (demo.json present) is kept, if of the same layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    truths = Truths(dict(spectral_offsets or {}), list(unlit_arcs))
    truths.check(cameras)
    root = Path(root)
    if (root / DEMO_FILE).exists():
        demo = load_demo(root)
        if demo.layout != layout:
            raise FileExistsError(f"{root} is a demo repository of the {demo.layout} layout, not {layout}")
        return demo
    if registry_db:  # the registry lives in the database: nothing to rename
        return _build(root, cameras, epochs, seed, registry_db, layout, truths, faults)
    for stale in root.parent.glob(f"{root.name}_building_*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    aside = root.parent / f"{root.name}_building_{os.getpid()}"
    demo = _build(aside, cameras, epochs, seed, None, layout, truths, faults)
    if root.exists():  # the empty directory Snakemake makes for the rule's output; never anything else
        if any(root.iterdir()):
            shutil.rmtree(aside)
            raise FileExistsError(f"{root} exists and is not a demo repository (no {DEMO_FILE}): not replacing it")
        root.rmdir()
    aside.rename(root)
    return demo


def _build(
    root: Path,
    cameras: tuple[str, ...],
    epochs: dict[str, str] | None,
    seed: int,
    registry_db: str | None,
    layout: str,
    truths: Truths,
    faults: tuple[str, ...] = (),
) -> DemoSpec:
    epochs = dict(epochs or DEFAULT_EPOCHS)
    demo = DemoSpec(
        seed=seed, cameras=list(cameras), epochs=epochs, visits=[], layout=layout, faults=list(faults), **vars(truths)
    )
    config = Config(_data_file("seed.yaml"))
    if registry_db:
        config["registry", "db"] = registry_db
        config["registry", "namespace"] = "pfscalib_demo"
    Butler.makeRepo(str(root), config=config, dimensionConfig=Config(_data_file("dimensions.yaml")))
    butler = Butler.from_config(str(root), writeable=True)
    registry = butler.registry
    instrument = PrimeFocusSpectrograph()
    instrument.register(registry)  # also raw and pfsConfig, as obs_pfs's register()
    name = instrument.getName()
    registry.registerRun(PFS_CONFIG_RUN)
    if layout == CURRENT:
        registry.registerRun(RAW_SPS)
        raw_run = RAW_SPS
    else:
        registry.registerRun(RAW_ALL)
        registry.registerCollection(RAW_SPS, CollectionType.CHAINED)
        registry.setCollectionChain(RAW_SPS, [RAW_ALL])
        raw_run = RAW_ALL

    specs: list[simulate.VisitSpec] = []
    modes = (simulate.BRN, simulate.MEDIUM) if any(c.startswith("m") for c in cameras) else (simulate.BRN,)
    for index, epoch in enumerate(epochs):
        specs += simulate.epoch_visits(epoch, first_visit=100 * (index + 1), modes=modes)
    spans = {spec.visit: visit_timespan(spec, epochs) for spec in specs}
    has_nir = any(c.startswith("n") for c in cameras)
    spectrographs = sorted({simulate.split_camera(c)[1] for c in cameras})
    for spec in specs:
        begin = spans[spec.visit].begin
        registry.syncDimensionData("pfs_design_id", {"instrument": name, "value": spec.design})
        registry.syncDimensionData("dither", {"instrument": name, "value": spec.dither})
        registry.insertDimensionData(
            "visit",
            {
                "instrument": name,
                "id": spec.visit,
                "obs_id": f"PFSA{spec.visit:06d}",
                "exposure_time": spec.exposure_time,
                "dark_time": spec.dark_time,
                "observation_type": spec.observation_type(layout),
                "observation_reason": spec.kind,
                "day_obs": int(begin.strftime("%Y%m%d")),
                "seq_num": spec.visit,
                "target_name": spec.target_name(layout),
                "science_program": spec.science_program,
                "lamps": spec.lamps(layout),
                # W_H4IRPN of the NIR ramp (obs_pfs translator.py:203-206, gen3.py:431-432): every demo visit has
                # an n raw when an n camera is built; without one no header carries it and it stays NULL.
                "irp_ratio": simulate.irp_ratio(list(epochs).index(spec.epoch)) if has_nir else None,
                "pfs_design_id": spec.design,
                "dither": spec.dither,
                "timespan": spans[spec.visit],
            },
        )
        fiber_ids = [f for s in spectrographs for f in range((s - 1) * simulate.NFIBER + 1, s * simulate.NFIBER + 1)]
        pfs_config = {
            "pfsDesignId": spec.design,
            "visit": spec.visit,
            "fiberId": fiber_ids,
            "spectrograph": [(f - 1) // simulate.NFIBER + 1 for f in fiber_ids],
            "fiberHole": [(f - 1) % simulate.NFIBER + 1 for f in fiber_ids],
            "fiberStatus": [1] * len(fiber_ids),
            "targetType": ["SCIENCE"] * len(fiber_ids),
        }
        butler.put(pfs_config, "pfsConfig", instrument=name, visit=spec.visit, run=PFS_CONFIG_RUN)
        for camera in filter(spec.has_raw, cameras):
            arm, spectrograph = simulate.split_camera(camera)
            truth = demo.truth(spec.epoch, camera)
            butler.put(
                truth.raw(spec),
                "raw",
                instrument=name,
                visit=spec.visit,
                arm=arm,
                spectrograph=spectrograph,
                run=raw_run,
            )

    _write_site_calibrations(butler, instrument, cameras, layout)
    firsts = {
        kind: {e: min(spans[s.visit].begin for s in specs if s.epoch == e and s.kind == kind) for e in epochs}
        for kind in ("bias", "dark")
    }
    _write_nir_darks(butler, cameras, epochs, seed, layout, firsts["dark"])
    _write_nir_calibrations(butler, instrument, cameras, layout)
    _write_m_bias_dark(butler, cameras, epochs, seed, layout, firsts)
    if layout == CURRENT:
        registry.registerCollection(CALIB, CollectionType.CHAINED)
        registry.setCollectionChain(CALIB, list(SITE_CALIBRATIONS))
        registry.registerCollection(DEFAULTS, CollectionType.CHAINED)
        registry.setCollectionChain(DEFAULTS, [PFS_CONFIG_RUN, RAW_SPS, CALIB])
    demo.visits = [dataclasses.asdict(s) for s in specs]
    write_shims(bin_dir(root))
    (root / "truth.json").write_text(json.dumps(truth_summary(demo), indent=1))
    (root / DEMO_FILE).write_text(json.dumps(dataclasses.asdict(demo), indent=1))  # last: the build is complete
    return demo


def _write_site_calibrations(
    butler: Butler, instrument: PrimeFocusSpectrograph, cameras: tuple[str, ...], layout: str
) -> None:
    """What a site has certified before anyone follows the guide (obs_pfs makePfsCalibs.py, butler
    write-curated-calibrations): the camera and each detector's defects, valid forever. current: each in its
    own CALIBRATION collection, chained under PFS/calib, and PFS/defaults; legacy: directly in PFS/calib."""
    registry = butler.registry
    name = instrument.getName()
    registry.registerDatasetType(  # real storage class: Camera (obs_pfs isrTask.py:772-778)
        DatasetType("camera", ("instrument",), "StandinCamera", universe=registry.dimensions, isCalibration=True)
    )
    forever = Timespan(None, None)
    if layout == CURRENT:
        targets = {"camera": SITE_CAMERA, "defects": SITE_DEFECTS}
    else:
        targets = {"camera": CALIB, "defects": CALIB}
    for collection in set(targets.values()):
        registry.registerCollection(collection, CollectionType.CALIBRATION)

    registry.registerRun(SITE_CAMERA_RUN)
    camera = butler.put(instrument.getCamera(), "camera", instrument=name, run=SITE_CAMERA_RUN)
    registry.certify(targets["camera"], [camera], forever)

    registry.registerRun(SITE_DEFECTS_RUN)
    defects = []
    for camera_name in cameras:
        arm, spectrograph = simulate.split_camera(camera_name)
        boxes = simulate.defect_boxes(camera_name)
        table = {key: [box[i] for box in boxes] for i, key in enumerate(("x0", "y0", "width", "height"))}
        # keyed by detector (arm and spectrograph implied), as obs_pfs registers defects
        data_id = {"instrument": name, "detector": detector_id(arm, spectrograph)}
        defects.append(butler.put(table, "defects", data_id, run=SITE_DEFECTS_RUN))
    registry.certify(targets["defects"], defects, forever)


def visit_timespan(spec: simulate.VisitSpec, epochs: dict[str, str]) -> Timespan:
    """When a demo visit was taken: 5 minutes apart from its observing run's night, for its exposure time."""
    begin = Time(epochs[spec.epoch], scale="utc") + (spec.visit % 100) * 5 * u.min
    return Timespan(begin, begin + max(spec.exposure_time, 1.0) * u.s)


def _successive_ranges(starts: list[Time], keys: list) -> list[Timespan]:
    """Validity of one product per observing run, each from its start: open-ended, unless a later run has a product
    of the same key (dataset type), whose start ends it (one CALIBRATION collection refuses overlapping ranges)."""
    out = []
    for index, (start, key) in enumerate(zip(starts, keys)):
        later = [s for s, k in zip(starts[index + 1 :], keys[index + 1 :]) if k == key]
        out.append(Timespan(start, later[0] if later else None))
    return out


def _certify_per_run(
    butler: Butler,
    target: str,
    run: str,
    cameras: list[str],
    starts: dict[str, Time],
    types: list[str],
    image,
) -> None:
    """One product of each camera per observing run (image(index, epoch, camera), of types[index]) in RUN
    `<run>/<epoch>` (a RUN holds one per camera), certified into the CALIBRATION collection `target` from the
    run's start (starts[epoch]): open-ended unless a later run's product of the same type ends it."""
    registry, name = butler.registry, PrimeFocusSpectrograph.getName()
    registry.registerCollection(target, CollectionType.CALIBRATION)
    ranges = _successive_ranges(list(starts.values()), types)
    for index, epoch in enumerate(starts):
        refs = []
        for camera in cameras:
            arm, spectrograph = simulate.split_camera(camera)
            registry.registerRun(f"{run}/{epoch}")
            data_id = {"instrument": name, "arm": arm, "spectrograph": spectrograph}
            refs.append(butler.put(image(index, epoch, camera), types[index], data_id, run=f"{run}/{epoch}"))
        if refs:
            registry.certify(target, refs, ranges[index])


def _write_nir_darks(
    butler: Butler, cameras: tuple[str, ...], epochs: dict[str, str], seed: int, layout: str, first_darks: dict
) -> None:
    """The site's dark cube of each n camera and observing run (ImageCube, dimensions instrument, arm,
    spectrograph, obs_pfs PrimeFocusSpectrograph.py:145-161), of the run's IRP ratio: `nirDark` (ratio 1) or
    `nirDark_irp4` (nirSuperdark.py:48-57), certified from the run's first dark visit, open-ended
    (combineNirDark.py:91-96, 179-182; nirSuperdark.py:418)."""
    _certify_per_run(
        butler,
        SITE_NIR_DARK if layout == CURRENT else CALIB,
        SITE_NIR_DARK_RUN,
        [c for c in cameras if c.startswith("n")],
        {e: first_darks[e] for e in epochs},
        [simulate.nir_dark_type(simulate.irp_ratio(index)) for index in range(len(epochs))],
        lambda index, epoch, camera: simulate.CameraTruth(seed, simulate.Epoch(epoch, index), camera).nir_dark(
            simulate.irp_ratio(index)
        ),
    )


def _write_nir_calibrations(
    butler: Butler, instrument: PrimeFocusSpectrograph, cameras: tuple[str, ...], layout: str
) -> None:
    """Each n camera's badRefPixels and h4Linearity (obs_pfs makePfsCalibs.py), valid forever. The demo ISR only
    notes them; without them the real one warns and goes on (isrTask.py:1568-1598)."""
    registry = butler.registry
    name = instrument.getName()
    target = SITE_NIR if layout == CURRENT else CALIB
    registry.registerCollection(target, CollectionType.CALIBRATION)
    registry.registerRun(SITE_NIR_RUN)
    refs = []
    for camera in (c for c in cameras if c.startswith("n")):
        arm, spectrograph = simulate.split_camera(camera)
        data_id = {"instrument": name, "arm": arm, "spectrograph": spectrograph}
        refs.append(butler.put({"pixels": []}, "badRefPixels", data_id, run=SITE_NIR_RUN))
        refs.append(butler.put({"coefficients": [0.0]}, "h4Linearity", data_id, run=SITE_NIR_RUN))
    if refs:
        registry.certify(target, refs, Timespan(None, None))


def _write_m_bias_dark(
    butler: Butler, cameras: tuple[str, ...], epochs: dict[str, str], seed: int, layout: str, firsts: dict
) -> None:
    """Each m camera's own bias and dark per observing run, as the site built them (the true bias structure
    and dark current of the run), from the run's first bias (dark) visit to the next run's, the last open-ended.
    The ISR of m takes them before r's (obs_pfs isrTask.py:666-697)."""
    registry = butler.registry
    for dataset_type in ("bias", "dark"):  # real storage class: ExposureF (drp_stella calibCombine.py:20-26)
        registry.registerDatasetType(
            DatasetType(dataset_type, IAS, "StandinExposure", universe=registry.dimensions, isCalibration=True)
        )
    for dataset_type, collection, run in (("bias", SITE_BIAS, SITE_BIAS_RUN), ("dark", SITE_DARK, SITE_DARK_RUN)):

        def image(index: int, epoch: str, camera: str, dataset_type: str = dataset_type) -> np.ndarray:
            truth = simulate.CameraTruth(seed, simulate.Epoch(epoch, index), camera)
            return np.asarray(truth.bias_pattern if dataset_type == "bias" else truth.dark_current)

        _certify_per_run(
            butler,
            collection if layout == CURRENT else CALIB,
            run,
            [c for c in cameras if c.startswith("m")],
            {e: firsts[dataset_type][e] for e in epochs},
            [dataset_type] * len(epochs),
            image,
        )


def write_shims(directory: Path) -> None:
    """Executable stand-ins for drp_stella's scripts, by their names. They hold the interpreter's path
    (sys.executable) and nothing of the repository's, which is renamed into place after the build."""
    directory.mkdir(parents=True, exist_ok=True)
    for script, function in SHIMS.items():
        path = directory / script
        path.write_text(
            f"#!{sys.executable}\n"
            f'"""Demo stand-in for drp_stella\'s {script} (written by pfscalib.demo.make_repo)."""\n\n'
            "import sys\n\n"
            f"from pfscalib.demo.bin import {function}\n\n"
            f"sys.exit({function}())\n"
        )
        path.chmod(0o755)


def truth_summary(demo: DemoSpec) -> dict:
    """Human-readable scalar truth per epoch and camera (images are regenerated by simulate)."""
    out: dict = {}
    for epoch in demo.epochs:
        for camera in demo.cameras:
            t = demo.truth(epoch, camera)
            out.setdefault(epoch, {})[camera] = {
                "bias_level": t.bias_level,
                "bias_offset": t.epoch.bias_offset,
                "dark_current_median": float(np.median(t.dark_current)),
                "spectral_offset": t.spectral_offset,
                "arc_lit": t.arc_lit,
                "epoch_spectral_shift": t.epoch.spectral_shift,
                "fiber_sigma": t.fiber_sigma.round(4).tolist(),
                "throughput": t.throughput.round(4).tolist(),
                "defects": simulate.defect_boxes(camera),
            }
    return out


def _items(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--cameras", default=",".join(DEFAULT_CAMERAS), help="comma-separated, e.g. b1,r1")
    parser.add_argument(
        "--epochs",
        default=",".join(f"{k}={v}" for k, v in DEFAULT_EPOCHS.items()),
        help="comma-separated NAME=START (UTC ISO)",
    )
    parser.add_argument("--seed", type=int, default=20250310)
    parser.add_argument("--registry-db", default=None, help="e.g. postgresql://user@host:port/db")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=DEFAULT_LAYOUT,
        help="current: a Subaru datastore today (default); legacy: the guide's first revision",
    )
    parser.add_argument(
        "--spectral-offsets",
        default="",
        help="true spectral offsets (pixels, within +-150) per camera, e.g. b1=-120,r1=37.5 (others: the default)",
    )
    parser.add_argument("--unlit-arcs", default="", help="cameras whose arcs carry no lines, e.g. r2")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        help="simulate a defect, CAMERA:KIND with KIND one of " + ", ".join(simulate.FAULTS),
    )
    args = parser.parse_args(argv)
    cameras = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
    bad = [c for c in cameras if not re.match(CAMERA_RE, c)]
    if bad:
        print(
            f"make_repo: --cameras: unknown camera(s) {', '.join(bad)} (arms b r n m x spectrographs 1-4)",
            file=sys.stderr,
        )
        return 2
    epochs = dict(item.split("=", 1) for item in args.epochs.split(","))
    try:
        offsets = {k: float(v) for k, v in (item.split("=", 1) for item in _items(args.spectral_offsets))}
        make_repo(
            args.root, cameras, epochs, args.seed, args.registry_db, args.layout, offsets, _items(args.unlit_arcs),
            tuple(args.fault),
        )  # fmt: skip
    except ValueError as error:
        print(f"make_repo: {error}", file=sys.stderr)
        return 2
    print(
        f"demo repository ({args.layout} layout) written to {args.root}: cameras {','.join(cameras)}, "
        f"epochs {','.join(epochs)}; drp_stella script stand-ins in {bin_dir(args.root)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
