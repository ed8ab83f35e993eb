# Shared input functions. The validated configuration lives in one pfscalib.plan.workflow.Workflow object.
import functools
import os
import re
import sys

from pfscalib.plan import paths
from pfscalib.internals.snakemake import (
    declare_resource_evaluation,
    declared,
    disk_budget,
    epochs_to_run,
    incomplete,
    rerun_trigger,
    user_forced,
    verdicts_not_retried,
)
from pfscalib.plan.steps import OFFSET_STEP, STEPS, priority as step_priority
from pfscalib.plan import preflight
from pfscalib.plan.config import ConfigError
from pfscalib.plan.disk import twin_scale
from pfscalib.plan.realsite import TWIN_ENV
from pfscalib.plan.records import ends_retries

declare_resource_evaluation()

CONFIG_FILES = [str(f) for f in workflow.overwrite_configfiles] or [paths.DEFAULT_CONFIG]
CONFIG_SOURCE = CONFIG_FILES[0]
try:
    WF = preflight.load(CONFIG_FILES, config)
except ConfigError as error:
    # One line naming file, row/key and problem, before any job is scheduled (sys.exit: no traceback).
    sys.exit(f"pfscalib: {error}")
# The run's tree (results/, logs/, .snakemake/) is the config's workdir: a config read from here names
# itself by an absolute path in the commands that run there.
if os.path.abspath(WF.workdir) != os.getcwd():
    CONFIG_SOURCE = os.path.abspath(CONFIG_SOURCE)
# The demo's timing twin (config demo.twin.scale): every job, local or on SLURM, reads it from the environment.
if twin_scale(WF.config):
    os.environ[TWIN_ENV] = str(twin_scale(WF.config))
# A job larger than the whole --resources disk_mb budget: one line before any job (Snakemake itself
# would cap the job's disk_mb at the budget and run it).
if problem := WF.budget_problem(disk_budget(workflow)):
    sys.exit(f"pfscalib: {problem}")


def preflight_environment():
    """onstart (a real run, not -n): datastore, executables, pipelines, -c overrides, before any job;
    then the jobs the user forced are marked to start from scratch (pfscalib.job.run)."""
    try:
        preflight.environment(WF)
        preflight.recheck_edited_epochs(WF, sorted(epochs_to_run(workflow) & set(WF.epochs)))
    except ConfigError as error:
        sys.exit(f"pfscalib: {error}")
    from pfscalib.plan.limits import limits_note
    from pfscalib.plan.records import mark_forced

    note = limits_note(WF.config.get("limits"))
    if note:  # a site that sets no limits: is told once which limits its products are judged by
        print(f"pfscalib: {note}", file=sys.stderr)

    forced, _ = user_forced(workflow)
    if mark_forced(forced):
        print(
            f"pfscalib: {len(forced)} forced job(s) start from scratch (a fresh RUN, no resume)",
            file=sys.stderr,
        )


wildcard_constraints:
    epoch="|".join(map(re.escape, WF.epochs)),
    arm="|".join(WF.arms),
    spectrograph="|".join(sorted({c[1:] for c in WF.cameras})),
    mode="|".join(WF.modes()),


def unit_of(wildcards):
    """Camera (b1) or, for per-arm steps, arm (b)."""
    return wildcards.arm + wildcards.get("spectrograph", "")


def step_job_state(job):
    """A step job's state file (None for other jobs): the profiles' retries skip a job it says ended on a
    verdict (held) or on a failure retries cannot fix (docs/recovery.md)."""
    if job.rule.name not in STEPS:
        return None
    return paths.state(job.rule.name, job.wildcards.epoch, unit_of(job.wildcards))


verdicts_not_retried(step_job_state, ends_retries)


def repo_marker():
    """Checks need the repository; with demo: on a rule of this workflow builds it."""
    return [paths.demo_marker(WF.datastore)] if WF.demo_enabled else []


def checked(epoch="{epoch}"):
    """The epoch's tables passed their checks; ancient: a re-checked table must not rerun jobs whose
    own visits did not change."""
    return ancient(paths.check(epoch))


@functools.cache  # one list per epoch, not one per job (fiberNorms asks per job)
def epoch_checks(epoch="{epoch}"):
    """The epoch's tables are checked, and every dataset type registered, before anything writes
    to the registry."""
    return [checked(epoch), ancient(paths.REGISTRY)]


def step_inputs(step, proposal=True):
    """The sentinels the job's inputs come from (its camera's, its lender's, or every camera of its arm;
    none for a product its camera's ISR does not read: pfscalib.plan.steps.ARMS), its epoch's check and the
    dataset-type registration, the profiles_run of its camera's mode where the step reads one, and with
    spectralOffset auto the camera's proposal (proposal=False: the scan's own ISR job)."""

    @declared
    def inputs(wildcards):
        unit = unit_of(wildcards)
        profiles = [paths.profiles(wildcards.epoch, WF.mode(unit))] if step.profile_groups else []
        proposed = []
        if proposal and step.offset_override and unit in WF.auto_cameras:
            proposed = [paths.offset_proposal(wildcards.epoch, unit)]
        return WF.needs(step.name, wildcards.epoch, unit) + epoch_checks(wildcards.epoch) + profiles + proposed

    return inputs


def step_command(step):
    """The job's command, without -j (the shell line appends `-j {threads}`): the job's params rerun
    trigger, so an edited table or -c override reruns exactly its jobs."""
    return rerun_trigger(lambda wildcards: WF.commands.job(step.name, wildcards.epoch, unit_of(wildcards)))


def step_guide(step):
    """What the job does after pipetask (certify, clean) as the guide's commands, comment lines before its
    command (-n -p prints them, bash skips them). Takes output: not a rerun trigger (the command is, and
    carries the same request)."""

    @declared
    def guide(wildcards, output):
        return WF.commands.guide_comments(step.name, wildcards.epoch, unit_of(wildcards))

    return guide


def step_threads(step):
    @declared
    def threads(wildcards):
        return WF.job_threads(step.name, wildcards.epoch, unit_of(wildcards))

    return threads


def step_mem_mb(step):
    @declared
    def mem_mb(wildcards, attempt):
        return WF.setting(step.name, "mem_mb", 2000) * attempt

    return mem_mb


def step_runtime(step):
    @declared
    def runtime(wildcards, attempt):
        return WF.setting(step.name, "runtime", 60) * attempt

    return runtime


def step_disk_mb(step):
    """The MB the job writes into the datastore (intermediates and products): with --resources
    disk_mb=N, Snakemake keeps the running jobs' sum under N."""

    @declared
    def disk_mb(wildcards):
        return WF.disk_mb(step.name, wildcards.epoch, unit_of(wildcards))

    return disk_mb


def site_resources():
    """SLURM site values (partition, account, qos, constraint) from PFSCALIB_SLURM_* variables."""
    return WF.site_resources(os.environ)


@declared
def check_command(wildcards, output):
    # Takes `output` on purpose: not a params rerun trigger. A re-run check would make Snakemake 9.27
    # skip the rerun test of every job behind its ancient() marker (needrun jobs "mask" their
    # dependants, and the mask is not undone across ancient edges), so an edited table would not
    # rerun its own jobs. An edited epoch is checked again by the onstart instead, before any job
    # (preflight.recheck_edited_epochs: the check's output records what it checked).
    return WF.commands.check(wildcards.epoch, output[0])


@declared
def scan_results(wildcards):
    return WF.commands.scan_results(wildcards.epoch, unit_of(wildcards))


@declared
def qa_command(wildcards, input, output):
    return WF.commands.qa(list(input), output[0])


@declared
def drift_command(wildcards, input, output):
    return WF.commands.drift(list(input), output[0])


@declared
def quality_command(wildcards, input, output):
    return WF.commands.quality_table(list(input), output[0])


@declared
def epoch_sentinels(wildcards):
    return WF.epoch_sentinels(wildcards.epoch)


def report_targets():
    return [paths.qa_dir(epoch) for epoch in WF.epochs] + [
        paths.DRIFT_DIR,
        paths.QUALITY,
        paths.CERTIFICATIONS,
        paths.OVERVIEW,
    ]


def forget_finished_jobs():
    """Snakemake has recorded every job of this successful run: their build states can go (see
    pfscalib.job.run)."""
    from pfscalib.plan.records import forget_finished, write_holds

    forget_finished(paths.STATE_ROOT, lambda sentinels: incomplete(workflow, sentinels))
    write_holds(paths.HELD_ROOT)  # holds of earlier runs stay listed until certified


def report_held():
    """One line on stderr: the products held by the quality gate (results/held), and the failing rules; then
    the accept: entry of each; every hold in results/qa/holds.tsv."""
    from pfscalib.plan.records import held_summary, write_holds

    write_holds(paths.HELD_ROOT)
    line = held_summary(paths.HELD_ROOT)
    if line:
        print(f"pfscalib: {line}", file=sys.stderr)
