"""The job server of local runs (pfscalib.jobserver): a job served by a warm child sees and reports what it
would in its own process (argv, directory, environment, output, exit status, the signal that killed it),
kills keep their meaning, and a job that may not be served runs in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

PROJECT = Path(__file__).resolve().parents[1]
# `served` or `not served`, then the exit status: whether jobserver.run took the command
PROBE = (
    "import sys\n"
    "from pfscalib import jobserver\n"
    "rc = jobserver.run(sys.argv[1:])\n"
    "print('not served' if rc is None else 'served', flush=True)\n"
    "sys.exit(3 if rc is None else rc)\n"
)


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A job server started as Snakemake's onstart starts it, by this process."""
    from pfscalib import jobserver

    monkeypatch.delenv(jobserver.ENV_PATH, raising=False)
    proc = jobserver.start(str(tmp_path / "job_server.log"))
    assert proc is not None, (tmp_path / "job_server.log").read_text()
    yield proc
    jobserver.stop(proc, os.path.dirname(os.environ[jobserver.ENV_PATH]))
    assert proc.poll() is not None
    monkeypatch.delenv(jobserver.ENV_PATH, raising=False)


def probe(*args: str, cwd: Path, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, env=env or dict(os.environ), capture_output=True, text=True,
        **kwargs,
    )  # fmt: skip


def served_children(proc: subprocess.Popen) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children()


def test_a_served_job_reports_its_output_and_exit_status(server, tmp_path):
    # pfscalib's one line on the job's own stderr, exit status 2, from the warm child, in the job's
    # directory (where there is no config)
    result = probe("select-visits", "--epoch", "run1", "--kind", "bias", cwd=tmp_path)
    assert result.stdout.splitlines() == ["served"]
    assert result.returncode == 2
    assert result.stderr == "pfscalib: select-visits: config/config.yaml: cannot be read (No such file or directory)\n"
    # the child ran in the job's directory with the job's environment: the config it names is read there
    env = {**os.environ, "PFSCALIB_PROBE": "1"}
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text("datastore: [unclosed\n")
    result = probe("summary", cwd=tmp_path, env=env)
    assert result.stdout.splitlines()[0] == "served"
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "pfscalib: summary: config/config.yaml: line 2: not valid YAML (expected ',' or ']', but got '<stream end>')"
    ]


def test_the_same_command_in_its_own_process_says_the_same(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PFSCALIB_JOB_SERVER"}
    result = probe("select-visits", "--epoch", "run1", "--kind", "bias", cwd=tmp_path, env=env)
    assert result.stdout.splitlines() == ["not served"]
    direct = subprocess.run(
        ["pfscalib", "select-visits", "--epoch", "run1", "--kind", "bias"], cwd=tmp_path, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert direct.returncode == 2
    assert direct.stderr == "pfscalib: select-visits: config/config.yaml: cannot be read (No such file or directory)\n"


def test_a_job_from_another_python_or_pfscalib_or_host_is_not_served(server, tmp_path):
    other_path = {**os.environ, "PYTHONPATH": str(tmp_path)}
    assert probe("summary", cwd=tmp_path, env=other_path).stdout.splitlines() == ["not served"]
    other_host = {**os.environ, "PFSCALIB_JOB_SERVER_HOST": "another-node"}
    assert probe("summary", cwd=tmp_path, env=other_host).stdout.splitlines() == ["not served"]
    gone = {**os.environ, "PFSCALIB_JOB_SERVER": str(tmp_path / "no.sock")}
    assert probe("summary", cwd=tmp_path, env=gone).stdout.splitlines() == ["not served"]
    assert served_children(server) == []


def _long_job(tmp_path: Path) -> subprocess.Popen:
    """A served job that runs for a while: `pfscalib pipetask` around a 60 s command."""
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, "pipetask", "--state", str(tmp_path / "state.json"), "--",
         "bash", "-c", "sleep 60", "-o", "u/test/out"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for_child(server: subprocess.Popen) -> psutil.Process:
    deadline = time.monotonic() + 30
    while not (children := served_children(server)):
        assert time.monotonic() < deadline, "the job never reached the server"
        time.sleep(0.05)
    return children[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_job_reaches_its_warm_child_once_and_the_job_dies_as_it_did(server, tmp_path, sig):
    client = _long_job(tmp_path)
    child = _wait_for_child(server)
    assert child.ppid() == server.pid and os.getpgid(child.pid) == child.pid  # its own group: signals once
    time.sleep(0.5)
    client.send_signal(sig)
    client.wait(30)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    if sig == signal.SIGTERM:
        assert client.returncode == -signal.SIGTERM  # killed by it, as the job itself would have been
    else:
        assert client.returncode != 0  # KeyboardInterrupt in the job: a failure, not a success
    assert served_children(server) == []


def test_a_killed_job_takes_its_warm_child_with_it(server, tmp_path):
    client = _long_job(tmp_path)
    child = _wait_for_child(server)
    client.kill()
    client.wait()
    child.wait(5)  # raises psutil.TimeoutExpired if the child outlives its job
    assert served_children(server) == []


def test_the_server_dies_with_snakemake(tmp_path):
    """Snakemake SIGKILLed: its job server (and the jobs it runs) end too."""
    script = (
        "import os, sys, time\n"
        "from pfscalib import jobserver\n"
        "proc = jobserver.start(sys.argv[1])\n"
        "print(proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    snakemake = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "log")], stdout=subprocess.PIPE, text=True, cwd=PROJECT
    )
    server = psutil.Process(int(snakemake.stdout.readline()))
    snakemake.kill()
    snakemake.wait()
    server.wait(10)


@pytest.mark.parametrize("broken", [False, True])
def test_the_server_opens_the_run_repository_once_and_keeps_no_connection_to_it(
    tmp_path, demo_repo, monkeypatch, broken
):
    """prewarm: the server opens the repository read-only and closes it before it forks any job (a child
    must not inherit a registry connection); a repository it cannot open is one line in its log, and the
    jobs are still served. Each served job is a line of accounting (wall and CPU) in the log."""
    from pfscalib import jobserver

    if broken:
        (demo_repo / "butler.yaml").write_text("registry: [unclosed\n")
    monkeypatch.delenv(jobserver.ENV_PATH, raising=False)
    log = tmp_path / "job_server.log"
    proc = jobserver.start(str(log), str(demo_repo))
    assert proc is not None, log.read_text()
    try:
        result = probe("--help", cwd=tmp_path)  # served once the server is warm (prewarm done)
        assert result.stdout.splitlines()[-1] == "served" and result.returncode == 0, result
        registry = str(demo_repo / "gen3.sqlite3")
        open_files = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
        assert not [f for f in open_files if f.startswith(registry)], open_files
    finally:
        jobserver.stop(proc, os.path.dirname(os.environ[jobserver.ENV_PATH]))
    text = log.read_text()
    problems = [line for line in text.splitlines() if line.startswith("not prewarmed:")]
    assert len(problems) == (1 if broken else 0), text
    jobs = [line.split() for line in text.splitlines() if line.startswith("job ")]
    assert len(jobs) == 1 and jobs[0][2] == "start" and jobs[0][4] == "wall" and float(jobs[0][7]) > 0, text
