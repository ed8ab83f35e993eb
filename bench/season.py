"""A PFS season on the real SLURM with a PostgreSQL registry, predicted and measured (issue #33). As root
(it starts the tests' SLURM and PostgreSQL: tests/slurm/cluster.sh, tests/postgres/server.sh), from the
project root with the venv active:

    python bench/season.py                                   # 4 spectrographs x b,r,n,m, 3 epochs
    python bench/season.py --spectrographs 1 --arms b,r --epochs 1   # the tiniest shape

Runs the timing twin of the demo (config demo.twin.scale, pfscalib.plan.realsite): a demo repository of the
cameras and epochs with its registry in PostgreSQL, a config and visit tables generated here, then
`snakemake --profile profiles/slurm --resources disk_mb=N` with N a fraction of the unconstrained plan's
peak held by running jobs (at least the largest job). Before the run, `pfscalib plan`'s prediction for the
node (its CPUs) and the budget; during it a thread samples the datastore's size every 0.5 s; after it,
from SLURM's records and the workflow's: the jobs, the submissions, the makespan against the bound
max(critical path, core-seconds / cores), the peak of concurrent jobs, registry errors in the logs, the disk
peak against the budget, each next to its prediction. Prints a markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))  # the tests' shared helpers: datastore sampler, SLURM records
MB = 1_000_000
NIGHT = datetime.datetime(2025, 3, 10, 8)
# run1's visits (pfscalib.demo.simulate.epoch_visits, first visit 100): brn mode 100..127, m mode 128..147;
# epoch k (from 0) starts at visit 100 (k + 1)
BRN, M = "b,r,n", "m"
TABLES = {
    "bias": [(100, 104, "", None)],
    "dark": [(105, 107, "", None)],
    "flat": [(108, 113, BRN, None), (128, 133, M, None)],
    "bootstrap": [(108, 114, BRN, "^"), (128, 134, M, "^")],
    "detectorMap": [(108, 109, BRN, "^114..115"), (128, 129, M, "^134..135")],
    "fiberNorms": [(108, 109, BRN, None), (128, 129, M, None)],
}
REGISTRY_ERRORS = re.compile(
    r"OperationalError|IntegrityError|SerializationFailure|could not serialize|deadlock detected|"
    r"ConflictingDefinitionError|MissingDatabaseTableError|psycopg2\.errors|too many clients",
    re.I,
)


def visits(first: int, last: int, shift: int, tail: str | None) -> str:
    if tail == "^":  # one quartz ^ one arc
        return f"{first + shift}^{last + shift}"
    text = f"{first + shift}..{last + shift}"
    if tail:
        a, b = tail[1:].split("..")
        text += f"^{int(a) + shift}..{int(b) + shift}"
    return text


def season_config(work: Path, repo: Path, cameras: list[str], epochs: list[str], scale: float) -> Path:
    """The demo config for these cameras and epochs, pointed at the PostgreSQL-backed repository, with the
    visit tables of each epoch (test_cameras' layout, shifted by 100 visits per epoch)."""
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    modes = {BRN} | ({M} if any(c[0] == "m" for c in cameras) else set())
    present = {c[0] for c in cameras}

    def arms(column: str) -> str:  # the table's cameras column names only arms of the config's cameras
        return ",".join(a for a in column.split(",") if a in present) if column else ""

    config.update(
        cameras=cameras,
        datastore=str(repo),
        pipelines_dir=str(PROJECT / "scripts/pfscalib/demo/pipelines"),
        limits=str(PROJECT / config["limits"]),
        spectralOffset=dict.fromkeys(cameras, 0),
        demo={"enabled": False, "twin": {"scale": scale}},
        executables={"defineFiberProfilesInputs": f"{repo}/bin/defineFiberProfilesInputs.py"},
    )
    begin = [NIGHT.replace(day=1) + datetime.timedelta(days=31 * k) for k in range(len(epochs) + 1)]
    config["epochs"] = {
        e: {"begin": begin[k].replace(day=1).isoformat(), "end": begin[k + 1].replace(day=1).isoformat()}
        for k, e in enumerate(epochs)
    }
    (work / "visits").mkdir(parents=True, exist_ok=True)
    for step, rows in TABLES.items():
        text = "epoch\tvisits\tcameras\n"
        for k, e in enumerate(epochs):
            chosen = [(a, b, c, t) for a, b, c, t in rows if c == "" or c in modes]
            text += "".join(f"{e}\t{visits(a, b, 100 * k, t)}\t{arms(c)}\n" for a, b, c, t in chosen)
        (work / f"visits/{step}.tsv").write_text(text)
        config["visits"][step] = str(work / f"visits/{step}.tsv")
    text = "epoch\tvisits\tcameras\tgroup\trole\n"
    for k, e in enumerate(epochs):
        for first, cams in ((116, BRN), (136, M)):
            if cams not in modes:
                continue
            for g in range(4):
                v = first + 100 * k + 3 * g
                text += f"{e}\t{v}..{v + 1}\t{arms(cams)}\t{g}\tbright\n{e}\t{v + 2}\t{arms(cams)}\t{g}\tdark\n"
    (work / "visits/fiberProfiles.tsv").write_text(text)
    config["visits"]["fiberProfiles"] = str(work / "visits/fiberProfiles.tsv")
    (work / "config").mkdir(exist_ok=True)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config))
    return work / "config/config.yaml"


@contextlib.contextmanager
def service(script: str, *args: str):
    """tests/<script> start DIR [ARGS] (the PostgreSQL server): yields its last output line; stops it after."""
    directory = Path(tempfile.mkdtemp(prefix="pfscalib-season-"))
    directory.chmod(0o755)
    path = PROJECT / "tests" / script
    started = subprocess.run(["bash", str(path), "start", str(directory), *args], capture_output=True, text=True)
    if started.returncode:
        sys.exit(f"{script} start failed:\n{started.stderr[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1], directory
    finally:
        subprocess.run(["bash", str(path), "stop", str(directory)], capture_output=True)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_cpus(env: dict) -> int:
    out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, env=env).stdout.split()
    return int(out[0])


def slurm_time(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def peak_concurrent(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spectrographs", type=int, default=4)
    ap.add_argument("--arms", default="b,r,n,m")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=0.005, help="the twin's factor on real durations and sizes")
    ap.add_argument(
        "--budget-fraction",
        type=float,
        default=0.7,
        help="disk_mb: this fraction of the unconstrained plan's peak held by running jobs (at least the largest job)",
    )
    ap.add_argument("--workdir", default=None, help="default: a new temporary directory (kept)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/season.py starts SLURM and PostgreSQL (tests/slurm/cluster.sh, tests/postgres/server.sh): root")
    from pfscalib.demo.make_repo import make_repo
    from pfscalib.plan.season import Cluster, format_season, predict
    from pfscalib.plan.workflow import Workflow

    from helpers import DatastoreSampler, datastore_bytes, held_by_running, slurm_cluster, slurm_jobcomp

    cameras = [f"{arm}{s}" for s in range(1, args.spectrographs + 1) for arm in args.arms.split(",")]
    epochs = [f"run{k + 1}" for k in range(args.epochs)]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="pfscalib-season-work-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = work / "repo"
    print(f"season: {len(cameras)} cameras ({','.join(cameras)}), {len(epochs)} epochs, twin x {args.scale}, in {work}")

    with (
        service("postgres/server.sh", str(free_port())) as (db, pg_dir),
        slurm_cluster() as (env, state),  # the tests' cluster, one at a time on the machine
    ):
        cpus = node_cpus(env)
        started = time.time()
        demo_epochs = {e: (NIGHT + datetime.timedelta(days=31 * k)).isoformat() for k, e in enumerate(epochs)}
        make_repo(repo, tuple(cameras), demo_epochs, registry_db=db, spectral_offsets=dict.fromkeys(cameras, 0.0))
        print(f"demo repository on {db}: {time.time() - started:.0f} s")
        season_config(work, repo, cameras, epochs, args.scale)

        os.chdir(work)  # the workflow's paths (pipeline cache, checks) are relative to its directory
        wf = Workflow(yaml.safe_load(Path("config/config.yaml").read_text()))
        free = predict(wf, Cluster(1, cpus, None))
        largest = max(j.disk_mb for j in wf.disk.jobs())
        budget = max(largest, int(free.peak_held_mb * args.budget_fraction))
        plan = predict(wf, Cluster(1, cpus, budget))
        print(format_season(plan))

        baseline = datastore_bytes(repo)
        sampler = DatastoreSampler(repo)
        sampler.start()
        cmd = ["snakemake", "-s", str(PROJECT / "Snakefile"), "--profile", str(PROJECT / "profiles/slurm")]
        cmd += ["--resources", f"disk_mb={budget}"]
        started = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.time() - started
        sampler.stop.set()
        sampler.join()
        (work / "snakemake.log").write_text(proc.stdout + proc.stderr)
        comp = slurm_jobcomp(state)
        server_log = (pg_dir / "server.log").read_text(errors="replace")  # the server's own ERROR lines
    os.chdir(PROJECT)

    done = [f for f in comp.values() if f.get("JobState") == "COMPLETED"]
    intervals = [(slurm_time(f["StartTime"]), slurm_time(f["EndTime"])) for f in comp.values()]  # failed too
    makespan = max(e for _, e in intervals) - min(s for s, _ in intervals) if intervals else float("nan")
    sentinels = list((work / "results/certified").rglob("*.json"))
    logs = [p for p in [*work.glob("logs/**/*.log"), *work.glob(".snakemake/slurm_logs/**/*.log")] if p.is_file()]
    errors = sum(len(REGISTRY_ERRORS.findall(p.read_text(errors="replace"))) for p in logs)
    server_errors = [ln for ln in server_log.splitlines() if " ERROR: " in ln]
    peak = max(size for _, size in sampler.samples) - baseline
    held = held_by_running(work, sampler.samples, baseline)

    def pct(measured: float, predicted: float) -> str:
        return f"{100 * (predicted - measured) / measured:+.0f} %" if measured else "n/a"

    print(f"\nsnakemake exit {proc.returncode}, wall {wall:.0f} s; log {work / 'snakemake.log'}\n")
    shape = f"{len(cameras)} cameras x {len(epochs)} epochs, twin x {args.scale}, 1 node x {cpus} CPUs"
    bound = f"{plan.bound:.0f} s ({plan.critical_seconds:.0f} s; {plan.core_seconds / cpus:.0f} s)"
    rows = [
        (f"{shape}, disk_mb={budget}", "predicted", "measured", "predicted vs measured"),
        ("jobs (certified sentinels)", plan.jobs, len(sentinels), ""),
        ("SLURM submissions (completed / all)", plan.jobs, f"{len(done)} / {len(comp)}", ""),
        ("makespan (SLURM: first start to last end, every job)", f"{plan.makespan:.0f} s", f"{makespan:.0f} s",
         pct(makespan, plan.makespan)),
        ("bound max(critical path, core-s / cores)", bound, f"makespan / bound {makespan / plan.bound:.2f}", ""),
        ("peak concurrent jobs", plan.peak_jobs, peak_concurrent(intervals), ""),
        ("registry errors in the jobs' logs / the server's log", 0, f"{errors} / {len(server_errors)}",
         "; ".join(ln.split(" ERROR: ", 1)[1] for ln in server_errors[:3])),
        ("peak of the datastore's growth", f"{plan.peak_bytes / MB:.1f} MB", f"{peak / MB:.1f} MB",
         pct(peak, plan.peak_bytes)),
        (f"held by running jobs (budget {budget} MB; a failed job's writes count)",
         f"{plan.peak_held_mb} MB", f"{held / MB:.1f} MB", ""),
        ("unconstrained plan", f"makespan {free.makespan:.0f} s, held {free.peak_held_mb} MB", "", ""),
    ]  # fmt: skip
    for k, row in enumerate(rows):
        print("| " + " | ".join(str(c) for c in row) + " |")
        if k == 0:
            print("|---|---|---|---|")
    return 0 if proc.returncode == 0 and errors == 0 and not server_errors and held <= budget * MB else 1


if __name__ == "__main__":
    sys.exit(main())
