"""Demo PFS instrument: registers the same dimension records obs_pfs's PrimeFocusSpectrograph does."""

from __future__ import annotations

from typing import Any

from lsst.daf.butler import DatasetType, Registry
from lsst.pipe.base import Instrument

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

    def getCamera(self) -> None:  # no afw camera geometry in the demo
        return None

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
        # obs_pfs registers the certified detectorMap type itself (certifyDetectorMaps.py writes it);
        # outside the transaction because it may create tables.
        registry.registerDatasetType(
            DatasetType(
                "detectorMap_calib",
                ("instrument", "arm", "spectrograph"),
                "DetectorMap",
                universe=registry.dimensions,
                isCalibration=True,
            )
        )

    def getRawFormatter(self, dataId: Any) -> type:
        from .formatters import FitsImageFormatter

        return FitsImageFormatter
