"""Quality metrics of one product of one camera (or arm), from what a real site has: the product through the
real classes' Python API (pfs-real-site.md section 6) and the tasks' middleware-native `<label>_log`
records. The same numbers feed the gate (pfscalib.gate), the sentinels, the QA pictures and the drift panels.

Only these names are used on products (tests/test_quality_gate.py checks it): ExposureF `.image.array`;
DetectorMap `getFiberId()`, `getXCenter(fiberId, row)`, `findPoint(fiberId, wavelength)`,
`findWavelength(fiberId, row)`, `getBBox()` (Box2I `getMinX/getMaxX/getMinY/getMaxY`); ArcLineSet columns
`fiberId, wavelength, x, y, flux, fluxErr, flag, status`; FiberProfileSet `fiberId` and `[fiberId]`
(FiberProfile `index`, `profiles`); PfsFiberNorms `fiberId`, `values`; ButlerLogRecords' `message`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .steps import Measure

# pfs.drp.stella.ReferenceLineStatus (drp_stella referenceLine.py): bits fitDetectorMap sets on detectorMapLines
DETECTORMAP_USED = 0x20
DETECTORMAP_RESERVED = 0x40
MIN_LINE_SNR = 10.0  # pfs_pipe2d weekly test_weekly.py: lines with S/N > 10 count
# The real BootstrapTask's log lines (drp_stella bootstrap.py 371, 464, 555-556, 561-562)
FOUND = re.compile(r"Found (\d+) lines in (\d+) traces")
MATCHED = re.compile(r"Matched (\d+) lines")
MEDIAN = re.compile(r"Median difference from detectorMap: (\S+),(\S+) pixels")
FIT = re.compile(r"Fit (\d+)/(\d+) points, rms: x=(\S+) y=(\S+) total=(\S+) pixels")


def robust_sigma(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if np.size(values) == 0:
        return math.nan
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def pixel_noise(image: np.ndarray) -> float:
    """Pixel-to-pixel noise: robust sigma after each column's median is removed (so that column structure,
    which a bias is meant to carry, is not counted as noise)."""
    image = np.asarray(image, dtype=float)
    return robust_sigma(image - np.nanmedian(image, axis=0, keepdims=True))


def image_array(product: Any) -> np.ndarray:
    """The pixels of an afw Exposure (what QA shows)."""
    return np.asarray(product.image.array, dtype=float)


def bias_metrics(product: Any, visits: int, read_noise: float) -> dict[str, float]:
    """cp_verify's bias checks on the combined bias: its level, and its noise against the noise the read noise
    gives a median of N frames (sqrt(pi/2) noisier than a mean)."""
    image = image_array(product)
    noise = pixel_noise(image)
    expected = read_noise * math.sqrt(math.pi / 2 / max(visits, 1))
    return {"bias.mean": float(np.nanmedian(image)), "bias.noise": noise, "bias.noise_ratio": noise / expected}


def dark_metrics(product: Any) -> dict[str, float]:
    image = image_array(product)
    return {"dark.current": float(np.nanmedian(image)), "dark.noise": pixel_noise(image)}


def flat_metrics(product: Any) -> dict[str, float]:
    image = image_array(product)
    finite = np.isfinite(image)
    level = float(np.nanmedian(image))
    return {
        "fiberFlat.scatter": robust_sigma(image[finite] / level) if np.any(finite) else math.nan,
        "fiberFlat.good_fraction": float(np.mean(finite)),
    }


def bootstrap_metrics(log_messages: list[str]) -> dict[str, float]:
    """From the bootstrap task's log (the only place the real task reports them)."""
    text = "\n".join(log_messages)
    found = [int(m.group(1)) for m in FOUND.finditer(text)]
    matched = [int(m.group(1)) for m in MATCHED.finditer(text)]
    fits = [(int(m.group(1)), int(m.group(2)), float(m.group(5))) for m in FIT.finditer(text)]
    medians = [float(m.group(2)) for m in MEDIAN.finditer(text)]
    out: dict[str, float] = {}
    if found and matched:
        out["bootstrap.lines_found"] = float(found[-1])
        out["bootstrap.matched_fraction"] = matched[-1] / max(found[-1], 1)
    if fits:
        out["bootstrap.fit_fraction"] = sum(f[0] for f in fits) / max(sum(f[1] for f in fits), 1)
        out["bootstrap.rms"] = max(f[2] for f in fits)
    if medians:
        out["bootstrap.median_dy"] = float(np.median(medians))
    return out


def trace_curves(detector_map: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x, rows) of every fibre's trace over the detector."""
    box = detector_map.getBBox()
    rows = np.arange(box.getMinY(), box.getMaxY() + 1, dtype=float)
    return [(np.asarray(detector_map.getXCenter(int(f), rows)), rows) for f in detector_map.getFiberId()]


def line_residuals(detector_map: Any, lines: Any) -> dict[str, np.ndarray]:
    """The fitted arc lines (not flagged, with a wavelength): position, wavelength residual
    findWavelength(fiberId, y) - wavelength (nm), S/N, and the fit's group (USED, RESERVED, other)."""
    status = np.asarray(lines.status, dtype=int)
    wavelength = np.asarray(lines.wavelength, dtype=float)
    keep = np.isfinite(wavelength) & ~np.asarray(lines.flag, dtype=bool)
    # the dtypes drp_stella's array overloads take (FiberIds: int32; rows: float64, contiguous)
    fiber = np.ascontiguousarray(np.asarray(lines.fiberId)[keep], dtype=np.int32)
    y = np.ascontiguousarray(np.asarray(lines.y, dtype=float)[keep])
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = (np.asarray(lines.flux, dtype=float) / np.asarray(lines.fluxErr, dtype=float))[keep]
    residual = np.asarray(detector_map.findWavelength(fiber, y), dtype=float) - wavelength[keep]
    bits = status[keep]
    group = np.where(
        (bits & DETECTORMAP_RESERVED) != 0, "RESERVED", np.where((bits & DETECTORMAP_USED) != 0, "USED", "other")
    )
    x = np.asarray(lines.x, dtype=float)[keep]
    return {"fiberId": fiber, "x": x, "y": y, "wavelength": wavelength[keep], "residual": residual, "snr": snr,
            "group": group}  # fmt: skip


def detector_map_metrics(detector_map: Any, lines: Any | None) -> dict[str, float]:
    """PFS's weekly acceptance (pfs_pipe2d test_weekly.py): per fibre, lines with S/N > 10 (USED and RESERVED
    by the fit), and the median and robust RMS of their wavelength residual (nm); the RESERVED lines alone
    give the unbiased accuracy. Plus the wavelength at the detector centre (drift between epochs)."""
    fiber_ids = np.asarray(detector_map.getFiberId())
    box = detector_map.getBBox()
    middle_fiber = int(fiber_ids[len(fiber_ids) // 2])
    centre_row = 0.5 * (box.getMinY() + box.getMaxY())
    out = {"detectorMap.wavelength_center": float(detector_map.findWavelength(middle_fiber, centre_row))}
    if lines is None:
        return out
    table = line_residuals(detector_map, lines)
    good = (table["group"] != "other") & (table["snr"] > MIN_LINE_SNR)
    fiber, residual = table["fiberId"][good], table["residual"][good]
    reserved = table["group"][good] == "RESERVED"
    counts = [int(np.sum(fiber == f)) for f in fiber_ids]
    medians = [abs(float(np.median(residual[fiber == f]))) for f in fiber_ids if np.any(fiber == f)]
    rms = [robust_sigma(residual[fiber == f]) for f in fiber_ids if np.sum(fiber == f) > 1]
    out.update(
        {
            "detectorMap.min_lines": float(min(counts)) if counts else 0.0,
            "detectorMap.max_fiber_median": max(medians) if medians else math.nan,
            "detectorMap.max_fiber_rms": max(rms) if rms else math.nan,
            "detectorMap.reserved_rms": robust_sigma(residual[reserved]) if np.any(reserved) else math.nan,
        }
    )
    return out


def profile_widths(profiles: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per fibre: the median over swaths of the profile's second moment (pixels)."""
    fiber_ids = np.asarray(profiles.fiberId)
    widths = []
    for fiber_id in fiber_ids:
        profile = profiles[int(fiber_id)]
        values = np.clip(np.asarray(profile.profiles, dtype=float), 0, None)
        offsets = np.asarray(profile.index, dtype=float)
        norm = values.sum(axis=1)
        ok = norm > 0
        sigma = np.sqrt((values[ok] * offsets**2).sum(axis=1) / norm[ok])
        widths.append(float(np.median(sigma)) if np.size(sigma) else math.nan)
    return fiber_ids, np.array(widths)


def profile_metrics(profiles: Any) -> dict[str, float]:
    """Widths and how many fibres have a profile."""
    _, widths = profile_widths(profiles)
    some = bool(np.any(np.isfinite(widths)))
    return {
        "fiberProfiles.traces": float(np.size(widths)),
        "fiberProfiles.width_median": float(np.nanmedian(widths)) if some else math.nan,
        "fiberProfiles.width_max": float(np.nanmax(widths)) if some else math.nan,
    }


def fiber_norms(norms: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per fibre: the median norm over wavelength."""
    return np.asarray(norms.fiberId), np.nanmedian(np.asarray(norms.values, dtype=float), axis=1)


def norms_metrics(norms: Any) -> dict[str, float]:
    _, per_fiber = fiber_norms(norms)
    return {
        "fiberNorms.median": float(np.nanmedian(per_fiber)),
        "fiberNorms.min": float(np.nanmin(per_fiber)),
        "fiberNorms.max": float(np.nanmax(per_fiber)),
    }


# ------------------------------------------------------------------ reading through the middleware
def log_messages(butler, label: str, run: str, data_id: dict) -> list[str]:
    """A task's `<label>_log` (ButlerLogRecords) in a run: its messages, or none if it is not there."""
    from . import butlerops

    return [record.message for record in butlerops.task_log(butler, label, run, data_id)]


def run_lines(butler, run: str, data_id: dict) -> Any | None:
    """The detectorMapLines (ArcLineSet) the fit wrote beside a detectorMap in its run."""
    from . import butlerops

    return butlerops.run_product(butler, "detectorMapLines", run, data_id)


def measure(butler, kind: Measure, ref, run: str, data_id: dict, visits: int, read_noise: float) -> dict[str, float]:
    """The metrics of the product `ref`, whose task outputs (logs, detectorMapLines) are in `run`."""

    product = butler.get(ref)
    if kind == "bias_frame":
        return bias_metrics(product, visits, read_noise)
    if kind == "dark_frame":
        return dark_metrics(product)
    if kind == "flat_field":
        return flat_metrics(product)
    if kind == "bootstrap_lines":
        return bootstrap_metrics(log_messages(butler, "bootstrap", run, data_id))
    if kind == "detector_map":
        return detector_map_metrics(product, run_lines(butler, run, data_id))
    if kind == "profiles":
        return profile_metrics(product)
    return norms_metrics(product)
