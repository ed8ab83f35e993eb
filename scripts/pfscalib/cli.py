"""`pfscalib`: the commands a person types, and the workflow's jobs the rules run (not listed by --help).

    pfscalib select-visits --epoch E [--kind K] [--where Q]  write a visit table from a registry query
    pfscalib propose-offsets --config C [--epoch E]     scan + propose in one process: a config snippet
    pfscalib status [--config C] [--format table|tsv|json] [--wide]   what is certified vs the sentinels
    pfscalib summary [--config C]                        a few lines: certified per epoch and camera
    pfscalib promote --ticket T --tag G [--chain PFS/calib] ...  copy a build into a shared chain
    pfscalib rollback --repo R RECORD                    undo a promotion
    pfscalib plan [--config C] [--budget-mb N] [--cores N] [--nodes N]  disk per step, peak, budget; the season
    pfscalib plan --guide [--config C] [--cores N]      the run as the guide's commands (pipetask, certify, clean)
    pfscalib measure-sizes [--certified DIR]             the disk config measured from finished jobs

The workflow's jobs (pfscalib.plan.commands builds their command lines, pfscalib.plan.contract their options):

    pfscalib job JOB-OPTIONS -- pipetask run ...         pipetask then certify (what the step rules run)
    pfscalib pipetask --state FILE -- pipetask run ...   resumable pipetask run
    pfscalib certify JOB-OPTIONS                         replace-certify, clean, write the sentinel
    pfscalib check-visits ...                            visits exist, right type, have raws
    pfscalib define-profiles ... -- defineFiberProfilesInputs.py ...   idempotent
    pfscalib register-dataset-types ...                  the pipelines' dataset types, own collections
    pfscalib scan-offset | scan-offsets ... -- pipetask run ...   bootstrap task at grid offsets (auto)
    pfscalib propose-offset ... SCAN.json ...           a camera's proposed spectralOffset
    pfscalib qa -- [--repo R] [--drift E] [--table T] ...   QA pictures, drift panels, certification table

This module only parses arguments and calls one operation per command: the job is in pfscalib.job.run, the
jobs before the steps in pfscalib.job.prepare, the offset scans in pfscalib.job.scan, a person's commands
in pfscalib.tools.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pfscalib.plan import paths
from pfscalib.plan.contract import JobRequest, OwnCollections, PipetaskCommand, ScanRequest

log = logging.getLogger(__name__)


def cmd_pipetask(args: argparse.Namespace) -> int:
    from pfscalib.job import run as job

    return job.run_pipetask(PipetaskCommand.parse(args.command), args.state, done=args.done)


def cmd_qa(args: argparse.Namespace) -> int:
    from pfscalib.job import qa

    return qa.main(args.command)


def cmd_scan_offset(args: argparse.Namespace) -> int:
    from pfscalib.job import scan

    command = PipetaskCommand.parse(args.command)
    return scan.scan_offset(ScanRequest.from_args(args), args.offset, args.state, args.result, command, args.log_root)


def cmd_scan_offsets(args: argparse.Namespace) -> int:
    from pfscalib.job import scan

    offsets = [int(o) for o in _split(args.offsets)]
    return scan.scan_offsets(ScanRequest.from_args(args), offsets, args.result, PipetaskCommand.parse(args.command))


def cmd_propose_offset(args: argparse.Namespace) -> int:
    from pfscalib.job import scan

    return scan.propose_offset(args.camera, args.epoch, json.loads(args.search), args.output, args.plot, args.scans)


def cmd_propose_offsets(args: argparse.Namespace) -> int:
    from pfscalib.job import scan
    from pfscalib.plan.config import ConfigError
    from pfscalib.plan.preflight import enter_workdir, load

    try:
        wf = load([args.config])
        output = args.output if args.output == "-" else os.path.abspath(args.output)
        epoch = args.epoch or next(iter(wf.epochs))
        cameras = _split(args.cameras) or wf.auto_cameras or wf.cameras
        unknown = [c for c in cameras if c not in wf.cameras] + ([epoch] if epoch not in wf.epochs else [])
        if unknown:
            raise ConfigError(args.config, f"not a configured camera or epoch: {', '.join(unknown)}")
    except ConfigError as exc:
        log.error("propose-offsets: %s", exc)
        return 2
    enter_workdir(wf)  # its offset scans and proposals
    return scan.propose_offsets(wf, epoch, cameras, output)


def cmd_certify(args: argparse.Namespace) -> int:
    from pfscalib.job import run as job

    return job.certify(JobRequest.from_args(args))


def cmd_job(args: argparse.Namespace) -> int:
    """A workflow job: pipetask as a subprocess of the job (which forwards an interrupt to it and leaves it
    nothing to outlive), then the certification in the job's own process."""
    from pfscalib.job import run as job

    return job.run_job(JobRequest.from_args(args), PipetaskCommand.parse(args.command))


def cmd_check_visits(args: argparse.Namespace) -> int:
    from pfscalib.job import prepare

    return prepare.check_visits(
        args.repo, args.instrument, args.epoch, json.loads(args.selection), args.prerequisite,
        json.loads(args.site_calibrations or "{}"), OwnCollections.from_args(args), args.inputs_digest, args.output,
    )  # fmt: skip


def cmd_define_profiles(args: argparse.Namespace) -> int:
    from pfscalib.job import prepare

    groups = json.loads(args.groups)
    return prepare.define_profiles(
        args.repo, args.instrument, args.name, args.fallback, groups, args.output, args.command
    )


def cmd_select_visits(args: argparse.Namespace) -> int:
    from pfscalib.job.butler import QueryError
    from pfscalib.plan.config import ConfigError
    from pfscalib.tools.select_visits import Request, select, settings

    request = Request(
        args.epoch,
        args.where,
        args.kind,
        tuple(_split(args.cameras)),
        args.target_name,
        args.observation_type,
        args.fiber_profiles,
    )
    try:
        config = settings(args.config)
        text = select(config, args.repo or config.datastore, request)
    except (ConfigError, QueryError) as exc:
        log.error("select-visits: %s", exc)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from pfscalib.job import prepare

    own = OwnCollections.from_args(args)
    return prepare.register_dataset_types(args.repo, args.pipeline, args.config, own, args.output)


def cmd_status(args: argparse.Namespace) -> int:
    from pfscalib.tools import status

    try:
        return status.main(args.config, args.format, args.wide)
    except Exception as exc:  # one line for the user, e.g. a missing repository
        log.error("status: %s", exc)
        return 2


def cmd_summary(args: argparse.Namespace) -> int:
    from pfscalib.tools import status

    try:
        return status.main_summary(args.config)
    except Exception as exc:  # one line for the user, e.g. a missing repository
        log.error("summary: %s", exc)
        return 2


def _split(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def cmd_promote(args: argparse.Namespace) -> int:
    from pfscalib.plan.config import ConfigError
    from pfscalib.plan.preflight import enter_workdir, load
    from pfscalib.tools.promote import PromotionBusy, PromotionError, check_name_part, promote

    try:
        check_name_part("--ticket", args.ticket)  # before the config or the repository is read
        check_name_part("--tag", args.tag)
        if args.chain is not None:
            check_name_part("--chain", args.chain, slashes=True)
        wf = load([args.config])  # as the Snakefile reads it
        enter_workdir(wf)  # its sentinels
        chain = args.chain or f"{wf.instrument_name}/calib"
        steps, cameras, epochs = _split(args.steps), _split(args.cameras), _split(args.epochs)
        promote(
            wf, chain, args.ticket, args.tag, steps, cameras, epochs,
            copy=not args.no_copy, accept_warnings=args.accept_warnings,
        )  # fmt: skip
    except PromotionBusy as exc:
        log.error("promote: %s", exc)
        return 1
    except (ConfigError, PromotionError, LookupError) as exc:  # LookupError: a build's dataset is gone
        log.error("promote: %s", exc)
        return 2
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from pfscalib.tools.promote import PromotionBusy, PromotionError, rollback

    try:
        rollback(args.repo, args.record)
    except PromotionBusy as exc:
        log.error("rollback: %s", exc)
        return 1
    except PromotionError as exc:
        log.error("rollback: %s", exc)
        return 2
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from pfscalib.plan.config import ConfigError
    from pfscalib.plan.disk import format_plan, plan
    from pfscalib.plan.preflight import load
    from pfscalib.plan.season import Cluster, format_season, predict

    try:
        wf = load([args.config])  # as the Snakefile reads it
        if args.guide:  # the run as the guide's commands, for a scientist to compare with what they type
            print("\n".join(wf.guide(args.cores)))
            return 0
        predicted = plan(wf.disk, args.budget_mb, args.cores * args.nodes)
        print(format_plan(predicted, wf.disk.unlisted()))
        measured = {k: v for k in ("startup_s", "dispatch_s") if (v := getattr(args, k)) is not None}
        cluster = Cluster(args.nodes, args.cores, args.budget_mb, **measured)  # the season (issue #33)
        print(format_season(predict(wf, cluster)))
    except ConfigError as exc:
        log.error("plan: %s", exc)
        return 2
    return 0 if predicted.holds else 1


def cmd_measure_sizes(args: argparse.Namespace) -> int:
    import yaml

    from pfscalib.plan.disk import measured_from

    sizes = measured_from(args.certified)
    if sizes is None:
        log.error("measure-sizes: no sentinel under %s records what its job wrote", args.certified)
        return 1
    sys.stdout.write(yaml.safe_dump({"disk": sizes}, sort_keys=False))
    return 0


def _scan_options(p: argparse.ArgumentParser) -> None:
    ScanRequest.add_arguments(p)
    p.add_argument("--result", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- pipetask run ...")


# What a person types; the other commands are the workflow's jobs (INTERNAL_COMMANDS), run by the rules.
USER_COMMANDS = (
    "status", "summary", "select-visits", "plan", "propose-offsets", "promote", "rollback", "measure-sizes",
)  # fmt: skip
INTERNAL_COMMANDS = (
    "job", "pipetask", "certify", "qa", "check-visits", "define-profiles", "register-dataset-types",
    "scan-offset", "scan-offsets", "propose-offset",
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pfscalib", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="cmd", required=True, metavar="{" + ",".join(USER_COMMANDS) + "}")

    def internal(name: str, what: str) -> argparse.ArgumentParser:
        """A command the rules run: it parses as ever, and a person's `pfscalib --help` does not list it."""
        return sub.add_parser(name, description=what)

    p = internal("pipetask", "run pipetask, resuming an interrupted run of the same job")
    p.add_argument("--state", required=True)
    p.add_argument("--done", default=None, help="written (RUN and chain) once pipetask has succeeded")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_pipetask)
    p = internal("certify", "replace-certify a camera's product, clean, write the sentinel")
    JobRequest.add_arguments(p)
    p.set_defaults(func=cmd_certify)
    p = internal("job", "one workflow job: `pfscalib pipetask` then `pfscalib certify`")
    JobRequest.add_arguments(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- pipetask run ...")
    p.set_defaults(func=cmd_job)
    p = internal("qa", "QA pictures, drift panels or the certification table (pfscalib.job.qa's options after --)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_qa)
    p = internal("check-visits", "check a selection against the registry")
    for name in ("--repo", "--epoch", "--selection", "--output"):
        p.add_argument(name, required=True)
    p.add_argument("--instrument", default="PFS")
    p.add_argument("--prerequisite", action="append", default=[], help="site calibration every camera needs")
    p.add_argument("--site-calibrations", default="", help="JSON: site calibrations per camera")
    p.add_argument("--inputs-digest", default="", help="recorded in the output: what was checked")
    OwnCollections.add_arguments(p)
    p.set_defaults(func=cmd_check_visits)
    p = internal("define-profiles", "run defineFiberProfilesInputs.py unless already defined")
    for name in ("--repo", "--name", "--output", "--groups"):
        p.add_argument(name, required=True)
    p.add_argument("--fallback", default=None, help="the name to define when --name holds another definition")
    p.add_argument("--instrument", default="PFS")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_define_profiles)
    p = sub.add_parser("select-visits", help="write a visit-selection table from a registry query")
    p.add_argument("--config", default=paths.DEFAULT_CONFIG, help="its epochs, cameras, datastore, instrument")
    p.add_argument("--epoch", required=True, help="visits that start within this epoch's validity range")
    p.add_argument("--kind", default=None, help="bias, dark, flat (quartz) or arc, as the checks tell them")
    p.add_argument("--cameras", default="", help="comma-separated: only visits with raws of these cameras")
    p.add_argument("--repo", default=None, help="default: the config's datastore")
    p.add_argument("--where", default="", help='registry query, e.g. "visit.day_obs = 20250310"')
    p.add_argument("--target-name", default=None, help="visit.target_name (passed as a bound value)")
    p.add_argument("--observation-type", default=None, help="visit.observation_type (bound value)")
    p.add_argument(
        "--fiber-profiles",
        action="store_true",
        help="only the fibre-profile frames (by default they are left out: other steps take every fibre lit)",
    )
    p.add_argument("--output", default="-")
    p.set_defaults(func=cmd_select_visits)
    p = internal("register-dataset-types", "register the dataset types of pipelines")
    p.add_argument("--repo", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("-p", "--pipeline", action="append", default=[])
    p.add_argument("-c", "--config", action="append", default=[], help="LABEL:KEY=VALUE connection overrides")
    OwnCollections.add_arguments(p)
    p.set_defaults(func=cmd_register)
    p = sub.add_parser("promote", help="certify a build's products into a shared chain (deliberate, recorded)")
    p.add_argument("--config", default=paths.DEFAULT_CONFIG)
    p.add_argument("--ticket", required=True, help="e.g. PIPE2D-1234 (DMTN-222 collection name part)")
    p.add_argument("--tag", required=True, help="e.g. run18")
    p.add_argument("--chain", default=None, help="shared CHAINED collection (default <instrument>/calib)")
    p.add_argument("--steps", default="", help="comma-separated (default: every product in the calib chain)")
    p.add_argument("--cameras", default="", help="comma-separated cameras or arms (default: all)")
    p.add_argument("--epochs", default="", help="comma-separated (default: all)")
    p.add_argument(
        "--no-copy",
        action="store_true",
        help="certify the build's own datasets instead of copies (obs_pfs copyDatasets.py --no-copy): the "
        "promoted collections then depend on the build's RUNs surviving, and a butler remove-runs of them "
        "empties them",
    )
    p.add_argument(
        "--accept-warnings",
        action="store_true",
        help="promote products the quality gate certified with warnings (held products are never promoted)",
    )
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("rollback", help="restore a chain's definition from before a promotion")
    p.add_argument("--repo", required=True)
    p.add_argument("record", help="the promotion's record, results/promotions/<time>.json")
    p.set_defaults(func=cmd_rollback)
    p = internal("scan-offset", "the bootstrap task at one grid offset (spectralOffset auto)")
    _scan_options(p)
    p.add_argument("--offset", type=int, required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--log-root", action="append", default=[], help="task logger root whose INFO reaches <label>_log")
    p.set_defaults(func=cmd_scan_offset)
    p = internal("scan-offsets", "the bootstrap task at every grid offset, in one process")
    _scan_options(p)
    p.add_argument("--offsets", required=True, help="comma-separated pixels")
    p.set_defaults(func=cmd_scan_offsets)
    p = internal("propose-offset", "a camera's spectralOffset from its scan results")
    for name in ("--epoch", "--camera", "--search", "--output", "--plot"):
        p.add_argument(name, required=True)
    p.add_argument("scans", nargs="+", help="scan result files")
    p.set_defaults(func=cmd_propose_offset)
    p = sub.add_parser("propose-offsets", help="scan and propose spectralOffsets, write a config snippet")
    p.add_argument("--config", default=paths.DEFAULT_CONFIG)
    p.add_argument("--epoch", default="", help="the epoch whose bootstrap visits are scanned (default: the first)")
    p.add_argument("--cameras", default="", help="comma-separated (default: the auto cameras, else all)")
    p.add_argument("--output", default="-", help="the config snippet (default: stdout)")
    p.set_defaults(func=cmd_propose_offsets)
    p = sub.add_parser("plan", help="predicted disk use per step, the run's peak, whether a budget holds")
    p.add_argument("--config", default=paths.DEFAULT_CONFIG)
    p.add_argument("--budget-mb", type=int, default=None, help="the --resources disk_mb the run will get")
    p.add_argument("--cores", type=int, default=2, help="the run's --cores (or jobs:); per node with --nodes")
    p.add_argument("--nodes", type=int, default=1, help="nodes of the cluster, each with --cores")
    p.add_argument("--startup-s", type=float, default=None, help="start-up seconds per job (default: measured)")
    p.add_argument("--dispatch-s", type=float, default=None, help="seconds from inputs made to job submitted")
    p.add_argument(
        "--guide",
        action="store_true",
        help="print the run as the guide's commands in run order (pipetask, certify ...)",
    )
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("measure-sizes", help="MB per dataset type measured from the sentinels of finished jobs")
    p.add_argument("--certified", default="results/certified", help="the sentinels' directory")
    p.set_defaults(func=cmd_measure_sizes)
    p = sub.add_parser("status", help="camera x calibration table of certifications vs sentinels")
    p.add_argument("--config", default=paths.DEFAULT_CONFIG)
    p.add_argument("--format", choices=["table", "tsv", "json"], default="table")
    p.add_argument("--wide", action="store_true", help="table: each cell's status in words and validity range")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("summary", help="what was certified per epoch and camera, and where to look (a few lines)")
    p.add_argument("--config", default=paths.DEFAULT_CONFIG)
    p.set_defaults(func=cmd_summary)
    return top


def setup_logging() -> None:
    """The job's log: our lines as `pfscalib: ...` on stderr (the rule sends it to the job's log file).
    On the workflow's own module loggers, not on "pfscalib" or the root: a task run in this process (the
    offset scan's) logs through the root logger's handlers, and the middleware names a task's logger after
    the top package of the task's module, so the demo's stand-in tasks log as pfscalib.<label> (drp_stella's
    as pfs.<label>)."""
    import pkgutil

    import pfscalib

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pfscalib: %(message)s"))
    for module in pkgutil.iter_modules(pfscalib.__path__):
        logger = logging.getLogger(f"pfscalib.{module.name}")
        if not logger.handlers:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    setup_logging()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
