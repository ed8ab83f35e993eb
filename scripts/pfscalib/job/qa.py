"""QA pictures of certified calibrations, one PNG per calibration and camera (or arm), with the gate's verdict.

    python -m pfscalib.job.qa --repo REPO --outdir DIR SENTINEL.json ...

Products are read through the dataset id each sentinel records, and only through the real classes' API (via
pfscalib.job.metrics, which names what it may call): bias/dark/fiberFlat images (1-99 % stretch); bootstrap and
detectorMap traces (getXCenter) with the measured arc lines of detectorMapLines and their wavelength
residuals (findWavelength) coloured by USED/RESERVED; fiberProfiles widths per fibre; fiberNorms per fibre.
A product that cannot be drawn gets a placeholder picture saying why: QA never fails the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from pfscalib.job import metrics, trend
from pfscalib.plan.limits import verdict_word
from pfscalib.plan.steps import STEPS

log = logging.getLogger(__name__)
# Fixed margins (room for the labels, the colour bar and the verdict header): tight_layout measured every text of
# every picture first, a third of the QA job's time.
MARGINS = {
    "image": {"left": 0.13, "right": 0.80, "bottom": 0.08, "top": 0.78},
    "wide": {"left": 0.07, "right": 0.98, "bottom": 0.11, "top": 0.85, "wspace": 0.22},
}
# The verdict's colour: one vocabulary (pfscalib.plan.limits.VERDICTS) everywhere
COLOURS = {"pass": "#1a7f37", "accepted": "#0550ae", "warn": "#bc4c00", "held": "#cf222e"}
# What each image holds, and the metric whose unit (the limits file's: ADU for the demo's ISR, electrons at a
# site) is the image's: a fiberFlat is a ratio.
IMAGES = {
    "bias": ("bias level", "bias.mean"),
    "dark": ("dark current", "dark.current"),
    "flat": ("flat response", None),
}
DIMENSIONLESS = "dimensionless"


def unit_of(limits: dict | None, metric: str | None, default: str = DIMENSIONLESS) -> str:
    """A metric's unit as the limits file declares it (the products' own: ADU or electrons)."""
    spec = (limits or {}).get("metrics", {}).get(metric or "", {})
    return str(spec.get("unit", default))


def readable_ticks(fig) -> None:
    """No axis shows identical tick labels (0.0 0.0 0.0 on a dark whose stretch spans 0.01): where a label
    repeats, more significant digits until they differ."""
    fig.canvas.draw()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for digits in range(2, 9):
                labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
                if len(set(labels)) == len(labels):
                    break
                axis.set_major_formatter(ticker.FormatStrFormatter(f"%.{digits}g"))
                fig.canvas.draw()


def _image(fig, ax, image: np.ndarray, title: str, label: str) -> None:
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [1, 99]) if np.size(finite) else (0, 1)
    if hi <= lo:  # a flat image: a stretch that still has a scale
        lo, hi = lo - max(abs(lo) * 1e-3, 1e-6), hi + max(abs(hi) * 1e-3, 1e-6)
    shown = ax.imshow(image, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(f"{label}, 1-99 % stretch")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x, spatial (pixel)")
    ax.set_ylabel("y, spectral (pixel)")


def _traces(ax, product, title: str) -> None:
    for x, rows in metrics.trace_curves(product):
        ax.plot(x, rows, lw=0.5, color="0.6")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")


def _wavelengths(ax, product) -> None:
    """The map's wavelength solution along the rows of its first, middle and last fibre (a bootstrap map has
    no measured lines to show residuals of)."""
    fiber_ids = np.asarray(product.getFiberId())
    box = product.getBBox()
    rows = np.arange(box.getMinY(), box.getMaxY() + 1, dtype=float)
    for fiber_id in dict.fromkeys([fiber_ids[0], fiber_ids[len(fiber_ids) // 2], fiber_ids[-1]]):
        ax.plot(rows, product.findWavelength(np.full(len(rows), int(fiber_id), dtype=np.int32), rows),
                lw=1, label=f"fiberId {int(fiber_id)}")  # fmt: skip
    ax.legend(fontsize=7)
    ax.set_title("wavelength solution", fontsize=9)
    ax.set_xlabel("y (pixel)")
    ax.set_ylabel("wavelength (nm)")


def _detector_map(fig, product, lines, title: str) -> None:
    ax = fig.add_subplot(1, 2, 1)
    _traces(ax, product, title)
    ax2 = fig.add_subplot(1, 2, 2)
    if lines is None:  # bootstrap (no lines), or a map whose lines are gone: its wavelength solution
        _wavelengths(ax2, product)
        return
    table = metrics.line_residuals(product, lines)
    ax.plot(table["x"], table["y"], "b+", ms=3, label="measured lines")
    ax.legend(loc="upper right", fontsize=7)
    for name, colour in (("USED", "k"), ("RESERVED", "g"), ("other", "r")):
        sel = table["group"] == name
        label = f"{name} ({int(sel.sum())})"
        ax2.plot(table["wavelength"][sel], table["residual"][sel], ".", color=colour, ms=3, label=label)
    ax2.legend(fontsize=7)
    ax2.set_title("wavelength residual of the lines", fontsize=9)
    ax2.set_xlabel("wavelength (nm)")
    ax2.set_ylabel("findWavelength(y) - wavelength (nm)")


def _per_fiber(ax, fiber_ids, values, ylabel: str, title: str) -> None:
    ax.plot(fiber_ids, values, "o")
    ax.set_xlabel("fibre (fiberId)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)


def _header(fig, sentinel: dict) -> None:
    """The gate's verdict in large type, and its numbers beside it: each rule with its value and limit, in
    two columns where the picture is wide enough, else the first four in one."""
    quality = sentinel.get("quality") or {}
    verdict = verdict_word(quality)
    renderer = fig.canvas.get_renderer()
    big = fig.text(0.015, 0.985, verdict.upper(), fontsize=24, weight="bold", va="top",
                   color=COLOURS.get(verdict, "0.3"))  # fmt: skip
    accepted = quality.get("accepted")
    lines = [f"accepted: {accepted['reason']} (by {accepted['by']})"] if accepted else []
    for rule in quality.get("rules", []):
        limit = rule.get("limit")
        lines.append(rule["rule"] + (f" [{limit}]" if limit else ""))
    lines = lines or ["no quality record"]
    x = big.get_window_extent(renderer).x1 / fig.bbox.width + 0.02
    first = fig.text(x, 0.985, "\n".join(lines[:3]), fontsize=8, va="top", family="monospace")
    second_x = first.get_window_extent(renderer).x1 / fig.bbox.width + 0.02
    second = fig.text(second_x, 0.985, "\n".join(lines[3:6]), fontsize=8, va="top", family="monospace")
    if len(lines) > 3 and second.get_window_extent(renderer).x1 > fig.bbox.width * 0.99:
        second.remove()  # no room beside: the first four, one column
        first.set_text("\n".join(lines[:4]))
    if first.get_window_extent(renderer).x1 > fig.bbox.width * 0.99:  # nor for one: under the verdict
        below = big.get_window_extent(renderer).y0 / fig.bbox.height - 0.01
        first.set_position((0.015, below))


def figure(sentinel: dict, product, lines=None, limits: dict | None = None):
    """The QA picture of one product (its sentinel names what it is): the verdict header and the panels, every
    axis and colour bar labelled with its unit."""
    unit = sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))
    title = f"{sentinel['datasetType']} {unit} {sentinel['epoch']}"
    kind = STEPS[sentinel["step"]].qa_plot
    fig = plt.figure(figsize=(6.5, 6.2) if kind == "image" else (11, 5.6))
    if kind == "image":
        what, metric = IMAGES[sentinel["step"]]
        label = f"{what} ({unit_of(limits, metric)})"
        _image(fig, fig.add_subplot(1, 1, 1), metrics.image_array(product), title, label)
    elif kind in ("traces", "traces_and_lines"):
        _detector_map(fig, product, lines, title)
    elif kind == "profiles":
        fiber_ids, widths = metrics.profile_widths(product)
        width = f"profile width, second moment ({unit_of(limits, 'fiberProfiles.width_median', 'pixel')})"
        _per_fiber(fig.add_subplot(1, 1, 1), fiber_ids, widths, width, title)
    else:
        fiber_ids, norms = metrics.fiber_norms(product)
        ax = fig.add_subplot(1, 1, 1)
        _per_fiber(ax, fiber_ids, norms, f"fiber norm, median over wavelength ({DIMENSIONLESS})", title)
        ax.axhline(1.0, color="0.5", lw=0.5)
    fig.subplots_adjust(**MARGINS["image" if kind == "image" else "wide"])
    _header(fig, sentinel)
    # the panels start under the header, with room for their titles (0.35 inch)
    renderer = fig.canvas.get_renderer()
    lowest = min(t.get_window_extent(renderer).y0 for t in fig.texts) / fig.bbox.height
    fig.subplots_adjust(top=lowest - 0.35 / fig.get_figheight())
    readable_ticks(fig)
    return fig


def plot(butler, sentinel: dict, out: Path, limits: dict | None = None) -> None:
    unit = sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))
    title = f"{sentinel['datasetType']} {unit} {sentinel['epoch']}"
    try:
        ref = butler.get_dataset(uuid.UUID(sentinel["datasetId"]))
        product = butler.get(ref)
        lines = None
        if STEPS[sentinel["step"]].qa_plot == "traces_and_lines":  # a copy certified in <run>/certify
            lines = metrics.run_lines(butler, ref.run.removesuffix("/certify"), dict(sentinel["dataId"]))
        fig = figure(sentinel, product, lines, limits)
    except Exception as exc:  # a product this code cannot draw: a placeholder, never a failed QA job
        log.warning("QA %s: no picture (%s: %s)", title, type(exc).__name__, exc)
        plt.close("all")
        fig = plt.figure(figsize=(6, 2))
        _header(fig, sentinel)
        fig.text(0.5, 0.3, f"{title}\nno picture: {type(exc).__name__}: {exc}", ha="center", va="center", wrap=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


# The drift panels: per camera, these metrics across the epochs (fiberNorms from the camera's arm), with the
# unit where the limits file names none
DRIFT = (
    ("bias.mean", "bias level", "ADU"),
    ("bias.noise", "bias noise", "ADU"),
    ("dark.current", "dark current", "ADU/s"),
    ("detectorMap.wavelength_center", "wavelength at the centre", "nm"),
    ("fiberNorms.median", "fiberNorms median", DIMENSIONLESS),
)


def _sentinels(paths: list[str]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _unit(sentinel: dict) -> str:
    return sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))


def fixed_limits(limits: dict | None, metric: str, arm: str) -> list[tuple[str, float]]:
    """The limits file's bounds of a metric for an arm: (level, value), yellow and red, min and max."""
    spec = (limits or {}).get("metrics", {}).get(metric, {})
    bounds = {**{k: spec[k] for k in ("max", "min") if k in spec}, **spec.get("arms", {}).get(arm, {})}
    return [(level, float(band[level])) for band in bounds.values() for level in ("yellow", "red") if level in band]


def drift_panel(
    ax, ys: list[float], epochs: list[str], label: str, bounds: list[tuple[str, float]], settings: dict | None = None
) -> None:
    """One metric across the epochs, each epoch with its trend band (grey) from the epochs before it and a red
    square where it falls outside; the fixed limits (dashed: yellow, red). The scale shows the band, never only
    the noise: the yellow limits, and at least the trend's relative half-width (pfscalib.job.trend) around the
    values' median. settings: the config's `trend` (status judges with the same)."""
    settings = {**trend.DEFAULTS, **(settings or {})}
    xs = range(len(epochs))
    ax.plot(xs, ys, "o-", label="value")
    edges = [y for y in ys if np.isfinite(y)]
    for i, y in enumerate(ys):
        if (found := trend.band(ys[:i], settings)) is not None:
            _, low, high = found
            ax.fill_between([i - 0.3, i + 0.3], low, high, color="0.85", zorder=0)
            edges += [low, high]
            if not low <= y <= high:
                ax.plot([i], [y], "rs", ms=7)
    centre = float(np.median(edges)) if edges else 0.0
    half = max(float(settings["relative"]) * abs(centre), 1e-9)
    edges += [centre - half, centre + half]
    near = [v for level, v in bounds if level == "yellow"]  # the band the gate passes; red where it lies beyond
    for level, value in bounds:
        ax.axhline(value, ls="--", lw=1, color={"yellow": "#d4a72c", "red": "#cf222e"}[level])
    low, high = min(edges + near), max(edges + near)
    pad = 0.08 * (high - low)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlim(-0.5, len(epochs) - 0.5)
    ax.set_xticks(list(xs), epochs)
    ax.set_xlabel("epoch (calibration run)")
    ax.set_ylabel(label, fontsize=8)


def drift(
    sentinels: list[dict], epochs: list[str], outdir: Path, limits: dict | None = None, settings: dict | None = None
) -> None:
    """One picture per camera: the drift metrics it has across the epochs (from the sentinels' gate metrics),
    each epoch against the trend band `settings` (the config's `trend`) make of the epochs before it."""
    outdir.mkdir(parents=True, exist_ok=True)
    values: dict[tuple[str, str, str], float] = {}
    for sentinel in sentinels:
        for name, value in ((sentinel.get("quality") or {}).get("metrics") or {}).items():
            values[(_unit(sentinel), name, sentinel["epoch"])] = value
    cameras = sorted({_unit(s) for s in sentinels if len(_unit(s)) > 1})
    for camera in cameras:
        fig = drift_figure(camera, values, epochs, limits, settings)
        fig.savefig(outdir / f"{camera}.png", dpi=70)
        plt.close(fig)


def drift_figure(
    camera: str,
    values: dict[tuple[str, str, str], float],
    epochs: list[str],
    limits: dict | None,
    settings: dict | None = None,
):
    """The drift panels of one camera: only the metrics it has (an n camera has no bias)."""
    panels = []
    for name, what, default in DRIFT:
        unit = camera[0] if name.startswith("fiberNorms.") else camera
        ys = [float(values.get((unit, name, e), np.nan)) for e in epochs]
        if any(np.isfinite(ys)):
            panels.append((name, f"{what} ({unit_of(limits, name, default)})", ys))
    if not panels:
        fig = plt.figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, f"{camera}: no drift metric measured", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, label, ys) in zip(axes[0], panels):
        drift_panel(ax, ys, epochs, label, fixed_limits(limits, name, camera[0]), settings)
        ax.set_title(name, fontsize=8)
    fig.suptitle(f"{camera}: drift across epochs (grey: trend band; dashed: fixed limits)", fontsize=10)
    fig.tight_layout()
    readable_ticks(fig)
    return fig


def quality_table(sentinels: list[dict], held: list[dict]):
    """The gate's verdict of every product: pass / warn / accepted / held, and why."""
    import pandas as pd

    rows = []
    for sentinel in sentinels:
        quality = sentinel.get("quality") or {}
        verdict = verdict_word(quality)
        accepted = quality.get("accepted")
        why = [r["rule"] for r in quality.get("rules", []) if r["level"] != "green"]
        rows.append(
            {
                "epoch": sentinel["epoch"],
                "calibration": sentinel["step"],
                "camera": _unit(sentinel),
                "verdict": f"accepted ({accepted['reason']}, by {accepted['by']})" if accepted else verdict,
                "why": "; ".join(why),
            }
        )  # fmt: skip
    for record in held:
        rows.append(
            {
                "epoch": record["epoch"],
                "calibration": record["step"],
                "camera": record["unit"],
                "verdict": "held",
                "why": "; ".join(record["failing"]),
            }
        )
    return pd.DataFrame(rows, columns=["epoch", "calibration", "camera", "verdict", "why"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--overview" in argv:  # the report's first page, from the tables (pfscalib.job.overview)
        from pfscalib.job import overview

        return overview.main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=None, help="pictures of the products (needs the repository)")
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--drift", action="append", default=None, help="drift panels over these epochs")
    parser.add_argument("--table", default=None, help="write the verdict table (TSV) here instead")
    parser.add_argument("--held-root", default=None, help="held products' records (with --table)")
    parser.add_argument("--not-built", action="append", default=[], help="STEP:UNIT:WORDS, a picture saying so")
    parser.add_argument("--limits", default=None, help="the config's limits file (the units; drift: the bounds)")
    parser.add_argument("--trend", type=json.loads, default=None, help="drift: the config's trend settings (JSON)")
    parser.add_argument("sentinels", nargs="+")
    args = parser.parse_args(argv)
    if args.table:
        from pfscalib.plan.records import held_records

        held = held_records(args.held_root) if args.held_root else []
        quality_table(_sentinels(args.sentinels), held).to_csv(args.table, sep="\t", index=False)
        return 0
    from pfscalib.plan.limits import load_limits

    limits = load_limits(args.limits)
    if args.drift:
        drift(_sentinels(args.sentinels), args.drift, Path(args.outdir), limits, args.trend)
        return 0
    from pfscalib.job.butler import open_butler

    butler = open_butler(args.repo)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.sentinels:
        sentinel = json.loads(Path(path).read_text())
        unit = sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))
        plot(butler, sentinel, out / f"{sentinel['step']}_{unit}.png", limits)
    for entry in args.not_built:  # a camera x step that does not apply is shown as such, not left missing
        step, unit, words = entry.split(":", 2)
        fig = plt.figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, f"{step} {unit}: not built ({words})", ha="center", va="center", wrap=True)
        fig.savefig(out / f"{step}_{unit}.png", dpi=80)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
