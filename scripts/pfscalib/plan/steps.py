"""The seven calibration steps: what each runs, certifies and cleans (drp_stella names).

Every difference between steps is a named field here; no other module compares step names.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pfscalib.plan.contract import Override

QaPlot = Literal["image", "traces", "traces_and_lines", "profiles", "norms"]
# What a product is measured as by the gate (pfscalib.job.metrics.measure)
Measure = Literal["bias_frame", "dark_frame", "flat_field", "bootstrap_lines", "detector_map", "profiles", "norms"]
# What a visit is, from its record (pfscalib.job.checks.visit_kind): arcs are `comparison` at Subaru
# (`arc` in simulator data) and, as BootstrapTask tells them, any lamps other than 'Quartz'.
VisitKind = Literal["bias", "dark", "flat", "arc"]
KIND_WORDS = {"bias": "a bias", "dark": "a dark", "flat": "a quartz", "arc": "an arc"}
UNLIT_KINDS = ("bias", "dark")  # told by observation_type alone (no lamps)
QUARTZ: VisitKind = "flat"  # the kind of every quartz, the fibre-profile frames' included


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    description: str  # one line, for the rule graph and the README
    pipeline: str  # file in the pipelines dir
    product: str  # dataset type the pipeline writes
    certified_as: str = ""  # dataset type certified, if not the product (detectorMap: a copy as detectorMap_calib)
    # Certified in a collection of its own outside the rerun's calib chain, read only by the steps that need
    # it (the bootstrap maps, as the guide's PFS/bootstrap); otherwise in <calib chain>/<dataset type>.
    outside_calib_chain: bool = False
    clean: tuple[str, ...] = ()  # intermediates removed after certification
    visit_kinds: tuple[VisitKind, ...]  # what the step's visits may be
    needs: tuple[str, ...] = ()  # steps whose certified products this one reads
    config: tuple[str, ...] = ()  # default -c overrides (the seed's)
    per_arm: bool = False  # product spans spectrographs (dims instrument, arm): one job per arm
    # Visits come in bright/dark groups (table columns group, role), defined as a profiles_run by
    # defineFiberProfilesInputs.py before the step runs; pipetask then selects by profiles_run.
    profile_groups: bool = False
    exact_kinds: tuple[VisitKind, ...] = ()  # exactly these visits per camera and epoch (bootstrap: a quartz, an arc)
    dither_zero: bool = False  # every visit at dither 0 (fiberNorms: undithered quartz)
    # A task of the pipeline reads each visit's pfsConfig (drp_stella 3a705d9: bootstrap.py, reduceExposure.py,
    # pipelines/measureCentroids.py, pipelines/fiberProfiles.py); checked per visit before any job.
    reads_pfs_config: bool = False
    # What the pipeline's ISR writes (its outputExposure): its header names the calibrations the ISR used,
    # read into the sentinel before cleaning (pfscalib.job.butler.calib_inputs).
    isr_output: str = "postISRCCD"
    offset_override: str = ""  # -c LABEL:FIELD set from the camera's config spectralOffset
    # With spectralOffset `auto`: the pipeline's labels run once on the step's visits (the ISR), then the
    # label run over a grid of offsets, scored from its `<label>_log` (pfscalib.job.offsets).
    scan_prepare: tuple[str, ...] = ()
    scan_label: str = ""
    qa_plot: QaPlot
    measure: Measure  # how the gate measures the product (pfscalib.job.metrics)
    # prefix of the product's metrics in the limits file (pfscalib/limits.yaml); the certified type's name
    metric_prefix: str = ""

    @property
    def offset_target(self) -> Override | None:
        """offset_override as the -c LABEL:FIELD it sets (None: the step takes no spectralOffset)."""
        return Override.parse(self.offset_override) if self.offset_override else None

    def __post_init__(self) -> None:
        if not self.certified_as:
            object.__setattr__(self, "certified_as", self.product)
        if not self.metric_prefix:
            object.__setattr__(self, "metric_prefix", self.name)

    @property
    def copies_product(self) -> bool:
        return self.certified_as != self.product

    @property
    def unit_pattern(self) -> str:
        """The wildcards naming one job's camera, or arm for a per-arm step."""
        return "{arm}" if self.per_arm else "{arm}{spectrograph}"

    @property
    def table_columns(self) -> frozenset[str]:
        extra = {"group", "role"} if self.profile_groups else set()
        return frozenset({"epoch", "visits", "cameras", "comment"} | extra)


STEPS: dict[str, Step] = {
    s.name: s
    for s in [
        Step(
            name="bias",
            isr_output="biasProc",
            description="overscan-subtracted median of BIAS visits, per camera",
            pipeline="bias.yaml",
            product="bias",
            clean=("biasProc",),
            visit_kinds=("bias",),
            qa_plot="image",
            measure="bias_frame",
        ),
        Step(
            name="dark",
            isr_output="darkProc",
            description="bias-subtracted, exposure-scaled combination of DARK visits",
            pipeline="dark.yaml",
            product="dark",
            clean=("darkProc", "darkScaled"),
            visit_kinds=("dark",),
            needs=("bias",),
            qa_plot="image",
            measure="dark_frame",
        ),
        Step(
            name="flat",
            isr_output="flatProc",
            description="fiberFlat from dithered quartz visits",
            pipeline="flat.yaml",
            product="fiberFlat",
            clean=("flatProc", "ditherFlat"),
            visit_kinds=("flat",),
            needs=("dark",),
            qa_plot="image",
            measure="flat_field",
            metric_prefix="fiberFlat",
        ),
        Step(
            name="bootstrap",
            reads_pfs_config=True,
            description="rough detectorMap from one quartz and one arc with the camera's spectralOffset",
            pipeline="bootstrap.yaml",
            product="detectorMap_bootstrap",
            outside_calib_chain=True,  # apart from the final detectorMaps
            clean=("postISRCCD",),
            visit_kinds=("flat", "arc"),
            needs=("flat",),
            config=(
                "isr:doCrosstalk=False",
                "bootstrap:profiles.profileRadius=2",
                "bootstrap:profiles.profileSwath=2500",
                "bootstrap:profiles.profileOversample=3",
            ),
            exact_kinds=("flat", "arc"),
            offset_override="bootstrap:spectralOffset",
            scan_prepare=("isr",),
            scan_label="bootstrap",
            qa_plot="traces",
            measure="bootstrap_lines",
        ),
        Step(
            name="detectorMap",
            reads_pfs_config=True,
            description="detectorMap fitted from arcs and quartz, starting from the bootstrap",
            pipeline="detectorMap.yaml",
            product="detectorMap_candidate",
            certified_as="detectorMap_calib",  # certifyDetectorMaps.py behaviour
            clean=("postISRCCD", "crMask"),
            visit_kinds=("arc", "flat"),
            needs=("bootstrap",),
            config=(
                "measureCentroids:connections.calibDetectorMap=detectorMap_bootstrap",
                "fitDetectorMap:fitDetectorMap.doSlitOffsets=True",
                "fitDetectorMap:fitDetectorMap.order=4",
                "fitDetectorMap:fitDetectorMap.soften=0.03",
            ),
            qa_plot="traces_and_lines",
            measure="detector_map",
        ),
        Step(
            name="fiberProfiles",
            reads_pfs_config=True,
            description="fitFiberProfiles over the epoch's profiles_run (bright/dark groups)",
            pipeline="fitFiberProfiles.yaml",
            product="fiberProfiles",
            clean=("postISRCCD", "crMask", "calexp"),
            visit_kinds=("flat",),
            needs=("detectorMap",),
            config=(
                "fitProfiles:profiles.profileRadius=10",
                "fitProfiles:profiles.profileOversample=3",
                "fitProfiles:profiles.profileSwath=500",
            ),
            profile_groups=True,
            qa_plot="profiles",
            measure="profiles",
        ),
        Step(
            name="fiberNorms",
            reads_pfs_config=True,
            description="fibre normalisations of quartz visits, per arm over every spectrograph",
            pipeline="fiberNorms.yaml",
            product="fiberNorms_calib",
            clean=("postISRCCD", "crMask", "calexp"),
            visit_kinds=("flat",),
            needs=("fiberProfiles",),
            per_arm=True,
            dither_zero=True,
            qa_plot="norms",
            measure="norms",
        ),
    ]
}
STEP_NAMES = tuple(STEPS)
# The step whose offset `auto` proposes (bootstrap): the one with an offset to scan.
OFFSET_STEP = next(s.name for s in STEPS.values() if s.scan_label)


def priority(step: str) -> int:
    """Snakemake priority of a step's jobs: how many steps of the chain remain from it (bias 7 ...
    fiberNorms 1; QA and the table 0). With fewer cores than ready jobs Snakemake starts the jobs with
    the longest chain ahead first (highest level first), so cameras advance together and no camera's
    whole chain is left to run alone at the end."""
    return len(STEP_NAMES) - STEP_NAMES.index(step)


# ------------------------------------------------------------------ which steps apply to which camera
# A PFS spectrograph has arms b, r (or m, the medium-resolution grating on the r detector) and n (an H4RG).
# Each arm's ISR needs different products (obs_pfs isrTask.py), so not every step runs for every camera:
# what a camera x step is, by default per arm, overridable per camera or arm in the config (camera_steps).
Role = Literal["build", "skip", "borrow"]
BRN, MEDIUM = "brn", "m"  # fibre-profile modes: one profiles_run each per epoch (drp_doc: run18_brn, 2026may_m)
MODES = (BRN, MEDIUM)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Arm:
    name: str
    mode: Literal["brn", "m"]  # the fibre-profile groups (profiles_run) the arm's cameras use
    # Steps whose product the arm's ISR never reads, so never built for it (n: it drops the bias and reads the
    # site's nirDark instead of a dark); `why` says so in messages.
    never: tuple[str, ...] = ()
    why: str = ""
    # Steps whose product the ISR falls back to from another arm of the same spectrograph (m: r's bias and dark,
    # isrTask.py lookupBiasDark): not run for the arm unless the config asks (camera_steps: build).
    borrows: tuple[str, ...] = ()
    borrows_from: str = ""
    # Site calibrations the arm's ISR looks up at each visit's time, certified by the site (obs_pfs
    # combineNirDark.py), checked per visit before any job. The ISR keeps the one matching the ramp's IRP
    # ratio: `<type>` for ratio 1, `<type>_irp<N>` otherwise (obs_pfs fe94433 isrTask.py:736-760, 816-849;
    # without it "No NIR dark cube found", :1306-1309).
    site_calibrations: tuple[str, ...] = ()
    # Site calibrations whose absence the ISR only warns about, and what the product then lacks
    # (obs_pfs fe94433 isrTask.py:1568-1598): named in the check's output, the summary and the sentinel.
    optional_site_calibrations: tuple[tuple[str, str], ...] = ()


ARMS: dict[str, Arm] = {
    a.name: a
    for a in [
        Arm(name="b", mode=BRN),
        Arm(name="r", mode=BRN),
        Arm(
            name="n",
            mode=BRN,
            never=("bias", "dark"),
            why="the ISR of an n (H4RG) camera takes no bias and reads the site's nirDark instead of a dark",
            site_calibrations=("nirDark",),
            optional_site_calibrations=(
                ("badRefPixels", "no IRP bad-reference-pixel repair"),
                ("h4Linearity", "no linearity correction"),
            ),
        ),
        Arm(name="m", mode=MEDIUM, borrows=("bias", "dark"), borrows_from="r"),
    ]
}
ARM_NAMES = tuple(ARMS)


def irp_variant(dataset_type: str, irp_ratio: int | None) -> str:
    """The site calibration an n visit's ISR keeps for its ramp's IRP ratio (visit.irp_ratio, obs_pfs
    fe94433 gen3/dimensions.yaml:251-256; NULL for a CCD exposure): nirDark for 1, nirDark_irp4 for 4."""
    return dataset_type if irp_ratio in (None, 0, 1) else f"{dataset_type}_irp{irp_ratio}"


def default_role(step: str, arm: str) -> Role:
    """What a step is for an arm's cameras by default."""
    a = ARMS[arm]
    if step in a.never:
        return "skip"
    return "borrow" if step in a.borrows else "build"


def role(step: str, unit: str, overrides: dict[str, dict[str, str]]) -> Role:
    """What a step is for a camera (b1) or arm (b): the config's camera_steps for the camera, else for its arm,
    else the arm's default. An override `build` of a borrowed step builds it; `skip` skips any step."""
    for key in (unit, unit[0]):
        chosen = overrides.get(key, {}).get(step)
        if chosen == "build":
            return "build"
        if chosen == "skip":
            return "skip"
    return default_role(step, unit[0])


def lender(step: str, camera: str) -> str:
    """The camera whose product a borrowing camera's ISR falls back to (m1 -> r1)."""
    return f"{ARMS[camera[0]].borrows_from}{camera[1:]}"


def role_words(step: str, unit: str, overrides: dict[str, dict[str, str]]) -> str:
    """How status and messages say a step that is not built for a camera."""
    r = role(step, unit, overrides)
    if r == "borrow":
        return f"from {lender(step, unit)} (the ISR's r<->m fallback)"
    if r == "skip":
        return ARMS[unit[0]].why if step in ARMS[unit[0]].never else "skipped (config camera_steps)"
    return "built"
