"""PFS visit-list syntax, without importing the middleware (Snakemake imports this at every start)."""

from __future__ import annotations

import re

LIST_RE = re.compile(r"^(\d+)(?:\.\.(\d+)(?::(\d+))?)?$")


def parse_visit_list(text: str) -> list[int]:
    """PFS list syntax: 'a..b[:stride]' items joined by '^' (inclusive ranges)."""
    visits: list[int] = []
    for item in str(text).split("^"):
        m = LIST_RE.match(item.strip())
        if not m:
            raise ValueError(f"bad visit list item {item.strip()!r} (expected N, A..B or A..B:STRIDE)")
        start, stop, stride = int(m[1]), int(m[2] or m[1]), int(m[3] or 1)
        if stop < start or stride < 1:
            raise ValueError(f"bad visit range {item.strip()!r} (end before start or stride < 1)")
        visits += list(range(start, stop + 1, stride))
    return visits
