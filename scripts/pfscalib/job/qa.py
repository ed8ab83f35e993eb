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

from pfscalib.job import metrics, trend
from pfscalib.plan.limits import verdict_word
from pfscalib.plan.steps import STEPS

log = logging.getLogger(__name__)
# Fixed margins (room for the labels and the caption line): tight_layout measured every text of every
# picture first, a third of the QA job's time.
MARGINS = {
    "image": {"left": 0.13, "right": 0.95, "bottom": 0.13, "top": 0.92},
    "wide": {"left": 0.07, "right": 0.98, "bottom": 0.15, "top": 0.91, "wspace": 0.28},
}


def _image(ax, image: np.ndarray, title: str) -> None:
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [1, 99]) if np.size(finite) else (0, 1)
    shown = ax.imshow(image, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    plt.colorbar(shown, ax=ax, fraction=0.046)
    ax.set_title(title)
    ax.set_xlabel("x (spatial)")
    ax.set_ylabel("y (spectral)")


def _detector_map(fig, product, lines, title: str) -> None:
    traces = metrics.trace_curves(product)
    ax = fig.add_subplot(1, 2, 1)
    for x, rows in traces:
        ax.plot(x, rows, lw=0.5, color="0.6")
    ax2 = fig.add_subplot(1, 2, 2)
    if lines is not None:
        table = metrics.line_residuals(product, lines)
        ax.plot(table["x"], table["y"], "b+", ms=3, label="measured lines")
        ax.legend(loc="upper right", fontsize=7)
        for name, colour in (("USED", "k"), ("RESERVED", "g"), ("other", "r")):
            sel = table["group"] == name
            label = f"{name} ({int(sel.sum())})"
            ax2.plot(table["wavelength"][sel], table["residual"][sel], ".", color=colour, ms=3, label=label)
        ax2.legend(fontsize=7)
        ax2.set_title("wavelength residual of the lines")
    else:
        ax2.text(0.5, 0.5, "no detectorMapLines for this map", ha="center", transform=ax2.transAxes)
    ax.set_title(title)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax2.set_xlabel("wavelength (nm)")
    ax2.set_ylabel("findWavelength(y) - wavelength (nm)")


def _per_fiber(ax, fiber_ids, values, ylabel: str, title: str) -> None:
    ax.plot(fiber_ids, values, "o")
    ax.set_xlabel("fiberId")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _caption(sentinel: dict) -> str:
    quality = sentinel.get("quality") or {}
    verdict = verdict_word(quality)
    accepted = quality.get("accepted")
    worst = [r["rule"] for r in quality.get("rules", []) if r["level"] != "green"]
    text = f"gate: {verdict}" + (f" (accepted: {accepted['reason']})" if accepted else "")
    return text + (f"; {worst[0]}" if worst else "")


def plot(butler, sentinel: dict, out: Path) -> None:
    unit = sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))
    title = f"{sentinel['datasetType']} {unit} {sentinel['epoch']}"
    kind = STEPS[sentinel["step"]].qa_plot
    fig = plt.figure(figsize=(6, 5) if kind == "image" else (10, 4.5))
    try:
        ref = butler.get_dataset(uuid.UUID(sentinel["datasetId"]))
        product = butler.get(ref)
        if kind == "image":
            _image(fig.add_subplot(1, 1, 1), metrics.image_array(product), title)
        elif kind in ("traces", "traces_and_lines"):
            lines = None
            if kind == "traces_and_lines":  # a copy certified in <run>/certify: the lines are in <run>
                lines = metrics.run_lines(butler, ref.run.removesuffix("/certify"), dict(sentinel["dataId"]))
            _detector_map(fig, product, lines, title)
        elif kind == "profiles":
            fiber_ids, widths = metrics.profile_widths(product)
            _per_fiber(fig.add_subplot(1, 1, 1), fiber_ids, widths, "profile width (px, second moment)", title)
        else:
            fiber_ids, norms = metrics.fiber_norms(product)
            ax = fig.add_subplot(1, 1, 1)
            _per_fiber(ax, fiber_ids, norms, "fiber norm (median over wavelength)", title)
            ax.axhline(1.0, color="0.5", lw=0.5)
    except Exception as exc:  # a product this code cannot draw: a placeholder, never a failed QA job
        log.warning("QA %s: no picture (%s: %s)", title, type(exc).__name__, exc)
        fig.clf()
        fig.text(0.5, 0.5, f"{title}\nno picture: {type(exc).__name__}: {exc}", ha="center", va="center", wrap=True)
    fig.text(0.01, 0.01, _caption(sentinel), fontsize=7)
    fig.subplots_adjust(**MARGINS["image" if kind == "image" else "wide"])
    fig.savefig(out, dpi=80)
    plt.close(fig)


# The drift panels: per camera, these metrics across the epochs (fiberNorms from the camera's arm)
DRIFT = (
    ("bias.mean", "bias level (ADU)"),
    ("bias.noise", "bias noise (ADU)"),
    ("dark.current", "dark current (ADU/s)"),
    ("detectorMap.wavelength_center", "wavelength at the centre (nm)"),
    ("fiberNorms.median", "fiberNorms median"),
)


def _sentinels(paths: list[str]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _unit(sentinel: dict) -> str:
    return sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))


def drift(sentinels: list[dict], epochs: list[str], outdir: Path) -> None:
    """One picture per camera: the drift metrics across epochs (from the sentinels' gate metrics), each epoch
    with its trend band (grey) from the epochs before it and a red square where it falls outside."""
    outdir.mkdir(parents=True, exist_ok=True)
    values: dict[tuple[str, str, str], float] = {}
    for sentinel in sentinels:
        for name, value in ((sentinel.get("quality") or {}).get("metrics") or {}).items():
            values[(_unit(sentinel), name, sentinel["epoch"])] = value
    cameras = sorted({_unit(s) for s in sentinels if len(_unit(s)) > 1})
    for camera in cameras:
        fig, axes = plt.subplots(1, len(DRIFT), figsize=(3 * len(DRIFT), 3))
        for ax, (name, label) in zip(axes, DRIFT):
            unit = camera[0] if name.startswith("fiberNorms.") else camera
            ys = [values.get((unit, name, e), np.nan) for e in epochs]
            ax.plot(range(len(epochs)), ys, "o-")
            # each epoch's trend band from the epochs before it (pfscalib.job.trend; none for the first ones)
            for i, y in enumerate(ys):
                if (found := trend.band(ys[:i], trend.DEFAULTS)) is not None:
                    _, low, high = found
                    ax.fill_between([i - 0.3, i + 0.3], low, high, color="0.85", zorder=0)
                    if not low <= y <= high:
                        ax.plot([i], [y], "rs", ms=7)
            ax.set_xticks(range(len(epochs)), epochs)
            ax.set_title(label, fontsize=8)
        fig.suptitle(f"{camera}: drift across epochs")
        fig.tight_layout()
        fig.savefig(outdir / f"{camera}.png", dpi=70)
        plt.close(fig)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=None, help="pictures of the products (needs the repository)")
    parser.add_argument("--outdir", default=".")
    parser.add_argument("--drift", action="append", default=None, help="drift panels over these epochs")
    parser.add_argument("--table", default=None, help="write the verdict table (TSV) here instead")
    parser.add_argument("--held-root", default=None, help="held products' records (with --table)")
    parser.add_argument("--not-built", action="append", default=[], help="STEP:UNIT:WORDS, a picture saying so")
    parser.add_argument("sentinels", nargs="+")
    args = parser.parse_args(argv)
    if args.table:
        from pfscalib.plan.records import held_records

        held = held_records(args.held_root) if args.held_root else []
        quality_table(_sentinels(args.sentinels), held).to_csv(args.table, sep="\t", index=False)
        return 0
    if args.drift:
        drift(_sentinels(args.sentinels), args.drift, Path(args.outdir))
        return 0
    from pfscalib.job.butler import open_butler

    butler = open_butler(args.repo)
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.sentinels:
        sentinel = json.loads(Path(path).read_text())
        unit = sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))
        plot(butler, sentinel, out / f"{sentinel['step']}_{unit}.png")
    for entry in args.not_built:  # a camera x step that does not apply is shown as such, not left missing
        step, unit, words = entry.split(":", 2)
        fig = plt.figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, f"{step} {unit}: not built ({words})", ha="center", va="center", wrap=True)
        fig.savefig(out / f"{step}_{unit}.png", dpi=80)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
