"""The seven calibration steps: what each runs, certifies and cleans (drp_stella names)."""

from __future__ import annotations

import dataclasses

STEP_NAMES = ("bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms")


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    pipeline: str  # file in the pipelines dir
    product: str  # dataset type the pipeline writes
    certified_as: str  # dataset type certified (detectorMap: copied as detectorMap_calib)
    calib_collection: str
    inputs: tuple[str, ...]
    clean: tuple[str, ...]  # intermediates removed after certification
    observation_types: tuple[str, ...]  # allowed visit.observation_type (lower case, as obs_pfs writes)
    needs: tuple[str, ...]  # steps whose certified products this one reads
    config: tuple[str, ...] = ()  # default -c overrides (the seed's)
    per_arm: bool = False  # product spans spectrographs (dims instrument, arm)

    @property
    def copies_product(self) -> bool:
        return self.certified_as != self.product


RAW = ("PFS/raw/all", "PFS/calib")
RAW_CONFIG = ("PFS/raw/all", "PFS/raw/pfsConfig", "PFS/calib")

STEPS: dict[str, Step] = {s.name: s for s in [
    Step("bias", "bias.yaml", "bias", "bias", "PFS/calib", ("PFS/raw/sps", "PFS/calib"), ("biasProc",),
         ("bias",), ()),
    Step("dark", "dark.yaml", "dark", "dark", "PFS/calib", RAW, ("darkProc", "darkScaled"), ("dark",), ("bias",)),
    Step("flat", "flat.yaml", "fiberFlat", "fiberFlat", "PFS/calib", RAW, ("flatProc", "ditherFlat"), ("flat",),
         ("dark",)),
    Step("bootstrap", "bootstrap.yaml", "detectorMap_bootstrap", "detectorMap_bootstrap", "PFS/bootstrap",
         RAW_CONFIG, ("postISRCCD",), ("flat", "arc"), ("flat",),
         ("isr:doCrosstalk=False", "bootstrap:profiles.profileRadius=2", "bootstrap:profiles.profileSwath=2500",
          "bootstrap:profiles.profileOversample=3")),
    Step("detectorMap", "detectorMap.yaml", "detectorMap_candidate", "detectorMap_calib", "PFS/calib",
         ("PFS/raw/all", "PFS/raw/pfsConfig", "PFS/bootstrap", "PFS/calib"), ("postISRCCD", "crMask"),
         ("arc", "flat"), ("bootstrap",),
         ("measureCentroids:connections.calibDetectorMap=detectorMap_bootstrap",
          "fitDetectorMap:fitDetectorMap.doSlitOffsets=True", "fitDetectorMap:fitDetectorMap.order=4",
          "fitDetectorMap:fitDetectorMap.soften=0.03")),
    Step("fiberProfiles", "fitFiberProfiles.yaml", "fiberProfiles", "fiberProfiles", "PFS/calib",
         ("PFS/raw/all", "PFS/fiberProfilesInputs", "PFS/raw/pfsConfig", "PFS/calib"),
         ("postISRCCD", "crMask", "calexp"), ("flat",), ("detectorMap",),
         ("fitProfiles:profiles.profileRadius=10", "fitProfiles:profiles.profileOversample=3",
          "fitProfiles:profiles.profileSwath=500")),
    Step("fiberNorms", "fiberNorms.yaml", "fiberNorms_calib", "fiberNorms_calib", "PFS/calib", RAW_CONFIG,
         ("postISRCCD", "crMask", "calexp"), ("flat",), ("fiberProfiles",), per_arm=True),
]}


def priority(step: str) -> int:
    """Snakemake priority of a step's jobs: how many steps of the chain remain from it (bias 7 ...
    fiberNorms 1; QA and the table 0). With fewer cores than ready jobs Snakemake starts the jobs with
    the longest chain ahead first (highest level first), so cameras advance together and no camera's
    whole chain is left to run alone at the end."""
    return len(STEP_NAMES) - STEP_NAMES.index(step)
