"""The demo's products as objects offering the real classes' names for what the workflow reads (QA, metrics):
lsst.afw.image.ExposureF, pfs.drp.stella DetectorMap, ArcLineSet, FiberProfileSet and pfs.datamodel
PfsFiberNorms (pfs-real-site.md section 6). They stay what the stand-in tasks already handle (a numpy image,
JSON dicts); the storage classes (seed.yaml) convert what a task puts into them.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from . import detmap, simulate

# pfs.drp.stella.ReferenceLineStatus bits (drp_stella referenceLine.py) that fitDetectorMap sets
DETECTORMAP_USED = 0x20
DETECTORMAP_RESERVED = 0x40


class StandinExposure(np.ndarray):
    """An image that also answers as an afw Exposure: .image/.mask/.variance .array, getMetadata()."""

    @classmethod
    def from_array(cls, array) -> StandinExposure:
        return np.asarray(array).view(cls)

    @property
    def image(self) -> SimpleNamespace:
        return SimpleNamespace(array=np.asarray(self))

    @property
    def mask(self) -> SimpleNamespace:
        """NO_DATA (bit 8 in afw's default planes) where the image is not finite; the demo keeps no other plane."""
        return SimpleNamespace(array=np.where(np.isfinite(np.asarray(self)), 0, 0x100).astype(np.int32))

    @property
    def variance(self) -> SimpleNamespace:
        """Not kept by the demo's products: NaN, as afw writes for an unknown variance."""
        return SimpleNamespace(array=np.full(self.shape, np.nan, dtype=np.float32))

    def getMetadata(self) -> dict:
        return {}


class Box:
    """lsst.geom.Box2I's getters."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height

    def getMinX(self) -> int:
        return 0

    def getMinY(self) -> int:
        return 0

    def getMaxX(self) -> int:
        return self.width - 1

    def getMaxY(self) -> int:
        return self.height - 1

    def getWidth(self) -> int:
        return self.width

    def getHeight(self) -> int:
        return self.height


class DetectorMap(dict):
    """The demo's detectorMap dict with pfs.drp.stella.DetectorMap's query methods."""

    def _index(self, fiber_id) -> int:
        return detmap.fiber_index(self, int(fiber_id))

    def getFiberId(self) -> np.ndarray:
        return np.array(self["fiberId"], dtype=int)

    def getBBox(self) -> Box:
        return Box(simulate.NX, simulate.NY)

    def getXCenter(self, fiberId, row=None):
        rows = np.arange(simulate.NY, dtype=float) if row is None else np.atleast_1d(np.asarray(row, dtype=float))
        x = detmap.trace_x(self, self._index(fiberId), rows)
        return x if row is None or np.ndim(row) else float(x[0])

    def findPoint(self, fiberId, wavelength) -> np.ndarray:
        """(x, y) of a wavelength on a fibre; arrays of both give an (N, 2) array, as drp_stella's."""
        fibers, wavelengths = np.broadcast_arrays(np.atleast_1d(fiberId), np.atleast_1d(wavelength))
        out = np.empty((len(fibers), 2))
        for k, (f, wl) in enumerate(zip(fibers, wavelengths)):
            index = self._index(f)
            y = detmap.line_y(self, index, np.array([wl]))
            out[k] = (detmap.trace_x(self, index, y)[0], y[0])
        return out if np.ndim(fiberId) or np.ndim(wavelength) else out[0]

    def findWavelength(self, fiberId, row):
        fibers, rows = np.broadcast_arrays(np.atleast_1d(fiberId), np.atleast_1d(np.asarray(row, dtype=float)))
        out = np.empty(len(fibers))
        for fiber in np.unique(fibers):  # one inversion of the fibre's wavelength solution for all its rows
            chosen = fibers == fiber
            out[chosen] = detmap.row_wavelength(self, self._index(fiber), rows[chosen])
        return out if np.ndim(fiberId) or np.ndim(row) else float(out[0])


class ArcLineSet(dict):
    """Columns as attributes (numpy arrays), as pfs.drp.stella.ArcLineSet."""

    COLUMNS = ("fiberId", "wavelength", "x", "y", "xErr", "yErr", "flux", "fluxErr", "flag", "status", "description")

    def __getattr__(self, name: str):
        if name in self.COLUMNS and name in self:
            return np.asarray(self[name])
        raise AttributeError(name)

    def __len__(self) -> int:
        return len(self.get("fiberId", []))


class FiberProfile:
    """pfs.drp.stella.FiberProfile's data: index (pixels from the centre), rows (swath centres), profiles."""

    def __init__(self, entry: dict, radius: float, oversample: int):
        self.radius, self.oversample = radius, oversample
        self.profiles = np.asarray(entry["profiles"], dtype=float)
        self.rows = np.asarray(entry["swathCentres"], dtype=float)
        width = self.profiles.shape[1]
        self.index = -radius + (np.arange(width) + 0.5) / oversample


class FiberProfileSet(dict):
    """fiberId and profile-by-fiberId lookup, as pfs.drp.stella.FiberProfileSet; string keys stay the dict's."""

    @property
    def fiberId(self) -> np.ndarray:
        return np.array(sorted(int(f) for f in self["fibers"]), dtype=int)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return FiberProfile(self["fibers"][str(int(key))], self["radius"], self["oversample"])
        return super().__getitem__(key)


class PfsFiberNorms(dict):
    """pfs.datamodel.PfsFiberNorms' fiberId, wavelength and values (fibre x wavelength)."""

    @property
    def fiberId(self) -> np.ndarray:
        return np.asarray(self["fiberId"], dtype=int)

    @property
    def values(self) -> np.ndarray:  # the real attribute's name (shadows dict.values, unused by the demo)
        return np.asarray(self["values"], dtype=float)

    @property
    def wavelength(self) -> np.ndarray:
        return np.broadcast_to(np.asarray(self["wavelength"], dtype=float), self.values.shape)
