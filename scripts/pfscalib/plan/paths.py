"""Every file the workflow writes, named once: the rules, the commands and `status` take them from here.

Arguments may be values ("run1") or Snakemake wildcard patterns ("{epoch}").
"""

from __future__ import annotations

import hashlib
import os
from pathlib import PurePosixPath

DEFAULT_CONFIG = "config/config.yaml"  # what snakemake reads without --configfile (the demo's)
RUNS = "runs"


def default_workdir(datastore: str, rerun: str) -> str:
    """Where a config's results/, logs/, benchmarks/ and .snakemake/ go unless it sets `workdir`:
    runs/<datastore's name>-<hash of its location>/<rerun>, one tree per datastore and rerun, so a site's
    run never mixes with the demo's (whose config sets `workdir: .`) nor with another rerun's."""
    location = datastore if "://" in datastore else os.path.abspath(datastore)
    where = PurePosixPath(location.rstrip("/"))
    name = where.parent.name if where.suffix in (".yaml", ".yml") else where.name  # a butler.yaml
    return f"{RUNS}/{name or 'repo'}-{hashlib.sha1(location.encode()).hexdigest()[:8]}/{rerun}"


REGISTRY = "results/registry/dataset_types.json"  # every pipeline's dataset types are registered
CERTIFICATIONS = "results/qa/certifications.tsv"
QUALITY = "results/qa/quality.tsv"  # the gate's verdict of every product
HOLDS = "results/qa/holds.tsv"  # every hold: its rule, value, limit and what to do (written at the run's end)
DRIFT_DIR = "results/qa/drift"  # one drift panel per camera
OVERVIEW = "results/qa/overview.html"  # the report's first page (pfscalib.job.overview)


def sentinel(step: str, epoch: str, unit: str) -> str:
    """Written last by a job, once its product is certified: the job's Snakemake output."""
    return f"results/certified/{epoch}/{step}/{unit}.json"


HELD_ROOT = "results/held"


def held(step: str, epoch: str, unit: str) -> str:
    """A product the quality gate held (not certified): its metrics and the failing rule."""
    return f"{HELD_ROOT}/{epoch}/{step}/{unit}.json"


STATE_ROOT = "results/state"


def state(step: str, epoch: str, unit: str) -> str:
    """The job's build (identity, RUN, progress) until Snakemake has recorded it finished: what a rerun
    after a kill resumes or recognises as done."""
    return f"{STATE_ROOT}/{epoch}/{step}/{unit}.json"


FORCED_ROOT = "results/forced"


def forced(output: str) -> str:
    """The user forced the job writing `output` in the current run (-F, -R, --forcerun, -f): it starts
    afresh. Written by Snakemake's onstart, removed by the job once its fresh RUN is recorded."""
    return f"{FORCED_ROOT}/{output}"


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
    """The dataset types a pipeline writes (pfscalib.plan.disk), cached by the pipeline's text and overrides."""
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


# spectralOffset `auto` (pfscalib.job.offsets): per epoch and camera, the ISR of the bootstrap pair once, the
# bootstrap task at each grid offset, and the proposal with its picture.
def offset_dir(epoch: str, camera: str) -> str:
    return f"results/offsets/{epoch}/{camera}"


def offset_isr(epoch: str, camera: str) -> str:
    """The ISR of the camera's bootstrap visits is done (its output chain)."""
    return f"{offset_dir(epoch, camera)}/isr.json"


def offset_scan(epoch: str, camera: str, offset: str) -> str:
    """The bootstrap task's numbers at one grid offset (or, offset 'all', at every one: per_camera)."""
    return f"{offset_dir(epoch, camera)}/scan/{offset}.json"


def offset_proposal(epoch: str, camera: str) -> str:
    """The proposed offset, its score and the runner-up: what the bootstrap job uses."""
    return f"{offset_dir(epoch, camera)}/proposal.json"


def offset_plot(epoch: str, camera: str) -> str:
    """Score and RMS against offset, the chosen value and the capture range (in the report)."""
    return f"{offset_dir(epoch, camera)}/proposal.png"
