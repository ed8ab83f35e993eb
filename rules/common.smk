# Shared input functions. The validated configuration lives in one pfscalib.workflow.Workflow object.
import functools
import os
import re
import sys


from pfscalib.steps import STEPS, priority as step_priority
from pfscalib.workflow import ConfigError, declare_resource_evaluation, declared, load as load_workflow

declare_resource_evaluation()

try:
    WF = load_workflow(config, source=",".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml")
except ConfigError as error:
    # One line naming file, row/key and problem, before any job is scheduled.
    sys.exit(f"pfscalib: {error}")


wildcard_constraints:
    epoch="|".join(map(re.escape, WF.epochs)),
    arm="|".join(WF.arms),
    spectrograph="|".join(sorted({c[1:] for c in WF.cameras})),


def all_sentinels():
    return WF.all_sentinels()


def unit_of(wildcards):
    """Camera (b1) or, for per-arm steps, arm (b)."""
    return wildcards.arm + wildcards.get("spectrograph", "")


# Markers the rules write. Step and fiberProfilesInputs commands are functions of the wildcards only
# (they name these paths rather than take `output`): Snakemake's params rerun trigger skips params
# derived from output, and an edited table must rerun exactly its jobs.
REGISTRY = "results/registry/dataset_types.json"


def check_marker(epoch):
    return f"results/checks/{epoch}.json"


def profiles_marker(epoch):
    return f"results/fiberProfilesInputs/{epoch}.json"


def repo_marker():
    """Checks need the repository; with demo: on a rule of this workflow builds it."""
    return [WF.demo_marker()] if WF.demo_enabled else []


def checked(epoch="{epoch}"):
    """The epoch's tables passed their checks; ancient: a re-checked table must not rerun jobs whose
    own visits did not change."""
    return ancient(check_marker(epoch))


@functools.cache  # one list per epoch, not one per job (fiberNorms asks per job)
def epoch_checks(epoch="{epoch}"):
    """The epoch's tables are checked, and every dataset type registered, before anything writes
    to the registry. Patterns by default, not a function: Snakemake then calls nothing per job
    (dry-run time)."""
    return [checked(epoch), ancient(REGISTRY)]


def all_checks():
    """Registering dataset types writes to the registry: only after every table passed its checks."""
    return [checked(e) for e in WF.epochs]


def register_command():
    return WF.register_command(REGISTRY)


def step_inputs(step):
    """The sentinels the job's inputs come from, its epoch's check and the dataset-type registration
    (and for fiberProfiles, the epoch's fiberProfilesInputs). A per-camera step reads its own camera's
    products: patterns. fiberNorms reads every spectrograph of its arm: a function of the cameras."""
    if not STEPS[step].per_arm:
        needs = WF.needs(step, "{epoch}", "{arm}{spectrograph}") + epoch_checks()
        return needs + [profiles_marker("{epoch}")] if step == "fiberProfiles" else needs

    @declared
    def inputs(wildcards):
        return WF.needs(step, wildcards.epoch, wildcards.arm) + epoch_checks(wildcards.epoch)

    return inputs


def step_command(step):
    """A function of the wildcards only, and without -j (the shell line appends `-j {threads}`): Snakemake's
    params rerun trigger ignores params derived from output or threads, and this one must trigger, so
    an edited table or -c override reruns exactly its jobs."""

    @declared
    def command(wildcards):
        unit = unit_of(wildcards)
        return WF.job_command(step, wildcards.epoch, unit, WF.sentinel(step, wildcards.epoch, unit))

    return command


def step_threads(step):
    @declared
    def threads(wildcards):
        return WF.job_threads(step, wildcards.epoch, unit_of(wildcards))

    return threads


def step_mem_mb(step):
    @declared
    def mem_mb(wildcards, attempt):
        return WF.setting(step, "mem_mb", 2000) * attempt

    return mem_mb


def site_resources():
    """SLURM site values (partition, account, qos, constraint) from PFSCALIB_SLURM_* variables;
    absent variables add nothing (the plugin would pass an empty --qos '')."""
    return WF.site_resources(os.environ)


def step_runtime(step):
    @declared
    def runtime(wildcards, attempt):
        return WF.setting(step, "runtime", 60) * attempt

    return runtime


@declared
def check_command(wildcards, output):
    # Takes `output` on purpose: not a params rerun trigger. A re-run check would make Snakemake 9.27
    # skip the rerun test of every job behind its ancient() marker (needrun jobs "mask" their
    # dependants, and the mask is not undone across ancient edges), so an edited table would not
    # rerun its own jobs. Edited visits are checked by pipetask itself.
    return WF.check_command(wildcards.epoch, output[0])


@declared
def define_profiles_command(wildcards):
    return WF.define_profiles_command(wildcards.epoch, profiles_marker(wildcards.epoch))


@declared
def epoch_sentinels(wildcards):
    return WF.epoch_sentinels(wildcards.epoch)


@declared
def qa_command(wildcards, input, output):
    return WF.qa_command(list(input), output[0])


@declared
def status_command(wildcards):
    return WF.status_command(",".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml")


def report_targets():
    return [f"results/qa/{epoch}" for epoch in WF.epochs] + ["results/qa/certifications.tsv"]
