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


# afw's default mask planes (lsst.afw.image.Mask) and their bits; a task adds its own (addMaskPlane) after them
DEFAULT_MASK_PLANES = {
    "BAD": 0, "SAT": 1, "INTRP": 2, "CR": 3, "EDGE": 4, "DETECTED": 5, "DETECTED_NEGATIVE": 6, "SUSPECT": 7,
    "NO_DATA": 8,
}  # fmt: skip


class Mask:
    """lsst.afw.image.Mask's array and plane lookups: getPlaneBitMask(name or names), getMaskPlaneDict(),
    addMaskPlane(name) (the bit of a new plane is the next free one, as afw's)."""

    def __init__(self, array: np.ndarray, planes: dict[str, int] | None = None):
        self.array = np.asarray(array, dtype=np.int32)
        self.planes = dict(DEFAULT_MASK_PLANES if planes is None else planes)

    def getMaskPlaneDict(self) -> dict[str, int]:
        return dict(self.planes)

    def addMaskPlane(self, name: str) -> int:
        if name not in self.planes:
            self.planes[name] = max(self.planes.values(), default=-1) + 1
        return self.planes[name]

    def getPlaneBitMask(self, names) -> int:
        """As afw: an unknown plane raises (afw: InvalidParameterError)."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.planes]
        if unknown:
            raise KeyError(f"mask has no plane {', '.join(unknown)} (planes: {', '.join(self.planes)})")
        return int(sum(1 << self.planes[n] for n in names))


class StandinExposure(np.ndarray):
    """An image that also answers as an afw Exposure: .image/.mask/.variance .array, getMetadata(). A product
    that keeps a mask (the fiberFlat's BAD_FLAT) carries it with its planes; otherwise the mask is NO_DATA
    where the image is not finite."""

    @classmethod
    def from_array(
        cls, array, mask=None, planes: dict[str, int] | None = None, metadata: dict | None = None
    ) -> StandinExposure:
        out = np.asarray(array).view(cls)
        out._mask = None if mask is None else Mask(mask, planes)
        out._metadata = dict(metadata or {})
        return out

    def __array_finalize__(self, obj) -> None:
        # a view or slice does not share the parent's mask object (shapes would differ)
        self._mask = getattr(obj, "_mask", None) if getattr(obj, "shape", None) == self.shape else None
        self._metadata = dict(getattr(obj, "_metadata", None) or {})

    @property
    def image(self) -> SimpleNamespace:
        return SimpleNamespace(array=np.asarray(self))

    @property
    def mask(self) -> Mask:
        if self._mask is not None:
            return self._mask
        nodata = 1 << DEFAULT_MASK_PLANES["NO_DATA"]
        return Mask(np.where(np.isfinite(np.asarray(self)), 0, nodata))

    @property
    def variance(self) -> SimpleNamespace:
        """Not kept by the demo's products: NaN, as afw writes for an unknown variance."""
        return SimpleNamespace(array=np.full(self.shape, np.nan, dtype=np.float32))

    def getMetadata(self) -> dict:
        """The header (afw: a PropertyList, read with .get(key) and .names()); kept in the FITS file's primary
        header by the demo's formatter. The ISR writes its inputs' provenance there (LSST CALIB UUID <INPUT>)."""
        return Metadata(self._metadata)


class Metadata(dict):
    """lsst.daf.base.PropertyList's names() and get(name, default) over a dict."""

    def names(self) -> list[str]:
        return list(self)


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


def profile_index(radius: int, oversample: int) -> np.ndarray:
    """pfs.drp.stella.FiberProfile.index (drp_stella 3a705d9 fiberProfile.py:41-48): the profile's samples, in
    pixels from the trace centre, oversample per pixel over +-(radius + 1), the centre sample at 0."""
    size = 2 * int((radius + 1) * oversample + 0.5) + 1
    centre = int((radius + 1) * oversample + 0.5)
    return (np.arange(size, dtype=int) - centre) / oversample


class FiberProfile:
    """pfs.drp.stella.FiberProfile's data: index (pixels from the centre), rows (swath centres), profiles
    (swath x sample)."""

    def __init__(self, entry: dict, radius: float, oversample: int):
        self.radius, self.oversample = int(radius), int(oversample)
        self.profiles = np.asarray(entry["profiles"], dtype=float)
        self.rows = np.asarray(entry["swathCentres"], dtype=float)
        self.index = profile_index(self.radius, self.oversample)
        width = self.profiles.shape[1]
        if width != len(self.index):  # written before the demo sampled on the real grid: bin centres
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
