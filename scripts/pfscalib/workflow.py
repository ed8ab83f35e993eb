"""Config + visit tables -> validated selections -> per-job commands. No Snakemake and no Butler needed,
so `snakemake -n -p` works without a datastore and all of it is unit-tested."""

from __future__ import annotations

import dataclasses
import functools
import datetime
import hashlib
import inspect
import json
import shlex
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from .visits import parse_visit_list
from .steps import STEP_NAMES, STEPS, Step

CAMERA_STEPS = tuple(s for s in STEP_NAMES if not STEPS[s].per_arm)


class ConfigError(ValueError):
    """Bad input; str() is one line naming the file, the row or key, and the problem."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"{where}: {problem}")


@functools.cache  # the same repository, collections and options recur in every job's command
def shell_quote(arg: str) -> str:
    """shlex.quote, but "..." where that is equally safe, so queries read like the guide's."""
    if arg and "'" in arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def shell_join(argv: list[str]) -> str:
    return " ".join(shell_quote(a) for a in argv)


def declared(func: Callable) -> Callable:
    """Snakemake reads a rule callable's parameters with inspect.signature on every call (about 18 calls
    per job: 3.5 s of a 50-epoch dry run); record them once with Snakemake's own hook for that."""
    from snakemake.common import overwrite_function_params

    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def declare_resource_evaluation() -> None:
    """Every callable resource (threads; mem_mb and runtime, which grow with the attempt for SLURM
    retries) is evaluated through Snakemake's own Resource.evaluate, whose signature Snakemake 9.27
    reads twice per resource and job: 40,000 inspect.signature calls in a 50-epoch dry run, the
    workflow's largest cost over Snakemake's floor. Declare it once with the same hook as `declared`;
    the parameters are unchanged (*args, **kwargs), so Snakemake passes exactly what it passed before."""
    from snakemake.resources import Resource

    declared(Resource.evaluate)


def schema_path(name: str) -> str:
    return str(resources.files("pfscalib").joinpath(f"schemas/{name}.schema.yaml"))


def _schema_error_line(instance: Any, schema_file: str) -> str:
    """The most relevant JSON-schema violation as 'key.path: message'."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_file).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if "errorMessage" in error.schema:  # the schema says what is meant (as ajv-errors does), not a regex
        return f"{path}: {error.instance!r} {error.schema['errorMessage']}"
    return f"{path}: {error.message}"


def _schema_valid(instance: Any, schema_file: str) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(yaml.safe_load(Path(schema_file).read_text())).is_valid(instance)


def validate_config(config: dict, source: str = "config") -> None:
    """snakemake.utils.validate (fills defaults) with a one-line error."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, schema_path("config"), set_default=True)
    except WorkflowError:
        raise ConfigError(source, _schema_error_line(config, schema_path("config"))) from None


def parse_time(value: str, where: str) -> datetime.datetime:
    """Only for ordering validity ranges (all TAI); stdlib because astropy.time costs 0.2 s per
    Snakemake start. The schema pattern keeps the accepted forms those of astropy's isot."""
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(where, f"{value!r} is not an ISO-8601 date (e.g. 2025-03-01T00:00:00)") from None


@dataclasses.dataclass(frozen=True)
class Selection:
    """Visits of one step and epoch for one camera (or arm), plus fiber-profile groups."""

    visits: tuple[int, ...]
    groups: tuple[tuple[str, str], ...] = ()  # (bright LIST, dark LIST) per group, PFS list syntax
    specs: tuple[str, ...] = ()  # the table's visit specs, for compact -d queries


def read_table(path: str, step: str, epochs: dict, cameras: list[str]) -> pd.DataFrame:
    """Read and validate one visit-selection table."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    if not Path(path).is_file():
        raise ConfigError(f"config visits.{step}", f"table {path} does not exist")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, comment="#", keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"not a readable TSV ({str(exc).splitlines()[0]})") from None
    df.columns = [c.strip() for c in df.columns]
    for column in ("epoch", "visits"):
        if column not in df.columns:
            raise ConfigError(path, f"missing column {column!r} (columns: {', '.join(df.columns)})")
    allowed = {"epoch", "visits", "cameras", "comment"} | ({"group", "role"} if step == "fiberProfiles" else set())
    extra = [c for c in df.columns if c not in allowed]
    if extra:
        raise ConfigError(path, f"unexpected column(s) {', '.join(map(repr, extra))} (allowed: {', '.join(sorted(allowed))})")
    if df.empty:
        raise ConfigError(path, "table has no rows")
    df = df.apply(lambda col: col.str.strip())
    try:  # one validation of the whole table; only on failure look for the row to name
        validate(df, schema_path("visits"), set_default=False)
        schema_ok = True
    except WorkflowError:
        schema_ok = False
    for index, row in zip(df.index, df.to_dict("records")):  # plain dicts: iterrows builds a Series per row
        where = f"{path}: row {index + 2}"  # +1 header, +1 one-based, as an editor shows it
        if not schema_ok:
            record = {k: v for k, v in row.items() if v != "" or k in ("epoch", "visits")}
            if not _schema_valid(record, schema_path("visits")):
                raise ConfigError(where, _schema_error_line(record, schema_path("visits")))
        if row["epoch"] not in epochs:
            raise ConfigError(where, f"epoch {row['epoch']!r} is not in config epochs ({', '.join(epochs)})")
        try:
            parse_visit_list(row["visits"])
        except ValueError as exc:
            raise ConfigError(f"{where} (column visits)", str(exc)) from None
        unknown = [c for c in (row.get("cameras") or "").split(",") if c and c not in cameras]
        if unknown:
            raise ConfigError(f"{where} (column cameras)",
                              f"camera(s) {', '.join(unknown)} not in config cameras ({', '.join(cameras)})")
        if step == "fiberProfiles" and (not row.get("group") or not row.get("role")):
            raise ConfigError(where, "fiberProfiles rows need a group number and a role (bright or dark)")
    if "cameras" not in df.columns:
        df["cameras"] = ""
    return df


class Workflow:
    """Validated configuration: the one object the rules ask for targets, inputs and commands."""

    def __init__(self, config: dict, source: str = "config"):
        validate_config(config, source)
        self.config = config
        self.source = source
        self.cameras: list[str] = list(config["cameras"])
        self.arms = sorted({c[0] for c in self.cameras}, key="brnm".index)
        self.epochs: dict[str, dict] = config["epochs"]
        self.steps: dict[str, dict] = {name: dict(config.get("steps", {}).get(name, {})) for name in STEP_NAMES}
        self.executables = {"pipetask": "pipetask", "defineFiberProfilesInputs": "defineFiberProfilesInputs.py",
                            **config.get("executables", {})}
        missing = [s for s in STEP_NAMES if s not in config["visits"]]
        if missing:
            raise ConfigError(f"{source}: visits", f"no visit table for step(s) {', '.join(missing)}")
        self._check_validity()
        self._check_steps()
        self.tables = {step: read_table(config["visits"][step], step, self.epochs, self.cameras) for step in STEP_NAMES}
        self.selections = self._select()

    # ------------------------------------------------------------------ validation
    def validity(self, step: str, epoch: str) -> tuple[str, str | None]:
        span = self.steps[step].get("validity", {}).get(epoch, self.epochs[epoch])
        return span["begin"], span.get("end")

    def _check_validity(self) -> None:
        for step in STEP_NAMES:
            for epoch in self.steps[step].get("validity", {}):
                if epoch not in self.epochs:
                    raise ConfigError(f"{self.source}: steps.{step}.validity.{epoch}", "unknown epoch")
            spans = []
            for epoch in self.epochs:
                begin, end = self.validity(step, epoch)
                where = f"{self.source}: " + (f"steps.{step}.validity.{epoch}" if epoch in self.steps[step].get(
                    "validity", {}) else f"epochs.{epoch}")
                b = parse_time(begin, f"{where}.begin")
                e = parse_time(end, f"{where}.end") if end else None
                if e is not None and e <= b:
                    raise ConfigError(where, f"end {end} is not after begin {begin}")
                spans.append((b, e, epoch, where))
            spans.sort(key=lambda s: s[0])
            for (b1, e1, name1, _), (b2, _e2, name2, where2) in zip(spans, spans[1:]):
                if e1 is None or e1 > b2:
                    raise ConfigError(where2, f"{step} validity of epoch {name2} overlaps epoch {name1} "
                                              f"(ranges are [begin, end) and may not overlap)")

    def _check_steps(self) -> None:
        for step, settings in self.steps.items():
            protected = {STEPS[step].product, STEPS[step].certified_as}
            bad = protected & set(settings.get("clean", []))
            if bad:
                raise ConfigError(f"{self.source}: steps.{step}.clean", f"would remove the certified {', '.join(bad)}")
            for key in settings.get("camera_config", {}):
                if key not in self.cameras and key not in self.arms:
                    raise ConfigError(f"{self.source}: steps.{step}.camera_config.{key}", "not a configured camera or arm")
        offsets = self.config.get("spectralOffset", {})
        for camera in self.cameras:
            if camera not in offsets:
                raise ConfigError(f"{self.source}: spectralOffset", f"no bootstrap spectralOffset for camera {camera}")
        for camera in offsets:
            if camera not in self.cameras:
                raise ConfigError(f"{self.source}: spectralOffset.{camera}", "not a configured camera")

    def _select(self) -> dict[tuple[str, str, str], Selection]:
        out: dict[tuple[str, str, str], Selection] = {}
        for step, df in self.tables.items():
            path = self.config["visits"][step]
            per_arm = STEPS[step].per_arm
            rows: dict[str, list[tuple[int, tuple[str, ...], list[int], str, str, str]]] = {}
            for index, epoch, cameras, spec, group, role in zip(
                    df.index, df["epoch"], df["cameras"], df["visits"], df.get("group", [""] * len(df)),
                    df.get("role", [""] * len(df))):
                rows.setdefault(epoch, []).append(
                    (index, tuple(c for c in cameras.split(",") if c), parse_visit_list(spec), spec, group, role))
            seen: dict[tuple[str, int], int] = {}
            for epoch in self.epochs:
                for unit in self.units(step):
                    mine = [r for r in rows.get(epoch, []) if not r[1] or any(c.startswith(unit) for c in r[1])]
                    visits: list[int] = []
                    for index, _, row_visits, _, _, _ in mine:
                        for visit in row_visits:
                            previous = seen.setdefault((unit, visit), index)
                            if previous != index:
                                raise ConfigError(f"{path}: row {index + 2}", f"visit {visit} is already selected in "
                                                  f"row {previous + 2}")
                            visits.append(visit)
                    if not visits:
                        raise ConfigError(path, f"no visits for epoch {epoch} and {'arm' if per_arm else 'camera'} {unit}")
                    groups = self._groups(path, [(r[4], r[5], r[3]) for r in mine]) if step == "fiberProfiles" else ()
                    if step == "bootstrap" and len(visits) != 2:
                        raise ConfigError(path, f"bootstrap needs exactly two visits (a quartz and an arc) for epoch "
                                                f"{epoch} camera {unit}, got {len(visits)}")
                    out[(step, epoch, unit)] = Selection(tuple(visits), groups, tuple(r[3] for r in mine))
        return out

    @staticmethod
    def _groups(path: str, rows: list[tuple[str, str, str]]) -> tuple[tuple[str, str], ...]:
        """rows: (group, role, visits) of one epoch and camera."""
        groups: dict[int, dict[str, list[str]]] = {}
        for group, role, visits in rows:
            groups.setdefault(int(group), {"bright": [], "dark": []})[role].append(visits)
        numbers = sorted(groups)
        if numbers != list(range(len(numbers))):
            raise ConfigError(path, f"fiberProfiles groups must be numbered 0..N-1, got {numbers}")
        for n in numbers:
            if not groups[n]["bright"]:
                raise ConfigError(path, f"fiberProfiles group {n} has no bright visits")
        with_dark = [n for n in numbers if groups[n]["dark"]]
        if with_dark and len(with_dark) != len(numbers):
            raise ConfigError(path, "either every fiberProfiles group has dark visits or none has")
        return tuple(("^".join(groups[n]["bright"]), "^".join(groups[n]["dark"])) for n in numbers)

    # ------------------------------------------------------------------ names
    def units(self, step: str) -> list[str]:
        return self.arms if STEPS[step].per_arm else self.cameras

    def sentinel(self, step: str, epoch: str, unit: str) -> str:
        return f"results/certified/{epoch}/{step}/{unit}.json"

    def all_sentinels(self) -> list[str]:
        return [p for e in self.epochs for p in self.epoch_sentinels(e)]

    @functools.cache
    def epoch_sentinels(self, epoch: str) -> list[str]:
        return [self.sentinel(s, epoch, u) for s in STEP_NAMES for u in self.units(s)]

    def chain(self, step: str, epoch: str, unit: str) -> str:
        return f"{self.config['rerun']}/{epoch}/{step}/{unit}"

    def profiles_run(self, epoch: str) -> str:
        groups = self.selections[("fiberProfiles", epoch, self.cameras[0])].groups
        digest = hashlib.sha1(json.dumps(groups).encode()).hexdigest()[:8]
        return f"{epoch}_{digest}"  # content-addressed: an edited table defines a new profiles_run

    def needs(self, step: str, epoch: str, unit: str) -> list[str]:
        """Sentinels this job's inputs come from."""
        out = []
        for need in STEPS[step].needs:
            if STEPS[step].per_arm:
                out += [self.sentinel(need, epoch, c) for c in self.cameras if c[0] == unit]
            else:
                out.append(self.sentinel(need, epoch, unit))
        return out

    def job_threads(self, step: str, epoch: str, unit: str) -> int:
        """pipetask -j and SLURM --cpus-per-task: the configured threads, but no more than the job's
        widest stage can use (one quantum per visit and camera), e.g. 2 for a bootstrap, not 16."""
        cameras = sum(1 for c in self.cameras if c[0] == unit) if STEPS[step].per_arm else 1
        width = len(self.selections[(step, epoch, unit)].visits) * cameras
        return max(1, min(int(self.setting(step, "threads", 1)), width))

    def setting(self, step: str, key: str, default: Any = None) -> Any:
        return self.steps[step].get(key, default)

    # ------------------------------------------------------------------ commands
    def where(self, step: str, epoch: str, unit: str) -> str:
        """The -d data query: constrained instrument + visits (+ profiles_run) + camera."""
        name = self.config["instrument_name"]
        if step == "fiberProfiles":
            query = f"profiles_run = '{self.profiles_run(epoch)}'"
        else:
            # PFS list syntax maps onto the query grammar: A..B:S is a range, ^ separates items
            visits = ", ".join(spec.replace("^", ", ") for spec in self.selections[(step, epoch, unit)].specs)
            query = f"instrument='{name}' AND visit IN ({visits})"
        if STEPS[step].per_arm:
            spectrographs = ", ".join(sorted({c[1:] for c in self.cameras if c[0] == unit}))
            return f"{query} AND arm='{unit}' AND spectrograph IN ({spectrographs})"
        return f"{query} AND arm='{unit[0]}' AND spectrograph={int(unit[1:])}"

    def config_overrides(self, step: str, unit: str) -> list[str]:
        overrides = list(self.setting(step, "config", STEPS[step].config))
        if step == "bootstrap":
            overrides.append(f"bootstrap:spectralOffset={self.config['spectralOffset'][unit]:g}")
        camera_config = self.setting(step, "camera_config", {})
        overrides += camera_config.get(unit[0], []) if unit[0] != unit else []
        overrides += camera_config.get(unit, [])
        return overrides

    def pipetask_argv(self, step: str, epoch: str, unit: str) -> list[str]:
        """The guide's `pipetask run`, without -j (the rule appends -j {threads})."""
        s = STEPS[step]
        argv = [self.executables["pipetask"], "run", "--register-dataset-types",
                "-b", self.config["datastore"], "--instrument", self.config["instrument"],
                "-i", ",".join(self.setting(step, "inputs", s.inputs)),
                "-o", self.chain(step, epoch, unit),
                "-p", f"{self.config['pipelines_dir']}/{self.setting(step, 'pipeline', s.pipeline)}",
                "-d", self.where(step, epoch, unit), "--fail-fast"]
        for override in self.config_overrides(step, unit):
            argv += ["-c", override]
        return argv + list(self.setting(step, "extra_args", []))

    def certify_argv(self, step: str, epoch: str, unit: str, sentinel: str, state: str) -> list[str]:
        s = STEPS[step]
        begin, end = self.validity(step, epoch)
        argv = ["pfscalib", "certify", "--repo", self.config["datastore"], "--chain", self.chain(step, epoch, unit),
                "--dataset-type", s.product, "--calib", self.setting(step, "calib_collection", s.calib_collection),
                "--instrument", self.config["instrument_name"], "--begin-date", begin]
        if end:
            argv += ["--end-date", end]
        argv += ["--arm", unit[0]] + ([] if s.per_arm else ["--spectrograph", unit[1:]])
        if s.copies_product:
            argv += ["--copy-as", s.certified_as]
        clean = self.setting(step, "clean", list(s.clean)) if self.config.get("cleanup", True) else []
        for dataset_type in clean:
            argv += ["--clean", dataset_type]
        visits = self.selections[(step, epoch, unit)].visits
        argv += ["--step", step, "--epoch", epoch, "--visits", ",".join(map(str, visits)),
                 "--state", state, "--sentinel", sentinel]
        return argv

    def state_file(self, step: str, epoch: str, unit: str) -> str:
        return f"results/state/{epoch}/{step}/{unit}.json"

    def job_command(self, step: str, epoch: str, unit: str, sentinel: str) -> str:
        """The shell command of one job: pipetask (resumable) then certify+clean+sentinel, in one process;
        the pipetask part after `--` reads like the guide's command. No -j: the rule appends
        `-j {threads}`, so the command does not depend on threads and serves as the job's params rerun
        trigger (Snakemake ignores params derived from threads or output)."""
        state = self.state_file(step, epoch, unit)
        job = ["pfscalib", "job"] + self.certify_argv(step, epoch, unit, sentinel, state)[2:]
        return shell_join(job + ["--"] + self.pipetask_argv(step, epoch, unit))

    def define_profiles_command(self, epoch: str, output: str) -> str:
        argv = [self.executables["defineFiberProfilesInputs"], self.config["datastore"],
                self.config["instrument_name"], self.profiles_run(epoch)]
        for bright, dark in self.selections[("fiberProfiles", epoch, self.cameras[0])].groups:
            argv += ["--bright", bright] + (["--dark", dark] if dark else [])
        wrapper = ["pfscalib", "define-profiles", "--repo", self.config["datastore"], "--instrument",
                   self.config["instrument_name"], "--name", self.profiles_run(epoch), "--output", output, "--"]
        return shell_join(wrapper + argv)

    def check_command(self, epoch: str, output: str) -> str:
        """One check of every step's visits for the epoch (one registry open, not one per step)."""
        payload = {step: {"collections": list(self.setting(step, "inputs", STEPS[step].inputs)),
                          "units": {unit: list(self.selections[(step, epoch, unit)].visits) for unit in self.units(step)}}
                   for step in STEP_NAMES}
        argv = ["pfscalib", "check-visits", "--repo", self.config["datastore"], "--instrument",
                self.config["instrument_name"], "--epoch", epoch, "--selection", json.dumps(payload, sort_keys=True),
                "--output", output]
        return shlex.join(argv)

    def register_command(self, output: str) -> str:
        argv = ["pfscalib", "register-dataset-types", "--repo", self.config["datastore"], "--output", output]
        for step in STEP_NAMES:
            argv += ["-p", f"{self.config['pipelines_dir']}/{self.setting(step, 'pipeline', STEPS[step].pipeline)}"]
            argv += [a for o in self.setting(step, "config", STEPS[step].config) if ":connections." in o
                     for a in ("-c", o)]
        return shell_join(argv)

    def qa_command(self, sentinels: list[str], outdir: str) -> str:
        return shell_join(["python", "-m", "pfscalib.qa", "--repo", self.config["datastore"], "--outdir", outdir,
                           *sentinels])

    def status_command(self, config_file: str) -> str:
        return shell_join(["pfscalib", "status", "--config", config_file, "--format", "tsv"])

    @staticmethod
    def site_resources(environ: dict) -> dict[str, str]:
        """SLURM resources of this site from PFSCALIB_SLURM_PARTITION/_ACCOUNT/_QOS/_CONSTRAINT."""
        names = {"PARTITION": "slurm_partition", "ACCOUNT": "slurm_account", "QOS": "qos", "CONSTRAINT": "constraint"}
        return {resource: environ[f"PFSCALIB_SLURM_{key}"] for key, resource in names.items()
                if environ.get(f"PFSCALIB_SLURM_{key}")}

    @property
    def demo_enabled(self) -> bool:
        return bool(self.config.get("demo", {}).get("enabled"))

    def demo_marker(self) -> str:
        return f"{self.config['datastore']}/demo.json"

    def demo_command(self) -> str:
        demo_epochs = self.config.get("demo", {}).get("epochs") or {}
        argv = ["python", "-m", "pfscalib.demo.make_repo", self.config["datastore"], "--cameras", ",".join(self.cameras)]
        if demo_epochs:
            argv += ["--epochs", ",".join(f"{k}={v}" for k, v in demo_epochs.items())]
        return shlex.join(argv)


def load(config: dict, source: str = "config") -> Workflow:
    return Workflow(config, source)
