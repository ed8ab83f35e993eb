"""Issue #32 (3): the QA pictures and the report's first page are a QA tool.

Every picture (pfscalib.job.qa.figure on small synthetic products answering to the real classes' API, the
demo's) has every axis and colour bar labelled with its unit, readable ticks (no axis whose labels repeat),
no empty panel, and the verdict in large type; the drift panels' scale shows the limit band, not the noise;
the first page (pfscalib.job.overview) holds one verdict per camera x calibration x epoch, linked to its
picture, with the roll-up. The whole report on a real run: tests/test_workflow_e2e.py.
"""

from __future__ import annotations

import json
import re
import shlex
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pfscalib.demo import detmap, products, simulate
from pfscalib.job import overview, qa
from pfscalib.plan.limits import VERDICTS, load_limits
from pfscalib.plan.steps import STEP_NAMES, STEPS

from conftest import PROJECT

UNIT = re.compile(r"\([^()]+\)|\[[^\[\]]+\]")
LIMITS = load_limits(str(PROJECT / "config/limits-demo.yaml"))
FIBERS = [2, 5, 8, 11, 14, 17]


def check_figure(fig) -> None:
    """Every Axes: x and y labels with a unit, data drawn, tick labels that differ; every colour bar a label
    with a unit; no label cut by the picture's edge."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    edge = fig.bbox.padded(2)
    bars = {im.colorbar.ax: im.colorbar for ax in fig.axes for im in ax.images if im.colorbar is not None}
    assert fig.axes, "a picture without a panel"
    texts = [t for t in fig.texts if t.get_text()] + [ax.title for ax in fig.axes if ax.get_title()]
    boxes = [t.get_window_extent(renderer) for t in texts]
    for i, box in enumerate(boxes):
        assert edge.x0 <= box.x0 and box.x1 <= edge.x1, f"{texts[i].get_text()!r} is cut by the picture's edge"
        for j in range(i):
            assert not box.overlaps(boxes[j]), f"{texts[i].get_text()!r} overlaps {texts[j].get_text()!r}"
    for ax in fig.axes:
        if ax in bars:
            label = bars[ax].ax.get_ylabel()
            assert UNIT.search(label), f"colour bar label {label!r} has no unit"
        else:
            for label in (ax.get_xlabel(), ax.get_ylabel()):
                assert UNIT.search(label), f"axis label {label!r} of {ax.get_title()!r} has no unit"
            data = [np.asarray(line.get_ydata(), dtype=float) for line in ax.lines]
            drawn = any(np.isfinite(d).any() for d in data) or ax.images or ax.collections
            assert drawn, f"panel {ax.get_title()!r} has no data"
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            ticks = [t.label1 for t in axis.get_major_ticks() if low <= t.get_loc() <= high]
            ticks += [t.label2 for t in axis.get_major_ticks() if low <= t.get_loc() <= high]
            ticks = [t for t in ticks if t.get_visible() and t.get_text()]
            labels = [t.get_text() for t in ticks]
            assert len(set(labels)) == len(labels), f"{ax.get_title()!r}: repeated tick labels {labels}"
            shown = [t for t in [*ticks, axis.label] if t.get_visible() and t.get_text()]
            for text in shown:
                box = text.get_window_extent(renderer)
                inside = edge.x0 <= box.x0 and box.x1 <= edge.x1 and edge.y0 <= box.y0 and box.y1 <= edge.y1
                assert inside, f"{ax.get_title()!r}: {text.get_text()!r} is cut by the picture's edge"


def verdict_text(fig) -> tuple[str, float]:
    """The largest text of the figure and its size."""
    texts = [t for t in fig.texts if t.get_text()]
    big = max(texts, key=lambda t: t.get_fontsize())
    return big.get_text(), big.get_fontsize()


def sentinel(step: str, arm: str = "b", verdict: str = "pass") -> dict:
    data_id = {"arm": arm} if STEPS[step].per_arm else {"arm": arm, "spectrograph": 1}
    # five rules as long as the real ones (bootstrap's): the header must hold them without overlapping
    rules = [{"rule": f"{step}.fit_fraction_{k} 0.6319 within limits", "level": "green", "limit": "min 0.4/0.25",
              "metric": f"{step}.fit_fraction_{k}"} for k in range(5)]  # fmt: skip
    return {"dataId": data_id, "datasetType": STEPS[step].certified_as, "epoch": "run1", "step": step,
            "quality": {"verdict": verdict, "rules": rules, "metrics": {"x.metric": 1.0}}}  # fmt: skip


def detector_map() -> products.DetectorMap:
    return products.DetectorMap(detmap.new("b", 1, FIBERS))


def arc_lines(dm: products.DetectorMap) -> products.ArcLineSet:
    rng = np.random.default_rng(1)
    fibers, wavelengths = np.meshgrid(FIBERS, np.linspace(*simulate.ARM_RANGE["b"], 12)[1:-1])
    fibers, wavelengths = fibers.ravel(), wavelengths.ravel()
    xy = dm.findPoint(fibers, wavelengths)
    n = len(fibers)
    status = np.where(np.arange(n) % 5 == 0, products.DETECTORMAP_RESERVED, products.DETECTORMAP_USED)
    return products.ArcLineSet({
        "fiberId": fibers, "wavelength": wavelengths + rng.normal(0, 0.01, n), "x": xy[:, 0], "y": xy[:, 1],
        "xErr": np.full(n, 0.05), "yErr": np.full(n, 0.05), "flux": np.full(n, 1000.0), "fluxErr": np.full(n, 10.0),
        "flag": np.zeros(n, dtype=bool), "status": status, "description": np.array(["Ne"] * n),
    })  # fmt: skip


def image(level: float, noise: float) -> products.StandinExposure:
    rng = np.random.default_rng(2)
    return products.StandinExposure.from_array(level + rng.normal(0, noise, (simulate.NY, simulate.NX)))


def profiles() -> products.FiberProfileSet:
    index = products.profile_index(10, 3)
    shape = np.exp(-0.5 * (index / 1.5) ** 2)
    fibers = {str(f): {"profiles": [list(shape), list(shape * 1.01)], "swathCentres": [64.0, 192.0]} for f in FIBERS}
    return products.FiberProfileSet({"fibers": fibers, "radius": 10, "oversample": 3})


def norms() -> products.PfsFiberNorms:
    values = [[1.0 + 0.01 * k, 1.02 + 0.01 * k] for k in range(len(FIBERS))]
    return products.PfsFiberNorms({"fiberId": FIBERS, "values": values, "wavelength": [400.0, 600.0]})


# what each step's picture is drawn from: (product, lines); a dark of 0.015 ADU/s whose 1-99 % stretch spans
# 0.002 (it showed 0.0 0.0 0.0), a fiberFlat around 1
PRODUCTS = {
    "bias": lambda: (image(0.5, 0.4), None),
    "dark": lambda: (image(0.015, 0.0004), None),
    "flat": lambda: (image(1.0, 0.01), None),
    "bootstrap": lambda: (detector_map(), None),
    "detectorMap": lambda: (detector_map(), arc_lines(detector_map())),
    "fiberProfiles": lambda: (profiles(), None),
    "fiberNorms": lambda: (norms(), None),
}


@pytest.mark.parametrize("step", STEP_NAMES)
def test_every_picture_has_units_readable_ticks_data_and_a_large_verdict(step):
    product, lines = PRODUCTS[step]()
    narrow = STEPS[step].qa_plot == "image"  # the longest word and an acceptance's line on the narrowest picture
    record = sentinel(step, verdict="warn")
    if narrow:
        record["quality"]["accepted"] = {"reason": "known column defect, tracked in PIPE2D-0", "by": "someone"}
    fig = qa.figure(record, product, lines, LIMITS)
    try:
        check_figure(fig)
        text, size = verdict_text(fig)
        assert text == ("ACCEPTED" if narrow else "WARN") and size >= 20
        if STEPS[step].qa_plot == "image":  # the demo's ISR writes ADU (its limits file says so)
            bar = next(im.colorbar for ax in fig.axes for im in ax.images)
            unit = {"bias": "(ADU)", "dark": "(ADU/s)", "flat": "(dimensionless)"}[step]
            assert unit in bar.ax.get_ylabel()
    finally:
        plt.close(fig)


def test_a_site_s_pictures_say_electrons():
    """Without a limits file of its own the shipped one holds: a real ISR's electrons."""
    fig = qa.figure(sentinel("bias"), *PRODUCTS["bias"](), load_limits(None))
    try:
        assert "(electrons)" in next(im.colorbar for ax in fig.axes for im in ax.images).ax.get_ylabel()
    finally:
        plt.close(fig)


def test_the_check_fails_on_the_old_defects():
    """The checker itself: an unlabelled axis, an empty panel and repeated tick labels are each caught."""
    for draw in (
        lambda ax: (ax.plot([0, 1], [0, 1]), ax.set_xlabel("x"), ax.set_ylabel("y (pixel)")),
        lambda ax: (ax.set_xlabel("x (pixel)"), ax.set_ylabel("y (pixel)")),
        lambda ax: (ax.plot([0, 1], [0, 1]), ax.set_xlabel("x (pixel)"), ax.set_ylabel("y (pixel)"),
                    ax.set_yticks([0, 0.5, 1], ["0.0", "0.0", "0.0"])),
        lambda ax: (ax.plot([0, 1], [0, 1]), ax.set_xlabel("x (pixel)"), ax.set_ylabel("y (pixel)"),
                    ax.figure.subplots_adjust(right=1.0), ax.yaxis.tick_right()),
    ):  # fmt: skip
        fig, ax = plt.subplots()
        draw(ax)
        with pytest.raises(AssertionError):
            check_figure(fig)
        plt.close(fig)


def test_drift_panels_draw_the_trend_band_status_judges_with():
    """The config's `trend` settings reach the drift panels (the command passes them): a band of +-50 %, and
    the epochs in time order whatever the config's order."""
    from pfscalib.plan.workflow import Workflow

    values = {("b1", "bias.mean", e): v for e, v in (("run1", 1.0), ("run2", 1.0), ("run3", 1.4))}
    fig = qa.drift_figure("b1", values, ["run1", "run2", "run3"], LIMITS, {"relative": 0.5})
    try:
        (bias,) = fig.axes
        band = bias.collections[0].get_paths()[0].vertices[:, 1]
        assert (band.min(), band.max()) == pytest.approx((0.5, 1.5))
        assert not any(line.get_marker() == "s" for line in bias.lines)  # 1.4 is inside +-50 %: no red square
    finally:
        plt.close(fig)
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config["trend"] = {"relative": 0.5}
    config["epochs"] = dict(reversed(list(config["epochs"].items())))  # run2 listed first
    argv = shlex.split(Workflow(config).commands.drift(["s.json"], "out"))
    assert json.loads(argv[argv.index("--trend") + 1])["relative"] == 0.5
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--drift"] == ["run1", "run2"]


def test_drift_panels_show_the_limit_band_not_the_noise():
    """A 0.01 ADU change of the bias level: the scale spans the fixed limits' band (the demo's +-10 ADU
    yellow), so the change is a flat line, not full height; every panel has units and data."""
    values = {("b1", "bias.mean", "run1"): 1.00, ("b1", "bias.mean", "run2"): 1.01, ("b1", "bias.mean", "run3"): 1.0,
              ("b1", "dark.current", "run1"): 0.015, ("b1", "dark.current", "run2"): 0.0151,
              ("b1", "dark.current", "run3"): 0.0152}  # fmt: skip
    fig = qa.drift_figure("b1", values, ["run1", "run2", "run3"], LIMITS)
    try:
        check_figure(fig)
        bias, dark = fig.axes
        low, high = bias.get_ylim()
        assert low <= -10 and high >= 10  # the yellow limits are on the scale
        assert 0.01 / (high - low) < 0.01  # the change is under 1 % of the height
        assert {10.0, -10.0} <= {float(line.get_ydata()[0]) for line in bias.lines[1:]}  # drawn, dashed
        low, high = dark.get_ylim()
        assert high - low >= 2 * 0.1 * 0.015  # at least the trend band's relative width
        assert bias.collections  # run3's trend band from run1 and run2
        band = bias.collections[0].get_paths()[0].vertices[:, 1]
        assert (band.min(), band.max()) == pytest.approx((1.0050 - 0.1005, 1.0050 + 0.1005))  # +-10 % of 1.005
    finally:
        plt.close(fig)


class Cells(HTMLParser):
    """The grid's cells (data-verdict) and the roll-up cells (data-rollup) of the first page."""

    def __init__(self):
        super().__init__()
        self.cells: list[dict] = []
        self.rollups: list[dict] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "data-verdict" in attrs:
            self.cells.append(attrs)
        if tag == "td" and "data-rollup" in attrs:
            self.rollups.append(attrs)
        if tag == "a" and (attrs.get("href") or "").startswith("javascript:"):
            self.links.append(attrs["href"])


def parse_cells(text: str) -> Cells:
    parser = Cells()
    parser.feed(text)
    return parser


def status_rows(cameras: list[str], epochs: list[str], states: dict) -> pd.DataFrame:
    """pfscalib status --format tsv's product rows: every state pass unless `states` says otherwise."""
    rows = []
    for epoch in epochs:
        for step in STEP_NAMES:
            for unit in sorted({c[0] for c in cameras}) if STEPS[step].per_arm else cameras:
                state = states.get((epoch, step, unit), "ok")
                rows.append({"epoch": epoch, "step": step, "camera": unit, "state": state, "status": state,
                             "scope": "product", "datasetType": STEPS[step].certified_as, "begin": "", "end": "",
                             "run": "", "datasetId": "", "visits": ""})  # fmt: skip
    return pd.DataFrame(rows).astype(str)


def test_first_page_has_one_verdict_per_camera_calibration_and_epoch():
    """The demo's 4 cameras x 7 calibrations x 2 epochs, one word each from the one vocabulary, each a link to
    its picture; a held bias and a missing dark roll up worst-of to the camera, its spectrograph and the run."""
    cameras, epochs = ["b1", "r1", "b2", "r2"], ["run1", "run2"]
    states = {("run2", "bias", "r2"): "held", ("run2", "dark", "b2"): "missing", ("run1", "flat", "b1"): "warn"}
    quality = pd.DataFrame([{"epoch": "run2", "calibration": "bias", "camera": "r2", "verdict": "held", "why": "x"}])
    text = overview.page(
        status_rows(cameras, epochs, states),
        quality,
        cameras,
        {"run1": ("2025-03-01T00:00:00", "2025-04-01T00:00:00"), "run2": ("2025-04-01T00:00:00", "")},
        "u/demo/calib",
        {"bias": "u/demo/calib/bias", "bootstrap": "u/demo/bootstrap"},
    )
    page = parse_cells(text)
    assert len(page.cells) == 4 * 7 * 2
    assert {(c["data-epoch"], c["data-camera"], c["data-step"]) for c in page.cells} == {
        (e, c, s) for e in epochs for c in cameras for s in STEP_NAMES
    }
    words = {(c["data-epoch"], c["data-camera"], c["data-step"]): c["data-verdict"] for c in page.cells}
    assert set(words.values()) <= {*VERDICTS, "missing", "not built"}
    assert words[("run2", "r2", "bias")] == "held" and words[("run2", "b2", "dark")] == "missing"
    assert words[("run1", "b1", "flat")] == "warn" and words[("run1", "r1", "bias")] == "pass"
    assert len(page.links) == 4 * 7 * 2
    assert any("results['results/qa/run2/bias_r2.png'].data_uri" in link for link in page.links)
    assert any("results['results/qa/run2/fiberNorms_r.png'].data_uri" in link for link in page.links)
    roll = {(r["data-epoch"], r["data-rollup"], r["data-name"]): r["class"] for r in page.rollups if "data-epoch" in r}
    assert roll[("run2", "run", "run")] == "r held" and roll[("run2", "spectrograph", "sp2")] == "r held"
    assert roll[("run2", "camera", "b2")] == "r bad" and roll[("run1", "camera", "b1")] == "r warn"
    assert roll[("run1", "spectrograph", "sp2")] == "r pass"
    assert "held" in text and "u/demo/calib/bias" in text and "u/demo/bootstrap" in text
    assert "PFS/calib" not in text


def test_a_season_s_first_page_survives_the_report_s_restructuredtext():
    """The report embeds the page in report/workflow.rst (`.. raw:: html`), which docutils parses first: a
    line over its line_length_limit (10,000 characters, docutils 0.22.4 parsers/rst/__init__.py:179-181)
    becomes an error message instead of the page. The demo's 4 cameras x 2 epochs broke it when a grid was one
    line; a season of 16 cameras x 3 epochs must not."""
    from docutils.core import publish_parts

    cameras = [f"{arm}{sp}" for sp in range(1, 5) for arm in "brnm"]
    epochs = ["run1", "run2", "run3"]
    text = overview.page(
        status_rows(cameras, epochs, {}),
        pd.DataFrame(columns=["epoch", "calibration", "camera", "verdict", "why"]),
        cameras,
        {e: (f"2025-0{i + 3}-01T00:00:00", f"2025-0{i + 4}-01T00:00:00") for i, e in enumerate(epochs)},
        "u/demo/calib",
        {"bias": "u/demo/calib/bias", "bootstrap": "u/demo/bootstrap"},
    )
    rst = (PROJECT / "report/workflow.rst").read_text()
    embedded = ".. raw:: html\n\n" + "".join(f"   {line}\n" for line in text.splitlines())
    assert "{{ res.path.read_text() | indent(3) }}" in rst  # the template embeds the page so
    body = publish_parts(embedded, writer="html", settings_overrides={"warning_stream": False})["body"]
    assert "system-message" not in body and "line-length-limit" not in body
    assert len(parse_cells(body).cells) == len(cameras) * len(STEP_NAMES) * len(epochs)
