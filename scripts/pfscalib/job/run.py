"""One workflow job: pipetask (resuming an interrupted run of the same job), then certify the product,
clean the intermediates and write the sentinel.

Recovery by design: the job's state file records its identity (the pipetask command without -j, the
dataset ids of the products it reads, the pipeline files' digests and the software's versions), its RUN
and how far it got (started, pipetask-done, certified). An unforced job that starts with the identity of
an interrupted one finishes that one's work: certified already, it rewrites the sentinel; a RUN with
finished quanta, it resumes; a half-made output chain, it repairs; a hot SQLite journal, it heals before
anything else. Any other identity (edited table or -c, a rebuilt input, a changed pipeline file or stack)
starts a fresh RUN and says why. A job the user forced (-F, -R, --forcerun, -f: marked by Snakemake's
onstart, pfscalib.internals.snakemake.user_forced) is rebuilt from scratch in a fresh RUN whatever its
state. A successful workflow run forgets the certified states of the jobs Snakemake has recorded as
finished (`onsuccess`); those it still marks incomplete stay for their rerun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pfscalib.internals.faults import arm_registry_faults, fault_hook, pipetask_argv, pipetask_progress
from pfscalib.job import software
from pfscalib.plan import paths
from pfscalib.plan.contract import JobRequest, PipetaskCommand
from pfscalib.plan.limits import LEVEL_WORDS, accept_entry, load_limits
from pfscalib.plan.records import NOT_RETRYABLE, forced, read_json, write_json

log = logging.getLogger(__name__)

EMPTY_GRAPH = "QuantumGraph was empty"
# Every run of a job is given --rebase (PipetaskCommand.rebase): a job's output chain records its inputs as
# pipetask flattened them when it was made; a promotion into a chain the build reads (PFS/calib) changes
# that, and pipetask then refuses the chain ("does not include the same sequence of (flattened) input
# collections"). --rebase keeps the chain's own RUNs first, then the inputs as they are now (ctrl_mpexec
# cli/butler_factory.py OutputChainedCollectionInfo).
ERROR_LINE = re.compile(r"\bERROR\b|Error:|Exception:")
# pipetask's refusals to extend a RUN made by other software or configs (pipe_base pipeline_graph
# compare_packages, graph.py "Config does not match existing task config"): a resume can only fail again
RESUME_REFUSED = re.compile(r"Package versions mismatch|Config does not match existing")
# Failures retries cannot fix (pipe_base _status.py: RepeatableQuantumError.EXIT_CODE 20, "a repeatable
# algorithmic failure that will not be addressed by retries"; InvalidQuantumError.EXIT_CODE 21, a
# configuration or logic error). pipetask exits with the code itself in one process (mp_graph_executor.py
# sys.exit(exc.EXIT_CODE)); with -j N its log names the quantum's ("Task <...> failed, exit code=21").
QUANTUM_EXIT = re.compile(r"failed, exit code=(\d+)")


def identity(command: PipetaskCommand, needs: Sequence[str]) -> dict:
    """What makes two runs of a job the same build: the command (without -j), the products it reads (a
    rebuilt input has a new dataset id, so its consumers rebuild too), the pipeline files it reads and the
    software."""
    inputs = {path: (read_json(path) or {}).get("datasetId") for path in needs}
    return {
        "command": command.identity(),
        "inputs": inputs,
        "pipeline": software.pipeline_files(command.pipeline_files()),
        "software": software.versions(),
    }


def why_new(old: dict, new: dict) -> str:
    """Why a job with an earlier state starts a fresh RUN: what of its identity changed, in words."""
    if old.get("command") != new["command"]:
        return "its command changed (an edited table, -c override or config)"
    rebuilt = [p for p, i in new["inputs"].items() if (old.get("inputs") or {}).get(p) != i]
    if rebuilt:
        return f"its input {', '.join(rebuilt)} was rebuilt"
    if old.get("pipeline") != new["pipeline"]:
        changed = [p for p, d in new["pipeline"].items() if (old.get("pipeline") or {}).get(p) != d]
        return f"its pipeline file {', '.join(changed) or 'list'} changed"
    if old.get("software") != new["software"]:
        return f"the software changed ({software.changes(old.get('software') or {}, new['software'])})"
    return "its identity changed"


def run_job(request: JobRequest, command: PipetaskCommand) -> int:
    """`pfscalib job`: finish an interrupted run of the same build, or build afresh; then certify."""
    from pfscalib.job import butler as butlerops

    arm_registry_faults(request.state)
    route_task_logs(request.log_root)
    if butlerops.heal_hot_journal(request.repo):
        log.info("removed the registry's journal left by a killed process (rolled back if it was hot)")
    if request.offset_from and request.offset_field:
        proposal = read_json(request.offset_from) or {}
        if proposal.get("spectralOffset") is None:
            log.error("%s: no proposed spectralOffset (%s)", request.offset_from, proposal.get("reason", "missing"))
            return 1
        command = command.with_override(request.offset_field.with_value(float(proposal["spectralOffset"])))
    if request.profiles_from:
        command = with_profiles_run(command, request.profiles_from)
    ident = identity(command, request.needs)
    if not forced(request.sentinel) and already_certified(request, ident):
        return 0
    if not forced(request.sentinel) and (standing := standing_verdict(request, ident)):
        return standing
    return run_pipetask(command, request.state, ident, output=request.sentinel) or certify(request)


def utc_now() -> str:
    """The time stamps of states and records (UTC, seconds)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def judgement(request: JobRequest) -> str:
    """What a verdict on the same product depends on besides the product: the limits (their content) and
    the config's acceptance."""
    limits = load_limits(request.limits)
    return hashlib.sha256(json.dumps([limits, request.accept], sort_keys=True, default=str).encode()).hexdigest()[:16]


def standing_verdict(request: JobRequest, ident: dict) -> int:
    """A retry or rerun of a job whose same build was held under the same limits and acceptance, or failed
    in a way retries cannot fix, is not run again: a hold is a verdict, not a crash (the profiles' retries
    are for crashes, out-of-memory and time-outs). Returns the exit status to end with (0: run the job)."""
    state = read_json(request.state) or {}
    if state.get("identity") != ident:
        return 0
    held = state.get("status") == "held" and state.get("judged") == judgement(request)
    if not held and not (state.get("status") == "failed" and state.get("exit") in NOT_RETRYABLE):
        return 0
    # the state written again in this run: Snakemake does not retry the job (verdicts_not_retried)
    write_json(request.state, {**state, "standing_at": utc_now()})
    if held:
        log.error(
            "held at %s as this same build (%s): a verdict, not retried; accept it (the held record's accept: "
            "entry), change the limits, or force a rebuild",
            state.get("held_at"), "; ".join(state.get("failing", [])),
        )  # fmt: skip
        return 1
    log.error(
        "not retried: pipetask failed at %s with exit status %d, %s (%s): retries cannot fix it; fix the "
        "input or the configuration, or force the job",
        state.get("failed_at"), state["exit"], NOT_RETRYABLE[state["exit"]], state.get("cause", ""),
    )  # fmt: skip
    return state["exit"]


def with_profiles_run(command: PipetaskCommand, record_path: str) -> PipetaskCommand:
    """The -d query with the profiles_run define-profiles chose: the command names the planned one, which
    may have been taken by another definition (pfscalib.plan.tables profiles_run_fallback)."""
    chosen = (read_json(record_path) or {}).get("profiles_run")
    if not chosen or command.where is None:
        return command
    query = re.sub(r"profiles_run = '[^']*'", lambda _: f"profiles_run = '{chosen}'", command.where)
    return dataclasses.replace(command, where=query)


def route_task_logs(log_roots: list[str]) -> None:
    """As `pipetask --log-level pfs=INFO`: the tasks' INFO lines reach their _log datasets."""
    if log_roots:
        roots = {*filter(None, os.environ.get("DAF_BUTLER_ROOT_LOGGER", "").split(":")), *log_roots}
        os.environ["DAF_BUTLER_ROOT_LOGGER"] = ":".join(sorted(roots))


def already_certified(request: JobRequest, ident: dict) -> bool:
    """An interrupted run of this same build certified its product: rewrite its sentinel."""
    from pfscalib.job import butler as butlerops

    state = read_json(request.state) or {}
    if state.get("status") != "certified" or state.get("identity") != ident:
        return False
    sentinel = state["sentinel"]
    butler = butlerops.open_butler(request.repo)
    timespan = butlerops.make_timespan(request.begin_date, request.end_date)
    current = butlerops.certified(butler, request.calib, sentinel["datasetType"], request.data_id)
    if not any(str(c["ref"].id) == sentinel["datasetId"] and butlerops.same_span(c, timespan) for c in current):
        return False  # decertified since: build afresh
    write_json(request.sentinel, sentinel)
    log.info(
        "%s %s was certified by an interrupted run of this job (%s): sentinel written, nothing rebuilt",
        sentinel["datasetType"], request.data_id, sentinel["run"],
    )  # fmt: skip
    return True


def run_pipetask(
    command: PipetaskCommand,
    state_path: str,
    ident: dict | None = None,
    done: str | None = None,
    output: str | None = None,
) -> int:
    """`pipetask run ...` into a new RUN of the job's chain, or into the RUN of an interrupted run of the
    same build (same identity, not forced), skipping what it already wrote. output: the job's Snakemake
    output (how a forced job is known; default `done`)."""
    from pfscalib.job import butler as butlerops

    ident = ident or identity(command, [])
    output = output or done
    state = read_json(state_path) or {}
    resume = False
    if forced(output):
        if state.get("run"):
            log.info("forced by this run (-F, -R, --forcerun or -f): a fresh RUN, not %s", state["run"])
    elif state.get("identity") not in (None, ident) and state.get("run"):
        log.info("a fresh RUN, not %s: %s", state["run"], why_new(state["identity"], ident))
    elif state.get("identity") == ident and state.get("status") in ("started", "pipetask-done", "held"):
        butler = butlerops.open_butler(command.repo, writeable=True)
        repaired = butlerops.repair_output_chain(butler, command.output, state["run"], list(command.inputs))
        if repaired:
            log.info("%s", repaired)
        # killed before pipetask created its RUN: nothing to resume, start afresh
        resume = butlerops.collection_type(butler, state["run"]) is not None
        if resume:
            for fixed in butlerops.repair_run(butler, state["run"], command.repo):
                log.info("%s in %s", fixed, state["run"])
        butler.close()
    if resume:
        command = dataclasses.replace(command, output_run=state["run"], resume=True, rebase=True)
        log.info("resuming %s after an interrupted job", state["run"])
    else:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        state = {"identity": ident, "run": f"{command.output}/{stamp}", "status": "started"}
        write_json(state_path, state)
        if output:  # started afresh: a retry or rerun after a kill resumes this RUN
            Path(paths.forced(output)).unlink(missing_ok=True)
        fault_hook("before-pipetask", state_path)()
        command = dataclasses.replace(command, output_run=state["run"], rebase=True)
    argv = command.argv()
    log.info("%s", " ".join(argv))
    rc, empty, cause, quantum_exit = _pipetask_subprocess(argv, state_path)
    if rc != 0 and not (resume and empty):
        if resume and RESUME_REFUSED.search(cause or ""):  # no state is kept that can only fail
            write_json(state_path, {**state, "status": "resume-refused"})
            log.info("pipetask refused to extend %s: the next attempt starts a fresh RUN", state["run"])
        elif (code := rc if rc in NOT_RETRYABLE else quantum_exit) in NOT_RETRYABLE:
            now = utc_now()
            write_json(state_path, {**state, "status": "failed", "exit": code, "cause": cause, "failed_at": now})
            log.error("pipetask failed with %s: a retry of this build will not run it again", NOT_RETRYABLE[code])
        log.error("pipetask failed (exit status %d): %s", rc, cause or "see the pipetask output above")
        return rc
    if rc != 0:
        log.info("nothing left to do in the resumed run (empty QuantumGraph): OK")
    write_json(state_path, {**state, "status": "pipetask-done", "argv": argv})
    fault_hook("after-pipetask", state_path)()
    if done:  # a job whose output is pipetask's run itself (the ISR of an offset scan)
        write_json(done, {"run": state["run"], "chain": command.output, "argv": argv})
    return 0


def _pipetask_subprocess(argv: list[str], state_path: str) -> tuple[int, bool, str, int | None]:
    """`pipetask run ...` as the job's child, in a process group of its own with its -j workers: a SIGINT,
    SIGTERM or SIGHUP to the job goes to that whole group, the job waits for it and then exits with
    128 + the signal (the job leaves no process behind); a job killed outright (SIGKILL) takes pipetask
    with it (PR_SET_PDEATHSIG). (exit status, empty graph, the first error line,
    a failed quantum's exit code)"""
    empty, cause, quantum_exit = False, "", None
    # the handlers first: a signal that arrives while pipetask starts is forwarded once it exists
    with _forward_signals() as (received, started):
        proc = started(
            subprocess.Popen(
                pipetask_argv(argv, state_path),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                process_group=0,  # its own group, in the run's session (a whole-session kill still finds it)
                preexec_fn=_die_with_parent(),
            )
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            empty = empty or EMPTY_GRAPH in line
            if ERROR_LINE.search(line) and not cause:  # the first error: later ones wrap it
                cause = line.strip()
            if (m := QUANTUM_EXIT.search(line)) and quantum_exit is None:
                quantum_exit = int(m.group(1))
            pipetask_progress(line, state_path, before=lambda: _kill_group(proc, signal.SIGKILL))
        rc = proc.wait()
    if received:
        sys.stdout.flush()
        log.error("pipetask stopped on %s (exit status %d)", signal.Signals(received[0]).name, rc)
        raise SystemExit(128 + received[0])
    return rc, empty, cause, quantum_exit


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE = 30.0  # seconds a signalled pipetask may take to exit before its group gets SIGKILL
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """For preexec_fn (Linux): the child gets SIGKILL when the job that started it dies, however it died.
    Resolved before the fork: the child only calls prctl (and checks that its parent did not die first)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the job died before prctl: nobody would be told
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(proc.pid, sig)


@contextlib.contextmanager
def _forward_signals() -> Iterator[tuple[list[int], Callable[[subprocess.Popen], subprocess.Popen]]]:
    """While pipetask runs: SIGINT, SIGTERM and SIGHUP to the job (unless ignored) go to pipetask's process
    group (each time one arrives), and the job goes on reading pipetask's output until it exits; STOP_GRACE
    after the first, the group gets SIGKILL. Installed before pipetask starts (`started(proc)` names it): a
    signal in between is forwarded as soon as it exists. Yields the signals received, in order."""
    received: list[int] = []
    timer: threading.Timer | None = None
    child: list[subprocess.Popen] = []

    def forward(signum: int) -> None:
        nonlocal timer
        _kill_group(child[0], signum)
        if timer is None:
            timer = threading.Timer(STOP_GRACE, _kill_group, (child[0], signal.SIGKILL))
            timer.daemon = True
            timer.start()

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if child:
            forward(signum)

    def started(proc: subprocess.Popen) -> subprocess.Popen:
        child.append(proc)
        if received:  # arrived while it started
            forward(received[-1])
        return proc

    # an ignored signal (nohup's SIGHUP) stays ignored: pipetask inherited that through exec
    previous = {sig: signal.signal(sig, handler) for sig in FORWARDED if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield received, started
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        if timer is not None:
            timer.cancel()
        if child and child[0].poll() is None:  # the job is leaving early (an exception, a fault): no orphans
            _kill_group(child[0], signal.SIGKILL)
            child[0].wait()


def certify(request: JobRequest) -> int:
    """Replace-certify the job's product over its validity range, clean its intermediates, write the
    sentinel; then the state file goes (a later rerun of this job starts a fresh run)."""
    from pfscalib.job import butler as butlerops
    from pfscalib.plan.steps import STEPS

    state = read_json(request.state)
    if not state or state.get("status") != "pipetask-done":
        log.error("certify: %s: pipetask has not finished for this job", request.state)
        return 1
    butler = butlerops.open_butler(request.repo, writeable=True)
    data_id = request.data_id
    refs = butlerops.query_refs(butler, request.dataset_type, state["run"], data_id)
    if len(refs) != 1:
        log.error(
            "certify: expected one %s for %s in %s, found %d", request.dataset_type, data_id, state["run"], len(refs)
        )
        return 1
    timespan = butlerops.make_timespan(request.begin_date, request.end_date)
    quality = assess(butler, request, refs[0], state["run"], timespan)
    if quality["verdict"] == "held":
        hold(request, refs[0], quality)
        now = utc_now()
        verdict = {"status": "held", "judged": judgement(request), "held_at": now, "failing": quality["failing"]}
        write_json(request.state, {**state, **verdict})  # a retry of the same build ends at once (standing_verdict)
        return 1
    with butler.transaction():
        if request.copy_as:  # certifyDetectorMaps.py behaviour: copy candidate -> detectorMap_calib
            refs = butlerops.copy_datasets(butler, refs, request.copy_as, f"{state['run']}/certify")
        butlerops.replace_certification(
            butler, request.calib, refs, timespan, between=fault_hook("certify", request.state)
        )
    # before cleaning: this job's footprint, its RUN and the RUNs under it (the certified copy); not the
    # chain's earlier RUNs, whose products stay after a rebuild; and what its ISR read (bias, dark...)
    if "written" not in state:  # once: a rerun after a kill while cleaning must not count what is left
        state = {
            **state,
            "written": butlerops.stored_bytes(butler, f"{state['run']}*"),
            "calibInputs": butlerops.calib_inputs(butler, state["run"], STEPS[request.step].isr_output, data_id),
        }
        write_json(request.state, state)
    written, used = state["written"], state["calibInputs"]
    cleaned = 0
    if request.clean:
        clean_hook = fault_hook("clean", request.state)

        def progress(message: str) -> None:
            log.info("%s", message)
            clean_hook()

        cleaned = butlerops.clean_runs(butler, f"{request.chain}/*", request.clean, [data_id], log=progress)
    if request.clean_collections:
        cleaned += butlerops.remove_collections(butler, request.clean_collections, log=lambda m: log.info("%s", m))
    payload = {
        **sentinel(request, refs[0], state, cleaned, written),
        "calibInputs": used,  # what the ISR read (bias, dark, fiberFlat: not the detectorMap or profiles)
        # every upstream product the job read, as {sentinel: datasetId} when it started: status calls the
        # product STALE once one of them has been rebuilt (pfscalib.tools.status.staleness)
        "inputs": (state.get("identity") or {}).get("inputs", {}),
        "quality": quality,
    }
    # the state first: a kill before the sentinel is written is then recognised as certified
    write_json(request.state, {**state, "status": "certified", "sentinel": payload, "sentinelPath": request.sentinel})
    write_json(request.sentinel, payload)
    if request.held:
        Path(request.held).unlink(missing_ok=True)
    log.info(
        "certified %s %s from %s into %s [%s, %s); cleaned %d intermediates",
        refs[0].datasetType.name, data_id, refs[0].run, request.calib,
        request.begin_date, request.end_date or "unbounded", cleaned,
    )  # fmt: skip
    fault_hook("after-sentinel", request.state)()
    return 0


def assess(butler, request: JobRequest, ref, run: str, timespan) -> dict:
    """The gate: the product's metrics against the limits and against the incumbent it would replace (the
    certification of this camera over the same range), both measured the same way."""
    from pfscalib.job import butler as butlerops
    from pfscalib.job import gate, metrics
    from pfscalib.plan.steps import STEPS

    step = STEPS[request.step]
    limits = load_limits(request.limits)
    visits = len([v for v in request.visits.split(",") if v])
    noise = gate.read_noise(limits, request.arm)
    values = metrics.measure(butler, step.measure, ref, run, request.data_id, visits, noise)
    rules = gate.judge(values, limits, step.metric_prefix, request.arm)
    incumbent = None
    old = butlerops.incumbent(butler, request.calib, step.certified_as, request.data_id, timespan)
    if old is not None and old.run.removesuffix("/certify") != run:
        # a copy made at certification (detectorMap_calib) lives in <run>/certify, its lines in <run>
        old_run = old.run.removesuffix("/certify")
        old_values = metrics.measure(butler, step.measure, old, old_run, request.data_id, visits, noise)
        rules += gate.compare(values, old_values, limits, step.metric_prefix)
        incumbent = {"datasetId": str(old.id), "run": old.run, "metrics": old_values}
    level = gate.verdict(rules)
    accepted = json.loads(request.accept) if request.accept and level == "red" else None
    if accepted and accepted.get("datasetId") != str(ref.id):  # an acceptance names one product, not a camera
        log.warning(
            "gate: the accept entry names dataset %s, this build is %s (rebuilt since): judged again",
            accepted.get("datasetId"), ref.id,
        )  # fmt: skip
        accepted = None
    for rule in rules:
        if rule["level"] != "green":
            log.warning("gate %s %s: %s: %s", request.step, request.data_id, LEVEL_WORDS[rule["level"]], rule["rule"])
    if accepted:
        log.warning("gate: held product accepted by %s: %s", accepted["by"], accepted["reason"])
    word = "accepted" if accepted else LEVEL_WORDS[level]
    return {
        "verdict": word,  # pass / warn / held / accepted (what users see)
        "level": level,  # the worst rule's level (green / yellow / red)
        "failing": gate.failing(rules),
        "metrics": values,
        "rules": rules,
        "incumbent": incumbent,
        "accepted": accepted,
        "limits": {"file": limits["file"], "version": limits["version"]},
    }


def hold(request: JobRequest, ref, quality: dict) -> None:
    """A red product: nothing certified, no sentinel; the record says what and why (pfscalib status shows it)."""
    unit = request.arm + (str(request.spectrograph) if request.spectrograph is not None else "")
    record = {
        "epoch": request.epoch,
        "step": request.step,
        "unit": unit,
        "datasetType": ref.datasetType.name,
        "datasetId": str(ref.id),
        "run": ref.run,
        **quality,
        "held_at": utc_now(),
    }
    entry = accept_entry(request.epoch, request.step, unit, str(ref.id))
    record["accept"] = entry  # the exact accept: entry to paste (this product only; a rebuild is judged again)
    if request.held:
        write_json(request.held, record)
    log.error(
        "held %s %s: %s (not certified; to certify this product anyway, add to the config's accept: %s)",
        request.step, unit, "; ".join(quality["failing"]), entry,
    )  # fmt: skip


def sentinel(request: JobRequest, ref, state: dict, cleaned: int, written: dict[str, list[int]]) -> dict:
    """What was certified, from which run and visits, by which commands and versions, and what the job
    wrote into the datastore ({dataset type: [datasets, bytes]}, before cleaning)."""
    from importlib.metadata import version  # not `import lsst.pipe.base`: 2.4 s per job for a string

    proposal = read_json(request.offset_from) if request.offset_from else None
    lacking = site_lacking(request.epoch, request.arm + str(request.spectrograph or ""))
    return {
        "step": request.step,
        "epoch": request.epoch,
        "datasetType": ref.datasetType.name,
        "dataId": {k: ref.dataId[k] for k in ref.datasetType.dimensions.required},
        "datasetId": str(ref.id),
        "run": ref.run,
        "chain": request.chain,
        "calibCollection": request.calib,
        "validity": {"begin": request.begin_date, "end": request.end_date, "scale": "TAI"},
        "visits": [int(v) for v in request.visits.split(",") if v],
        "commands": [state["argv"], sys.argv],
        "cleaned": {"datasetTypes": request.clean, "count": cleaned},
        "written": written,
        "versions": {name: version(name) for name in ("lsst-daf-butler", "lsst-pipe-base", "pfscalib")},
        "certified_at": utc_now(),
        **({"spectralOffsetProposal": _proposal_summary(request.offset_from, proposal)} if proposal else {}),
        **({"lacking": lacking} if lacking else {}),
    }


def site_lacking(epoch: str, unit: str) -> dict[str, list[str]]:
    """The optional site calibrations the epoch's check found absent for the job's cameras (n: badRefPixels,
    h4Linearity; obs_pfs's ISR only warns), so the product was built without them: {camera: [what, ...]}."""
    from pfscalib.plan import paths

    checked = read_json(paths.check(epoch)) or {}
    return {c: lines for c, lines in checked.get("lacking", {}).items() if c.startswith(unit)}


def _proposal_summary(path: str, proposal: dict) -> dict:
    """Provenance of an `auto` spectralOffset: the value, its score and the runner-up (the grid stays in
    the proposal file)."""
    keys = ("spectralOffset", "reason", "score", "runnerUpScore", "captureRange")
    runner_up = proposal.get("runnerUp") or {}
    return {
        "file": path,
        **{k: proposal.get(k) for k in keys},
        "bestGridOffset": (proposal.get("best") or {}).get("offset"),
        "runnerUpOffset": runner_up.get("offset"),
        "gridPoints": len(proposal.get("grid", [])),
    }
