"""A job's contract has one owner (issue 30): the typed request and pipetask command build the shell line
and parse it back; no module reads a value out of an argv list; cli is a front end whose --help lists a
person's commands only."""

from __future__ import annotations

import ast
import dataclasses
import shlex
import subprocess
import sys

import pytest
import yaml

from pfscalib import cli
from pfscalib.plan.contract import JobRequest, Override, PipetaskCommand
from pfscalib.plan.steps import STEP_NAMES
from pfscalib.plan.workflow import Workflow

from conftest import PROJECT

PACKAGE = PROJECT / "scripts" / "pfscalib"
AUTO = ("b1", "m1")


@pytest.fixture
def demo(monkeypatch) -> Workflow:
    monkeypatch.chdir(PROJECT)
    return Workflow(yaml.safe_load((PROJECT / "config/config.yaml").read_text()))


@pytest.fixture
def site(monkeypatch) -> Workflow:
    """The site example with m, two cameras' spectralOffset auto and an accepted held product."""
    monkeypatch.chdir(PROJECT)
    config = yaml.safe_load((PROJECT / "config/pfs.example-m.yaml").read_text())
    config["spectralOffset"].update({c: "auto" for c in AUTO})
    config["accept"] = [
        {
            "epoch": "run18",
            "step": "bias",
            "camera": "b1",
            "datasetId": "0b8f1e8e-6f4c-4b7a-9a49-3a2c8d1f5e21",
            "reason": "known",
            "by": "me",
        }
    ]
    return Workflow(config, "pfs.example-m.yaml")


def every_job(wf: Workflow):
    for step in STEP_NAMES:
        for epoch in wf.epochs:
            for unit in wf.units(step):
                yield step, epoch, unit


def job_parser():
    parser = cli.parser()
    return lambda argv: parser.parse_args(argv)


def test_a_demo_request_round_trips_through_its_argv(demo):
    request = demo.commands.request("bootstrap", "run1", "b1")
    parser = cli.parser()
    assert JobRequest.from_args(parser.parse_args(["job", *request.argv()])) == request
    assert JobRequest.from_args(parser.parse_args(["certify", *request.argv()])) == request
    assert request.needs and request.clean and request.log_root  # a realistic request: repeated options given


def test_every_job_s_shell_line_parses_back_into_its_typed_request_and_command(site):
    """The shell line (the guide's pipetask after `--`) is what the types build, and the job reads the
    same typed values back: the auto cameras' proposal, the accepted product, the profiles_run record."""
    parse = job_parser()
    seen = set()
    for step, epoch, unit in every_job(site):
        args = parse(shlex.split(site.commands.job(step, epoch, unit))[1:])
        request, command = site.commands.request(step, epoch, unit), site.commands.pipetask(step, epoch, unit)
        assert JobRequest.from_args(args) == request
        assert args.command[0] == "--" and PipetaskCommand.parse(args.command[1:]) == command
        seen |= {f.name for f in dataclasses.fields(request) if getattr(request, f.name) not in (None, ())}
    assert {"offset_from", "offset_field", "clean_collections", "profiles_from", "accept", "copy_as"} <= seen
    with_j = PipetaskCommand.parse([*command.argv(), "-j", "8"])
    assert with_j.jobs == 8 and with_j.identity() == command.argv()  # -j is no part of the job's identity


def test_the_offset_scan_commands_parse_back(site):
    for camera in AUTO:
        isr = site.commands.offset_pipetask("run18", camera, None)
        assert PipetaskCommand.parse(isr.argv()) == isr
        scan = site.commands.offset_scan_pipetask("run18", camera)
        assert scan.output is None and PipetaskCommand.parse(scan.argv()) == scan
        point = site.commands.offset_pipetask("run18", camera, 14)
        assert point.overrides[-1] == Override("bootstrap", "spectralOffset", "14")


@pytest.mark.parametrize(
    "text", ["isr:doDefect=False", "bootstrap:spectralOffset", "fitDetectorMap:connections.x=y=z", "noLabel=1"]
)
def test_an_override_is_written_as_it_was_read(text):
    assert Override.parse(text).text() == text


def test_a_stand_in_for_pipetask_runs_as_written():
    """The tests' stand-ins (`python -c ... -o CHAIN`) run as given, followed by what the job adds."""
    stand_in = ["python", "-c", "print(1)", "-o", "u/test/chain"]
    command = PipetaskCommand.parse(stand_in)
    assert command.output == "u/test/chain" and command.argv() == stand_in
    assert dataclasses.replace(command, output_run="u/test/chain/1", rebase=True).argv()[-3:] == [
        "--output-run", "u/test/chain/1", "--rebase",
    ]  # fmt: skip


def test_extra_args_stay_as_written():
    command = PipetaskCommand(repo="r", pipeline="p.yaml", extra=("--no-versions", "--mock"))
    assert PipetaskCommand.parse(command.argv()) == command


# ------------------------------------------------------------------------------ no argv is searched
def argv_reads(path) -> list[str]:
    """Where a module reads a value out of an argv list: argv.index(...), _arg_after, or a subscript of a
    list named *argv* at an index computed from another position (argv[i + 1], argv[at + 2:])."""
    text = path.read_text()
    found = [f"{path.name}: {word}" for word in ("argv.index(", "_arg_after", '.index("-') if word in text]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Subscript) and "argv" in ast.unparse(node.value).lower():
            index = node.slice
            if isinstance(index, ast.Slice):
                index = index.lower or index.upper
            if isinstance(index, ast.BinOp):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        pairs = isinstance(node, ast.Call) and ast.unparse(node.func).endswith("pairwise")
        if pairs and any(w in ast.unparse(a).lower() for a in node.args for w in ("argv", "extra")):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reads_a_value_out_of_an_argv_list():
    modules = [p for p in PACKAGE.rglob("*.py") if "demo" not in p.relative_to(PACKAGE).parts]
    assert len(modules) > 20
    assert [hit for path in modules for hit in argv_reads(path)] == []


def test_the_argv_check_sees_the_old_ways(tmp_path):
    old = tmp_path / "old.py"
    old.write_text(
        "def f(argv):\n    a = argv[argv.index('-b') + 1]\n    return [argv[i + 1] for i, x in enumerate(argv)]\n"
    )
    assert len(argv_reads(old)) == 3  # the word argv.index(, and each read at a computed position


def test_spectral_offset_is_read_in_one_place():
    """Settings.spectral_offset reads the config's spectralOffset; every other module and rule asks it (or
    auto_cameras, which asks it)."""
    files = [p for p in PACKAGE.rglob("*.py") if "demo" not in p.relative_to(PACKAGE).parts]
    files += [PROJECT / "Snakefile", *(PROJECT / "rules").glob("*.smk")]
    reads = ('config["spectralOffset"]', 'config.get("spectralOffset"', "config['spectralOffset']")
    readers = sorted(p.name for p in files if any(w in p.read_text() for w in reads))
    assert readers == ["config.py"]
    text = (PACKAGE / "plan" / "config.py").read_text()
    # the reader, and the validation of the block's own keys (a camera it names that is not configured)
    assert text.count('config.get("spectralOffset"') == 2 and 'config["spectralOffset"]' not in text


# ------------------------------------------------------------------------------ cli a front end
def test_help_lists_a_person_s_commands_and_none_of_the_jobs():
    proc = subprocess.run([sys.executable, "-m", "pfscalib.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    listed = proc.stdout.split("positional arguments:")[1].split("options:")[0]
    rows = [line for line in listed.splitlines()[2:] if line.startswith("    ") and line[4] != " "]
    words = {line.split()[0] for line in rows}
    assert words == set(cli.USER_COMMANDS)
    choices = set(proc.stdout.split("{", 1)[1].split("}", 1)[0].split(","))  # the usage line's
    assert choices == set(cli.USER_COMMANDS) and not (choices | words) & set(cli.INTERNAL_COMMANDS)


def test_every_command_the_rules_run_still_parses(site, tmp_path):
    """The internal commands parse as the rules write them (from the commands the plan builds)."""
    c, parse = site.commands, job_parser()
    lines = [
        c.job("bias", "run18", "b1"),
        c.offset_isr("run18", "b1"),
        c.offset_scan("run18", "b1", 14),
        c.offset_scan_camera("run18", "m1"),
        c.propose("run18", "b1"),
        c.define_profiles("run18", "brn"),
        c.check("run18", str(tmp_path / "check.json")),
        c.register(),
        c.qa(["results/certified/run18/bias/b1.json"], "results/qa"),
        shlex.join(["pfscalib", "certify", *c.request("bias", "run18", "b1").argv()]),
    ]
    names = set()
    for line in lines:
        args = parse(shlex.split(line)[1:])
        names.add(args.cmd)
        assert args.func.__name__.startswith("cmd_")
    assert names == set(cli.INTERNAL_COMMANDS)
    assert {"status", "summary", "promote"} <= set(cli.USER_COMMANDS)


def test_cli_opens_no_butler():
    """Each command calls one operation in its sub-package: cli.py itself neither opens a Butler nor
    imports the registry's types."""
    text = (PACKAGE / "cli.py").read_text()
    for word in ("open_butler", "lsst.", "Butler(", "CollectionType", "import subprocess"):
        assert word not in text, word
