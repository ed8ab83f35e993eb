"""The preflight: every bad input is one line before any job.

- At DAG time (`load`, called by rules/common.smk; no registry, no pipelines, so `snakemake -n -p` works
  anywhere): the config files as written (one file, no duplicated key), then the configuration and the
  visit tables (pfscalib.plan.config, pfscalib.plan.tables).
- Before the first job of a real run (`environment`, called by the Snakefile's `onstart`, which Snakemake
  skips in a dry run): the datastore, the demo's target, the executables, the pipeline files, and every
  step's `-c` overrides and `clean:` types against the pipeline itself (pipe_base, no registry), once
  per pipeline content and overrides (a passed check is remembered under paths.PREFLIGHT).
  Also there: the `instrument` class imports and is an lsst.pipe.base Instrument, each step's `extra_args`
  are options `pipetask run` takes (its own click command parses them, nothing runs), and an epoch whose
  tables changed since its check passed is checked again (`recheck_edited_epochs`).
- What needs the registry is checked by the epoch's check job (pfscalib.job.checks) and, for the collections
  the workflow creates, by register-dataset-types (butlerops.own_collection_problems).

One function per check; each raises ConfigError (one line naming the file, row, key or collection).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from pfscalib.plan import paths
from pfscalib.plan.config import AUTO, ConfigError, Settings
from pfscalib.plan.stack import StackError, ask
from pfscalib.plan.steps import STEP_NAMES, STEPS
from pfscalib.plan.workflow import Workflow


# ---------------------------------------------------------------- DAG time
class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML, and so Snakemake, keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{self.name}: line {line}",
                    f"key {key!r} appears twice in the same mapping (first on line {seen[key]}); "
                    "YAML would silently keep only the last",
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def check_config_files(files: Sequence[str]) -> None:
    """One config file, written without duplicated keys. Several --configfile values are refused: the
    tools that read the config outside Snakemake (`pfscalib status`, `pfscalib promote`, the
    certification table) take one file, and a target written after --configfile is taken for one."""
    if len(files) > 1:
        raise ConfigError(
            "--configfile",
            f"{len(files)} files given ({', '.join(map(str, files))}): give one config file "
            "(and put targets before --configfile, which takes every word after it)",
        )
    for file in files:
        check_duplicate_keys(str(file))


def check_duplicate_keys(file: str) -> None:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, f"cannot be read ({exc.strerror})") from None
    loader = StrictLoader(text)
    loader.name = file
    try:
        loader.get_single_data()
    except yaml.YAMLError as exc:  # Snakemake read it already; only a construct it accepts lands here
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}: line {mark.line + 1}" if mark else file
        raise ConfigError(where, f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    finally:
        loader.dispose()


def load(files: Sequence[str], config: dict | None = None, *, tables: bool = True) -> Workflow | Settings:
    """The one reader of the configuration, for the Snakefile and for every command that reads it outside
    Snakemake (status, summary, promote, select-visits, propose-offsets): the config files as written (one
    file, no duplicated key; broken YAML is one line naming the file and line), then the configuration and,
    unless tables=False (select-visits writes them), the visit tables. `config` is what Snakemake already
    read from the files. ConfigError if bad."""
    check_config_files(files)
    if config is None:
        config = yaml.safe_load(Path(files[0]).read_text())
    set_workdir(config)
    source = str(files[0]) if files else "config"
    return Workflow(config, source=source) if tables else Settings(config, source=source)


def set_workdir(config: dict) -> None:
    """The config's `workdir` (default pfscalib.plan.paths.default_workdir), in place. A work directory
    elsewhere than here gets the config's relative file paths made absolute, here: its jobs run there
    (Snakemake's workdir directive), every command reading the config from here."""
    if not isinstance(config, dict) or not all(isinstance(config.get(k), str) for k in ("datastore", "rerun")):
        return  # the schema says what is wrong
    workdir = config.setdefault("workdir", paths.default_workdir(config["datastore"], config["rerun"]))
    if not isinstance(workdir, str) or Path(workdir).resolve() == Path.cwd().resolve():
        return

    def here(path: Any) -> Any:
        relative = isinstance(path, str) and not (os.path.isabs(path) or path.startswith("$") or is_url(path))
        return os.path.abspath(path) if relative else path

    config["workdir"] = here(workdir)
    config["datastore"] = here(config["datastore"])
    if "limits" in config:
        config["limits"] = here(config["limits"])
    if "pipelines_dir" in config:
        config["pipelines_dir"] = here(config["pipelines_dir"])
    if isinstance(config.get("visits"), dict):
        config["visits"] = {step: here(table) for step, table in config["visits"].items()}
    if isinstance(config.get("executables"), dict):  # a program named by a path, not looked up on PATH
        config["executables"] = {k: here(v) if "/" in str(v) else v for k, v in config["executables"].items()}


def enter_workdir(wf: Settings) -> Path:
    """Into the config's work directory (a command reading its results: status, promote); the path."""
    if Path(wf.workdir).is_dir():
        os.chdir(wf.workdir)
    return Path(wf.workdir)


# ---------------------------------------------------------------- before the first job
def environment(wf: Workflow, cache: str = paths.PREFLIGHT) -> None:
    """What a real run needs besides the registry: one ConfigError at the first problem. The checks that
    need the stack are asked of it in one child process (pfscalib.plan.stack), each once per payload and
    stack (a passed check is remembered under `cache`)."""
    check_datastore(wf)
    check_executables(wf)
    checks = [instrument_check(wf)]
    checks += [c for step in STEP_NAMES if (c := extra_args_check(wf, step))]
    checks += [pipeline_check(wf, step) for step in STEP_NAMES]
    pending = [c for c in checks if not c.passed(cache)]
    for check, answer in zip(pending, ask_stack([c.request for c in pending]), strict=True):
        check.judge(answer)
        check.remember(cache)


@dataclasses.dataclass
class StackCheck:
    """One question for the stack: its request, what decides whether an earlier pass still holds (the
    payload and the stack's identity), and the judge of the answer (raises ConfigError)."""

    name: str
    payload: list
    request: dict
    judge: Callable[[dict], None]

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([self.payload, *environment_identity()]).encode()).hexdigest()[:20]

    def passed(self, cache: str) -> bool:
        return Path(paths.preflight_pass(cache, self.name, self.fingerprint())).exists()

    def remember(self, cache: str) -> None:
        passed = Path(paths.preflight_pass(cache, self.name, self.fingerprint()))
        try:
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.write_text(json.dumps({"checked": self.payload}) + "\n")
        except OSError:  # an unwritable cache costs the next run the check again, nothing else
            pass


def ask_stack(requests: list[dict]) -> list[dict]:
    try:
        return ask(requests)
    except StackError as exc:
        raise ConfigError("environment", str(exc)) from None


def instrument_check(wf: Workflow) -> StackCheck:
    """`instrument` (pipetask --instrument) names an importable lsst.pipe.base Instrument subclass, as
    pipetask imports it in every job (a typo would fail each job after the check, not before)."""
    path = wf.config["instrument"]

    def judge(answer: dict) -> None:
        if answer["problem"]:
            raise ConfigError(f"{wf.source}: instrument", answer["problem"])

    return StackCheck("instrument", [path], {"kind": "instrument", "path": path}, judge)


def extra_args_check(wf: Workflow, step: str) -> StackCheck | None:
    """steps.<step>.extra_args are accepted by `pipetask run` after the workflow's own options: parsed by
    ctrl_mpexec's own click command, as written and with the -j the rule appends, never run."""
    extra = list(wf.setting(step, "extra_args", []))
    if not extra or not wf.units(step):
        return None
    # in the command of the step's first job, after `pipetask run`
    argv = wf.commands.pipetask_argv(step, next(iter(wf.epochs)), wf.units(step)[0])[2:]

    def judge(answer: dict) -> None:
        if answer["problem"]:
            raise ConfigError(
                f"{wf.source}: steps.{step}.extra_args",
                f"{' '.join(extra)!r} is refused by pipetask run: {answer['problem']}",
            )

    request = {"kind": "pipetask_run_args", "argv": argv, "tails": [[], ["-j", "1"]]}
    return StackCheck(f"{step}-extra_args", extra, request, judge)


def recheck_edited_epochs(wf: Workflow, epochs: Iterable[str]) -> None:
    """An epoch's tables edited since its check passed are checked again, before any job. Snakemake cannot
    rerun the check job itself: a rerun check would keep the edited jobs behind it from rerunning (see
    rules/common.smk, check_command). Its output records what it checked (Commands.check_inputs_digest);
    the same command runs here, writing its log and, if it passes, its output anew."""
    for epoch in epochs:
        path = Path(paths.check(epoch))
        try:
            recorded = json.loads(path.read_text()).get("inputs")
        except (OSError, ValueError):  # not checked yet (the check job runs) or unreadable (it reruns)
            continue
        if recorded == wf.commands.check_inputs_digest(epoch):
            continue
        argv = shlex.split(wf.commands.check(epoch, str(path)))
        log = Path(paths.log(epoch, "check_visits"))
        log.parent.mkdir(parents=True, exist_ok=True)
        # the job's own command, with the Python running this workflow (its pfscalib)
        with log.open("w") as stderr:
            proc = subprocess.run([sys.executable, "-m", "pfscalib.cli", *argv[1:]], stderr=stderr, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
            last = (lines or [f"check-visits: failed (exit {proc.returncode}); see {log}"])[-1]
            where, _, problem = last.removeprefix("pfscalib: ").partition(": ")
            raise ConfigError(where, f"{problem} (the table changed since epoch {epoch} was checked)")


def is_url(location: str) -> bool:
    return "://" in location


def check_datastore(wf: Workflow) -> None:
    """The repository exists (a Butler repo: butler.yaml); with demo: enabled, the datastore is the
    demo's own or absent (the demo would otherwise be built over a site's repository)."""
    location = wf.datastore
    if is_url(location):
        return  # a remote repository: the check job opens it
    root = Path(location)
    where = f"{wf.source}: datastore"
    if wf.demo_enabled:
        # an empty directory is the one Snakemake makes for the demo rule's output (a run killed before the
        # build): make_repo builds into it
        empty = root.is_dir() and not any(root.iterdir())
        if root.exists() and not empty and not Path(paths.demo_marker(location)).exists():
            raise ConfigError(
                f"{wf.source}: demo.enabled",
                f"datastore {location} is an existing repository the demo did not build: set demo.enabled "
                "to false to use it, or point datastore at a new directory for the demo",
            )
        return
    if not root.exists():
        raise ConfigError(where, f"{location} does not exist (a Butler repository: `butler create`, or the site's)")
    if root.is_dir() and not (root / "butler.yaml").is_file():
        raise ConfigError(where, f"{location} is not a Butler repository (no butler.yaml in it)")


def check_executables(wf: Workflow) -> None:
    """Every program a job runs is there; the demo's stand-ins, made with its repository, are not yet."""
    for key, program in wf.executables.items():
        if wf.demo_enabled and Path(program).resolve().is_relative_to(Path(wf.datastore).resolve()):
            continue
        where = f"{wf.source}: executables.{key}"
        if "/" in program:
            if not (Path(program).is_file() and os.access(program, os.X_OK)):
                raise ConfigError(where, f"{program!r} is not an executable file")
        elif shutil.which(program) is None:
            raise ConfigError(where, f"{program!r} is not found on PATH (activate the LSST/PFS stack)")


def pipeline_file(wf: Workflow, step: str) -> Path:
    key = f"steps.{step}.pipeline" if "pipeline" in wf.steps[step] else "pipelines_dir"
    path = os.path.expandvars(wf.pipeline(step))
    if "$" in path:
        unset = path[path.index("$") :].split("/")[0]
        raise ConfigError(f"{wf.source}: {key}", f"{unset} is not set in this shell (activate the LSST/PFS stack)")
    if not Path(path).is_file():
        raise ConfigError(f"{wf.source}: {key}", f"pipeline {path} of step {step} does not exist")
    return Path(path)


def step_overrides(wf: Workflow, step: str) -> list[tuple[str, str]]:
    """(config key, LABEL:FIELD=VALUE) of every -c override any job of the step passes."""
    out = [(f"steps.{step}.config", o) for o in wf.step_config(step)]
    target = STEPS[step].offset_target
    if target is not None:
        # auto: the field is checked with 0 (the scan and the proposal set numbers)
        offsets = {c: wf.spectral_offset(c) for c in wf.cameras}
        out += [
            (f"spectralOffset.{c}", target.with_value(0 if offset == AUTO else offset).text())  # type: ignore[arg-type]
            for c, offset in offsets.items()
        ]
    for unit, overrides in wf.setting(step, "camera_config", {}).items():
        out += [(f"steps.{step}.camera_config.{unit}", o) for o in overrides]
    return out


def pipeline_check(wf: Workflow, step: str) -> StackCheck:
    """The step's -c overrides are accepted by its pipeline (the task labels and config fields exist and
    take the values, as `pipetask build -p ... -c ...` checks them), and its `clean:` names dataset types
    the pipeline produces. Remembered per pipeline content, overrides and clean list."""
    path = pipeline_file(wf, step)
    overrides = step_overrides(wf, step)
    clean = list(wf.setting(step, "clean", STEPS[step].clean))

    def judge(answer: dict) -> None:
        if answer["problem"]:  # name the override: apply each alone
            alone = ask_stack([{"kind": "pipeline", "path": str(path), "overrides": [o]} for _, o in overrides])
            for (key, override), refused in zip(overrides, alone, strict=True):
                if refused["problem"]:
                    raise ConfigError(
                        f"{wf.source}: {key}", f"-c {override} is refused by {path.name}: {refused['problem']}"
                    )
            raise ConfigError(
                f"{wf.source}: steps.{step}", f"{path.name} with the step's -c overrides: {answer['problem']}"
            )
        unknown = [t for t in clean if t not in answer["produced"]]
        if unknown:
            key = f"steps.{step}.clean" if "clean" in wf.steps[step] else f"steps.{step}.clean (default)"
            raise ConfigError(
                f"{wf.source}: {key}",
                f"{', '.join(unknown)}: not produced by {path.name} (it produces {', '.join(answer['produced'])})",
            )

    request = {"kind": "pipeline", "path": str(path), "overrides": [o for _, o in overrides]}
    return StackCheck(step, [path.read_text(), overrides, clean], request, judge)


def environment_identity() -> list[str]:
    """What else decides whether a pipeline takes an override: the software stack and where its tasks
    come from (the pipeline's imports and task classes)."""
    from importlib import metadata

    versions = []
    for package in ("lsst-pipe-base", "lsst-pex-config"):
        try:
            versions.append(metadata.version(package))
        except metadata.PackageNotFoundError:  # an LSST stack installs them under EUPS, not as dists
            versions.append("")
    return [sys.prefix, os.environ.get("DRP_STELLA_DIR", ""), os.environ.get("OBS_PFS_DIR", ""), *versions]
