"""Demo PFS instrument: registers the same dimension records obs_pfs's PrimeFocusSpectrograph does."""

from __future__ import annotations

from typing import Any

from lsst.daf.butler import DatasetType, Registry
from lsst.pipe.base import Instrument

from . import simulate

ARMS = ("b", "r", "n", "m")
SPECTROGRAPHS = (1, 2, 3, 4)


def detector_id(arm: str, spectrograph: int) -> int:
    """obs_pfs numbering: b/r/n = 3*(spectrograph-1) + {b:0, r:1, n:2}; m = -(id of r)."""
    if arm == "m":
        return -detector_id("r", spectrograph)
    return 3 * (spectrograph - 1) + {"b": 0, "r": 1, "n": 2}[arm]


class PrimeFocusSpectrograph(Instrument):
    """Stand-in for lsst.obs.pfs.PrimeFocusSpectrograph (instrument name PFS)."""

    policyName = "pfs"

    @classmethod
    def getName(cls) -> str:
        return "PFS"

    def getCamera(self) -> dict[str, Any]:
        """Stand-in for the afw Camera (storage class StandinCamera): each detector's raw geometry, which the demo
        ISR reads instead of config (data region, overscan columns)."""
        detectors = {
            f"{arm}{spectrograph}": {
                "id": detector_id(arm, spectrograph),
                "arm": arm,
                "spectrograph": spectrograph,
                "rawShape": [simulate.NY, simulate.NX + simulate.NOVERSCAN],
                "dataColumns": [0, simulate.NX],  # [begin, end)
                "overscanColumns": [simulate.NX, simulate.NX + simulate.NOVERSCAN],
            }
            for spectrograph in SPECTROGRAPHS
            for arm in ARMS
        }
        return {"name": self.getName(), "detectors": detectors}

    def makeDefaultRawIngestRunName(self) -> str:
        """obs_pfs since d31ec29 (2024-11-01): raws are ingested into PFS/raw/sps (before: PFS/raw/all)."""
        return self.makeCollectionName("raw", "sps")

    def register(self, registry: Registry, *, update: bool = False) -> None:
        name = self.getName()
        with registry.transaction():
            registry.syncDimensionData(
                "instrument",
                {
                    "name": name,
                    "visit_max": 21474800,
                    "detector_max": 20,
                    "class_name": f"{type(self).__module__}.{type(self).__qualname__}",
                },
                update=update,
            )
            for arm in ARMS:
                registry.syncDimensionData("arm", {"instrument": name, "name": arm}, update=update)
            for spectrograph in SPECTROGRAPHS:
                registry.syncDimensionData("spectrograph", {"instrument": name, "num": spectrograph}, update=update)
                for arm in ARMS:
                    record: dict[str, Any] = {
                        "instrument": name,
                        "id": detector_id(arm, spectrograph),
                        "full_name": f"{arm}{spectrograph}",
                        "arm": arm,
                        "spectrograph": spectrograph,
                        "purpose": "SCIENCE",
                    }
                    registry.syncDimensionData("detector", record, update=update)
        # obs_pfs registers the certified detectorMap type itself (certifyDetectorMaps.py writes it), and
        # defects (with detector too, found by a lookup function; the demo's are found by arm and spectrograph
        # like every other calibration); outside the transaction because it may create tables.
        for name, storage_class in (("detectorMap_calib", "DetectorMap"), ("defects", "StandinDefects")):
            registry.registerDatasetType(
                DatasetType(
                    name,
                    ("instrument", "arm", "spectrograph"),
                    storage_class,
                    universe=registry.dimensions,
                    isCalibration=True,
                )
            )

    def getRawFormatter(self, dataId: Any) -> type:
        from .formatters import FitsImageFormatter

        return FitsImageFormatter
