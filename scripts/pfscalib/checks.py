"""Before any job: every step's visits exist, have the step's observation type and have raws for the
job's cameras in the step's input collections."""

from __future__ import annotations

from . import butlerops
from .steps import STEPS


def visit_problems(butler, instrument: str, epoch: str, selection: dict) -> list[str]:
    """selection: {step: {"collections": [...], "units": {unit: [visits]}}}; one line per problem."""
    from lsst.daf.butler import CollectionType

    wanted = sorted({v for s in selection.values() for visits in s["units"].values() for v in visits})
    records = butlerops.visit_records(butler, instrument, wanted)
    # each step's input collections that exist (PFS/bootstrap etc. appear only later in the chain),
    # without CALIBRATION ones (raws live in RUNs or chains of RUNs)
    types = {c: butlerops.collection_type(butler, c) for s in selection.values() for c in s["collections"]}
    raws: dict[tuple[str, ...], set[tuple[int, str]]] = {}
    problems = []
    for step, wanted_step in selection.items():
        collections = tuple(c for c in wanted_step["collections"] if types[c] not in (None, CollectionType.CALIBRATION))
        if collections not in raws:  # steps share input collections: one query per distinct set
            raws[collections] = butlerops.raw_cameras(butler, instrument, wanted, list(collections))
        allowed = STEPS[step].observation_types
        for unit, visits in wanted_step["units"].items():
            for visit in visits:
                record = records.get(visit)
                if record is None:
                    problems.append(f"{step} epoch {epoch}: visit {visit} is not in the registry")
                elif (record.observation_type or "").lower() not in allowed:
                    kind = record.observation_type
                    problems.append(f"{step} epoch {epoch}: visit {visit} is a {kind!r}, not {' or '.join(allowed)}")
                elif not any(v == visit and c.startswith(unit) for v, c in raws[collections]):
                    problems.append(f"{step} epoch {epoch}: visit {visit} has no raw for {unit}")
    return problems
