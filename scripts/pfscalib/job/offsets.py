"""spectralOffset `auto`: propose each camera's bootstrap offset from what the site's own bootstrap task logs.

The task is run (pfscalib.job.scan, or one pipetask job per grid point) at offsets spaced no wider than its
capture range (matchRadius / dispersion: an offset within it still matches the arc lines). Each run logs,
as drp_stella's BootstrapTask does into `bootstrap_log`:

    Found %d lines in %d traces / Matched %d lines / Median difference from detectorMap: %f,%f pixels /
    Fit %d/%d points, rms: x=%f y=%f total=%f pixels        (Median and Fit once per CCD half)

A grid point scores the lines its fit keeps, times the fraction of the lines found that matched, discounted
by the fit's RMS (ScanPoint.score). The best point is refined by the median difference between the
matched lines and the offset map. A camera is refused (no proposal) when the best point fits too few lines
or too badly, or does not stand out from the best point that cannot share its capture range (more than
twice the capture range away: the truth lies within one capture range of the best point).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from pathlib import Path

from pfscalib.job.metrics import parse_bootstrap_log


@dataclasses.dataclass
class ScanPoint:
    """What the bootstrap task logged at one offset (per-half numbers combined)."""

    offset: float
    lines: int = 0  # found on the arc
    traces: int = 0
    matched: int = 0
    fitted: int = 0  # kept by the fit
    fit_total: int = 0
    median_dy: float = math.nan  # matched lines minus the offset map, spectral (pixels)
    rms: float = math.nan  # fit RMS of all kept points (pixels; BootstrapLog.combined_rms)
    error: str = ""  # the task raised (e.g. no match in a CCD half)

    def score(self, rms_scale: float) -> float:
        """Lines the fit keeps, times the fraction of the lines found that matched, discounted by the fit's
        RMS in units of a good bootstrap's. At a wrong offset lines still match (other reference lines)
        and the clipped fit of a subset can be tight, but fewer lines match and fewer are kept."""
        if not self.fitted or not self.lines or not math.isfinite(self.rms):
            return 0.0
        return self.fitted * (self.matched / self.lines) / (1.0 + (self.rms / rms_scale) ** 2)


def parse_log(offset: float, messages: Iterable[str], error: str = "") -> ScanPoint:
    """One run's numbers from its log messages, read as the gate reads them (metrics.BootstrapLog, which says
    why the scan ranks by the combined RMS and the gate judges the worst half's)."""
    log = parse_bootstrap_log(list(messages))
    point = ScanPoint(offset=offset, error=error, lines=log.lines, traces=log.traces, matched=log.matched)
    if log.fits and not error:
        point.fitted, point.fit_total = log.fitted, log.fit_total
        point.rms, point.median_dy = log.combined_rms, log.median_dy
    return point


@dataclasses.dataclass
class Proposal:
    camera: str
    epoch: str
    value: float | None  # None: refused
    reason: str  # why refused, or how chosen
    best: ScanPoint | None
    best_score: float
    runner_up: ScanPoint | None
    runner_up_score: float
    capture: float  # pixels
    points: list[ScanPoint]

    @property
    def refused(self) -> bool:
        return self.value is None

    def line(self) -> str:
        """One line for the user."""
        if self.refused:
            return f"spectralOffset of {self.camera} ({self.epoch}) refused, not bootstrapped: {self.reason}"
        return f"spectralOffset of {self.camera} ({self.epoch}): {self.value:g} pixels ({self.reason})"

    def to_json(self) -> dict:
        return {
            "camera": self.camera,
            "epoch": self.epoch,
            "spectralOffset": self.value,
            "refused": self.refused,
            "reason": self.reason,
            "score": self.best_score,
            "best": dataclasses.asdict(self.best) if self.best else None,
            "runnerUp": dataclasses.asdict(self.runner_up) if self.runner_up else None,
            "runnerUpScore": self.runner_up_score,
            "captureRange": self.capture,
            "grid": [dataclasses.asdict(p) for p in self.points],
        }


def propose(
    camera: str, epoch: str, points: list[ScanPoint], capture: float, search: dict
) -> Proposal:  # search: config offset_search
    points = sorted(points, key=lambda p: p.offset)
    max_rms = float(search["maxRms"])
    scores = [p.score(float(search["rmsScale"])) for p in points]
    proposal = Proposal(camera, epoch, None, "", None, 0.0, None, 0.0, capture, points)
    most = max(points, key=lambda p: p.lines, default=None)
    if most is None or most.lines < int(search["minLines"]):
        found = f"at most {most.lines} arc lines found in {most.traces} traces" if most else "no grid point was run"
        proposal.reason = (
            f"no usable arc: {found}, fewer than minLines {search['minLines']} (no lines, or the wrong lamps?)"
        )
        return proposal
    if all(p.error for p in points):
        proposal.reason = f"the bootstrap task failed at every grid offset ({points[0].error})"
        return proposal
    index = max(range(len(points)), key=lambda i: scores[i])
    best = points[index]
    outside = [i for i, p in enumerate(points) if abs(p.offset - best.offset) > 2 * capture]
    second = max(outside, key=lambda i: scores[i], default=None)
    proposal.best, proposal.best_score = best, scores[index]
    if second is not None:
        proposal.runner_up, proposal.runner_up_score = points[second], scores[second]
    if best.fitted < int(search["minLines"]):
        proposal.reason = (
            f"no clear peak: at best {best.fitted} lines fitted (offset {best.offset:g}; {most.lines} arc lines "
            f"found), fewer than minLines {search['minLines']}"
        )
    elif not best.rms <= max_rms:
        proposal.reason = (
            f"no clear peak: the best fit (offset {best.offset:g}) has RMS {best.rms:.2f} px > maxRms {max_rms:g}"
        )
    elif proposal.runner_up_score * float(search["minContrast"]) > proposal.best_score:
        proposal.reason = (
            f"no clear peak: score {proposal.best_score:.1f} at offset {best.offset:g} against "
            f"{proposal.runner_up_score:.1f} at {proposal.runner_up.offset:g} (minContrast {search['minContrast']:g})"
        )
    else:
        refinement = best.median_dy if math.isfinite(best.median_dy) else 0.0
        proposal.value = round(best.offset + refinement, 1)
        proposal.reason = (
            f"grid {best.offset:g} + median difference {refinement:.2f}; {best.fitted}/{best.fit_total} lines "
            f"fitted, RMS {best.rms:.3f} px; score {proposal.best_score:.1f}, runner-up "
            + (f"{proposal.runner_up_score:.1f} at {proposal.runner_up.offset:g}" if proposal.runner_up else "none")
        )
    return proposal


def read_points(paths: Iterable[str]) -> list[ScanPoint]:
    """Scan results: one file per grid point (per_offset jobs) or one per camera (per_camera)."""
    points = []
    for path in paths:
        for entry in json.loads(Path(path).read_text())["points"]:
            points.append(ScanPoint(**entry))
    return points


def write_points(path: str, camera: str, epoch: str, points: list[ScanPoint]) -> None:
    from pfscalib.plan.records import write_json

    write_json(path, {"camera": camera, "epoch": epoch, "points": [dataclasses.asdict(p) for p in points]})


def plot(proposal: Proposal, path: str, search: dict) -> None:
    """Score and fit RMS against offset, the chosen value, the capture range around the best grid point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offsets, max_rms = [p.offset for p in proposal.points], float(search["maxRms"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.plot(offsets, [p.score(float(search["rmsScale"])) for p in proposal.points], "k.-", lw=0.8, label="score")
    top.plot(offsets, [p.fitted for p in proposal.points], ".", color="0.6", ms=3, label="lines fitted")
    bottom.semilogy(offsets, [p.rms if p.fitted else math.nan for p in proposal.points], "b.-", lw=0.8)
    bottom.axhline(max_rms, color="r", ls=":", lw=0.8, label=f"maxRms {max_rms:g} px")
    for ax in (top, bottom):
        if proposal.best:
            b = proposal.best.offset
            ax.axvspan(b - proposal.capture, b + proposal.capture, color="g", alpha=0.15, label="capture range")
        if proposal.value is not None:
            ax.axvline(proposal.value, color="g", lw=1.2, label=f"proposed {proposal.value:g}")
        if proposal.runner_up:
            ax.axvline(proposal.runner_up.offset, color="orange", ls="--", lw=0.8, label="runner-up")
    top.set_ylabel("score")
    bottom.set_ylabel("fit RMS (pixels)")
    bottom.set_xlabel("bootstrap:spectralOffset (pixels)")
    top.legend(fontsize=7, loc="upper right")
    bottom.legend(fontsize=7, loc="upper right")
    verdict = f"refused: {proposal.reason}" if proposal.refused else f"proposed {proposal.value:g} px"
    top.set_title(f"{proposal.camera} {proposal.epoch}: {verdict}"[:110], fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
