"""Quality metrics of one product of one camera (or arm), from what a real site has: the product through the
real classes' Python API (pfs-real-site.md section 6) and the tasks' middleware-native `<label>_log`
records. The same numbers feed the gate (pfscalib.job.gate), the sentinels, the QA pictures and the drift panels.

Only these names are used on products (tests/test_quality_gate.py checks it): ExposureF `.image.array`;
DetectorMap `getFiberId()`, `getXCenter(fiberId, row)`, `findPoint(fiberId, wavelength)`,
`findWavelength(fiberId, row)`, `getBBox()` (Box2I `getMinX/getMaxX/getMinY/getMaxY`); ArcLineSet columns
`fiberId, wavelength, x, y, flux, fluxErr, flag, status, description`; Mask `getPlaneBitMask(name)`,
`getMaskPlaneDict()`; FiberProfileSet `fiberId` and `[fiberId]`
(FiberProfile `index`, `profiles`); PfsFiberNorms `fiberId`, `values`; ButlerLogRecords' `message`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from pfscalib.plan.steps import Measure

# pfs.drp.stella.ReferenceLineStatus (drp_stella referenceLine.py): bits fitDetectorMap sets on detectorMapLines
DETECTORMAP_USED = 0x20
DETECTORMAP_RESERVED = 0x40
MIN_LINE_SNR = 10.0  # pfs_pipe2d weekly test_weekly.py: lines with S/N > 10 count
MIN_GOOD_LINES = 10  # drp_qa f59e4d2 imageQualityQa.py:207 minGoodLines: fewer good lines, no flag rate
# drp_stella centroidTraces.py:205-223: trace centroids enter every visit's lines with this description, and
# fitDetectorMap.py:843-870 rewrites their wavelength from the fitted map (their residual is ~0 by construction)
TRACE = "Trace"
BAD_FLAT = "BAD_FLAT"  # drp_stella pipelines/flat.py:278: the mask plane of fiberFlat pixels without data
# Noise of a 3-sigma, 3-iteration clipped mean (afw MEANCLIP as cp_pipe combines) of N Gaussian frames over
# sigma/sqrt(N): measured 1.05-1.08 for 4-10 frames (1.0 for 2-3; tests/test_real_products.py checks it)
CLIPPED_MEAN_EFFICIENCY = 1.06
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
    """cp_verify's bias checks on the combined bias: its level, and its noise against what the read noise gives
    a clipped mean of N frames (cp_pipe's combine = MEANCLIP, 3 sigma, 3 iterations; its clipping costs
    CLIPPED_MEAN_EFFICIENCY in noise over a plain mean, measured on Gaussian frames by
    tests/test_real_products.py)."""
    image = image_array(product)
    noise = pixel_noise(image)
    expected = read_noise * CLIPPED_MEAN_EFFICIENCY / math.sqrt(max(visits, 1))
    return {"bias.mean": float(np.nanmedian(image)), "bias.noise": noise, "bias.noise_ratio": noise / expected}


def dark_metrics(product: Any) -> dict[str, float]:
    image = image_array(product)
    return {"dark.current": float(np.nanmedian(image)), "dark.noise": pixel_noise(image)}


def flat_bad(product: Any) -> np.ndarray:
    """Pixels without a flat: drp_stella's FlatCombineTask sets them to 1.0 and flags them BAD_FLAT
    (pipelines/flat.py:274-287), so a real fiberFlat has no NaN; non-finite pixels count as well."""
    image = image_array(product)
    bad = ~np.isfinite(image)
    mask = product.mask
    if BAD_FLAT in mask.getMaskPlaneDict():
        bad |= (np.asarray(mask.array) & mask.getPlaneBitMask(BAD_FLAT)) != 0
    return bad


def flat_metrics(product: Any) -> dict[str, float]:
    image = image_array(product)
    good = ~flat_bad(product)
    level = float(np.median(image[good])) if np.any(good) else math.nan
    return {
        "fiberFlat.scatter": robust_sigma(image[good] / level) if np.any(good) else math.nan,
        "fiberFlat.good_fraction": float(np.mean(good)),
    }


@dataclasses.dataclass
class BootstrapLog:
    """What drp_stella's BootstrapTask logs (bootstrap.py 371, 464, 555-556, 561-562): lines found on the arc
    and the traces they lie on, lines matched, and per CCD half the median difference (x, y) of the matched
    lines from the offset map and the fit (kept/matched points, rms x, y, total). The last run's numbers when
    a log holds several. The one reader of that log: the quality gate (bootstrap_metrics) and the offset
    proposal (pfscalib.job.offsets.parse_log) take their numbers from here.

    Two RMS, each for its question:
    - worst_rms, the gate's `bootstrap.rms`: the larger of the CCD halves' total RMS. A certified map must be
      good on both halves; a combined number would let a good half hide a bad one.
    - combined_rms, the offset scan's: the halves' total RMS combined in quadrature, weighted by the points
      each kept (the RMS of all kept points). It ranks offsets by one number per grid point, where a half
      that keeps few points should weigh little.
    median_dy (both): the halves' median spectral difference, weighted by the points each kept.
    """

    lines: int = 0
    traces: int = 0
    matched: int = 0
    medians: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    fits: list[tuple[int, int, float, float, float]] = dataclasses.field(default_factory=list)

    @property
    def fitted(self) -> int:
        return sum(f[0] for f in self.fits)

    @property
    def fit_total(self) -> int:
        return sum(f[1] for f in self.fits)

    @property
    def worst_rms(self) -> float:
        totals = [f[4] for f in self.fits]
        return max(totals) if totals and all(math.isfinite(t) for t in totals) else math.nan

    @property
    def combined_rms(self) -> float:
        if not self.fits:
            return math.nan
        return math.sqrt(sum(f[0] * f[4] ** 2 for f in self.fits) / max(1, self.fitted))

    @property
    def median_dy(self) -> float:
        finite = [(m[1], f[0]) for m, f in zip(self.medians, self.fits) if math.isfinite(m[1])]
        if not finite:
            return math.nan
        return sum(m * w for m, w in finite) / max(1, sum(w for _, w in finite))


def parse_bootstrap_log(messages: list[str]) -> BootstrapLog:
    """The bootstrap task's numbers from its log messages (one Median and one Fit line per CCD half; a new
    "Found" line starts a new run)."""
    out = BootstrapLog()
    for message in messages:
        if m := FOUND.search(message):
            out = BootstrapLog(lines=int(m.group(1)), traces=int(m.group(2)))
        elif m := MATCHED.search(message):
            out.matched = int(m.group(1))
        elif m := MEDIAN.search(message):
            out.medians.append((float(m.group(1)), float(m.group(2))))
        elif m := FIT.search(message):
            out.fits.append((int(m.group(1)), int(m.group(2)), *(float(m.group(k)) for k in (3, 4, 5))))
    return out


def bootstrap_metrics(log_messages: list[str]) -> dict[str, float]:
    """From the bootstrap task's log (the only place the real task reports them). The fit's RMS (the worst
    CCD half's: BootstrapLog says why) and the points it kept per trace judge the map; matched over found
    depends on the lamp's line list as much as on the offset (a shipped m1 matched 56 %)."""
    log = parse_bootstrap_log(log_messages)
    out: dict[str, float] = {}
    if log.lines:
        out["bootstrap.lines_found"] = float(log.lines)
        out["bootstrap.matched_fraction"] = log.matched / log.lines
    if log.fits:
        out["bootstrap.fit_fraction"] = log.fitted / max(log.fit_total, 1)
        out["bootstrap.fit_per_trace"] = log.fitted / max(log.traces, 1) if log.traces else math.nan
        out["bootstrap.rms"] = log.worst_rms
    if log.medians:
        out["bootstrap.median_dy"] = log.median_dy
    return out


def trace_curves(detector_map: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(x, rows) of every fibre's trace over the detector."""
    box = detector_map.getBBox()
    rows = np.arange(box.getMinY(), box.getMaxY() + 1, dtype=float)
    return [(np.asarray(detector_map.getXCenter(int(f), rows)), rows) for f in detector_map.getFiberId()]


def line_residuals(detector_map: Any, lines: Any) -> dict[str, np.ndarray]:
    """The fitted arc lines (not flagged, with a wavelength, not a trace centroid): position, wavelength
    residual findWavelength(fiberId, y) - wavelength (nm), S/N, and the fit's group (USED, RESERVED, other).
    Trace rows are dropped as pfs_pipe2d's weekly test does (test_weekly.py:126): their wavelength is
    findWavelength of the fitted map itself, so their residual is ~0 whatever the map."""
    status = np.asarray(lines.status, dtype=int)
    wavelength = np.asarray(lines.wavelength, dtype=float)
    keep = np.isfinite(wavelength) & ~np.asarray(lines.flag, dtype=bool)
    keep &= np.asarray(lines.description, dtype=str) != TRACE
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


def flagged_pct(lines: Any) -> float:
    """drp_qa's pctFlagged (f59e4d2 imageQualityQa.py:699-703): the percentage of the measured arc lines
    flagged, NaN where fewer than minGoodLines are good (unflagged, reference status GOOD: its sparse case).
    Over the arc rows of detectorMapLines (Trace rows are trace centroids, not arc lines), whose status also
    carries the fit's USED/RESERVED bits, which are no fault of the line."""
    arc = np.asarray(lines.description, dtype=str) != TRACE
    flag = np.asarray(lines.flag, dtype=bool)[arc]
    reference = np.asarray(lines.status, dtype=int)[arc] & ~(DETECTORMAP_USED | DETECTORMAP_RESERVED)
    good = ~flag & (reference == 0)
    if int(good.sum()) < MIN_GOOD_LINES:
        return math.nan
    return 100.0 * float(flag.sum()) / len(flag)


def median_fwhm(lines: Any) -> float:
    """drp_qa's medFWHM (f59e4d2 imageQualityQa.py:680-684) of the unflagged arc lines: FWHM from each line's
    second moments as drp_stella 3a705d9 utils/quality.py:35-58 (getFWHM: 2 sqrt(2 ln 2) sqrt(ab)), finite
    and below 8 px (quality.py:237-239). NaN where the lines carry no moments (the demo's have none)."""
    try:
        xx, xy, yy = (np.asarray(getattr(lines, c), dtype=float) for c in ("xx", "xy", "yy"))
    except AttributeError:
        return math.nan
    tmp = np.sqrt((xx - yy) ** 2 + 4 * xy**2)
    with np.errstate(invalid="ignore"):
        r = np.sqrt(np.sqrt(0.5 * (xx + yy + tmp)) * np.sqrt(0.5 * (xx + yy - tmp)))
    fwhm = 2 * np.sqrt(2 * np.log(2)) * r
    keep = ~np.asarray(lines.flag, dtype=bool) & (np.asarray(lines.description, dtype=str) != TRACE)
    keep &= np.isfinite(fwhm) & (fwhm < 8)
    return float(np.median(fwhm[keep])) if np.any(keep) else math.nan


def detector_map_metrics(detector_map: Any, lines: Any | None) -> dict[str, float]:
    """PFS's weekly acceptance (pfs_pipe2d test_weekly.py:126-132): per fibre that has arc lines (a map's
    fibres come from the model, and only GOOD fibres are measured), lines with S/N > 10 (USED and RESERVED by
    the fit), and the median and robust RMS of their wavelength residual (nm); the RESERVED lines alone give
    the unbiased accuracy. Plus the wavelength at the detector centre (drift between epochs)."""
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
    with_lines = np.unique(table["fiberId"])
    counts = [int(np.sum(fiber == f)) for f in with_lines]
    medians = [abs(float(np.median(residual[fiber == f]))) for f in with_lines if np.any(fiber == f)]
    rms = [robust_sigma(residual[fiber == f]) for f in with_lines if np.sum(fiber == f) > 1]
    out["detectorMap.flagged_pct"] = flagged_pct(lines)
    out["detectorMap.median_fwhm"] = median_fwhm(lines)
    out.update(
        {
            "detectorMap.min_lines": float(min(counts)) if counts else 0.0,
            "detectorMap.fibers_with_lines": float(len(with_lines)),
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
    from pfscalib.job import butler as butlerops

    return [record.message for record in butlerops.task_log(butler, label, run, data_id)]


def run_lines(butler, run: str, data_id: dict) -> Any | None:
    """The detectorMapLines (ArcLineSet) the fit wrote beside a detectorMap in its run."""
    from pfscalib.job import butler as butlerops

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
