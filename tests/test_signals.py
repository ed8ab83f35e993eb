"""Each job is its own process and leaves none behind (issue #29): a local Snakemake run interrupted with SIGINT
or SIGTERM while a job's `pipetask run -j 2` has worker processes ends with no process of the job alive
(the job, its pipetask, the workers), and the same command then finishes the run.

Snakemake 9.27.1 never signals its running local jobs: on SIGINT (KeyboardInterrupt in its scheduler) it
shuts its job pool down and waits for them, on SIGTERM it finishes them ("graceful"); only a signal to the
whole process group (the terminal's Ctrl-C, `kill -- -PGID`, a batch system) reaches a job. So both: the
signal to Snakemake alone (its job runs to its end, and nothing is left), and to its process group, where
the job, not pipetask (in a group of its own), gets it and must stop its pipetask and the workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pfscalib.plan import paths
from pfscalib.plan.steps import STEP_NAMES

from helpers import workdir_config
from killtrials import child_env, default_signals, snakemake_argv

TARGET = paths.sentinel("bias", "run1", "b1")
# Seconds Snakemake may take to exit after the signal: to its group, the job stops its pipetask (SIGKILL
# after 30 s); to Snakemake alone, Snakemake waits for the running job to end, however long it takes (a bound
# against a hang, not a timing: on a loaded machine a bias job ran longer than 30 s).
GRACE = {True: 90.0, False: 600.0}


def in_workdir(workdir: Path) -> list[psutil.Process]:
    """Every live process (not a zombie) working in workdir, but this one: Snakemake, its jobs, their
    pipetask and its workers all run there, whatever their process group or parent."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE and Path(proc.cwd()) == workdir:
                found.append(proc)
    return found


def pipetask_with_workers(workdir: Path) -> psutil.Process | None:
    """The job's `pipetask run` process (the pipetask script, not the job whose arguments name it) once it has
    worker processes."""
    for proc in in_workdir(workdir):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.cmdline()
            if any(Path(a).name == "pipetask" for a in cmdline[:2]) and "run" in cmdline and proc.children():
                return proc
    return None


def alive(proc: psutil.Process) -> bool:
    """Running, not a zombie (an orphan's zombie waits for this container's init to reap it)."""
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def describe(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            lines.append(f"{proc.pid} ({proc.status()}, parent {proc.ppid()}): {' '.join(proc.cmdline())[:200]}")
    return "\n".join(lines)


@pytest.fixture
def workdir(tmp_path) -> Path:
    """One camera, one epoch; bias runs `pipetask run -j 2` (worker processes); the run builds the repository."""
    steps = {step: {"threads": 2 if step == "bias" else 1} for step in STEP_NAMES}
    return workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",), steps=steps)


# Ctrl-C at a terminal (SIGINT to the group) and `kill PID` (SIGTERM to Snakemake alone); the job's own
# handling of each signal is checked without Snakemake below (test_a_signalled_job_stops_its_pipetask_group...).
CASES = [(signal.SIGINT, True), (signal.SIGTERM, False)]


@pytest.mark.parametrize("sig,group", CASES, ids=[f"{s.name}-{'group' if g else 'snakemake'}" for s, g in CASES])
def test_an_interrupted_run_leaves_no_process_of_its_job_and_resumes(workdir, sig, group):
    log = workdir / "snakemake.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            snakemake_argv(TARGET),
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,  # a session and process group of its own
            preexec_fn=default_signals,
        )
    try:
        deadline = time.monotonic() + 600
        while (pipetask := pipetask_with_workers(workdir)) is None:
            assert proc.poll() is None, f"snakemake ended before a pipetask had workers:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no pipetask with workers:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        job = [p for p in in_workdir(workdir) if p.pid != proc.pid]  # the job's processes, pipetask's workers
        assert pipetask.children() and len(job) >= 3, describe(job)
        (os.killpg if group else os.kill)(proc.pid, sig)
        try:
            proc.wait(timeout=GRACE[group])
        except subprocess.TimeoutExpired:
            pytest.fail(f"snakemake still runs {GRACE[group]:.0f} s after {sig.name}:\n{describe(in_workdir(workdir))}")
        deadline = time.monotonic() + 5
        while (left := in_workdir(workdir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"alive after snakemake exited on {sig.name}:\n{describe(left)}"
        assert not [p for p in job if alive(p)], describe(job)
    finally:
        for leftover in [proc, *in_workdir(workdir)]:
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                os.kill(leftover.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode != 0, log.read_text()[-3000:]
    job_log = (workdir / "logs/run1/bias/b1.log").read_text()
    # the job stopped its pipetask (group) or ran to its end (Snakemake alone waits for it)
    stopped = f"pfscalib: pipetask stopped on {sig.name}" in job_log
    assert stopped == group, job_log[-3000:]
    # the same command finishes the run: the interrupted job resumes (or redoes) its pipetask run
    again = subprocess.run(
        snakemake_argv(TARGET), cwd=workdir, env=child_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (workdir / TARGET).exists()


# pipetask's stand-in: a Python process with two worker processes (default signal dispositions, as pipe_base's)
STAND_IN = "import subprocess; workers = [subprocess.Popen(['sleep', '300']) for _ in range(2)]; workers[0].wait()"


def job_around(tmp_path: Path) -> tuple[subprocess.Popen, psutil.Process]:
    """`pfscalib pipetask` (the job's pipetask part) around a stand-in for pipetask; returns the job and the
    stand-in once both its workers run."""
    command = [sys.executable, "-c", STAND_IN, "-o", "u/test/chain"]  # -o: the chain the job reads
    proc = subprocess.Popen(
        ["pfscalib", "pipetask", "--state", str(tmp_path / "state.json"), "--", *command],
        cwd=tmp_path,
        env=child_env(),
        preexec_fn=default_signals,  # as from a terminal: a harness started in the background ignores SIGINT
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(psutil.Error):
            stand_in = psutil.Process(proc.pid).children()
            if stand_in and len(stand_in[0].children()) == 2:
                return proc, stand_in[0]
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)


def gone(procs: list[psutil.Process], timeout: float = 10) -> list[psutil.Process]:
    """What is still alive after timeout."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in procs if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signalled_job_stops_its_pipetask_group_and_exits_with_the_signal(tmp_path, sig):
    proc, pipetask = job_around(tmp_path)
    group = [pipetask, *pipetask.children()]
    try:
        proc.send_signal(sig)
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 128 + sig, out
        assert f"pipetask stopped on {sig.name}" in out
        assert not gone(group), describe(group)
    finally:
        for leftover in [proc, *group]:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                leftover.kill()


def test_a_job_killed_outright_takes_its_pipetask_with_it(tmp_path):
    proc, pipetask = job_around(tmp_path)
    workers = pipetask.children()
    try:
        proc.kill()
        proc.wait()
        assert not gone([pipetask]), describe([pipetask])  # PR_SET_PDEATHSIG: pipetask does not outlive its job
    finally:
        for worker in workers:  # pipetask's own children are its to end (pipe_base's -j workers end by themselves)
            with contextlib.suppress(psutil.Error):
                worker.kill()
