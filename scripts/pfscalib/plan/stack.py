"""Snakemake's process asks the LSST/PFS stack (is the instrument a class, does pipetask take the extra
arguments, what does a pipeline produce) through one child process, pfscalib.job.stack: the plan side never
imports the middleware."""

from __future__ import annotations

import json
import subprocess
import sys


class StackError(RuntimeError):
    """The stack could not answer at all (not installed, not set up): one line."""


def ask(requests: list[dict]) -> list[dict]:
    """One answer per request, in order (each `{"problem": None | str, ...}`); no child for no requests."""
    if not requests:
        return []
    proc = subprocess.run(
        [sys.executable, "-m", "pfscalib.job.stack"],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise StackError(f"the LSST/PFS stack cannot be asked ({last})")
    return json.loads(proc.stdout)
