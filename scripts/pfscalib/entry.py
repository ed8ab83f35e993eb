"""The `pfscalib` command: each command, each workflow job included, runs in its own process."""

from __future__ import annotations


def main() -> int:
    from pfscalib.cli import main as run_here

    return run_here()
