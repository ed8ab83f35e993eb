"""Before any job: the site's input collections and prerequisites exist, and every step's visits exist,
are what the step takes (kind, bootstrap pair, dither), lie inside their epoch's validity range, and have
raws for the job's cameras. One line per problem, naming the table, row, visit and reason."""

from __future__ import annotations

import functools
from typing import Any

from pfscalib.job import butler as butlerops
from pfscalib.plan.steps import KIND_WORDS, QUARTZ, STEPS, UNLIT_KINDS, irp_variant
from pfscalib.plan.visits import parse_visit_list


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


def is_fiber_profile_frame(record: Any, profile_designs: set[int]) -> bool:
    """A fibre-profile quartz (the dots frames of fitFiberProfiles): a quartz whose exposure record has the
    pfs_design_id of a fibre-profile frame (butler.profile_designs). Not a quartz with every fibre lit, as
    fiberNorms (and flat, bootstrap, detectorMap) take."""
    return visit_kind(record) == QUARTZ and record.pfs_design_id in profile_designs


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


def problems(
    butler, instrument: str, epoch: str, selection: dict, prerequisites: list[str], site: dict | None = None
) -> tuple[list[str], dict[str, list[str]]]:
    """The problems, and per camera the optional site calibrations it lacks (site_calibration_problems).
    selection: {step: {"table", "collections", "validity": [begin, end|None],
    "units": {unit: [[visit list, row], ...]}}}; site: site_calibration_problems' `wanted`."""
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
        return out, {}  # every visit would look missing: say only what is missing
    cameras = sorted({u for s in selection.values() for u in s["units"] if len(u) > 1})
    raws: dict[tuple[str, ...], set[tuple[int, str]]] = {}
    configs: dict[tuple[str, ...], set[int]] = {}
    for step, chosen in selection.items():
        s, table = STEPS[step], chosen["table"]
        validity = butlerops.make_timespan(*chosen["validity"])
        collections = tuple(c for c in chosen["collections"] if types[c] is not CollectionType.CALIBRATION)
        if collections not in raws:  # steps share input collections: one query per distinct set
            raws[collections] = butlerops.raw_cameras(butler, instrument, wanted, list(collections))
            configs[collections] = butlerops.visits_with_pfs_config(butler, instrument, wanted, list(collections))
        allowed = " or ".join(KIND_WORDS[k] for k in s.visit_kinds)
        for unit, pairs in chosen["units"].items():
            kinds = []
            # a per-arm job (b) reads each visit of every camera of its arm: each needs its raw
            readers = [unit] if len(unit) > 1 else [c for c in cameras if c[0] == unit] or [unit]
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
                elif lacking := [
                    c for c in readers if not any(v == visit and r.startswith(c) for v, r in raws[collections])
                ]:
                    others = sorted(r for v, r in raws[collections] if v == visit)
                    out.append(
                        f"{where}: has no raw for {', '.join(lacking)} in {', '.join(collections)} (the registry has "
                        f"it for {', '.join(others) or 'no camera'}); pipetask would leave it out of the job silently"
                    )
                elif s.reads_pfs_config and visit not in configs[collections]:
                    out.append(f"{where}: has no pfsConfig in {', '.join(collections)}; {step} reads it")
            if s.exact_kinds and len(kinds) == len(pairs) and sorted(kinds) != sorted(s.exact_kinds):
                need = " and ".join(KIND_WORDS[k] for k in s.exact_kinds)
                got = ", ".join(KIND_WORDS.get(k, k) for k in kinds)
                out.append(f"{table}: epoch {epoch}, {unit}: {step} needs {need}, got {got}")
    certified = Certified(butler, instrument)
    out += missing_prerequisites(certified, epoch, selection, records, prerequisites)
    site_problems, lacking = site_calibration_problems(certified, epoch, selection, records, site or {})
    return out + site_problems, lacking


class Certified:
    """The site's certifications, read once per dataset type and input collections (a find per visit would be
    thousands of registry queries at a 16-camera site), matched in memory as the ISR's lookup matches them:
    by the type's required dimensions (defects: the detector) at the visit's time."""

    def __init__(self, butler, instrument: str):
        self.butler, self.instrument = butler, instrument
        self.read: dict[tuple[str, tuple[str, ...]], list[tuple[dict, Any]] | str] = {}

    @functools.cached_property
    def detectors(self) -> dict[str, int]:
        return butlerops.detector_ids(self.butler, self.instrument)

    def data_id(self, camera: str) -> dict:
        """The data ID the ISR looks a camera's calibrations up with: arm, spectrograph and the detector they
        imply (obs_pfs fe94433 isrTask.py:588-616); a certification matches on the keys its type requires."""
        data_id = {"instrument": self.instrument, "arm": camera[0], "spectrograph": int(camera[1:])}
        if camera in self.detectors:
            data_id["detector"] = self.detectors[camera]
        return data_id

    def problem(self, dataset_type: str, collections: list[str], data_id: dict, record: Any) -> str | None:
        """None if found for the camera at the visit's time; else why, in words (a lookup that raises is a
        reason too, never a traceback)."""
        key = (dataset_type, tuple(collections))
        if key not in self.read:
            try:
                self.read[key] = butlerops.calibration_validities(self.butler, dataset_type, list(collections))
            except Exception as exc:
                self.read[key] = f"cannot be looked up ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        found = self.read[key]
        if isinstance(found, str):
            return found
        for required, span in found:
            if all(data_id.get(k) == v for k, v in required.items()) and span.overlaps(record.timespan):
                return None
        return "not certified"


def camera_visits(selection: dict, records: dict) -> dict[str, list[tuple[str, Any]]]:
    """camera -> [(step, visit record)] of every visit its ISR reads, a per-arm job's visits counted for each
    of the arm's cameras named in the selection."""
    cameras = {u for s in selection.values() for u in s["units"] if len(u) > 1}
    out: dict[str, list[tuple[str, Any]]] = {}
    for step, chosen in selection.items():
        for unit, pairs in chosen["units"].items():
            for camera in [unit] if len(unit) > 1 else sorted(c for c in cameras if c.startswith(unit)):
                out.setdefault(camera, []).extend((step, records[v]) for v, _ in pairs if v in records)
    return out


def missing_prerequisites(
    certified: Certified, epoch: str, selection: dict, records: dict, prerequisites: list[str]
) -> list[str]:
    """The site calibrations every camera needs before the first step (camera, defects...), found in the
    site's inputs as the ISR finds them (detector from arm and spectrograph) at the time of the camera's
    first and last visit of the epoch."""
    out = []
    visits = camera_visits(selection, records)
    collections = sorted({c for s in selection.values() for c in s["collections"]})
    for camera, seen in sorted(visits.items()):
        if camera not in certified.detectors:
            out.append(f"camera {camera} has no detector record for instrument {certified.instrument} in the registry")
            continue
        data_id = certified.data_id(camera)
        ends = sorted({r.id: r for _, r in seen}.values(), key=lambda r: r.timespan.begin)
        for dataset_type in prerequisites:
            for record in dict.fromkeys([ends[0], ends[-1]]):
                why = certified.problem(dataset_type, collections, data_id, record)
                if why:
                    out.append(
                        f"prerequisite {dataset_type} is {why} for camera {camera} at visit {record.id} "
                        f"(epoch {epoch}) in {', '.join(collections)}: the site must certify it before the first build"
                    )
                    break
    return out


def implied_counts(butler, instrument: str, selection: dict) -> dict[str, dict[str, dict[str, int]]]:
    """{step: {unit: {dimension: distinct values}}} of the dimensions a visit implies (dither,
    pfs_design_id) over each job's visits: how many datasets a type with such a dimension has
    (pfscalib.plan.disk), which the tables do not say."""
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


def site_calibration_problems(
    certified: Certified, epoch: str, selection: dict, records: dict, wanted: dict
) -> tuple[list[str], dict[str, list[str]]]:
    """The site calibrations an arm's ISR looks up (n: nirDark, or nirDark_irp<N> for a ramp of IRP ratio N;
    pfscalib.plan.steps.ARMS) are found at every visit of the camera, as the ISR finds them: the workflow never
    builds them, and a real nirDark is valid from its first dark visit on (obs_pfs fe94433
    combineNirDark.py:91-96, 179-182), not over an epoch. Returns the problems (one line per camera and
    type) and, per camera, the optional ones absent (the ISR only warns: what the products will lack).
    wanted: {"cameras": {camera: [dataset type, ...]}, "optional": {camera: [[dataset type, effect], ...]}}."""
    if not wanted:  # no camera of an arm with site calibrations
        return [], {}
    visits = camera_visits(selection, records)
    out: list[str] = []
    lacking: dict[str, list[str]] = {}
    for camera, dataset_types in sorted(wanted.get("cameras", {}).items()):
        data_id = certified.data_id(camera)
        for base in dataset_types:
            missing: dict[str, list[tuple[str, Any, str]]] = {}
            for step, record in visits.get(camera, []):
                dataset_type = irp_variant(base, getattr(record, "irp_ratio", None))
                why = certified.problem(dataset_type, selection[step]["collections"], data_id, record)
                if why:
                    missing.setdefault(dataset_type, []).append((step, record, why))
            for dataset_type, misses in missing.items():
                step, record, why = min(misses, key=lambda m: m[1].timespan.begin)
                more = f" (and {len(misses) - 1} more of its visits)" if len(misses) > 1 else ""
                begin = record.timespan.begin.tai.isot[:19]
                out.append(
                    f"{camera}: the site's {dataset_type} is {why} at visit {record.id} ({step}, epoch {epoch}, "
                    f"taken {begin} TAI, IRP ratio {getattr(record, 'irp_ratio', None) or 1}){more} in "
                    f"{', '.join(selection[step]['collections'])}; the {camera[0]} ISR needs it and the workflow "
                    "does not build it"
                )
    for camera, optional in sorted(wanted.get("optional", {}).items()):
        data_id = certified.data_id(camera)
        seen = visits.get(camera, [])
        for dataset_type, effect in optional:
            absent = [
                record for step, record in seen
                if certified.problem(dataset_type, selection[step]["collections"], data_id, record)
            ]  # fmt: skip
            if absent:
                lacking.setdefault(camera, []).append(
                    f"{dataset_type} not certified at {len(absent)} of {len(seen)} visits: {effect}"
                )
    return out, lacking
