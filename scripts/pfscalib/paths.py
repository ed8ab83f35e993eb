"""Every file the workflow writes, named once: the rules, the commands and `status` take them from here.

Arguments may be values ("run1") or Snakemake wildcard patterns ("{epoch}").
"""

from __future__ import annotations

import os

REGISTRY = "results/registry/dataset_types.json"  # every pipeline's dataset types are registered
CERTIFICATIONS = "results/qa/certifications.tsv"


def sentinel(step: str, epoch: str, unit: str) -> str:
    """Written last by a job, once its product is certified: the job's Snakemake output."""
    return f"results/certified/{epoch}/{step}/{unit}.json"


STATE_ROOT = "results/state"


def state(step: str, epoch: str, unit: str) -> str:
    """The job's build (identity, RUN, progress) until Snakemake has recorded it finished: what a rerun
    after a kill resumes or recognises as done."""
    return f"{STATE_ROOT}/{epoch}/{step}/{unit}.json"


# A pipeline's acceptance of -c overrides depends on the pipeline and the installed tasks, not on the run:
# remembered per user (as Snakemake's own ~/.cache/snakemake), so a new work directory does not pay it.
PREFLIGHT = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pfscalib", "preflight")


def preflight_pass(root: str, step: str, fingerprint: str) -> str:
    """A step's pipeline accepted its -c overrides and clean list (fingerprint: their content)."""
    return f"{root}/{step}-{fingerprint}.json"


def check(epoch: str) -> str:
    """The epoch's tables passed their checks against the registry."""
    return f"results/checks/{epoch}.json"


def profiles(epoch: str, mode: str) -> str:
    """The epoch's profiles_run of a fibre-profile mode (brn, m) is defined: its name and groups."""
    return f"results/fiberProfilesInputs/{epoch}/{mode}.json"


def pipeline_outputs(digest: str) -> str:
    """The dataset types a pipeline writes (pfscalib.disk), cached by the pipeline's text and overrides."""
    return f"results/disk/pipelines/{digest}.json"


def qa_dir(epoch: str) -> str:
    return f"results/qa/{epoch}"


def demo_marker(datastore: str) -> str:
    return f"{datastore}/demo.json"


def log(*parts: str) -> str:
    """logs/[EPOCH/[STEP/]]NAME.log"""
    return "logs/" + "/".join(parts) + ".log"


def benchmark(*parts: str) -> str:
    """benchmarks/[EPOCH/[STEP/]]NAME.tsv (Snakemake's per-job benchmark files)"""
    return "benchmarks/" + "/".join(parts) + ".tsv"
