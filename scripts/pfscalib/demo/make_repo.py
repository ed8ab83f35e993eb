"""Build the demo PFS Butler repository: PFS-like universe, instrument, collections, site calibrations
(camera, defects), simulated raws and pfsConfigs, and shims for drp_stella's scripts in ROOT/bin.

python -m pfscalib.demo.make_repo ROOT [--cameras b1,r1,b2,r2] [--epochs run1=...,run2=...] [--registry-db URL]
    [--layout {current,legacy}]

Layouts (collections and visit records):
- current (default), a Subaru datastore today: raws in RUN PFS/raw/sps, pfsConfigs in RUN PFS/raw/pfsConfig,
  PFS/calib a CHAINED collection of the site's CALIBRATION collections (SITE_CALIBRATIONS), CHAINED
  PFS/defaults = [PFS/raw/pfsConfig, PFS/raw/sps, PFS/calib]; observation_type bias/dark/flat/comparison,
  lower-case target_name, arcs with their lamp names.
- legacy, the guide's first revision: raws in RUN PFS/raw/all, CHAINED PFS/raw/sps -> [PFS/raw/all],
  CALIBRATION PFS/calib holding the site calibrations; observation_type arc, upper-case target_name.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
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
from .instrument import PrimeFocusSpectrograph
from .simulate import CURRENT, LAYOUTS, LEGACY

DEFAULT_CAMERAS = ("b1", "r1", "b2", "r2")
DEFAULT_EPOCHS = {"run1": "2025-03-10T08:00:00", "run2": "2025-04-07T08:00:00"}
DEFAULT_LAYOUT = CURRENT
DEMO_FILE = "demo.json"
CAMERA_RE = r"^[brnm][1-4]$"

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
SITE_NIR_DARK = "PFS/calib/demo/site/nirDark.20250101a"  # CALIBRATION (current: child of CALIB)
SITE_NIR_DARK_RUN = "PFS/calib/demo/site/nirDarkGen.20250101a"
SITE_CALIBRATIONS = (SITE_NIR_DARK, SITE_DEFECTS, SITE_CAMERA)  # current: CALIB's children, in this order

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
class DemoSpec:
    """What make_repo simulated: enough to regenerate every truth (see simulate.CameraTruth)."""

    seed: int
    cameras: list[str]
    epochs: dict[str, str]  # name -> start of the night (UTC ISO)
    visits: list[dict]
    layout: str = LEGACY  # a demo.json written before layouts existed is the legacy layout

    @property
    def raw_run(self) -> str:
        """The RUN holding the raws."""
        return RAW_SPS if self.layout == CURRENT else RAW_ALL

    def epoch(self, name: str) -> simulate.Epoch:
        return simulate.Epoch(name, list(self.epochs).index(name))

    def truth(self, epoch: str, camera: str) -> simulate.CameraTruth:
        return simulate.CameraTruth(self.seed, self.epoch(epoch), camera)

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
) -> DemoSpec:
    """Create and populate the demo repository at root; returns what was simulated. Atomic for a SQLite
    repository: built aside and renamed into place, so a build killed at any moment leaves no half-made
    repository (a rerun starts it again); a finished one (demo.json present) is kept, if of the same layout."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    root = Path(root)
    if (root / DEMO_FILE).exists():
        demo = load_demo(root)
        if demo.layout != layout:
            raise FileExistsError(f"{root} is a demo repository of the {demo.layout} layout, not {layout}")
        return demo
    if registry_db:  # the registry lives in the database: nothing to rename
        return _build(root, cameras, epochs, seed, registry_db, layout)
    for stale in root.parent.glob(f"{root.name}_building_*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    aside = root.parent / f"{root.name}_building_{os.getpid()}"
    demo = _build(aside, cameras, epochs, seed, None, layout)
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
) -> DemoSpec:
    epochs = dict(epochs or DEFAULT_EPOCHS)
    config = Config(_data_file("seed.yaml"))
    if registry_db:
        config["registry", "db"] = registry_db
        config["registry", "namespace"] = "pfscalib_demo"
    Butler.makeRepo(str(root), config=config, dimensionConfig=Config(_data_file("dimensions.yaml")))
    butler = Butler.from_config(str(root), writeable=True)
    registry = butler.registry
    instrument = PrimeFocusSpectrograph()
    instrument.register(registry)
    name = instrument.getName()
    universe = registry.dimensions
    registry.registerDatasetType(
        DatasetType("raw", ("instrument", "visit", "arm", "spectrograph"), "PfsRaw", universe=universe)
    )
    registry.registerDatasetType(DatasetType("pfsConfig", ("instrument", "visit"), "PfsConfig", universe=universe))
    registry.registerRun(PFS_CONFIG_RUN)
    if layout == CURRENT:
        registry.registerRun(RAW_SPS)
        raw_run = RAW_SPS
    else:
        registry.registerRun(RAW_ALL)
        registry.registerCollection(RAW_SPS, CollectionType.CHAINED)
        registry.setCollectionChain(RAW_SPS, [RAW_ALL])
        raw_run = RAW_ALL
    _write_site_calibrations(butler, instrument, cameras, layout)
    _write_nir_darks(butler, instrument, cameras, epochs, seed, layout)
    if layout == CURRENT:
        registry.registerCollection(CALIB, CollectionType.CHAINED)
        registry.setCollectionChain(CALIB, list(SITE_CALIBRATIONS))
        registry.registerCollection(DEFAULTS, CollectionType.CHAINED)
        registry.setCollectionChain(DEFAULTS, [PFS_CONFIG_RUN, RAW_SPS, CALIB])

    specs: list[simulate.VisitSpec] = []
    modes = (simulate.BRN, simulate.MEDIUM) if any(c.startswith("m") for c in cameras) else (simulate.BRN,)
    for index, epoch in enumerate(epochs):
        specs += simulate.epoch_visits(epoch, first_visit=100 * (index + 1), modes=modes)
    spectrographs = sorted({simulate.split_camera(c)[1] for c in cameras})
    for spec in specs:
        epoch_index = list(epochs).index(spec.epoch)
        begin = Time(epochs[spec.epoch], scale="utc") + (spec.visit % 100) * 5 * u.min
        end = begin + max(spec.exposure_time, 1.0) * u.s
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
                "pfs_design_id": spec.design,
                "dither": spec.dither,
                "timespan": Timespan(begin, end),
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
            truth = simulate.CameraTruth(seed, simulate.Epoch(spec.epoch, epoch_index), camera)
            butler.put(
                truth.raw(spec),
                "raw",
                instrument=name,
                visit=spec.visit,
                arm=arm,
                spectrograph=spectrograph,
                run=raw_run,
            )
    demo = DemoSpec(
        seed=seed, cameras=list(cameras), epochs=epochs, visits=[dataclasses.asdict(s) for s in specs], layout=layout
    )
    write_shims(bin_dir(root))
    (root / "truth.json").write_text(json.dumps(truth_summary(demo), indent=1))
    (root / DEMO_FILE).write_text(json.dumps(dataclasses.asdict(demo), indent=1))  # last: the build is complete
    return demo


def _write_site_calibrations(
    butler: Butler, instrument: PrimeFocusSpectrograph, cameras: tuple[str, ...], layout: str
) -> None:
    """What a site has certified before anyone follows the guide (obs_pfs makePfsCalibs.py, butler
    write-curated-calibrations): the camera and each camera's defects, valid forever. current: each in its
    own CALIBRATION collection, chained under PFS/calib, and PFS/defaults; legacy: directly in PFS/calib."""
    registry = butler.registry
    name = instrument.getName()
    registry.registerDatasetType(
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
        data_id = {"instrument": name, "arm": arm, "spectrograph": spectrograph}
        defects.append(butler.put(table, "defects", data_id, run=SITE_DEFECTS_RUN))
    registry.certify(targets["defects"], defects, forever)


def _write_nir_darks(
    butler: Butler,
    instrument: PrimeFocusSpectrograph,
    cameras: tuple[str, ...],
    epochs: dict[str, str],
    seed: int,
    layout: str,
) -> None:
    """The site's nirDark (ImageCube, dimensions instrument, arm, spectrograph, as obs_pfs's isrTask.py
    connection) of each n camera and observing run, valid from halfway since the previous run's night to
    halfway to the next one's (the first from -inf, the last to +inf); then PFS/calib and PFS/defaults."""
    registry = butler.registry
    name = instrument.getName()
    registry.registerDatasetType(
        DatasetType(
            "nirDark",
            ("instrument", "arm", "spectrograph"),
            "ImageCube",
            universe=registry.dimensions,
            isCalibration=True,
        )
    )
    target = SITE_NIR_DARK if layout == CURRENT else CALIB
    registry.registerCollection(target, CollectionType.CALIBRATION)
    nights = [Time(night, scale="utc") for night in epochs.values()]
    bounds = [None, *(a + (b - a) / 2 for a, b in itertools.pairwise(nights)), None]
    for index, epoch in enumerate(epochs):
        refs = []
        for camera in (c for c in cameras if c.startswith("n")):
            arm, spectrograph = simulate.split_camera(camera)
            cube = simulate.CameraTruth(seed, simulate.Epoch(epoch, index), camera).nir_dark()
            data_id = {"instrument": name, "arm": arm, "spectrograph": spectrograph}
            run = f"{SITE_NIR_DARK_RUN}/{epoch}"  # a RUN holds one cube per camera: one RUN per observing run
            registry.registerRun(run)
            refs.append(butler.put(cube, "nirDark", data_id, run=run))
        if refs:
            registry.certify(target, refs, Timespan(bounds[index], bounds[index + 1]))


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
                "epoch_spectral_shift": t.epoch.spectral_shift,
                "fiber_sigma": t.fiber_sigma.round(4).tolist(),
                "throughput": t.throughput.round(4).tolist(),
                "defects": simulate.defect_boxes(camera),
            }
    return out


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
    make_repo(args.root, cameras, epochs, args.seed, args.registry_db, args.layout)
    print(
        f"demo repository ({args.layout} layout) written to {args.root}: cameras {','.join(cameras)}, "
        f"epochs {','.join(epochs)}; drp_stella script stand-ins in {bin_dir(args.root)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
