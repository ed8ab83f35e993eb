"""A job's contract, written once: the typed request of `pfscalib job` (and `certify`), the typed `pipetask run`
command it runs and the `-c LABEL:FIELD=VALUE` override. Each type builds its own argv (what
pfscalib.plan.commands quotes into the shell line) and its own argparse options (what pfscalib.cli parses
back), so the planner and the job cannot disagree on an option. Standard library only: built inside
Snakemake's process, read inside the job."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Self


def option(
    help: str, *, flag: str = "", parse: Callable[[str], Any] = str, required: bool = False, **field: Any
) -> Any:
    """A field that is a command-line option: its help, its flag (default --field-name) and how its text
    is read; a tuple field is a repeated option, a None value an option left out."""
    metadata = {"help": help, "flag": flag, "parse": parse, "required": required}
    return dataclasses.field(metadata=metadata, **field)


def _text(value: Any) -> str:
    return value.text() if isinstance(value, Override) else str(value)


class Options:
    """argv() and argparse options of a dataclass whose fields are option()s, in field order."""

    @classmethod
    def _options(cls) -> Iterable[tuple[dataclasses.Field, str]]:
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            yield f, f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"

    def argv(self) -> list[str]:
        """Each value one argument; repeated options once per value; None left out."""
        out: list[str] = []
        for f, flag in self._options():
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                out += [a for v in value for a in (flag, _text(v))]
            elif value is not None:
                out += [flag, _text(value)]
        return out

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        for f, flag in cls._options():
            meta = f.metadata
            kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"], "type": meta["parse"]}
            if f.default_factory is tuple:
                parser.add_argument(flag, action="append", default=[], **kwargs)
            elif meta["required"]:
                parser.add_argument(flag, required=True, **kwargs)
            else:
                parser.add_argument(flag, default=f.default, **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Self:
        values = {f.name: getattr(args, f.name) for f, _ in cls._options()}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# ---------------------------------------------------------------------------------------- -c overrides
@dataclasses.dataclass(frozen=True)
class Override:
    """`-c LABEL:FIELD=VALUE` of pipetask (value None: the LABEL:FIELD a job sets at run time)."""

    label: str
    field: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Override:
        """The one reader of LABEL:FIELD[=VALUE] (a config's -c strings, a step's offset_override)."""
        label, colon, assignment = text.partition(":")
        if not colon:  # not an override pipetask accepts; kept as written for pipetask to say so
            label, assignment = "", text
        field, equals, value = assignment.partition("=")
        return cls(label, field, value if equals else None)

    def text(self) -> str:
        return (f"{self.label}:" if self.label else "") + self.field + ("" if self.value is None else f"={self.value}")

    def with_value(self, value: float | str) -> Override:
        return dataclasses.replace(self, value=f"{value:g}" if isinstance(value, float | int) else value)


# ---------------------------------------------------------------------------------------- pipetask run
RESUME_FLAGS = ("--extend-run", "--skip-existing", "--clobber-outputs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipetaskCommand:
    """The guide's `pipetask run`: what the job needs of it (repository, inputs, output chain, pipeline and
    config files, query) as fields; argv() is the command line, in the guide's order."""

    executable: str = "pipetask"
    repo: str
    instrument: str | None = None
    inputs: tuple[str, ...] = ()
    output: str | None = None  # the output chain (none: the offset scan of one process writes nothing)
    pipeline: str
    where: str | None = None
    overrides: tuple[Override, ...] = ()
    config_files: tuple[str, ...] = ()  # -C LABEL:FILE
    extra: tuple[str, ...] = ()  # a step's extra_args, as the config gives them
    register_dataset_types: bool = True
    fail_fast: bool = True
    jobs: int | None = None  # -j: the rule appends it; not part of the job's identity
    output_run: str | None = None
    resume: bool = False  # --extend-run --skip-existing --clobber-outputs
    rebase: bool = False
    # A command that is not `pipetask run` (the tests' stand-ins for pipetask): its arguments as written,
    # run so, followed by what the job adds (overrides, -j, --output-run ...); its values read as pipetask's.
    written: tuple[str, ...] | None = None

    def argv(self) -> list[str]:
        if self.written is not None:
            return [self.executable, *self.written, *self._tail()]
        argv = [self.executable, "run"] + ["--register-dataset-types"] * self.register_dataset_types
        argv += ["-b", self.repo] + (["--instrument", self.instrument] if self.instrument else [])
        argv += (["-i", ",".join(self.inputs)] if self.inputs else []) + (["-o", self.output] if self.output else [])
        argv += ["-p", self.pipeline] + (["-d", self.where] if self.where is not None else [])
        argv += ["--fail-fast"] * self.fail_fast
        return argv + self._tail()

    def _tail(self) -> list[str]:
        argv = [a for o in self.overrides for a in ("-c", o.text())]
        argv += [a for c in self.config_files for a in ("-C", c)]
        argv += list(self.extra) + (["-j", str(self.jobs)] if self.jobs is not None else [])
        argv += ["--output-run", self.output_run] if self.output_run else []
        return argv + list(RESUME_FLAGS) * self.resume + ["--rebase"] * self.rebase

    def identity(self) -> list[str]:
        """The command without -j (changing cores must not restart a run)."""
        return dataclasses.replace(self, jobs=None).argv()

    def pipeline_files(self) -> list[str]:
        """The files pipetask reads the pipeline from: -p without its #subset, the FILE of each -C LABEL:FILE."""
        files = [c.partition(":")[2] or c for c in self.config_files]
        return [self.pipeline.split("#", 1)[0], *files] if self.pipeline else files

    def with_override(self, override: Override) -> PipetaskCommand:
        return dataclasses.replace(self, overrides=(*self.overrides, override))

    @classmethod
    def parse(cls, argv: list[str]) -> PipetaskCommand:
        """The inverse of argv(): the command after `--` of a job's shell line, whole (what argv() does not
        name stays in extra, in order)."""
        if argv[1:2] != ["run"]:  # not pipetask run: run as written, its values read for the job
            args = _PIPETASK.parse_known_args(argv[1:])[0]
            inputs = tuple(i for a in args.i for i in a.split(",") if i)
            return cls(
                executable=argv[0], written=tuple(argv[1:]), repo=args.b or "", instrument=args.instrument,
                inputs=inputs, output=args.o, pipeline=args.p or "", where=args.d,
                register_dataset_types=False, fail_fast=False,
            )  # fmt: skip
        args, extra = _PIPETASK.parse_known_args(argv[2:])
        return cls(
            executable=argv[0],
            repo=args.b,
            instrument=args.instrument,
            inputs=tuple(i for a in args.i for i in a.split(",") if i),
            output=args.o,
            pipeline=args.p,
            where=args.d,
            overrides=tuple(Override.parse(o) for o in args.c),
            config_files=tuple(args.C),
            extra=tuple(extra),
            register_dataset_types=args.register_dataset_types,
            fail_fast=args.fail_fast,
            jobs=args.j,
            output_run=args.output_run,
            resume=args.extend_run,
            rebase=args.rebase,
        )


def _pipetask_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pipetask run", add_help=False, allow_abbrev=False)
    for flag in ("-b", "--instrument", "-o", "-p", "-d", "--output-run"):
        p.add_argument(flag)
    p.add_argument("-i", action="append", default=[])
    p.add_argument("-c", "--config", dest="c", action="append", default=[])
    p.add_argument("-C", "--config-file", dest="C", action="append", default=[])
    p.add_argument("-j", type=int)
    for flag in ("--register-dataset-types", "--fail-fast", "--rebase", *RESUME_FLAGS):
        p.add_argument(flag, action="store_true")
    return p


_PIPETASK = _pipetask_parser()


def overrides_in(args: Iterable[str]) -> list[Override]:
    """The -c (--config) overrides among pipetask arguments as a config gives them (a step's extra_args)."""
    return [Override.parse(o) for o in _PIPETASK.parse_known_args(list(args))[0].c]


# ---------------------------------------------------------------------------------------- `pfscalib job`
@dataclasses.dataclass(frozen=True, kw_only=True)
class JobRequest(Options):
    """What one job certifies where, what it cleans, and its files: the options of `pfscalib job` and
    `pfscalib certify` (the pipetask command follows `--`)."""

    repo: str = option("the Butler repository (the datastore)", required=True)
    chain: str = option("the job's pipetask output collection (CHAINED, of its RUNs)", required=True)
    dataset_type: str = option("the product's dataset type", required=True)
    calib: str = option("the CALIBRATION collection it is certified into", required=True)
    instrument: str = option("the instrument's name", default="PFS")
    begin_date: str = option("start of the validity range (TAI)", required=True)
    end_date: str | None = option("end of the validity range (none: unbounded)", default=None)
    arm: str = option("the camera's arm (b, r, m, n)", required=True)
    spectrograph: int | None = option("the camera's spectrograph (none: every one of the arm)", parse=int, default=None)
    copy_as: str | None = option("certify a copy as this dataset type (detectorMap_calib)", default=None)
    clean: tuple[str, ...] = option("an intermediate dataset type removed once certified", default_factory=tuple)
    step: str = option("the step (pfscalib.plan.steps)", required=True)
    epoch: str = option("the epoch", required=True)
    visits: str = option("the job's visits, comma-separated", default="")
    state: str = option("the job's state file (resume, recovery)", required=True)
    sentinel: str = option("the sentinel written once certified", required=True)
    needs: tuple[str, ...] = option("sentinel of a product the job reads", default_factory=tuple)
    offset_from: str | None = option(
        "proposal (spectralOffset auto) whose value the job sets", flag="--spectral-offset-from", default=None
    )
    offset_field: Override | None = option(  # noqa: RUF009 (a field(), as every option: not a shared default)
        "LABEL:FIELD the proposal sets, e.g. bootstrap:spectralOffset", parse=Override.parse, default=None
    )
    clean_collections: tuple[str, ...] = option("glob of scan collections to remove", default_factory=tuple)
    profiles_from: str | None = option("define-profiles record: the profiles_run the -d query uses", default=None)
    held: str = option("where the record of a held product goes", default="")
    limits: str | None = option("a site's limits file (default: the shipped one)", default=None)
    accept: str | None = option("JSON {epoch, step, camera, datasetId, reason, by}: certify it", default=None)
    log_root: tuple[str, ...] = option("task logger root whose INFO reaches <label>_log", default_factory=tuple)

    @property
    def data_id(self) -> dict:
        data_id: dict = {"instrument": self.instrument, "arm": self.arm}
        if self.spectrograph is not None:
            data_id["spectrograph"] = self.spectrograph
        return data_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class OwnCollections(Options):
    """The workflow's own collections, which check-visits checks and register-dataset-types makes."""

    rerun: str | None = option("the workflow's rerun (its collections lie under it)", default=None)
    calib_chain: str | None = option("the build's CHAINED calib collection", default=None)
    calib_collection: tuple[str, ...] = option("a CALIBRATION collection in the chain", default_factory=tuple)
    collection: tuple[str, ...] = option("a CALIBRATION collection outside it", default_factory=tuple)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScanRequest(Options):
    """The options of `pfscalib scan-offset` and `scan-offsets` (spectralOffset auto) before the pipetask
    command after `--`."""

    repo: str = option("the Butler repository", required=True)
    instrument: str = option("the instrument's name", default="PFS")
    epoch: str = option("the epoch whose bootstrap visits are scanned", required=True)
    camera: str = option("the camera", required=True)
    label: str = option("the scanned task's label", required=True)
