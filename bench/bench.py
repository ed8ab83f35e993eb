"""Benchmarks (issue #7). Run from the project root with the venv active:

    python bench/bench.py compare --repeats 2 --cores 2   # workflow vs the seed's commands at -j 1 and 2, A B A B
    python bench/bench.py overhead                       # Snakemake's own time per job (serial run)
    python bench/bench.py scale                          # dry-run time vs a minimal same-shape Snakefile

compare: on fresh copies of one demo repo (4 cameras, 2 epochs, all 7 steps) runs (A) the guide's command
sequence one after another at every -j a user would try (default 1 and the cores), as a user would by hand,
and (B) the workflow with the same cores; prints medians, B against the best A, and the limit
max(critical path of job wall times, sum of job CPU / cores), and Snakemake's overhead per job.
scale: `snakemake -n` of the 16-camera site config with 1 and 50 epochs against bench/floor.py's Snakefile
(same jobs and edges, static strings: Snakemake's own floor).
"""

from __future__ import annotations

import argparse
import csv
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "bench"))
CAMERAS = ["b1", "r1", "b2", "r2"]
OFFSETS = {"b1": -10, "r1": 6, "b2": 0, "r2": 3}
EPOCHS = {
    "run1": (100, "2025-03-01T00:00:00", "2025-04-01T00:00:00"),
    "run2": (200, "2025-04-01T00:00:00", "2025-05-01T00:00:00"),
}
INSTRUMENT = "pfscalib.demo.instrument.PrimeFocusSpectrograph"


def seed_commands(repo: Path, cores: int) -> str:
    """The guide's sequence for the demo, per epoch (validity ranges differ), all cameras per pipetask."""
    p = PROJECT / "scripts/pfscalib/demo/pipelines"
    run = f"pipetask run --register-dataset-types -j {cores} -b {repo} --instrument {INSTRUMENT} --fail-fast"
    lines = ["set -e"]
    for epoch, (v, begin, end) in EPOCHS.items():
        dates = f"--begin-date {begin} --end-date {end}"
        r = f"u/seed/{epoch}"
        steps = [
            ("bias", "PFS/raw/sps,PFS/calib", f"{v}..{v + 4}", "bias", "biasProc"),
            ("dark", "PFS/raw/all,PFS/calib", f"{v + 5}..{v + 7}", "dark", "darkProc"),
            ("flat", "PFS/raw/all,PFS/calib", f"{v + 8}..{v + 13}", "fiberFlat", "flatProc"),
        ]
        for step, inputs, visits, dataset_type, clean in steps:
            lines += [
                f"{run} -i {inputs} -o {r}/{step} -p {p}/{step}.yaml -d \"instrument='PFS' AND visit IN ({visits})\"",
                f"butler certify-calibrations {repo} {r}/{step} PFS/calib {dataset_type} {dates}",
                f"butlerCleanRun.py {repo} '{r}/{step}/*' {clean}",
            ]
        for cam in CAMERAS:
            lines += [
                f"{run} -i PFS/raw/all,PFS/raw/pfsConfig,PFS/calib -o {r}/bootstrap/{cam} -p {p}/bootstrap.yaml "
                f"-d \"instrument='PFS' AND visit IN ({v + 8}, {v + 14}) "
                f"AND arm='{cam[0]}' AND spectrograph={cam[1]}\" "
                f"-c bootstrap:profiles.profileRadius=2 -c bootstrap:spectralOffset={OFFSETS[cam]}",
                f"butler certify-calibrations {repo} {r}/bootstrap/{cam} PFS/bootstrap detectorMap_bootstrap {dates}",
                f"butlerCleanRun.py {repo} '{r}/bootstrap/{cam}/*' postISRCCD",
            ]
        lines += [
            f"{run} -i PFS/raw/all,PFS/raw/pfsConfig,PFS/bootstrap,PFS/calib -o {r}/detectorMap "
            f"-p {p}/detectorMap.yaml "
            f"-d \"instrument='PFS' AND visit IN ({v + 8}..{v + 9}, {v + 14}..{v + 15})\" "
            "-c measureCentroids:connections.calibDetectorMap=detectorMap_bootstrap "
            "-c fitDetectorMap:fitDetectorMap.order=4 -c fitDetectorMap:fitDetectorMap.soften=0.03",
            f"certifyDetectorMaps.py {repo} {r}/detectorMap PFS/calib --instrument PFS {dates}",
            f"butlerCleanRun.py {repo} '{r}/detectorMap/*' postISRCCD",
            f"defineFiberProfilesInputs.py {repo} PFS {epoch}_seed "
            + " ".join(f"--bright {v + 16 + 3 * g}..{v + 17 + 3 * g} --dark {v + 18 + 3 * g}" for g in range(4)),
            f"{run} -i PFS/raw/all,PFS/fiberProfilesInputs,PFS/raw/pfsConfig,PFS/calib -o {r}/fitFiberProfiles "
            f"-p {p}/fitFiberProfiles.yaml -d \"profiles_run = '{epoch}_seed'\" "
            "-c fitProfiles:profiles.profileRadius=10 -c fitProfiles:profiles.profileSwath=500",
            f"butler certify-calibrations {repo} {r}/fitFiberProfiles PFS/calib fiberProfiles {dates}",
            f"butlerCleanRun.py {repo} '{r}/fitFiberProfiles/*' postISRCCD",
            f"{run} -i PFS/raw/all,PFS/raw/pfsConfig,PFS/calib -o {r}/fiberNorms -p {p}/fiberNorms.yaml "
            f"-d \"instrument='PFS' AND visit IN ({v + 8}..{v + 9})\"",
            f"butler certify-calibrations {repo} {r}/fiberNorms PFS/calib fiberNorms_calib {dates}",
            f"butlerCleanRun.py {repo} '{r}/fiberNorms/*' postISRCCD",
        ]
    return "\n".join(lines) + "\n"


def yardstick() -> float:
    """Seconds for a fixed pure-Python loop: this machine's speed drifts (up to 2x between days), so
    every measurement prints it next to its seconds."""
    start = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i * i
    return time.perf_counter() - start


def workflow_dir(base: Path, repo: Path) -> Path:
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config.update(
        datastore=str(repo),
        demo={"enabled": False},
        executables={"defineFiberProfilesInputs": f"{repo}/bin/defineFiberProfilesInputs.py"},
        pipelines_dir=str(PROJECT / "scripts/pfscalib/demo/pipelines"),
        visits={k: str(PROJECT / v) for k, v in config["visits"].items()},
    )
    if config.get("limits"):  # a path relative to the project, not to the scratch workdir
        config["limits"] = str(PROJECT / config["limits"])
    (base / "config").mkdir(parents=True)
    (base / "config/config.yaml").write_text(yaml.safe_dump(config))
    return base


def measured(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """Wall time, the CPU time of everything the command ran except its own main process (for
    Snakemake: the jobs), and the main process's own CPU time. From getrusage of the reaped process
    tree, so short jobs count in full; Snakemake's benchmark files sample CPU once a second and miss
    the last part of every job."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        main, main_cpu = psutil.Process(proc.pid), 0.0
        while proc.poll() is None:
            try:
                times = main.cpu_times()
                main_cpu = times.user + times.system
            except psutil.Error:
                pass
            time.sleep(0.1)
        wall = time.perf_counter() - start
        if proc.returncode:
            out.seek(0)
            raise SystemExit(f"{cmd[:3]} failed:\n{out.read().decode()[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, total - main_cpu, main_cpu


def read_benchmarks(workdir: Path) -> dict[tuple[str, ...], dict[str, float]]:
    """Every job's benchmark file, keyed by its path under benchmarks/ without .tsv, e.g.
    ("run1", "dark", "b1"), ("run1", "checks", "dark"), ("register_dataset_types",)."""
    out = {}
    for path in (workdir / "benchmarks").rglob("*.tsv"):
        key = path.relative_to(workdir / "benchmarks").with_suffix("").parts
        if key[1:2] == ("fiberProfilesInputs",):  # one per epoch and mode; the demo has one mode (brn)
            key = key[:2]
        row = next(csv.DictReader(path.open(), delimiter="\t"))
        out[key] = {"wall": float(row["s"]), "cpu": float(row["cpu_time"] or 0)}
    return out


CHAIN = ["bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles"]
CHECKED = CHAIN + ["fiberNorms"]


def dependencies(epochs: list[str], cameras: list[str]) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """The workflow's job graph (as rules/*.smk wire it), keyed like read_benchmarks (the demo is
    built beforehand and is not a job here)."""
    deps: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    deps[("register_dataset_types",)] = [(e, "check_visits") for e in epochs]
    for e in epochs:
        checked = [(e, "check_visits"), ("register_dataset_types",)]
        deps[(e, "check_visits")] = []
        deps[(e, "fiberProfilesInputs")] = [(e, "check_visits")]
        for c in cameras:
            previous = None
            for step in CHAIN:
                deps[(e, step, c)] = checked + ([(e, previous, c)] if previous else [])
                previous = step
            deps[(e, "fiberProfiles", c)].append((e, "fiberProfilesInputs"))
        for arm in sorted({c[0] for c in cameras}):
            deps[(e, "fiberNorms", arm)] = checked + [(e, "fiberProfiles", c) for c in cameras if c[0] == arm]
        deps[(e, "qa")] = [k for k in deps if k[0] == e and k[1] in CHECKED and len(k) == 3 and k[2][0] in "brnm"]
    deps[("certifications",)] = [k for k in deps if len(k) == 3 and k[1] in CHECKED and k[2][0] in "brnm"]
    return deps


def limit(jobs: dict, cores: int, cpu: float) -> tuple[float, float, float]:
    """max(critical path of job wall times, total job CPU / cores)."""
    deps = dependencies(list(EPOCHS), CAMERAS)
    missing = set(deps) - set(jobs)
    if missing:
        raise SystemExit(f"no benchmark file for {sorted(missing)[:5]}")
    finish: dict[tuple[str, ...], float] = {}

    def done(key: tuple[str, ...]) -> float:
        if key not in finish:
            finish[key] = max((done(d) for d in deps[key]), default=0.0) + jobs[key]["wall"]
        return finish[key]

    critical = max(done(k) for k in deps)
    return max(critical, cpu / cores), critical, cpu


def run_workflow(
    scratch: Path, template: Path, name: str, cores: int, extra: tuple[str, ...] = ()
) -> tuple[float, float, float, dict]:
    repo = scratch / f"{name}-repo"
    shutil.copytree(template, repo)
    workdir = workflow_dir(scratch / name, repo)
    wall, cpu, own = measured(
        ["snakemake", "-s", str(PROJECT / "Snakefile"), "--cores", str(cores), "--quiet", *extra, "all"], workdir
    )
    return wall, cpu, own, read_benchmarks(workdir)


def compare(
    repeats: int,
    cores: int,
    keep: bool = False,
    workflow_only: bool = False,
    extra: tuple[str, ...] = (),
    seed_jobs: tuple[int, ...] = (),
    sqlite_wal: bool = False,
) -> None:
    """A (the guide's commands by hand) at every -j in seed_jobs, then B (the workflow), repeated: A B A B.
    B is compared with the best A. A -j that loses to the best by more than 1.5x in the first repeat is not
    run again (it cannot become the best; -j 2 costs 10-20 minutes on the demo)."""
    from pfscalib.demo.make_repo import make_repo

    seed_jobs = seed_jobs or tuple(sorted({1, cores}))
    scratch = Path(tempfile.mkdtemp(prefix="pfscalib-bench-"))
    template = scratch / "template"
    make_repo(template, tuple(CAMERAS))
    # the guide's commands as written: the 2025 layout (PFS/raw/all), its scripts from the demo's shims
    legacy = scratch / "legacy-template"
    make_repo(legacy, tuple(CAMERAS), layout="legacy")
    if sqlite_wal:  # an experiment, not the demo's mode: readers stop waiting for writers (A and B alike)
        for repo in (template, legacy):
            with sqlite3.connect(repo / "gen3.sqlite3") as db:
                db.execute("PRAGMA journal_mode=WAL")
    a: dict[int, list[float]] = {j: [] for j in seed_jobs}
    b, runs, speed = [], [], []
    active = list(seed_jobs)
    for i in range(repeats):
        speed.append(yardstick())
        if not workflow_only:
            for j in active:
                repo = scratch / f"a{i}-j{j}"
                shutil.copytree(legacy, repo)
                script = scratch / f"seed{i}-j{j}.sh"
                script.write_text(f'export PATH="{repo}/bin:$PATH"\n' + seed_commands(repo, j))
                a[j].append(measured(["bash", str(script)], scratch)[0])
                shutil.rmtree(repo, ignore_errors=True)
                print(f"repeat {i}: hand-run script -j {j}: {a[j][-1]:.1f} s", flush=True)
            best = min(x[-1] for x in a.values() if x)
            active = [j for j in active if a[j][-1] <= 1.5 * best]
        wall, cpu, own, jobs = run_workflow(scratch, template, f"wf{i}", cores, extra)
        b.append(wall)
        runs.append((wall, jobs, limit(jobs, cores, cpu), own))
        print(f"repeat {i}: workflow {b[-1]:.1f} s", flush=True)
    wall, jobs, (lim, critical, cpu), own = runs[-1]
    job_wall = sum(j["wall"] for j in jobs.values())
    bm = statistics.median(b)
    print(f"\ncores {cores}, repeats {repeats}, yardstick {', '.join(f'{x:.3f}' for x in speed)} s (5M-step loop)")
    medians = {j: statistics.median(x) for j, x in a.items() if x}
    for j, x in a.items():
        if x:
            print(f"hand-run script (A) -j {j}: median {medians[j]:.1f} s   (runs: {', '.join(f'{v:.1f}' for v in x)})")
    print(f"workflow (B)          median {bm:.1f} s   (runs: {', '.join(f'{x:.1f}' for x in b)})")
    if medians:
        best_j = min(medians, key=medians.get)
        print(f"best A: -j {best_j}, {medians[best_j]:.1f} s;   B / A(best -j) = {bm / medians[best_j]:.2f}")
    print(
        f"limit (last run) = max(critical path {critical:.1f} s, job CPU {cpu:.1f} s / {cores}) = {lim:.1f} s; "
        f"B/limit per run: {', '.join(f'{w / limit[0]:.2f}' for w, _, limit, _ in runs)}, "
        f"median {statistics.median(w / limit[0] for w, _, limit, _ in runs):.2f}"
    )
    print(f"job CPU from getrusage {cpu:.1f} s; Snakemake's own process {own:.1f} s")
    print(
        f"jobs {len(jobs)}, sum of job wall {job_wall:.1f} s; "
        f"(cores x wall - job wall) / jobs = {(cores * wall - job_wall) / len(jobs):.2f} s "
        "(Snakemake overhead plus idle cores; `bench.py overhead` measures it alone)"
    )
    if keep:
        print(f"kept {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)


def overhead() -> None:
    """Snakemake's own time per job: the whole workflow with --cores 1, so wall - sum(job wall) is
    exactly what is not a job (start-up, DAG, scheduling, bookkeeping), divided by the job count."""
    from pfscalib.demo.make_repo import make_repo

    scratch = Path(tempfile.mkdtemp(prefix="pfscalib-overhead-"))
    make_repo(scratch / "template", tuple(CAMERAS))
    wall, _, _, jobs = run_workflow(scratch, scratch / "template", "serial", 1)
    job_wall = sum(j["wall"] for j in jobs.values())
    print(
        f"--cores 1: wall {wall:.1f} s, {len(jobs)} jobs, sum of job wall {job_wall:.1f} s, "
        f"Snakemake overhead {(wall - job_wall) / len(jobs):.2f} s per job"
    )
    shutil.rmtree(scratch, ignore_errors=True)


def shift_visits(spec: str, offset: int) -> str:
    import re

    return re.sub(r"(?<![:\d])(\d+)", lambda m: str(int(m[1]) + offset), spec)


def scale_config(work: Path, n_epochs: int) -> dict:
    """The 16-camera site config with n_epochs observing runs, each with its own (shifted) visits."""
    site = yaml.safe_load((PROJECT / "config/pfs.example.yaml").read_text())
    (work / "config").mkdir(parents=True)
    config = dict(site)
    config["epochs"] = {
        f"run{i:02d}": {"begin": f"{2001 + i}-01-01T00:00:00", "end": f"{2002 + i}-01-01T00:00:00"}
        for i in range(n_epochs)
    }
    config["visits"] = {}
    for step in site["visits"]:
        rows = (PROJECT / site["visits"][step]).read_text().splitlines()
        body = [r for r in rows[1:] if r.strip()]
        text = (
            rows[0]
            + "\n"
            + "".join(
                "\t".join([epoch, shift_visits(r.split("\t")[1], 1000000 * i)] + r.split("\t")[2:]) + "\n"
                for i, epoch in enumerate(config["epochs"])
                for r in body
            )
        )
        (work / f"{step}.tsv").write_text(text)
        config["visits"][step] = str(work / f"{step}.tsv")
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    return config


def scale(epochs: list[int], repeats: int = 3) -> None:
    import floor

    scratch = Path(tempfile.mkdtemp(prefix="pfscalib-scale-"))
    for n_epochs in epochs:
        work = scratch / f"e{n_epochs}"
        config = scale_config(work, n_epochs)
        floor_dir = scratch / f"floor{n_epochs}"
        floor_dir.mkdir()
        (floor_dir / "Snakefile").write_text(floor.snakefile(list(config["epochs"]), config["cameras"]))
        # alternate workflow and floor; medians (this machine's speed drifts by +-15 % between runs)
        ours, base = [], []
        for _ in range(repeats):
            ours.append(measured(["snakemake", "-n", "-s", str(PROJECT / "Snakefile"), "--quiet", "all"], work)[0])
            base.append(measured(["snakemake", "-n", "--quiet", "all"], floor_dir)[0])
        ours_m, base_m = statistics.median(ours), statistics.median(base)
        print(
            f"{n_epochs:3d} epochs x 16 cameras: workflow dry run {ours_m:5.1f} s, floor {base_m:5.1f} s, "
            f"ratio {ours_m / base_m:.2f} (pairwise: {', '.join(f'{o / b:.2f}' for o, b in zip(ours, base))})",
            flush=True,
        )
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--repeats", type=int, default=2)
    c.add_argument("--cores", type=int, default=2)
    c.add_argument("--keep", action="store_true", help="keep the scratch repos and workdirs")
    c.add_argument(
        "--workflow-only",
        action="store_true",
        help="skip A (the seed-style script): B against its limit only, in a fraction of the time",
    )
    c.add_argument("--snakemake-args", default="", help="extra arguments for B's snakemake, e.g. '--scheduler greedy'")
    c.add_argument("--sqlite-wal", action="store_true", help="experiment: both registries in SQLite's WAL mode")
    c.add_argument(
        "--seed-jobs", default="", help="comma-separated -j values for the hand-run script (default: 1 and --cores)"
    )
    sub.add_parser("overhead")
    sc = sub.add_parser("scale")
    sc.add_argument("--epochs", default="1,10,50", help="comma-separated epoch counts")
    sc.add_argument("--repeats", type=int, default=3, help="alternating workflow/floor pairs per epoch count")
    args = parser.parse_args()
    if args.cmd == "compare":
        compare(
            args.repeats, args.cores, args.keep, args.workflow_only, tuple(shlex.split(args.snakemake_args)),
            tuple(int(j) for j in args.seed_jobs.split(",") if j), args.sqlite_wal,
        )  # fmt: skip
    elif args.cmd == "overhead":
        overhead()
    else:
        scale([int(n) for n in args.epochs.split(",")], args.repeats)
