"""The demo detectorMap: a JSON-able dict mapping (fiberId, wavelength) <-> (x, y).

x(fibre, y)      = sum_k trace[f][k] * u**k,                u = (y - NY/2) / (NY/2)
y(fibre, lambda) = base_line_y(lambda) + sum_ij c_ij T**i X**j + slitOffsets[f]
                   T = 2 t - 1 (t: position in the arm's wavelength range), X = fibre's normalised slit x
"""

from __future__ import annotations

import numpy as np

from . import simulate


def slit_x(fiber_index: np.ndarray) -> np.ndarray:
    return (simulate.FIBER_X0 + simulate.FIBER_PITCH * np.asarray(fiber_index) - simulate.NX / 2) / (simulate.NX / 2)


def norm_t(arm: str, wavelength: np.ndarray) -> np.ndarray:
    lo, hi = simulate.ARM_RANGE[arm]
    return 2.0 * (np.asarray(wavelength, dtype=float) - lo) / (hi - lo) - 1.0


def poly_terms(order: int, with_pure_x: bool = True) -> list[tuple[int, int]]:
    """(i, j) exponents of T**i X**j with i + j <= order; pure-X terms dropped when slit offsets absorb them."""
    return [(i, j) for i in range(order + 1) for j in range(order + 1 - i) if with_pure_x or i > 0]


def design(terms: list[tuple[int, int]], t: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.stack([t**i * x**j for i, j in terms], axis=-1)


def new(arm: str, spectrograph: int, fiber_ids: list[int]) -> dict:
    """A detectorMap from the base optical model (straight traces, nominal wavelengths)."""
    n = len(fiber_ids)
    x0 = simulate.base_fiber_x(np.array([simulate.NY / 2]))[:n, 0]
    return {
        "arm": arm,
        "spectrograph": spectrograph,
        "fiberId": list(map(int, fiber_ids)),
        "trace": [[float(v), 0.0, 0.0] for v in x0],
        "terms": [[0, 0]],
        "coeffs": [0.0],
        "slitOffsets": [0.0] * n,
    }


def model_fiber_ids(spectrograph: int) -> list[int]:
    """The fibres of a spectrograph's base model (what drp_pfs_data's detectorMap file holds): all of them,
    lit or not, GOOD or not."""
    return list(range((spectrograph - 1) * simulate.NFIBER + 1, spectrograph * simulate.NFIBER + 1))


def fiber_index(dm: dict, fiber_id: int) -> int:
    return dm["fiberId"].index(int(fiber_id))


def trace_x(dm: dict, index: int, y: np.ndarray) -> np.ndarray:
    u = (np.asarray(y, dtype=float) - simulate.NY / 2) / (simulate.NY / 2)
    return np.polynomial.polynomial.polyval(u, dm["trace"][index])


def line_y(dm: dict, index: int, wavelength: np.ndarray) -> np.ndarray:
    wavelength = np.atleast_1d(np.asarray(wavelength, dtype=float))
    terms = [tuple(t) for t in dm["terms"]]
    x = np.full(wavelength.shape, slit_x(index))
    a = design(terms, norm_t(dm["arm"], wavelength), x)
    return simulate.base_line_y(dm["arm"], wavelength) + a @ np.asarray(dm["coeffs"]) + dm["slitOffsets"][index]


def row_wavelength(dm: dict, index: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Wavelength at each row (inverse of line_y)."""
    rows = np.arange(simulate.NY) if rows is None else rows
    lo, hi = simulate.ARM_RANGE[dm["arm"]]
    grid = np.linspace(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), 6000)
    return np.interp(rows, line_y(dm, index, grid), grid)


def fit_traces(dm: dict, points: dict[int, tuple[np.ndarray, np.ndarray]], order: int = 3) -> None:
    """Refit x(y) of each fibre from {index: (y, x)} measurements (fibres without points are kept)."""
    for index, (y, x) in points.items():
        if len(y) > order + 2:
            u = (np.asarray(y) - simulate.NY / 2) / (simulate.NY / 2)
            dm["trace"][index] = np.polynomial.polynomial.polyfit(u, x, order).tolist()
