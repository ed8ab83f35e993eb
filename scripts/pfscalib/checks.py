"""Before any job: the site's input collections and prerequisites exist, and every step's visits exist,
are what the step takes (kind, bootstrap pair, dither), lie inside their epoch's validity range, and have
raws for the job's cameras. One line per problem, naming the table, row, visit and reason."""

from __future__ import annotations

from typing import Any

from . import butlerops
from .steps import KIND_WORDS, STEPS, UNLIT_KINDS
from .visits import parse_visit_list


def visit_kind(record: Any) -> str:
    """bias, dark, flat (quartz) or arc, as the real pipeline tells them: bias and dark by observation type;
    otherwise by lamps as BootstrapTask does (quartz iff lamps == 'Quartz'); else by observation type, arcs
    being `comparison` at Subaru and `arc` in simulator data."""
    observation_type = (record.observation_type or "").lower()
    if observation_type in UNLIT_KINDS:
        return observation_type
    lamps = getattr(record, "lamps", None) or ""
    if lamps:
        return "flat" if lamps == "Quartz" else "arc"
    return {"comparison": "arc", "arc": "arc"}.get(observation_type, observation_type)


def described(record: Any) -> str:
    return f"observation_type {record.observation_type!r}, lamps {getattr(record, 'lamps', None)!r}"


def instrument_problems(butler, instrument: str) -> list[str]:
    """The instrument is registered: otherwise every visit and collection would look missing."""
    registered = butlerops.registered_instruments(butler)
    if instrument in registered:
        return []
    return [
        f"instrument {instrument!r} (config instrument_name) is not registered in the repository "
        f"(registered: {', '.join(registered) or 'none'})"
    ]


def expanded(selection: dict) -> dict:
    """The selection with each unit's [visit list, row] pairs expanded to [visit, row]."""
    return {
        step: {
            **chosen,
            "units": {
                unit: [[v, row] for spec, row in pairs for v in parse_visit_list(spec)]
                for unit, pairs in chosen["units"].items()
            },
        }
        for step, chosen in selection.items()
    }


def problems(butler, instrument: str, epoch: str, selection: dict, prerequisites: list[str]) -> list[str]:
    """selection: {step: {"table", "collections", "validity": [begin, end|None],
    "units": {unit: [[visit list, row], ...]}}}."""
    from lsst.daf.butler import CollectionType

    selection = expanded(selection)
    out: list[str] = []
    wanted = sorted({v for s in selection.values() for pairs in s["units"].values() for v, _ in pairs})
    records = butlerops.visit_records(butler, instrument, wanted)
    types = {c: butlerops.collection_type(butler, c) for s in selection.values() for c in s["collections"]}
    for collection, kind in types.items():
        if kind is None:
            users = [step for step, s in selection.items() if collection in s["collections"]]
            out.append(
                f"input collection {collection!r} does not exist (read by {', '.join(users)}; config collections)"
            )
    if out:
        return out  # every visit would look missing: say only what is missing
    raws: dict[tuple[str, ...], set[tuple[int, str]]] = {}
    for step, chosen in selection.items():
        s, table = STEPS[step], chosen["table"]
        validity = butlerops.make_timespan(*chosen["validity"])
        collections = tuple(c for c in chosen["collections"] if types[c] is not CollectionType.CALIBRATION)
        if collections not in raws:  # steps share input collections: one query per distinct set
            raws[collections] = butlerops.raw_cameras(butler, instrument, wanted, list(collections))
        allowed = " or ".join(KIND_WORDS[k] for k in s.visit_kinds)
        for unit, pairs in chosen["units"].items():
            kinds = []
            for visit, row in pairs:
                where = f"{table}: row {row}: visit {visit} ({step}, epoch {epoch}, {unit})"
                record = records.get(visit)
                if record is None:
                    out.append(f"{where}: not in the registry")
                    continue
                kind = visit_kind(record)
                kinds.append(kind)
                if kind not in s.visit_kinds:
                    out.append(f"{where}: is {KIND_WORDS.get(kind, kind)} ({described(record)}), not {allowed}")
                elif s.dither_zero and record.dither != 0:
                    out.append(f"{where}: has dither {record.dither}; {step} takes undithered (dither 0) quartz")
                elif not validity.contains(record.timespan.begin):
                    span = f"[{chosen['validity'][0]}, {chosen['validity'][1] or 'unbounded'})"
                    begin = record.timespan.begin.tai.isot[:19]
                    out.append(f"{where}: taken at {begin} TAI, outside the epoch's validity {span}")
                elif not any(v == visit and c.startswith(unit) for v, c in raws[collections]):
                    out.append(f"{where}: has no raw for {unit} in {', '.join(collections)}")
            if s.exact_kinds and len(kinds) == len(pairs) and sorted(kinds) != sorted(s.exact_kinds):
                need = " and ".join(KIND_WORDS[k] for k in s.exact_kinds)
                got = ", ".join(KIND_WORDS.get(k, k) for k in kinds)
                out.append(f"{table}: epoch {epoch}, {unit}: {step} needs {need}, got {got}")
    out += missing_prerequisites(butler, instrument, epoch, selection, records, prerequisites)
    return out


def missing_prerequisites(
    butler, instrument: str, epoch: str, selection: dict, records: dict, prerequisites: list[str]
) -> list[str]:
    """The site calibrations every camera needs before the first step (camera, defects...), certified in
    the site's inputs at the time of the camera's first visit of the epoch."""
    out = []
    first: dict[str, Any] = {}  # camera -> its earliest visit record
    for chosen in selection.values():
        for unit, pairs in chosen["units"].items():
            for visit, _ in pairs:
                record = records.get(visit)
                if record is not None and len(unit) == 2 and (unit not in first or record.id < first[unit].id):
                    first[unit] = record
    collections = sorted({c for s in selection.values() for c in s["collections"]})
    for dataset_type in prerequisites:
        for camera, record in sorted(first.items()):
            data_id = {"instrument": instrument, "arm": camera[0], "spectrograph": int(camera[1:])}
            if not butlerops.find_calibration(butler, dataset_type, collections, data_id, record.timespan):
                out.append(
                    f"prerequisite {dataset_type} is not certified for camera {camera} at visit {record.id} "
                    f"(epoch {epoch}) in {', '.join(collections)}: the site must certify it before the first build"
                )
    return out


def implied_counts(butler, instrument: str, selection: dict) -> dict[str, dict[str, dict[str, int]]]:
    """{step: {unit: {dimension: distinct values}}} of the dimensions a visit implies (dither,
    pfs_design_id) over each job's visits: how many datasets a type with such a dimension has
    (pfscalib.disk), which the tables do not say."""
    selection = expanded(selection)
    wanted = sorted({v for s in selection.values() for pairs in s["units"].values() for v, _ in pairs})
    records = butlerops.visit_records(butler, instrument, wanted)
    out: dict[str, dict[str, dict[str, int]]] = {}
    for step, chosen in selection.items():
        for unit, pairs in chosen["units"].items():
            mine = [records[v] for v, _ in pairs if v in records]
            names = mine[0].definition.implied.names if mine else ()
            out.setdefault(step, {})[unit] = {name: len({getattr(r, name) for r in mine}) for name in names}
    return out


def missing_site_calibrations(butler, instrument: str, epoch: str, wanted: dict) -> list[str]:
    """The site calibrations an arm's ISR looks up (n: nirDark; pfscalib.steps.ARMS) are certified over the
    epoch's whole range in the site's inputs: the workflow never builds them.
    wanted: {"range": [begin, end|None], "collections": [...], "cameras": {camera: [dataset type, ...]}}."""
    if not wanted:  # no camera of an arm with site calibrations
        return []
    begin, end = wanted["range"]
    out = []
    for camera, dataset_types in sorted(wanted["cameras"].items()):
        data_id = {"instrument": instrument, "arm": camera[0], "spectrograph": int(camera[1:])}
        for dataset_type in dataset_types:
            uncovered = [butlerops.make_timespan(begin, end)]
            for span in butlerops.calibration_spans(butler, dataset_type, wanted["collections"], data_id):
                uncovered = [part for gap in uncovered for part in gap.difference(span)]
            if uncovered:
                out.append(
                    f"{camera}: the site's {dataset_type} is not certified over [{begin}, {end or 'unbounded'}) "
                    f"(epoch {epoch}) in {', '.join(wanted['collections'])}; the {camera[0]} ISR needs it and the "
                    "workflow does not build it"
                )
    return out
