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


def compact_visit_list(visits: list[int]) -> str:
    """The shortest-looking PFS list of these visits: runs of a constant step become A..B or A..B:S
    (a stride only for three visits or more), the rest single numbers, joined by '^'."""
    ordered = sorted(set(visits))
    items: list[str] = []
    i = 0
    while i < len(ordered):
        j = i + 1
        if j < len(ordered):
            step = ordered[j] - ordered[i]
            while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == step:
                j += 1
            if step > 1 and j == i + 1:  # two visits far apart: no stride for a pair
                j = i
        else:
            j = i
        if j == i:
            items.append(str(ordered[i]))
        else:
            step = ordered[i + 1] - ordered[i]
            items.append(f"{ordered[i]}..{ordered[j]}" + (f":{step}" if step > 1 else ""))
        i = j + 1
    return "^".join(items)
