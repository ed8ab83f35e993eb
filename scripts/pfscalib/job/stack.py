"""The questions Snakemake's process asks the LSST/PFS stack, answered in a process of their own
(`python -m pfscalib.job.stack`, pfscalib.plan.stack asks): Snakemake's process never imports the
middleware, and one process answers a whole batch (importing the stack costs seconds).

Each request is a JSON object with a `kind`; each answer a JSON object, `problem` None when all is well.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from lsst.ctrl.mpexec.cli.pipetask import cli as pipetask_cli
from lsst.pipe.base import Instrument
from lsst.utils import doImportType

from pfscalib.job.pipelines import load_pipeline


def reason(exc: Exception) -> str:
    """The first line of an exception, as a user reads it."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip("'\"")


def instrument(path: str) -> dict:
    """`path` (pipetask --instrument) names an importable lsst.pipe.base Instrument subclass."""
    try:
        found = doImportType(path)
    except Exception as exc:  # ImportError, TypeError, ...: the user's class path
        return {"problem": f"{path!r} cannot be imported ({reason(exc)})"}
    if not (isinstance(found, type) and issubclass(found, Instrument)):
        return {"problem": f"{path!r} is not an lsst.pipe.base Instrument class (pipetask --instrument)"}
    return {"problem": None}


def pipetask_run_args(argv: list[str], tails: list[list[str]]) -> dict:
    """`pipetask run ARGV` parses (ctrl_mpexec's own click command, resilient parsing off, never run), as
    written and with each tail appended (the -j a rule appends)."""
    run = pipetask_cli.get_command(click.Context(pipetask_cli), "run")
    try:
        for tail in tails:
            run.make_context("run", argv + tail, resilient_parsing=False)
    except click.ClickException as exc:
        return {"problem": exc.format_message()}
    return {"problem": None}


def pipeline(path: str, overrides: list[str], own_labels_only: bool = False) -> dict:
    """The pipeline with the -c overrides applied as pipetask applies them, without a registry: the dataset
    types it produces and every output with its dimensions (outputs, per-quantum metadata and logs, configs,
    the RUN's packages); or the refusal."""
    try:
        graph = load_pipeline(path, overrides, own_labels_only=own_labels_only).to_graph()
    except Exception as exc:  # any refusal by pipe_base or pex_config is the user's input
        return {"problem": reason(exc)}
    outputs = {("packages", ())}
    for node in graph.tasks.values():
        for edge in node.iter_all_outputs():
            outputs.add((edge.parent_dataset_type_name, tuple(sorted(edge.raw_dimensions))))
        outputs.add((node.init.config_output.parent_dataset_type_name, ()))  # <label>_config
    produced = sorted(name for name in graph.dataset_types if graph.producer_of(name) is not None)
    return {"problem": None, "produced": produced, "outputs": sorted([t, list(d)] for t, d in outputs)}


KINDS = {"instrument": instrument, "pipetask_run_args": pipetask_run_args, "pipeline": pipeline}


def answer(requests: list[dict[str, Any]]) -> list[dict]:
    return [KINDS[r["kind"]](**{k: v for k, v in r.items() if k != "kind"}) for r in requests]


def main() -> int:
    json.dump(answer(json.load(sys.stdin)), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
