"""The jobs before the steps, each one registry operation: the visit check of an epoch, the definition of a
profiles_run, the registration of the pipelines' dataset types (with the workflow's own collections)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from pfscalib.plan.contract import OwnCollections
from pfscalib.plan.records import write_json

log = logging.getLogger(__name__)


def own_problems(butler, own: OwnCollections) -> list[str]:
    """The workflow's own collections (--rerun, --calib-chain, --calib-collection, --collection) are
    absent or of their type, and none named in the config is a typo (butler.own_collection_problems)."""
    from lsst.daf.butler import CollectionType

    from pfscalib.job.butler import own_collection_problems

    if not (own.calib_chain and own.rerun):
        return []
    wanted = {own.calib_chain: CollectionType.CHAINED}
    wanted |= {c: CollectionType.CALIBRATION for c in own.calib_collection + own.collection}
    return own_collection_problems(butler, own.rerun, wanted, [own.calib_chain, *own.collection])


def check_visits(
    repo: str,
    instrument: str,
    epoch: str,
    selection: dict,
    prerequisites: Sequence[str],
    site_calibrations: dict,
    own: OwnCollections,
    inputs_digest: str,
    output: str,
) -> int:
    """`pfscalib check-visits`: the epoch's selections against the registry, before any job."""
    from pfscalib.job.butler import open_butler
    from pfscalib.job.checks import implied_counts, instrument_problems, problems

    if not Path(repo).exists() and "://" not in repo:
        log.error("check-visits: datastore %s does not exist", repo)
        return 1
    butler = open_butler(repo)
    # in this order: a wrong instrument or a typo'd collection would make every visit look missing
    found, lacking = instrument_problems(butler, instrument) or own_problems(butler, own), {}
    if not found:
        found, lacking = problems(butler, instrument, epoch, selection, list(prerequisites), site_calibrations)
    if found:
        more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
        log.error("check-visits: %s%s", found[0], more)
        return 1
    for camera, lines in sorted(lacking.items()):
        log.warning("check-visits: %s: %s", camera, "; ".join(lines))
    implied = implied_counts(butler, instrument, selection)
    write_json(
        output, {"epoch": epoch, "checked": "ok", "inputs": inputs_digest, "implied": implied, "lacking": lacking}
    )
    return 0


def define_profiles(
    repo: str, instrument: str, name: str, fallback: str | None, groups: list, output: str, command: list[str]
) -> int:
    """`pfscalib define-profiles`: define the planned profiles_run, or reuse it when it holds exactly these
    groups and roles; when another definition has the name (profiles_run names are shared: the observatory's
    run18_brn), the same with the fallback (the rerun's user's name). The record says which name the jobs
    use."""
    from pfscalib.job.butler import open_butler, profiles_run_definition
    from pfscalib.plan.visits import parse_visit_list

    wanted = {
        n: {"bright": sorted(parse_visit_list(bright)), "dark": sorted(parse_visit_list(dark)) if dark else []}
        for n, (bright, dark) in enumerate(groups)
    }
    butler = open_butler(repo)
    names = [name] + ([fallback] if fallback and fallback != name else [])
    for chosen in names:
        have = profiles_run_definition(butler, instrument, chosen)
        if have == wanted:
            log.info("profiles_run %s already defined with these groups and roles: reusing it", chosen)
            break
        if have is None:
            rc = subprocess.call([chosen if arg == name else arg for arg in command])  # its positional name
            if rc:
                return rc
            break
        log.info("profiles_run %s is defined with other groups or roles: not this build's", chosen)
    else:
        taken = f"profiles_runs {' and '.join(names)} are each" if len(names) > 1 else f"profiles_run {name} is"
        log.error("define-profiles: %s defined with other groups or roles (not this build's)", taken)
        return 1
    write_json(output, {"profiles_run": chosen, "planned": name, "groups": groups, "command": command})
    return 0


def register_dataset_types(
    repo: str, pipelines: Sequence[str], overrides: Sequence[str], own: OwnCollections, output: str
) -> int:
    """`pfscalib register-dataset-types`: every dataset type of the pipelines, and the workflow's own
    collections, once before parallel jobs: a type registered while another process queries a CALIBRATION
    collection trips daf_butler's cache (seen as "Dataset type should be checked to be calibration by
    calling code")."""
    from pfscalib.job.butler import ensure_own_collections, open_butler, register_pipeline_dataset_types

    butler = open_butler(repo, writeable=True)
    found = own_problems(butler, own)  # before any write: a typo must not create a collection
    if found:
        log.error("register-dataset-types: %s", found[0])
        return 1
    register_pipeline_dataset_types(butler, list(pipelines), list(overrides))
    if own.calib_chain:
        ensure_own_collections(butler, own.calib_chain, list(own.calib_collection), list(own.collection))
    write_json(output, {"pipelines": list(pipelines)})
    return 0
