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


def pipetask_option(*flags: str, kind: str = "value", head: bool = False, **field: Any) -> Any:
    """A field that is one of pipetask's options, with its flags (the first is written) and its kind:
    value (FLAG VALUE), switch (FLAG when true), joined (FLAG A,B), each (FLAG per value), rest (as
    written), resume (RESUME_FLAGS when true). head: part of `pipetask run`'s own arguments, not of the
    tail a job appends to a stand-in."""
    return dataclasses.field(metadata={"flags": flags, "kind": kind, "head": head}, **field)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipetaskCommand:
    """The guide's `pipetask run`: what the job needs of it (repository, inputs, output chain, pipeline and
    config files, query) as fields, in the guide's order. The fields are its only definition: argv() writes
    them and parse() reads them with the parser they make."""

    executable: str = "pipetask"
    register_dataset_types: bool = pipetask_option("--register-dataset-types", kind="switch", head=True, default=True)
    repo: str = pipetask_option("-b", "--butler-config", head=True)
    instrument: str | None = pipetask_option("--instrument", head=True, default=None)
    inputs: tuple[str, ...] = pipetask_option("-i", "--input", kind="joined", head=True, default=())
    # the output chain (none: the offset scan of one process writes nothing)
    output: str | None = pipetask_option("-o", "--output", head=True, default=None)
    pipeline: str = pipetask_option("-p", "--pipeline", head=True)
    where: str | None = pipetask_option("-d", "--data-query", head=True, default=None)
    fail_fast: bool = pipetask_option("--fail-fast", kind="switch", head=True, default=True)
    overrides: tuple[Override, ...] = pipetask_option("-c", "--config", kind="each", default=())
    config_files: tuple[str, ...] = pipetask_option("-C", "--config-file", kind="each", default=())  # LABEL:FILE
    extra: tuple[str, ...] = pipetask_option(kind="rest", default=())  # a step's extra_args, as the config gives them
    # -j: the rule appends it; not part of the job's identity
    jobs: int | None = pipetask_option("-j", "--processes", default=None)
    output_run: str | None = pipetask_option("--output-run", default=None)
    resume: bool = pipetask_option(*RESUME_FLAGS, kind="resume", default=False)
    rebase: bool = pipetask_option("--rebase", kind="switch", default=False)
    # A command that is not `pipetask run` (the tests' stand-ins for pipetask): its arguments as written,
    # run so, followed by what the job adds (overrides, -j, --output-run ...); its values read as pipetask's.
    written: tuple[str, ...] | None = None

    @staticmethod
    def _fields(head: bool) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(PipetaskCommand) if "kind" in f.metadata and f.metadata["head"] == head]

    def _write(self, head: bool) -> list[str]:
        out: list[str] = []
        for f in self._fields(head):
            value, flag, kind = getattr(self, f.name), (f.metadata["flags"] or ("",))[0], f.metadata["kind"]
            if kind == "switch":
                out += [flag] * value
            elif kind == "resume":
                out += list(RESUME_FLAGS) * value
            elif kind == "joined":
                out += [flag, ",".join(value)] if value else []
            elif kind == "each":
                out += [a for v in value for a in (flag, _text(v))]
            elif kind == "rest":
                out += list(value)
            elif value is not None:
                out += [flag, str(value)]
        return out

    def argv(self) -> list[str]:
        if self.written is not None:
            return [self.executable, *self.written, *self._write(head=False)]
        return [self.executable, "run", *self._write(head=True), *self._write(head=False)]

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
    def parser(cls) -> argparse.ArgumentParser:
        """pipetask run's options as the fields define them (what argv() writes, read back by the job)."""
        p = argparse.ArgumentParser(prog="pipetask run", add_help=False, allow_abbrev=False)
        for f in cls._fields(True) + cls._fields(False):
            flags, kind = f.metadata["flags"], f.metadata["kind"]
            if kind in ("switch", "resume"):
                p.add_argument(*flags, dest=f.name, action="store_true")
            elif kind in ("joined", "each"):
                p.add_argument(*flags, dest=f.name, action="append", default=[])
            elif kind == "value":
                p.add_argument(*flags, dest=f.name, type=int if f.name == "jobs" else str)
        return p

    @classmethod
    def parse(cls, argv: list[str]) -> PipetaskCommand:
        """The command after `--` of a job's shell line, read by the fields' own parser (what they do not
        name stays in extra, in order)."""
        written = argv[1:2] != ["run"]  # not pipetask run: run as written, its values read for the job
        args, extra = _PIPETASK.parse_known_args(argv[1:] if written else argv[2:])
        values = vars(args)
        values["inputs"] = tuple(i for a in values["inputs"] for i in a.split(",") if i)
        values["overrides"] = tuple(Override.parse(o) for o in values["overrides"])
        values["config_files"] = tuple(values["config_files"])
        if written:
            head = {f.name for f in cls._fields(True)} | {"repo", "pipeline"}
            values = {k: v for k, v in values.items() if k in head}
            values |= {"repo": values["repo"] or "", "pipeline": values["pipeline"] or ""}
            values |= {"register_dataset_types": False, "fail_fast": False, "written": tuple(argv[1:])}
        return cls(executable=argv[0], extra=() if written else tuple(extra), **values)


_PIPETASK = PipetaskCommand.parser()


def overrides_in(args: Iterable[str]) -> list[Override]:
    """The -c (--config) overrides among pipetask arguments as a config gives them (a step's extra_args)."""
    return [Override.parse(o) for o in _PIPETASK.parse_known_args(list(args))[0].overrides]


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

    def guide(self) -> list[GuideCommand]:
        """What the job does after its pipetask run (pfscalib.job.run.certify), as the guide's commands a
        scientist would type: the replaced certification of the camera (or arm) over the range, the
        certification (certifyDetectorMaps.py where the product is certified as a copy, as the guide does
        for detectorMaps), then the cleaning of its RUNs and of the spectralOffset scan collections."""
        dates = ["--begin-date", self.begin_date, *(["--end-date", self.end_date] if self.end_date else [])]
        ids = ["--id", *(f"{k}={v}" for k, v in self.data_id.items())]
        certified = self.copy_as or self.dataset_type
        out = [
            GuideCommand(
                ["butlerDecertify.py", self.repo, self.calib, certified, *dates, *ids],
                "the quality gate passes and an earlier build is certified over the range",
            )
        ]
        if self.copy_as:
            certify = ["certifyDetectorMaps.py", self.repo, self.chain, self.calib, "--instrument", self.instrument]
            if self.dataset_type != "detectorMap_candidate":  # the script's default input type
                certify += ["--datasetType", self.dataset_type]
            out.append(GuideCommand([*certify, *dates]))
        else:
            out.append(
                GuideCommand(["butler", "certify-calibrations", self.repo, self.chain, self.calib, certified, *dates])
            )
        if self.clean:
            out.append(GuideCommand(["butlerCleanRun.py", self.repo, f"{self.chain}/*", *self.clean, *ids]))
        for pattern in self.clean_collections:  # chains first (a RUN in a chain cannot go), then RUNs
            out.append(GuideCommand(["butler", "remove-collections", self.repo, pattern, "--no-confirm"]))
            out.append(GuideCommand(["butler", "remove-runs", self.repo, pattern, "--no-confirm"]))
        return out


@dataclasses.dataclass(frozen=True)
class GuideCommand:
    """One command of the guide a job's work equals, and the condition it runs under (none: always, once
    the ones before it ran; a held product is neither certified nor cleaned)."""

    argv: list[str]
    when: str = ""


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
