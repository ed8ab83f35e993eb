"""Fault-injection seam for the reliability tests, inert unless PFSCALIB_FAULT is set.

PFSCALIB_FAULT lists points (comma-separated); the job kills itself with SIGKILL once per job and
point, remembered in PFSCALIB_FAULT_DIR, so the rerun gets past it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

FAULT_POINTS = ("before-pipetask", "pipetask", "after-pipetask", "certify", "clean")
# The executor's progress line: some quanta are done, others not ("pipetask" point).
QUANTA_DONE = re.compile(r"Executed [1-9]\d* quanta successfully")

log = logging.getLogger(__name__)


def fault_due(point: str, job: str) -> bool:
    """True once per job and point listed in PFSCALIB_FAULT."""
    if point not in os.environ.get("PFSCALIB_FAULT", "").split(","):
        return False
    marker = Path(os.environ["PFSCALIB_FAULT_DIR"]) / f"{point}--{job.replace('/', '_')}"
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return True


def kill_self() -> None:
    log.warning("injected fault: SIGKILL")
    for handler in logging.getLogger("pfscalib").handlers:
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


class PipetaskTap(logging.Handler):
    """Fault point "pipetask" for the in-process run: the executor's log records."""

    def __init__(self, job: str):
        super().__init__()
        self.job = job

    def emit(self, record: logging.LogRecord) -> None:
        pipetask_progress(record.getMessage(), self.job)
