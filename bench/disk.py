"""Disk budget benchmark (issue #21). Run from the project root with the venv active:

    python bench/disk.py [--cores 2] [--jobs-in-budget 2] [--repeats 1]

On fresh copies of one demo repository (4 cameras, 2 epochs, all 7 steps, the demo config's measured
sizes), runs the whole workflow (U) unconstrained and (B) with `--resources disk_mb=N`, N about
--jobs-in-budget times the largest job's predicted footprint, alternating U B U B. While each runs, a
thread samples the datastore's size every 0.2 s (every file under the repository except the SQLite
registry and the demo's scripts) and the peak of its growth over the raws is compared with the budget
and with `pfscalib plan`'s predicted peak; each job's prediction is compared with what its sentinel
records it wrote (file sizes in the datastore before cleaning). Prints a markdown summary for
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))  # the tests' datastore sampler (as bench/season.py)

from helpers import DatastoreSampler, datastore_bytes, held_by_running  # noqa: E402


def workdir(root: Path) -> Path:
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config["pipelines_dir"] = str(PROJECT / "scripts/pfscalib/demo/pipelines")
    config["visits"] = {k: str(PROJECT / v) for k, v in config["visits"].items()}
    (root / "config").mkdir(parents=True)
    (root / "config/config.yaml").write_text(yaml.safe_dump(config))
    return root


def snakemake(cwd: Path, *args: str) -> float:
    start = time.monotonic()
    proc = subprocess.run(
        ["snakemake", "-s", str(PROJECT / "Snakefile"), *args], cwd=cwd, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(f"snakemake {' '.join(args)} failed in {cwd}:\n{proc.stderr[-3000:]}")
    return time.monotonic() - start


def one_run(template: Path, base: Path, name: str, cores: int, budget: int | None) -> dict:
    wd = workdir(base / name)
    shutil.copytree(template, wd / "results/demo/repo")
    repo = wd / "results/demo/repo"
    baseline = datastore_bytes(repo)
    sampler = DatastoreSampler(repo, interval=0.2)
    sampler.start()
    args = ["--cores", str(cores)] + (["--resources", f"disk_mb={budget}"] if budget else [])
    wall = snakemake(wd, *args)
    sampler.stop.set()
    sampler.join()
    peak = max(size for _, size in sampler.samples) - baseline
    held = held_by_running(wd, sampler.samples, baseline)
    return {"name": name, "wall": wall, "peak": peak, "held": held, "workdir": str(wd)}


def predictions(wd: Path, cores: int, budget: int | None) -> tuple[dict, float, int]:
    """Per job: (predicted, measured) bytes; the predicted peak; the largest job's disk_mb."""
    sys.path.insert(0, str(PROJECT / "scripts"))
    os.chdir(wd)  # the workflow's paths (checks, pipeline cache) are relative to its directory
    from pfscalib.plan.disk import plan
    from pfscalib.plan.workflow import Workflow

    wf = Workflow(yaml.safe_load((wd / "config/config.yaml").read_text()))
    jobs = {}
    for job in wf.disk.jobs():
        sentinel = json.loads(Path(f"results/certified/{job.epoch}/{job.step}/{job.unit}.json").read_text())
        jobs[job.name] = (job.written, sum(b for _, b in sentinel["written"].values()))
    predicted = plan(wf.disk, budget, cores)
    os.chdir(PROJECT)
    return jobs, predicted.peak, predicted.largest.disk_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--jobs-in-budget", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    parser.add_argument("--modes", default="UB", help="U unconstrained, B with the budget (default: both)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pfscalib-disk-"))
    first = workdir(base / "template")
    snakemake(first, "--cores", "1", "results/demo/repo/demo.json")
    template = first / "results/demo/repo"
    # the predicted largest job, from the demo config (its measured sizes), and the budget
    sys.path.insert(0, str(PROJECT / "scripts"))
    os.chdir(first)
    from pfscalib.plan.workflow import Workflow

    largest = max(Workflow(yaml.safe_load(Path("config/config.yaml").read_text())).disk.jobs(), key=lambda j: j.written)
    os.chdir(PROJECT)
    budget = int(largest.disk_mb * args.jobs_in_budget)
    runs = []
    for i in range(args.repeats):
        for mode in args.modes:
            runs.append(one_run(template, base, f"{mode}{i}", args.cores, budget if mode == "B" else None))
    for run in runs:
        print(
            f"{run['name']}: {run['wall']:.1f} s, datastore peak growth {run['peak'] / 1e6:.2f} MB, "
            f"held by running jobs at most {run['held'] / 1e6:.2f} MB"
        )
    print()
    print(f"largest job: {largest.name}, predicted {largest.disk_mb} MB; budget disk_mb={budget}")
    for mode, limit in (("U", None), ("B", budget)):
        mine = [r for r in runs if r["name"][0] == mode]
        if not mine:
            continue
        jobs, peak, _ = predictions(Path(mine[0]["workdir"]), args.cores, limit)
        errors = {name: predicted / measured - 1 for name, (predicted, measured) in jobs.items()}
        worst = max(errors, key=lambda n: abs(errors[n]))
        measured, held = max(r["peak"] for r in mine), max(r["held"] for r in mine)
        print(
            f"{mode}: wall {statistics.median(r['wall'] for r in mine):.1f} s (median of {len(mine)}); "
            f"datastore peak growth {measured / 1e6:.2f} MB, predicted {peak / 1e6:.2f} MB "
            f"({peak / measured - 1:+.1%}); held by running jobs at most {held / 1e6:.2f} MB"
            + (f" (budget {limit} MB: {'under' if held <= limit * 1e6 else 'OVER'})" if limit else "")
        )
        print(
            f"   per job prediction vs measured ({len(jobs)} jobs): worst {worst} {errors[worst]:+.1%}, "
            f"median |error| {statistics.median(abs(e) for e in errors.values()):.1%}"
        )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
