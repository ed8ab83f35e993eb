"""Demo PFS instrument: registers the same dimension records obs_pfs's PrimeFocusSpectrograph does."""

from __future__ import annotations

from typing import Any

from lsst.daf.butler import DatasetType, Registry
from lsst.pipe.base import Instrument

from . import simulate

ARMS = ("b", "r", "n", "m")
SPECTROGRAPHS = (1, 2, 3, 4)


# The dataset types obs_pfs's register() declares (PrimeFocusSpectrograph.py:129-182): name, dimensions, storage
# class, isCalibration. The storage classes of the afw/ip_isr types keep a demo name: daf_butler's own
# storageClasses.yaml defines Camera and Defects with afw/ip_isr python types, and its StorageClassFactory refuses a
# second definition of a name ("New definition for StorageClass ... differs from current definition"), so a
# repository cannot give them the demo's python types (tests/test_site_facts.py lists each such difference).
SITE_DATASET_TYPES = (
    ("raw", ("instrument", "visit", "spectrograph", "arm"), "PfsRaw", False),
    ("pfsConfig", ("instrument", "visit"), "PfsConfig", False),
    ("detectorMap_calib", ("instrument", "arm", "spectrograph"), "DetectorMap", True),
    ("nirDark", ("instrument", "arm", "spectrograph"), "ImageCube", True),
    ("nirDark_irp4", ("instrument", "arm", "spectrograph"), "ImageCube", True),
    ("badRefPixels", ("instrument", "arm", "spectrograph"), "NirBadRefPixels", True),
    ("h4Linearity", ("instrument", "arm", "spectrograph"), "H4Linearity", True),
    ("defects", ("instrument", "detector", "arm", "spectrograph"), "StandinDefects", True),  # real: Defects
)


def site_dataset_types(universe) -> list[DatasetType]:
    return [
        DatasetType(name, dimensions, storage_class, universe=universe, isCalibration=is_calibration)
        for name, dimensions, storage_class, is_calibration in SITE_DATASET_TYPES
    ]


def detector_id(arm: str, spectrograph: int) -> int:
    """obs_pfs numbering (pfs/camera/camera.yaml:357-665): b/r/n = 3*(spectrograph-1) + {b:0, r:1, n:2}; m = -(id
    of r)."""
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
        """Stand-in for the afw Camera (storage class StandinCamera; real: Camera): each detector's raw geometry,
        which the demo ISR reads instead of config (data region, overscan columns)."""
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
        """As obs_pfs PrimeFocusSpectrograph.register (PrimeFocusSpectrograph.py:65-182): the instrument,
        spectrographs 0-4 (0: guiders), arms b r n m x, one detector record per camera (the demo's camera has no
        guiders), and the dataset types the site ingests or certifies, with their real dimensions and flags."""
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
            for spectrograph in (0, *SPECTROGRAPHS):  # PrimeFocusSpectrograph.py:84-95
                registry.syncDimensionData("spectrograph", {"instrument": name, "num": spectrograph}, update=update)
            for arm in (*ARMS, "x"):  # PrimeFocusSpectrograph.py:96-99
                registry.syncDimensionData("arm", {"instrument": name, "name": arm}, update=update)
            for spectrograph in SPECTROGRAPHS:
                for arm in ARMS:
                    full_name = f"{arm}{spectrograph}"
                    record: dict[str, Any] = {  # PrimeFocusSpectrograph.py:111-123
                        "instrument": name,
                        "id": detector_id(arm, spectrograph),
                        "full_name": full_name,
                        "arm": arm,
                        "spectrograph": spectrograph,
                        "raft": full_name[-1],
                        "name_in_raft": full_name[0],
                        "purpose": "science",
                    }
                    registry.syncDimensionData("detector", record, update=update)
        # Outside the transaction because it may create tables.
        for dataset_type in site_dataset_types(registry.dimensions):
            registry.registerDatasetType(dataset_type)

    def getRawFormatter(self, dataId: Any) -> type:
        from .formatters import FitsImageFormatter

        return FitsImageFormatter
