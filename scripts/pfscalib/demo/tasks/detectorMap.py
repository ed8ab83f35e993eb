"""Stand-ins for BootstrapTask, CosmicRayTask, MeasureCentroidsTask, GatherSlitOffsetsTask, FitDetectorMapTask."""

from __future__ import annotations

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
import numpy as np

from .. import detmap, products, simulate, twin
from . import measure
from .calib import IAS, IVAS, visit_record

FIBER_STATUS_GOOD = 1  # pfs.datamodel FiberStatus.GOOD


class BuildFiberProfilesConfig(pexConfig.Config):
    """Same fields as drp_stella's BuildFiberProfilesConfig; the demo uses profileRadius as the
    extraction half-width (swath and oversampling only matter for the profile fit in fitFiberProfiles)."""

    profileRadius = pexConfig.Field(dtype=int, default=5, doc="half-width (pixels) around the trace")
    profileSwath = pexConfig.Field(dtype=float, default=300, doc="rows per swath along the trace")
    profileOversample = pexConfig.Field(dtype=int, default=10, doc="oversampling factor of the profile")
    doBlindFind = pexConfig.Field(dtype=bool, default=True, doc="find traces without a detectorMap")


def fibers_of(pfs_config: dict, spectrograph: int) -> list[int]:
    pairs = sorted(
        (hole, fid)
        for fid, spec, hole in zip(pfs_config["fiberId"], pfs_config["spectrograph"], pfs_config["fiberHole"])
        if spec == spectrograph
    )
    return [fid for _, fid in pairs]


# --------------------------------------------------------------------------------------------- bootstrap
class BootstrapConnections(pipeBase.PipelineTaskConnections, dimensions=IAS):
    exposure = cT.Input(
        name="postISRCCD", storageClass="StandinExposure", dimensions=IVAS, multiple=True, doc="one quartz and one arc"
    )
    pfsConfig = cT.Input(
        name="pfsConfig",
        storageClass="PfsConfig",
        dimensions=("instrument", "visit"),
        multiple=True,
        doc="fibre configuration of each exposure",
    )
    detectorMap = cT.Output(
        name="detectorMap_bootstrap",
        storageClass="DetectorMap",
        dimensions=IAS,
        isCalibration=True,
        doc="rough detectorMap",
    )


class BootstrapConfig(pipeBase.PipelineTaskConfig, pipelineConnections=BootstrapConnections):
    profiles = pexConfig.ConfigField(dtype=BuildFiberProfilesConfig, doc="trace finding and profiles")
    spectralOffset = pexConfig.Field(
        dtype=float, default=0.0, doc="shift (pixels, y) of the base detectorMap before line matching"
    )
    spatialOffset = pexConfig.Field(dtype=float, default=0.0, doc="shift (pixels, x) of the base detectorMap")
    matchRadius = pexConfig.Field(dtype=float, default=1.0, doc="Line matching radius (nm)")
    spatialOrder = pexConfig.Field(dtype=int, default=1, doc="Polynomial order in the spatial dimension")
    spectralOrder = pexConfig.Field(dtype=int, default=1, doc="Polynomial order in the spectral dimension")
    rejIterations = pexConfig.Field(dtype=int, default=3, doc="Number of fitting iterations")
    rejThreshold = pexConfig.Field(dtype=float, default=3.0, doc="Rejection threshold (stdev)")
    allowSplit = pexConfig.Field(dtype=bool, default=True, doc="Allow split detectors for brm arms (not n)?")
    order = pexConfig.Field(dtype=int, default=2, doc="order of the demo map's wavelength correction")


def fit_chebyshev_2d(xx, yy, x_order, y_order, domain, iterations, threshold):
    """drp_stella bootstrap.fitChebyshev2D: observed (x, y) as 2-D Chebyshev series of the expected (x, y),
    rejecting on the combined residual (its clipping, including the quirk of clipping against the std of
    the previous iteration's good points)."""
    cheb = np.polynomial.chebyshev

    def design(points):
        u = [2 * (points[k] - domain[k][0]) / (domain[k][1] - domain[k][0]) - 1 for k in (0, 1)]
        return cheb.chebvander2d(u[0], u[1], [x_order, y_order])

    a = design(xx)
    good = np.all(np.isfinite(xx), axis=0) & np.all(np.isfinite(yy), axis=0)
    for _ in range(iterations + 1):
        cx = np.linalg.lstsq(a[good], yy[0][good], rcond=None)[0]
        cy = np.linalg.lstsq(a[good], yy[1][good], rcond=None)[0]
        x_resid, y_resid = yy[0] - a @ cx, yy[1] - a @ cy
        residuals = np.hypot(x_resid, y_resid)
        if _ == iterations:
            break
        good = np.abs(residuals) < threshold * residuals[good].std()
    return x_resid[good].std(), y_resid[good].std(), residuals[good].std(), good


@twin.timed
class BootstrapTask(pipeBase.PipelineTask):
    """drp_stella's BootstrapTask on the demo's images: blind tracing on the quartz, lines found on the arc,
    each fibre's lines (brightest first) matched to the brightest unused reference line within matchRadius
    of the wavelength the offset base map gives, and a fit per CCD half. Like the real task it does not fail
    on a wrong spectralOffset: the lines match the wrong reference lines, the fit has a large RMS (in the
    four log lines the real task writes, which reach bootstrap_log) and the map is written anyway. It raises
    only where the real one does: a trace count that differs from the fibres expected, or no match in a
    CCD half (IndexError)."""

    ConfigClass = BootstrapConfig
    _DefaultName = "bootstrap"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        data_id = butlerQC.quantum.dataId

        def choose_one(name, select, kind):
            """drp_stella 3a705d9 bootstrap.py:130-160 (chooseOne), its messages verbatim (:156, :159)."""
            refs = getattr(inputRefs, name)
            if len(refs) != 2:
                raise RuntimeError(f"Expected 2 dataset references in {name}, found {len(refs)}")
            chosen = [ref for ref in refs if select(ref)]
            if len(chosen) != 1:
                raise RuntimeError(f"Expected exactly 1 {kind} in {name}, found {len(chosen)}")
            return chosen[0]

        # bootstrap.py:162-171: the quartz is the visit whose lamps are exactly 'Quartz', the arc the other one
        arc = choose_one("exposure", lambda ref: visit_record(ref.dataId).lamps != "Quartz", "arc")
        quartz = choose_one("exposure", lambda ref: visit_record(ref.dataId).lamps == "Quartz", "quartz")
        arc_config = choose_one("pfsConfig", lambda ref: ref.dataId["visit"] == arc.dataId["visit"], "arc")
        quartz_config = choose_one("pfsConfig", lambda ref: ref.dataId["visit"] == quartz.dataId["visit"], "quartz")
        configs = [butlerQC.get(quartz_config), butlerQC.get(arc_config)]
        if configs[0]["fiberId"] != configs[1]["fiberId"]:  # bootstrap.py:224-227
            raise RuntimeError(
                f"Mismatch between fibers for flat ({configs[0]['fiberId']}) and arc ({configs[1]['fiberId']})"
            )
        dm = self.run(
            butlerQC.get(quartz),
            butlerQC.get(arc),
            fibers_of(configs[0], data_id["spectrograph"]),
            data_id["arm"],
            data_id["spectrograph"],
        )
        butlerQC.put(dm, outputRefs.detectorMap)

    def run(self, quartz, arc, fiber_ids, arm, spectrograph):
        dm = detmap.new(arm, spectrograph, fiber_ids)
        # applySlitOffset(spatialOffset, spectralOffset) of the base map
        dm["trace"] = [[t[0] + self.config.spatialOffset] + t[1:] for t in dm["trace"]]
        dm["slitOffsets"] = [self.config.spectralOffset] * len(fiber_ids)
        traces = measure.find_traces(np.asarray(quartz), len(fiber_ids))
        found = sum(len(y) > 5 for y, _ in traces.values())
        self.log.info("Found %d fibers on flat", found)
        if found != len(fiber_ids):
            raise RuntimeError(  # bootstrap.py:319-321
                f"Insufficient traces ({found}) found vs expected number of fibers ({len(fiber_ids)})"
            )
        detmap.fit_traces(dm, traces, order=2)
        lines = self.find_arc_lines(np.asarray(arc), dm)
        self.log.info("Found %d lines in %d traces", sum(len(v) for v in lines), len(lines))
        matches = self.match_arc_lines(lines, dm)
        used = np.zeros(len(matches), dtype=bool)
        for half in self.select_fibers(dm, arm):
            used |= self.fit_half(matches, dm, half)
        self.update(dm, [m for m, u in zip(matches, used) if u])
        return dm

    def find_arc_lines(self, arc, dm):
        """(index, x, y, flux) of the peaks of each fibre's extracted arc spectrum."""
        rows = np.arange(simulate.NY)
        out = []
        for index in range(len(dm["fiberId"])):
            spectrum = measure.extract_boxcar(arc, detmap.trace_x(dm, index, rows), self.config.profiles.profileRadius)
            peaks = measure.local_peaks(spectrum, 10 * measure.noise_level(spectrum))
            xs = detmap.trace_x(dm, index, np.array(peaks)) if peaks else []
            out.append([(index, float(x), y, float(spectrum[int(y + 0.5)])) for x, y in zip(xs, peaks)])
        return out

    def match_arc_lines(self, lines, dm):
        """drp_stella matchArcLines: per fibre, brightest observed line first, the brightest unused reference
        line within matchRadius of the wavelength the (offset) map gives at the line's row."""
        reference, intensity = simulate.arc_lines(dm["arm"])
        matches = []
        for obs in lines:
            used: set[float] = set()
            for index, x, y, _ in sorted(obs, key=lambda line: line[3], reverse=True):
                wl = float(detmap.row_wavelength(dm, index, np.array([y]))[0])
                select = np.isin(reference, list(used), invert=True)
                select &= np.abs(reference - wl) < self.config.matchRadius
                if not np.any(select):
                    continue
                ref = reference[select][np.argmax(intensity[select])]
                matches.append((index, x, y, float(ref)))
                used.add(float(ref))
        self.log.info("Matched %d lines", len(matches))
        return matches

    def select_fibers(self, dm, arm):
        """The two CCD halves of b, r and m (fibres left and right of the middle column); n is one detector."""
        indices = set(range(len(dm["fiberId"])))
        if not self.config.allowSplit or arm == "n":
            return [indices]
        centre = {i: float(detmap.trace_x(dm, i, np.array([simulate.NY / 2]))[0]) for i in indices}
        left = {i for i in indices if centre[i] < simulate.NX / 2}
        return [left, indices - left]

    def fit_half(self, matches, dm, half):
        """drp_stella fitDetectorMap's measurement: expected (findPoint) vs observed positions of one half."""
        select = np.array([m[0] in half for m in matches], dtype=bool)
        chosen = [m for m, s in zip(matches, select) if s]
        expected = np.array(
            [
                [float(detmap.trace_x(dm, i, detmap.line_y(dm, i, wl))[0]), float(detmap.line_y(dm, i, wl)[0])]
                for i, _, _, wl in chosen
            ]
        ).T
        observed = np.array([[x, y] for _, x, y, _ in chosen]).T
        diff = observed - expected
        # the real task's np.median(diff[0][good]) on no matches: IndexError, the quantum fails
        self.log.info("Median difference from detectorMap: %f,%f pixels", np.median(diff[0]), np.median(diff[1]))
        domain = [(0.0, simulate.NX - 1.0), (0.0, simulate.NY - 1.0)]
        x_rms, y_rms, rms, good = fit_chebyshev_2d(
            expected,
            observed,
            self.config.spatialOrder,
            self.config.spectralOrder,
            domain,
            self.config.rejIterations,
            self.config.rejThreshold,
        )
        self.log.info("Fit %d/%d points, rms: x=%f y=%f total=%f pixels", good.sum(), len(good), x_rms, y_rms, rms)
        used = np.zeros(len(matches), dtype=bool)
        used[np.flatnonzero(select)[good]] = True
        return used

    def update(self, dm, matches):
        """The demo map's form of the update: its wavelength correction refitted to the kept matches."""
        index, _, y, wl = (np.array(v) for v in zip(*matches))
        terms = detmap.poly_terms(self.config.order)
        a = detmap.design(terms, detmap.norm_t(dm["arm"], wl), detmap.slit_x(index))
        coeffs = np.linalg.lstsq(a, y - simulate.base_line_y(dm["arm"], wl), rcond=None)[0]
        dm["terms"], dm["coeffs"] = [list(t) for t in terms], coeffs.tolist()
        dm["slitOffsets"] = [0.0] * len(dm["fiberId"])


# --------------------------------------------------------------------------------------------- cosmicray
class CosmicRayConnections(pipeBase.PipelineTaskConnections, dimensions=IVAS):
    inputExposures = cT.Input(
        name="postISRCCD", storageClass="StandinExposure", dimensions=IVAS, multiple=True, doc="exposures of the group"
    )
    masks = cT.Output(
        name="crMask", storageClass="StandinMask", dimensions=IVAS, multiple=True, doc="cosmic-ray mask per visit"
    )
    outputExposures = cT.Output(
        name="calexp",
        storageClass="StandinExposure",
        dimensions=IVAS,
        multiple=True,
        doc="exposure with cosmic rays interpolated",
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if not config.doWriteExposure:
            del self.outputExposures


class CosmicRayConfig(pipeBase.PipelineTaskConfig, pipelineConnections=CosmicRayConnections):
    grouping = pexConfig.ChoiceField(
        dtype=str,
        default="auto",
        doc="how visits are grouped (the demo runs one quantum per visit whatever the grouping)",
        allowed={
            "auto": "by design+lamps",
            "separate": "one per visit",
            "all": "all together",
            "manual": "from groups",
        },
    )
    doWriteExposure = pexConfig.Field(dtype=bool, default=False, doc="write calexp")
    crThreshold = pexConfig.Field(dtype=float, default=10.0, doc="sigma above the local median")


@twin.timed
class CosmicRayTask(pipeBase.PipelineTask):
    """Single-pixel outliers whose 4 neighbours are all below half their value (lines and traces are wider)."""

    ConfigClass = CosmicRayConfig
    _DefaultName = "cosmicray"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        for index, ref in enumerate(inputRefs.inputExposures):
            image = np.asarray(butlerQC.get(ref), dtype=np.float64)
            mask, cleaned = self.run(image)
            butlerQC.put(mask, outputRefs.masks[index])
            if self.config.doWriteExposure:
                butlerQC.put(cleaned, outputRefs.outputExposures[index])

    def run(self, image):
        padded = np.pad(image, 1, mode="edge")
        neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        local = np.median(neighbours, axis=0)
        noise = np.sqrt(np.clip(local, 0, None) + simulate.READ_NOISE**2)
        cr = (image - local > self.config.crThreshold * noise) & np.all(neighbours < 0.5 * image, axis=0)
        cleaned = np.where(cr, local, image)
        return cr.astype(np.float32), cleaned.astype(np.float32)


# --------------------------------------------------------------------------------------------- centroids
class MeasureCentroidsConnections(pipeBase.PipelineTaskConnections, dimensions=IVAS):
    exposure = cT.Input(name="postISRCCD", storageClass="StandinExposure", dimensions=IVAS, doc="exposure")
    crMask = cT.Input(name="crMask", storageClass="StandinMask", dimensions=IVAS, doc="cosmic-ray mask")
    pfsConfig = cT.PrerequisiteInput(
        name="pfsConfig", storageClass="PfsConfig", dimensions=("instrument", "visit"), doc="fibre configuration"
    )
    calibDetectorMap = cT.PrerequisiteInput(
        name="detectorMap_calib",
        storageClass="DetectorMap",
        dimensions=IAS,
        isCalibration=True,
        doc="detectorMap predicting line positions",
    )
    centroids = cT.Output(name="centroids", storageClass="ArcLineSet", dimensions=IVAS, doc="measured lines")


class ReadLineListConfig(pexConfig.Config):
    exclusionRadius = pexConfig.Field(dtype=float, default=0.0, doc="drop lines closer than this (nm)")


class MeasureCentroidsConfig(pipeBase.PipelineTaskConfig, pipelineConnections=MeasureCentroidsConnections):
    readLineList = pexConfig.ConfigField(dtype=ReadLineListConfig, doc="line list selection")
    doForceTraces = pexConfig.Field(dtype=bool, default=True, doc="Force use of traces for non-continuum data?")
    traceSpacing = pexConfig.Field(dtype=int, default=8, doc="rows between trace measurements")
    traceThreshold = pexConfig.Field(dtype=float, default=10.0, doc="S/N a trace centroid needs")


def good_fibers(pfs_config: dict | None, fiber_ids: list[int]) -> list[int]:
    """Indices (in the map) of the fibres pfsConfig calls GOOD: only those are measured (drp_stella
    centroidTraces.py:112 and centroidLines.py:235 select fiberStatus == FiberStatus.GOOD)."""
    if pfs_config is None:
        return list(range(len(fiber_ids)))
    good = {f for f, status in zip(pfs_config["fiberId"], pfs_config["fiberStatus"]) if status == FIBER_STATUS_GOOD}
    return [i for i, f in enumerate(fiber_ids) if f in good]


@twin.timed
class MeasureCentroidsTask(pipeBase.PipelineTask):
    """drp_stella's MeasureCentroidsTask: the arc lines of the GOOD fibres, and (doForceTraces, or when no
    line was measured: every quartz) their trace centroids as lines with description "Trace", flag False,
    status GOOD and the wavelength the input map gives at their row (pipelines/measureCentroids.py:142-144,
    centroidTraces.py:205-223)."""

    ConfigClass = MeasureCentroidsConfig
    _DefaultName = "measureCentroids"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        inputs = butlerQC.get(inputRefs)
        record = visit_record(butlerQC.quantum.dataId)
        lines = self.run(
            np.asarray(inputs["exposure"]),
            np.asarray(inputs["crMask"]),
            inputs["calibDetectorMap"],
            record.lamps,
            butlerQC.quantum.dataId["visit"],
            inputs["pfsConfig"],
        )
        butlerQC.put(lines, outputRefs.centroids)

    def run(self, image, cr_mask, dm, lamps, visit, pfs_config=None):
        image = np.where(cr_mask > 0, np.nan, image)
        indices = good_fibers(pfs_config, dm["fiberId"])
        rows: list[dict] = []
        if lamps != "Quartz":
            wavelengths, _ = simulate.arc_lines(dm["arm"])
            gaps = np.diff(wavelengths)
            isolated = np.ones(len(wavelengths), dtype=bool)
            isolated[:-1] &= gaps > self.config.readLineList.exclusionRadius
            isolated[1:] &= gaps > self.config.readLineList.exclusionRadius
            rows = measure.arc_centroids(image, dm, wavelengths[isolated], indices=indices)
        if self.config.doForceTraces or not rows:
            sample = np.arange(4, simulate.NY - 4, self.config.traceSpacing)
            traces = measure.trace_centroids(image, dm, sample, indices, self.config.traceThreshold)
            for index, y, x, flux, flux_err in traces:
                rows.append(
                    {
                        "fiberId": dm["fiberId"][index],
                        "wavelength": float(detmap.row_wavelength(dm, index, np.array([y]))[0]),
                        "x": x,
                        "y": y,
                        "xErr": 0.05,
                        "yErr": 0.1,  # centroidTraces' spectralError: a trace says little about the row
                        "flux": flux,
                        "fluxErr": flux_err,
                        "description": measure.TRACE,
                    }
                )
        self.log.info("visit %d: measured %d centroids", visit, len(rows))
        keys = ["fiberId", "wavelength", "x", "y", "xErr", "yErr", "flux", "fluxErr", "description"]
        return {
            "visit": int(visit),
            **{k: [r[k] for r in rows] for k in keys},
            "flag": [False] * len(rows),
            "status": [0] * len(rows),  # ReferenceLineStatus.GOOD
        }


# --------------------------------------------------------------------------------------------- slit offsets
class GatherSlitOffsetsConnections(pipeBase.PipelineTaskConnections, dimensions=IVAS):
    dummy = cT.Input(
        name="centroids",
        storageClass="ArcLineSet",
        dimensions=IVAS,
        doc="only forces the quantum to exist where centroids do",
    )
    slitOffsets = cT.PrerequisiteInput(
        name="detectorMap_calib",
        storageClass="DetectorMap",
        dimensions=IAS,
        isCalibration=True,
        minimum=0,
        doc="detectorMap whose slit offsets are copied (drp_stella reads the "
        "slitOffsets component; the demo reads the whole map)",
    )
    output = cT.Output(
        name="slitOffsets", storageClass="StructuredDataDict", dimensions=IVAS, doc="per-fibre slit offsets"
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config.doSlitOffsets:
            del self.slitOffsets
            del self.output


class GatherSlitOffsetsConfig(pipeBase.PipelineTaskConfig, pipelineConnections=GatherSlitOffsetsConnections):
    doSlitOffsets = pexConfig.Field(dtype=bool, default=False, doc="offsets are being fitted: write nothing")


@twin.timed
class GatherSlitOffsetsTask(pipeBase.PipelineTask):
    ConfigClass = GatherSlitOffsetsConfig
    _DefaultName = "gatherSlitOffsets"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        if self.config.doSlitOffsets:
            return
        dm = butlerQC.get(inputRefs.slitOffsets) if inputRefs.slitOffsets else None
        fiber_ids = butlerQC.get(inputRefs.dummy)["fiberId"]
        ids = sorted(set(fiber_ids))
        offsets = (
            [dm["slitOffsets"][detmap.fiber_index(dm, f)] if f in dm["fiberId"] else 0.0 for f in ids]
            if dm
            else [0.0] * len(ids)
        )
        butlerQC.put({"fiberId": ids, "spectral": offsets}, outputRefs.output)


# --------------------------------------------------------------------------------------------- fit
class FitDetectorMapConnections(pipeBase.PipelineTaskConnections, dimensions=IAS):
    arcLines = cT.Input(
        name="centroids", storageClass="ArcLineSet", dimensions=IVAS, multiple=True, doc="centroids of every visit"
    )
    slitOffsets = cT.Input(
        name="slitOffsets",
        storageClass="StructuredDataDict",
        dimensions=IVAS,
        multiple=True,
        doc="slit offsets when they are not fitted",
    )
    detectorMap = cT.Output(
        name="detectorMap_candidate",
        storageClass="DetectorMap",
        dimensions=IAS,
        isCalibration=True,
        doc="fitted detectorMap",
    )
    lines = cT.Output(
        name="detectorMapLines",
        storageClass="ArcLineSet",
        dimensions=IAS,
        doc="lines used in the fit with residuals and flags",
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config.fitDetectorMap.doSlitOffsets:
            del self.slitOffsets


class FitDetectorMapSubConfig(pexConfig.Config):
    order = pexConfig.Field(dtype=int, default=7, doc="polynomial order of the distortion")
    soften = pexConfig.Field(dtype=float, default=0.003, doc="systematic error (pixels) added in quadrature")
    doSlitOffsets = pexConfig.Field(dtype=bool, default=False, doc="fit per-fibre spectral slit offsets")
    reserveFraction = pexConfig.Field(dtype=float, default=0.1, doc="fraction of lines reserved for QA")
    rejection = pexConfig.Field(dtype=float, default=4.0, doc="rejection threshold (sigma)")
    iterations = pexConfig.Field(dtype=int, default=3, doc="rejection iterations")
    traceOrder = pexConfig.Field(dtype=int, default=3, doc="order of the trace polynomials")


class FitDetectorMapConfig(pipeBase.PipelineTaskConfig, pipelineConnections=FitDetectorMapConnections):
    fitDetectorMap = pexConfig.ConfigField(dtype=FitDetectorMapSubConfig, doc="fit parameters")


@twin.timed
class FitDetectorMapTask(pipeBase.PipelineTask):
    ConfigClass = FitDetectorMapConfig
    _DefaultName = "fitDetectorMap"

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        data_id = butlerQC.quantum.dataId
        line_sets = butlerQC.get(inputRefs.arcLines)
        offsets = butlerQC.get(inputRefs.slitOffsets) if not self.config.fitDetectorMap.doSlitOffsets else []
        result = self.run(line_sets, offsets, data_id["arm"], data_id["spectrograph"])
        butlerQC.put(result.detectorMap, outputRefs.detectorMap)
        butlerQC.put(result.lines, outputRefs.lines)

    def run(self, line_sets, offsets, arm, spectrograph):
        cfg = self.config.fitDetectorMap
        # the map's fibres are the model's (drp_stella: the base detectorMap file), whether measured or not
        fiber_ids = detmap.model_fiber_ids(spectrograph)
        dm = detmap.new(arm, spectrograph, fiber_ids)
        cols = ["fiberId", "wavelength", "x", "y", "xErr", "yErr", "flux", "fluxErr", "description"]
        table = {k: np.array([v for s in line_sets for v in s[k]]) for k in cols}
        visits = np.array([s["visit"] for s in line_sets for _ in s["fiberId"]])
        index = np.array([fiber_ids.index(f) for f in table["fiberId"]], dtype=int)
        is_trace = table["description"] == measure.TRACE
        trace_src = is_trace if is_trace.any() else ~is_trace
        detmap.fit_traces(
            dm,
            {
                i: (table["y"][trace_src & (index == i)], table["x"][trace_src & (index == i)])
                for i in range(len(fiber_ids))
            },
            order=cfg.traceOrder,
        )
        arcs = np.flatnonzero(~is_trace)
        wl, y, yerr, fi = table["wavelength"][arcs], table["y"][arcs], table["yErr"][arcs], index[arcs]
        fixed_offsets = np.zeros(len(fiber_ids))
        if not cfg.doSlitOffsets and offsets:
            for entry in offsets:
                for f, v in zip(entry["fiberId"], entry["spectral"]):
                    if f in fiber_ids:
                        fixed_offsets[fiber_ids.index(f)] = v
        terms = detmap.poly_terms(cfg.order, with_pure_x=not cfg.doSlitOffsets)
        a = detmap.design(terms, detmap.norm_t(arm, wl), detmap.slit_x(fi))
        if cfg.doSlitOffsets:
            a = np.hstack([a, (fi[:, np.newaxis] == np.arange(len(fiber_ids))[np.newaxis, :]).astype(float)])
        target = y - simulate.base_line_y(arm, wl) - fixed_offsets[fi]
        weight = 1.0 / np.sqrt(yerr**2 + cfg.soften**2)
        reserved = (
            (np.arange(len(wl)) % max(int(round(1 / cfg.reserveFraction)), 1)) == 0
            if cfg.reserveFraction > 0
            else np.zeros(len(wl), dtype=bool)
        )
        used = ~reserved
        for _ in range(cfg.iterations + 1):
            solution = np.linalg.lstsq(a[used] * weight[used, np.newaxis], target[used] * weight[used], rcond=None)[0]
            resid = target - a @ solution
            sigma = 1.4826 * np.median(np.abs(resid[used])) + 1e-6
            keep = ~reserved & (np.abs(resid) < cfg.rejection * sigma)
            if np.array_equal(keep, used):
                break
            used = keep
        dm["terms"] = [list(t) for t in terms]
        dm["coeffs"] = solution[: len(terms)].tolist()
        dm["slitOffsets"] = (solution[len(terms) :] if cfg.doSlitOffsets else fixed_offsets).tolist()
        rms_used = float(np.sqrt(np.mean(resid[used] ** 2)))
        rms_reserved = float(np.sqrt(np.mean(resid[reserved] ** 2))) if reserved.any() else float("nan")
        dm["qa"] = {
            "rmsUsed": rms_used,
            "rmsReserved": rms_reserved,
            "nUsed": int(used.sum()),
            "nReserved": int(reserved.sum()),
            "nRejected": int((~used & ~reserved).sum()),
        }
        self.log.info(
            "fitDetectorMap %s%d: %d lines, RMS %.4f px (reserved %.4f px)",
            arm,
            spectrograph,
            int(used.sum()),
            rms_used,
            rms_reserved,
        )
        # drp_stella's detectorMapLines: the ArcLineSet of the fit, status bits DETECTORMAP_USED/RESERVED
        # (fitDetectorMap.py:413-414). Its trace rows, used for the traces, get their wavelength from the
        # fitted map (updateTraceWavelengths, fitDetectorMap.py:406, 843-870): their residual is ~0.
        status = np.zeros(len(table["fiberId"]), dtype=int)
        status[arcs] = np.where(reserved, products.DETECTORMAP_RESERVED, np.where(used, products.DETECTORMAP_USED, 0))
        traces = np.flatnonzero(is_trace)
        status[traces] = products.DETECTORMAP_USED
        wavelength = table["wavelength"].astype(float)
        for i in np.unique(index[traces]):
            rows = traces[index[traces] == i]
            wavelength[rows] = detmap.row_wavelength(dm, int(i), table["y"][rows])
        order = np.concatenate([arcs, traces])
        lines = {
            **{k: table[k][order].tolist() for k in cols if k not in ("description", "wavelength")},
            "wavelength": wavelength[order].tolist(),
            "flag": [False] * len(order),
            "status": status[order].tolist(),
            "description": table["description"][order].tolist(),
            "visit": visits[order].tolist(),
        }
        return pipeBase.Struct(detectorMap=dm, lines=lines)
