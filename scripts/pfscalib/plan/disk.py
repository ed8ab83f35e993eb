"""Disk: the bytes each job writes into the datastore, predicted before the run from its pipeline's
connections, its visits and cameras, and a size per dataset type (config `disk`).

A job writes every output of its pipeline (products, intermediates, per-quantum metadata and logs, the
RUN's configs and packages) and, for a copying step, the certified copy; it removes the step's `clean`
types once it has certified. So while it runs it holds everything it wrote (its footprint, declared as
Snakemake's `disk_mb`), and afterwards what it did not clean stays. How many datasets of a type a job
writes follows from the type's dimensions: one per visit and camera for a visit-level type, one per
camera, group or arm otherwise. A dimension the tables do not determine (dither) counts one per visit,
an upper bound, until the epoch's visit check has recorded how many distinct values the job's visits
have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from pfscalib.plan import paths
from pfscalib.plan.config import ConfigError, Settings
from pfscalib.plan.stack import StackError, ask
from pfscalib.plan.steps import STEP_NAMES, STEPS

MB = 1_000_000  # Snakemake's disk_mb is decimal megabytes
VISIT_DIMENSIONS = frozenset({"visit", "exposure"})
CAMERA_DIMENSIONS = frozenset({"spectrograph", "detector"})  # one dataset per camera of the job
GROUP_DIMENSION = "profiles_group"
MIDDLEWARE_SUFFIXES = ("_config", "_metadata", "_log")  # what pipetask writes per task besides its outputs
# One dataset per job: the instrument, the job's arm, its profiles_run (one per epoch).
JOB_DIMENSIONS = frozenset({"instrument", "arm", "profiles_run"})

# PFS detectors: b, r, m arms are 4176 x 4096 CCDs, n is a 4096 x 4096 H4RG. An afw Exposure holds a
# float32 image, an int32 mask and a float32 variance: 12 bytes per pixel; a Mask alone 4.
DETECTOR_OF_ARM = {"b": "ccd", "r": "ccd", "m": "ccd", "n": "h4rg"}
PIXELS = {"ccd": 4176 * 4096, "h4rg": 4096 * 4096}
EXPOSURE_TYPES = (
    "postISRCCD", "calexp", "biasProc", "darkProc", "darkScaled", "flatProc", "ditherFlat",
    "bias", "dark", "fiberFlat",
)  # fmt: skip
MASK_TYPES = ("crMask",)
# Spectra and models, per dataset (MB), from drp_stella products of a full PFS camera: rough; a site
# measures its own (`pfscalib measure-sizes`) and sets them in config disk.sizes_mb.
PRODUCT_MB = {
    "pfsArm": 100.0,
    "detectorMap": 2.0,
    "detectorMap_bootstrap": 2.0,
    "detectorMap_candidate": 2.0,
    "detectorMap_calib": 2.0,
    "detectorMapLines": 10.0,
    "centroids": 5.0,
    "slitOffsets": 0.1,
    "fiberProfiles": 50.0,
    "fiberProfiles_group": 50.0,
    "fiberNorms_calib": 20.0,
}


def default_sizes_mb() -> dict[str, dict[str, float]]:
    """MB per dataset for each detector kind: exposures and masks from the pixel count, the rest rough."""
    out = {}
    for kind, pixels in PIXELS.items():
        sizes = {t: round(12 * pixels / MB, 1) for t in EXPOSURE_TYPES}
        sizes |= {t: round(4 * pixels / MB, 1) for t in MASK_TYPES}
        out[kind] = sizes | PRODUCT_MB
    return out


def twin_scale(config: dict) -> float:
    """The timing twin's scale factor (config demo.twin.scale; pfscalib.plan.realsite), 0 when off."""
    return float(((config.get("demo") or {}).get("twin") or {}).get("scale", 0))


CACHE_FORMAT = 2  # bump when pfscalib.job.stack.pipeline changes what it reads: older caches are then ignored


class DiskModelError(ConfigError):
    """A pipeline could not be read to predict what a job writes."""


@dataclasses.dataclass(frozen=True)
class Output:
    """One dataset type a pipeline writes, with its dimensions (empty: once per RUN)."""

    dataset_type: str
    dimensions: frozenset[str]


def pipeline_outputs(pipelines: dict[str, tuple[str, list[str]]]) -> dict[str, list[Output] | DiskModelError]:
    """Every dataset type each pipeline writes (name: (pipeline, -c overrides)), from its tasks' connections
    as pipe_base's PipelineGraph has them with the overrides applied: outputs, per-quantum metadata and logs,
    configs, packages. Cached by the pipeline's text and overrides: reading a pipeline imports its tasks
    (seconds at a site), and Snakemake asks for every job of every invocation; the uncached ones are asked
    of the stack in one child process (pfscalib.plan.stack)."""
    found: dict[str, list[Output] | DiskModelError] = {}
    missing: dict[str, tuple[str, Path]] = {}
    for name, (pipeline, overrides) in pipelines.items():
        path = os.path.expandvars(pipeline)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            found[name] = DiskModelError(pipeline, f"cannot read the pipeline to predict disk use ({exc.strerror})")
            continue
        digest = hashlib.sha1(json.dumps([CACHE_FORMAT, text, sorted(overrides)]).encode()).hexdigest()[:16]
        cache = Path(paths.pipeline_outputs(digest))
        if cache.is_file():
            found[name] = [Output(t, frozenset(dims)) for t, dims in json.loads(cache.read_text())]
        else:
            missing[name] = (path, cache)
    requests = [
        {"kind": "pipeline", "path": path, "overrides": pipelines[name][1], "own_labels_only": True}
        for name, (path, _) in missing.items()
    ]
    try:
        answers = ask(requests)
    except StackError as exc:  # no stack: no prediction
        answers = [{"problem": str(exc)}] * len(requests)
    for (name, (_, cache)), answer in zip(missing.items(), answers, strict=True):
        if answer["problem"]:
            problem = f"cannot read the pipeline to predict disk use ({answer['problem']})"
            found[name] = DiskModelError(pipelines[name][0], problem)
            continue
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(answer["outputs"]))
        os.replace(tmp, cache)
        found[name] = [Output(t, frozenset(dims)) for t, dims in answer["outputs"]]
    return found


@dataclasses.dataclass(frozen=True)
class JobDisk:
    """What one job writes: datasets and bytes per dataset type; what it cleans."""

    step: str
    epoch: str
    unit: str
    datasets: dict[str, tuple[int, float]]  # dataset type -> (count, bytes)
    cleaned: frozenset[str]

    @property
    def name(self) -> str:
        return f"{self.step} {self.epoch} {self.unit}"

    @property
    def written(self) -> float:
        """Bytes held while the job runs (its footprint)."""
        return sum(b for _, b in self.datasets.values())

    @property
    def stays(self) -> float:
        """Bytes left after the job (certified product, uncleaned outputs, metadata)."""
        return sum(b for t, (_, b) in self.datasets.items() if t not in self.cleaned)

    @property
    def disk_mb(self) -> int:
        return max(1, math.ceil(self.written / MB))


class Disk:
    """Every job's predicted writes, from the settings, the selections and the pipelines."""

    def __init__(self, settings: Settings, selections):
        self.settings = settings
        self.selections = selections
        config = settings.config.get("disk", {})
        self.sizes = default_sizes_mb()
        for kind, sizes in config.get("sizes_mb", {}).items():
            self.sizes[kind] = self.sizes[kind] | sizes
        self.other_mb: float = config.get("other_mb", 0.01)
        # The timing twin pads every image to its real size x scale (pfscalib.demo.twin): at least that. Its
        # images are otherwise the demo's, one size for every arm: a detector kind the config measured no
        # size for takes another kind's measured ones, not the real detector's.
        if scale := twin_scale(settings.config):
            measured = config.get("sizes_mb", {})
            for kind in self.sizes:
                if kind not in measured and measured:
                    self.sizes[kind] = self.sizes[kind] | next(iter(measured.values()))
            for kind, real in default_sizes_mb().items():
                for t in (*EXPOSURE_TYPES, *MASK_TYPES):
                    self.sizes[kind][t] = max(self.sizes[kind].get(t, 0.0), real[t] * scale)
        self._outputs: dict[str, list[Output] | DiskModelError] = {}

    def outputs(self, step: str) -> list[Output]:
        if not self._outputs:  # every step's at once (one child process), a failure too: asked once
            self._outputs = pipeline_outputs(
                {s: (self.settings.pipeline(s), self.settings.step_config(s)) for s in STEP_NAMES}
            )
        if isinstance(self._outputs[step], DiskModelError):
            raise self._outputs[step]
        return self._outputs[step]

    def size(self, dataset_type: str, arm: str) -> float:
        """Bytes per dataset of this type on a camera of this arm (other_mb if the config lists none)."""
        return self.sizes[DETECTOR_OF_ARM[arm]].get(dataset_type, self.other_mb) * MB

    def unlisted(self) -> list[str]:
        """Dataset types the pipelines write that no size names (they count other_mb each), besides the
        middleware's own per-task configs, metadata and logs and the RUN's packages."""
        known = {t for sizes in self.sizes.values() for t in sizes}
        written = {o.dataset_type for s in STEP_NAMES for o in self.outputs(s)}
        return sorted(t for t in written - known - {"packages"} if not t.endswith(MIDDLEWARE_SUFFIXES))

    def implied_counts(self, step: str, epoch: str, unit: str) -> dict[str, int]:
        """Distinct values of dimensions the tables do not determine (dither), as the epoch's visit check
        recorded them from the registry; empty before the check."""
        from pfscalib.plan.records import read_json

        check = read_json(paths.check(epoch)) or {}
        return check.get("implied", {}).get(step, {}).get(unit, {})

    @staticmethod
    def count(dimensions: frozenset[str], selection, cameras: int, implied: dict) -> int:
        visits = len(selection.visits)
        if dimensions & VISIT_DIMENSIONS:  # an upper bound: a quantum may find no work (NoWorkFound)
            return visits * (cameras if dimensions & CAMERA_DIMENSIONS else 1)
        n = cameras if dimensions & CAMERA_DIMENSIONS else 1
        if GROUP_DIMENSION in dimensions:
            n *= len(selection.groups)
        for other in dimensions - CAMERA_DIMENSIONS - JOB_DIMENSIONS - {GROUP_DIMENSION}:
            n *= min(implied.get(other, visits), visits)  # at most one value per visit
        return n

    def job(self, step: str, epoch: str, unit: str) -> JobDisk:
        s, selection = STEPS[step], self.selections[(step, epoch, unit)]
        cameras = self.settings.cameras_of(unit) if s.per_arm else [unit]
        implied = self.implied_counts(step, epoch, unit)
        datasets: dict[str, tuple[int, float]] = {}
        for output in self.outputs(step):
            n = self.count(output.dimensions, selection, len(cameras), implied)
            datasets[output.dataset_type] = (n, n * self.size(output.dataset_type, unit[0]))
        if s.copies_product:  # certifyDetectorMaps.py behaviour: a copy under the certified name
            n, _ = datasets[s.product]
            datasets[s.certified_as] = (n, n * self.size(s.certified_as, unit[0]))
        return JobDisk(step, epoch, unit, datasets, frozenset(self.settings.clean(step)))

    def jobs(self) -> list[JobDisk]:
        return [self.job(s, e, u) for s in STEP_NAMES for e in self.settings.epochs for u in self.settings.units(s)]

    def too_large(self, budget_mb: int) -> str | None:
        """One line naming the largest job if it alone exceeds the budget, else None."""
        largest = max(self.jobs(), key=lambda j: j.written)
        if largest.disk_mb <= budget_mb:
            return None
        return (
            f"job {largest.name} writes an estimated {largest.disk_mb} MB into the datastore, more than the "
            f"whole disk budget disk_mb={budget_mb}: raise --resources disk_mb or the config's disk sizes_mb "
            f"(see `pfscalib plan`)"
        )


# ---------------------------------------------------------------- the plan: per step, peak, verdict
@dataclasses.dataclass(frozen=True)
class StepPlan:
    step: str
    jobs: int
    largest: float  # bytes of the step's largest job
    total: float  # bytes all its jobs write
    stays: float  # bytes left after its jobs (certified products, metadata)


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: list[StepPlan]
    peak: float  # predicted peak of the bytes the run adds to the datastore
    stays: float
    budget_mb: int | None
    cores: int
    largest: JobDisk

    @property
    def holds(self) -> bool:
        return self.budget_mb is None or self.largest.disk_mb <= self.budget_mb


def simulate_peak(disk: Disk, jobs: list[JobDisk], cores: int, budget_mb: int | None) -> float:
    """The datastore's growth at its highest, scheduling as Snakemake does (the steps with the most chain
    ahead first, as many jobs as cores and the disk budget allow, a job after the products it reads), every
    job taking the same time: what finished jobs left plus what running jobs hold."""
    from pfscalib.plan.steps import priority

    done: set[str] = set()
    remaining = sorted(jobs, key=lambda j: (-priority(j.step), j.epoch, j.unit))
    budget = budget_mb if budget_mb is not None else math.inf
    stays = peak = 0.0
    while remaining:
        running: list[JobDisk] = []
        for job in remaining:
            if not set(disk.settings.needs(job.step, job.epoch, job.unit)) <= done:
                continue
            if len(running) < cores and sum(r.disk_mb for r in running) + job.disk_mb <= budget:
                running.append(job)
        if not running:  # a job larger than the budget: refused before the run, see Disk.too_large
            break
        peak = max(peak, stays + sum(j.written for j in running))
        for job in running:
            remaining.remove(job)
            done.add(paths.sentinel(job.step, job.epoch, job.unit))
            stays += job.stays
    return peak


def plan(disk: Disk, budget_mb: int | None, cores: int) -> Plan:
    jobs = disk.jobs()
    steps = []
    for step in STEP_NAMES:
        mine = [j for j in jobs if j.step == step]
        steps.append(
            StepPlan(step, len(mine), max(j.written for j in mine), sum(j.written for j in mine),
                     sum(j.stays for j in mine))
        )  # fmt: skip
    largest = max(jobs, key=lambda j: j.written)
    return Plan(
        steps, simulate_peak(disk, jobs, cores, budget_mb), sum(j.stays for j in jobs), budget_mb, cores, largest
    )


def human(nbytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


def format_plan(p: Plan, unlisted: list[str]) -> str:
    lines = [f"{'step':<14}{'jobs':>5}{'largest job':>14}{'all jobs':>12}{'stays':>12}"]
    for s in p.steps:
        lines.append(f"{s.step:<14}{s.jobs:>5}{human(s.largest):>14}{human(s.total):>12}{human(s.stays):>12}")
    total = sum(s.total for s in p.steps)
    lines.append(f"{'total':<14}{sum(s.jobs for s in p.steps):>5}{'':>14}{human(total):>12}{human(p.stays):>12}")
    budget = f"disk_mb={p.budget_mb}" if p.budget_mb is not None else "no disk budget"
    peak = human(p.peak) if p.holds else "none (the largest job exceeds the budget)"
    lines.append(f"predicted peak of the datastore's growth: {peak} ({budget}, {p.cores} cores)")
    lines.append(f"certified products and metadata that stay: {human(p.stays)}")
    lines.append(f"largest job: {p.largest.name}, {human(p.largest.written)} (disk_mb={p.largest.disk_mb})")
    if p.budget_mb is not None:
        verdict = "holds" if p.holds else "does NOT hold: the run would stop before any job"
        lines.append(f"budget: running jobs hold at most {p.budget_mb} MB at once; {verdict}")
    if unlisted:
        lines.append(f"no size set (counted as other_mb each): {', '.join(unlisted)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- measured sizes
SMALL_MB = 0.01  # metadata, logs, configs: one other_mb for all of them


def measured_sizes(sentinels: Iterable[dict]) -> dict:
    """The `disk` config measured from finished jobs: each sentinel records, per dataset type, how many
    datasets its job wrote and their file sizes in the datastore before cleaning. MB per dataset per
    detector kind; types under SMALL_MB share one other_mb (their mean), unless a default names them (the
    measured size must replace the default)."""
    totals: dict[str, dict[str, list[int]]] = {}
    for s in sentinels:
        kind = DETECTOR_OF_ARM[s["dataId"]["arm"]]
        for dataset_type, (count, nbytes) in s.get("written", {}).items():
            entry = totals.setdefault(kind, {}).setdefault(dataset_type, [0, 0])
            entry[0] += count
            entry[1] += nbytes
    sizes: dict[str, dict[str, float]] = {}
    small: list[float] = []
    for kind, types in sorted(totals.items()):
        for dataset_type, (count, nbytes) in sorted(types.items()):
            mb = nbytes / count / MB
            if mb < SMALL_MB and dataset_type not in default_sizes_mb()[kind]:
                small.append(mb)
            else:
                sizes.setdefault(kind, {})[dataset_type] = float(f"{mb:.4g}")
    return {"sizes_mb": sizes, "other_mb": float(f"{sum(small) / len(small):.3g}") if small else SMALL_MB}


def measured_from(certified: str) -> dict | None:
    """`pfscalib measure-sizes`: the `disk` config from the sentinels under a directory; None when no
    sentinel there records what its job wrote (made before sentinels did)."""
    from pfscalib.plan.records import read_json

    sentinels = [s for p in sorted(Path(certified).rglob("*.json")) if (s := read_json(str(p)))]
    if not any("written" in s for s in sentinels):
        return None
    return measured_sizes(sentinels)
