"""PFS visit-list syntax, without importing the middleware (Snakemake imports this at every start)."""

from __future__ import annotations

import re

LIST_RE = re.compile(r"^(\d+)(?:\.\.(\d+)(?::(\d+))?)?$")
SYNTAX = "visits must be N, A..B or A..B:S joined by ^ (e.g. 100..104^110)"
# Bounds checked before a range is expanded: a typo such as 300..1000000 must be refused in words, not
# eat memory or end as "Argument list too long" in a job. Visit ids are 32-bit in the registry; a
# calibration row of more than MAX_VISITS visits is a typo (the guide's largest selection is ~100).
MAX_VISIT = 2**31 - 1
MAX_VISITS = 10_000


def parse_visit_list(text: str, limit: int = MAX_VISITS) -> list[int]:
    """PFS list syntax: 'a..b[:stride]' items joined by '^' (inclusive ranges), at most `limit` visits."""
    bounds = []
    for item in str(text).split("^"):
        m = LIST_RE.match(item.strip())
        if not m:
            raise ValueError(f"{item.strip()!r} is not a visit list: {SYNTAX}")
        start, stop, stride = int(m[1]), int(m[2] or m[1]), int(m[3] or 1)
        if stop < start or stride < 1:
            raise ValueError(f"bad visit range {item.strip()!r} (end before start or stride < 1)")
        if stop > MAX_VISIT:
            raise ValueError(f"visit {stop} in {item.strip()!r} is beyond the largest visit number {MAX_VISIT}")
        bounds.append((start, stop, stride))
    count = sum((stop - start) // stride + 1 for start, stop, stride in bounds)
    if count > limit:
        raise ValueError(f"{str(text).strip()!r} selects {count:,} visits, more than {limit:,} in one row (a typo?)")
    return [v for start, stop, stride in bounds for v in range(start, stop + 1, stride)]


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
