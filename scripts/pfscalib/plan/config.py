"""The workflow configuration, validated by its schema (with defaults) and by the checks a schema cannot
express; every error is one line naming the file, the key and the problem."""

from __future__ import annotations

import datetime
import itertools
import re
from typing import Any, NamedTuple

from pfscalib.plan import paths
from pfscalib.plan.contract import Override, overrides_in
from pfscalib.plan.schema import schema_error_line, schema_path
from pfscalib.plan.steps import ARMS, MODES, OFFSET_STEP, STEP_NAMES, STEPS, Role, lender, role, role_words

AUTO = "auto"  # spectralOffset proposed from the data (pfscalib.job.offsets)
# Pixels along wavelength (rows) of each arm's detector: spectralOffset shifts the detectorMap along rows
# (drp_stella bootstrap.py:95, 275-281; ../shared/reference/pfs-real-site.md section 4), and b, r, m are
# 4176 x 4096 CCDs, n a 4096 x 4096 H4RG (pfs-real-site.md section 7; pfscalib.plan.disk). An offset of the
# detector's size or more moves every arc line off it; real offsets are tens of pixels (b1 0, r1 8, r3 40:
# drp_pfs_data detectorMap/bootstrap/notes.md).
DETECTOR_ROWS = {"b": 4096, "r": 4096, "m": 4096, "n": 4096}


class ConfigError(ValueError):
    """Bad input; str() is one line naming the file, the row or key, and the problem."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")


def validate_config(config: dict, source: str = "config") -> None:
    """snakemake.utils.validate (fills defaults) with a one-line error."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, schema_path("config"), set_default=True)
    except WorkflowError:
        raise ConfigError(source, schema_error_line(config, schema_path("config"))) from None


def parse_time(value: str, where: str) -> datetime.datetime:
    """Only for ordering validity ranges (all TAI); stdlib because astropy.time costs 0.2 s per
    Snakemake start. The schema pattern keeps the accepted forms those of astropy's isot."""
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(where, f"{value!r} is not an ISO-8601 date (e.g. 2025-03-01T00:00:00)") from None


def plain_date(value: Any, where: str) -> Any:
    """An unquoted YAML date (2025-03-01 or 2025-03-01T00:00:00) is accepted as the same ISO-8601 text;
    one with a time zone is not (validity ranges are TAI, without a zone)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            raise ConfigError(
                where, f"{value.isoformat()} has a time zone; give TAI without one (e.g. 2025-03-01T00:00:00)"
            )
        return value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def string_keys(mapping: Any) -> Any:
    """A mapping whose keys YAML read as numbers (epoch 18:) with string keys, as they are used in paths,
    collection names and tables."""
    return {str(k): v for k, v in mapping.items()} if isinstance(mapping, dict) else mapping


def check_control_characters(value: Any, source: str, path: str = "") -> None:
    """No newline, tab or other control character in any key or value: the schema's patterns are
    matched by Python's re, whose $ also matches before a final newline."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        for text in (key, item):
            if isinstance(text, str) and any(ord(c) < 32 or ord(c) == 127 for c in text):
                raise ConfigError(f"{source}: {where}", f"{text!r} contains a newline, tab or other control character")
        check_control_characters(item, source, where)


def normalize_config(config: dict, source: str) -> None:
    """What YAML reads differently from what is meant, made what is meant (in place, before the schema):
    numeric epoch names, unquoted dates."""
    check_control_characters(config, source)
    if "epochs" in config:
        config["epochs"] = string_keys(config["epochs"])
    for name, span in (config.get("epochs") or {}).items():
        for key in ("begin", "end") if isinstance(span, dict) else ():
            if key in span:
                span[key] = plain_date(span[key], f"{source}: epochs.{name}.{key}")
    for step, settings in (config.get("steps") or {}).items():
        if isinstance(settings, dict) and isinstance(settings.get("validity"), dict):
            settings["validity"] = string_keys(settings["validity"])
            for name, span in settings["validity"].items():
                for key in ("begin", "end") if isinstance(span, dict) else ():
                    if key in span:
                        span[key] = plain_date(span[key], f"{source}: steps.{step}.validity.{name}.{key}")
    demo = config.get("demo")
    if isinstance(demo, dict) and isinstance(demo.get("epochs"), dict):
        demo["epochs"] = {str(k): plain_date(v, f"{source}: demo.epochs.{k}") for k, v in demo["epochs"].items()}


COLLECTION_PART = re.compile(r"[A-Za-z0-9_.+-]+")


def collection_name_problem(name: str) -> str | None:
    """Why a name cannot be a collection the workflow reads or writes (None if it can). RUN collections
    name directories of the datastore: a '.' or '..' part would put them outside the repository."""
    parts = name.split("/")
    if not all(COLLECTION_PART.fullmatch(part) for part in parts):
        return (
            f"{name!r} is not a collection name: parts of letters, digits, _ . + - joined by / "
            "(no spaces, quotes, commas, non-ASCII or shell characters)"
        )
    if any(part in (".", "..") for part in parts):
        return f"{name!r} has a '.' or '..' part: collection names may not climb out of the repository"
    return None


class Validity(NamedTuple):
    """A calibration's validity range [begin, end) in TAI ISO-8601; end None is unbounded."""

    begin: str
    end: str | None


def whole_spectrographs(cameras: list[str]) -> bool:
    """The same arms on every spectrograph (b1 r1 b2 r2, not b1 r2)."""
    arms, spectrographs = {c[0] for c in cameras}, {c[1:] for c in cameras}
    return set(cameras) == {a + s for a in arms for s in spectrographs}


def mistyped_cameras(cameras: list[str], others: list[str]) -> list[tuple[str, str]]:
    """(typed, meant): a camera of the list whose replacement by one of the others (cameras the config names
    elsewhere) makes the list the same arms on every spectrograph, where it is not, with the same arms."""
    if whole_spectrographs(cameras):
        return []
    arms = {c[0] for c in cameras}
    return [
        (typed, meant)
        for typed in cameras
        for meant in others
        if whole_spectrographs(meant_list := [meant if c == typed else c for c in cameras])
        and {c[0] for c in meant_list} == arms
    ]


def epoch_order(epochs: dict[str, dict]) -> list[str]:
    """Epoch names by the start of their validity range (ISO-8601 TAI strings sort in time order): the order
    of a camera's trend (pfscalib.job.trend) and of its drift panels."""
    return sorted(epochs, key=lambda name: (str(epochs[name].get("begin", "")), name))


class Settings:
    """The validated configuration, and each step's setting with the step's default."""

    def __init__(self, config: dict, source: str = "config"):
        normalize_config(config, source)
        validate_config(config, source)
        self.config = config
        self.source = source
        self.cameras: list[str] = list(config["cameras"])
        self.arms = sorted({c[0] for c in self.cameras}, key="brnm".index)
        self.epochs: dict[str, dict] = config["epochs"]
        self.camera_steps: dict[str, dict[str, str]] = config.get("camera_steps", {})
        self.steps: dict[str, dict] = {name: dict(config.get("steps", {}).get(name, {})) for name in STEP_NAMES}
        self.executables = {
            "pipetask": "pipetask",
            "defineFiberProfilesInputs": "defineFiberProfilesInputs.py",
            **config.get("executables", {}),
        }
        missing = [s for s in STEP_NAMES if s not in config["visits"]]
        if missing:
            raise ConfigError(f"{source}: visits", f"no visit table for step(s) {', '.join(missing)}")
        self._check_validity()
        self._check_steps()
        self._check_roles()
        self._check_collection_names()
        self._check_quality()

    @property
    def datastore(self) -> str:
        return self.config["datastore"]

    @property
    def workdir(self) -> str:
        """Where the run's results/, logs/, benchmarks/ go (pfscalib.plan.preflight.set_workdir)."""
        return self.config.get("workdir", ".")

    @property
    def instrument_name(self) -> str:
        return self.config["instrument_name"]

    def table(self, step: str) -> str:
        return self.config["visits"][step]

    def all_units(self, step: str) -> list[str]:
        """Every camera, or every arm for a per-arm step, whether the step is built for it or not."""
        return self.arms if STEPS[step].per_arm else self.cameras

    def units(self, step: str) -> list[str]:
        """The jobs of a step: one per camera, or one per arm, for which the step is built."""
        return [u for u in self.all_units(step) if self.role(step, u) == "build"]

    def role(self, step: str, unit: str) -> Role:
        """build, skip or borrow (pfscalib.plan.steps.ARMS, overridden by the config's camera_steps)."""
        return role(step, unit, self.camera_steps)

    def role_words(self, step: str, unit: str) -> str:
        return role_words(step, unit, self.camera_steps)

    def mode(self, camera: str) -> str:
        """The camera's fibre-profile mode (brn or m)."""
        return ARMS[camera[0]].mode

    def modes(self) -> list[str]:
        return sorted({self.mode(c) for c in self.cameras}, key=MODES.index)

    def site_calibrations(self, camera: str) -> tuple[str, ...]:
        """The site calibrations the camera's ISR looks up besides the config's prerequisites (n: nirDark)."""
        return ARMS[camera[0]].site_calibrations

    def optional_site_calibrations(self, camera: str) -> tuple[tuple[str, str], ...]:
        """The site calibrations whose absence the camera's ISR only warns about, with what the product lacks."""
        return ARMS[camera[0]].optional_site_calibrations

    def cameras_of(self, unit: str) -> list[str]:
        """The cameras a job covers: the camera itself, or every camera of the arm."""
        return [c for c in self.cameras if c.startswith(unit)]

    def maker(self, step: str, camera: str) -> str | None:
        """The camera whose job builds the product the camera's ISR reads: itself, its lender (m1 reads r1's
        bias), or none (n1's bias)."""
        chosen = self.role(step, camera)
        if chosen == "borrow":
            return lender(step, camera)
        return camera if chosen == "build" else None

    def needs(self, step: str, epoch: str, unit: str) -> list[str]:
        """Sentinels this job's inputs come from: its camera's, its lender's (m: r's bias and dark), or those of
        every camera of its arm; none for a product the camera's ISR does not read."""
        cameras = self.cameras_of(unit) if STEPS[step].per_arm else [unit]
        makers = [(need, self.maker(need, c)) for need in STEPS[step].needs for c in cameras]
        return list(dict.fromkeys(paths.sentinel(need, epoch, maker) for need, maker in makers if maker))

    def setting(self, step: str, key: str, default: Any = None) -> Any:
        return self.steps[step].get(key, default)

    def validity(self, step: str, epoch: str) -> Validity:
        span = self.steps[step].get("validity", {}).get(epoch, self.epochs[epoch])
        return Validity(span["begin"], span.get("end"))

    # ------------------------------------------------------------------ collections
    @property
    def collections(self) -> dict[str, Any]:
        """Every collection the workflow reads (site inputs) or writes (under the rerun)."""
        prefix, chosen = self.instrument_name, self.config.get("collections", {})
        return {
            "inputs": list(chosen.get("inputs", [f"{prefix}/defaults"])),
            "calib": chosen.get("calib", f"{self.config['rerun']}/calib"),
            "bootstrap": chosen.get("bootstrap", f"{self.config['rerun']}/bootstrap"),
            # where defineFiberProfilesInputs.py defines profiles_runs: fixed by drp_stella
            "profiles": f"{prefix}/fiberProfilesInputs",
        }

    def calib_collection(self, step: str) -> str:
        """The workflow's own CALIBRATION collection the step certifies into: one per product in the
        rerun's calib chain, or the bootstrap maps' own."""
        s = STEPS[step]
        return (
            self.collections["bootstrap"] if s.outside_calib_chain else f"{self.collections['calib']}/{s.certified_as}"
        )

    def own_calib_collections(self) -> list[str]:
        """The CALIBRATION collections chained into the rerun's calib chain."""
        return [self.calib_collection(s) for s in STEP_NAMES if not STEPS[s].outside_calib_chain]

    def inputs(self, step: str) -> list[str]:
        """pipetask -i: the workflow's own products first (so a build uses its own bias, not an overlapping
        one of the site's), those certified outside the calib chain that the step reads, the profiles_run
        definitions where the step selects by them, then the site's inputs."""
        c = self.collections
        outside = [self.calib_collection(n) for n in STEPS[step].needs if STEPS[n].outside_calib_chain]
        profiles = [c["profiles"]] if STEPS[step].profile_groups else []
        return [c["calib"], *outside, *profiles, *c["inputs"]]

    def site_inputs(self, step: str) -> list[str]:
        """The inputs the site provides (checked before any job), not the ones the workflow makes."""
        return [c for c in self.inputs(step) if not self.is_own(c) and c != self.collections["profiles"]]

    def is_own(self, collection: str) -> bool:
        """Whether the workflow made (and may modify) a collection: only those under its rerun (the calib
        and bootstrap collections must be, see _check_steps)."""
        return collection.startswith(f"{self.config['rerun']}/")

    def pipeline(self, step: str) -> str:
        return f"{self.config['pipelines_dir']}/{self.setting(step, 'pipeline', STEPS[step].pipeline)}"

    def step_config(self, step: str) -> list[str]:
        """The step's -c overrides for every camera."""
        return list(self.setting(step, "config", STEPS[step].config))

    def config_overrides(self, step: str, unit: str) -> list[str]:
        """-c overrides of one job: the step's, the camera's spectralOffset where the step takes one,
        then the arm's and the camera's own."""
        overrides = self.step_config(step)
        target, offset = STEPS[step].offset_target, self.spectral_offset(unit)
        if target is not None and offset != AUTO:  # auto: the job adds the proposal
            overrides.append(target.with_value(offset).text())
        camera_config = self.setting(step, "camera_config", {})
        overrides += camera_config.get(unit[0], []) if unit[0] != unit else []
        overrides += camera_config.get(unit, [])
        return overrides

    # ------------------------------------------------------------------ spectralOffset: auto
    def spectral_offset(self, camera: str) -> float | str | None:
        """The camera's bootstrap spectralOffset: pixels, AUTO (proposed from the data) or None (not given).
        The one reader of the config's spectralOffset: every other place asks this."""
        return self.config.get("spectralOffset", {}).get(camera)

    @property
    def auto_cameras(self) -> list[str]:
        """Cameras whose bootstrap spectralOffset is proposed from the data."""
        return [c for c in self.cameras if self.spectral_offset(c) == AUTO]

    @property
    def offset_search(self) -> dict[str, Any]:
        return self.config["offset_search"]

    def match_radius(self, camera: str) -> float:
        """The bootstrap task's matchRadius (nm) in this camera's job: the last `<label>:matchRadius=` of
        its -c overrides in the order pipetask applies them (the step's, the arm's, the camera's, then
        extra_args' -c), else offset_search's. Real sites set it per camera (drp_pfs_data 6769d28
        detectorMap/bootstrap/notes.md: 2, m3 4)."""
        given = [Override.parse(o) for o in self.config_overrides(OFFSET_STEP, camera)]
        given += overrides_in(self.setting(OFFSET_STEP, "extra_args", []))
        label = STEPS[OFFSET_STEP].scan_label
        values = [o.value for o in given if (o.label, o.field) == (label, "matchRadius") and o.value is not None]
        return float(values[-1]) if values else float(self.offset_search["matchRadius"])

    def capture_range(self, camera: str) -> float:
        """Pixels within which an offset still matches the arc lines: the camera's matchRadius / dispersion."""
        return self.match_radius(camera) / self.offset_search["dispersion"][camera[0]]

    def offset_grid(self, camera: str) -> list[int]:
        """The offsets scanned for a camera: from 0 outwards in steps no coarser than the capture range,
        covering offset_search.range."""
        low, high = self.offset_search["range"]
        step = max(1, int(self.capture_range(camera)))
        return [o for o in range(step * (low // step), high + step, step) if low - step < o < high + step]

    def accepted(self, epoch: str, step: str, unit: str) -> dict | None:
        """The config's acceptance of a held product of this job, if any."""
        from pfscalib.plan.limits import accepted

        return accepted(self.config.get("accept", []), epoch, step, unit)

    def clean(self, step: str) -> list[str]:
        return list(self.setting(step, "clean", STEPS[step].clean)) if self.config.get("cleanup", True) else []

    # ------------------------------------------------------------------ checks beyond the schema
    def _check_validity(self) -> None:
        for step in STEP_NAMES:
            overrides = self.steps[step].get("validity", {})
            for epoch in overrides:
                if epoch not in self.epochs:
                    raise ConfigError(f"{self.source}: steps.{step}.validity.{epoch}", "unknown epoch")
            spans = []
            for epoch in self.epochs:
                begin, end = self.validity(step, epoch)
                key = f"steps.{step}.validity.{epoch}" if epoch in overrides else f"epochs.{epoch}"
                where = f"{self.source}: {key}"
                b = parse_time(begin, f"{where}.begin")
                e = parse_time(end, f"{where}.end") if end else None
                if e is not None and e <= b:
                    raise ConfigError(where, f"end {end} is not after begin {begin}")
                spans.append((b, e, epoch, where))
            spans.sort(key=lambda s: s[0])
            for (_, end1, name1, where1), (begin2, _, name2, where2) in itertools.pairwise(spans):
                if end1 is None:  # the open-ended one is wrong, not the epoch after it
                    raise ConfigError(
                        where1,
                        f"{step} validity of epoch {name1} has no end, so it overlaps epoch {name2} (which begins "
                        f"{begin2.isoformat()}): give {name1} an end (only the last epoch may be open-ended)",
                    )
                if end1 > begin2:
                    raise ConfigError(
                        where2,
                        f"{step} validity of epoch {name2} overlaps epoch {name1} "
                        "(ranges are [begin, end) and may not overlap)",
                    )

    def _check_collection_names(self) -> None:
        """Every collection the workflow names: a plain collection name, and the rerun apart from the
        site's own collections (<instrument_name>/...)."""
        chosen = self.config.get("collections", {})
        named = [("rerun", self.config["rerun"])]
        named += [(f"collections.inputs.{i}", c) for i, c in enumerate(chosen.get("inputs", []))]
        named += [(f"collections.{k}", chosen[k]) for k in ("calib", "bootstrap") if k in chosen]
        for key, name in named:
            problem = collection_name_problem(name)
            if problem:
                raise ConfigError(f"{self.source}: {key}", problem)
        chain, own = self.collections["calib"], self.own_calib_collections()
        for step in STEP_NAMES:
            name = self.calib_collection(step)
            if STEPS[step].outside_calib_chain and (name == chain or name in own or name.startswith(f"{chain}/")):
                raise ConfigError(
                    f"{self.source}: collections.bootstrap",
                    f"{name!r} is the calib chain {chain!r} or lies in it; {step} certifies into one of its own",
                )
        rerun, site = self.config["rerun"], self.instrument_name
        if rerun == site or rerun.startswith(f"{site}/"):
            raise ConfigError(
                f"{self.source}: rerun",
                f"{rerun!r} lies among the site's collections ({site}/...): a build writes only under its own "
                "rerun, e.g. u/<username>",
            )

    def _check_steps(self) -> None:
        for step, settings in self.steps.items():
            protected = {STEPS[step].product, STEPS[step].certified_as}
            bad = protected & set(settings.get("clean", []))
            if bad:
                raise ConfigError(f"{self.source}: steps.{step}.clean", f"would remove the certified {', '.join(bad)}")
            for key in settings.get("camera_config", {}):
                if key not in self.cameras and key not in self.arms:
                    raise ConfigError(
                        f"{self.source}: steps.{step}.camera_config.{key}", "not a configured camera or arm"
                    )
        for key in ("calib", "bootstrap"):
            name = self.collections[key]
            if not name.startswith(f"{self.config['rerun']}/"):
                raise ConfigError(
                    f"{self.source}: collections.{key}",
                    f"{name!r} is not under the rerun {self.config['rerun']!r}: the workflow certifies only "
                    "into collections of its own (promote into shared ones with `pfscalib promote`)",
                )
        offsets = self.config.get("spectralOffset", {})
        low, high = self.config["offset_search"]["range"]
        if low >= high:
            raise ConfigError(f"{self.source}: offset_search.range", f"[{low}, {high}] is not a range (low < high)")
        for camera in self.auto_cameras:
            if camera[0] not in self.config["offset_search"]["dispersion"]:
                raise ConfigError(
                    f"{self.source}: offset_search.dispersion",
                    f"no dispersion (nm per pixel) for arm {camera[0]} of {camera}, whose spectralOffset is auto",
                )
        lacking = [
            c
            for c in self.cameras
            if c not in offsets and any(STEPS[s].offset_override for s in STEP_NAMES if c in self.units(s))
        ]
        unknown = [c for c in offsets if c not in self.cameras]
        if lacking and unknown:  # cameras: [b1, r2] with offsets for b1, r1: the camera list is mistyped
            raise ConfigError(
                f"{self.source}: cameras",
                f"{', '.join(lacking)} has no spectralOffset, while spectralOffset names {', '.join(unknown)}, which "
                f"is not in cameras: a typo in cameras ({lacking[0]} for {unknown[0]}?)",
            )
        if unknown and not lacking and (swaps := mistyped_cameras(self.cameras, unknown)):
            # cameras: [b1, r2] with offsets for b1, r1, b2, r2: every camera has one, but the list is not the
            # same arms on every spectrograph, and would be with a camera spectralOffset names instead of one
            raise ConfigError(
                f"{self.source}: cameras",
                f"{', '.join(self.cameras)} are not the same arms on every spectrograph, while spectralOffset "
                f"names {', '.join(sorted(unknown))}, which cameras lacks: a typo in cameras "
                f"({', or '.join(f'{typed} for {meant}' for typed, meant in swaps)}?)",
            )
        if lacking:
            raise ConfigError(f"{self.source}: spectralOffset", f"no bootstrap spectralOffset for camera {lacking[0]}")
        if unknown:
            raise ConfigError(f"{self.source}: spectralOffset.{unknown[0]}", "not a configured camera")
        for camera in offsets:
            rows, offset = DETECTOR_ROWS[camera[0]], self.spectral_offset(camera)
            if isinstance(offset, int | float) and abs(offset) >= rows:
                raise ConfigError(
                    f"{self.source}: spectralOffset.{camera}",
                    f"{offset:g} pixels is as wide as the {camera[0]} detector or wider ({rows} pixels along "
                    "wavelength): every arc line would fall off it (real offsets are tens of pixels)",
                )

    def _check_roles(self) -> None:
        """camera_steps names configured cameras or arms and asks only what the ISR can use; a borrowing camera
        (m) has its lender (r of the same spectrograph) configured and building the product."""
        for key, chosen in self.camera_steps.items():
            if key not in self.cameras and key not in self.arms:
                raise ConfigError(f"{self.source}: camera_steps.{key}", "not a configured camera or arm")
            for step, what in chosen.items():
                if what == "build" and step in ARMS[key[0]].never:
                    raise ConfigError(
                        f"{self.source}: camera_steps.{key}.{step}", f"cannot be built: {ARMS[key[0]].why}"
                    )
        for step in STEP_NAMES:
            for camera in self.all_units(step):
                if self.role(step, camera) != "borrow":
                    continue
                source = lender(step, camera)
                if source not in self.cameras or self.role(step, source) != "build":
                    raise ConfigError(
                        f"{self.source}: cameras",
                        f"{camera} takes its {step} from {source} (the ISR's r<->m fallback), but {source} does not "
                        f"build one: add {source} to cameras, or set camera_steps.{camera}.{step}: build",
                    )

    def _check_quality(self) -> None:
        """The limits file validates (one line before any job); acceptances name a real job."""
        from pfscalib.plan.limits import LimitsError, load_limits

        try:
            load_limits(self.config.get("limits"))
        except LimitsError as exc:
            raise ConfigError(f"{self.source}: limits", str(exc)) from None
        for row, entry in enumerate(self.config.get("accept", [])):
            where = f"{self.source}: accept[{row}]"
            if entry["epoch"] not in self.epochs:
                raise ConfigError(where, f"unknown epoch {entry['epoch']!r}")
            if entry["camera"] not in self.units(entry["step"]):
                raise ConfigError(where, f"{entry['camera']!r} is not a camera (or arm) of step {entry['step']}")
