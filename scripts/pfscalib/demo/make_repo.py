"""Build the demo PFS Butler repository: PFS-like universe, instrument, PFS/calib, simulated raws.

python -m pfscalib.demo.make_repo ROOT [--cameras b1,r1,b2,r2] [--epochs run1,run2] [--registry-db URL]
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
from .instrument import PrimeFocusSpectrograph

DEFAULT_CAMERAS = ("b1", "r1", "b2", "r2")
DEFAULT_EPOCHS = {"run1": "2025-03-10T08:00:00", "run2": "2025-04-07T08:00:00"}
DEMO_FILE = "demo.json"
CAMERA_RE = r"^[brnm][1-4]$"


@dataclasses.dataclass
class DemoSpec:
    """What make_repo simulated: enough to regenerate every truth (see simulate.CameraTruth)."""

    seed: int
    cameras: list[str]
    epochs: dict[str, str]  # name -> start of the night (UTC ISO)
    visits: list[dict]

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


def make_repo(
    root: str | Path,
    cameras: tuple[str, ...] = DEFAULT_CAMERAS,
    epochs: dict[str, str] | None = None,
    seed: int = 20250310,
    registry_db: str | None = None,
) -> DemoSpec:
    """Create and populate the demo repository at root; returns what was simulated. Atomic for a SQLite
    repository: built aside and renamed into place, so a build killed at any moment leaves no half-made
    repository (a rerun starts it again); a finished one (demo.json present) is kept."""
    root = Path(root)
    if (root / DEMO_FILE).exists():
        return load_demo(root)
    if registry_db:  # the registry lives in the database: nothing to rename
        return _build(root, cameras, epochs, seed, registry_db)
    for stale in root.parent.glob(f"{root.name}_building_*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    aside = root.parent / f"{root.name}_building_{os.getpid()}"
    demo = _build(aside, cameras, epochs, seed, None)
    if root.exists():  # the empty directory Snakemake makes for the rule's output; never anything else
        if any(root.iterdir()):
            shutil.rmtree(aside)
            raise FileExistsError(f"{root} exists and is not a demo repository (no {DEMO_FILE}): not replacing it")
        root.rmdir()
    aside.rename(root)
    return demo


def _build(
    root: Path, cameras: tuple[str, ...], epochs: dict[str, str] | None, seed: int, registry_db: str | None
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
    registry.registerCollection("PFS/calib", CollectionType.CALIBRATION)
    universe = registry.dimensions
    registry.registerDatasetType(
        DatasetType("raw", ("instrument", "visit", "arm", "spectrograph"), "PfsRaw", universe=universe)
    )
    registry.registerDatasetType(DatasetType("pfsConfig", ("instrument", "visit"), "PfsConfig", universe=universe))
    registry.registerRun("PFS/raw/all")
    registry.registerRun("PFS/raw/pfsConfig")
    registry.registerCollection("PFS/raw/sps", CollectionType.CHAINED)
    registry.setCollectionChain("PFS/raw/sps", ["PFS/raw/all"])

    specs: list[simulate.VisitSpec] = []
    for index, epoch in enumerate(epochs):
        specs += simulate.epoch_visits(epoch, first_visit=100 * (index + 1))
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
                "observation_type": spec.observation_type,
                "observation_reason": spec.kind,
                "day_obs": int(begin.strftime("%Y%m%d")),
                "seq_num": spec.visit,
                "target_name": spec.target_name,
                "science_program": spec.science_program,
                "lamps": spec.lamps,
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
        butler.put(pfs_config, "pfsConfig", instrument=name, visit=spec.visit, run="PFS/raw/pfsConfig")
        for camera in cameras:
            arm, spectrograph = simulate.split_camera(camera)
            truth = simulate.CameraTruth(seed, simulate.Epoch(spec.epoch, epoch_index), camera)
            butler.put(
                truth.raw(spec),
                "raw",
                instrument=name,
                visit=spec.visit,
                arm=arm,
                spectrograph=spectrograph,
                run="PFS/raw/all",
            )
    demo = DemoSpec(seed=seed, cameras=list(cameras), epochs=epochs, visits=[dataclasses.asdict(s) for s in specs])
    (root / "truth.json").write_text(json.dumps(truth_summary(demo), indent=1))
    (root / DEMO_FILE).write_text(json.dumps(dataclasses.asdict(demo), indent=1))  # last: the build is complete
    return demo


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
    make_repo(args.root, cameras, epochs, args.seed, args.registry_db)
    print(f"demo repository written to {args.root}: cameras {','.join(cameras)}, epochs {','.join(epochs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
