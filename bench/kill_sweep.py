"""Seeded sweep of whole-run random-kill trials (tests/killtrials.py). Run from anywhere with the venv active:

    python bench/kill_sweep.py --trials 30 --seed 1        # trials 0..29 of seed 1
    python bench/kill_sweep.py --seed 1 --only 4 17        # replay two trials of that sweep
    python bench/kill_sweep.py --seed 20261126 --only 2 --signal SIGTERM --double no   # a test's trial

One clean run first (its duration scales every kill moment, its state is the reference), then per trial:
run the workflow, kill its whole process group at a seeded moment with a seeded signal (sometimes the first
rerun too), rerun until it succeeds, and compare with the clean run. One line per trial, the differences of
every failed trial, and "K/N recovered". Work directories of failed trials are kept as evidence.
Exit status 1 when any trial did not recover to the clean state.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials 0..N-1 of the seed's sweep")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", type=int, nargs="+", help="replay these trial indices of the sweep instead")
    parser.add_argument("--signal", choices=["SIGKILL", "SIGINT", "SIGTERM"], help="pin every trial's first signal")
    parser.add_argument("--double", choices=["yes", "no"], help="pin the double fault (the moments stay the seed's)")
    parser.add_argument("--reruns", type=int, default=3, help="un-killed reruns before a trial counts as failed")
    parser.add_argument("--root", type=Path, help="where work directories go (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories of recovered trials too")
    args = parser.parse_args(argv)
    # SIGTERM (a batch system, `kill`) unwinds like Ctrl-C, so each trial's cleanup kills its process group
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    sys.path.insert(0, str(PROJECT / "tests"))
    import killtrials  # after the path insert: it lives with the tests

    root = args.root or Path(tempfile.mkdtemp(prefix="kill-sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    reference = killtrials.clean_reference(root / "clean")
    print(f"clean run: {reference.duration:.1f}s ({reference.workdir})", flush=True)
    indices = args.only if args.only else range(args.trials)
    results = []
    for index in indices:
        first = signal.Signals[args.signal] if args.signal else None
        plan = killtrials.plan_trial(args.seed, index, first, None if args.double is None else args.double == "yes")
        result = killtrials.run_trial(plan, root / f"s{plan.seed}-t{plan.index}", reference, reruns=args.reruns)
        results.append(result)
        print(result.summary(), flush=True)
        if not result.ok:
            print("\n".join(f"    {line}" for line in result.report().splitlines()[1:]), flush=True)
        elif not args.keep:
            shutil.rmtree(result.workdir, ignore_errors=True)
    ok = sum(r.ok for r in results)
    print(f"{ok}/{len(results)} recovered (seed {args.seed}, {time.monotonic() - started:.0f}s, work in {root})")
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
