"""The workflow's own files under results/, read and written by Snakemake's process and by the jobs alike:
states, sentinels, forced marks and held records (locations: pfscalib.plan.paths)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pfscalib.plan import paths


def write_json(path: str, payload: dict) -> None:
    """Atomic write: a crash never leaves a half-written sentinel or state."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: str) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def mark_forced(outputs: list[str]) -> int:
    """Snakemake's onstart: the jobs the user forced in this run (their outputs) start from scratch; the
    marks of any earlier run go. Returns how many were marked."""
    shutil.rmtree(paths.FORCED_ROOT, ignore_errors=True)
    for output in outputs:
        write_json(paths.forced(output), {"output": output})
    return len(outputs)


def forced(output: str | None) -> bool:
    """Whether this run's user forced the job writing `output` (and it has not started afresh yet)."""
    return output is not None and Path(paths.forced(output)).exists()


def forget_finished(state_root: str, incomplete: Callable[[list[str]], set[str]]) -> int:
    """After a successful workflow run (Snakemake's onsuccess): the certified states of jobs Snakemake has
    recorded as finished (in this run or an earlier one) are no longer needed to recognise an interrupted
    job; those of jobs it still marks incomplete (`incomplete(sentinels)`: started, never recorded, e.g. an
    unrelated job of a killed run) stay for their rerun. Returns how many were removed."""
    certified = {}
    for path in Path(state_root).rglob("*.json"):
        state = read_json(str(path)) or {}
        if state.get("status") == "certified":
            certified[path] = state
    unfinished = incomplete([s["sentinelPath"] for s in certified.values()])
    removed = 0
    for path, state in certified.items():
        sentinel = read_json(state["sentinelPath"]) or {}
        if state["sentinelPath"] not in unfinished and sentinel.get("datasetId") == state["sentinel"]["datasetId"]:
            path.unlink(missing_ok=True)
            removed += 1
    for directory in sorted(Path(state_root).rglob("*"), reverse=True):  # deepest first
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return removed


def held_records(root: str) -> list[dict[str, Any]]:
    """The records of held products (paths.held), oldest first."""
    records = []
    for path in sorted(Path(root).rglob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return records


def held_summary(root: str) -> str:
    """One line: what was held and why ("" if nothing is)."""
    held = held_records(root)
    items = [f"{h['epoch']}/{h['step']}/{h['unit']} ({'; '.join(h['failing'])})" for h in held]
    return f"held {len(held)}: " + ", ".join(items) if held else ""
