"""The `pfscalib` command: a job of a local run is handed to the run's job server before anything beyond
the standard library is imported (every job pays its client's start-up, ~60 ms of it pfscalib.cli's
imports); otherwise, or if the server does not take it, the command runs in this process."""

from __future__ import annotations

import sys


def main() -> int:
    from .jobserver import run  # the client's side: standard library only

    served = run(sys.argv[1:])
    if served is not None:
        return served
    from .cli import main as run_here

    return run_here()
