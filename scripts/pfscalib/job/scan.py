"""The bootstrap task over a grid of offsets in one process (offset_search.jobs: per_camera, and
`pfscalib propose-offsets`): the site's own task class and pipeline config, its quantum built once from
the ISR'd pair, executed at each offset with its log captured and nothing written. The per_offset jobs
run the same task by `pipetask run` instead, one RUN per grid point, and read its `bootstrap_log`."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

from pfscalib.job.offsets import ScanPoint, parse_log
from pfscalib.plan.contract import PipetaskCommand, ScanRequest


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _ReadOnlyButler:
    """What QuantumContext needs of a butler, writing nothing: a scan point's map is not kept."""

    def __init__(self, butler) -> None:
        self._butler = butler

    def get(self, ref, **kwargs):
        return self._butler.get(ref)

    def getDeferred(self, ref, **kwargs):
        return self._butler.getDeferred(ref)

    def put(self, *args, **kwargs) -> None:
        return None

    @property
    def dimensions(self):
        return self._butler.dimensions


def _set_field(config, field: str, value: float) -> None:
    *parents, name = field.split(".")
    for parent in parents:
        config = getattr(config, parent)
    setattr(config, name, value)


def scan(butler, task_node, quantum, field: str, offsets: list[int], log: logging.Logger) -> list[ScanPoint]:
    """The task at each offset: its logged numbers (an exception is recorded, as the pipetask jobs do)."""
    points = []
    for offset in offsets:
        point, _ = run_point(butler, task_node, quantum, field, offset)
        log.info(
            "offset %+d: %d lines fitted, RMS %.3f px%s",
            offset,
            point.fitted,
            point.rms,
            f" ({point.error})" * bool(point.error),
        )
        points.append(point)
    return points


def run_point(butler, task_node, quantum, field: str, offset: float) -> tuple[ScanPoint, list[str]]:
    """The task at one offset: its numbers and the log messages they come from."""
    from lsst.pipe.base import QuantumContext

    config = copy.deepcopy(task_node.config)
    _set_field(config, field, float(offset))
    task = task_node.task_class(config=config)
    logger = getattr(task.log, "logger", task.log)
    capture, level = _Capture(), logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    error = ""
    try:
        inputs, outputs = config.connections.ConnectionsClass(config=config).buildDatasetRefs(quantum)
        task.runQuantum(QuantumContext(_ReadOnlyButler(butler), quantum), inputs, outputs)
    except Exception as exc:  # the real task raises on no match in a CCD half: a score of 0, not a failure
        error = f"{type(exc).__name__}: {exc}"
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
    return parse_log(offset, capture.messages, error), capture.messages


# ---------------------------------------------------------------- the jobs (`pfscalib scan-offset` ...)
log = logging.getLogger(__name__)


def _data_id(instrument: str, camera: str) -> dict:
    return {"instrument": instrument, "arm": camera[0], "spectrograph": int(camera[1:])}


def _offset_field() -> str:
    """The FIELD of the step's LABEL:FIELD the scan sets (spectralOffset)."""
    from pfscalib.plan.steps import OFFSET_STEP, STEPS

    target = STEPS[OFFSET_STEP].offset_target
    assert target is not None
    return target.field


def scan_offset(request: ScanRequest, offset: int, state: str, result: str, command: PipetaskCommand,
                log_roots: Sequence[str]) -> int:  # fmt: skip
    """One grid point (per_offset job): the task by `pipetask run` into the point's own RUN (resumable),
    then the numbers of its `<label>_log`. A task that raised is a point with an error (score 0), not a
    failed job; a pipetask that wrote no log (bad query, broken repository) is."""
    from pathlib import Path

    from pfscalib.job import butler as butlerops
    from pfscalib.job.offsets import write_points
    from pfscalib.job.run import route_task_logs, run_pipetask
    from pfscalib.plan.records import read_json

    camera, epoch, label = request.camera, request.epoch, request.label
    route_task_logs(log_roots)
    rc = run_pipetask(command, state, output=result)
    run = (read_json(state) or {}).get("run", "")
    butler = butlerops.open_butler(request.repo)
    messages = [r.message for r in butlerops.task_log(butler, label, run, _data_id(request.instrument, camera))]
    if not messages:
        log.error(
            "scan %s %s offset %d: no %s_log in %s (pipetask exit status %d)", camera, epoch, offset, label, run, rc
        )
        return rc or 1
    error = next((m for m in messages if "failed" in m and "Exception" in m), "") if rc else ""
    point = parse_log(offset, messages, error or ("pipetask failed" if rc else ""))
    write_points(result, camera, epoch, [point])
    Path(state).unlink(missing_ok=True)  # the result is the job's output: a rerun is a deliberate one
    log.info("offset %+d: %d lines fitted, RMS %.3f px %s", offset, point.fitted, point.rms, point.error)
    return 0


def scan_offsets(request: ScanRequest, offsets: list[int], result: str, command: PipetaskCommand) -> int:
    """Every grid point in this process (per_camera job): the query, inputs and overrides of the pipetask
    command given, the quantum built once."""
    from pfscalib.job import butler as butlerops
    from pfscalib.job.offsets import write_points

    butler = butlerops.open_butler(request.repo)
    node, quantum = _quantum(butler, command, request.label)
    points = scan(butler, node, quantum, _offset_field(), offsets, log)
    write_points(result, request.camera, request.epoch, points)
    return 0


def _quantum(butler, command: PipetaskCommand, label: str):
    """The scanned label's task and its quantum, from the pipetask command's pipeline, -c, inputs and query."""
    from pfscalib.job import butler as butlerops

    overrides = [o.text() for o in command.overrides]
    return butlerops.build_quantum(
        butler, command.pipeline, overrides, label, list(command.inputs), command.where or ""
    )


def propose_offset(camera: str, epoch: str, search: dict, output: str, plot_path: str, scans: list[str]) -> int:
    """The proposal from the scan results, its picture; a refused camera fails the job with one line."""
    from pfscalib.job.offsets import plot, propose, read_points
    from pfscalib.plan.records import write_json

    proposal = propose(camera, epoch, read_points(scans), float(search["capture"]), search)
    plot(proposal, plot_path, search)
    if proposal.refused:
        log.error("%s", proposal.line())
        return 1
    write_json(output, proposal.to_json())
    log.info("%s", proposal.line())
    return 0


def propose_offsets(wf, epoch: str, cameras: list[str], output: str) -> int:
    """`pfscalib propose-offsets`: per camera, the ISR once (pipetask, resumable) and the grid in this
    process; the pictures and proposals where the workflow puts them, and a config snippet."""
    from pathlib import Path

    import yaml

    from pfscalib.job import butler as butlerops
    from pfscalib.job.offsets import plot, propose
    from pfscalib.job.run import run_pipetask
    from pfscalib.plan import paths
    from pfscalib.plan.records import write_json
    from pfscalib.plan.steps import OFFSET_STEP, STEPS

    step, values, refused = STEPS[OFFSET_STEP], {}, []
    for camera in cameras:
        isr = wf.commands.offset_pipetask(epoch, camera, None)
        if run_pipetask(isr, paths.state(f"{OFFSET_STEP}Isr", epoch, camera)):
            refused.append(f"{camera}: the ISR of its bootstrap visits failed (see above)")
            continue
        butler = butlerops.open_butler(wf.datastore)
        node, quantum = _quantum(butler, wf.commands.offset_scan_pipetask(epoch, camera), step.scan_label)
        points = scan(butler, node, quantum, _offset_field(), wf.offset_grid(camera), log)
        proposal = propose(camera, epoch, points, wf.capture_range(camera), wf.offset_search)
        plot(proposal, paths.offset_plot(epoch, camera), wf.offset_search)
        write_json(paths.offset_proposal(epoch, camera), proposal.to_json())
        if proposal.refused:  # said once, at the end
            refused.append(proposal.line())
        else:
            log.info("%s", proposal.line())
            values[camera] = proposal.value
    lines = [f"# bootstrap spectralOffset proposed from epoch {epoch} by pfscalib propose-offsets"]
    lines += [f"# {line}" for line in refused]
    text = "\n".join(lines) + "\n" + yaml.safe_dump({"spectralOffset": values}, default_flow_style=None)
    if output == "-":
        print(text, end="")
    else:
        Path(output).write_text(text)
    for line in refused:
        log.error("%s", line)
    return 1 if refused else 0
