"""The only place that relies on Snakemake behaviour beyond its documented API (pinned: 9.27.1).
tests/test_snakemake_internals.py fails loudly when the pinned Snakemake changes any of it.

1. Params rerun trigger: Snakemake compares a job's params with the ones recorded for its output, and
   reruns the job when they differ, unless the params function takes input, output, threads or
   resources ("derived" params, never compared). A job's command must trigger: an edited table or -c
   override reruns exactly its jobs. `rerun_trigger` hands the command builder the wildcards only, so
   no edit of the builder can turn the trigger off.
2. Signature reads: Snakemake reads every rule callable's parameters with inspect.signature, about 18
   times per job and, for callable resources, through Resource.evaluate twice per resource and job
   (40,000 calls in a 50-epoch dry run of the 16-camera site). Snakemake's own
   overwrite_function_params records them once instead: measured in bench/README.md (scale).
3. The disk budget: `--resources disk_mb=N` is read back from workflow.global_resources (where
   Snakemake normalises disk=, disk_mib= to disk_mb) to refuse a job larger than the whole budget before any job:
   Snakemake itself would cap the job's disk_mb at N and run it.
4. Forced jobs: which jobs of this run the user forced (-F, -R/--forcerun RULE or FILE, -f), read from the
   DAG in onstart. Snakemake puts the outputs of incomplete jobs (--rerun-incomplete) into the same
   `dag.forcefiles` and flags both `reason.forced`, so the user's request is read from the settings
   (`dag_settings.forcerun`, `forcetargets`) and `dag.forcerules` (rules only: -F, -R, -f's rules), never
   from `forcefiles`: an interrupted job resumes, a forced one is rebuilt (pfscalib.job.run).
6. Recorded jobs: `workflow.persistence._filter_incomplete_keys` (keys: the output paths) tells which
   sentinels Snakemake still marks incomplete (a job started and not recorded finished): onsuccess keeps
   the states of those jobs, which a rerun recognises, and forgets those of recorded ones.
5. The run's jobs: `workflow.dag.needrun_jobs()` (the jobs this run will execute, read in onstart) and
   their wildcards tell which epochs the run builds, whose edited tables the onstart checks again
   (pfscalib.plan.preflight.recheck_edited_epochs).
7. Verdicts are not retried: Snakemake's retries (the profiles' `retries:`) restart every failed job; the
   only place that decides is JobScheduler._handle_error, which compares `job.restart_times` (a property
   returning the rule's `retries`) with the attempt. `verdicts_not_retried` makes that property 0 for a
   job whose state file, written during this run, says it ended on a verdict (held by the quality gate)
   or on a failure retries cannot fix: the job is not submitted again, locally or on SLURM.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable
from typing import Any


def declared(func: Callable) -> Callable:
    """Record func's parameters once, with Snakemake's own hook for callables that cannot be inspected."""
    from snakemake.common import overwrite_function_params

    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def declare_resource_evaluation() -> None:
    """Declare Resource.evaluate's parameters once for the process. They are unchanged (*args, **kwargs),
    so Snakemake passes exactly what it passed before."""
    from snakemake.resources import Resource

    declared(Resource.evaluate)


def rerun_trigger(build: Callable[[Any], str]) -> Callable:
    """A params function of the wildcards only: Snakemake records its value and reruns the job when it
    changes."""

    def param(wildcards):
        return build(wildcards)

    return declared(param)


def is_rerun_trigger(func: Callable) -> bool:
    """Whether Snakemake compares this params function's value across runs (the test's oracle)."""
    from snakemake.rules import Rule

    return not Rule._is_deriving_function(func)


def disk_budget(workflow: Any) -> int | None:
    """The --resources disk_mb (or profile `resources:`) budget in MB, None if unset. Snakemake keeps a
    budget given as disk=2GB or disk_mib=N as disk_mb too."""
    resource = workflow.global_resources.get("disk_mb")
    value = getattr(resource, "value", None)
    return value if isinstance(value, int) else None


def user_forced(workflow: Any) -> tuple[list[str], list[str]]:
    """(outputs of the jobs this run executes because the user forced them, outputs of every job it
    executes). Jobs rerun only because their output is incomplete are not forced."""
    import os

    dag, settings = workflow.dag, workflow.dag_settings
    files = {f if os.path.isabs(f) else os.path.relpath(f) for f in settings.forcerun if not workflow.is_rule(f)}

    def forced(job: Any) -> bool:
        if job in dag.omitforce:
            return False
        return (
            job.rule in dag.forcerules
            or not files.isdisjoint(map(str, job.output))
            or (settings.forcetargets and job in dag.targetjobs)
        )

    jobs = list(dag.needrun_jobs())
    return (
        [str(f) for job in jobs if forced(job) for f in job.output],
        [str(f) for job in jobs for f in job.output],
    )


def incomplete(workflow: Any, outputs: list[str]) -> set[str]:
    """The outputs Snakemake marks incomplete: their jobs started and were never recorded as finished."""
    return set(workflow.persistence._filter_incomplete_keys(outputs))


def epochs_to_run(workflow: Any) -> set[str]:
    """The epochs (wildcard `epoch`) of the jobs this run will execute, as known in onstart."""
    return {job.wildcards.get("epoch") for job in workflow.dag.needrun_jobs()} - {None}


def verdicts_not_retried(state_of: Callable[[Any], str | None], final: Callable[[dict], bool]) -> None:
    """Snakemake restarts a failed job while `job.restart_times` exceeds its attempts (item 7): 0 restarts
    for a job whose state file (`state_of(job)`, None for jobs without one) was written since this Snakemake
    started and is `final` (a verdict, or a failure retries cannot fix). A state from an earlier run is not
    trusted: that run's verdict may not be this attempt's reason to fail."""
    from snakemake.jobs import Job

    since = time.time()
    rule_retries = Job.restart_times.fget

    def restart_times(job: Any) -> int:
        path = state_of(job)
        if path:
            try:
                if os.stat(path).st_mtime >= since:
                    with open(path) as file:
                        if final(json.load(file)):
                            return 0
            except (OSError, ValueError):
                pass  # no state, or one being written: the rule's retries
        return rule_retries(job)

    Job.restart_times = property(restart_times)
