"""Simulated PFS detector physics with known truth.

Everything is a deterministic function of (seed, epoch, camera), so the truth that tests compare against
is regenerated from the same code instead of being stored twice. Geometry: rows (y) are the spectral
direction, columns (x) the spatial one; fibres run along y, as on the PFS detectors (scaled down).
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cached_property

import numpy as np

NY = 256  # rows (spectral)
NX = 256  # data columns (spatial)
NOVERSCAN = 16  # overscan columns appended on the right of every raw
NFIBER = 16  # fibres per spectrograph in the demo (651 on the real instrument)
FIBER_PITCH = 14.0  # pixels between fibres
FIBER_X0 = 22.0  # x of the first fibre at the central row
PIXEL_MM = 0.015  # 15 micron pixels: dither values are slit offsets in 1e-4 mm units
# Dispersion of the real arms (A/px on 4096 rows; pfs-real-site.md section 4). The demo's 256 rows keep the real
# b, r, n ranges; m's range is set so that its dispersion is r's x 0.4/0.9, as on the real detectors.
DISPERSION_A_PER_PX = {"b": 0.7, "r": 0.9, "n": 0.8, "m": 0.4}
ARM_RANGE = {
    "b": (380.0, 650.0),
    "r": (630.0, 970.0),
    "n": (940.0, 1260.0),
    "m": (710.0, 710.0 + 340.0 * DISPERSION_A_PER_PX["m"] / DISPERSION_A_PER_PX["r"]),
}
ARM_NUM = {"b": 1, "r": 2, "n": 3, "m": 4}
LSF_SIGMA = 1.1  # spectral line width (pixels)
READ_NOISE = 4.0  # ADU, gain 1
NLINES = 18  # arc lines per arm
MAX_SPECTRAL_OFFSET = 150.0  # |true spectral offset| the builder accepts (pixels)
# Per-camera spectral offsets (pixels) of the true wavelength solution w.r.t. the base optical model;
# bootstrap must be told these (bootstrap:spectralOffset) to match arc lines.
DEFAULT_SPECTRAL_OFFSET = {"b1": -10.0, "r1": 6.0, "b2": 0.0, "r2": 3.0, "n1": 4.0, "m1": -5.0, "m2": 2.0}
# The NIR (n) arm is an H4RG read up the ramp: no bias frame (reference pixels, here the overscan columns,
# remove the offset) and a dark that comes as a cube of reads (the site's nirDark, obs_pfs combineNirDark.py).
NIR_READ_TIME = 10.857  # seconds between reads of the H4RG at IRP ratio 1
NIR_DARK_READS = 4  # reads in the demo's nirDark cube
# IRP ratio (W_H4IRPN: data pixels per interleaved reference pixel) of an observing run's NIR ramps. obs_pfs writes
# it into visit.irp_ratio from the NIR header (translator.py:203-206, gen3.py:431-432); the ratio changes the
# per-read cadence, so each ratio has its own dark cube type (nirSuperdark.py:48-57: nirDark, nirDark_irp4).
# Demo rule: the first observing run is read at ratio 1, every later one at ratio 4 (the site switched to IRP4 in
# between, as production did in 2026, PIPE2D-1664).
IRP_RATIOS = (1, 4)


def irp_ratio(epoch_index: int) -> int:
    """The IRP ratio of the NIR ramps of an observing run (by its index)."""
    return IRP_RATIOS[min(epoch_index, 1)]


def nir_read_time(irp: int) -> float:
    """Seconds between reads at an IRP ratio: one reference pixel per irp data pixels is read along (the demo's
    numbers; only their difference matters: a dark cube of the other ratio gives a wrong dark current)."""
    return NIR_READ_TIME * (1.0 + 1.0 / irp) / 2.0


def nir_dark_type(irp: int) -> str:
    """The dataset type of a dark cube of this IRP ratio (obs_pfs nirSuperdark.py:48-57 datasetTypeForIrp)."""
    return "nirDark" if irp == 1 else f"nirDark_irp{irp}"


# Modes of a spectrograph's red arm: brn (low resolution: b, r, n) or m (medium resolution: b, m, n). Lit
# visits are taken in one mode; a visit in m mode has no r raw and a visit in brn mode no m raw.
BRN, MEDIUM = "brn", "m"
# Visit records are written as in one of two repository layouts (see make_repo): "current" as a Subaru
# datastore has them today, "legacy" as the simulator and the guide's first revision did.
CURRENT, LEGACY = "current", "legacy"
LAYOUTS = (CURRENT, LEGACY)
ARC_LAMPS = ("Ne", "HgAr", "Kr")  # one lamp per arc exposure, as the Subaru calibration sequences take them
# Defects the demo builder can simulate in one camera (make_repo --fault CAMERA:KIND): its frames of that
# kind carry this many times the read noise (for the quality gate's tests).
FAULTS = {"bias-noise": ("bias", 3.0), "dark-noise": ("dark", 5.0)}


def faults_of(faults, camera: str) -> tuple[str, ...]:
    """The kinds of the CAMERA:KIND faults that are this camera's."""
    return tuple(sorted(kind for cam, _, kind in (f.partition(":") for f in faults) if cam == camera))


def _rng(*key: object) -> np.random.Generator:
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def split_camera(camera: str) -> tuple[str, int]:
    return camera[0], int(camera[1:])


def detector_of(camera: str) -> str:
    """The CCD a camera reads: m is the r detector with the medium-resolution grating (obs_pfs numbers m as
    the negative of r's detector id), so m<k> shares r<k>'s bias, dark, pixel response and defects."""
    arm, spectrograph = split_camera(camera)
    return f"r{spectrograph}" if arm == "m" else camera


def cam_index(camera: str) -> int:
    arm, spectrograph = split_camera(camera)
    return 4 * (spectrograph - 1) + ARM_NUM[arm]


def in_mode(camera: str, mode: str) -> bool:
    """Whether a camera has a raw of a lit visit taken in this mode (r only in brn, m only in m mode)."""
    return {"r": mode == BRN, "m": mode == MEDIUM}.get(camera[0], True)


def hot_column(camera: str) -> int:
    """Data column that turns hot in the later runs (see CameraTruth.bias_pattern); a property of the CCD."""
    return 40 + (7 * cam_index(detector_of(camera))) % 150


def defect_boxes(camera: str) -> list[tuple[int, int, int, int]]:
    """The site's defect list of a camera: (x0, y0, width, height) boxes in data-region pixels, the columns of
    lsst.ip.isr.Defects' table. The hot column is listed for every run, as a site's long-lived defect list
    would be once the column has been seen."""
    return [(hot_column(camera), 0, 1, NY)]


def dither_shift_px(dither: int) -> float:
    """Slit offset of a dither value (1e-4 mm) in pixels."""
    return dither * 1e-4 / PIXEL_MM


@dataclasses.dataclass(frozen=True)
class Epoch:
    """One observing run: its own truth differs a little from the other runs'."""

    name: str
    index: int  # 0, 1, ...

    @property
    def bias_offset(self) -> float:
        return 2.0 + 3.0 * self.index  # ADU between data region and overscan

    @property
    def dark_scale(self) -> float:
        return 1.0 + 0.2 * self.index

    @property
    def spectral_shift(self) -> float:
        return 1.0 * self.index  # pixels: the spectrograph moved a little between runs


@dataclasses.dataclass(frozen=True)
class CameraTruth:
    """Truth of one camera in one epoch. offset: the camera's true spectral offset (pixels; None = the demo's
    default); arc_lit False: the arc lamp did not fire, the arcs carry no lines (no usable arc)."""

    seed: int
    epoch: Epoch
    camera: str
    offset: float | None = None
    arc_lit: bool = True
    faults: tuple[str, ...] = ()  # FAULTS kinds simulated in this camera

    @property
    def arm(self) -> str:
        return split_camera(self.camera)[0]

    @property
    def spectrograph(self) -> int:
        return split_camera(self.camera)[1]

    @property
    def cam_index(self) -> int:
        return cam_index(self.camera)

    @property
    def detector(self) -> str:
        return detector_of(self.camera)

    @property
    def is_nir(self) -> bool:
        return self.arm == "n"

    # --- detector (m shares r's CCD) ---
    @property
    def bias_level(self) -> float:
        return 1000.0 + 50.0 * cam_index(self.detector)

    @cached_property
    def bias_pattern(self) -> np.ndarray:
        """Bias structure left after overscan subtraction (the certified bias should equal this); none on the
        H4RG (n), whose reference pixels take the whole offset."""
        if self.is_nir:
            return np.zeros((NY, NX), dtype=np.float32)
        rng = _rng(self.seed, "bias", self.detector)
        x = np.arange(NX)
        columns = 3.0 * np.sin(2 * np.pi * x / 97.0) + rng.normal(0.0, 1.0, NX)
        pattern = columns[np.newaxis, :] + rng.normal(0.0, 0.5, (NY, NX)) + self.epoch.bias_offset
        if self.epoch.index > 0:
            pattern[:, hot_column(self.camera)] += 25.0  # a hot column that appeared in later runs
        return pattern.astype(np.float32)

    @cached_property
    def dark_current(self) -> np.ndarray:
        """Dark current (ADU/s) per pixel."""
        rng = _rng(self.seed, "dark", self.detector)
        dark = np.full((NY, NX), 0.01 * (1 + 0.1 * cam_index(self.detector)) * self.epoch.dark_scale)
        hot = rng.integers(0, NY * NX, 12)
        dark.flat[hot] *= 30.0
        return dark.astype(np.float32)

    @cached_property
    def pixel_response(self) -> np.ndarray:
        """Pixel-to-pixel response: the truth of fiberFlat."""
        return (1.0 + 0.01 * _rng(self.seed, "flat", self.detector).normal(0.0, 1.0, (NY, NX))).astype(np.float32)

    def nir_dark(self, irp: int = 1) -> np.ndarray:
        """The site's dark cube of an n camera at an IRP ratio: the dark charge accumulated at each read
        (NIR_DARK_READS x NY x NX, read k at (k+1) x nir_read_time(irp) seconds), as obs_pfs combineNirDark.py's
        cube holds per-read darks."""
        reads = (np.arange(NIR_DARK_READS) + 1.0) * nir_read_time(irp)
        return (reads[:, np.newaxis, np.newaxis] * self.dark_current[np.newaxis]).astype(np.float32)

    # --- fibres ---
    @cached_property
    def fiber_ids(self) -> np.ndarray:
        return (self.spectrograph - 1) * NFIBER + np.arange(NFIBER) + 1

    @cached_property
    def fiber_sigma(self) -> np.ndarray:
        """Gaussian profile width (pixels) of each fibre: the truth of fiberProfiles; like the traces, the slit's
        image through the camera, so m's are r's."""
        return 1.2 + 0.6 * _rng(self.seed, "sigma", self.detector).random(NFIBER)

    @cached_property
    def throughput(self) -> np.ndarray:
        """Per-fibre throughput (same fibre, both arms differ a little)."""
        return 0.7 + 0.6 * _rng(self.seed, "throughput", self.camera).random(NFIBER)

    @cached_property
    def slit_offsets(self) -> np.ndarray:
        """Per-fibre spectral slit offsets (pixels)."""
        return 0.15 * _rng(self.seed, "slit", self.camera).normal(0.0, 1.0, NFIBER)

    @cached_property
    def trace_coeffs(self) -> tuple[float, float]:
        """Tilt and curvature of the traces: the slit's image on the detector, which m's grating leaves where
        r's puts it (a grating disperses along the rows only)."""
        rng = _rng(self.seed, "trace", self.detector)
        return float(rng.uniform(-2.5, 2.5)), float(rng.uniform(0.5, 2.0))

    def fiber_x(self, y: np.ndarray, dither: int = 0) -> np.ndarray:
        """x centre of every fibre at rows y: shape (NFIBER, len(y))."""
        u = (np.asarray(y, dtype=float) - NY / 2) / (NY / 2)
        tilt, curve = self.trace_coeffs
        x0 = FIBER_X0 + FIBER_PITCH * np.arange(NFIBER) + dither_shift_px(dither)
        return x0[:, np.newaxis] + tilt * u[np.newaxis, :] + curve * u[np.newaxis, :] ** 2

    # --- wavelengths ---
    @cached_property
    def spectral_offset(self) -> float:
        if self.offset is not None:
            return float(self.offset)
        return DEFAULT_SPECTRAL_OFFSET.get(self.camera, float(_rng(self.seed, "off", self.camera).uniform(-8, 8)))

    def line_y(self, wavelength: np.ndarray) -> np.ndarray:
        """True row of wavelength(s) for every fibre: shape (NFIBER, len(wavelength))."""
        t = (np.asarray(wavelength, dtype=float) - ARM_RANGE[self.arm][0]) / np.ptp(ARM_RANGE[self.arm])
        xn = (FIBER_X0 + FIBER_PITCH * np.arange(NFIBER) - NX / 2) / (NX / 2)
        base = base_line_y(self.arm, np.asarray(wavelength, dtype=float))
        distortion = 0.6 * xn[:, np.newaxis] * (t[np.newaxis, :] - 0.5) + 0.3 * xn[:, np.newaxis] ** 2
        return (
            base[np.newaxis, :]
            + self.spectral_offset
            + self.epoch.spectral_shift
            + distortion
            + self.slit_offsets[:, np.newaxis]
        )

    def row_wavelength(self, fiber_index: int) -> np.ndarray:
        """True wavelength at each row for one fibre (inverse of line_y)."""
        grid = np.linspace(*ARM_RANGE[self.arm], 4000)
        return np.interp(np.arange(NY), self.line_y(grid)[fiber_index], grid)

    # --- rendering ---
    def fiber_image(self, flux: np.ndarray, lit: np.ndarray, dither: int = 0) -> np.ndarray:
        """Sum of Gaussian fibre profiles; flux has shape (NFIBER, NY): counts per row per fibre."""
        y = np.arange(NY)
        x = np.arange(NX)
        centres = self.fiber_x(y, dither)
        image = np.zeros((NY, NX))
        for i in np.flatnonzero(lit):
            d = x[np.newaxis, :] - centres[i][:, np.newaxis]
            profile = np.exp(-0.5 * (d / self.fiber_sigma[i]) ** 2) / (np.sqrt(2 * np.pi) * self.fiber_sigma[i])
            image += flux[i][:, np.newaxis] * profile
        return image

    def quartz_flux(self) -> np.ndarray:
        """Counts per row per fibre under the quartz lamp (before pixel response)."""
        wl = np.array([self.row_wavelength(i) for i in range(NFIBER)])
        return 60000.0 * quartz_spectrum(self.arm, wl) * self.throughput[:, np.newaxis]

    def arc_flux(self) -> np.ndarray:
        wavelengths, strengths = arc_lines(self.arm)
        rows = self.line_y(wavelengths)
        y = np.arange(NY)
        flux = np.zeros((NFIBER, NY))
        for i in range(NFIBER):
            g = np.exp(-0.5 * ((y[np.newaxis, :] - rows[i][:, np.newaxis]) / LSF_SIGMA) ** 2)
            flux[i] = self.throughput[i] * (strengths[:, np.newaxis] * g).sum(axis=0)
        return flux

    def scattered_light(self) -> np.ndarray:
        yy, xx = np.mgrid[0:NY, 0:NX]
        return 20.0 + 15.0 * (xx / NX) + 10.0 * (yy / NY)

    def raw(self, visit: VisitSpec) -> np.ndarray:
        """A simulated raw (data region + overscan), float32 ADU."""
        rng = _rng(self.seed, "raw", visit.visit, self.camera)
        signal = np.zeros((NY, NX))
        lit = np.ones(NFIBER, dtype=bool)
        if visit.kind in ("flat", "bright", "dark_profile"):
            if visit.kind == "bright":
                lit = (np.arange(NFIBER) % 4) == visit.group
            elif visit.kind == "dark_profile":
                lit = np.zeros(NFIBER, dtype=bool)
            signal = self.fiber_image(self.quartz_flux(), lit, visit.dither) + self.scattered_light()
        elif visit.kind == "arc" and self.arc_lit:
            signal = self.fiber_image(self.arc_flux(), lit, visit.dither)
        signal = signal * self.pixel_response + self.dark_current * visit.dark_time
        data = rng.poisson(np.clip(signal, 0, None)).astype(float)
        noise = READ_NOISE * max([FAULTS[f][1] for f in self.faults if FAULTS[f][0] == visit.kind] + [1.0])
        data += self.bias_level + self.bias_pattern + rng.normal(0.0, noise, (NY, NX))
        overscan = self.bias_level + rng.normal(0.0, noise, (NY, NOVERSCAN))
        return np.hstack([data, overscan]).astype(np.float32)


def base_line_y(arm: str, wavelength: np.ndarray) -> np.ndarray:
    """The base optical model (what drp_pfs_data's base detectorMap provides): row of a wavelength."""
    lo, hi = ARM_RANGE[arm]
    t = (wavelength - lo) / (hi - lo)
    return 8.0 + (NY - 16.0) * t + 6.0 * t * (1.0 - t)


def base_fiber_x(y: np.ndarray) -> np.ndarray:
    """Base optical model of the traces: straight, at the nominal slit positions."""
    x0 = FIBER_X0 + FIBER_PITCH * np.arange(NFIBER)
    return np.repeat(x0[:, np.newaxis], len(np.atleast_1d(y)), axis=1)


def quartz_spectrum(arm: str, wavelength: np.ndarray) -> np.ndarray:
    """Smooth lamp spectrum, normalised to order unity."""
    lo, hi = ARM_RANGE[arm]
    t = (wavelength - lo) / (hi - lo)
    return 0.6 + 0.4 * np.sin(np.pi * np.clip(t, 0, 1)) + 0.1 * t


def arc_lines(arm: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference arc line list of an arm: irregularly spaced wavelengths (nm) and peak strengths."""
    rng = _rng("lines", arm)
    lo, hi = ARM_RANGE[arm]
    span = hi - lo
    lines: list[float] = []
    while len(lines) < NLINES:
        wl = float(rng.uniform(lo + 0.06 * span, hi - 0.06 * span))
        if all(abs(wl - other) > 0.035 * span for other in lines):
            lines.append(wl)
    wavelengths = np.sort(np.array(lines))
    return np.round(wavelengths, 3), 2000.0 + 6000.0 * _rng("strength", arm).random(NLINES)


@dataclasses.dataclass(frozen=True)
class VisitSpec:
    visit: int
    kind: str  # bias, dark, flat, arc, bright, dark_profile
    epoch: str
    exposure_time: float
    dark_time: float
    dither: int = 0
    group: int = -1  # fibre-profile group
    design: int = 1
    mode: str = BRN  # lit visits: the red arm's mode (brn or m) they were taken in

    def has_raw(self, camera: str) -> bool:
        """Bias and dark are read out by every camera; a lit visit only by the cameras of its mode."""
        return self.kind in ("bias", "dark") or in_mode(camera, self.mode)

    def observation_type(self, layout: str) -> str:
        """Subaru writes arcs as 'comparison' (ics_utils DATA-TYP); 'arc' is the simulator's (legacy layout)."""
        kind = {"bright": "flat", "dark_profile": "flat"}.get(self.kind, self.kind)
        return "comparison" if kind == "arc" and layout == CURRENT else kind

    def target_name(self, layout: str) -> str:
        """Lower case at Subaru since 2023-12; upper case ('BIAS') in the legacy layout, as the guide selects."""
        name = self.observation_type(layout)
        return name if layout == CURRENT else name.upper()

    def lamps(self, layout: str) -> str:
        """'Quartz' for every quartz (BootstrapTask tells quartz from arc by it); arcs name their lamps. The
        demo renders the whole line list of the arm whatever the lamps."""
        if self.kind in ("flat", "bright", "dark_profile"):
            return "Quartz"
        if self.kind != "arc":
            return ""
        return ARC_LAMPS[self.visit % len(ARC_LAMPS)] if layout == CURRENT else "Ar,Kr,Ne"

    @property
    def science_program(self) -> str:
        return "fiberProfiles" if self.kind in ("bright", "dark_profile") else "calibration"


DITHERS = (0, 675, -675)  # dither values: 0 and +-4.5 pixels


def epoch_visits(epoch: str, first_visit: int, modes: tuple[str, ...] = (BRN,)) -> list[VisitSpec]:
    """The visits of one observing run, in observing order: the brn-mode set, then (with m cameras) the same
    lit set taken in m mode (m needs its own quartz, arcs and fibre-profile groups)."""
    specs: list[VisitSpec] = []
    v = first_visit

    def add(kind: str, exptime: float, **kw: int | str) -> None:
        nonlocal v
        specs.append(VisitSpec(v, kind, epoch, exptime, exptime, **kw))
        v += 1

    for _ in range(5):
        add("bias", 0.0)
    for _ in range(3):
        add("dark", 900.0)
    for mode in (BRN, MEDIUM):
        if mode not in modes:
            continue
        for dither in DITHERS:
            for _ in range(2):
                add("flat", 30.0, dither=dither, mode=mode)
        for _ in range(2):
            add("arc", 15.0, mode=mode)
        for group in range(4):
            for _ in range(2):
                add("bright", 30.0, group=group, design=10 + group, mode=mode)
            add("dark_profile", 30.0, group=group, design=20, mode=mode)
    return specs
