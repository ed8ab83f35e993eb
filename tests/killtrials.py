"""Whole-run random-kill trials: kill `snakemake` and every process it started at a random moment, rerun the
same command until it succeeds, and compare the final state with a clean run's.

Independent of the fault-injection seam (pfscalib.internals.faults): nothing inside the workflow knows it is being
killed, so every kill is one an operator can meet (Ctrl-C = SIGINT to the whole process group, a batch
system's SIGTERM, the OOM killer's or a node's SIGKILL), at any point: the demo repository build,
Snakemake's own bookkeeping, inside pipetask, inside a registry commit.

A trial's plan is a pure function of (seed, index): the kill moments are fractions of the clean run's
duration, measured on the machine at hand, so the same seed replays the same plan on a slower machine.
Used by tests/test_random_kill.py and bench/kill_sweep.py. Linux only (reads /proc to find survivors).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CAMERAS = ["b1"]
EPOCHS = ("run1",)
REPO = "results/demo/repo"  # the demo config's datastore, relative to the work directory
SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)
GRACE = 60.0  # SIGINT/SIGTERM: how long the group may take to exit before it is SIGKILLed
RERUNS = 3  # un-killed reruns before a trial counts as not recovered
DOUBLE_FAULT_RATE = 0.3
MIN_WINDOW = 5.0  # seconds: the second kill's window when the first one came near the end
# Files the demo builder (pfscalib.demo.make_repo) and the registry keep in the repo root: not datasets.
REGISTRY_DB = "gen3.sqlite3"
NON_DATASET_FILES = {"butler.yaml", "demo.json", "truth.json", REGISTRY_DB} | {
    f"{REGISTRY_DB}-{suffix}" for suffix in ("journal", "wal", "shm")
}
SQLITE_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # first 8 bytes of a rollback journal's header
TIMESTAMP = re.compile(r"/\d{8}T\d{6}\d*Z(?=/|$)")  # the tail of a job's RUN name (job.py's stamp)


# ---------------------------------------------------------------------------------------------- plans


@dataclasses.dataclass(frozen=True)
class Kill:
    """One signal to the whole process group, `at` a fraction of its window after the start."""

    at: float
    signal: signal.Signals

    def describe(self, delay: float | None = None) -> str:
        when = f"{delay:.1f}s" if delay is not None else f"{self.at:.0%}"
        return f"{self.signal.name}@{when}"


@dataclasses.dataclass(frozen=True)
class TrialPlan:
    seed: int
    index: int
    first: Kill  # kills the run
    second: Kill | None  # double fault: kills the first rerun too

    @property
    def name(self) -> str:
        kills = [self.first] + ([self.second] if self.second else [])
        return f"s{self.seed}-t{self.index}-" + "+".join(k.describe() for k in kills)

    @property
    def replay(self) -> str:
        """The sweep command that runs this trial alone (pinning what the plan drew or pinned)."""
        double = "yes" if self.second else "no"
        return (
            f"python bench/kill_sweep.py --seed {self.seed} --only {self.index} "
            f"--signal {self.first.signal.name} --double {double}"
        )

    def delays(self, duration: float) -> tuple[float, float | None]:
        """Seconds after each start. The first kill lands anywhere in a clean run; the second anywhere in
        what the rerun has left, about the rest of a clean run."""
        first = self.first.at * duration
        if self.second is None:
            return first, None
        return first, self.second.at * max(duration - first, MIN_WINDOW)


def plan_trial(
    seed: int,
    index: int,
    first: signal.Signals | None = None,
    double: bool | None = None,
    second: signal.Signals | None = None,
) -> TrialPlan:
    """Trial `index` of a seeded sweep; `first`/`double`/`second` pin the signals or the double fault (the
    moments stay random). Its own Random per (seed, index): a trial replays alone, whatever the sweep's length."""
    rng = random.Random(f"pfscalib-kill:{seed}:{index}")
    # always draw every value, so pinning one choice never shifts the others
    drawn = (rng.random(), rng.choice(SIGNALS), rng.random() < DOUBLE_FAULT_RATE, rng.random(), rng.choice(SIGNALS))
    at, sig, is_double, at2, sig2 = drawn
    sig = first if first is not None else sig
    is_double = double if double is not None else is_double
    sig2 = second if second is not None else sig2
    return TrialPlan(seed, index, Kill(at, sig), Kill(at2, sig2) if is_double else None)


# ------------------------------------------------------------------------------------------ processes


def snakemake_argv(*args: str) -> list[str]:
    """The operator's command: the project's Snakefile and local profile (cores 2, rerun-incomplete,
    retries 1), from the work directory."""
    return ["snakemake", "-s", str(PROJECT / "Snakefile"), "--profile", str(PROJECT / "profiles/local"), *args]


def child_env() -> dict[str, str]:
    """The venv's tools first on PATH (jobs call pfscalib/pipetask/butler); never the fault seam."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PFSCALIB_FAULT")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # this checkout's pfscalib, also when it is a frozen copy (the venv's editable install names one checkout)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT / "scripts"), env.get("PYTHONPATH")]))
    return env


def default_signals() -> None:
    """In the child, before exec: SIGINT/SIGTERM back to their default action. A harness started in the
    background by a shell has SIGINT ignored, and an ignored signal stays ignored through exec: the
    SIGINT trials would then kill nothing, unlike an operator's Ctrl-C."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def group_members(leader: int) -> list[tuple[int, str]]:
    """Live processes (not zombies) of the leader's process group or session: a child that moved to its
    own group inside the session is still found."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue  # exited while we looked
        state, _ppid, pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if state not in ("Z", "X") and leader in (int(pgrp), int(session)):
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()[:200]))
    return found


def wait_group_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """True once the leader is reaped and no process of its group/session is alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_members(proc.pid):
            return True
        time.sleep(0.2)
    return False


def kill_group(proc: subprocess.Popen) -> list[tuple[int, str]]:
    """SIGKILL whatever is left of the group and session; returns what was still alive."""
    alive = group_members(proc.pid)
    for _ in range(50):
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(proc.pid, signal.SIGKILL)
        for pid, _cmd in group_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is not None and not group_members(proc.pid):
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"processes of group {proc.pid} survive SIGKILL: {group_members(proc.pid)}")
    return alive


@dataclasses.dataclass
class Attempt:
    """One `snakemake` invocation of a trial (or any command run_group ran)."""

    label: str  # "run", "rerun 1", ...
    log: Path
    seconds: float
    returncode: int | None
    pid: int  # leader of the process group and session
    kill: Kill | None = None
    delay: float | None = None
    landed: bool = False  # the kill found the run still going (else it had already exited)
    escalated: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # outlived SIGINT/SIGTERM
    leaked: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # alive after snakemake exited

    @property
    def sigkilled(self) -> bool:
        """Ended by SIGKILL (the kill, or the escalation): Snakemake's lock is left behind."""
        if self.escalated:
            return True
        return self.landed and self.kill is not None and self.kill.signal == signal.SIGKILL

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and not self.landed

    def describe(self) -> str:
        what = f"{self.label}: "
        if self.kill is not None:
            what += f"{self.kill.describe(self.delay)} " + ("landed" if self.landed else "missed (already exited)")
            if self.escalated:
                what += f", escalated to SIGKILL: {_listing(cmd[:80] for _pid, cmd in self.escalated)} still ran"
            what += " (no effect: ran to completion)" if self.landed and self.returncode == 0 else ""
            what += ", "
        return what + f"exit {self.returncode} after {self.seconds:.1f}s"

    def error_lines(self) -> str:
        """Distinct error lines of the output (a job's exception is often far above its end)."""
        text = self.log.read_text(errors="replace").splitlines()
        errors = [ln.strip() for ln in text if re.search(r"Error|Exception|error:|Traceback", ln)]
        return "\n".join(list(dict.fromkeys(errors))[-12:])

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        errors = self.error_lines().splitlines()
        return "\n".join(["  error lines:", *(f"    {ln}" for ln in errors), "  tail:", *(f"    {ln}" for ln in text)])


def run_group(
    argv: list[str],
    cwd: Path,
    log: Path,
    label: str,
    kill: Kill | None = None,
    delay: float | None = None,
    timeout: float = 900,
    grace: float = GRACE,
) -> Attempt:
    """Run argv in its own session; with `kill`, signal its whole process group `delay` seconds after the
    start (SIGINT/SIGTERM: SIGKILL what is left after `grace`). No process of the session survives the call."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,  # its own process group: the signal reaches snakemake and every job
            preexec_fn=default_signals,
        )
    attempt = Attempt(label, log, 0.0, None, proc.pid, kill, delay)
    try:
        if kill is not None and delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):  # unless it exited just now
                    os.killpg(proc.pid, kill.signal)
                    attempt.landed = True
                if attempt.landed and kill.signal != signal.SIGKILL and not wait_group_exit(proc, grace):
                    attempt.escalated = kill_group(proc)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            attempt.escalated = kill_group(proc)
            attempt.label += f" (timed out after {timeout:.0f}s)"
        if not attempt.landed:
            # a finished snakemake must not leave anything running; give exiting children a moment
            wait_group_exit(proc, 2.0)
            attempt.leaked = group_members(proc.pid)
    finally:
        kill_group(proc)  # never leak processes, whatever went wrong above
        attempt.returncode = proc.wait()
        attempt.seconds = time.monotonic() - start
    return attempt


def run_attempt(
    workdir: Path, label: str, *args: str, kill: Kill | None = None, delay: float | None = None, timeout: float = 900
) -> Attempt:
    """The operator's snakemake command in workdir (output in workdir/killtrial/<label>.log)."""
    log = workdir / "killtrial" / f"{label.replace(' ', '-')}.log"
    return run_group(snakemake_argv(*args), workdir, log, label, kill, delay, timeout)


# -------------------------------------------------------------------------------------- repository state


def normalise(name: str) -> str:
    return TIMESTAMP.sub("/<timestamp>", name)


@dataclasses.dataclass
class RepoState:
    """What a run leaves in the Butler repository, without dataset ids and RUN timestamps."""

    # (calib collection, dataset type, data ID, begin, end) -> how many times it is certified
    certifications: collections.Counter
    chains: dict[str, list[str]]  # CHAINED collection under the rerun -> its children, normalised
    own_runs: dict[str, list[str]]  # CHAINED collection -> its RUN children named under it (real names)
    collections: collections.Counter  # every collection name, normalised -> count
    dataset_counts: dict[str, int]  # dataset type -> distinct datasets over all collections
    stray_files: list[str]  # in the datastore, not the URI of any registered dataset
    missing_files: list[str]  # registered datasets without their file


def _data_id(ref) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(ref.dataId.required.items()))


def _isot(t) -> str | None:
    return None if t is None else t.isot[:19]


def repo_state(repo: Path, rerun: str) -> RepoState:
    """Read the repository (read-only: never rolls back a hot journal or repairs anything)."""
    from lsst.daf.butler import Butler, CollectionType

    butler = Butler.from_config(str(repo), writeable=False)
    registry = butler.registry
    dataset_types = sorted(registry.queryDatasetTypes(), key=lambda dt: dt.name)
    certs: collections.Counter = collections.Counter()
    for calib in registry.queryCollections(collectionTypes={CollectionType.CALIBRATION}):
        for dt in dataset_types:
            if not dt.isCalibration():
                continue
            for assoc in registry.queryDatasetAssociations(
                dt, collections=[calib], collectionTypes={CollectionType.CALIBRATION}
            ):
                span = assoc.timespan
                certs[(calib, dt.name, _data_id(assoc.ref), _isot(span.begin), _isot(span.end))] += 1
    chains, own_runs = {}, {}
    for chain in registry.queryCollections(collectionTypes={CollectionType.CHAINED}):
        if chain != rerun and not chain.startswith(f"{rerun}/"):
            continue
        children = list(registry.getCollectionChain(chain))
        chains[chain] = [normalise(c) for c in children]
        own_runs[chain] = [
            c for c in children if c.startswith(f"{chain}/") and registry.getCollectionType(c) is CollectionType.RUN
        ]
    names = collections.Counter(normalise(c) for c in registry.queryCollections())
    counts, uris, missing = {}, set(), []
    for dt in dataset_types:
        refs = {
            r.id: r for r in butler.query_datasets(dt, collections="*", find_first=False, explain=False, limit=None)
        }
        counts[dt.name] = len(refs)
        for ref in refs.values():
            try:
                primary, components = butler.getURIs(ref)
            except FileNotFoundError:
                missing.append(f"{dt.name} {_data_id(ref)} in {ref.run} (no datastore record)")
                continue
            for uri in [primary, *components.values()]:
                if uri is None:
                    continue
                uris.add(os.path.normpath(uri.ospath))
                if not os.path.exists(uri.ospath):
                    missing.append(f"{dt.name} {_data_id(ref)} in {ref.run}: {uri.ospath} does not exist")
    stray = []
    for root, _dirs, files in os.walk(repo):
        for name in files:
            path = os.path.normpath(os.path.join(root, name))
            if Path(root) == repo and name in NON_DATASET_FILES:
                continue
            if path not in uris:
                stray.append(os.path.relpath(path, repo))
    return RepoState(certs, chains, own_runs, names, counts, sorted(stray), sorted(missing))


def _listing(items, limit: int = 8) -> str:
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def compare(clean: RepoState, got: RepoState) -> list[str]:
    """Every way `got` differs from the clean run's state, in words."""
    out = []
    for key in sorted(set(clean.certifications) | set(got.certifications), key=str):
        calib, dataset_type, data_id, begin, end = key
        n, want = got.certifications.get(key, 0), clean.certifications.get(key, 0)
        if n != want:
            out.append(f"certification {dataset_type} {{{data_id}}} [{begin}, {end}) in {calib}: {n}× (clean: {want}×)")
    for chain in sorted(set(clean.chains) | set(got.chains)):
        if chain not in got.chains:
            out.append(f"chain {chain}: missing (clean: {clean.chains[chain]})")
        elif chain not in clean.chains:
            out.append(f"chain {chain}: not in the clean run (children {got.chains[chain]})")
        else:
            if len(got.own_runs[chain]) != len(clean.own_runs[chain]):
                out.append(
                    f"chain {chain}: {len(got.own_runs[chain])} RUN children of its own (clean: "
                    f"{len(clean.own_runs[chain])}): {got.own_runs[chain]}"
                )
            if got.chains[chain] != clean.chains[chain]:
                out.append(f"chain {chain}: children {got.chains[chain]} (clean: {clean.chains[chain]})")
    names = sorted(set(clean.collections) | set(got.collections))
    if differ := [
        f"{n} {got.collections[n]}× (clean {clean.collections[n]}×)"
        for n in names
        if got.collections[n] != clean.collections[n]
    ]:
        out.append(f"collections (timestamps normalised): {'; '.join(differ)}")
    counts = [
        f"{t} {got.dataset_counts.get(t, 'not registered')} (clean {clean.dataset_counts.get(t, 'not registered')})"
        for t in sorted(set(clean.dataset_counts) | set(got.dataset_counts))
        if got.dataset_counts.get(t) != clean.dataset_counts.get(t)
    ]
    if counts:
        out.append(f"dataset counts over all collections differ for {len(counts)} type(s): {'; '.join(counts)}")
    # a file the clean run also has outside every dataset is the builder's (a new one is not in NON_DATASET_FILES)
    if stray := sorted(set(got.stray_files) - set(clean.stray_files)):
        out.append(f"{len(stray)} file(s) in the datastore no dataset owns: {_listing(stray)}")
    if got.missing_files:
        out.append(f"{len(got.missing_files)} registered dataset(s) without a file: {_listing(got.missing_files)}")
    return out


# ------------------------------------------------------------------------------------------------ trials


def make_workdir(root: Path) -> Path:
    """One camera, one epoch; demo: enabled, so the run itself builds the repository (kills hit that too)."""
    if str(PROJECT / "tests") not in sys.path:
        sys.path.insert(0, str(PROJECT / "tests"))
    from helpers import workdir_config

    return workdir_config(root, cameras=CAMERAS, epochs=EPOCHS)


def rerun_of(workdir: Path) -> str:
    import yaml

    return yaml.safe_load((workdir / "config/config.yaml").read_text())["rerun"]


@dataclasses.dataclass
class Reference:
    """A clean run (same config, never killed): its duration and its final state."""

    workdir: Path
    duration: float
    state: RepoState


def clean_reference(root: Path) -> Reference:
    workdir = make_workdir(root)
    attempt = run_attempt(workdir, "clean")
    if not attempt.succeeded:
        raise RuntimeError(f"the clean reference run failed: {attempt.describe()}\n{attempt.tail()}")
    return Reference(workdir, attempt.seconds, repo_state(workdir / REPO, rerun_of(workdir)))


@dataclasses.dataclass
class TrialResult:
    plan: TrialPlan
    workdir: Path
    attempts: list[Attempt]
    differences: list[str]
    seconds: float

    @property
    def rerun_succeeded(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].succeeded

    @property
    def reruns(self) -> int:
        """Un-killed reruns it took (1 when the first one succeeded)."""
        return sum(1 for a in self.attempts[1:] if not a.landed)

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        verdict = "recovered" if self.ok else "FAILED"
        kills = " ".join(a.describe() for a in self.attempts if a.kill is not None)
        return f"{self.plan.name}: {verdict} in {self.seconds:.0f}s, {self.reruns} rerun(s); {kills}"

    def report(self) -> str:
        lines = [self.summary(), f"work directory: {self.workdir}", f"replay: {self.plan.replay}", "attempts:"]
        for a in self.attempts:
            lines.append(f"  {a.describe()}  [{a.log}]")
            if a.landed:  # what Snakemake did with the signal
                lines += [f"      | {ln}" for ln in a.log.read_text(errors="replace").splitlines()[-12:]]
        if self.differences:
            lines += ["differences from the clean run:"] + [f"  - {d}" for d in self.differences]
        return "\n".join(lines)


def scheduled_jobs(dry_run_output: str) -> list[str]:
    """`rule[wildcards]` of every job a dry run lists (each job is one block, up to a blank line)."""
    jobs = []
    for block in re.split(r"^(?:local)?rule ", dry_run_output, flags=re.M)[1:]:
        block = block.split("\n\n")[0]
        wildcards = re.search(r"wildcards: (.*)", block)
        jobs.append(block.split(":")[0] + (f"[{wildcards[1]}]" if wildcards else ""))
    return jobs


def final_checks(workdir: Path) -> list[str]:
    """What a recovered run must not leave behind (file level, before anything opens the registry)."""
    out = []
    journal = workdir / REPO / f"{REGISTRY_DB}-journal"
    if journal.exists():
        # a valid header makes it hot (the next writer rolls it back, read-only opens fail); a zeroed one is inert
        with journal.open("rb") as f:
            hot = f.read(8) == SQLITE_JOURNAL_MAGIC
        what = "hot SQLite journal" if hot else "SQLite journal (header not valid: not hot)"
        out.append(f"{what} left: {journal.relative_to(workdir)} ({journal.stat().st_size} bytes)")
    state = workdir / "results/state"
    leftovers = sorted(str(p.relative_to(workdir)) for p in state.rglob("*") if p.is_file()) if state.exists() else []
    if leftovers:
        out.append(f"state file(s) left: {_listing(leftovers)}")
    dry = run_attempt(workdir, "dry-run", "-n")
    text = dry.log.read_text(errors="replace")
    if dry.returncode != 0 or "Nothing to be done" not in text:
        jobs = scheduled_jobs(text)
        out.append(f"`snakemake -n` (exit {dry.returncode}) still schedules: {_listing(jobs) or 'see below'}")
        if dry.returncode != 0:
            out.append(f"`snakemake -n` failed:\n{dry.tail(10)}")
    return out


def run_trial(plan: TrialPlan, root: Path, reference: Reference, reruns: int = RERUNS) -> TrialResult:
    """Run, kill, rerun (killing the first rerun too on a double fault) until a rerun succeeds, compare."""
    start = time.monotonic()
    workdir = make_workdir(root)
    first_delay, second_delay = plan.delays(reference.duration)
    attempts = [run_attempt(workdir, "run", kill=plan.first, delay=first_delay)]
    differences: list[str] = []
    if plan.second is not None:
        if attempts[-1].sigkilled:
            run_attempt(workdir, "unlock 0", "--unlock")
        attempts.append(run_attempt(workdir, "rerun 0 (double fault)", kill=plan.second, delay=second_delay))
    for n in range(1, reruns + 1):
        if attempts[-1].succeeded:
            break
        if attempts[-1].sigkilled:
            run_attempt(workdir, f"unlock {n}", "--unlock")  # what the README tells users after a SIGKILL
        attempts.append(run_attempt(workdir, f"rerun {n}"))
    for a in attempts:
        if a.leaked:
            differences.append(f"{a.label}: processes still running after snakemake exited: {_listing(a.leaked)}")
    failed = [a for a in attempts if not a.landed and a.returncode != 0]
    if not attempts[-1].succeeded:
        differences.append(f"did not recover in {reruns} reruns")
    shown: dict[str, str] = {}
    for a in failed:
        errors = a.error_lines()
        if errors in shown:
            differences.append(f"{a.describe()}: same errors as {shown[errors]}")
        else:
            shown[errors] = a.label
            differences.append(f"{a.describe()}:\n{a.tail()}")
    differences += final_checks(workdir)
    try:
        state = repo_state(workdir / REPO, rerun_of(workdir))
    except Exception as exc:  # the evidence is the failure itself (hot journal, half-built repo, ...)
        differences.append(f"cannot read the repository read-only: {type(exc).__name__}: {exc}")
    else:
        differences += compare(reference.state, state)
    return TrialResult(plan, workdir, attempts, differences, time.monotonic() - start)
