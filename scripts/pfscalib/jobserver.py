"""The job server of a local run: one process that has imported the middleware once and forks a warm
child for every `pfscalib` job of the run, instead of each job importing daf_butler, pipe_base and
ctrl_mpexec afresh (about 2 s of CPU per job, a third of a demo job; drp_stella's imports cost more).

Snakemake's onstart starts it for local runs only (`job_server: true`, the default); the jobs find it
through PFSCALIB_JOB_SERVER (a Unix socket in a private directory) and PFSCALIB_JOB_SERVER_HOST. A job
that does not find it, on another host (SLURM), or with another Python or pfscalib, runs in its own
process as before. What a job sees is what it would see in its own process: its argv, working directory,
environment, umask, stdin/stdout/stderr (passed over the socket), and its exit status or the signal that
killed it. Kills keep their meaning:
- the child is in a process group of its own: the client forwards INT/TERM/HUP/QUIT/USR1/USR2 to it,
  exactly once;
- the client killed (SIGKILL, a whole run killed): the child's watcher sees the socket close and SIGKILLs
  the child at once (the workflow is built to resume after a SIGKILL anywhere);
- the server's parent (Snakemake) gone: the server dies (PR_SET_PDEATHSIG), and with it its children.
Each child reports the modules it imported beyond the server's; the server imports them between jobs, so
the tasks of a site's pipelines are warm after their first job without a list. Before its first job the
server opens the run's repository read-only and closes it (prewarm), and maps the installed distributions
once (pfscalib.middleware_internals). Each job's wall and CPU time (from wait4) is a line of its log.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

ENV_PATH = "PFSCALIB_JOB_SERVER"
ENV_HOST = "PFSCALIB_JOB_SERVER_HOST"
# what every job imports: the middleware and the workflow's job modules
PRELOAD = (
    "lsst.daf.butler",
    "lsst.pipe.base",
    "lsst.ctrl.mpexec.cli.pipetask",
    "pfscalib.cli",
    "pfscalib.job",
    "pfscalib.butlerops",
    "pfscalib.metrics",
    "pfscalib.gate",
)
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
PR_SET_PDEATHSIG = 1
HEADER = struct.Struct("!I")


# ------------------------------------------------------------------------------------------ Snakemake side
def start(log_path: str, repo: str = "", timeout: float = 60.0) -> subprocess.Popen | None:
    """onstart: the server, started as a child of this (Snakemake's) process; the jobs find it through the
    environment they inherit. repo: the run's Butler repository, opened once by the server (see prewarm).
    None (jobs then run in their own processes) if it cannot start."""
    directory = tempfile.mkdtemp(prefix="pfscalib-jobs-")  # mode 0700: only this user can connect
    path = os.path.join(directory, "server.sock")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pfscalib.jobserver", path, str(os.getpid()), repo],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):  # the server binds before it imports: jobs queue until it is warm
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            shutil.rmtree(directory, ignore_errors=True)
            log.warning("the job server did not start (see %s): every job imports the middleware itself", log_path)
            return None
        time.sleep(0.01)
    os.environ[ENV_PATH] = path
    os.environ[ENV_HOST] = socket.gethostname()
    atexit.register(stop, proc, directory)
    return proc


def stop(proc: subprocess.Popen, directory: str) -> None:
    """At Snakemake's exit: the server ends (reaped, so its jobs' CPU time reaches Snakemake's accounts)."""
    os.environ.pop(ENV_PATH, None)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------------------------------ the job's side
def identity() -> dict:
    """What must match for a warm child to be this process: the same Python and the same pfscalib."""
    import pfscalib

    return {"prefix": sys.prefix, "pfscalib": pfscalib.__file__, "pythonpath": os.environ.get("PYTHONPATH", "")}


def run(argv: list[str]) -> int | None:
    """Run `pfscalib <argv>` in a warm child of the run's job server; its exit status (128 + signal, after
    re-raising the signal here, if it was killed). None: no server for this process, run it yourself."""
    path = os.environ.get(ENV_PATH)
    if not path or os.environ.get(ENV_HOST) != socket.gethostname():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    umask = os.umask(0)
    os.umask(umask)
    request = {
        "argv": [sys.argv[0], *argv], "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask,
        "identity": identity(),
    }  # fmt: skip
    payload = json.dumps(request).encode()
    try:
        socket.send_fds(conn, [HEADER.pack(len(payload)) + payload], [0, 1, 2])
    except OSError:  # e.g. a job started with stdin closed: nothing to pass, run it yourself
        conn.close()
        return None
    replies = conn.makefile("rb")
    first = replies.readline().split()
    if first[:1] != [b"pid"]:  # refused (another Python or pfscalib): run it yourself
        conn.close()
        return None
    child = int(first[1])
    for sig in FORWARDED:
        signal.signal(sig, lambda number, _frame: os.kill(child, number))
    status = replies.readline().split()
    if not status:
        print("pfscalib: the job server ended before the job did", file=sys.stderr)
        return 1
    if status[0] == b"signal":
        number = int(status[1])
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)  # die as the job did, so Snakemake sees the same
        return 128 + number
    return int(status[1])


# ------------------------------------------------------------------------------------------ the server
def _die_with_parent(sig: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
    (size,) = HEADER.unpack(data[: HEADER.size])
    data = data[HEADER.size :]
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the job left before its request was read")
        data += chunk
    return json.loads(data), fds


class Server:
    def __init__(self, path: str, repo: str = "") -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(128)
        self.me = identity()
        # a running job's child: its client's connection, when it started, what it runs
        self.children: dict[int, tuple[socket.socket, float, list[str]]] = {}
        self.t0 = time.monotonic()
        self.repo = repo
        self.reports = tempfile.mkdtemp(prefix="modules-", dir=os.path.dirname(path))
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)  # SIGCHLD wakes the loop: a job's status goes out at once
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def warm(self, modules: list[str]) -> None:
        for name in modules:
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except Exception as exc:  # a module only its job could import: that job imports it
                    print(f"not preloaded: {name}: {exc}", file=sys.stderr, flush=True)

    def prewarm(self) -> None:
        """Open the run's repository once, read-only, and query it, then close it (no connection is left
        for a child to inherit): what every job's first Butler, query and graph build set up lazily in
        the middleware is then set up in the server (0.5 s of CPU for a job in a process that has not run one
        before; less once the server has imported what earlier jobs imported). Until the repository
        exists (the demo builds it in a job), tried again after each job."""
        if not self.repo or not os.path.exists(os.path.join(self.repo, "butler.yaml")):
            return
        repo, self.repo = self.repo, ""
        try:
            from lsst.daf.butler import Butler

            butler = Butler.from_config(repo, writeable=False)
            try:
                collections = butler.collections.query("*")[:3]
                if collections:
                    butler.query_all_datasets(collections=collections, find_first=False, limit=1)
            finally:
                butler.close()
        except Exception as exc:  # a job meets the same problem and reports it itself
            print(f"not prewarmed: {repo}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        selector.register(self.wakeup_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.listener:
                    self.accept()
                else:
                    os.read(self.wakeup_r, 4096)
            self.reap()

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            conn.settimeout(10)
            request, fds = _receive(conn)
            conn.settimeout(None)
        except (OSError, ValueError, struct.error):
            conn.close()
            return
        if uid != os.getuid() or request.get("identity") != self.me or len(fds) != 3:
            with contextlib.suppress(OSError):
                conn.sendall(b"refused\n")
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        pid = os.fork()
        if pid == 0:
            self.child(conn, request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.children[pid] = (conn, time.monotonic(), request["argv"][1:4])
        with contextlib.suppress(OSError):
            conn.sendall(f"pid {pid}\n".encode())

    def reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.children.pop(pid, None)
            if job is not None:
                conn, begun, what = job
                # each job's accounting, as Snakemake's benchmark files had it
                print(
                    f"job {pid} start {begun - self.t0:.2f} wall {time.monotonic() - begun:.2f} "
                    f"cpu {usage.ru_utime + usage.ru_stime:.2f} status {status}: {' '.join(what)}",
                    file=sys.stderr, flush=True,
                )  # fmt: skip
                kind = "signal" if os.WIFSIGNALED(status) else "exit"
                code = os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                with contextlib.suppress(OSError):
                    conn.sendall(f"{kind} {code}\n".encode())
                conn.close()
            report = Path(self.reports) / str(pid)
            if report.exists():  # what this job imported: warm for the next ones
                self.warm(report.read_text().split())
                report.unlink()
            self.prewarm()

    def child(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        """The warm child: becomes the job's process and ends as a process ends (SystemExit up through the
        server's loop, so atexit handlers and log flushing run as they would)."""
        try:
            _die_with_parent(signal.SIGKILL)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.setpgid(0, 0)  # signals reach it from its client only, once
            self.listener.close()
            for other, _, _ in self.children.values():
                other.close()
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            os.environ.pop(ENV_PATH, None)  # its own `pfscalib` commands run in their own processes
            os.umask(request["umask"])
            sys.argv = request["argv"]
            threading.Thread(target=_watch, args=(conn,), daemon=True).start()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        before = set(sys.modules)
        from .cli import main

        profile = os.environ.get("PFSCALIB_PROFILE")  # bench/: where a served job's time goes
        try:
            if profile:
                import cProfile

                with cProfile.Profile() as prof:
                    try:
                        status = main(sys.argv[1:])
                    finally:
                        prof.dump_stats(os.path.join(profile, f"{os.getpid()}.prof"))
            else:
                status = main(sys.argv[1:])
        finally:
            with contextlib.suppress(OSError):
                Path(self.reports, str(os.getpid())).write_text("\n".join(sorted(set(sys.modules) - before)))
        raise SystemExit(status)


def _watch(conn: socket.socket) -> None:
    """In the child: the client never writes after its request, so any end of recv means it is gone."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    os.kill(os.getpid(), signal.SIGKILL)


def main(path: str, parent: int, repo: str = "") -> None:
    # The only other threads are native ones started by imports (OpenBLAS's pool, pyarrow's jemalloc
    # background thread), which register their own fork handlers; Python's warning does not tell them apart.
    warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning)
    _die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # Snakemake ended before the line above
        return
    # Ctrl-C reaches the whole foreground group: the jobs get it from their clients (their children
    # stop as interrupted jobs do); the server ends when Snakemake does
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = Server(path, repo)
    server.warm(list(PRELOAD))
    from .middleware_internals import remember_installed_distributions

    remember_installed_distributions()
    server.prewarm()
    server.serve()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])
