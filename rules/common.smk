# Shared input functions. The validated configuration lives in one pfscalib.workflow.Workflow object.
import functools
import os
import re
import sys


from pfscalib.steps import STEP_NAMES
from pfscalib.workflow import ConfigError, declared, load as load_workflow

try:
    WF = load_workflow(config, source=",".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml")
except ConfigError as error:
    # One line naming file, row/key and problem, before any job is scheduled.
    sys.exit(f"pfscalib: {error}")


wildcard_constraints:
    epoch="|".join(map(re.escape, WF.epochs)),
    arm="|".join(WF.arms),
    spectrograph="|".join(sorted({c[1:] for c in WF.cameras})),
    step="|".join(STEP_NAMES),


def all_sentinels():
    return WF.all_sentinels()


def unit_of(wildcards):
    """Camera (b1) or, for per-arm steps, arm (b)."""
    return wildcards.arm + wildcards.get("spectrograph", "")


def check_marker(step):
    return f"results/checks/{{epoch}}/{step}.json"


def repo_marker():
    """Checks need the repository; with demo: on a rule of this workflow builds it."""
    return [WF.demo_marker()] if WF.demo_enabled else []


@declared
def epoch_checks(wildcards):
    """Every table of the epoch is checked, and every dataset type registered, before anything writes
    to the registry; ancient: a re-checked table must not rerun jobs whose own visits did not change."""
    return _epoch_checks(wildcards.epoch)


@functools.cache
def _epoch_checks(epoch):  # one list per epoch, not one per job (dry-run time at 50 epochs)
    checks = [ancient(check_marker(s).format(epoch=epoch)) for s in STEP_NAMES]
    return checks + [ancient("results/registry/dataset_types.json")]


def all_checks():
    """Registering dataset types writes to the registry: only after every table passed its checks."""
    return [ancient(check_marker(s).format(epoch=e)) for e in WF.epochs for s in STEP_NAMES]


@declared
def register_command(wildcards, output):
    return WF.register_command(output[0])


def step_inputs(step):
    @declared
    def inputs(wildcards):
        unit = unit_of(wildcards)
        out = {
            "needs": WF.needs(step, wildcards.epoch, unit),
            "checked": epoch_checks(wildcards),
        }
        if step == "fiberProfiles":
            out["profiles"] = f"results/fiberProfilesInputs/{wildcards.epoch}.json"
        return out

    return inputs


def step_visits(step):
    """The job's visits as a plain param: Snakemake's params rerun trigger ignores params that depend
    on threads (like the command), so this one makes an edited table rerun exactly its jobs."""

    @declared
    def visits(wildcards):
        return WF.selection_fingerprint(step, wildcards.epoch, unit_of(wildcards))

    return visits


def step_command(step):
    @declared
    def command(wildcards, output, threads):
        return WF.job_command(step, wildcards.epoch, unit_of(wildcards), threads, output[0])

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
    return WF.check_command(wildcards.step, wildcards.epoch, output[0])


@declared
def define_profiles_command(wildcards, output):
    return WF.define_profiles_command(wildcards.epoch, output[0])


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
