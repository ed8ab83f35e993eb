"""One workflow job: pipetask (resuming an interrupted run of the same job), then certify the product,
clean the intermediates and write the sentinel. The state file records the job's RUN between the two."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

from .faults import PipetaskTap, fault_hook, pipetask_progress

log = logging.getLogger(__name__)

EMPTY_GRAPH = "QuantumGraph was empty"
RESUME_FLAGS = ["--extend-run", "--skip-existing", "--clobber-outputs"]


@dataclasses.dataclass(frozen=True)
class CertifyRequest:
    """What to certify where, what to clean, and the job's files (`pfscalib job` options)."""

    repo: str
    chain: str
    dataset_type: str
    calib: str
    begin_date: str
    end_date: str | None
    instrument: str
    arm: str
    spectrograph: int | None
    copy_as: str | None
    clean: list[str]
    step: str
    epoch: str
    visits: str
    state: str
    sentinel: str

    @property
    def data_id(self) -> dict:
        data_id: dict = {"instrument": self.instrument, "arm": self.arm}
        if self.spectrograph is not None:
            data_id["spectrograph"] = self.spectrograph
        return data_id


def write_json(path: str, payload: dict) -> None:
    """Atomic write: a crash never leaves a half-written sentinel or state."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: str) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _arg_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def fingerprint(argv: list[str]) -> list[str]:
    """The pipetask command without -j (changing cores must not restart a run)."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "-j":
            skip = True
            continue
        out.append(token)
    return out


def run_pipetask(argv: list[str], state_path: str, in_process: bool) -> int:
    """`pipetask run ...` into a new RUN of the job's chain, or into the RUN of an interrupted run of the
    same command (same fingerprint), skipping what it already wrote."""
    state = read_json(state_path) or {}
    resume = False
    if state.get("fingerprint") == fingerprint(argv) and state.get("status") in ("started", "pipetask-done"):
        from lsst.daf.butler import Butler

        from .butlerops import collection_type

        butler = Butler.from_config(_arg_after(argv, "-b"))
        # killed before pipetask created its RUN: nothing to resume, start afresh
        resume = collection_type(butler, state["run"]) is not None
    if resume:
        argv = argv + ["--output-run", state["run"]] + RESUME_FLAGS
        log.info("resuming %s after an interrupted job", state["run"])
    else:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        state = {"fingerprint": fingerprint(argv), "run": f"{_arg_after(argv, '-o')}/{stamp}", "status": "started"}
        write_json(state_path, state)
        fault_hook("before-pipetask", state_path)()
        argv = argv + ["--output-run", state["run"]]
    log.info("%s", " ".join(argv))
    if in_process and argv[0] == "pipetask":
        rc, empty = _pipetask_in_process(argv, state_path)
    else:
        rc, empty = _pipetask_subprocess(argv, state_path)
    if rc != 0 and not (resume and empty):
        return rc
    if rc != 0:
        log.info("nothing left to do in the resumed run (empty QuantumGraph): OK")
    write_json(state_path, {**state, "status": "pipetask-done", "argv": argv})
    fault_hook("after-pipetask", state_path)()
    return 0


def _pipetask_subprocess(argv: list[str], state_path: str) -> tuple[int, bool]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    empty = False
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        empty = empty or EMPTY_GRAPH in line
        pipetask_progress(line, state_path, before=proc.kill)
    return proc.wait(), empty


def _pipetask_in_process(argv: list[str], state_path: str) -> tuple[int, bool]:
    """`pipetask run ...` through ctrl_mpexec's own click CLI, in this process: the job then pays the
    middleware imports once instead of twice (pipetask, then certify), ~1.5 s per job."""
    import click
    from lsst.ctrl.mpexec.cli.pipetask import cli

    tap = PipetaskTap(state_path)
    # on "lsst", not the root logger: pipetask's logging.basicConfig must still find the root bare
    logging.getLogger("lsst").addHandler(tap)
    try:
        cli.main(args=argv[1:], prog_name="pipetask", standalone_mode=False)
        return 0, False
    except click.exceptions.Exit as exc:
        return exc.exit_code, False
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code, EMPTY_GRAPH in exc.format_message()
    except click.exceptions.Abort:
        return 1, False
    except Exception:  # a failed quantum, a bad query...: what the pipetask command would print
        traceback.print_exc()
        return 1, False
    finally:
        logging.getLogger("lsst").removeHandler(tap)
        sys.stdout.flush()
        sys.stderr.flush()


def certify(request: CertifyRequest) -> int:
    """Replace-certify the job's product over its validity range, clean its intermediates, write the
    sentinel; then the state file goes (a later rerun of this job starts a fresh run)."""
    from lsst.daf.butler import Butler

    from . import butlerops

    state = read_json(request.state)
    if not state or state.get("status") != "pipetask-done":
        log.error("certify: %s: pipetask has not finished for this job", request.state)
        return 1
    butler = Butler.from_config(request.repo, writeable=True)
    data_id = request.data_id
    refs = butlerops.query_refs(butler, request.dataset_type, state["run"], data_id)
    if len(refs) != 1:
        log.error(
            "certify: expected one %s for %s in %s, found %d", request.dataset_type, data_id, state["run"], len(refs)
        )
        return 1
    timespan = butlerops.make_timespan(request.begin_date, request.end_date)
    with butler.transaction():
        if request.copy_as:  # certifyDetectorMaps.py behaviour: copy candidate -> detectorMap_calib
            refs = butlerops.copy_datasets(butler, refs, request.copy_as, f"{state['run']}/certify")
        butlerops.replace_certification(
            butler, request.calib, refs, timespan, between=fault_hook("certify", request.state)
        )
    cleaned = 0
    if request.clean:
        clean_hook = fault_hook("clean", request.state)

        def progress(message: str) -> None:
            log.info("%s", message)
            clean_hook()

        cleaned = butlerops.clean_runs(butler, f"{request.chain}/*", request.clean, [data_id], log=progress)
    write_json(request.sentinel, sentinel(request, refs[0], state, cleaned))
    Path(request.state).unlink(missing_ok=True)
    log.info(
        "certified %s %s from %s into %s [%s, %s); cleaned %d intermediates",
        refs[0].datasetType.name, data_id, refs[0].run, request.calib,
        request.begin_date, request.end_date or "unbounded", cleaned,
    )  # fmt: skip
    return 0


def sentinel(request: CertifyRequest, ref, state: dict, cleaned: int) -> dict:
    """What was certified, from which run and visits, by which commands and versions."""
    from importlib.metadata import version  # not `import lsst.pipe.base`: 2.4 s per job for a string

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
        "versions": {name: version(name) for name in ("lsst-daf-butler", "lsst-pipe-base", "pfscalib")},
        "certified_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
