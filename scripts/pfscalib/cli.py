"""`pfscalib` command: the job-side steps the rules call, plus user helpers.

    pfscalib pipetask --state FILE -- pipetask run ...   resumable pipetask run
    pfscalib certify ...                                 replace-certify, clean, write the sentinel
    pfscalib job CERTIFY-OPTIONS -- pipetask run ...     both in one process (what the rules run)
    pfscalib check-visits ...                            visits exist, right type, have raws
    pfscalib define-profiles ... -- defineFiberProfilesInputs.py ...   idempotent
    pfscalib select-visits --repo R --where Q --epoch E  write a visit table from a registry query
    pfscalib status [--config C] [--format table|tsv|json]   what is certified vs the sentinels
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

EMPTY_GRAPH = "QuantumGraph was empty"
RESUME_FLAGS = ["--extend-run", "--skip-existing", "--clobber-outputs"]


FAULT_POINTS = ("before-pipetask", "pipetask", "after-pipetask", "certify", "clean")


def fault_due(point: str, job: str) -> bool:
    """Test seam for the fault-injection tests (inert unless PFSCALIB_FAULT is set): True once per
    job and point listed in PFSCALIB_FAULT (comma-separated), remembered in PFSCALIB_FAULT_DIR."""
    if point not in os.environ.get("PFSCALIB_FAULT", "").split(","):
        return False
    marker = Path(os.environ["PFSCALIB_FAULT_DIR"]) / f"{point}--{job.replace('/', '_')}"
    if marker.exists():
        return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return True


def kill_self() -> None:
    print("pfscalib: injected fault: SIGKILL", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def fault_hook(point: str, job: str) -> Callable[..., None]:
    def hook(*_args: object) -> None:
        if fault_due(point, job):
            kill_self()

    return hook


def _write_json(path: str, payload: dict) -> None:
    """Atomic write: a crash never leaves a half-written sentinel or state."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(json.dumps(payload, indent=1, default=str))
    os.replace(tmp, path)


def _read_json(path: str) -> dict | None:
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


def cmd_pipetask(args: argparse.Namespace) -> int:
    argv = args.command
    state = _read_json(args.state) or {}
    resume = False
    if state.get("fingerprint") == fingerprint(argv) and state.get("status") in ("started", "pipetask-done"):
        from lsst.daf.butler import Butler

        from .butlerops import collection_type

        butler = Butler.from_config(_arg_after(argv, "-b"))
        # killed before pipetask created its RUN: nothing to resume, start afresh
        resume = collection_type(butler, state["run"]) is not None
    if resume:
        argv = argv + ["--output-run", state["run"]] + RESUME_FLAGS
        print(f"pfscalib: resuming {state['run']} after an interrupted job", flush=True)
    else:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        state = {"fingerprint": fingerprint(argv), "run": f"{_arg_after(argv, '-o')}/{stamp}", "status": "started"}
        _write_json(args.state, state)
        fault_hook("before-pipetask", args.state)()
        argv = argv + ["--output-run", state["run"]]
    print("pfscalib: " + " ".join(argv), flush=True)
    if args.in_process and argv[0] == "pipetask":
        rc, empty = _pipetask_in_process(argv, args.state)
    else:
        rc, empty = _pipetask_subprocess(argv, args.state)
    if rc != 0 and not (resume and empty):
        return rc
    if rc != 0:
        print("pfscalib: nothing left to do in the resumed run (empty QuantumGraph): OK", flush=True)
    _write_json(args.state, {**state, "status": "pipetask-done", "argv": argv})
    fault_hook("after-pipetask", args.state)()
    return 0


QUANTA_DONE = re.compile(r"Executed [1-9]\d* quanta successfully")


def _pipetask_subprocess(argv: list[str], state: str) -> tuple[int, bool]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    empty = False
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        empty = empty or EMPTY_GRAPH in line
        if QUANTA_DONE.search(line) and fault_due("pipetask", state):  # some quanta done, others not
            proc.kill()
            kill_self()
    return proc.wait(), empty


class _FaultTap(logging.Handler):
    """Fault point "pipetask" for the in-process run: the executor's progress log line."""

    def __init__(self, state: str):
        super().__init__()
        self.state = state

    def emit(self, record: logging.LogRecord) -> None:
        if QUANTA_DONE.search(record.getMessage()) and fault_due("pipetask", self.state):
            kill_self()


def _pipetask_in_process(argv: list[str], state: str) -> tuple[int, bool]:
    """`pipetask run ...` through ctrl_mpexec's own click CLI, in this process: the job then pays the
    middleware imports once instead of twice (pipetask, then certify), ~1.5 s per job."""
    import click
    from lsst.ctrl.mpexec.cli.pipetask import cli

    tap = _FaultTap(state)
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


def cmd_job(args: argparse.Namespace) -> int:
    """A workflow job in one interpreter: pipetask runs in-process (when it is this environment's
    `pipetask`), so the middleware is imported once per job, not once for pipetask and again to certify."""
    return cmd_pipetask(args) or cmd_certify(args)


def cmd_certify(args: argparse.Namespace) -> int:
    from lsst.daf.butler import Butler

    from . import butlerops

    state = _read_json(args.state)
    if not state or state.get("status") != "pipetask-done":
        print(f"pfscalib certify: {args.state}: pipetask has not finished for this job", file=sys.stderr)
        return 1
    butler = Butler.from_config(args.repo, writeable=True)
    data_id = {"instrument": args.instrument, "arm": args.arm}
    if args.spectrograph is not None:
        data_id["spectrograph"] = args.spectrograph
    refs = butlerops.query_refs(butler, args.dataset_type, state["run"], data_id)
    if len(refs) != 1:
        print(f"pfscalib certify: expected one {args.dataset_type} for {data_id} in {state['run']}, found {len(refs)}",
              file=sys.stderr)
        return 1
    timespan = butlerops.make_timespan(args.begin_date, args.end_date)
    with butler.transaction():
        if args.copy_as:  # certifyDetectorMaps.py behaviour: copy candidate -> detectorMap_calib
            refs = butlerops.copy_datasets(butler, refs, args.copy_as, f"{state['run']}/certify")
        butlerops.replace_certification(butler, args.calib, refs, timespan,
                                        between=fault_hook("certify", args.state))
    cleaned = (butlerops.clean_runs(butler, f"{args.chain}/*", args.clean, [data_id],
                                    log=_log_and(fault_hook("clean", args.state))) if args.clean else 0)
    from importlib.metadata import version  # not `import lsst.pipe.base`: 2.4 s per job for a string

    ref = refs[0]
    _write_json(args.sentinel, {
        "step": args.step, "epoch": args.epoch, "datasetType": ref.datasetType.name,
        "dataId": {k: ref.dataId[k] for k in ref.datasetType.dimensions.required},
        "datasetId": str(ref.id), "run": ref.run, "chain": args.chain, "calibCollection": args.calib,
        "validity": {"begin": args.begin_date, "end": args.end_date, "scale": "TAI"},
        "visits": [int(v) for v in args.visits.split(",") if v], "commands": [state["argv"], sys.argv],
        "cleaned": {"datasetTypes": args.clean, "count": cleaned},
        "versions": {name: version(name) for name in ("lsst-daf-butler", "lsst-pipe-base", "pfscalib")},
        "certified_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    })
    Path(args.state).unlink(missing_ok=True)  # done: a later rerun of this job starts a fresh run
    print(f"pfscalib: certified {ref.datasetType.name} {data_id} from {ref.run} into {args.calib} "
          f"[{args.begin_date}, {args.end_date or 'unbounded'}); cleaned {cleaned} intermediates")
    return 0


def _log_and(hook: Callable[..., None]) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(message, flush=True)
        hook()

    return log


def cmd_check_visits(args: argparse.Namespace) -> int:
    from lsst.daf.butler import Butler, CollectionType

    from .butlerops import collection_type
    from .steps import STEPS

    butler = Butler.from_config(args.repo)
    selection = json.loads(args.selection)  # {step: {"collections": [...], "units": {unit: [visits]}}}
    wanted = sorted({v for s in selection.values() for visits in s["units"].values() for v in visits})
    bind = {"inst": args.instrument, "v": wanted}
    records = {r.id: r for r in butler.query_dimension_records("visit", where="instrument = inst AND visit IN (v)",
                                                               bind=bind, explain=False)}
    # each step's input collections that exist (PFS/bootstrap etc. appear only later in the chain),
    # without CALIBRATION ones (raws live in RUNs or chains of RUNs)
    types = {c: collection_type(butler, c) for s in selection.values() for c in s["collections"]}
    raws: dict[tuple[str, ...], set[tuple[int, str]]] = {}
    problems = []
    for step, wanted_step in selection.items():
        collections = tuple(c for c in wanted_step["collections"]
                            if types[c] not in (None, CollectionType.CALIBRATION))
        if collections not in raws:  # steps share input collections: one query per distinct set
            raws[collections] = {
                (ref.dataId["visit"], f"{ref.dataId['arm']}{ref.dataId['spectrograph']}")
                for ref in butler.query_datasets("raw", collections=list(collections),
                                                 where="instrument = inst AND visit IN (v)", bind=bind,
                                                 find_first=False, explain=False)}
        allowed = STEPS[step].observation_types
        for unit, visits in wanted_step["units"].items():
            for visit in visits:
                record = records.get(visit)
                if record is None:
                    problems.append(f"{step} epoch {args.epoch}: visit {visit} is not in the registry")
                elif (record.observation_type or "").lower() not in allowed:
                    problems.append(f"{step} epoch {args.epoch}: visit {visit} is a {record.observation_type!r}, "
                                    f"not {' or '.join(allowed)}")
                elif not any(v == visit and c.startswith(unit) for v, c in raws[collections]):
                    problems.append(f"{step} epoch {args.epoch}: visit {visit} has no raw for {unit}")
    if problems:
        print(f"pfscalib check-visits: {problems[0]}" + (f" (and {len(problems) - 1} more problems)"
                                                         if len(problems) > 1 else ""), file=sys.stderr)
        return 1
    _write_json(args.output, {"epoch": args.epoch, "visits": len(wanted), "checked": "ok"})
    return 0


def cmd_define_profiles(args: argparse.Namespace) -> int:
    from lsst.daf.butler import Butler

    butler = Butler.from_config(args.repo)
    exists = bool(list(butler.query_dimension_records("profiles_run", where="instrument = i AND profiles_run = n",
                                                      bind={"i": args.instrument, "n": args.name}, explain=False)))
    if exists:
        print(f"pfscalib: profiles_run {args.name} already defined (same content): skipping")
    else:
        rc = subprocess.call(args.command)
        if rc:
            return rc
    _write_json(args.output, {"profiles_run": args.name, "command": args.command})
    return 0


def cmd_select_visits(args: argparse.Namespace) -> int:
    from lsst.daf.butler import Butler

    butler = Butler.from_config(args.repo)
    # user values go in as bind parameters, never spliced into the query text
    clauses, bind = ["instrument = inst"], {"inst": args.instrument}
    if args.where:
        clauses.append(f"({args.where})")
    if args.target_name is not None:
        clauses.append("visit.target_name = target")
        bind["target"] = args.target_name
    if args.observation_type is not None:
        clauses.append("visit.observation_type = obstype")
        bind["obstype"] = args.observation_type
    records = butler.query_dimension_records("visit", where=" AND ".join(clauses), bind=bind, order_by=["visit"],
                                             explain=False)
    out = sys.stdout if args.output == "-" else open(args.output, "w")
    print("epoch\tvisits\tcomment", file=out)
    for r in records:
        print(f"{args.epoch}\t{r.id}\t{r.observation_type} {r.target_name} {r.timespan.begin.utc.isot[:19]}", file=out)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    """Register every dataset type of the pipelines once, before parallel jobs: a type registered
    while another process queries a CALIBRATION collection trips daf_butler's cache (seen as
    "Dataset type should be checked to be calibration by calling code")."""
    from lsst.daf.butler import Butler
    from lsst.pipe.base import Pipeline

    butler = Butler.from_config(args.repo, writeable=True)
    for path in args.pipeline:
        pipeline = Pipeline.from_uri(os.path.expandvars(path))
        for override in args.config:
            label, _, assignment = override.partition(":")
            if label in pipeline.task_labels:
                key, _, value = assignment.partition("=")
                pipeline.addConfigOverride(label, key, value)
        pipeline.to_graph(registry=butler.registry).register_dataset_types(butler)
    _write_json(args.output, {"pipelines": args.pipeline})
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from . import status

    try:
        return status.main(args.config, args.format)
    except Exception as exc:  # one line for the user, e.g. a missing repository
        print(f"pfscalib status: {exc}", file=sys.stderr)
        return 2


def _certify_options(p: argparse.ArgumentParser) -> None:
    for name in ("--repo", "--chain", "--dataset-type", "--calib", "--begin-date", "--state", "--sentinel",
                 "--step", "--epoch", "--arm"):
        p.add_argument(name, required=True)
    p.add_argument("--end-date", default=None)
    p.add_argument("--instrument", default="PFS")
    p.add_argument("--spectrograph", type=int, default=None)
    p.add_argument("--copy-as", default=None)
    p.add_argument("--clean", action="append", default=[])
    p.add_argument("--visits", default="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pfscalib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipetask", help="run pipetask, resuming an interrupted run of the same job")
    p.add_argument("--state", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_pipetask, in_process=False)
    p = sub.add_parser("certify", help="replace-certify a camera's product, clean, write the sentinel")
    _certify_options(p)
    p.set_defaults(func=cmd_certify)
    p = sub.add_parser("job", help="one workflow job: `pfscalib pipetask` then `pfscalib certify`, one process")
    _certify_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- pipetask run ...")
    p.set_defaults(func=cmd_job, in_process=True)
    p = sub.add_parser("check-visits", help="check a selection against the registry")
    for name in ("--repo", "--epoch", "--selection", "--output"):
        p.add_argument(name, required=True)
    p.add_argument("--instrument", default="PFS")
    p.set_defaults(func=cmd_check_visits)
    p = sub.add_parser("define-profiles", help="run defineFiberProfilesInputs.py unless already defined")
    for name in ("--repo", "--name", "--output"):
        p.add_argument(name, required=True)
    p.add_argument("--instrument", default="PFS")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_define_profiles)
    p = sub.add_parser("select-visits", help="write a visit-selection table from a registry query")
    p.add_argument("--repo", required=True)
    p.add_argument("--where", default="", help="registry query, e.g. \"visit.day_obs = 20250310\"")
    p.add_argument("--target-name", default=None, help="visit.target_name (passed as a bound value)")
    p.add_argument("--observation-type", default=None, help="visit.observation_type (bound value)")
    p.add_argument("--epoch", required=True)
    p.add_argument("--instrument", default="PFS")
    p.add_argument("--output", default="-")
    p.set_defaults(func=cmd_select_visits)
    p = sub.add_parser("register-dataset-types", help="register the dataset types of pipelines")
    p.add_argument("--repo", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("-p", "--pipeline", action="append", default=[])
    p.add_argument("-c", "--config", action="append", default=[], help="LABEL:KEY=VALUE connection overrides")
    p.set_defaults(func=cmd_register)
    p = sub.add_parser("status", help="camera x calibration table of certifications vs sentinels")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--format", choices=["table", "tsv", "json"], default="table")
    p.set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
