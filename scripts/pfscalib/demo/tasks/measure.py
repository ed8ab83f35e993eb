"""Numerical helpers shared by the demo's spectroscopic tasks: peaks, centroids, trace extraction."""

from __future__ import annotations

import numpy as np

from .. import detmap, simulate

TRACE = "Trace"  # description of trace centroids among the lines (drp_stella centroidTraces.py:220)


def parabola_offset(a: float, b: float, c: float) -> float:
    """Sub-pixel offset of a Gaussian peak from three samples (exact for a sampled Gaussian)."""
    la, lb, lc = (np.log(max(v, 1e-6)) for v in (a, b, c))
    denom = la - 2 * lb + lc
    return float(np.clip(0.5 * (la - lc) / denom, -1, 1)) if denom < 0 else 0.0


def refine(values: np.ndarray, i: int) -> float:
    if i <= 0 or i >= len(values) - 1:
        return float(i)
    return i + parabola_offset(values[i - 1], values[i], values[i + 1])


def local_peaks(values: np.ndarray, threshold: float) -> list[float]:
    """Refined positions of local maxima above threshold."""
    v = np.asarray(values)
    idx = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]) & (v[1:-1] > threshold)) + 1
    return [refine(v, int(i)) for i in idx]


def noise_level(values: np.ndarray) -> float:
    """Robust sigma of the quietest half of a spectrum."""
    v = np.sort(np.asarray(values)[np.isfinite(values)])
    low = v[: max(len(v) // 2, 3)]
    return float(1.4826 * np.median(np.abs(low - np.median(low))) + 1e-3)


def extract_boxcar(image: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Per-row sum of pixels within radius of the trace centre (centres: x per row)."""
    x = np.arange(image.shape[1])
    window = np.abs(x[np.newaxis, :] - centres[:, np.newaxis]) <= radius
    return np.nansum(np.where(window, image, 0.0), axis=1)


def find_traces(image: np.ndarray, expected: int, block: int = 16) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Blind trace finding on a quartz: fibre peaks in row blocks, linked by order across the slit."""
    points: dict[int, tuple[list, list]] = {i: ([], []) for i in range(expected)}
    for start in range(0, image.shape[0] - block + 1, block):
        profile = np.nanmedian(image[start : start + block], axis=0)
        peaks = local_peaks(profile, 0.15 * np.nanmax(profile))
        if len(peaks) != expected:
            continue
        for i, x in enumerate(peaks):
            points[i][0].append(start + (block - 1) / 2)
            points[i][1].append(x)
    return {i: (np.array(ys), np.array(xs)) for i, (ys, xs) in points.items()}


def trace_centroids(
    image: np.ndarray,
    dm: dict,
    rows: np.ndarray,
    indices: list[int] | None = None,
    threshold: float = 10.0,
    search: int = 3,
) -> list[tuple[int, float, float, float, float]]:
    """(fibre index, y, x, flux, fluxErr) of the trace centre near the detectorMap's prediction at the given
    rows, where the trace stands out (flux/fluxErr > threshold: an arc's traces only near its lines), for
    the fibres `indices` (all the map's by default)."""
    out = []
    for index in range(len(dm["fiberId"])) if indices is None else indices:
        xs = detmap.trace_x(dm, index, rows)
        for y, xp in zip(rows, xs):
            i0 = int(round(xp))
            lo, hi = max(i0 - search, 1), min(i0 + search + 1, image.shape[1] - 1)
            band = image[max(int(y) - 2, 0) : int(y) + 3]  # 5 rows: the trace moves < 0.3 px over them
            if hi <= lo or not np.isfinite(band[:, lo:hi]).any():
                continue
            row = np.nanmean(band, axis=0)
            i = lo + int(np.nanargmax(row[lo:hi]))
            flux = float(row[i] * len(band))
            flux_err = float(np.sqrt(max(flux, 0.0) + len(band) * simulate.READ_NOISE**2))
            if flux > threshold * flux_err:
                out.append((index, float(y), refine(row, i), flux, flux_err))
    return out


def arc_centroids(
    image: np.ndarray,
    dm: dict,
    wavelengths: np.ndarray,
    radius: float = 2.0,
    search: float = 3.0,
    nsigma: float = 10.0,
    indices: list[int] | None = None,
) -> list[dict]:
    """Centroid every reference line of every fibre (or of the fibres `indices`) near the detectorMap's
    predicted row."""
    out = []
    rows = np.arange(simulate.NY)
    for index, fiber_id in enumerate(dm["fiberId"]):
        if indices is not None and index not in indices:
            continue
        spectrum = extract_boxcar(image, detmap.trace_x(dm, index, rows), radius)
        sigma = noise_level(spectrum)
        for wl, yp in zip(wavelengths, detmap.line_y(dm, index, wavelengths)):
            lo, hi = int(np.floor(yp - search)), int(np.ceil(yp + search)) + 1
            if lo < 1 or hi > simulate.NY - 1:
                continue
            i = lo + int(np.argmax(spectrum[lo:hi]))
            flux = float(spectrum[i])
            if flux < nsigma * sigma or i in (lo, hi - 1):
                continue
            y = refine(spectrum, i)
            xrow = image[i]
            xc = float(detmap.trace_x(dm, index, np.array([y]))[0])
            j = int(round(xc))
            x = refine(xrow, j) if 0 < j < image.shape[1] - 1 else xc
            out.append(
                {
                    "fiberId": int(fiber_id),
                    "wavelength": float(wl),
                    "x": x,
                    "y": y,
                    "xErr": 0.05,
                    "yErr": float(simulate.LSF_SIGMA * np.sqrt(2.0 / max(flux, 1.0)) + 0.005),
                    "flux": flux,
                    # photon noise and the read noise of the extraction box
                    "fluxErr": float(np.sqrt(max(flux, 0.0) + (2 * radius + 1) * simulate.READ_NOISE**2)),
                    "description": "ArKrNe",
                }
            )
    return out
