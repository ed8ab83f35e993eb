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

# pipe_base's exit codes for a failure retries cannot fix (lsst.pipe.base RepeatableQuantumError.EXIT_CODE,
# InvalidQuantumError.EXIT_CODE: test_verdicts checks them against the pinned package)
NOT_RETRYABLE = {20: "a repeatable algorithmic failure (pipe_base RepeatableQuantumError)",
                 21: "a configuration or logic error (pipe_base InvalidQuantumError)"}  # fmt: skip


def ends_retries(state: dict) -> bool:
    """A job state no retry can change: held by the quality gate, or failed with a status retries cannot
    fix (a retry of the same build would end at once on it: pfscalib.job.run.standing_verdict)."""
    return state.get("status") == "held" or (state.get("status") == "failed" and state.get("exit") in NOT_RETRYABLE)


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


def _accept(record: dict) -> str:
    from pfscalib.plan.limits import accept_entry

    return record.get("accept") or accept_entry(record["epoch"], record["step"], record["unit"], record["datasetId"])


def held_summary(root: str) -> str:
    """One line: what was held and why ("" if nothing is); then, per held product, the exact `accept:`
    entry that certifies it (and no rebuild of it)."""
    held = held_records(root)
    if not held:
        return ""
    items = [f"{h['epoch']}/{h['step']}/{h['unit']} ({'; '.join(h['failing'])})" for h in held]
    pastes = [f"  to accept {h['epoch']}/{h['step']}/{h['unit']} as it is, add to accept: {_accept(h)}" for h in held]
    return "\n".join([f"held {len(held)}: " + ", ".join(items), *pastes, f"  every hold: {paths.HOLDS}"])


HOLD_COLUMNS = ["epoch", "step", "camera", "datasetId", "verdict", "rule", "metric", "value", "limit", "what_to_do"]


def write_holds(root: str, out: str = paths.HOLDS) -> int:
    """results/qa/holds.tsv: one row per failing rule of every held product (its metric, value and limit) and
    what to do: the accept entry to paste, or the rebuild. Returns how many products are held."""
    held = held_records(root)
    lines = ["\t".join(HOLD_COLUMNS)]
    for h in held:
        rebuild = f"or fix the cause and rebuild: snakemake -f {paths.sentinel(h['step'], h['epoch'], h['unit'])}"
        todo = f"accept: {_accept(h)} {rebuild}"
        for rule in (r for r in h.get("rules", []) if r.get("level") == "red"):
            value = rule.get("value")
            row = [h["epoch"], h["step"], h["unit"], h.get("datasetId", ""), "held", rule["rule"], rule["metric"],
                   "" if value is None else f"{value:.6g}", rule.get("limit", ""), todo]  # fmt: skip
            lines.append("\t".join(str(c).replace("\t", " ") for c in row))
    if held or Path(out).exists():
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text("\n".join(lines) + "\n")
    return len(held)
