"""Fault-injection seam for the reliability tests, inert unless PFSCALIB_FAULT is set.

PFSCALIB_FAULT lists points (comma-separated); the job kills itself with SIGKILL once per job and
point, remembered in PFSCALIB_FAULT_DIR, so the rerun gets past it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

FAULT_POINTS = (
    "before-pipetask", "sqlite-commit", "collections", "pipetask", "after-pipetask", "certify", "clean",
    "after-sentinel",
)  # fmt: skip
PROMOTE_FAULT_POINTS = ("promote-certify", "promote-chain")
# The executor's progress line: some quanta are done, others not ("pipetask" point).
QUANTA_DONE = re.compile(r"Executed [1-9]\d* quanta successfully")

log = logging.getLogger(__name__)


def fault_due(point: str, job: str) -> bool:
    """True once per job and point listed in PFSCALIB_FAULT: `point` for every job, `point@text` only for
    jobs whose state path contains text (e.g. `sqlite-commit@/detectorMap/`)."""
    listed = os.environ.get("PFSCALIB_FAULT", "").split(",")
    if point not in listed and not any(e.startswith(f"{point}@") and e.split("@", 1)[1] in job for e in listed):
        return False
    marker = Path(os.environ["PFSCALIB_FAULT_DIR"]) / f"{point}--{job.replace('/', '_')}"
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return True


def kill_self() -> None:
    log.warning("injected fault: SIGKILL")
    for handler in log.handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def fault_hook(point: str, job: str) -> Callable[..., None]:
    def hook(*_args: object) -> None:
        if fault_due(point, job):
            kill_self()

    return hook


def pipetask_progress(line: str, job: str, before: Callable[[], object] | None = None) -> None:
    """Fault point "pipetask": called with each line pipetask logs; before() stops a pipetask child."""
    if QUANTA_DONE.search(line) and fault_due("pipetask", job):
        if before is not None:
            before()
        kill_self()


def arm_registry_faults(job: str) -> None:
    """Fault points inside the registry, for whatever this process writes next (ctrl_mpexec's output
    set-up, the certification): "sqlite-commit" kills inside an SQLite commit, leaving a hot journal;
    "collections" kills between ctrl_mpexec's collection commits (a CHAINED or RUN collection
    registered, the chain not yet defined)."""
    points = [e.split("@", 1)[0] for e in os.environ.get("PFSCALIB_FAULT", "").split(",")]
    if "sqlite-commit" in points:
        import sqlalchemy

        def on_commit(connection: sqlalchemy.engine.Connection) -> None:
            raw = connection.connection.dbapi_connection
            database = raw.execute("PRAGMA database_list").fetchall()[0][2]
            if Path(f"{database}-journal").exists() and fault_due("sqlite-commit", job):
                # Spill the transaction to the database file, as a commit in progress does, then die:
                # the journal is then hot (SQLite must roll the file back before anyone reads it).
                raw.execute("PRAGMA cache_size = 2")
                raw.execute("CREATE TABLE pfscalib_fault_spill (x BLOB)")
                for _ in range(64):
                    raw.execute("INSERT INTO pfscalib_fault_spill VALUES (zeroblob(65536))")
                kill_self()

        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "commit", on_commit)
    if "collections" in points:
        from lsst.daf.butler.direct_butler._direct_butler_collections import DirectButlerCollections

        register = DirectButlerCollections.register

        def register_then_die(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
            created = register(self, name, *args, **kwargs)
            if created and fault_due("collections", job):
                kill_self()
            return created

        DirectButlerCollections.register = register_then_die  # type: ignore[method-assign]


REGISTRY_POINTS = ("sqlite-commit", "collections")


def pipetask_argv(argv: list[str], job: str) -> list[str]:
    """The command that runs `pipetask ...` for a job: itself, or, with a registry fault listed, the same
    pipetask command line in `python -m pfscalib.internals.faults`, which arms the registry faults in pipetask's own
    process first (its output set-up is where they strike)."""
    points = [e.split("@", 1)[0] for e in os.environ.get("PFSCALIB_FAULT", "").split(",")]
    if argv[:1] != ["pipetask"] or not any(p in points for p in REGISTRY_POINTS):
        return argv
    return [sys.executable, "-m", "pfscalib.internals.faults", job, *argv[1:]]


def main() -> int:
    """`python -m pfscalib.internals.faults JOB PIPETASK-ARGS...`: `pipetask PIPETASK-ARGS...` with JOB's registry
    faults armed (pipetask_argv)."""
    job, args = sys.argv[1], sys.argv[2:]
    arm_registry_faults(job)
    from lsst.ctrl.mpexec.cli.pipetask import main as pipetask

    sys.argv = ["pipetask", *args]
    return pipetask()


if __name__ == "__main__":
    sys.exit(main())
