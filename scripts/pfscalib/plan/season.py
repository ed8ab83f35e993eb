"""The season predicted before it runs (issue #33): every job's duration from the real-site figures
(pfscalib.plan.realsite: seconds per quantum of each task label, times the quanta the job's pipeline makes,
counted as the disk model counts its `<label>_metadata` datasets), times the twin's scale (1 at a site), plus
a per-job start-up; then the jobs scheduled as Snakemake does (the steps with the most chain ahead first, a
job after the products it reads) on nodes x cores under the disk budget (`disk_mb` of the running jobs).

Yields the makespan, the core-hours, the peak of the datastore's growth (what finished jobs left plus what
running jobs hold), the peak of concurrent jobs, and the critical path: the longest chain of jobs by
duration, whatever the cluster, so that makespan >= max(critical path, core-seconds / cores).
"""

from __future__ import annotations

import dataclasses
import heapq
import math

from pfscalib.plan import paths
from pfscalib.plan.disk import MB, JobDisk, human, twin_scale
from pfscalib.plan.realsite import duration
from pfscalib.plan.steps import STEP_NAMES, priority

# Per job, besides its quanta, measured on the project machine (2 cores, shared, 2026-12-07) with the twin on
# the test SLURM (tests/test_season.py prints both figures):
# - start-up: the job script restarts Python and Snakemake, the job imports the middleware, pipetask builds
#   its quantum graph, the job certifies and cleans: a job's SLURM wall minus its quanta's sleep, 19 s;
# - dispatch: from a job's end to the start of the job waiting on it (Snakemake's status check, every 2 s
#   in the test, then its submission and SLURM's scheduling), 15 s (11-23 s).
#   A job already submitted starts as soon as SLURM has the cores (no dispatch): it delays only a job
#   whose inputs have just been made.
STARTUP_S = 19.0
DISPATCH_S = 15.0
METADATA = "_metadata"


@dataclasses.dataclass(frozen=True)
class Cluster:
    nodes: int = 1
    cores: int = 2  # per node
    budget_mb: int | None = None
    startup_s: float = STARTUP_S
    dispatch_s: float = DISPATCH_S

    @property
    def total_cores(self) -> int:
        return self.nodes * self.cores


@dataclasses.dataclass(frozen=True)
class TimedJob:
    disk: JobDisk
    threads: int
    seconds: float  # wall on its cores: start-up + the quanta, `threads` at a time
    needs: tuple[str, ...]  # sentinels of the jobs it reads

    @property
    def sentinel(self) -> str:
        return paths.sentinel(self.disk.step, self.disk.epoch, self.disk.unit)

    @property
    def core_seconds(self) -> float:
        return self.threads * self.seconds


def quanta(job: JobDisk) -> dict[str, int]:
    """Quanta per task label of the job: each quantum writes one `<label>_metadata`."""
    return {t.removesuffix(METADATA): n for t, (n, _) in job.datasets.items() if t.endswith(METADATA)}


def timed_jobs(wf, scale: float, startup_s: float, cores: int) -> list[TimedJob]:
    """Every job of the configuration with its predicted wall time on `threads` (capped at a node's cores)."""
    out = []
    for job in wf.disk.jobs():
        threads = min(wf.job_threads(job.step, job.epoch, job.unit), cores)
        work = sum(math.ceil(n / threads) * duration(label).seconds for label, n in quanta(job).items())
        out.append(TimedJob(job, threads, startup_s + work * scale, tuple(wf.needs(job.step, job.epoch, job.unit))))
    return out


@dataclasses.dataclass(frozen=True)
class Season:
    cluster: Cluster
    scale: float
    jobs: int
    makespan: float  # seconds
    core_seconds: float
    critical_path: list[TimedJob]  # the longest chain, first job first
    critical_seconds: float  # its length, each job's dispatch included
    peak_bytes: float  # the datastore's growth at its highest
    peak_jobs: int  # most jobs running at once
    peak_held_mb: int  # most disk_mb held by running jobs at once (what the budget bounds)
    last: TimedJob | None  # the job that ends the schedule
    stuck: list[str]  # jobs never started (larger than the budget, or a node)

    @property
    def bound(self) -> float:
        """No schedule is shorter: max(critical path, core-seconds / cores)."""
        return max(self.critical_seconds, self.core_seconds / self.cluster.total_cores)


def critical_path(jobs: list[TimedJob], dispatch_s: float) -> tuple[list[TimedJob], float]:
    """The longest chain of jobs, each after the products it reads (plus the dispatch), and its length."""
    by_sentinel = {j.sentinel: j for j in jobs}
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for job in sorted(jobs, key=lambda j: STEP_NAMES.index(j.disk.step)):  # a job reads earlier steps only
        needs = [n for n in job.needs if n in finish]
        first = max(needs, key=lambda n: finish[n], default=None)
        finish[job.sentinel] = (finish[first] if first else 0.0) + dispatch_s + job.seconds
        before[job.sentinel] = first
    if not finish:
        return [], 0.0
    chain, at = [], max(finish, key=finish.get)
    length = finish[at]
    while at is not None:
        chain.append(by_sentinel[at])
        at = before[at]
    return chain[::-1], length


def schedule(jobs: list[TimedJob], cluster: Cluster) -> tuple[float, float, int, int, TimedJob | None, list[str]]:
    """List scheduling as Snakemake and SLURM do it: a job is submitted `dispatch_s` after the last job it
    reads ends (or after a running job's end frees the disk budget it waited for), in priority order, and
    starts as soon as a node has its cores. Returns the makespan, the peak of the datastore's growth, the
    most concurrent jobs, the most disk_mb they held at once, the last job and the jobs never started."""
    budget = cluster.budget_mb if cluster.budget_mb is not None else math.inf
    remaining = sorted(jobs, key=lambda j: (-priority(j.disk.step), j.disk.epoch, j.disk.unit))
    free = [cluster.cores] * cluster.nodes
    running: list[tuple[float, int, TimedJob, int]] = []  # (end, tie, job, node)
    done_at: dict[str, float] = {}
    waits: dict[str, float] = {}  # a job held back by the budget: submitted again after a job's end
    now = stays = held_bytes = peak = 0.0
    held_mb = peak_jobs = peak_held = tie = 0
    last = None

    def ready(job: TimedJob) -> float | None:
        if not set(job.needs) <= done_at.keys():
            return None
        after = max((done_at[n] for n in job.needs), default=0.0) + cluster.dispatch_s
        return max(after, waits.get(job.sentinel, 0.0))

    while True:
        for job in list(remaining):
            at = ready(job)
            if at is None or at > now:
                continue
            if held_mb + job.disk.disk_mb > budget:
                waits[job.sentinel] = math.inf
                continue
            node = next((i for i, f in enumerate(free) if f >= job.threads), None)
            if node is None:
                continue
            free[node] -= job.threads
            held_mb += job.disk.disk_mb
            held_bytes += job.disk.written
            tie += 1
            heapq.heappush(running, (now + job.seconds, tie, job, node))
            remaining.remove(job)
        peak = max(peak, stays + held_bytes)
        peak_jobs = max(peak_jobs, len(running))
        peak_held = max(peak_held, held_mb)
        upcoming = [at for j in remaining if (at := ready(j)) is not None and now < at < math.inf]
        if running:
            upcoming.append(running[0][0])
        if not upcoming:
            break
        now = min(upcoming)
        while running and running[0][0] <= now:
            _, _, job, node = heapq.heappop(running)
            free[node] += job.threads
            held_mb -= job.disk.disk_mb
            held_bytes -= job.disk.written
            stays += job.disk.stays
            done_at[job.sentinel] = now
            last = job
            for sentinel, at in waits.items():  # the freed budget: Snakemake submits them at its next check
                if at == math.inf:
                    waits[sentinel] = now + cluster.dispatch_s
    return now, peak, peak_jobs, peak_held, last, [j.disk.name for j in remaining]


def predict(wf, cluster: Cluster, scale: float | None = None) -> Season:
    """The season of the workflow's configuration on the cluster; scale: the twin's (config demo.twin.scale)
    unless given, 1 (the real-site figures) when the config has no twin."""
    if scale is None:
        scale = twin_scale(wf.config) or 1.0
    jobs = timed_jobs(wf, scale, cluster.startup_s, cluster.cores)
    makespan, peak, peak_jobs, peak_held, last, stuck = schedule(jobs, cluster)
    chain, length = critical_path(jobs, cluster.dispatch_s)
    return Season(
        cluster, scale, len(jobs), makespan, sum(j.core_seconds for j in jobs), chain, length, peak,
        peak_jobs, peak_held, last, stuck,
    )  # fmt: skip


def hms(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def format_season(s: Season) -> str:
    c = s.cluster
    budget = f"disk_mb={c.budget_mb}" if c.budget_mb is not None else "no disk budget"
    figures = "real-site figures" if s.scale == 1 else f"real-site figures x {s.scale:g} (the timing twin)"
    lines = [
        f"season: {s.jobs} jobs on {c.nodes} node(s) x {c.cores} cores, {budget}; each job {figures} "
        f"+ {c.startup_s:g} s start-up, {c.dispatch_s:g} s dispatch after its inputs",
        f"predicted makespan: {hms(s.makespan)} ({s.makespan:.0f} s); "
        f"bound max(critical path {hms(s.critical_seconds)}, "
        f"core-seconds / cores {hms(s.core_seconds / c.total_cores)}) = {hms(s.bound)}",
        f"core-hours: {s.core_seconds / 3600:.2f} ({s.core_seconds:.0f} core-seconds)",
        f"peak disk of the run (intermediates held + what finished jobs left): {human(s.peak_bytes)} "
        f"({s.peak_bytes / MB:.0f} MB)",
        f"peak concurrent jobs: {s.peak_jobs}; running jobs hold at most {s.peak_held_mb} MB (disk_mb) at once",
    ]
    if s.critical_path:
        chain = " -> ".join(f"{j.disk.step} {j.disk.unit} {hms(j.seconds)}" for j in s.critical_path)
        longest = max(s.critical_path, key=lambda j: j.seconds)
        lines.append(f"critical path ({s.critical_path[-1].disk.epoch}): {chain}")
        lines.append(f"  its longest step: {longest.disk.step} of {longest.disk.unit} ({hms(longest.seconds)})")
    if s.last is not None:
        lines.append(f"last job to end in the schedule: {s.last.disk.name}")
    if s.stuck:
        lines.append(f"never started (larger than the budget or a node): {', '.join(s.stuck[:5])}")
    return "\n".join(lines)
