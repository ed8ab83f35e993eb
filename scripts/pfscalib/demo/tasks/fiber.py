"""Stand-ins for ProfilesFitDetectorMapTask, ReduceProfilesTask, MergeFiberProfilesTask (fitFiberProfiles.yaml)
and ReduceExposureTask, MeasureFiberNormsTask (fiberNorms.yaml).

Deviation from drp_stella, for lack of custom lookup functions: fitProfiles and mergeProfiles take no
pfsConfig prerequisite, and mergeProfiles no profiles_visits; neither needs them numerically here.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
import numpy as np

from .. import detmap, products, simulate, twin
from . import measure
from .calib import IAS, IVAS, camera_of
from .detectorMap import BuildFiberProfilesConfig

GROUP = ("instrument", "profiles_group")
GROUP_CAMERA = ("instrument", "profiles_group", "arm", "spectrograph")


def adjust_traces(image: np.ndarray, dm: dict, lit: np.ndarray | None = None) -> tuple[dict, float]:
    """Shift the detectorMap's traces in x by the median measured offset of the (lit) traces."""
    rows = np.arange(8, simulate.NY - 8, 16)
    offsets = [
        x - float(detmap.trace_x(dm, i, np.array([y]))[0])
        for i, y, x, _, _ in measure.trace_centroids(image, dm, rows, threshold=-np.inf)
        if lit is None or lit[i]
    ]
    dx = float(np.median(offsets)) if offsets else 0.0
    out = json.loads(json.dumps(dm))
    for trace in out["trace"]:
        trace[0] += dx
    return out, dx


def lit_fibers(image: np.ndarray, dm: dict, radius: float = 3.0) -> np.ndarray:
    rows = np.arange(simulate.NY)
    flux = np.array(
        [
            np.median(measure.extract_boxcar(image, detmap.trace_x(dm, i, rows), radius))
            for i in range(len(dm["fiberId"]))
        ]
    )
    return flux > 0.3 * flux.max()


def profile_hash(profiles: dict) -> str:
    return hashlib.sha1(json.dumps(profiles, sort_keys=True).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------ profilesFitDetectorMap
class ProfilesFitDetectorMapConnections(pipeBase.PipelineTaskConnections, dimensions=IVAS + ("profiles_group",)):
    exposure = cT.Input(name="postISRCCD", storageClass="StandinExposure", dimensions=IVAS, doc="quartz")
    crMask = cT.Input(name="crMask", storageClass="StandinMask", dimensions=IVAS, doc="cosmic-ray mask")
    pfsConfig = cT.PrerequisiteInput(
        name="pfsConfig", storageClass="PfsConfig", dimensions=("instrument", "visit"), doc="fibre configuration"
    )
    calibDetectorMap = cT.PrerequisiteInput(
        name="detectorMap_calib",
        storageClass="DetectorMap",
        dimensions=IAS,
        isCalibration=True,
        doc="calibration detectorMap to adjust",
    )
    data = cT.PrerequisiteInput(
        name="profiles_visits",
        storageClass="StructuredDataDict",
        dimensions=GROUP,
        doc="bright and dark visits of the group",
    )
    outputDetectorMap = cT.Output(
        name="detectorMap", storageClass="DetectorMap", dimensions=IVAS, doc="detectorMap adjusted to this exposure"
    )


class ProfilesFitDetectorMapConfig(pipeBase.PipelineTaskConfig, pipelineConnections=ProfilesFitDetectorMapConnections):
    requireAdjustDetectorMap = pexConfig.Field(dtype=bool, default=False, doc="fail if adjustment fails")


@twin.timed
class ProfilesFitDetectorMapTask(pipeBase.PipelineTask):
    ConfigClass = ProfilesFitDetectorMapConfig
    _DefaultName = "profilesFitDetectorMap"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        visit = butlerQC.quantum.dataId["visit"]
        if visit in inputs["data"].get("dark", []):
            raise pipeBase.NoWorkFound(f"visit {visit} is a dark of its group: nothing to adjust")
        image = np.where(np.asarray(inputs["crMask"]) > 0, np.nan, np.asarray(inputs["exposure"]))
        dm = inputs["calibDetectorMap"]
        dm, dx = adjust_traces(image, dm, lit_fibers(image, dm))
        self.log.info("visit %d: traces shifted by %.3f px", visit, dx)
        butlerQC.put(dm, outputRefs.outputDetectorMap)


# ------------------------------------------------------------------------------------ fitProfiles
class ReduceProfilesConnections(pipeBase.PipelineTaskConnections, dimensions=GROUP_CAMERA):
    exposure = cT.Input(
        name="calexp",
        storageClass="StandinExposure",
        dimensions=IVAS,
        multiple=True,
        doc="bright and dark exposures of the group",
    )
    detectorMap = cT.Input(
        name="detectorMap",
        storageClass="DetectorMap",
        dimensions=IVAS,
        multiple=True,
        doc="detectorMap of each bright exposure",
    )
    data = cT.PrerequisiteInput(
        name="profiles_visits",
        storageClass="StructuredDataDict",
        dimensions=GROUP,
        doc="bright and dark visits of the group",
    )
    fiberProfiles = cT.Output(
        name="fiberProfiles_group",
        storageClass="FiberProfileSet",
        dimensions=GROUP_CAMERA,
        doc="profiles of the fibres lit in this group",
    )


class ReduceProfilesConfig(pipeBase.PipelineTaskConfig, pipelineConnections=ReduceProfilesConnections):
    profiles = pexConfig.ConfigField(dtype=BuildFiberProfilesConfig, doc="profile fitting")
    backgroundDistance = pexConfig.Field(
        dtype=float, default=6.0, doc="pixels from lit traces used to fit the dark scaling"
    )

    def setDefaults(self):
        super().setDefaults()
        self.profiles.profileOversample = 3


@twin.timed
class ReduceProfilesTask(pipeBase.PipelineTask):
    """Subtract a*darks + c (fitted away from lit fibres), then measure each lit fibre's profile."""

    ConfigClass = ReduceProfilesConfig
    _DefaultName = "fitProfiles"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        data = butlerQC.get(inputRefs.data)
        images = {ref.dataId["visit"]: np.asarray(butlerQC.get(ref), dtype=np.float64) for ref in inputRefs.exposure}
        maps = {ref.dataId["visit"]: butlerQC.get(ref) for ref in inputRefs.detectorMap}
        bright = [images[v] for v in data["bright"] if v in images and v in maps]
        dark = [images[v] for v in data.get("dark", []) if v in images]
        if not bright:
            raise pipeBase.NoWorkFound("no bright exposure in this group")
        dm = maps[next(v for v in data["bright"] if v in maps)]
        butlerQC.put(self.run(bright, dark, dm), outputRefs.fiberProfiles)

    def run(self, bright, dark, dm):
        cfg = self.config.profiles
        b = np.nanmean(np.array(bright), axis=0)
        d = np.nanmean(np.array(dark), axis=0) if dark else np.zeros_like(b)
        lit = lit_fibers(b - d, dm)
        rows = np.arange(simulate.NY)
        x = np.arange(simulate.NX)
        centres = np.array([detmap.trace_x(dm, i, rows) for i in range(len(dm["fiberId"]))])
        distance = np.min(np.abs(x[np.newaxis, np.newaxis, :] - centres[lit][:, :, np.newaxis]), axis=0)
        far = (distance > self.config.backgroundDistance) & np.isfinite(b) & np.isfinite(d)
        design = np.stack([d[far], np.ones(far.sum())], axis=1) if dark else np.ones((far.sum(), 1))
        coeffs = np.linalg.lstsq(design, b[far], rcond=None)[0]
        background = coeffs[0] * d + coeffs[1] if dark else np.full_like(b, coeffs[0])
        image = b - background
        result: dict = {
            "arm": dm["arm"],
            "spectrograph": dm["spectrograph"],
            "radius": cfg.profileRadius,
            "oversample": cfg.profileOversample,
            "swath": cfg.profileSwath,
            "fibers": {},
        }
        nswath = max(1, int(round(simulate.NY / cfg.profileSwath)))
        edges = np.linspace(0, simulate.NY, nswath + 1).astype(int)
        # samples on the real profile grid (products.profile_index), each the mean of the pixels within half a
        # sample of it; none beyond profileRadius (the window), so the outermost samples stay 0
        index = products.profile_index(cfg.profileRadius, cfg.profileOversample)
        bins = np.append(index - 0.5 / cfg.profileOversample, index[-1] + 0.5 / cfg.profileOversample)
        for i in np.flatnonzero(lit):
            offsets = x[np.newaxis, :] - centres[i][:, np.newaxis]
            window = np.abs(offsets) <= cfg.profileRadius
            values = np.where(window, image, 0.0)
            norm = values.sum(axis=1, keepdims=True)
            values = values / np.where(norm > 0, norm, 1)
            sigma2 = float((values * offsets**2 * window).sum() / (values * window).sum())
            swaths = []
            for lo, hi in itertools.pairwise(edges):
                d_off, v = offsets[lo:hi][window[lo:hi]], values[lo:hi][window[lo:hi]]
                idx = np.digitize(d_off, bins)
                swaths.append([float(v[idx == k].mean()) if (idx == k).any() else 0.0 for k in range(1, len(bins))])
            result["fibers"][str(dm["fiberId"][i])] = {
                "sigma": float(np.sqrt(sigma2)),
                "profiles": swaths,
                "swathCentres": ((edges[:-1] + edges[1:]) / 2).tolist(),
            }
        self.log.info("measured %d fibre profiles; dark scale %s", int(lit.sum()), np.round(coeffs, 3).tolist())
        return result


# ------------------------------------------------------------------------------------ mergeProfiles
class MergeFiberProfilesConnections(
    pipeBase.PipelineTaskConnections, dimensions=("instrument", "profiles_run", "arm", "spectrograph")
):
    profiles = cT.Input(
        name="fiberProfiles_group",
        storageClass="FiberProfileSet",
        dimensions=("instrument", "profiles_run", "profiles_group", "arm", "spectrograph"),
        multiple=True,
        doc="profiles of every group",
    )
    merged = cT.Output(
        name="fiberProfiles",
        storageClass="FiberProfileSet",
        dimensions=IAS,
        isCalibration=True,
        doc="profiles of every fibre",
    )


class MergeFiberProfilesConfig(pipeBase.PipelineTaskConfig, pipelineConnections=MergeFiberProfilesConnections):
    pass


@twin.timed
class MergeFiberProfilesTask(pipeBase.PipelineTask):
    """Take each fibre from a group where it was lit; fill missing fibres from their nearest neighbours."""

    ConfigClass = MergeFiberProfilesConfig
    _DefaultName = "mergeProfiles"

    def run(self, profiles):
        merged = {k: v for k, v in profiles[0].items() if k != "fibers"}
        fibers: dict = {}
        for group in profiles:
            for fiber_id, entry in group["fibers"].items():
                fibers.setdefault(fiber_id, entry)
        spectrograph = merged["spectrograph"]
        expected = [str(f) for f in range((spectrograph - 1) * simulate.NFIBER + 1, spectrograph * simulate.NFIBER + 1)]
        for fiber_id in expected:
            if fiber_id not in fibers:
                nearest = sorted(fibers, key=lambda f: abs(int(f) - int(fiber_id)))[:2]
                fibers[fiber_id] = {
                    **fibers[nearest[0]],
                    "sigma": float(np.mean([fibers[f]["sigma"] for f in nearest])),
                    "interpolated": True,
                }
        merged["fibers"] = dict(sorted(fibers.items(), key=lambda kv: int(kv[0])))
        self.log.info("merged %d fibre profiles", len(fibers))
        return pipeBase.Struct(merged=merged)


# ------------------------------------------------------------------------------------ reduceExposure
class ReduceExposureConnections(pipeBase.PipelineTaskConnections, dimensions=IVAS):
    exposure = cT.Input(name="postISRCCD", storageClass="StandinExposure", dimensions=IVAS, doc="exposure")
    crMask = cT.Input(name="crMask", storageClass="StandinMask", dimensions=IVAS, doc="cosmic-ray mask")
    pfsConfig = cT.PrerequisiteInput(
        name="pfsConfig", storageClass="PfsConfig", dimensions=("instrument", "visit"), doc="fibre configuration"
    )
    fiberProfiles = cT.PrerequisiteInput(
        name="fiberProfiles", storageClass="FiberProfileSet", dimensions=IAS, isCalibration=True, doc="fibre profiles"
    )
    fiberNorms = cT.PrerequisiteInput(
        name="fiberNorms_calib",
        storageClass="PfsFiberNorms",
        dimensions=("instrument", "arm"),
        isCalibration=True,
        doc="fibre norms",
    )
    detectorMap = cT.PrerequisiteInput(
        name="detectorMap_calib",
        storageClass="DetectorMap",
        dimensions=IAS,
        isCalibration=True,
        doc="calibration detectorMap",
    )
    calexp = cT.Output(name="calexp", storageClass="StandinExposure", dimensions=IVAS, doc="background-subtracted")
    pfsArm = cT.Output(name="pfsArm", storageClass="PfsArm", dimensions=IVAS, doc="extracted spectra")
    detectorMapUsed = cT.Output(
        name="detectorMap", storageClass="DetectorMap", dimensions=IVAS, doc="detectorMap adjusted to this exposure"
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if not config.doApplyFiberNorms:
            del self.fiberNorms


class ReduceExposureConfig(pipeBase.PipelineTaskConfig, pipelineConnections=ReduceExposureConnections):
    doApplyFiberNorms = pexConfig.Field(dtype=bool, default=True, doc="divide by fiberNorms_calib")
    doApplySkyNorms = pexConfig.Field(dtype=bool, default=True, doc="divide by skyNorms (not in the demo)")
    doApplyPfiCorrection = pexConfig.Field(dtype=bool, default=True, doc="PFI correction (not in the demo)")
    requireAdjustDetectorMap = pexConfig.Field(dtype=bool, default=False, doc="fail if adjustment fails")
    doScatteredLight = pexConfig.Field(dtype=bool, default=True, doc="subtract a plane fitted between fibres")
    maxAdjustment = pexConfig.Field(dtype=float, default=1.0, doc="largest trace shift (pixels) accepted")


@twin.timed
class ReduceExposureTask(pipeBase.PipelineTask):
    ConfigClass = ReduceExposureConfig
    _DefaultName = "reduceExposure"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        image = np.where(np.asarray(inputs["crMask"]) > 0, np.nan, np.asarray(inputs["exposure"], dtype=np.float64))
        dm, dx = adjust_traces(image, inputs["detectorMap"])
        if abs(dx) > self.config.maxAdjustment:
            if self.config.requireAdjustDetectorMap:
                raise RuntimeError(
                    f"reduceExposure {camera_of(data_id)} visit {data_id['visit']}: trace "
                    f"adjustment {dx:.2f} px exceeds {self.config.maxAdjustment} px"
                )
            dm, dx = inputs["detectorMap"], 0.0
        calexp, arm_spectra = self.run(image, dm, inputs["fiberProfiles"], inputs.get("fiberNorms"))
        arm_spectra.update(visit=int(data_id["visit"]), arm=data_id["arm"], spectrograph=int(data_id["spectrograph"]))
        butlerQC.put(calexp, outputRefs.calexp)
        butlerQC.put(arm_spectra, outputRefs.pfsArm)
        butlerQC.put(dm, outputRefs.detectorMapUsed)

    def run(self, image, dm, profiles, norms=None):
        rows = np.arange(simulate.NY)
        x = np.arange(simulate.NX)
        sigmas = np.array([profiles["fibers"][str(f)]["sigma"] for f in dm["fiberId"]])
        centres = np.array([detmap.trace_x(dm, i, rows) for i in range(len(dm["fiberId"]))])
        if self.config.doScatteredLight:
            distance = np.min(
                np.abs(x[np.newaxis, np.newaxis, :] - centres[:, :, np.newaxis]) / sigmas[:, None, None], axis=0
            )
            far = (distance > 4.0) & np.isfinite(image)
            yy, xx = np.mgrid[0 : simulate.NY, 0 : simulate.NX]
            design = np.stack([np.ones(far.sum()), xx[far], yy[far]], axis=1)
            coeffs = np.linalg.lstsq(design, image[far], rcond=None)[0]
            image = image - (coeffs[0] + coeffs[1] * xx + coeffs[2] * yy)
        clean = np.nan_to_num(image)
        flux, wavelength = [], []
        for i in range(len(dm["fiberId"])):
            offsets = x[np.newaxis, :] - centres[i][:, np.newaxis]
            window = np.abs(offsets) <= 5 * sigmas[i]
            profile = np.where(window, np.exp(-0.5 * (offsets / sigmas[i]) ** 2) / (np.sqrt(2 * np.pi) * sigmas[i]), 0)
            flux.append(((profile * clean).sum(axis=1) / (profile**2).sum(axis=1)).tolist())
            wavelength.append(detmap.row_wavelength(dm, i).tolist())
        spectra = {
            "fiberId": list(dm["fiberId"]),
            "wavelength": wavelength,
            "flux": flux,
            "fiberProfilesHash": profile_hash(profiles),
        }
        if norms is not None:
            for i, fiber_id in enumerate(dm["fiberId"]):
                spectra["flux"][i] = (np.array(spectra["flux"][i]) / norms["norm"][str(fiber_id)]).tolist()
        return image.astype(np.float32), spectra


# ------------------------------------------------------------------------------------ measureFiberNorms
class MeasureFiberNormsConnections(pipeBase.PipelineTaskConnections, dimensions=("instrument", "arm")):
    pfsArm = cT.Input(
        name="pfsArm",
        storageClass="PfsArm",
        dimensions=IVAS,
        multiple=True,
        doc="quartz spectra of every spectrograph and visit",
    )
    fiberNorms = cT.Output(
        name="fiberNorms_calib",
        storageClass="PfsFiberNorms",
        dimensions=("instrument", "arm"),
        isCalibration=True,
        doc="relative fibre normalisation of the arm",
    )


class MeasureFiberNormsConfig(pipeBase.PipelineTaskConfig, pipelineConnections=MeasureFiberNormsConnections):
    rejIter = pexConfig.Field(dtype=int, default=1, doc="sigma-clipping iterations per fibre")
    rejThresh = pexConfig.Field(dtype=float, default=4.0, doc="clipping threshold (sigma)")
    numWavelength = pexConfig.Field(dtype=int, default=200, doc="points of the common wavelength grid")


@twin.timed
class MeasureFiberNormsTask(pipeBase.PipelineTask):
    """Co-add each spectrograph's visits, then norm = flux / median over all fibres of the arm, per wavelength."""

    ConfigClass = MeasureFiberNormsConfig
    _DefaultName = "measureFiberNorms"

    def run(self, pfsArm):
        by_spec: dict[int, list[dict]] = {}
        for spectra in pfsArm:
            by_spec.setdefault(spectra["spectrograph"], []).append(spectra)
        visits = {s: sorted(a["visit"] for a in arms) for s, arms in by_spec.items()}
        if len({tuple(v) for v in visits.values()}) > 1:
            raise RuntimeError(f"measureFiberNorms: visit sets differ between spectrographs: {visits}")
        fiber_ids, spectrographs, wl, flux, hashes = [], [], [], [], {}
        for spectrograph, arms in sorted(by_spec.items()):
            hashes[str(spectrograph)] = sorted({a["fiberProfilesHash"] for a in arms})
            fiber_ids += arms[0]["fiberId"]
            spectrographs += [spectrograph] * len(arms[0]["fiberId"])
            wl += arms[0]["wavelength"]
            flux += np.mean([np.array(a["flux"]) for a in arms], axis=0).tolist()
        wl_arr, flux_arr = np.array(wl), np.array(flux)
        lo, hi = np.max(wl_arr.min(axis=1)), np.min(wl_arr.max(axis=1))
        grid = np.linspace(lo, hi, self.config.numWavelength)
        resampled = np.array([np.interp(grid, w, f) for w, f in zip(wl_arr, flux_arr)])
        ratio = resampled / np.median(resampled, axis=0, keepdims=True)
        norm = np.median(ratio, axis=1)
        for _ in range(self.config.rejIter):
            resid = ratio - norm[:, np.newaxis]
            sigma = 1.4826 * np.median(np.abs(resid), axis=1, keepdims=True) + 1e-9
            norm = np.array(
                [np.median(r[np.abs(d) < self.config.rejThresh * s]) for r, d, s in zip(ratio, resid, sigma)]
            )
        scale = norm.mean()
        self.log.info("fiberNorms of %d fibres over %.1f-%.1f nm", len(fiber_ids), lo, hi)
        return pipeBase.Struct(
            fiberNorms={
                "fiberId": fiber_ids,
                "spectrograph": spectrographs,
                "wavelength": grid.tolist(),
                "values": (ratio / scale).tolist(),
                "norm": {str(f): float(n / scale) for f, n in zip(fiber_ids, norm)},
                "fiberProfilesHash": hashes,
                "visits": visits,
            }
        )
