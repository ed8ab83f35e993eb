"""Stand-ins for PfsIsrTask, PfsCalibCombineTask, PfsDarkTask, FlatDitherCombineTask and FlatCombineTask.

Labels, connection names, default dataset types, dimensions and isCalibration flags follow obs_pfs and
drp_stella; storage classes are the demo's (numpy images in FITS, dicts in JSON).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
import numpy as np

from .. import products, simulate, twin

IVAS = ("instrument", "visit", "arm", "spectrograph")
IAS = ("instrument", "arm", "spectrograph")
log = logging.getLogger(__name__)


def camera_of(data_id) -> str:
    return f"{data_id['arm']}{data_id['spectrograph']}"


def visit_record(data_id):
    return data_id.records["visit"]


# ----------------------------------------------------------------------------------------------- isr
# r and m are one CCD behind two gratings: a camera of either arm takes its own bias or dark if certified, else
# the other arm's (obs_pfs isrTask.py:643-697 lookupBiasDark).
OTHER_ARM = {"r": "m", "m": "r"}
# IRP ratio -> the ISR connection holding the dark cube of that ratio (obs_pfs isrTask.py:736-760, 816-849)
NIR_DARK_CONNECTIONS = {1: "nirDark", 4: "nirDarkIrp4"}


def lookup_defects(dataset_type, registry, data_id, collections):
    """obs_pfs isrTask.py:588-616 lookupDefects: defects are keyed by detector, which the quantum's data ID
    (instrument, visit, arm, spectrograph) lacks: find the detector from arm+spectrograph, then the defects valid
    at the visit's time."""
    results = list(registry.queryDimensionRecords("detector", dataId=data_id))
    if len(results) != 1:
        raise RuntimeError(f"Unable to find detector for {data_id}: {results}")
    detector = results[0].id
    ref = registry.findDataset(
        dataset_type, collections=collections, dataId=data_id, timespan=data_id.timespan, detector=detector
    )
    return [ref] if ref is not None else []  # none: the middleware's "Not enough datasets (0)" names the connection


def lookup_bias_dark(dataset_type, registry, data_id, collections, allow_empty=False):
    """obs_pfs isrTask.py:643-697 lookupBiasDark, by the visit's timespan: b looks up its own arm only (:667-668;
    nothing found is no ref, the middleware dropping the None; n's bias is dropped, as adjustQuantum :1062-1074
    does); r and m take their own arm from any input collection first and the other arm's only if there is none
    (:675-697), and with neither raise at graph building unless allowEmpty (the dark, :813; the bias, :805,
    raises). A b visit without a bias is refused at run time by the demo ISR, naming camera and visit."""
    arm = data_id["arm"]
    if arm == "n":  # isrTask.py:1062-1074: never a bias for the H4RG, which reads the nirDark instead of a dark
        return []
    kwargs = dict(
        collections=collections,
        instrument=data_id["instrument"],
        spectrograph=data_id["spectrograph"],
        timespan=data_id.timespan,
    )
    if arm not in OTHER_ARM:  # :667-668
        ref = registry.findDataset(dataset_type, arm=arm, **kwargs)
        return [ref] if ref is not None else []
    refs = []
    for candidate in (arm, OTHER_ARM[arm]):
        # as obs_pfs: a type not registered yet, or nothing found, is no candidate
        with contextlib.suppress(Exception):
            refs.append(registry.findDataset(dataset_type, arm=candidate, **kwargs))
    found = [ref for ref in refs if ref is not None][:1]  # the same arm as the quantum's, if found (:695-697)
    if not found and not allow_empty:
        raise RuntimeError(f"Unable to find {dataset_type} for {data_id}")  # :690-694
    return found


def lookup_nir_dark(dataset_type, registry, data_id, collections):
    """obs_pfs isrTask.py:700-733 lookupNirDark: whichever dark cube type it is asked for (nirDark or
    nirDark_irp4), valid at the visit's time; the one matching the ramp's IRP ratio is chosen at run time
    (select_nir_dark)."""
    ref = registry.findDataset(dataset_type, collections=collections, dataId=data_id, timespan=data_id.timespan)
    return [ref] if ref is not None else []


def select_nir_dark(inputs: dict, irp_ratio: int | None, is_nir: bool) -> None:
    """obs_pfs isrTask.py:736-760 selectNirDark: keep the dark cube of the ramp's IRP ratio as inputs["nirDark"]
    and drop the others (a CCD keeps none). The real one reads W_H4IRPN from the raw's header (PfsRaw.irpN); the
    demo's raw is a bare image, so it reads visit.irp_ratio, which obs_pfs ingests from that card."""
    cubes = {ratio: inputs.pop(name, None) for ratio, name in NIR_DARK_CONNECTIONS.items()}
    if is_nir:
        inputs["nirDark"] = cubes.get(irp_ratio or 1)


def header_provenance(inputs: dict, inputRefs, irp_ratio, nir: bool) -> dict:
    """LSST CALIB RUN/UUID <INPUT> of each input the ISR reads, as obs_pfs fe94433 isrTask.py:1287-1298 (and
    drp_stella 3a705d9 pipelines/isr.py:350-358) write into the output's header; of the NIR cubes, the one the
    ramp's IRP ratio selects, under its connection's name (nirDark)."""
    refs = {name: getattr(inputRefs, name, None) for name in sorted(inputs)}
    if nir:
        chosen = refs.pop("nirDarkIrp4", None) if (irp_ratio or 1) == 4 else refs.get("nirDark")
        refs.pop("nirDarkIrp4", None)
        refs["nirDark"] = chosen
    out = {}
    for name, ref in refs.items():
        if ref is not None and hasattr(ref, "run"):
            out[f"LSST CALIB RUN {name.upper()}"] = ref.run
            out[f"LSST CALIB UUID {name.upper()}"] = str(ref.id)
    return out


class PfsIsrConnections(pipeBase.PipelineTaskConnections, dimensions=IVAS):
    ccdExposure = cT.Input(name="raw", storageClass="PfsRaw", dimensions=IVAS, doc="raw camera image")
    # The site prerequisites the guide does not build (obs_pfs isrTask.py:772-778, 897-903): no minimum=0, so a
    # camera without them fails at QuantumGraph generation, as at a real site. Storage classes: real Camera and
    # Defects; daf_butler defines those names with afw/ip_isr types, so the demo's are Standin* (seed.yaml).
    camera = cT.PrerequisiteInput(
        name="camera",
        storageClass="StandinCamera",
        dimensions=("instrument",),
        isCalibration=True,
        doc="camera geometry (data region and overscan of each detector)",
    )
    defects = cT.PrerequisiteInput(
        name="defects",
        storageClass="StandinDefects",
        dimensions=("instrument", "detector", "arm", "spectrograph"),
        isCalibration=True,
        lookupFunction=lookup_defects,
        doc="defect list (x0, y0, width, height boxes) of the detector, looked up by visit time",
    )
    bias = cT.PrerequisiteInput(
        name="bias",
        storageClass="StandinExposure",
        dimensions=IAS,
        isCalibration=True,
        minimum=0,
        lookupFunction=lookup_bias_dark,  # obs_pfs isrTask.py:798-806: allowEmpty False
        doc="bias, looked up in the calibration collections by visit time (r<->m fallback; none for n)",
    )
    dark = cT.PrerequisiteInput(
        name="dark",
        storageClass="StandinExposure",
        dimensions=IAS,
        isCalibration=True,
        minimum=0,
        lookupFunction=functools.partial(lookup_bias_dark, allow_empty=True),
        doc="dark current per second (r<->m fallback; n reads nirDark instead)",
    )
    nirDark = cT.PrerequisiteInput(
        name="nirDark",
        storageClass="ImageCube",
        dimensions=IAS,
        isCalibration=True,
        minimum=0,  # allowed to not exist, since a CCD uses dark instead
        lookupFunction=lookup_nir_dark,
        doc="NIR dark cube (dark charge per read) for IRP ratio 1 ramps, built and certified by the site",
    )
    nirDarkIrp4 = cT.PrerequisiteInput(
        name="nirDark_irp4",
        storageClass="ImageCube",
        dimensions=IAS,
        isCalibration=True,
        minimum=0,  # allowed to not exist; used only for IRP ratio 4 ramps
        lookupFunction=lookup_nir_dark,
        doc="NIR dark cube for IRP ratio 4 ramps, built and certified by the site",
    )
    badRefPixels = cT.PrerequisiteInput(
        name="badRefPixels",
        storageClass="NirBadRefPixels",
        dimensions=IAS,
        isCalibration=True,
        minimum=0,  # obs_pfs isrTask.py:825-832
        doc="bad IRP reference-row pixels of an n camera (noted only)",
    )
    linearity = cT.PrerequisiteInput(
        name="h4Linearity",
        storageClass="H4Linearity",
        dimensions=IAS,
        isCalibration=True,
        minimum=0,  # obs_pfs isrTask.py:833-840
        doc="H4RG nonlinearity correction of an n camera (noted only)",
    )
    flat = cT.PrerequisiteInput(
        name="fiberFlat",
        storageClass="StandinExposure",
        dimensions=IAS,
        isCalibration=True,
        doc="pixel response (fiberFlat)",
    )
    outputExposure = cT.Output(
        name="postISRCCD", storageClass="StandinExposure", dimensions=IVAS, doc="instrument-signature-removed image"
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if not config.doBias:
            del self.bias
        if not config.doDark:
            del self.dark
            del self.nirDark
            del self.nirDarkIrp4
        if not config.doDefect:
            del self.defects
        if not config.doFlat:
            del self.flat
        if not config.doWrite:
            del self.outputExposure


class PfsIsrConfig(pipeBase.PipelineTaskConfig, pipelineConnections=PfsIsrConnections):
    doWrite = pexConfig.Field(dtype=bool, default=True, doc="write outputExposure")
    doHeaderProvenance = pexConfig.Field(
        dtype=bool, default=True, doc="write the calibrations' run and id into the output's header (ip_isr's)"
    )
    doOverscan = pexConfig.Field(dtype=bool, default=True, doc="subtract the per-row overscan median")
    doBias = pexConfig.Field(dtype=bool, default=True, doc="subtract the bias")
    doDark = pexConfig.Field(dtype=bool, default=True, doc="subtract dark x dark_time")
    doFlat = pexConfig.Field(dtype=bool, default=True, doc="divide by the fiberFlat")
    doDefect = pexConfig.Field(dtype=bool, default=True, doc="read the defect list and check it against the camera")
    # Default False, unlike ip_isr: the demo's images have no mask plane to mark defects BAD in, and the only
    # defect it lists, the hot column, is fully removed by the bias; bridging it 3 px from a trace moves that
    # fibre's fiberNorms by 1.5 % (measured; the test tolerance is 1 %).
    doInterpolate = pexConfig.Field(
        dtype=bool, default=False, doc="interpolate over defects along rows (else they are only counted)"
    )
    doCrosstalk = pexConfig.Field(dtype=bool, default=False, doc="crosstalk correction; PFS asserts False")
    doLinearize = pexConfig.Field(dtype=bool, default=False, doc="linearity correction; PFS asserts False")
    doBrighterFatter = pexConfig.Field(dtype=bool, default=False, doc="brighter-fatter; PFS asserts False")
    doFringe = pexConfig.Field(dtype=bool, default=False, doc="fringe correction; PFS asserts False")


@twin.timed
class PfsIsrTask(pipeBase.PipelineTask):
    ConfigClass = PfsIsrConfig
    _DefaultName = "isr"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        for name in ("doCrosstalk", "doLinearize", "doBrighterFatter", "doFringe"):
            assert not getattr(self.config, name), f"isr:{name} must be False for PFS"
        data_id = butlerQC.quantum.dataId
        inputs = butlerQC.get(inputRefs)
        record = visit_record(data_id)
        camera = camera_of(data_id)
        where = f"camera {camera} visit {data_id['visit']} ({record.timespan.begin.utc.isot[:19]} UTC)"
        nir = data_id["arm"] == "n"
        metadata = header_provenance(inputs, inputRefs, record.irp_ratio, nir) if self.config.doHeaderProvenance else {}
        select_nir_dark(inputs, record.irp_ratio, nir)
        if nir and self.config.doDark and inputs.get("nirDark") is None:
            raise RuntimeError(f"No NIR dark cube found for {camera}")  # obs_pfs isrTask.py:1306-1309
        if nir:  # obs_pfs isrTask.py:1568-1598: warned, not fatal
            if inputs.pop("badRefPixels", None) is None:
                self.log.warning(
                    "doIRPbadPixels=True but no badRefPixels calib provided; skipping IRP bad-pixel repair"
                )
            if inputs.pop("linearity", None) is None:
                self.log.warning(
                    "no usable linearity for %s; proceeding without linearity correction for this exposure", camera
                )
        for name in ("badRefPixels", "linearity"):
            inputs.pop(name, None)
        for name, flag in (("bias", "doBias"), ("dark", "doDark")):
            if not nir and getattr(self.config, flag) and inputs.get(name) is None:
                raise RuntimeError(
                    f"isr: {flag}=True but no {name} is certified for {where} in the input "
                    f"calibration collections; build and certify the {name} first"
                )
        for name in ("bias", "dark"):
            ref = getattr(inputRefs, name, None)
            if ref is not None and ref.dataId["arm"] != data_id["arm"]:
                self.log.info(
                    "%s: using the %s of %s%d (r<->m fallback)",
                    camera,
                    name,
                    ref.dataId["arm"],
                    data_id["spectrograph"],
                )
        if nir and inputs.get("nirDark") is not None:
            # the cube holds the dark charge of each read: its slope is the dark current; the read cadence is the
            # ramp's IRP ratio's (a cube of the other ratio would give a wrong dark current)
            cube = np.asarray(inputs.pop("nirDark"), dtype=np.float64)
            read_time = simulate.nir_read_time(record.irp_ratio or 1)
            inputs["dark"] = (cube[-1] - cube[0]) / ((len(cube) - 1) * read_time)
            self.log.info(
                "%s: dark current from the %s cube (%d reads)",
                camera,
                simulate.nir_dark_type(record.irp_ratio or 1),
                len(cube),
            )
        inputs.pop("nirDark", None)
        detector = inputs["camera"]["detectors"].get(camera_of(data_id))
        if detector is None:
            raise RuntimeError(f"isr: the camera has no detector {camera_of(data_id)}")
        image = self.run(
            inputs["ccdExposure"],
            detector,
            bias=inputs.get("bias"),
            dark=inputs.get("dark"),
            flat=inputs.get("flat"),
            defects=inputs.get("defects"),
            dark_time=float(record.dark_time or 0.0),
        )
        if self.config.doWrite:
            butlerQC.put(products.StandinExposure.from_array(image, metadata=metadata), outputRefs.outputExposure)

    def run(self, raw, detector, bias=None, dark=None, flat=None, defects=None, dark_time=0.0):
        image = np.asarray(raw, dtype=np.float64)
        if list(image.shape) != detector["rawShape"]:
            raise RuntimeError(f"isr: raw of shape {image.shape} but the camera says {detector['rawShape']}")
        data = image[:, slice(*detector["dataColumns"])].copy()
        if self.config.doOverscan:
            data -= np.median(image[:, slice(*detector["overscanColumns"])], axis=1)[:, np.newaxis]
        if bias is not None:
            data -= bias
        if dark is not None:
            data -= dark * dark_time
        if flat is not None:
            data /= np.where(np.isfinite(flat) & (flat > 0), flat, 1.0)
        if defects is not None:
            bad = defect_mask(defects, data.shape)
            self.log.info("%d defect pixels%s", int(bad.sum()), " interpolated" if self.config.doInterpolate else "")
            if self.config.doInterpolate:
                data = interpolate_defects(data, bad)
        return data.astype(np.float32)


def defect_mask(defects: dict, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of a defect list (columns x0, y0, width, height, as lsst.ip.isr.Defects' table); a box
    outside the data region is an error (a defect list of another detector geometry)."""
    mask = np.zeros(shape, dtype=bool)
    for x0, y0, width, height in zip(defects["x0"], defects["y0"], defects["width"], defects["height"]):
        if x0 < 0 or y0 < 0 or width < 1 or height < 1 or x0 + width > shape[1] or y0 + height > shape[0]:
            raise RuntimeError(f"isr: defect box x0={x0} y0={y0} {width}x{height} outside the {shape} data region")
        mask[y0 : y0 + height, x0 : x0 + width] = True
    return mask


def interpolate_defects(data: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Replace defect pixels by linear interpolation along each row between the nearest good pixels (the
    traces run along columns, so a bad column is bridged across the spatial direction)."""
    out = data.copy()
    x = np.arange(data.shape[1])
    for row in np.flatnonzero(bad.any(axis=1)):
        good = ~bad[row]
        if good.any():
            out[row, ~good] = np.interp(x[~good], x[good], data[row, good])
    return out


# ----------------------------------------------------------------------------------------------- combine
class PfsCalibCombineConnections(pipeBase.PipelineTaskConnections, dimensions=("instrument", "detector")):
    inputExpHandles = cT.Input(
        name="cpInputs",
        storageClass="StandinExposure",
        dimensions=IVAS,
        multiple=True,
        deferLoad=True,
        doc="processed input frames",
    )
    outputData = cT.Output(
        name="cpProposal",
        storageClass="StandinExposure",
        dimensions=IAS,
        isCalibration=True,
        doc="combined calibration",
    )


class PfsCalibCombineConfig(pipeBase.PipelineTaskConfig, pipelineConnections=PfsCalibCombineConnections):
    calibrationType = pexConfig.Field(dtype=str, default="calibration", doc="bias, dark, ...")
    exposureScaling = pexConfig.ChoiceField(
        dtype=str,
        default="Unity",
        doc="scaling of each input",
        allowed={
            "Unity": "no scaling",
            "DarkTime": "divide by the visit's dark_time",
            "MeanStats": "divide by the image mean",
        },
    )
    # cp_pipe CalibCombineConfig (cpCombine.py): combine="MEANCLIP", clip=3.0, nIter=3, as PfsCalibCombineTask
    # keeps them
    combine = pexConfig.ChoiceField(
        dtype=str,
        default="MEANCLIP",
        doc="combination statistic (lsst.afw.math's name)",
        allowed={"MEANCLIP": "per-pixel clipped mean", "MEDIAN": "per-pixel median", "MEAN": "per-pixel mean"},
    )
    clip = pexConfig.Field(dtype=float, default=3.0, doc="Clipping threshold for combination")
    nIter = pexConfig.Field(dtype=int, default=3, doc="Clipping iterations for combination")
    mask = pexConfig.ListField(dtype=str, default=["SAT", "DETECTED", "INTRP"], doc="mask planes to reject")


@twin.timed
class PfsCalibCombineTask(pipeBase.PipelineTask):
    ConfigClass = PfsCalibCombineConfig
    _DefaultName = "cpCombine"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        handles = butlerQC.get(inputRefs.inputExpHandles)
        scales = []
        for ref in inputRefs.inputExpHandles:
            record = visit_record(ref.dataId)
            if self.config.exposureScaling == "DarkTime":
                if not record.dark_time:
                    raise RuntimeError(f"{self.config.calibrationType}: visit {ref.dataId['visit']} has no dark_time")
                scales.append(float(record.dark_time))
            else:
                scales.append(None)
        butlerQC.put(self.run([h.get() for h in handles], scales), outputRefs.outputData)

    def run(self, images, scales):
        stack = []
        for image, scale in zip(images, scales):
            image = np.asarray(image, dtype=np.float64)
            if self.config.exposureScaling == "DarkTime":
                image = image / scale
            elif self.config.exposureScaling == "MeanStats":
                image = image / np.nanmean(image)
            stack.append(image)
        stack = np.array(stack)
        if self.config.combine == "MEANCLIP":
            combined = clipped_mean(stack, self.config.clip, self.config.nIter)
        else:
            combined = (np.nanmedian if self.config.combine == "MEDIAN" else np.nanmean)(stack, axis=0)
        self.log.info("Combined %d %s frames (%s)", len(stack), self.config.calibrationType, self.config.combine)
        return combined.astype(np.float32)


# afw's sigma per interquartile range of a Gaussian (lsst/afw 714e0ed src/math/Statistics.cc:51)
IQ_TO_STDEV = 0.741301109252802


def nan_quantiles(stack: np.ndarray, quantiles: tuple[float, ...]) -> list[np.ndarray]:
    """np.nanpercentile(stack, 100 * q, axis=0) (linear interpolation) for each q, from one sort: numpy's
    own takes ~1 s per quartile of a 256 x 256 stack with a NaN in it (one 1-d call per pixel)."""
    ordered = np.sort(stack, axis=0)  # NaN last
    last = np.maximum(np.isfinite(stack).sum(axis=0) - 1, 0)
    out = []
    for q in quantiles:
        position = q * last
        below = np.floor(position).astype(np.intp)
        above = np.minimum(below + 1, last)
        low = np.take_along_axis(ordered, below[None], axis=0)[0]
        high = np.take_along_axis(ordered, above[None], axis=0)[0]
        out.append(low + (high - low) * (position - below))  # NaN where every value is NaN
    return out


def clipped_mean(stack: np.ndarray, clip: float, iterations: int) -> np.ndarray:
    """Per pixel (axis 0), afw's MEANCLIP (lsst.afw.math Statistics): start from the median and the
    interquartile sigma (IQ_TO_STDEV x IQR), then `iterations` times the mean and standard deviation of the values
    within clip sigma of the current centre. NaN inputs (masked pixels) are ignored; a pixel whose values
    are all clipped keeps its median."""
    stack = np.asarray(stack, dtype=np.float64)
    finite = np.isfinite(stack)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
        median = np.nanmedian(stack, axis=0)
        lower, upper = nan_quantiles(stack, (0.25, 0.75))
        centre, sigma = median, IQ_TO_STDEV * (upper - lower)
        for _ in range(iterations):
            keep = finite & (np.abs(stack - centre) <= clip * sigma)
            count = keep.sum(axis=0)
            values = np.where(keep, stack, 0.0)
            mean = values.sum(axis=0) / np.maximum(count, 1)
            spread = np.sqrt(np.where(keep, (stack - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count - 1, 1))
            centre = np.where(count > 0, mean, median)
            sigma = np.where(count > 1, spread, sigma)
    return centre


# ----------------------------------------------------------------------------------------------- dark
class PfsDarkConnections(pipeBase.PipelineTaskConnections, dimensions=IVAS):
    inputExp = cT.Input(name="cpDarkISR", storageClass="StandinExposure", dimensions=IVAS, doc="bias-subtracted dark")
    outputExp = cT.Output(
        name="cpDarkProc", storageClass="StandinExposure", dimensions=IVAS, doc="dark with cosmic rays masked (NaN)"
    )


class PfsDarkConfig(pipeBase.PipelineTaskConfig, pipelineConnections=PfsDarkConnections):
    crGrow = pexConfig.Field(dtype=int, default=2, doc="grow cosmic-ray masks by this many pixels")
    psfFwhm = pexConfig.Field(dtype=float, default=3.0, doc="PSF FWHM (pixels) for cosmic-ray detection")
    crThreshold = pexConfig.Field(dtype=float, default=8.0, doc="sigma above the local median flagged as CR")


@twin.timed
class PfsDarkTask(pipeBase.PipelineTask):
    """Mask cosmic rays: pixels far above both the local 3x3 median and their own Poisson+read noise.

    Hot pixels are isolated too, so only positive outliers brighter than any plausible dark pixel in
    this frame (crThreshold sigma above a 3x3 median *and* 3x the frame's 99.99th percentile) count.
    """

    ConfigClass = PfsDarkConfig
    _DefaultName = "dark"

    def run(self, inputExp):
        image = np.asarray(inputExp, dtype=np.float64)
        padded = np.pad(image, 1, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
        local = np.median(windows, axis=(2, 3))
        noise = np.sqrt(np.clip(local, 0, None) + simulate.READ_NOISE**2)
        cr = (image - local > self.config.crThreshold * noise) & (image > 3 * np.percentile(image, 99.99))
        for _ in range(self.config.crGrow):
            cr = cr | np.roll(cr, 1, 0) | np.roll(cr, -1, 0) | np.roll(cr, 1, 1) | np.roll(cr, -1, 1)
        out = image.copy()
        out[cr] = np.nan
        self.log.info("Masked %d cosmic-ray pixels", int(cr.sum()))
        return pipeBase.Struct(outputExp=out.astype(np.float32))


# ----------------------------------------------------------------------------------------------- flat
class FlatDitherCombineConnections(pipeBase.PipelineTaskConnections, dimensions=IAS + ("dither",)):
    inputExpHandles = cT.Input(
        name="cpInputs",
        storageClass="StandinExposure",
        dimensions=IVAS,
        multiple=True,
        deferLoad=True,
        doc="quartz frames of one dither",
    )
    outputData = cT.Output(
        name="ditherFlat",
        storageClass="StandinExposure",
        dimensions=IAS + ("dither",),
        doc="pixel response measured at one dither (NaN where S/N < minSNR)",
    )


class FlatDitherCombineConfig(pipeBase.PipelineTaskConfig, pipelineConnections=FlatDitherCombineConnections):
    minSNR = pexConfig.Field(dtype=float, default=50.0, doc="minimum S/N of the model for a valid pixel")
    smoothWidth = pexConfig.Field(
        dtype=int,
        default=9,
        doc="rows of the running median along the traces that models the lamp "
        "(stand-in for drp_stella's spectral smoothing)",
    )
    mask = pexConfig.ListField(dtype=str, default=["BAD", "SAT", "CR", "INTRP"], doc="mask planes to ignore")


class CombineHandlesTask(pipeBase.PipelineTask):
    """Shared runQuantum: load every deferred inputExpHandles, run(images) -> outputData."""

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        handles = butlerQC.get(inputRefs.inputExpHandles)
        butlerQC.put(self.run([h.get() for h in handles]), outputRefs.outputData)


@twin.timed
class FlatDitherCombineTask(CombineHandlesTask):
    """Mean of one dither's quartz frames divided by a smooth model: ~1 in lit pixels."""

    ConfigClass = FlatDitherCombineConfig
    _DefaultName = "ditherCombine"

    def run(self, images):
        mean = np.nanmean(np.array(images, dtype=np.float64), axis=0)
        half = self.config.smoothWidth // 2
        padded = np.pad(mean, ((half, half), (0, 0)), mode="reflect")
        model = np.median(np.lib.stride_tricks.sliding_window_view(padded, self.config.smoothWidth, axis=0), axis=-1)
        snr = model * np.sqrt(len(images)) / np.sqrt(np.clip(model, 1, None) + simulate.READ_NOISE**2)
        flat = np.where(snr >= self.config.minSNR, mean / np.where(model > 0, model, 1), np.nan)
        return flat.astype(np.float32)


class FlatCombineConnections(pipeBase.PipelineTaskConnections, dimensions=IAS):
    inputExpHandles = cT.Input(
        name="ditherFlat",
        storageClass="StandinExposure",
        dimensions=IAS + ("dither",),
        multiple=True,
        deferLoad=True,
        doc="per-dither flats",
    )
    outputData = cT.Output(
        name="fiberFlat", storageClass="StandinExposure", dimensions=IAS, isCalibration=True, doc="pixel response"
    )


class FlatCombineConfig(pipeBase.PipelineTaskConfig, pipelineConnections=FlatCombineConnections):
    pass


@twin.timed
class FlatCombineTask(CombineHandlesTask):
    """Mean of the dither flats where measured (the dithers fill the gaps between fibres). As drp_stella's
    FlatCombineTask.run (pipelines/flat.py:274-287): a pixel no dither measured is set to exactly 1.0 and
    flagged in a BAD_FLAT mask plane; any other non-finite pixel is replaced by the median. The fiberFlat
    has no NaN: its coverage is in the mask."""

    ConfigClass = FlatCombineConfig
    _DefaultName = "flatCombine"

    def run(self, flats):
        stack = np.array(flats, dtype=np.float64)
        measured = np.isfinite(stack)
        count = measured.sum(axis=0)
        flat = np.where(measured, stack, 0.0).sum(axis=0) / np.maximum(count, 1)
        empty = count == 0
        flat[empty] = 1.0
        mask = products.Mask(np.zeros(flat.shape, dtype=np.int32))
        mask.array[empty] |= 1 << mask.addMaskPlane("BAD_FLAT")
        bad = ~np.isfinite(flat)
        if bad.any():
            flat[bad] = np.median(flat[~bad])
        self.log.info("fiberFlat covers %.1f%% of the pixels (the rest BAD_FLAT)", 100 * (1 - empty.mean()))
        return products.StandinExposure.from_array(flat.astype(np.float32), mask.array, mask.getMaskPlaneDict())
