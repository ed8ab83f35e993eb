"""A step's pipeline as pipetask builds it: the YAML with the step's `-c LABEL:KEY=VALUE` overrides applied.
One loader for the preflight, the disk estimate, dataset-type registration and the offset scan."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pfscalib.plan.contract import Override


def load_pipeline(uri: str, overrides: Iterable[str], *, own_labels_only: bool = False) -> Any:
    """lsst.pipe.base.Pipeline of `uri` ($VARS expanded) with the overrides applied; own_labels_only skips
    overrides of labels the pipeline (or its #subset) does not have, as a shared -c list needs."""
    from lsst.pipe.base import Pipeline

    pipeline = Pipeline.from_uri(os.path.expandvars(uri))
    for override in map(Override.parse, overrides):
        if own_labels_only and override.label not in pipeline.task_labels:
            continue
        pipeline.addConfigOverride(override.label, override.field, override.value or "")
    return pipeline
