"""Trend-relative judgement: each metric of a camera's product against the same camera's earlier certified
builds, as ESO trends its calibrations ("±10 % around the mean calculated from the trending") on top of the
fixed limits (pfscalib.job.gate).

The band around an epoch's value is built from the builds of the same step and camera whose epochs begin
earlier (the last `window` of them): centre the median, half-width the wider of `relative` × |centre| and
`sigma` robust standard deviations (1.4826 × MAD, once there are at least three builds), from `min_builds`
(2) earlier builds on. A value outside the
band is a warning even inside the fixed limits: a drift is a question for the calibration scientist, not a
broken product. The first builds of a camera have no trend and say so (`none`).

Pure: reads only the sentinels' gate metrics (`quality.metrics`); status, summary and the drift panels call it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable

from pfscalib.plan.config import epoch_order

DEFAULTS = {"window": 5, "relative": 0.10, "sigma": 3.0, "min_builds": 2}


@dataclasses.dataclass(frozen=True)
class Band:
    """Where one metric of one build falls against the earlier builds' band."""

    metric: str
    value: float
    centre: float
    low: float
    high: float
    earlier: int  # builds the band is made of

    @property
    def outside(self) -> bool:
        return not (self.low <= self.value <= self.high)

    def words(self) -> str:
        side = "above" if self.value > self.high else "below"
        return (
            f"{self.metric} {self.value:.4g} is {side} its trend {self.low:.4g}..{self.high:.4g} "
            f"(median of {self.earlier} earlier build(s) {self.centre:.4g})"
        )


def band(values: list[float], settings: dict) -> tuple[float, float, float] | None:
    """(centre, low, high) of the earlier values (oldest first; the last `window` count); None with fewer than
    `min_builds` (one earlier build is a comparison with the incumbent, which the gate already makes)."""
    finite = [v for v in values if math.isfinite(v)][-int(settings["window"]) :]
    if not finite or len(finite) < int(settings.get("min_builds", 1)):
        return None
    centre = statistics.median(finite)
    half = float(settings["relative"]) * abs(centre)
    if len(finite) >= 3:
        mad = statistics.median(abs(v - centre) for v in finite)
        half = max(half, float(settings["sigma"]) * 1.4826 * mad)
    return centre, centre - half, centre + half


def judge(
    sentinel: dict, sentinels: Iterable[dict], epochs: dict[str, dict], settings: dict | None = None
) -> list[Band]:
    """Every metric of `sentinel` against the same step and camera's builds of earlier epochs (empty: no
    trend yet, the first build)."""
    settings = {**DEFAULTS, **(settings or {})}
    order = epoch_order(epochs)
    if sentinel["epoch"] not in order:
        return []
    earlier_epochs = order[: order.index(sentinel["epoch"])]
    key = (sentinel["step"], tuple(sorted(sentinel["dataId"].items())))
    history = {
        s["epoch"]: (s.get("quality") or {}).get("metrics") or {}
        for s in sentinels
        if (s["step"], tuple(sorted(s["dataId"].items()))) == key and s["epoch"] in earlier_epochs
    }
    out = []
    for metric, value in sorted(((sentinel.get("quality") or {}).get("metrics") or {}).items()):
        earlier = [float(history[e][metric]) for e in earlier_epochs if metric in history.get(e, {})]
        found = band(earlier, settings)
        if found is None or not math.isfinite(float(value)):
            continue
        centre, low, high = found
        finite = len([v for v in earlier if math.isfinite(v)][-int(settings["window"]) :])
        out.append(Band(metric, float(value), centre, low, high, finite))
    return out


def verdict(bands: list[Band]) -> str:
    """`none` (no earlier build), `warn` (a metric outside its band) or `pass`."""
    if not bands:
        return "none"
    return "warn" if any(b.outside for b in bands) else "pass"
