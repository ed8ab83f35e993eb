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

Safety (issue #29): the chain is changed only by a compare-and-set in one registry transaction that locks
out a concurrent writer (butlerops.compare_and_set_chain): a promotion prepends only to the definition its
record holds, a rollback restores only from the promoted definition; anything else refuses in one line
and changes nothing. A promotion or rollback holds a per-chain lock file under results/promotions/
(fcntl.flock, non-blocking) throughout: a second one at the same time refuses in one line (exit status 1).
The lock serialises the work directory's promotions; the registry compare-and-set also guards against
writers elsewhere (another work directory, a calibration manager by hand). An interrupted promotion is
resumed only if its record still describes the build and the repository (the sentinels' dataset ids, the
datasets, copies and collections it made, the chain); a stale record is one line naming what is stale.
`--ticket`, `--tag` and `--chain` are checked as collection-name parts before the repository is opened.
"""

from __future__ import annotations

import datetime
import fcntl
import getpass
import json
import logging
import os
import re
import string
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pfscalib.internals.faults import fault_hook
from pfscalib.job import butler as butlerops
from pfscalib.plan import paths
from pfscalib.plan.config import ConfigError
from pfscalib.plan.limits import verdict_word
from pfscalib.plan.records import read_json, write_json
from pfscalib.plan.steps import STEP_NAMES, STEPS
from pfscalib.plan.workflow import Workflow

log = logging.getLogger(__name__)
PROMOTIONS = "results/promotions"


class PromotionError(RuntimeError):
    """A promotion or rollback that would conflict; str() is one line."""


class PromotionBusy(PromotionError):
    """Another promotion or rollback of the chain holds its lock (`pfscalib` exits 1)."""


NAME_PART = re.compile(r"[A-Za-z0-9._-]+")


def name_problems(value: str, slashes: bool = False) -> list[str]:
    """What keeps value from being a collection-name part (slashes: a whole name of parts, as --chain)."""
    if not value:
        return ["is empty"]
    problems = []
    if ".." in value:
        problems.append("holds '..'")
    if "/" in value:
        if not slashes:
            problems.append("holds '/'")
        elif "" in value.split("/"):
            problems.append("has an empty part (a leading, trailing or doubled '/')")
    if any(c.isspace() for c in value):
        problems.append("holds whitespace")
    named = {"$": "'$'", "`": "a backtick", "'": "a quote", '"': "a quote"}
    for found in dict.fromkeys(named[c] for c in value if c in named):
        problems.append(f"holds {found}")
    others = sorted({c for c in value if not NAME_PART.fullmatch(c) and c not in "/$`'\"" and not c.isspace()})
    if others:
        problems.append(f"holds {', '.join(repr(c) for c in others)}")
    return problems


def check_name_part(option: str, value: str, slashes: bool = False) -> None:
    """Refuse, in one line naming the option, a user string that is to become part of a collection name."""
    problems = name_problems(value, slashes)
    if problems:
        allowed = "letters, digits, '.', '_' and '-'" + (" in parts separated by '/'" if slashes else "")
        shown = json.dumps(value, ensure_ascii=False)  # quoted, escapes (a newline) kept on one line
        raise PromotionError(
            f"{option} {shown} {'; '.join(problems)}: a collection name part holds only {allowed} (nothing done)"
        )


@contextmanager
def chain_lock(directory: str | Path, chain: str, what: str) -> Iterator[None]:
    """Hold the chain's lock file `<directory>/<chain with / as +>.lock` (fcntl.flock, exclusive,
    non-blocking): a second promotion or rollback of the chain finds it held and raises PromotionBusy.
    The file names its holder (pid, start); it is never removed (a removed lock file could be locked
    twice). The kernel releases the lock when the holder exits, however it dies."""
    path = Path(directory) / f"{chain.replace('/', '+')}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            holder = holder if isinstance(holder, dict) else {}
            raise PromotionBusy(
                f"{chain}: another promotion or rollback is running (pid {holder.get('pid', '?')}, started at "
                f"{holder.get('started', '?')}); retry when it has finished"
            ) from None
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": started, "what": what}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


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
                held = read_json(paths.held(step, epoch, unit))
                if sentinel is None and held:
                    raise PromotionError(
                        f"refused by the quality gate's verdict: {epoch}/{step}/{unit} held "
                        f"({'; '.join(held['failing'])}); held products are never promoted; nothing changed"
                    )
                if sentinel is None:
                    raise PromotionError(f"{path}: not built (run the workflow first)")
                out.append({**sentinel, "path": path, "epoch": epoch, "unit": unit})
    return out


def refuse_by_verdict(sentinels: list[dict], accept_warnings: bool = False) -> None:
    """The quality gate's verdict decides what may be promoted: never a held product (its last build was held,
    even if an earlier one stays certified), nor one never judged; one with warnings only with
    --accept-warnings. One line naming every refused epoch/step/camera and its verdict."""
    refused = []
    for s in sentinels:
        name = f"{s['epoch']}/{s['step']}/{s['unit']}"
        held = read_json(paths.held(s["step"], s["epoch"], s["unit"]))
        word = "held" if held else verdict_word(s.get("quality"))
        if word in ("held", "not judged") or (word == "warn" and not accept_warnings):
            why = held["failing"] if held else [r["rule"] for r in (s.get("quality") or {}).get("rules", [])
                                                  if r.get("level") == "yellow"]  # fmt: skip
            refused.append(f"{name} {word}" + (f" ({'; '.join(why)})" if why else ""))
    if refused:
        warned = all(" warn" in r for r in refused)
        hint = "promote them with --accept-warnings" if warned else "held products are never promoted"
        raise PromotionError(f"refused by the quality gate's verdict: {', '.join(refused)}; {hint}; nothing changed")


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
    accept_warnings: bool = False,
) -> str:
    """Returns the record's path. copy=False (--no-copy) certifies the build's own datasets (linked)."""
    check_name_part("--ticket", ticket)  # before anything touches the repository
    check_name_part("--tag", tag)
    check_name_part("--chain", chain, slashes=True)
    with chain_lock(PROMOTIONS, chain, "promote"):
        from lsst.daf.butler import CollectionType

        sentinels = chosen_sentinels(wf, steps, cameras, epochs)
        refuse_by_verdict(sentinels, accept_warnings)
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
                        f"{sentinel['path']}: {sentinel['datasetType']} {sentinel['datasetId']} is already "
                        f"certified in {chain}; nothing promoted"
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
            check_resumable(butler, record, sentinels, wf.datastore)
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
        record = {**record, "certified": True}  # the collections exist from here: a resume checks they still do
        write_json(record["path"], record)
        fault_hook("promote-certify", record["path"])()
        previous, promoted = record["previous"], promoted_definition(record)
        found = butlerops.compare_and_set_chain(butler, chain, previous, promoted)  # prepend, if still `previous`
        if found not in (previous, promoted):
            refuse_changed_chain(record, found)
        fault_hook("promote-chain", record["path"])()
        write_json(record["path"], {**record, "status": "done"})
        how = f"copied into {', '.join(sorted(set(record['runs'].values())))}" if copy else "linked, not copied"
        log.info(
            "promoted %d certifications into %s: %s (%s; record %s)",
            len(sentinels), chain, ", ".join(record["collections"].values()), how, record["path"],
        )  # fmt: skip
        return record["path"]


def promoted_definition(record: dict) -> list[str]:
    """The chain's definition once the record's promotion is prepended (what a rollback expects)."""
    return butlerops.prepended(record["previous"], list(record["collections"].values()))


def refuse_changed_chain(record: dict, found: list[str]) -> None:
    """The chain is neither the recorded definition nor the promoted one: nothing is prepended; the record
    is marked refused (a rerun starts a new promotion from the chain as it is now)."""
    write_json(record["path"], {**record, "status": "refused", "found": found})
    kept = ", ".join(record["collections"].values())
    raise PromotionError(
        f"{record['chain']} changed since {record['path']} was written: expected [{', '.join(record['previous'])}], "
        f"found [{', '.join(found)}]; nothing prepended (the record is marked refused, {kept} kept outside the "
        "chain; promote again to start from the chain as it is now)"
    )


def check_resumable(butler, record: dict, sentinels: list[dict], repo: str) -> None:
    """Refuse, in one line and before anything changes, to resume a stale record: one whose sentinels were
    rebuilt since (other dataset ids), whose datasets, copies or collections were purged since, or whose
    chain is neither the recorded definition nor the promoted one."""
    import uuid

    from lsst.daf.butler import CollectionType

    stale = []
    for sentinel, recorded in zip(sentinels, record["datasetIds"], strict=True):
        if sentinel["datasetId"] != recorded:
            stale.append(f"{sentinel['path']} was rebuilt since (dataset {sentinel['datasetId']}, was {recorded})")
        elif butler.get_dataset(uuid.UUID(recorded)) is None:
            stale.append(f"{sentinel['path']}'s dataset {recorded} was purged")
    for source, copy in record.get("copies", {}).items():
        if butler.get_dataset(uuid.UUID(copy)) is None:
            stale.append(f"the copy {copy} of {source} was purged")
    if record.get("certified"):
        for name in record["collections"].values():
            if butlerops.collection_type(butler, name) is not CollectionType.CALIBRATION:
                stale.append(f"the collection {name} was removed")
    if stale:
        raise PromotionError(
            f"{record['path']} is stale, not resumed: {'; '.join(stale)}; nothing changed. Retire it with "
            f"`pfscalib rollback --repo {repo} {record['path']}` (restores {record['chain']}'s recorded "
            "definition if it holds the promotion) or remove the record, then promote again"
        )
    found = list(butler.collections.get_info(record["chain"]).children)
    if found not in (record["previous"], promoted_definition(record)):
        refuse_changed_chain(record, found)


def rollback(repo: str, record_path: str) -> None:
    """Restore the chain's definition from before the promotion, by a compare-and-set: only if the chain
    still has the promoted definition; refuse if it changed since."""
    from lsst.daf.butler import CollectionType

    record = read_json(record_path)
    if record is None:
        raise PromotionError(f"{record_path}: no such promotion record")
    chain, previous = record["chain"], record["previous"]
    with chain_lock(Path(record_path).parent, chain, "rollback"):
        butler = butlerops.open_butler(repo, writeable=True)
        if butlerops.collection_type(butler, chain) is not CollectionType.CHAINED:
            raise PromotionError(f"{chain} is not an existing CHAINED collection in {repo}; not rolling back")
        promoted = promoted_definition(record)
        found = butlerops.compare_and_set_chain(butler, chain, promoted, previous)
        if found == previous:
            if record["status"] != "rolled back":
                write_json(record_path, {**record, "status": "rolled back"})  # retired: never resumed
            log.info("%s already has its definition from before %s", chain, record_path)
            return
        if found != promoted:
            raise PromotionError(
                f"{chain} changed since {record_path}: expected [{', '.join(promoted)}], found [{', '.join(found)}]; "
                "not rolling back"
            )
        write_json(record_path, {**record, "status": "rolled back"})
    kept = [*record["collections"].values(), *sorted(set(record.get("runs", {}).values()))]
    log.info("%s restored to %s; kept, outside it: %s", chain, ", ".join(previous), ", ".join(kept))
