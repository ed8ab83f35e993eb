"""Registry operations on a Gen3 Butler (daf_butler API): certify, decertify, replace, copy, clean.

Shared by the workflow's certify step and by the stand-ins for drp_stella's butler scripts.
Dates are TAI ISO-8601, ranges half-open [begin, end); None means unbounded.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from astropy.time import Time
from lsst.daf.butler import Butler, CollectionType, DatasetRef, DatasetType, MissingCollectionError, Timespan

from pfscalib.job.pipelines import load_pipeline


def parse_date(text: str | None) -> Time | None:
    return None if text in (None, "") else Time(text, scale="tai", format="isot")


def make_timespan(begin: str | None, end: str | None) -> Timespan:
    return Timespan(parse_date(begin), parse_date(end))


def parse_ids(ids: Iterable[Sequence[str]] | None) -> list[dict[str, Any]]:
    """--id KEY=VALUE ... occurrences (each one data ID); ints converted where they look like ints."""
    out = []
    for tokens in ids or []:
        data_id: dict[str, Any] = {}
        for token in tokens:
            key, sep, value = token.partition("=")
            if not sep:
                raise ValueError(f"bad --id token {token!r} (expected KEY=VALUE)")
            data_id[key] = int(value) if value.lstrip("-").isdigit() else value
        out.append(data_id)
    return out


def first_run(butler: Butler, collection: str) -> str:
    """The RUN a CHAINED output points at first (the newest pipetask run), or the collection itself."""
    if butler.registry.getCollectionType(collection) is CollectionType.CHAINED:
        for child in butler.registry.getCollectionChain(collection):
            if butler.registry.getCollectionType(child) is CollectionType.RUN:
                return child
        raise LookupError(f"chain {collection} holds no RUN collection")
    return collection


def query_refs(
    butler: Butler,
    dataset_type: str,
    collections: str | list[str],
    data_id: dict | None = None,
    find_first: bool = True,
) -> list[DatasetRef]:
    return list(
        butler.query_datasets(
            dataset_type, collections=collections, data_id=data_id or {}, find_first=find_first, explain=False
        )
    )


def collection_type(butler: Butler, name: str) -> CollectionType | None:
    """The collection's type, None if it does not exist: one lookup, not a listing of every collection
    in a registry that may hold thousands of user runs."""
    try:
        return butler.registry.getCollectionType(name)
    except MissingCollectionError:
        return None


def ensure_calibration_collection(butler: Butler, collection: str) -> None:
    butler.registry.registerCollection(collection, CollectionType.CALIBRATION)
    if butler.registry.getCollectionType(collection) is not CollectionType.CALIBRATION:
        raise ValueError(f"collection {collection} exists and is not a CALIBRATION collection")


def certify(butler: Butler, collection: str, refs: list[DatasetRef], timespan: Timespan) -> None:
    ensure_calibration_collection(butler, collection)
    butler.registry.certify(collection, refs, timespan)


def decertify(
    butler: Butler, collection: str, dataset_type: str, timespan: Timespan, data_ids: list[dict] | None = None
) -> None:
    butler.registry.decertify(collection, dataset_type, timespan, dataIds=data_ids or None)


def replace_certification(
    butler: Butler,
    collection: str,
    refs: list[DatasetRef],
    timespan: Timespan,
    between: Callable[[], None] | None = None,
) -> None:
    """Decertify whatever covers these data IDs over the range and certify refs, in one transaction:
    a failure in between (between() is where tests inject one) leaves the previous certification."""
    ensure_calibration_collection(butler, collection)
    with butler.registry.transaction():
        for ref in refs:
            required = {k: ref.dataId[k] for k in ref.datasetType.dimensions.required}
            # Only decertify what overlaps: daf_butler's decertify asserts on a collection that has
            # never held this dataset type (its collection summary prunes the search to nothing).
            if any(_overlaps(c, timespan) for c in certified(butler, collection, ref.datasetType.name, required)):
                butler.registry.decertify(collection, ref.datasetType.name, timespan, dataIds=[required])
        if between is not None:
            between()
        butler.registry.certify(collection, refs, timespan)


def same_span(certification: dict, timespan: Timespan) -> bool:
    return Timespan(certification["begin"], certification["end"]) == timespan


def _overlaps(certification: dict, timespan: Timespan) -> bool:
    return Timespan(certification["begin"], certification["end"]).overlaps(timespan)


def certified(butler: Butler, collection: str, dataset_type: str, data_id: dict | None = None) -> list[dict]:
    """Certifications (ref + validity range) of a dataset type in a CALIBRATION collection."""
    out: list[dict] = []
    if dataset_type not in {dt.name for dt in butler.registry.queryDatasetTypes(dataset_type)}:
        return out
    if collection_type(butler, collection) is None:
        return out  # nothing certified there yet
    for assoc in butler.registry.queryDatasetAssociations(dataset_type, collections=collection, flattenChains=True):
        if data_id and any(assoc.ref.dataId.get(k) != v for k, v in data_id.items()):
            continue
        out.append({"ref": assoc.ref, "begin": assoc.timespan.begin, "end": assoc.timespan.end})
    return out


def copy_datasets(butler: Butler, refs: list[DatasetRef], dataset_type: str, run: str) -> list[DatasetRef]:
    """Copy datasets under another dataset type into run (what certifyDetectorMaps.py does), reusing
    copies already there so that a rerun after a crash is idempotent."""
    source = refs[0].datasetType
    target = DatasetType(dataset_type, source.dimensions, source.storageClass_name, isCalibration=True)
    butler.registry.registerDatasetType(target)
    butler.registry.registerRun(run)
    out = []
    for ref in refs:
        existing = query_refs(butler, dataset_type, run, dict(ref.dataId.required))
        out.append(existing[0] if existing else butler.put(butler.get(ref), target, ref.dataId, run=run))
    return out


def runs_matching(butler: Butler, pattern: str) -> list[str]:
    """RUN collections matching a butler glob (chains are not flattened)."""
    return sorted(
        name
        for name in butler.registry.queryCollections(collectionTypes=CollectionType.RUN)
        if fnmatch.fnmatchcase(name, pattern)
    )


def clean_runs(
    butler: Butler,
    pattern: str,
    dataset_types: list[str],
    data_ids: list[dict] | None = None,
    where: str = "",
    dry_run: bool = False,
    log=print,
) -> int:
    """Purge datasets of the given types from RUN collections matching pattern; returns how many."""
    known = {dt.name for dt in butler.registry.queryDatasetTypes()}
    total = 0
    for run in runs_matching(butler, pattern):
        for dataset_type in dataset_types:
            if dataset_type not in known:
                continue
            refs: list[DatasetRef] = []
            for data_id in data_ids or [{}]:
                refs += list(
                    butler.query_datasets(
                        dataset_type, collections=run, data_id=data_id, where=where, find_first=False, explain=False
                    )
                )
            if not refs:
                continue
            log(f"{'would remove' if dry_run else 'removing'} {len(refs)} {dataset_type} from {run}")
            if not dry_run:
                butler.pruneDatasets(refs, disassociate=True, unstore=True, purge=True)
            total += len(refs)
    return total


def stored_bytes(butler: Butler, pattern: str) -> dict[str, list[int]]:
    """{dataset type: [datasets, bytes]} of the files stored for every dataset in the RUN collections
    matching pattern: what a job wrote into the datastore (pfscalib.plan.disk compares its prediction)."""
    out: dict[str, list[int]] = {}
    for run in runs_matching(butler, pattern):
        # one query for every dataset type of the RUN (a query per type costs ~0.2 s per job)
        refs = butler.query_all_datasets(collections=run, find_first=False, limit=None)
        for ref, uris in butler.get_many_uris(refs).items():
            files = [uris.primaryURI] if uris.primaryURI else list(uris.componentURIs.values())
            entry = out.setdefault(ref.datasetType.name, [0, 0])
            entry[0] += 1
            entry[1] += sum(uri.size() for uri in files)
    return out


# ---------------------------------------------------------------- queries of the workflow's commands
# User values go in as bind parameters, never spliced into the query text.
def visit_records(butler: Butler, instrument: str, visits: list[int]) -> dict[int, Any]:
    """Visit dimension records by visit id."""
    records = butler.query_dimension_records(
        "visit", where="instrument = inst AND visit IN (v)", bind={"inst": instrument, "v": visits}, explain=False
    )
    return {r.id: r for r in records}


def profile_designs(butler: Butler, instrument: str) -> set[int]:
    """The pfs_design_ids of the fibre-profile frames: the designs of every visit a profiles_run of the
    registry holds (the observatory's shared ones, run18_brn, and the workflow's own). Their bright frames
    hide some fibres behind the dots and their dark frames all of them, each with a design of its own."""
    bind = {"i": instrument}
    records = butler.query_dimension_records("profiles_visits", where="instrument = i", bind=bind, explain=False)
    visits = sorted({r.visit for r in records})
    return {r.pfs_design_id for r in visit_records(butler, instrument, visits).values()} if visits else set()


def raw_cameras(butler: Butler, instrument: str, visits: list[int], collections: list[str]) -> set[tuple[int, str]]:
    """(visit, camera) of every raw of these visits in the collections."""
    refs = butler.query_datasets(
        "raw", collections=collections, where="instrument = inst AND visit IN (v)",
        bind={"inst": instrument, "v": visits}, find_first=False, explain=False,
    )  # fmt: skip
    return {(ref.dataId["visit"], f"{ref.dataId['arm']}{ref.dataId['spectrograph']}") for ref in refs}


def detector_ids(butler: Butler, instrument: str) -> dict[str, int]:
    """Camera (b1) -> detector id. A calibration keyed by detector (real defects: instrument, detector, arm,
    spectrograph; obs_pfs fe94433 PrimeFocusSpectrograph.py:178-179) is found from the camera's arm and
    spectrograph as the ISR does (obs_pfs fe94433 isrTask.py:588-616, lookupDefects)."""
    records = butler.query_dimension_records(
        "detector", where="instrument = inst", bind={"inst": instrument}, explain=False
    )
    return {f"{r.arm}{r.spectrograph}": r.id for r in records}


def visits_with_pfs_config(butler: Butler, instrument: str, visits: list[int], collections: list[str]) -> set[int]:
    """The visits that have a pfsConfig in the collections (every visit a step reads needs one: without it
    the failure comes late, in the QuantumGraph or BootstrapTask, drp_stella 3a705d9 bootstrap.py:155-156)."""
    from lsst.daf.butler import MissingDatasetTypeError

    try:
        refs = butler.query_datasets(
            "pfsConfig", collections=collections, where="instrument = inst AND visit IN (v)",
            bind={"inst": instrument, "v": visits}, find_first=False, explain=False,
        )  # fmt: skip
    except MissingDatasetTypeError:
        return set()
    return {ref.dataId["visit"] for ref in refs}


CALIB_UUID, CALIB_RUN = "LSST CALIB UUID ", "LSST CALIB RUN "


def calib_inputs(butler: Butler, run: str, dataset_type: str, data_id: dict) -> dict[str, dict]:
    """The calibrations the job's ISR actually used, from the provenance it writes into the header of its
    output (doHeaderProvenance: LSST CALIB UUID <INPUT>, LSST CALIB RUN <INPUT>; obs_pfs fe94433
    isrTask.py:1287-1298, drp_stella 3a705d9 pipelines/isr.py:350-358): {input: {datasetType, datasetId,
    run, dataId}} of the first such output in the RUN; empty when there is none or it carries no keys."""
    import uuid

    from lsst.daf.butler import MissingDatasetTypeError

    try:
        refs = query_refs(butler, dataset_type, run, data_id, find_first=False)
    except MissingDatasetTypeError:
        return {}
    if not refs:
        return {}
    ref = min(refs, key=lambda r: r.dataId.get("visit", 0))
    if "metadata" in ref.datasetType.storageClass.allComponents():  # the header alone (afw Exposure)
        metadata = butler.get(ref.makeComponentRef("metadata"))
    else:
        metadata = butler.get(ref).getMetadata()
    out = {}
    for key in list(metadata.names() if hasattr(metadata, "names") else metadata):
        if not key.startswith(CALIB_UUID):
            continue
        name = key.removeprefix(CALIB_UUID).lower()
        used = butler.get_dataset(uuid.UUID(str(metadata.get(key))))
        out[name] = {
            "datasetType": used.datasetType.name if used else None,
            "datasetId": str(metadata.get(key)),
            "run": metadata.get(CALIB_RUN + name.upper()),
            "dataId": {k: used.dataId[k] for k in used.dataId.required} if used else {},
        }
    return out


def profiles_run_definition(butler: Butler, instrument: str, name: str) -> dict[int, dict[str, list[int]]] | None:
    """A profiles_run's definition, {group: {"bright": visits, "dark": visits}} (sorted), None if no
    profiles_run of that name exists. The roles are only in the profiles_visits datasets that
    defineFiberProfilesInputs.py writes into <instrument>/fiberProfilesInputs (drp_stella 3a705d9
    python/pfs/drp/stella/gen3.py:742, 779); the registry's profiles_visits records hold the visits without
    them. A group without its dataset gets role "unknown", so it never equals a definition."""
    from lsst.daf.butler import MissingDatasetTypeError

    bind = {"i": instrument, "n": name}
    where = "instrument = i AND profiles_run = n"
    if not list(butler.query_dimension_records("profiles_run", where=where, bind=bind, explain=False)):
        return None
    out: dict[int, dict[str, list[int]]] = {}
    for record in butler.query_dimension_records("profiles_visits", where=where, bind=bind, explain=False):
        out.setdefault(record.profiles_group, {"unknown": []})["unknown"].append(record.visit)
    try:
        run, data_id = f"{instrument}/fiberProfilesInputs", {"instrument": instrument, "profiles_run": name}
        refs = query_refs(butler, "profiles_visits", run, data_id)
    except (MissingDatasetTypeError, MissingCollectionError):
        refs = []
    for ref in refs:
        content = butler.get(ref)
        out[ref.dataId["profiles_group"]] = {
            "bright": sorted(int(v) for v in content.get("bright", [])),
            "dark": sorted(int(v) for v in content.get("dark", [])),
        }
    return {group: {k: sorted(v) for k, v in roles.items()} for group, roles in sorted(out.items())}


class QueryError(ValueError):
    """A user's query the registry cannot run; str() is one line naming it and why."""


def select_visits(
    butler: Butler, instrument: str, where: str = "", target_name: str | None = None,
    observation_type: str | None = None, begin: str | None = None, end: str | None = None,
) -> list[Any]:  # fmt: skip
    """Visit records matching a user's query (its own text) and bound target name / observation type,
    that start within [begin, end) (TAI ISO-8601, None unbounded), ordered by visit."""
    import re

    from lsst.daf.butler import InvalidQueryError

    span = make_timespan(begin, end)
    # The user's text first, so that a parse error's character position is the user's (+1 for "(").
    clauses, bind = ["instrument = inst", "visit.timespan OVERLAPS span"], {"inst": instrument, "span": span}
    if where:
        clauses.insert(0, f"({where})")
    if target_name is not None:
        clauses.append("visit.target_name = target")
        bind["target"] = target_name
    if observation_type is not None:
        clauses.append("visit.observation_type = obstype")
        bind["obstype"] = observation_type
    try:
        records = list(
            butler.query_dimension_records(
                "visit", where=" AND ".join(clauses), bind=bind, order_by=["visit"], explain=False
            )
        )
    except InvalidQueryError as exc:
        cause = str(exc).splitlines()[0]
        at = re.search(r"position (\d+)", str(exc.__cause__))
        if str(exc).startswith("Failed to parse"):  # the position counts the "(" before the user's text
            cause = f"cannot parse it at character {at[1]} ({where[int(at[1]) - 1 :]!r})" if at else "cannot parse it"
        raise QueryError(f"--where {where!r} is not a valid registry query: {cause}") from None
    # OVERLAPS also takes a visit that straddles a boundary: a visit belongs to the range it starts in.
    return [r for r in records if span.contains(r.timespan.begin)]


def register_pipeline_dataset_types(butler: Butler, pipelines: list[str], overrides: list[str]) -> None:
    """Register every dataset type of the pipelines, with LABEL:KEY=VALUE connection overrides applied."""

    for path in pipelines:
        pipeline = load_pipeline(path, overrides, own_labels_only=True)
        pipeline.to_graph(registry=butler.registry).register_dataset_types(butler)


# ---------------------------------------------------------------- crash recovery
def repo_directory(repo: str) -> Path | None:
    """The local directory of a repository given as a directory or its butler.yaml, else None."""
    path = Path(repo)
    path = path.parent if path.suffix in (".yaml", ".yml", ".json") else path
    return path if path.is_dir() else None


def heal_hot_journal(repo: str) -> bool:
    """A process killed inside an SQLite commit leaves a hot rollback journal; SQLite rolls it back only
    through a connection that may write, and daf_butler opens read-only registries with mode=ro, so
    every read-only open would fail ("attempt to write a readonly database") until a read-write open.
    Take the write lock once (SQLite rolls a hot journal back on the way); a journal still there then is
    cold (a transaction killed before it wrote) and is removed under the lock. A journal of a live
    transaction is left alone (the lock is busy). Returns whether a journal was found and removed."""
    import sqlite3

    root = repo_directory(repo)
    journals = list(root.glob("*.sqlite3-journal")) if root is not None else []
    for journal in journals:
        database = journal.with_name(journal.name.removesuffix("-journal"))
        connection = sqlite3.connect(database, timeout=2, isolation_level=None)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            journal.unlink(missing_ok=True)
            connection.execute("ROLLBACK")
        except sqlite3.OperationalError:  # busy: another process is writing; its journal is not ours
            pass
        finally:
            connection.close()
    return bool(journals) and not any(j.exists() for j in journals)


def open_butler(repo: str, writeable: bool = False) -> Butler:
    """Butler.from_config, after healing a hot journal left by a killed process."""
    heal_hot_journal(repo)
    return Butler.from_config(repo, writeable=writeable)


def repair_output_chain(butler: Butler, chain: str, run: str, inputs: list[str]) -> str | None:
    """pipetask sets up its output in three commits (register the CHAINED collection, the RUN, then
    define the chain); a kill in between leaves an empty chain, or a RUN missing from it, which every
    later pipetask refuses. Complete it as pipetask would have: the RUN (if it exists) first, then the
    chain's earlier children or, for a new chain, the flattened inputs. Returns what was done, or None."""
    if collection_type(butler, chain) is not CollectionType.CHAINED:
        return None
    children = list(butler.collections.get_info(chain).children)
    run_exists = collection_type(butler, run) is not None
    if children and (run in children or not run_exists):
        return None
    if not children:
        children = list(butler.collections.query(inputs, flatten_chains=True, include_chains=False))
    definition = ([run] if run_exists else []) + [c for c in children if c != run]
    butler.collections.redefine_chain(chain, definition)
    return f"repaired output chain {chain} (interrupted pipetask set-up): {', '.join(definition)}"


def repair_run(butler: Butler, run: str, repo: str) -> list[str]:
    """Before resuming a RUN: a kill inside the registry commit of a dataset leaves its file in the
    datastore with no registry row, and (for a task's log, written after its metadata) a quantum that
    --skip-existing takes as done. Remove such files, and the metadata of quanta without their log so
    that those quanta run again. Returns what was done, in words."""
    done = []
    refs = list(butler.query_all_datasets(run, find_first=False, limit=None)) if collection_type(butler, run) else []
    by_type: dict[str, set] = {}
    for ref in refs:
        by_type.setdefault(ref.datasetType.name, set()).add(ref.dataId.required_values)

    def logged(ref: DatasetRef) -> bool:
        log_type = ref.datasetType.name.removesuffix("_metadata") + "_log"
        return ref.dataId.required_values in by_type.get(log_type, set())

    stale = [ref for ref in refs if ref.datasetType.name.endswith("_metadata") and not logged(ref)]
    if stale:
        butler.pruneDatasets(stale, disassociate=True, unstore=True, purge=True)
        done.append(f"{len(stale)} quanta without their log will run again")
    root = repo_directory(repo)
    if root is not None and (root / run).is_dir():
        # RUNs named under this one (the detectorMap copies' <run>/certify) keep their files in its directory
        nested = runs_matching(butler, f"{run}/*")
        owned = refs + (list(butler.query_all_datasets(nested, find_first=False, limit=None)) if nested else [])
        known = {Path(butler.getURI(ref).ospath).resolve() for ref in owned if ref not in stale}
        orphans = [p for p in (root / run).resolve().rglob("*") if p.is_file() and p not in known]
        for path in orphans:
            path.unlink()
        if orphans:
            done.append(f"removed {len(orphans)} datastore files without a registry row")
    return done


def registered_instruments(butler: Butler) -> list[str]:
    return sorted(r.name for r in butler.query_dimension_records("instrument", explain=False))


def own_collection_problems(
    butler: Butler, rerun: str, wanted: dict[str, CollectionType], named: list[str]
) -> list[str]:
    """Before the workflow makes its own collections: each is absent or of the type it makes; and a
    collection named in the config (named: the calib chain, the bootstrap maps' collection) that is
    absent while the rerun already holds collections of this workflow is a typo, not a first build: a new
    one would certify where no later step reads and hide what was built."""
    out = []
    for name, kind in wanted.items():
        found = collection_type(butler, name)
        if found is not None and found is not kind:
            out.append(f"collection {name!r} exists as a {found.name} collection; the workflow needs it {kind.name}")
    absent = [name for name in named if collection_type(butler, name) is None]
    if absent:
        others = [c for c in butler.collections.query(f"{rerun}/*") if c not in wanted]
        if others:
            out.append(
                f"collection {absent[0]!r} (config collections) does not exist, but rerun {rerun!r} already holds "
                f"this workflow's collections ({', '.join(sorted(others)[:2])} ...): correct the name, or start a "
                "new rerun"
            )
    return out


def ensure_own_collections(butler: Butler, chain: str, members: list[str], others: list[str]) -> None:
    """The workflow's own collections, made once before any job writes (jobs never race to make them):
    a CALIBRATION collection per product, chained into a CHAINED chain (children the user added stay),
    and CALIBRATION collections outside the chain (the bootstrap maps)."""
    for name in [*members, *others]:
        butler.collections.register(name, CollectionType.CALIBRATION)
    butler.collections.register(chain, CollectionType.CHAINED)
    missing = [m for m in members if m not in butler.collections.get_info(chain).children]
    if missing:
        butler.collections.extend_chain(chain, missing)


def calibration_validities(butler: Butler, dataset_type: str, collections: list[str]) -> list[tuple[dict, Timespan]]:
    """Every certification of a calibration type in the CALIBRATION collections reached from these collections
    (chains followed): (its required data ID, its validity range); none for a type the registry does not know."""
    from lsst.daf.butler import CollectionType, MissingDatasetTypeError

    try:
        associations = butler.registry.queryDatasetAssociations(
            dataset_type, collections=collections, collectionTypes={CollectionType.CALIBRATION}, flattenChains=True
        )
        return [(dict(a.ref.dataId.required), a.timespan) for a in associations]
    except MissingDatasetTypeError:
        return []


# ---------------------------------------------------------------- promotion (pfscalib.tools.promote)
def copy_into_runs(butler: Butler, runs: dict[str, str], sentinels: list[dict]) -> dict[str, str]:
    """Copy each sentinel's dataset into its Gen RUN (runs: sentinel path -> RUN) under a new dataset id:
    the file is copied byte for byte and ingested (Butler.ingest of a FileDataset, transfer="copy"), as
    obs_pfs fe94433 python/lsst/obs/pfs/datasetCopy.py:87-134 does, not `put(get(ref))`, which re-encodes
    the data through its storage class. A copy already in the RUN (an interrupted promotion resumed) is
    kept, not made again. Returns source dataset id -> copy's dataset id."""
    import uuid

    from lsst.daf.butler import FileDataset

    copies: dict[str, str] = {}
    for sentinel in sentinels:
        ref = butler.get_dataset(uuid.UUID(sentinel["datasetId"]))
        if ref is None:
            raise LookupError(f"{sentinel['path']}: dataset {sentinel['datasetId']} is not in the registry")
        run = runs[sentinel["path"]]
        butler.collections.register(run, CollectionType.RUN)
        there = query_refs(butler, ref.datasetType.name, run, dict(ref.dataId.required))
        if not there:
            copy = DatasetRef(ref.datasetType, ref.dataId, run=run)
            uris = butler.getURIs(ref)
            if uris.componentURIs:  # no single file to copy (datasetCopy.py:79-83 refuses it too)
                raise LookupError(f"{sentinel['path']}: {ref.datasetType.name} is stored in parts; cannot copy it")
            butler.ingest(FileDataset(path=uris.primaryURI, refs=[copy]), transfer="copy")
            there = [copy]
        copies[sentinel["datasetId"]] = str(there[0].id)
    return copies


def certify_copies(
    butler: Butler, collections: dict[str, str], sentinels: list[dict], copies: dict[str, str] | None = None
) -> None:
    """Certify the promoted datasets (copies: source id -> copy id; None: the sentinels' own datasets,
    linked), with the sources' validity ranges, into the product's new CALIBRATION collection (made here),
    in one transaction; what a previous, interrupted call certified is kept."""
    import uuid

    for name in collections.values():
        butler.collections.register(name, CollectionType.CALIBRATION)
    with butler.transaction():
        for sentinel in sentinels:
            dataset_id = (copies or {}).get(sentinel["datasetId"], sentinel["datasetId"])
            ref = butler.get_dataset(uuid.UUID(dataset_id))
            if ref is None:
                raise LookupError(f"{sentinel['path']}: dataset {dataset_id} is not in the registry")
            collection = collections[sentinel["datasetType"]]
            timespan = make_timespan(sentinel["validity"]["begin"], sentinel["validity"]["end"])
            done = certified(butler, collection, ref.datasetType.name, dict(ref.dataId.required))
            if not any(c["ref"].id == ref.id and same_span(c, timespan) for c in done):
                butler.registry.certify(collection, [ref], timespan)


def prepended(definition: list[str], children: list[str]) -> list[str]:
    """The chain definition after daf_butler's prepend_chain of children (a child already there moves)."""
    return [*children, *[c for c in definition if c not in children]]


def compare_and_set_chain(butler: Butler, chain: str, expected: list[str], new: list[str]) -> list[str]:
    """Redefine the chain as new only if it is expected now; returns the definition found (unchanged
    unless it was expected; already new is no change). Read, compare and redefine in one registry
    transaction that holds the chain against a concurrent writer:
    - SQLite: daf_butler begins every transaction of a writeable registry with BEGIN IMMEDIATE
      (lsst-daf-butler 30.2026.4300 registry/databases/sqlite.py, _onSqlite3Begin), a write lock on the
      whole database until commit, so nobody writes between our read and our redefine (SQLAlchemy's
      SQLite dialect drops the FOR UPDATE below);
    - PostgreSQL: the row lock daf_butler's own chain updates take first (registry/collections/_base.py,
      _modify_collection_chain -> _find_and_lock_collection_chain: SELECT ... FOR UPDATE of the chain's
      row in the collection table, held to the end of the transaction), taken here before the read; the
      redefine (update_chain) takes it again within the same transaction.
    Database.transaction(lock=[tables]) (LOCK TABLE ... IN EXCLUSIVE MODE) would lock every chain; the
    row lock is daf_butler's locking for exactly this, private (no public API takes it in this version):
    renamed by an upgrade, this fails loudly (AttributeError), and test_promote_safety's concurrent-writer
    test checks the lock holds on both databases."""
    with butler.registry.transaction():
        manager = butler._registry._managers.collections  # DirectButler's SqlRegistry collection manager
        manager._find_and_lock_collection_chain(chain, exclusive_lock=True)
        current = list(butler.collections.get_info(chain).children)  # no caching context: a fresh read
        if current == expected and current != new:
            butler.collections.redefine_chain(chain, new)
        return current


# ---------------------------------------------------------------- spectralOffset auto (pfscalib.job.offsets)
def remove_collections(butler: Butler, patterns: list[str], log=print) -> int:
    """Remove the workflow's own collections matching butler globs, with every dataset of their RUNs
    (scan runs once the bootstrap is certified): chains first (a RUN in a chain cannot go), then RUNs."""
    infos = [i for i in butler.collections.query_info("*") if any(fnmatch.fnmatchcase(i.name, p) for p in patterns)]
    for info in infos:
        if info.type is CollectionType.CHAINED:
            butler.collections.x_remove(info.name)
    runs = [i.name for i in infos if i.type is CollectionType.RUN]
    if runs:
        butler.removeRuns(runs, unstore=True)
    if infos:
        log(f"removed {len(infos)} collections matching {', '.join(patterns)}")
    return len(infos)


def build_quantum(butler: Butler, pipeline_uri: str, overrides: list[str], label: str, inputs: list[str], where: str):
    """The quantum graph of one pipeline label, built once: (task node, its one quantum)."""

    from lsst.pipe.base.all_dimensions_quantum_graph_builder import AllDimensionsQuantumGraphBuilder

    pipeline = load_pipeline(pipeline_uri, overrides)
    graph = pipeline.to_graph(registry=butler.registry)
    builder = AllDimensionsQuantumGraphBuilder(
        graph, butler, where=where, input_collections=inputs, output_run=f"{inputs[0]}/scan-never-written"
    )
    quanta = [node.quantum for node in builder.build(attach_datastore_records=False) if node.taskDef.label == label]
    if len(quanta) != 1:
        raise LookupError(f"{len(quanta)} quanta of {label} for {where!r} in {', '.join(inputs)} (expected one)")
    return graph.tasks[label], quanta[0]


def run_product(butler: Butler, dataset_type: str, run: str, data_id: dict) -> Any | None:
    """The one dataset of a type and data ID in a run (e.g. the detectorMapLines beside a detectorMap), or None."""
    from lsst.daf.butler import MissingDatasetTypeError

    try:
        refs = query_refs(butler, dataset_type, run, data_id)
    except MissingDatasetTypeError:
        return None
    return butler.get(refs[0]) if refs else None


def task_log(butler: Butler, label: str, run: str, data_id: dict) -> list:
    """The records of a task's `<label>_log` (ButlerLogRecords) for a data ID in a run; none if absent."""
    records = run_product(butler, f"{label}_log", run, data_id)
    return list(records) if records is not None else []


def incumbent(butler: Butler, collection: str, dataset_type: str, data_id: dict, timespan: Timespan) -> Any | None:
    """The certification a build of this camera and range would replace (same range), or None."""
    for c in certified(butler, collection, dataset_type, data_id):
        if same_span(c, timespan):
            return c["ref"]
    return None
