"""Promotion of a build into a shared CHAINED collection (PFS/calib), and its rollback: a separate,
deliberate step for the calibration manager. Never decertifies or deletes anything.

    pfscalib promote --config C --ticket T --tag G [--chain PFS/calib] [--steps ...] [--cameras ...] [--epochs ...]
    pfscalib rollback RECORD

Promotion certifies the build's products (the same datasets, with their validity ranges) into new
CALIBRATION collections named the DMTN-222 way, `<chain>/<ticket>/<tag>/<product>.<YYYYMMDD><letter>` (the
letter bumped while the name is taken), then prepends them to the chain in one registry call, so the chain
is either the old or the new one. A record (who, when, which sentinels, the previous chain definition) is
written before the chain changes; rerunning an interrupted promotion finishes it from its record, and
`rollback` restores the recorded definition exactly.
"""

from __future__ import annotations

import datetime
import getpass
import logging
import string
from pathlib import Path

from . import butlerops, paths
from .config import ConfigError
from .faults import fault_hook
from .job import read_json, write_json
from .steps import STEP_NAMES, STEPS
from .workflow import Workflow

log = logging.getLogger(__name__)
PROMOTIONS = "results/promotions"


class PromotionError(RuntimeError):
    """A promotion or rollback that would conflict; str() is one line."""


def chosen_sentinels(wf: Workflow, steps: list[str], cameras: list[str], epochs: list[str]) -> list[dict]:
    """The sentinels of the chosen build products (default: every product in the calib chain)."""
    steps = steps or [s for s in STEP_NAMES if not STEPS[s].outside_calib_chain]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ConfigError("promote --steps", f"unknown step(s) {', '.join(unknown)}")
    out = []
    for epoch in epochs or list(wf.epochs):
        for step in steps:
            for unit in wf.units(step):
                if cameras and not any(c.startswith(unit) or unit.startswith(c) for c in cameras):
                    continue
                path = paths.sentinel(step, epoch, unit)
                sentinel = read_json(path)
                if sentinel is None:
                    raise PromotionError(f"{path}: not built (run the workflow first)")
                out.append({**sentinel, "path": path})
    return out


def collection_names(butler, root: str, products: list[str], day: str) -> dict[str, str]:
    """product -> `<root>/<product>.<day><letter>`, one letter for the whole promotion, bumped until free."""
    for letter in string.ascii_lowercase:
        names = {p: f"{root}/{p}.{day}{letter}" for p in products}
        if all(butlerops.collection_type(butler, n) is None for n in names.values()):
            return names
    raise PromotionError(f"{root}: every iteration letter of {day} is taken")


def promote(
    wf: Workflow, chain: str, ticket: str, tag: str, steps: list[str], cameras: list[str], epochs: list[str]
) -> str:
    """Returns the record's path."""
    from lsst.daf.butler import CollectionType

    sentinels = chosen_sentinels(wf, steps, cameras, epochs)
    butler = butlerops.open_butler(wf.datastore, writeable=True)
    if butlerops.collection_type(butler, chain) is not CollectionType.CHAINED:
        raise PromotionError(f"{chain} is not an existing CHAINED collection: nothing to promote into")
    if wf.is_own(chain):
        raise PromotionError(f"{chain} is the build's own collection: promote into a shared chain")
    chosen = [s["path"] for s in sentinels]
    records = [read_json(str(p)) for p in sorted(Path(PROMOTIONS).glob("*.json"))]
    prepared = [r for r in records if r and r["status"] == "prepared"]
    record = next((r for r in prepared if r["chain"] == chain and r["sentinels"] == chosen), None)
    if record is None:
        for sentinel in sentinels:  # a conflict: promoted before (the chain already holds this very dataset)
            there = butlerops.certified(butler, chain, sentinel["datasetType"], sentinel["dataId"])
            if any(str(c["ref"].id) == sentinel["datasetId"] for c in there):
                raise PromotionError(
                    f"{sentinel['path']}: {sentinel['datasetType']} {sentinel['datasetId']} is already certified in "
                    f"{chain}; nothing promoted"
                )
    if record is None:
        day = datetime.date.today().strftime("%Y%m%d")
        products = sorted({s["datasetType"] for s in sentinels})
        names = collection_names(butler, f"{chain}/{ticket}/{tag}", products, day)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        record = {
            "path": f"{PROMOTIONS}/{stamp}.json",
            "who": getpass.getuser(),
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "chain": chain,
            "previous": list(butler.collections.get_info(chain).children),
            "collections": names,
            "sentinels": [s["path"] for s in sentinels],
            "datasetIds": [s["datasetId"] for s in sentinels],
            "status": "prepared",
        }
        write_json(record["path"], record)  # before anything changes: a rerun finishes this promotion
    else:
        log.info("finishing the interrupted promotion %s", record["path"])
    butlerops.certify_copies(butler, record["collections"], sentinels)
    fault_hook("promote-certify", record["path"])()
    butlerops.prepend_chain(butler, chain, list(record["collections"].values()))
    fault_hook("promote-chain", record["path"])()
    write_json(record["path"], {**record, "status": "done"})
    log.info(
        "promoted %d certifications into %s: %s (record %s)",
        len(sentinels), chain, ", ".join(record["collections"].values()), record["path"],
    )  # fmt: skip
    return record["path"]


def rollback(repo: str, record_path: str) -> None:
    """Restore the chain's definition from before the promotion; refuse if the chain changed since."""
    record = read_json(record_path)
    if record is None:
        raise PromotionError(f"{record_path}: no such promotion record")
    butler = butlerops.open_butler(repo, writeable=True)
    chain, previous = record["chain"], record["previous"]
    current = list(butler.collections.get_info(chain).children)
    promoted = [c for c in current if c in record["collections"].values()]
    if current == previous:
        log.info("%s already has its definition from before %s", chain, record_path)
        return
    if [c for c in current if c not in promoted] != previous:
        raise PromotionError(f"{chain} changed since {record_path}: {', '.join(current)}; not rolling back")
    butler.collections.redefine_chain(chain, previous)
    write_json(record_path, {**record, "status": "rolled back"})
    log.info("%s restored to %s", chain, ", ".join(previous))
