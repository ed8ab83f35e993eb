"""Real-site figures: how long each task's quantum takes on a full PFS camera, and how large each dataset is,
each with where the figure comes from. One table, read by the timing twin of the demo (pfscalib.demo.twin:
every stand-in quantum sleeps its duration x scale and pads its output to its size x scale) and by the
season prediction (pfscalib.plan.season: job durations from the same figures x the same scale).

Sources: `reference` is ../shared/reference/pfs-real-site.md section 7 (bootstrap ~270 s, fibre-profile
fitting ~4,400 s per camera, reduceExposure on a quartz ~180 s, a postISRCCD ~205 MB per camera and
visit); `estimate` is a stated guess for a gap (no measurement we have), to be replaced by a site's own.
"""

from __future__ import annotations

import dataclasses

from pfscalib.plan.disk import DETECTOR_OF_ARM, EXPOSURE_TYPES, MASK_TYPES, default_sizes_mb

TWIN_ENV = "PFSCALIB_TWIN_SCALE"  # how the workflow passes demo.twin.scale to every job (pfscalib.demo.twin)


@dataclasses.dataclass(frozen=True)
class Duration:
    seconds: float  # one quantum of the task on a full PFS camera, one core
    source: str  # "reference: ..." or "estimate: ..."


# The demo's fibre-profile tables hold 4 bright/dark groups per camera and epoch, fitted one quantum each.
PROFILE_GROUPS = 4

# Per task label (the pipelines' labels, drp_stella's names): seconds per quantum.
DURATIONS: dict[str, Duration] = {
    "isr": Duration(30.0, "estimate: ISR of one 4k x 4k exposure (overscan, bias, dark, flat), I/O bound"),
    "cpBiasCombine": Duration(60.0, "estimate: median of ~5-20 exposures of 205 MB"),
    "dark": Duration(20.0, "estimate: cosmic-ray masking of one dark exposure"),
    "darkCombine": Duration(60.0, "estimate: as cpBiasCombine"),
    "ditherCombine": Duration(30.0, "estimate: mean of the quartz of one dither"),
    "flatCombine": Duration(60.0, "estimate: as cpBiasCombine"),
    "bootstrap": Duration(270.0, "reference: bootstrap ~270 s per camera"),
    "cosmicray": Duration(20.0, "estimate: as dark (cosmic-ray finding on one exposure)"),
    "measureCentroids": Duration(60.0, "estimate: centroids of a few hundred lines x 600 fibres"),
    "gatherSlitOffsets": Duration(5.0, "estimate: a table of per-fibre offsets"),
    "fitDetectorMap": Duration(300.0, "estimate: like bootstrap's fit, on every line of the visits"),
    "profilesFitDetectorMap": Duration(60.0, "estimate: as measureCentroids"),
    "fitProfiles": Duration(
        4400.0 / PROFILE_GROUPS, f"reference: fibre-profile fitting ~4,400 s per camera, over {PROFILE_GROUPS} groups"
    ),
    "mergeProfiles": Duration(10.0, "estimate: concatenation of the groups' profiles"),
    "reduceExposure": Duration(180.0, "reference: reduceExposure on a quartz ~180 s"),
    "measureFiberNorms": Duration(60.0, "estimate: per arm, a ratio over the arm's pfsArm"),
}
UNKNOWN_TASK = Duration(10.0, "estimate: a task this table does not name")

# What the twin pads to its real size: the datasets the demo writes as FITS images (exposures, masks).
# JSON products (pfsArm ~100 MB, fiberProfiles ~50 MB at a site) keep the demo's size in the twin.
PADDED_TYPES = frozenset(EXPOSURE_TYPES) | frozenset(MASK_TYPES)
SIZE_SOURCE = (
    "reference: a postISRCCD ~205 MB per camera and visit (4176 x 4096 float image + mask + variance: 12 bytes "
    "a pixel; an H4RG 4096 x 4096); a mask 4 bytes a pixel (pfscalib.plan.disk.default_sizes_mb)"
)


def duration(label: str) -> Duration:
    return DURATIONS.get(label, UNKNOWN_TASK)


def padded_mb(dataset_type: str, arm: str) -> float | None:
    """The real size (MB) the twin pads a dataset of this type to (x scale), or None if it pads none."""
    if dataset_type not in PADDED_TYPES or arm not in DETECTOR_OF_ARM:
        return None
    return default_sizes_mb()[DETECTOR_OF_ARM[arm]][dataset_type]


def table() -> str:
    """The figures and their sources as text: `python -c "from pfscalib.plan.realsite import table; print(table())"`."""
    lines = [f"{'task':<24}{'s/quantum':>10}  source"]
    lines += [f"{label:<24}{d.seconds:>10.0f}  {d.source}" for label, d in DURATIONS.items()]
    sizes = default_sizes_mb()["ccd"]
    lines.append(f"sizes: {', '.join(f'{t} {sizes[t]:.0f} MB' for t in sorted(PADDED_TYPES))} (CCD); {SIZE_SOURCE}")
    return "\n".join(lines)
