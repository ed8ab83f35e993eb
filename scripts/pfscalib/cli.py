"""`pfscalib` command: the job-side steps the rules call, plus user helpers.

    pfscalib pipetask --state FILE -- pipetask run ...   resumable pipetask run
    pfscalib certify ...                                 replace-certify, clean, write the sentinel
    pfscalib job CERTIFY-OPTIONS -- pipetask run ...     both, pipetask as the job's child (what the rules run)
    pfscalib check-visits ...                            visits exist, right type, have raws
    pfscalib define-profiles ... -- defineFiberProfilesInputs.py ...   idempotent
    pfscalib select-visits --epoch E [--kind K] [--where Q]  write a visit table from a registry query
    pfscalib scan-offset | scan-offsets ... -- pipetask run ...   bootstrap task at grid offsets (auto)
    pfscalib propose-offset ... SCAN.json ...           a camera's proposed spectralOffset
    pfscalib qa -- [--repo R] [--drift E] [--table T] ...   QA pictures, drift panels, certification table
    pfscalib propose-offsets --config C [--epoch E]     scan + propose in one process: a config snippet
    pfscalib status [--config C] [--format table|tsv|json] [--wide]   what is certified vs the sentinels
    pfscalib summary [--config C]                        a few lines: certified per epoch and camera
    pfscalib promote --ticket T --tag G [--chain PFS/calib] ...  copy a build into a shared chain
    pfscalib rollback --repo R RECORD                    undo a promotion
    pfscalib plan [--config C] [--budget-mb N] [--cores N]  predicted disk use per step, peak, budget
    pfscalib measure-sizes [--certified DIR]             the disk config measured from finished jobs

This module only parses arguments and dispatches: the job is in pfscalib.job.run, registry operations in
pfscalib.job.butler.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def cmd_pipetask(args: argparse.Namespace) -> int:
    from pfscalib.job import run as job

    return job.run_pipetask(args.command, args.state, done=args.done)


def cmd_qa(args: argparse.Namespace) -> int:
    from pfscalib.job import qa

    return qa.main(args.command)


def cmd_scan_offset(args: argparse.Namespace) -> int:
    from pfscalib.job import scan

    return scan.scan_offset(
        args.repo, args.instrument, args.epoch, args.camera, args.label, args.offset, args.state, args.result,
        args.command, args.log_root,
    )  # fmt: skip


def cmd_scan_offsets(args: argparse.Namespace) -> int:
    from pfscalib.job import scan
    from pfscalib.plan.steps import OFFSET_STEP, STEPS

    field = STEPS[OFFSET_STEP].offset_override.split(":", 1)[1]
    offsets = [int(o) for o in args.offsets.split(",")]
    return scan.scan_offsets(args.repo, args.camera, args.epoch, args.label, field, offsets, args.result, args.command)


def cmd_propose_offset(args: argparse.Namespace) -> int:
    from pfscalib.job import scan

    return scan.propose_offset(args.camera, args.epoch, json.loads(args.search), args.output, args.plot, args.scans)


def cmd_propose_offsets(args: argparse.Namespace) -> int:
    from pfscalib.job import scan
    from pfscalib.plan.config import ConfigError
    from pfscalib.plan.preflight import load

    try:
        wf = load([args.config])
        epoch = args.epoch or next(iter(wf.epochs))
        cameras = _split(args.cameras) or wf.auto_cameras or wf.cameras
        unknown = [c for c in cameras if c not in wf.cameras] + ([epoch] if epoch not in wf.epochs else [])
        if unknown:
            raise ConfigError(args.config, f"not a configured camera or epoch: {', '.join(unknown)}")
    except ConfigError as exc:
        log.error("propose-offsets: %s", exc)
        return 2
    return scan.propose_offsets(wf, epoch, cameras, args.output)


def cmd_certify(args: argparse.Namespace) -> int:
    from pfscalib.job import run as job

    return job.certify(certify_request(args))


def certify_request(args: argparse.Namespace):  # -> job.CertifyRequest
    from pfscalib.job import run as job

    fields = {f.name for f in dataclasses.fields(job.CertifyRequest)}
    return job.CertifyRequest(**{k: v for k, v in vars(args).items() if k in fields})


def cmd_job(args: argparse.Namespace) -> int:
    """A workflow job: pipetask as a subprocess of the job (which forwards an interrupt to it and leaves it
    nothing to outlive), then the certification in the job's own process."""
    from pfscalib.job import run as job

    return job.run_job(certify_request(args), args.command)


def own_problems(butler, args: argparse.Namespace) -> list[str]:
    """The workflow's own collections (--rerun, --calib-chain, --calib-collection, --collection) are
    absent or of their type, and none named in the config is a typo (butlerops.own_collection_problems)."""
    from lsst.daf.butler import CollectionType

    from pfscalib.job.butler import own_collection_problems

    if not (args.calib_chain and args.rerun):
        return []
    wanted = {args.calib_chain: CollectionType.CHAINED}
    wanted |= {c: CollectionType.CALIBRATION for c in args.calib_collection + args.collection}
    return own_collection_problems(butler, args.rerun, wanted, [args.calib_chain, *args.collection])


def _own_collection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rerun", default=None, help="the workflow's rerun (its collections lie under it)")
    p.add_argument("--calib-chain", default=None, help="the build's CHAINED calib collection")
    p.add_argument("--calib-collection", action="append", default=[], help="a CALIBRATION collection in the chain")
    p.add_argument("--collection", action="append", default=[], help="a CALIBRATION collection outside it")


def cmd_check_visits(args: argparse.Namespace) -> int:
    from pfscalib.job.butler import open_butler
    from pfscalib.job.checks import implied_counts, instrument_problems, problems
    from pfscalib.plan.records import write_json

    if not Path(args.repo).exists() and "://" not in args.repo:
        log.error("check-visits: datastore %s does not exist", args.repo)
        return 1
    butler, selection = open_butler(args.repo), json.loads(args.selection)
    # in this order: a wrong instrument or a typo'd collection would make every visit look missing
    found, lacking = instrument_problems(butler, args.instrument) or own_problems(butler, args), {}
    if not found:
        site = json.loads(args.site_calibrations or "{}")
        found, lacking = problems(butler, args.instrument, args.epoch, selection, args.prerequisite, site)
    if found:
        more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
        log.error("check-visits: %s%s", found[0], more)
        return 1
    for camera, lines in sorted(lacking.items()):
        log.warning("check-visits: %s: %s", camera, "; ".join(lines))
    implied = implied_counts(butler, args.instrument, selection)
    write_json(
        args.output,
        {"epoch": args.epoch, "checked": "ok", "inputs": args.inputs_digest, "implied": implied, "lacking": lacking},
    )
    return 0


def cmd_define_profiles(args: argparse.Namespace) -> int:
    """Define the planned profiles_run, or reuse it when it holds exactly these groups and roles; when
    another definition has the name (profiles_run names are shared: the observatory's run18_brn), the same
    with --fallback (the rerun's user's name). The record says which name the jobs use."""
    from pfscalib.job.butler import open_butler, profiles_run_definition
    from pfscalib.plan.records import write_json
    from pfscalib.plan.visits import parse_visit_list

    groups = json.loads(args.groups)
    wanted = {
        n: {"bright": sorted(parse_visit_list(bright)), "dark": sorted(parse_visit_list(dark)) if dark else []}
        for n, (bright, dark) in enumerate(groups)
    }
    butler = open_butler(args.repo)
    names = [args.name] + ([args.fallback] if args.fallback and args.fallback != args.name else [])
    for name in names:
        have = profiles_run_definition(butler, args.instrument, name)
        if have == wanted:
            log.info("profiles_run %s already defined with these groups and roles: reusing it", name)
            break
        if have is None:
            command = [name if arg == args.name else arg for arg in args.command]  # its positional name
            rc = subprocess.call(command)
            if rc:
                return rc
            break
        log.info("profiles_run %s is defined with other groups or roles: not this build's", name)
    else:
        taken = f"profiles_runs {' and '.join(names)} are each" if len(names) > 1 else f"profiles_run {name} is"
        log.error("define-profiles: %s defined with other groups or roles (not this build's)", taken)
        return 1
    record = {"profiles_run": name, "planned": args.name, "groups": groups, "command": args.command}
    write_json(args.output, record)
    return 0


def cmd_select_visits(args: argparse.Namespace) -> int:
    from pfscalib.job.butler import QueryError
    from pfscalib.plan.config import ConfigError
    from pfscalib.tools.select_visits import Request, select, settings

    request = Request(
        args.epoch, args.where, args.kind, tuple(_split(args.cameras)), args.target_name, args.observation_type
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
    """Register every dataset type of the pipelines, and make the workflow's own collections, once before
    parallel jobs: a type registered while another process queries a CALIBRATION collection trips
    daf_butler's cache (seen as "Dataset type should be checked to be calibration by calling code")."""
    from pfscalib.job.butler import ensure_own_collections, open_butler, register_pipeline_dataset_types
    from pfscalib.plan.records import write_json

    butler = open_butler(args.repo, writeable=True)
    found = own_problems(butler, args)  # before any write: a typo must not create a collection
    if found:
        log.error("register-dataset-types: %s", found[0])
        return 1
    register_pipeline_dataset_types(butler, args.pipeline, args.config)
    if args.calib_chain:
        ensure_own_collections(butler, args.calib_chain, args.calib_collection, args.collection)
    write_json(args.output, {"pipelines": args.pipeline})
    return 0


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
    from pfscalib.plan.preflight import load
    from pfscalib.tools.promote import PromotionBusy, PromotionError, check_name_part, promote

    try:
        check_name_part("--ticket", args.ticket)  # before the config or the repository is read
        check_name_part("--tag", args.tag)
        if args.chain is not None:
            check_name_part("--chain", args.chain, slashes=True)
        wf = load([args.config])  # as the Snakefile reads it
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

    try:
        wf = load([args.config])  # as the Snakefile reads it
        predicted = plan(wf.disk, args.budget_mb, args.cores)
        print(format_plan(predicted, wf.disk.unlisted()))
    except ConfigError as exc:
        log.error("plan: %s", exc)
        return 2
    return 0 if predicted.holds else 1


def cmd_measure_sizes(args: argparse.Namespace) -> int:
    import yaml

    from pfscalib.plan.disk import measured_sizes
    from pfscalib.plan.records import read_json

    sentinels = [s for p in sorted(Path(args.certified).rglob("*.json")) if (s := read_json(str(p)))]
    if not any("written" in s for s in sentinels):
        log.error("measure-sizes: no sentinel under %s records what its job wrote", args.certified)
        return 1
    sys.stdout.write(yaml.safe_dump({"disk": measured_sizes(sentinels)}, sort_keys=False))
    return 0


def _certify_options(p: argparse.ArgumentParser) -> None:
    for name in ("--repo", "--chain", "--dataset-type", "--calib", "--begin-date", "--state", "--sentinel",
                 "--step", "--epoch", "--arm"):  # fmt: skip
        p.add_argument(name, required=True)
    p.add_argument("--end-date", default=None)
    p.add_argument("--instrument", default="PFS")
    p.add_argument("--spectrograph", type=int, default=None)
    p.add_argument("--copy-as", default=None)
    p.add_argument("--clean", action="append", default=[])
    p.add_argument("--visits", default="")
    p.add_argument("--needs", action="append", default=[], help="sentinel of a product the job reads")
    p.add_argument("--spectral-offset-from", dest="offset_from", default=None, help="proposal (spectralOffset auto)")
    p.add_argument("--offset-field", default=None, help="LABEL:FIELD the proposal sets, e.g. bootstrap:spectralOffset")
    p.add_argument("--clean-collections", action="append", default=[], help="glob of scan collections to remove")
    p.add_argument("--profiles-from", default=None, help="define-profiles record: the profiles_run the -d query uses")
    p.add_argument("--held", default="", help="where the record of a held product goes")
    p.add_argument("--limits", default=None, help="a site's limits file (default: the shipped one)")
    p.add_argument("--accept", default=None, help="JSON {epoch, step, camera, datasetId, reason, by}: certify it")
    p.add_argument("--log-root", action="append", default=[], help="task logger root whose INFO reaches <label>_log")


def _scan_options(p: argparse.ArgumentParser) -> None:
    for name in ("--repo", "--epoch", "--camera", "--label", "--result"):
        p.add_argument(name, required=True)
    p.add_argument("--instrument", default="PFS")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- pipetask run ...")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="pfscalib", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pipetask", help="run pipetask, resuming an interrupted run of the same job")
    p.add_argument("--state", required=True)
    p.add_argument("--done", default=None, help="written (RUN and chain) once pipetask has succeeded")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_pipetask)
    p = sub.add_parser("certify", help="replace-certify a camera's product, clean, write the sentinel")
    _certify_options(p)
    p.set_defaults(func=cmd_certify)
    p = sub.add_parser("job", help="one workflow job: `pfscalib pipetask` then `pfscalib certify`")
    _certify_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- pipetask run ...")
    p.set_defaults(func=cmd_job)
    p = sub.add_parser(
        "qa", help="QA pictures, drift panels or the certification table (pfscalib.job.qa's options after --)"
    )
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_qa)
    p = sub.add_parser("check-visits", help="check a selection against the registry")
    for name in ("--repo", "--epoch", "--selection", "--output"):
        p.add_argument(name, required=True)
    p.add_argument("--instrument", default="PFS")
    p.add_argument("--prerequisite", action="append", default=[], help="site calibration every camera needs")
    p.add_argument("--site-calibrations", default="", help="JSON: site calibrations per camera")
    p.add_argument("--inputs-digest", default="", help="recorded in the output: what was checked")
    _own_collection_options(p)
    p.set_defaults(func=cmd_check_visits)
    p = sub.add_parser("define-profiles", help="run defineFiberProfilesInputs.py unless already defined")
    for name in ("--repo", "--name", "--output", "--groups"):
        p.add_argument(name, required=True)
    p.add_argument("--fallback", default=None, help="the name to define when --name holds another definition")
    p.add_argument("--instrument", default="PFS")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_define_profiles)
    p = sub.add_parser("select-visits", help="write a visit-selection table from a registry query")
    p.add_argument("--config", default="config/config.yaml", help="its epochs, cameras, datastore, instrument")
    p.add_argument("--epoch", required=True, help="visits that start within this epoch's validity range")
    p.add_argument("--kind", default=None, help="bias, dark, flat (quartz) or arc, as the checks tell them")
    p.add_argument("--cameras", default="", help="comma-separated: only visits with raws of these cameras")
    p.add_argument("--repo", default=None, help="default: the config's datastore")
    p.add_argument("--where", default="", help='registry query, e.g. "visit.day_obs = 20250310"')
    p.add_argument("--target-name", default=None, help="visit.target_name (passed as a bound value)")
    p.add_argument("--observation-type", default=None, help="visit.observation_type (bound value)")
    p.add_argument("--output", default="-")
    p.set_defaults(func=cmd_select_visits)
    p = sub.add_parser("register-dataset-types", help="register the dataset types of pipelines")
    p.add_argument("--repo", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("-p", "--pipeline", action="append", default=[])
    p.add_argument("-c", "--config", action="append", default=[], help="LABEL:KEY=VALUE connection overrides")
    _own_collection_options(p)
    p.set_defaults(func=cmd_register)
    p = sub.add_parser("promote", help="certify a build's products into a shared chain (deliberate, recorded)")
    p.add_argument("--config", default="config/config.yaml")
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
    p = sub.add_parser("scan-offset", help="the bootstrap task at one grid offset (spectralOffset auto)")
    _scan_options(p)
    p.add_argument("--offset", type=int, required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--log-root", action="append", default=[], help="task logger root whose INFO reaches <label>_log")
    p.set_defaults(func=cmd_scan_offset)
    p = sub.add_parser("scan-offsets", help="the bootstrap task at every grid offset, in one process")
    _scan_options(p)
    p.add_argument("--offsets", required=True, help="comma-separated pixels")
    p.set_defaults(func=cmd_scan_offsets)
    p = sub.add_parser("propose-offset", help="a camera's spectralOffset from its scan results")
    for name in ("--epoch", "--camera", "--search", "--output", "--plot"):
        p.add_argument(name, required=True)
    p.add_argument("scans", nargs="+", help="scan result files")
    p.set_defaults(func=cmd_propose_offset)
    p = sub.add_parser("propose-offsets", help="scan and propose spectralOffsets, write a config snippet")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--epoch", default="", help="the epoch whose bootstrap visits are scanned (default: the first)")
    p.add_argument("--cameras", default="", help="comma-separated (default: the auto cameras, else all)")
    p.add_argument("--output", default="-", help="the config snippet (default: stdout)")
    p.set_defaults(func=cmd_propose_offsets)
    p = sub.add_parser("plan", help="predicted disk use per step, the run's peak, whether a budget holds")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--budget-mb", type=int, default=None, help="the --resources disk_mb the run will get")
    p.add_argument("--cores", type=int, default=2, help="the run's --cores (or jobs:)")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("measure-sizes", help="MB per dataset type measured from the sentinels of finished jobs")
    p.add_argument("--certified", default="results/certified", help="the sentinels' directory")
    p.set_defaults(func=cmd_measure_sizes)
    p = sub.add_parser("status", help="camera x calibration table of certifications vs sentinels")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--format", choices=["table", "tsv", "json"], default="table")
    p.add_argument("--wide", action="store_true", help="table: each cell's status in words and validity range")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("summary", help="what was certified per epoch and camera, and where to look (a few lines)")
    p.add_argument("--config", default="config/config.yaml")
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
