"""`pfscalib select-visits`: a visit-selection table from a registry query, for one epoch of the config.

The epoch selects by its validity range (a visit belongs to the epoch its exposure starts in); consecutive
visits of the same kind, target and lamps on the same night make one row in compact PFS list syntax
(`100..104`, `108..114:2`). Fibre-profile frames (quartz with the design of a frame some profiles_run of the
registry holds: pfscalib.job.checks.is_fiber_profile_frame) are left out, as every step but fiberProfiles
needs quartz with every fibre lit (fiberNorms: `--where "... dither = 0"`); `--fiber-profiles` selects only them.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, get_args

from pfscalib.plan.config import ConfigError, Settings
from pfscalib.plan.steps import VisitKind
from pfscalib.plan.visits import compact_visit_list

KINDS: tuple[str, ...] = get_args(VisitKind)


@dataclasses.dataclass(frozen=True)
class Request:
    epoch: str
    where: str = ""
    kind: str | None = None
    cameras: tuple[str, ...] = ()
    target_name: str | None = None
    observation_type: str | None = None
    fiber_profiles: bool = False  # only the fibre-profile frames (else: none of them)


def check_request(settings: Settings, request: Request) -> None:
    """Arguments the config can judge, before the registry is opened: one line in words."""
    source = settings.source
    if request.epoch not in settings.epochs:
        raise ConfigError("--epoch", f"{request.epoch!r} is not an epoch of {source} ({', '.join(settings.epochs)})")
    if request.kind is not None and request.kind not in KINDS:
        raise ConfigError("--kind", f"{request.kind!r} is not a visit kind ({', '.join(KINDS)})")
    unknown = [c for c in request.cameras if c not in settings.cameras]
    if unknown:
        known = ", ".join(settings.cameras)
        raise ConfigError("--cameras", f"camera(s) {', '.join(unknown)} not in {source} ({known})")


def describe(record: Any) -> tuple[str, str, str, str]:
    """What groups visits into one row: kind, target name, lamps, night (UTC date of the exposure)."""
    from pfscalib.job.checks import visit_kind

    return (visit_kind(record), record.target_name or "", record.lamps or "", record.timespan.begin.utc.isot[:10])


def table(epoch: str, records: list[Any], cameras: tuple[str, ...] = ()) -> str:
    """The table text: one row per run of consecutive records with the same description."""
    lines = ["epoch\tvisits\tcameras\tcomment" if cameras else "epoch\tvisits\tcomment"]
    for (kind, target, lamps, night), group in itertools.groupby(records, key=describe):
        visits = [r.id for r in group]
        comment = f"{len(visits)} {kind}, target {target}{', lamps ' + lamps if lamps else ''}, {night}"
        columns = [epoch, compact_visit_list(visits), *([",".join(cameras)] if cameras else []), comment]
        lines.append("\t".join(columns))
    return "\n".join(lines) + "\n"


def settings(config_path: str) -> Settings:
    """The config as the Snakefile reads it; its tables are not needed (this command writes them)."""
    from pfscalib.plan.preflight import load

    return load([config_path], tables=False)


def select(settings: Settings, repo: str, request: Request) -> str:
    """The visits of the request that start within the epoch's range, as a table."""
    from pfscalib.job import butler as butlerops
    from pfscalib.job.checks import is_fiber_profile_frame, visit_kind

    check_request(settings, request)
    span = settings.epochs[request.epoch]
    try:
        butler = butlerops.open_butler(repo)
    except FileNotFoundError:
        raise ConfigError("--repo", f"no Butler repository at {repo}") from None
    records = butlerops.select_visits(
        butler,
        settings.instrument_name,
        request.where,
        request.target_name,
        request.observation_type,
        span["begin"],
        span.get("end"),
    )
    if request.kind is not None:
        records = [r for r in records if visit_kind(r) == request.kind]
    designs = butlerops.profile_designs(butler, settings.instrument_name) if records else set()
    records = [r for r in records if is_fiber_profile_frame(r, designs) == request.fiber_profiles]
    if request.cameras and records:
        # only visits with a raw of every requested camera in the site's input collections
        have = butlerops.raw_cameras(
            butler, settings.instrument_name, [r.id for r in records], settings.collections["inputs"]
        )
        records = [r for r in records if all((r.id, c) in have for c in request.cameras)]
    return table(request.epoch, records, request.cameras)
