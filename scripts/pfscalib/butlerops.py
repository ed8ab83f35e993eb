"""Registry operations on a Gen3 Butler (daf_butler API): certify, decertify, replace, copy, clean.

Shared by the workflow's certify step and by the stand-ins for drp_stella's butler scripts.
Dates are TAI ISO-8601, ranges half-open [begin, end); None means unbounded.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from astropy.time import Time
from lsst.daf.butler import Butler, CollectionType, DatasetRef, DatasetType, MissingCollectionError, Timespan


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


# ---------------------------------------------------------------- queries of the workflow's commands
# User values go in as bind parameters, never spliced into the query text.
def visit_records(butler: Butler, instrument: str, visits: list[int]) -> dict[int, Any]:
    """Visit dimension records by visit id."""
    records = butler.query_dimension_records(
        "visit", where="instrument = inst AND visit IN (v)", bind={"inst": instrument, "v": visits}, explain=False
    )
    return {r.id: r for r in records}


def raw_cameras(butler: Butler, instrument: str, visits: list[int], collections: list[str]) -> set[tuple[int, str]]:
    """(visit, camera) of every raw of these visits in the collections."""
    refs = butler.query_datasets(
        "raw", collections=collections, where="instrument = inst AND visit IN (v)",
        bind={"inst": instrument, "v": visits}, find_first=False, explain=False,
    )  # fmt: skip
    return {(ref.dataId["visit"], f"{ref.dataId['arm']}{ref.dataId['spectrograph']}") for ref in refs}


def profiles_run_exists(butler: Butler, instrument: str, name: str) -> bool:
    records = butler.query_dimension_records(
        "profiles_run", where="instrument = i AND profiles_run = n", bind={"i": instrument, "n": name}, explain=False
    )
    return bool(list(records))


def select_visits(
    butler: Butler, instrument: str, where: str = "", target_name: str | None = None,
    observation_type: str | None = None,
) -> list[Any]:  # fmt: skip
    """Visit records matching a user's query (its own text) and bound target name / observation type."""
    clauses, bind = ["instrument = inst"], {"inst": instrument}
    if where:
        clauses.append(f"({where})")
    if target_name is not None:
        clauses.append("visit.target_name = target")
        bind["target"] = target_name
    if observation_type is not None:
        clauses.append("visit.observation_type = obstype")
        bind["obstype"] = observation_type
    return list(
        butler.query_dimension_records(
            "visit", where=" AND ".join(clauses), bind=bind, order_by=["visit"], explain=False
        )
    )


def register_pipeline_dataset_types(butler: Butler, pipelines: list[str], overrides: list[str]) -> None:
    """Register every dataset type of the pipelines, with LABEL:KEY=VALUE connection overrides applied."""
    import os

    from lsst.pipe.base import Pipeline

    for path in pipelines:
        pipeline = Pipeline.from_uri(os.path.expandvars(path))
        for override in overrides:
            label, _, assignment = override.partition(":")
            if label in pipeline.task_labels:
                key, _, value = assignment.partition("=")
                pipeline.addConfigOverride(label, key, value)
        pipeline.to_graph(registry=butler.registry).register_dataset_types(butler)
