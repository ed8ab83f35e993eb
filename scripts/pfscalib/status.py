"""What is certified, from the registry, next to what the sentinels claim.

pfscalib status [--config config/config.yaml] [--format table|tsv|json]
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from . import paths
from .steps import STEP_NAMES, STEPS
from .workflow import Workflow

COLUMNS = ["epoch", "step", "camera", "datasetType", "status", "begin", "end", "run", "datasetId", "visits"]


def status_table(wf: Workflow, workdir: Path = Path(".")) -> pd.DataFrame:
    from lsst.daf.butler import Timespan

    from . import butlerops

    butler = butlerops.open_butler(wf.datastore)
    rows = []
    for step in STEP_NAMES:
        s = STEPS[step]
        collection = wf.calib_collection(step)
        certs = butlerops.certified(butler, collection, s.certified_as)
        for epoch in wf.epochs:
            span = butlerops.make_timespan(*wf.validity(step, epoch))
            for unit in wf.all_units(step):
                if wf.role(step, unit) != "build":  # shown as what it is, not as missing
                    rows.append(
                        dict.fromkeys(COLUMNS, "")
                        | {"epoch": epoch, "step": step, "camera": unit, "datasetType": s.certified_as}
                        | {"status": not_built(wf, step, unit)}
                    )
                    continue
                data_id = {"arm": unit[0], **({} if s.per_arm else {"spectrograph": int(unit[1:])})}
                mine = [
                    c
                    for c in certs
                    if all(c["ref"].dataId[k] == v for k, v in data_id.items())
                    and Timespan(c["begin"], c["end"]).overlaps(span)
                ]
                path = workdir / paths.sentinel(step, epoch, unit)
                sentinel = json.loads(path.read_text()) if path.exists() else None
                row = {
                    "epoch": epoch,
                    "step": step,
                    "camera": unit,
                    "datasetType": s.certified_as,
                    "begin": "",
                    "end": "",
                    "run": "",
                    "datasetId": "",
                    "visits": len(sentinel["visits"]) if sentinel else "",
                }
                if not mine:
                    row["status"] = "NOT CERTIFIED" + (" (sentinel says certified)" if sentinel else "")
                else:
                    cert = mine[0]
                    exact = Timespan(cert["begin"], cert["end"]) == span
                    row.update(
                        begin=cert["begin"].isot[:19] if cert["begin"] else "-inf",
                        end=cert["end"].isot[:19] if cert["end"] else "inf",
                        run=cert["ref"].run,
                        datasetId=str(cert["ref"].id),
                    )
                    if len(mine) > 1:
                        row["status"] = f"{len(mine)} certifications overlap the epoch"
                    elif sentinel is None:
                        row["status"] = "certified, no sentinel"
                    elif sentinel["datasetId"] != str(cert["ref"].id):
                        row["status"] = "differs from sentinel"
                    else:
                        row["status"] = "ok" if exact else "ok (range differs from config)"
                rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def not_built(wf: Workflow, step: str, unit: str) -> str:
    """A camera x step the workflow does not build: n/a (its ISR does not read the product, or the config
    skips it) or the camera whose product its ISR reads (m: r's bias and dark)."""
    maker = wf.maker(step, unit)
    return f"n/a: from {maker}" if maker else "n/a"


def render(df: pd.DataFrame, fmt: str) -> str:
    if fmt == "tsv":
        return df.to_csv(sep="\t", index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=1)
    # camera x calibration grid per epoch; fiberNorms is per arm, so it gets rows of its own
    cells = df.assign(
        cell=[f"{st} [{b[:10]}, {e[:10]})" if b else st for st, b, e in zip(df["status"], df["begin"], df["end"])]
    )
    grid = (
        cells.pivot_table(index=["epoch", "camera"], columns="step", values="cell", aggfunc="first", sort=False)
        .reindex(columns=list(STEP_NAMES))
        .fillna("")
    )
    return grid.to_string()


def main(config_path: str, fmt: str) -> int:
    wf = Workflow(yaml.safe_load(Path(config_path).read_text()), source=config_path)
    df = status_table(wf)
    text = render(df, fmt)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0 if (df["status"].str.startswith("ok") | df["status"].str.startswith("n/a")).all() else 1
