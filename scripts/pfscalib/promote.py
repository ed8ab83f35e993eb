"""Promotion of a build into a shared CHAINED collection (PFS/calib), and its rollback: a separate,
deliberate step for the calibration manager. Never decertifies or deletes anything.

    pfscalib promote --config C --ticket T --tag G [--chain PFS/calib] [--steps ...] [--cameras ...] [--epochs ...]
                     [--no-copy]
    pfscalib rollback RECORD

Promotion copies the build's products, as obs_pfs copyDatasets.py does (fe94433 bin.src/copyDatasets.py:1-25,
python/lsst/obs/pfs/datasetCopy.py:87-134): each file is copied and ingested under a new dataset id into a
RUN named the DMTN-222 way, `<chain>/<ticket>/<tag>/<product>Gen.<YYYYMMDD><letter>` (with `/<epoch>` below
it when the promotion holds one camera's product of several epochs: a RUN holds one dataset per data ID),
then certified, with the source's validity range, into a new CALIBRATION collection
`<chain>/<ticket>/<tag>/<product>.<YYYYMMDD><letter>` (the letter bumped while either name is taken), and
those are prepended to the chain in one registry call, so the chain is either the old or the new one. The
copies do not depend on the user's RUNs: daf_butler's removeRuns purges a RUN's datasets even where they
are certified elsewhere, so a linked promotion is emptied by a routine `butler remove-runs 'u/<user>/*'`.
`--no-copy` certifies the build's own datasets instead (copyDatasets.py --no-copy), and says so.

A record (who, when, which sentinels, the previous chain definition, the RUNs and collections) is written
before anything changes; rerunning an interrupted promotion finishes it from its record without copying
twice, and `rollback` restores the recorded definition of the chain exactly. Rollback deletes nothing: the
promotion's RUNs and CALIBRATION collections stay (named in its log line and record) until the
calibration manager removes them deliberately, because removing datasets cannot be undone and the
collections may be in use since (another chain, a processing run's inputs).
"""

from __future__ import annotations

import datetime
import getpass
import json
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
                out.append({**sentinel, "path": path, "epoch": epoch})
    return out


def collection_names(butler, root: str, products: list[str], day: str) -> dict[str, str]:
    """product -> `<root>/<product>.<day><letter>`, one letter for the whole promotion, bumped until it and
    the generation RUN `<root>/<product>Gen.<day><letter>` (gen_run) are free."""
    for letter in string.ascii_lowercase:
        names = {p: f"{root}/{p}.{day}{letter}" for p in products}
        taken = [n for n in names.values() if butlerops.collection_type(butler, n) is not None]
        taken += [g for n in names.values() if butlerops.collection_type(butler, g := gen_run(n)) is not None]
        if not taken:
            return names
    raise PromotionError(f"{root}: every iteration letter of {day} is taken")


def gen_run(collection: str) -> str:
    """`<root>/<product>.<iteration>` -> its generation RUN `<root>/<product>Gen.<iteration>` (DMTN-222)."""
    root, _, leaf = collection.rpartition("/")
    product, _, iteration = leaf.partition(".")
    return f"{root}/{product}Gen.{iteration}"


def run_names(collections: dict[str, str], sentinels: list[dict]) -> dict[str, str]:
    """sentinel path -> the RUN its copy goes into: the product's Gen RUN, or `<Gen RUN>/<epoch>` for every
    sentinel of a product of which two sentinels share a data ID (one camera, several epochs)."""
    seen: dict[str, set] = {}
    shared = set()
    for s in sentinels:
        key = json.dumps(s["dataId"], sort_keys=True)
        if key in seen.setdefault(s["datasetType"], set()):
            shared.add(s["datasetType"])
        seen[s["datasetType"]].add(key)
    return {
        s["path"]: gen_run(collections[s["datasetType"]]) + (f"/{s['epoch']}" if s["datasetType"] in shared else "")
        for s in sentinels
    }


def promote(
    wf: Workflow,
    chain: str,
    ticket: str,
    tag: str,
    steps: list[str],
    cameras: list[str],
    epochs: list[str],
    copy: bool = True,
) -> str:
    """Returns the record's path. copy=False (--no-copy) certifies the build's own datasets (linked)."""
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
    record = next(
        (r for r in prepared if r["chain"] == chain and r["sentinels"] == chosen and r.get("copy", False) == copy),
        None,
    )
    if record is None:
        current = set(butler.collections.get_info(chain).children)
        done = [r for r in records if r and r["status"] == "done" and r["chain"] == chain]
        for sentinel in sentinels:  # a conflict: promoted before (the chain holds this dataset or its copy)
            there = butlerops.certified(butler, chain, sentinel["datasetType"], sentinel["dataId"])
            copied = any(
                sentinel["datasetId"] in r["datasetIds"] and current & set(r["collections"].values()) for r in done
            )
            if copied or any(str(c["ref"].id) == sentinel["datasetId"] for c in there):
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
            "copy": copy,
            "runs": run_names(names, sentinels) if copy else {},
            "sentinels": [s["path"] for s in sentinels],
            "datasetIds": [s["datasetId"] for s in sentinels],
            "status": "prepared",
        }
        write_json(record["path"], record)  # before anything changes: a rerun finishes this promotion
    else:
        log.info("finishing the interrupted promotion %s", record["path"])
    copies = None
    if copy:
        copies = butlerops.copy_into_runs(butler, record["runs"], sentinels)
        record = {**record, "copies": copies}
        write_json(record["path"], record)
    else:
        sources = sorted({s["run"] for s in sentinels})
        log.warning(
            "--no-copy: linking the build's own datasets; %s will depend on %s surviving (a butler remove-runs "
            "of them empties it)", ", ".join(record["collections"].values()), ", ".join(sources),
        )  # fmt: skip
    butlerops.certify_copies(butler, record["collections"], sentinels, copies)
    fault_hook("promote-certify", record["path"])()
    butlerops.prepend_chain(butler, chain, list(record["collections"].values()))
    fault_hook("promote-chain", record["path"])()
    write_json(record["path"], {**record, "status": "done"})
    how = f"copied into {', '.join(sorted(set(record['runs'].values())))}" if copy else "linked, not copied"
    log.info(
        "promoted %d certifications into %s: %s (%s; record %s)",
        len(sentinels), chain, ", ".join(record["collections"].values()), how, record["path"],
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
    kept = [*record["collections"].values(), *sorted(set(record.get("runs", {}).values()))]
    log.info("%s restored to %s; kept, outside it: %s", chain, ", ".join(previous), ", ".join(kept))
