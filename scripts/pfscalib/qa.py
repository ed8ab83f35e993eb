"""QA pictures of certified calibrations, one PNG per calibration and camera (or arm).

    python -m pfscalib.qa --epoch E --outdir DIR SENTINEL.json ...

Images: bias/dark/fiberFlat with a percentile stretch; bootstrap/detectorMap: traces and arc-line
positions on the detector plus line residuals vs wavelength (detectorMapLines of the run);
fiberProfiles: profile width per fibre; fiberNorms: norm per fibre, coloured by spectrograph.
Products are read through the dataset id recorded in each sentinel; the demo's storage classes are
numpy images and dicts (a real PFS site reads afw/pfs objects and would need its own plotters).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from .steps import STEPS


def _image(ax, image: np.ndarray, title: str) -> None:
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [1, 99]) if finite.size else (0, 1)
    shown = ax.imshow(image, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    plt.colorbar(shown, ax=ax, fraction=0.046)
    ax.set_title(title)
    ax.set_xlabel("x (spatial)")
    ax.set_ylabel("y (spectral)")


def _detector_map(fig, dm: dict, lines: dict | None, title: str) -> None:
    from .demo import detmap, simulate

    ax = fig.add_subplot(1, 2, 1)
    rows = np.arange(simulate.NY)
    for i in range(len(dm["fiberId"])):
        ax.plot(detmap.trace_x(dm, i, rows), rows, lw=0.5, color="0.6")
    wavelengths, _ = simulate.arc_lines(dm["arm"])
    for i in range(len(dm["fiberId"])):
        y = detmap.line_y(dm, i, wavelengths)
        ax.plot(detmap.trace_x(dm, i, y), y, "r.", ms=2)
    if lines:
        ax.plot(lines["x"], lines["y"], "b+", ms=3, label="measured")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlim(0, simulate.NX)
    ax.set_ylim(0, simulate.NY)
    ax.set_title(title)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax2 = fig.add_subplot(1, 2, 2)
    if lines:
        status = np.array(lines["status"])
        for name, colour in (("USED", "k"), ("RESERVED", "g"), ("REJECTED", "r")):
            sel = status == name
            ax2.plot(
                np.array(lines["wavelength"])[sel],
                np.array(lines["residual"])[sel],
                ".",
                color=colour,
                ms=3,
                label=f"{name} ({sel.sum()})",
            )
        rms = dm.get("qa", {}).get("rmsUsed")
        ax2.set_title(f"residuals, RMS {rms:.3f} px" if rms is not None else "residuals")
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "bootstrap: no line residuals stored", ha="center", transform=ax2.transAxes)
    ax2.set_xlabel("wavelength (nm)")
    ax2.set_ylabel("y residual (px)")


def plot(butler, sentinel: dict, out: Path) -> None:
    ref = butler.get_dataset(uuid.UUID(sentinel["datasetId"]))
    product = butler.get(ref)
    unit = sentinel["dataId"]["arm"] + str(sentinel["dataId"].get("spectrograph", ""))
    title = f"{sentinel['datasetType']} {unit} {sentinel['epoch']}"
    kind = STEPS[sentinel["step"]].qa_plot
    fig = plt.figure(figsize=(6, 5) if kind == "image" else (10, 4.5))
    if kind == "image":
        _image(fig.add_subplot(1, 1, 1), np.asarray(product, dtype=float), title)
    elif kind in ("traces", "traces_and_lines"):
        lines = None
        if kind == "traces_and_lines":
            source = butler.get_dataset(uuid.UUID(sentinel["datasetId"]))
            run = source.run.removesuffix("/certify")
            refs = list(
                butler.query_datasets(
                    "detectorMapLines", collections=run, data_id=dict(sentinel["dataId"]), explain=False
                )
            )
            lines = butler.get(refs[0]) if refs else None
        _detector_map(fig, product, lines, title)
    elif kind == "profiles":
        ax = fig.add_subplot(1, 1, 1)
        fibers = sorted(product["fibers"], key=int)
        ax.plot([int(f) for f in fibers], [product["fibers"][f]["sigma"] for f in fibers], "o")
        ax.set_xlabel("fiberId")
        ax.set_ylabel("profile sigma (px)")
        ax.set_title(title)
    elif kind == "norms":
        ax = fig.add_subplot(1, 1, 1)
        fiber_ids = np.array(product["fiberId"])
        norms = np.array([product["norm"][str(f)] for f in fiber_ids])
        spectrographs = np.array(product["spectrograph"])
        for spectrograph in sorted(set(spectrographs)):
            sel = spectrographs == spectrograph
            ax.plot(fiber_ids[sel], norms[sel], "o", label=f"spectrograph {spectrograph}")
        ax.axhline(1.0, color="0.5", lw=0.5)
        ax.set_xlabel("fiberId")
        ax.set_ylabel("fiber norm")
        ax.legend()
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--not-built", action="append", default=[], help="STEP:UNIT:WORDS, a picture saying so")
    parser.add_argument("sentinels", nargs="+")
    args = parser.parse_args(argv)
    from .butlerops import open_butler

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
