"""The report's first page: per epoch the camera x calibration grid of verdicts (each cell a link to its QA
picture), the roll-up worst-of per camera, spectrograph and run (pfscalib.tools.status's), the collections the
build certified into, and the quality and certification tables, as one HTML fragment.

    pfscalib qa -- --overview OUT.html --certifications results/qa/certifications.tsv
                   --quality results/qa/quality.tsv --cameras b1,r1 --calib-chain C --collection STEP=C ...
                   --epoch NAME=BEGIN=END ...

Snakemake's report shows it twice: as the "Overview" item, and inlined into the workflow description
(report/workflow.rst), the page a reader lands on. One vocabulary: pass / warn / held / accepted for a
certified product's verdict (pfscalib.plan.limits.VERDICTS), and the states status knows besides (missing,
lost, not built ...). Pure: reads the two tables the report already holds, never the registry.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import pandas as pd

from pfscalib.plan import paths
from pfscalib.plan.steps import STEP_NAMES, STEPS
from pfscalib.tools import status

# A cell's word for each of status's states: the gate's verdict where a product is certified, else what is wrong
CELL = {
    "ok": "pass",
    "range": "pass",
    "warn": "warn",
    "accepted": "accepted",
    "held": "held",
    "missing": "missing",
    "lost": "lost",
    "unrecorded": "foreign",
    "differs": "differs",
    "overlap": "overlap",
    "stale": "stale",  # built from an upstream product rebuilt since (status: which, and the command)
    "n/a": "not built",
    "borrowed": "not built",
    "own": "not built",
}
# the word's class (its colour): the verdicts, the states that need a person, and those that need nothing
KIND = {"pass": "pass", "accepted": "accepted", "warn": "warn", "held": "held", "not built": "none"}
STYLE = """
<style>
/* the report centres its content view: a page taller or wider than the window would be cut at the top and left */
.justify-center.overflow-auto:has(.pfs-overview) { align-items: flex-start; justify-content: flex-start; }
.prose.max-w-lg:has(.pfs-overview) { max-width: none; }
.pfs-overview { font-size: 0.9rem; }
.pfs-overview code::before, .pfs-overview code::after { content: none; }
.pfs-overview table { border-collapse: collapse; margin: 0.4em 0 1em 0; }
.pfs-overview th, .pfs-overview td { border: 1px solid #d0d7de; padding: 0.15em 0.5em; text-align: left; }
.pfs-overview td.v, .pfs-overview td.r { text-align: center; font-weight: 600; }
.pfs-overview .pass { background: #dafbe1; color: #1a7f37; }
.pfs-overview .accepted { background: #ddf4ff; color: #0550ae; }
.pfs-overview .warn { background: #fff1c2; color: #9a6700; }
.pfs-overview .held, .pfs-overview .bad { background: #ffebe9; color: #cf222e; }
.pfs-overview .none { background: #f6f8fa; color: #57606a; font-weight: 400; }
.pfs-overview .run { font-size: 1.6rem; font-weight: 700; padding: 0.1em 0.4em; border-radius: 0.2em; }
.pfs-overview td.v a { color: inherit; text-decoration: underline; }
.pfs-overview .small td, .pfs-overview .small th { font-size: 0.75rem; }
</style>
"""


def word_of(verdict: str) -> str:
    """The class of a word or a roll-up verdict ("pass (1 accepted)" is a pass; "incomplete" needs a person)."""
    head = verdict.split(" (")[0]
    return KIND.get(head, "bad")


def picture(epoch: str, step: str, unit: str) -> str:
    """The QA picture's path, as the report's results are keyed (rules/qa.smk's pattern)."""
    return f"{paths.qa_dir(epoch)}/{step}_{unit}.png"


def show(path: str) -> str:
    """A link that opens the picture in the report in one click (its view and its caption)."""
    return (
        "javascript:app.setView({navbarMode:'resultinfo',content:'img',"
        f"contentPath:results['{path}'].data_uri,resultPath:'{path}'}})"
    )


def _table(df: pd.DataFrame, css: str = "small") -> str:
    return df.to_html(index=False, escape=True, classes=css, border=0, na_rep="")


def lines(*parts: str) -> str:
    """One element per line: the report embeds the page in reStructuredText, whose parser (docutils) refuses
    a line longer than its line_length_limit (10,000 characters) and shows an error instead of the page."""
    return "\n".join(parts)


def grid(products: pd.DataFrame, cameras: list[str], epoch: str) -> str:
    """Cameras down, calibrations across, the camera's roll-up last; each cell its word, linked to its picture."""
    states = status.camera_states(products, cameras)
    statuses = {(r.epoch, r.step, r.camera): r.status for r in products.itertuples()}
    roll = status.rollup(products, cameras)
    per_camera = {r.name: r.verdict for r in roll.itertuples() if r.epoch == epoch and r.scope == "camera"}
    head = "".join(f"<th>{html.escape(step)}</th>" for step in STEP_NAMES)
    rows = [f"<tr><th>camera</th>{head}<th>camera roll-up</th></tr>"]
    for camera in cameras:
        cells = []
        for step, state in zip(STEP_NAMES, states.loc[(epoch, camera)]):
            unit = camera[0] if STEPS[step].per_arm else camera
            word = CELL.get(state, state)
            title = html.escape(str(statuses.get((epoch, step, unit), "")), quote=True)
            link = html.escape(show(picture(epoch, step, unit)), quote=True)
            cells.append(
                f'<td class="v {KIND.get(word, "bad")}" data-epoch="{epoch}" data-camera="{camera}" '
                f'data-step="{step}" data-verdict="{word}" title="{title}"><a href="{link}">{word}</a></td>'
            )
        verdict = per_camera[camera]
        cells.append(f'<td class="r {word_of(verdict)}" data-rollup="camera" data-name="{camera}">{verdict}</td>')
        rows.append(lines(f"<tr><th>{camera}</th>", *cells, "</tr>"))
    return lines(f'<table class="grid" data-epoch="{epoch}">', *rows, "</table>")


def rollup_table(products: pd.DataFrame, cameras: list[str]) -> str:
    """Status's roll-up: rows the cameras, spectrographs and the run; columns the epochs."""
    roll = status.rollup(products, cameras)
    epochs = list(dict.fromkeys(roll["epoch"]))
    rows = ["<tr><th>scope</th><th>name</th>" + "".join(f"<th>{e}</th>" for e in epochs) + "</tr>"]
    for scope, name in dict.fromkeys(zip(roll["scope"], roll["name"].where(roll["scope"] != "run", "run"))):
        cells = []
        for epoch in epochs:
            mine = roll[(roll["epoch"] == epoch) & (roll["scope"] == scope)]
            verdict = mine["verdict"].iloc[0] if scope == "run" else mine[mine["name"] == name]["verdict"].iloc[0]
            cells.append(
                f'<td class="r {word_of(verdict)}" data-rollup="{scope}" data-name="{name}" '
                f'data-epoch="{epoch}">{verdict}</td>'
            )
        rows.append(lines(f"<tr><td>{scope}</td><td>{name}</td>", *cells, "</tr>"))
    return lines('<table class="rollup">', *rows, "</table>")


def page(
    certifications: pd.DataFrame,
    quality: pd.DataFrame,
    cameras: list[str],
    epochs: dict[str, tuple[str, str]],
    calib_chain: str,
    collections: dict[str, str],
) -> str:
    products = certifications[certifications["scope"] == "product"].copy()
    products = products.fillna("").astype({"epoch": str, "step": str, "camera": str, "state": str})
    roll = status.rollup(products, cameras)
    parts = [STYLE, '<div class="pfs-overview">', "<h2>Verdicts: camera x calibration per epoch</h2>"]
    parts.append(
        "<p>One word per cell: <b>pass</b>, <b>warn</b>, <b>held</b>, <b>accepted</b> (the quality gate's verdict "
        "of the certified product), or what is wrong (missing, lost, differs, overlap, foreign) or <i>not "
        "built</i> (a camera x calibration the workflow does not make). Click a cell for its QA picture; hover "
        "for status's words. Roll-up: worst-of (held &gt; incomplete &gt; warn &gt; pass).</p>"
    )
    for epoch, (begin, end) in epochs.items():
        run = roll[(roll["epoch"] == epoch) & (roll["scope"] == "run")]["verdict"]
        verdict = run.iloc[0] if len(run) else "missing"
        parts.append(
            f"<h3>{epoch} [{begin[:10]}, {(end or 'inf')[:10]}): "
            f'<span class="run {word_of(verdict)}" data-run="{epoch}">{verdict.upper()}</span></h3>'
        )
        parts.append(grid(products, cameras, epoch))
    parts.append("<h3>Roll-up (worst-of) per camera, spectrograph and run</h3>")
    parts.append(rollup_table(products, cameras))
    chained = [c for s, c in collections.items() if c.startswith(calib_chain + "/")]
    outside = sorted({c for c in collections.values() if c not in chained})
    parts.append(
        f"<h3>Certified into</h3><p>the CHAINED collection <code>{html.escape(calib_chain)}</code>: "
        + ", ".join(f"<code>{html.escape(c)}</code>" for c in chained)
        + ("; and outside it: " + ", ".join(f"<code>{html.escape(c)}</code>" for c in outside) if outside else "")
        + ". Nothing else: the site's own collections are only read.</p>"
    )
    parts.append("<h3>Quality gate: every product's verdict</h3>")
    parts.append(_table(quality.fillna("")))
    columns = ["epoch", "step", "camera", "datasetType", "status", "begin", "end", "run", "datasetId", "visits"]
    parts.append("<h3>Certifications (pfscalib status)</h3>")
    parts.append(_table(products[columns]))
    parts.append("</div>")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overview", required=True, help="write the page here")
    parser.add_argument("--certifications", required=True, help="pfscalib status --format tsv")
    parser.add_argument("--quality", required=True, help="the quality gate's table (pfscalib.job.qa --table)")
    parser.add_argument("--cameras", required=True, help="the config's cameras, comma-separated, in order")
    parser.add_argument("--calib-chain", required=True)
    parser.add_argument("--collection", action="append", default=[], help="STEP=COLLECTION it certifies into")
    parser.add_argument("--epoch", action="append", default=[], help="NAME=BEGIN=END, in order")
    args = parser.parse_args(argv)
    epochs = {name: (begin, end) for name, begin, end in (e.split("=", 2) for e in args.epoch)}
    collections = dict(c.split("=", 1) for c in args.collection)
    text = page(
        pd.read_csv(args.certifications, sep="\t", dtype=str, keep_default_na=False),
        pd.read_csv(args.quality, sep="\t", dtype=str, keep_default_na=False),
        args.cameras.split(","),
        epochs,
        args.calib_chain,
        collections,
    )
    Path(args.overview).parent.mkdir(parents=True, exist_ok=True)
    Path(args.overview).write_text(text)
    return 0
