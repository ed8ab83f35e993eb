"""Issue #17: the bad-input corpus. Every case is refused with one line naming the place (config file and
line or key, table and row as an editor numbers lines, or collection) and the problem, at the earliest
stage that can see it (DAG time, the run's onstart, the epoch's check job, register-dataset-types), and
the repository stays byte-identical. Driven in-process through the functions the Snakefile and its jobs
call (preflight.load, preflight.environment, `pfscalib check-visits`, `pfscalib register-dataset-types`);
a few cases run `snakemake` to prove that the line reaches the console before any step job."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from snakemake.common.configfile import load_configfile

from pfscalib import cli
from pfscalib.plan import preflight
from pfscalib.plan.config import ConfigError

from conftest import PROJECT
from helpers import external_repo_config, snakemake, workdir_config

CAMERAS = ["b1", "r1"]


def fingerprint(repo: Path) -> tuple[str, tuple]:
    """The registry database's bytes and the repository's file listing (names and sizes)."""
    sqlite = hashlib.sha256((repo / "gen3.sqlite3").read_bytes()).hexdigest()
    listing = sorted(
        (os.path.join(top, name), os.stat(os.path.join(top, name)).st_size)
        for top, _, names in os.walk(repo)
        for name in names
    )
    return sqlite, tuple(listing)


def cli_line(command: str, capsys) -> tuple[int, list[str]]:
    """Run a job's `pfscalib ...` command in-process; its exit status and non-empty stderr lines."""
    for name in list(logging.root.manager.loggerDict):  # handlers bound to an earlier test's stderr
        if name.startswith("pfscalib."):
            logging.getLogger(name).handlers.clear()
    capsys.readouterr()
    rc = cli.main(shlex.split(command)[1:])
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@dataclasses.dataclass
class Site:
    root: Path
    repo: Path
    config: dict  # the valid base config (cameras b1 r1, epoch run1, the repo above)
    visits: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory, demo_template) -> Site:
    """One demo repository for the module, holding the rerun's own collections as after a first build
    (register-dataset-types has run): what a mistyped collection name is told apart by."""
    root = tmp_path_factory.mktemp("corpus")
    repo = root / "repo"
    shutil.copytree(demo_template, repo)
    base = workdir_config(root / "base", cameras=CAMERAS, epochs=("run1",))
    external_repo_config(base, str(repo), CAMERAS)
    config = yaml.safe_load((base / "config/config.yaml").read_text())
    cwd = os.getcwd()
    os.chdir(base)
    try:
        wf = preflight.load([str(base / "config/config.yaml")], copy.deepcopy(config))
        assert cli.main(shlex.split(wf.commands.register())[1:]) == 0
    finally:
        os.chdir(cwd)
    return Site(root, repo, config, base / "visits")


@dataclasses.dataclass
class Case:
    id: str
    stage: str  # where it is refused: dag, onstart, check or register
    expect: tuple[str, ...]  # every one appears in the line: the place and the problem
    config: Callable[[dict], None] | None = None  # edits the config dict
    yaml_text: Callable[[str], str] | None = None  # edits the config file's text
    tables: dict[str, str | bytes] = dataclasses.field(default_factory=dict)  # step -> table content
    extra_files: tuple[str, ...] = ()  # more --configfile values


def steps(**settings) -> Callable[[dict], None]:
    return lambda c: c["steps"].update(settings)


def setting(key: str, value) -> Callable[[dict], None]:
    return lambda c: c.update({key: value})


def collections(**chosen) -> Callable[[dict], None]:
    return lambda c: c.update(collections=chosen)


def epoch(**span) -> Callable[[dict], None]:
    return lambda c: c["epochs"].update(run1=span)


def tsv(*rows: str) -> str:
    return "".join(row + "\n" for row in rows)


CONFIG = [
    Case("duplicate top-level key", "dag", ("config.yaml: line", "key 'rerun' appears twice"),
         yaml_text=lambda t: t + "rerun: u/other\n"),
    Case("duplicate spectralOffset camera", "dag", ("key 'b1' appears twice",),
         yaml_text=lambda t: t.replace("spectralOffset:\n", "spectralOffset:\n  b1: 5\n")),
    Case("duplicate steps block", "dag", ("key 'steps' appears twice",),
         yaml_text=lambda t: t + "steps: {bias: {threads: 2}}\n"),
    Case("two config files", "dag", ("--configfile: 2 files given", "give one config file"),
         extra_files=("other.yaml",)),
    Case("target after --configfile", "dag", ("results/certified/run1/bias/b1.json", "put targets before"),
         extra_files=("results/certified/run1/bias/b1.json",)),
    Case("date with a time zone", "dag", ("epochs.run1.begin", "has a time zone"),
         yaml_text=lambda t: t.replace("begin: '2025-03-01T00:00:00'", "begin: 2025-03-01T00:00:00Z")),
    Case("date in words", "dag", ("epochs.run1.begin", "'March 1st' is not an ISO-8601 date"),
         config=epoch(begin="March 1st")),
    Case("impossible date", "dag", ("epochs.run1.begin", "'2025-02-30' is not an ISO-8601 date"),
         config=epoch(begin="2025-02-30")),
    Case("end before begin", "dag", ("epochs.run1", "is not after begin"),
         config=epoch(begin="2025-03-01T00:00:00", end="2025-02-01T00:00:00")),
    Case("overlapping epochs", "dag", ("epochs.run2", "overlaps epoch run1"),
         config=lambda c: c["epochs"].update(run2={"begin": "2025-03-15T00:00:00"})),
    Case("validity of an unknown epoch", "dag", ("steps.bias.validity.run7", "unknown epoch"),
         config=steps(bias={"validity": {"run7": {"begin": "2025-01-01T00:00:00"}}})),
    Case("epoch name with a space", "dag", ("epochs", "'run 1' is not an epoch name"),
         config=lambda c: c["epochs"].update({"run 1": {"begin": "2026-01-01T00:00:00"}})),
    Case("unknown camera", "dag", ("cameras.1", "'x9' is not a camera"), config=setting("cameras", ["b1", "x9"])),
    Case("camera twice", "dag", ("cameras: 'b1' listed more than once",), config=setting("cameras", ["b1", "b1"])),
    Case("no cameras", "dag", ("cameras",), config=setting("cameras", [])),
    Case("threads in words", "dag", ("steps.bias.threads", "'many' is not of type 'integer'"),
         config=steps(bias={"threads": "many"})),
    Case("zero threads", "dag", ("steps.dark.threads", "0 is less than the minimum"),
         config=steps(dark={"threads": 0})),
    Case("negative memory", "dag", ("steps.flat.mem_mb",), config=steps(flat={"mem_mb": -1})),
    Case("unknown top-level key", "dag", ("(top level): unknown key(s) 'stepz'",), config=setting("stepz", {})),
    Case("unknown step", "dag", ("steps: unknown key(s) 'biass'",), config=steps(biass={"threads": 1})),
    Case("unknown step setting", "dag", ("steps.bias: unknown key(s) 'thread'",), config=steps(bias={"thread": 1})),
    Case("missing rerun", "dag", ("'rerun' is a required property",), config=lambda c: c.pop("rerun")),
    Case("missing datastore", "dag", ("'datastore' is a required property",), config=lambda c: c.pop("datastore")),
    Case("missing spectralOffset", "dag", ("spectralOffset", "no bootstrap spectralOffset for camera r1"),
         config=lambda c: c["spectralOffset"].pop("r1")),
    Case("spectralOffset of another camera", "dag", ("spectralOffset.n4", "not a configured camera"),
         config=lambda c: c["spectralOffset"].update(n4=1)),
    Case("spectralOffset in words", "dag", ("spectralOffset.b1", "'ten' is neither a number of pixels nor auto"),
         config=lambda c: c["spectralOffset"].update(b1="ten")),
    Case("malformed -c", "dag", ("steps.flat.config.0", "is not a -c override (LABEL:FIELD=VALUE"),
         config=steps(flat={"config": ["isr.doFlat"]})),
    Case("camera_config of another camera", "dag", ("steps.flat.camera_config.n2", "not a configured camera"),
         config=steps(flat={"camera_config": {"n2": ["isr:doFlat=False"]}})),
    Case("clean the certified product", "dag", ("steps.bias.clean", "would remove the certified bias"),
         config=steps(bias={"clean": ["bias"]})),
    Case("cleanup in words", "dag", ("cleanup", "'yes' is not of type 'boolean'"), config=setting("cleanup", "yes")),
    Case("missing table", "dag", ("config.yaml: visits.dark", "table nope.tsv does not exist"),
         config=lambda c: c["visits"].update(dark="nope.tsv")),
    Case("no table for a step", "dag", ("visits", "no visit table for step(s) fiberNorms"),
         config=lambda c: c["visits"].pop("fiberNorms")),
    Case("calib outside the rerun", "dag", ("collections.calib", "is not under the rerun"),
         config=collections(calib="PFS/calib")),
    Case("bootstrap in the calib chain", "dag", ("collections.bootstrap", "lies in it"),
         config=collections(bootstrap="u/demo/calib/bias")),
    Case("rerun among the site's collections", "dag", ("rerun", "'PFS/me' lies among the site's collections"),
         config=setting("rerun", "PFS/me")),
    Case("rerun climbs out", "dag", ("rerun", "'u/../..' has a '.' or '..' part"), config=setting("rerun", "u/../..")),
    Case("rerun absolute", "dag", ("rerun", "'/tmp/x' is not a collection name"), config=setting("rerun", "/tmp/x")),
    Case("calib climbs out", "dag", ("collections.calib", "has a '.' or '..' part"),
         config=collections(calib="u/demo/../../calib")),
    Case("empty prerequisite", "dag", ("prerequisites.0",), config=setting("prerequisites", [""])),
    Case("empty pipeline name", "dag", ("steps.bias.pipeline",), config=steps(bias={"pipeline": ""})),
    # issue #29
    Case("spectralOffset wider than the detector", "dag",
         ("spectralOffset.b1", "5000 pixels", "4096 pixels along wavelength"),
         config=lambda c: c["spectralOffset"].update(b1=5000)),
    Case("memory of 10^30 MB", "dag", ("steps.bias.mem_mb", "greater than the maximum of 16777216"),
         config=steps(bias={"mem_mb": 10**30})),
    Case("threads beyond a node", "dag", ("steps.flat.threads", "greater than the maximum of 1024"),
         config=steps(flat={"threads": 100000})),
    Case("runtime of years", "dag", ("steps.dark.runtime", "greater than the maximum of 43200"),
         config=steps(dark={"runtime": 10**7})),
    Case("camera typo in cameras", "dag", ("config.yaml: cameras: r2 has no spectralOffset", "r2 for r1"),
         config=setting("cameras", ["b1", "r2"])),
    # issue #32
    Case("camera typo in cameras, every camera with an offset", "dag",
         ("config.yaml: cameras: b1, r2 are not the same arms on every spectrograph", "r2 for r1?"),
         config=lambda c: (c.update(cameras=["b1", "r2"]), c["spectralOffset"].update(b2=0, r2=3))),
    Case("open-ended epoch before another", "dag", ("epochs.run1", "has no end, so it overlaps epoch run2"),
         config=lambda c: c["epochs"].update(run1={"begin": "2025-03-01T00:00:00"},
                                             run2={"begin": "2025-04-01T00:00:00", "end": "2025-05-01T00:00:00"})),
]  # fmt: skip

HOSTILE = [
    Case("rerun with a shell command", "dag", ("rerun", "is not a collection name"),
         config=setting("rerun", "u/x; rm -rf ~")),
    Case("rerun with $(...)", "dag", ("rerun", "is not a collection name"), config=setting("rerun", "u/$(touch x)")),
    Case("rerun with a newline", "dag", ("rerun", "control character"), config=setting("rerun", "u/demo\n")),
    Case("rerun in unicode", "dag", ("rerun", "is not a collection name"), config=setting("rerun", "u/démo")),
    Case("instrument_name with quotes", "dag", ("instrument_name", "is not an instrument name"),
         config=setting("instrument_name", "PFS' OR '1'='1")),
    Case("instrument_name in unicode", "dag", ("instrument_name", "is not an instrument name"),
         config=setting("instrument_name", "PFŠ")),
    Case("input with a comma", "dag", ("collections.inputs.0", "is not a collection name"),
         config=collections(inputs=["PFS/defaults,PFS/raw/all"])),
    Case("input with $(...)", "dag", ("collections.inputs.0", "is not a collection name"),
         config=collections(inputs=["$(touch PWNED)"])),
    Case("input with ;", "dag", ("collections.inputs.1", "is not a collection name"),
         config=collections(inputs=["PFS/defaults", "x;id"])),
    Case("input in unicode", "dag", ("collections.inputs.0", "is not a collection name"),
         config=collections(inputs=["PFS/défauts"])),
    Case("calib with a space", "dag", ("collections.calib", "is not a collection name"),
         config=collections(calib="u/demo/my calib")),
    Case("extra_args with a newline", "dag", ("steps.bias.extra_args.0", "control character"),
         config=steps(bias={"extra_args": ["--pdb\nrm -rf ~"]})),
    Case("epoch name with a quote", "dag", ("epochs", "is not an epoch name"),
         config=lambda c: c["epochs"].update({"run1'": {"begin": "2026-01-01T00:00:00"}})),
    Case("table epoch with $(...)", "dag", ("bias.tsv: row 2", "is not an epoch name"),
         tables={"bias": tsv("epoch\tvisits", "$(id)\t100")}),
    Case("table visits with ;", "dag", ("bias.tsv: row 2", "visits must be N, A..B or A..B:S joined by ^"),
         tables={"bias": tsv("epoch\tvisits", "run1\t100;rm -rf ~")}),
    Case("table epoch in unicode", "dag", ("bias.tsv: row 2", "is not an epoch name"),
         tables={"bias": tsv("epoch\tvisits", "rün1\t100")}),
]  # fmt: skip

TABLES = [
    Case("comma-separated table", "dag", ("bias.tsv: row 1", "the table is comma-separated; use tabs"),
         tables={"bias": tsv("epoch,visits,comment", "run1,100..104,BIAS")}),
    Case("space-separated table", "dag", ("bias.tsv: row 1", "separated by spaces; use tabs"),
         tables={"bias": tsv("epoch visits", "run1 100..104")}),
    Case("two rows on one line", "dag", ("bias.tsv: row 2", "6 fields, but the header names 3 columns", "two rows"),
         tables={"bias": tsv("epoch\tvisits\tcomment", "run1\t100..102\tBIAS\trun1\t103..104\tBIAS")}),
    Case("rows numbered with comments", "dag", ("bias.tsv: row 5 (column visits)", "bad visit range '104..100'"),
         tables={"bias": tsv("# biases", "epoch\tvisits", "# first night", "", "run1\t104..100")}),
    Case("rows numbered with CRLF", "dag", ("bias.tsv: row 3 (column visits)",),
         tables={"bias": "epoch\tvisits\r\n# x\r\nrun1\t9..1\r\n"}),
    Case("commented header", "dag", ("bias.tsv", "missing column 'epoch'"),
         tables={"bias": tsv("#epoch\tvisits", "run1\t100..104")}),
    Case("missing visits column", "dag", ("bias.tsv", "missing column 'visits'"),
         tables={"bias": tsv("epoch\tcomment", "run1\tx")}),
    Case("extra column", "dag", ("bias.tsv", "unexpected column(s) 'colour'"),
         tables={"bias": tsv("epoch\tvisits\tcolour", "run1\t100\tred")}),
    Case("column without a name", "dag", ("bias.tsv: row 1", "column 2 of the header has no name"),
         tables={"bias": tsv("epoch\t\tvisits", "run1\t\t100")}),
    Case("column twice", "dag", ("bias.tsv: row 1", "'visits' appear twice"),
         tables={"bias": tsv("epoch\tvisits\tvisits", "run1\t100\t101")}),
    Case("header only", "dag", ("bias.tsv", "table has no rows"), tables={"bias": tsv("epoch\tvisits")}),
    Case("blank file", "dag", ("bias.tsv", "table is empty"), tables={"bias": "\n\n"}),
    Case("not UTF-8", "dag", ("bias.tsv", "not UTF-8 text"),
         tables={"bias": b"epoch\tvisits\tcomment\nrun1\t100\t\xe9t\xe9\n"}),
    Case("visits with a dash", "dag", ("bias.tsv: row 2: visits", "'10-12' is not a visit list", "joined by ^"),
         tables={"bias": tsv("epoch\tvisits", "run1\t10-12")}),
    Case("visits with commas", "dag", ("bias.tsv: row 2: visits", "'100,101' is not a visit list"),
         tables={"bias": tsv("epoch\tvisits", "run1\t100,101")}),
    Case("empty visits", "dag", ("bias.tsv: row 2: visits", "'' is not a visit list"),
         tables={"bias": tsv("epoch\tvisits\tcomment", "run1\t\tBIAS")}),
    Case("zero stride", "dag", ("bias.tsv: row 2 (column visits)", "stride < 1"),
         tables={"bias": tsv("epoch\tvisits", "run1\t100..104:0")}),
    Case("unknown epoch", "dag", ("bias.tsv: row 2", "epoch 'run9' is not in config epochs"),
         tables={"bias": tsv("epoch\tvisits", "run9\t100")}),
    Case("unknown camera", "dag", ("bias.tsv: row 2: cameras", "'z1' is not a list of cameras"),
         tables={"bias": tsv("epoch\tvisits\tcameras", "run1\t100\tz1")}),
    Case("cameras with a space", "dag", ("bias.tsv: row 2: cameras", "'b1, r1' is not a list of cameras"),
         tables={"bias": tsv("epoch\tvisits\tcameras", "run1\t100\tb1, r1")}),
    Case("camera not configured", "dag", ("bias.tsv: row 2 (column cameras)", "camera(s) n1 not in config"),
         tables={"bias": tsv("epoch\tvisits\tcameras", "run1\t100\tn1", "run1\t101\t")}),
    Case("visit selected twice", "dag", ("bias.tsv: row 3", "visit 104 is already selected in row 2"),
         tables={"bias": tsv("epoch\tvisits", "run1\t100..104", "run1\t104")}),
    Case("camera without visits", "dag", ("bias.tsv", "no visits for epoch run1 and camera r1"),
         tables={"bias": tsv("epoch\tvisits\tcameras", "run1\t100\tb1")}),
    Case("bootstrap with one visit", "dag", ("bootstrap.tsv", "bootstrap needs exactly two visits"),
         tables={"bootstrap": tsv("epoch\tvisits", "run1\t108")}),
]  # fmt: skip

RANGES = [
    Case("range of a hundred million", "dag", ("bias.tsv: row 2 (column visits)", "selects 100,000,000 visits"),
         tables={"bias": tsv("epoch\tvisits", "run1\t1..100000000")}),
    Case("range end typo", "dag", ("bias.tsv: row 2 (column visits)", "'300..1000000' selects 999,701 visits"),
         tables={"bias": tsv("epoch\tvisits", "run1\t300..1000000")}),
    Case("items adding up", "dag", ("selects 12,002 visits",),
         tables={"bias": tsv("epoch\tvisits", "run1\t1..6000^7000..13001")}),
    Case("rows adding up", "dag", ("bias.tsv", "12,000 visits for epoch run1 and b1, more than 10,000 in a job"),
         tables={"bias": tsv("epoch\tvisits", "run1\t1..6000", "run1\t7001..13000")}),
    Case("visit beyond 32 bits", "dag", ("bias.tsv: row 2 (column visits)", "beyond the largest visit number"),
         tables={"bias": tsv("epoch\tvisits", "run1\t99999999999")}),
    Case("range beyond 32 bits", "dag", ("beyond the largest visit number",),
         tables={"bias": tsv("epoch\tvisits", "run1\t100..99999999999:100000000")}),
    Case("reversed range", "dag", ("bias.tsv: row 2 (column visits)", "bad visit range '12..5'"),
         tables={"bias": tsv("epoch\tvisits", "run1\t12..5")}),
    Case("dangling ^", "dag", ("bias.tsv: row 2: visits", "is not a visit list"),
         tables={"bias": tsv("epoch\tvisits", "run1\t100..104^")}),
    Case("three dots", "dag", ("bias.tsv: row 2: visits", "'100...104' is not a visit list"),
         tables={"bias": tsv("epoch\tvisits", "run1\t100...104")}),
    Case("negative visit", "dag", ("bias.tsv: row 2: visits", "'-5' is not a visit list"),
         tables={"bias": tsv("epoch\tvisits", "run1\t-5")}),
]  # fmt: skip

PROFILES_HEADER = "epoch\tvisits\tgroup\trole"
GROUPS = [
    Case("profile row without a role", "dag", ("fiberProfiles.tsv: row 2", "need a group number and a role"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER, "run1\t116\t0\t")}),
    Case("profile role in words", "dag", ("fiberProfiles.tsv: row 2: role", "'lit' is not one of"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER, "run1\t116\t0\tlit")}),
    Case("profile group in words", "dag", ("fiberProfiles.tsv: row 2: group", "'one' is not a group number"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER, "run1\t116\tone\tbright")}),
    Case("negative profile group", "dag", ("fiberProfiles.tsv: row 2: group", "'-1' is not a group number"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER, "run1\t116\t-1\tbright")}),
    Case("profile group gap", "dag", ("fiberProfiles.tsv", "groups must be numbered 0..N-1, got [0, 2]"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER, "run1\t116\t0\tbright", "run1\t119\t2\tbright")}),
    Case("profile group of darks only", "dag", ("fiberProfiles.tsv", "group 0 has no bright visits"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER, "run1\t118\t0\tdark")}),
    Case("darks in some groups", "dag", ("fiberProfiles.tsv", "either every fiberProfiles group has dark visits"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER, "run1\t116\t0\tbright", "run1\t118\t0\tdark",
                                      "run1\t119\t1\tbright")}),
    Case("profile table without groups", "dag", ("fiberProfiles.tsv: row 2", "need a group number and a role"),
         tables={"fiberProfiles": tsv("epoch\tvisits", "run1\t116..117")}),
    Case("groups in the bias table", "dag", ("bias.tsv", "unexpected column(s) 'group', 'role'"),
         tables={"bias": tsv(PROFILES_HEADER, "run1\t100..104\t0\tbright")}),
    Case("profile groups differ per camera", "dag",
         ("fiberProfiles.tsv: row 2", "group 0 has other visits for r1 than for b1"),
         tables={"fiberProfiles": tsv(PROFILES_HEADER + "\tcameras", "run1\t116..117\t0\tbright\tb1",
                                      "run1\t119..120\t0\tbright\tr1", "run1\t118\t0\tdark\t")}),
]  # fmt: skip

ENVIRONMENT = [
    Case("datastore missing", "onstart", ("datastore", "does not exist"),
         config=setting("datastore", "/nonexistent/repo")),
    Case("datastore not a repository", "onstart", ("datastore", "is not a Butler repository"),
         config=setting("datastore", str(PROJECT / "config"))),
    Case("demo over an existing repository", "onstart",
         ("demo.enabled", "an existing repository the demo did not build"),
         config=lambda c: c.update(demo={"enabled": True}, datastore=str(PROJECT / "tests/postgres"))),
    Case("pipetask mistyped", "onstart", ("executables.pipetask", "'pipetsk' is not found on PATH"),
         config=lambda c: c["executables"].update(pipetask="pipetsk")),
    Case("script path missing", "onstart", ("executables.defineFiberProfilesInputs", "is not an executable file"),
         config=lambda c: c["executables"].update(defineFiberProfilesInputs="/nonexistent/define.py")),
    Case("pipelines_dir missing", "onstart",
         ("pipelines_dir", "pipeline /nonexistent/bias.yaml of step bias does not exist"),
         config=setting("pipelines_dir", "/nonexistent")),
    Case("pipelines_dir variable unset", "onstart", ("pipelines_dir", "$PFSCALIB_UNSET_DIR is not set"),
         config=setting("pipelines_dir", "$PFSCALIB_UNSET_DIR/pipelines")),
    Case("pipeline file mistyped", "onstart", ("steps.dark.pipeline", "dakr.yaml of step dark does not exist"),
         config=steps(dark={"pipeline": "dakr.yaml"})),
    Case("-c field mistyped", "onstart",
         ("steps.bootstrap.config", "-c bootstrap:spectralOfset=3", "no attribute spectralOfset"),
         config=steps(bootstrap={"config": ["bootstrap:spectralOfset=3"]})),
    Case("-c label mistyped", "onstart", ("steps.bootstrap.config", "no tasks labeled 'bootstrapp'"),
         config=steps(bootstrap={"config": ["bootstrapp:spectralOffset=3"]})),
    Case("-c value of the wrong type", "onstart", ("steps.flat.config", "doFlat", "incorrect type"),
         config=steps(flat={"config": ["isr:doFlat=maybe"]})),
    Case("camera -c field mistyped", "onstart", ("steps.flat.camera_config.r1", "no attribute doFlatt"),
         config=steps(flat={"camera_config": {"r1": ["isr:doFlatt=False"]}})),
    Case("arm -c label mistyped", "onstart",
         ("steps.detectorMap.camera_config.b", "no tasks labeled 'fitDetectorMapp'"),
         config=steps(detectorMap={"camera_config": {"b": ["fitDetectorMapp:fitDetectorMap.order=3"]}})),
    Case("connection override mistyped", "onstart", ("steps.detectorMap.config", "calibDetectorMapp"),
         config=steps(detectorMap={"config": ["measureCentroids:connections.calibDetectorMapp=x"]})),
    Case("clean typo", "onstart", ("steps.bias.clean", "biasProcc: not produced by bias.yaml"),
         config=steps(bias={"clean": ["biasProcc"]})),
    Case("clean another step's type", "onstart", ("steps.bias.clean", "darkProc: not produced by bias.yaml"),
         config=steps(bias={"clean": ["darkProc"]})),
    # issue #29
    Case("instrument class mistyped", "onstart",
         ("instrument", "'lsst.obs.pfs.PrimeFocusSpectrograp' cannot be imported"),
         config=setting("instrument", "lsst.obs.pfs.PrimeFocusSpectrograp")),
    Case("instrument not an Instrument", "onstart", ("instrument", "is not an lsst.pipe.base Instrument class"),
         config=setting("instrument", "pfscalib.plan.config.Settings")),
    Case("extra_args pipetask does not take", "onstart",
         ("steps.bias.extra_args", "refused by pipetask run", "No such option '--clobber-output'"),
         config=steps(bias={"extra_args": ["--clobber-output"]})),
]  # fmt: skip

REGISTRY = [
    Case("instrument not registered", "check", ("instrument 'PFX' (config instrument_name) is not registered",),
         config=setting("instrument_name", "PFX")),
    Case("input collection typo", "check", ("input collection 'PFS/defaultz' does not exist",),
         config=collections(inputs=["PFS/defaultz"])),
    Case("calib collection typo", "check", ("'u/demo/calb' (config collections) does not exist", "u/demo/calib"),
         config=collections(calib="u/demo/calb")),
    Case("bootstrap collection typo", "check", ("'u/demo/bootstrp' (config collections) does not exist",),
         config=collections(bootstrap="u/demo/bootstrp")),
    Case("calib chain is a CALIBRATION collection", "check", ("'u/demo/calib/bias' exists as a CALIBRATION",),
         config=collections(calib="u/demo/calib/bias", bootstrap="u/demo/bootstrap")),
    Case("prerequisite missing", "check", ("prerequisite nirDark is not certified for camera b1",),
         config=setting("prerequisites", ["defects", "nirDark"])),
    Case("visit not in the registry", "check", ("bias.tsv: row 2: visit 999", "not in the registry"),
         tables={"bias": tsv("epoch\tvisits", "run1\t100..104^999")}),
    Case("biases as darks", "check", ("dark.tsv: row 2: visit 100", "is a bias"),
         tables={"dark": tsv("epoch\tvisits", "run1\t100..102")}),
    Case("bootstrap of two quartz", "check", ("bootstrap needs a quartz and an arc, got a quartz, a quartz",),
         tables={"bootstrap": tsv("epoch\tvisits", "run1\t108^109")}),
    Case("dithered fiberNorms quartz", "check", ("fiberNorms.tsv: row 2: visit 110", "has dither 675"),
         tables={"fiberNorms": tsv("epoch\tvisits", "run1\t110..111")}),
    Case("another epoch's visits", "check", ("bias.tsv: row 2: visit 200", "outside the epoch's validity"),
         tables={"bias": tsv("epoch\tvisits", "run1\t200..204")}),
    Case("camera without raws", "check", ("has no raw for n3",),
         config=lambda c: c.update(cameras=["b1", "n3"], spectralOffset={"b1": -10, "n3": 0})),
    Case("register: calib collection typo", "register", ("'u/demo/calb' (config collections) does not exist",),
         config=collections(calib="u/demo/calb")),
    Case("register: bootstrap collection is a chain", "register", ("'u/demo/calib' exists as a CHAINED",),
         config=collections(calib="u/demo/calib2", bootstrap="u/demo/calib")),
]  # fmt: skip

CASES = {"config": CONFIG, "hostile": HOSTILE, "tables": TABLES, "ranges": RANGES, "groups": GROUPS,
         "environment": ENVIRONMENT, "registry": REGISTRY}  # fmt: skip
ALL = [pytest.param(case, id=f"{family}: {case.id}") for family, cases in CASES.items() for case in cases]


def write_case(site: Site, tmp_path: Path, case: Case) -> list[str]:
    """The case's config file (and tables) in its own directory; the --configfile values."""
    config = copy.deepcopy(site.config)
    (tmp_path / "visits").mkdir()
    for step, path in config["visits"].items():
        target = tmp_path / "visits" / Path(path).name
        shutil.copy(path, target)
        config["visits"][step] = str(target)
    for step, text in case.tables.items():
        target = Path(config["visits"][step])
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    if case.config:
        case.config(config)
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    (tmp_path / "config.yaml").write_text(case.yaml_text(text) if case.yaml_text else text)
    for extra in case.extra_files:
        (tmp_path / extra).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / extra).write_text("{}\n")
    return ["config.yaml", *case.extra_files]


def refusal(site: Site, case: Case, capsys) -> tuple[str, str]:
    """(stage, line) where the workflow refuses the case: what the Snakefile, its onstart and the
    check/register jobs do, in-process, in the case's directory (the current one)."""
    files = write_case(site, Path.cwd(), case)
    try:
        wf = preflight.load(files, load_configfile(files[0]))  # Snakemake's own reader, then the Snakefile's
    except ConfigError as error:
        return "dag", f"pfscalib: {error}"
    try:
        preflight.environment(wf, cache=str(site.root / "preflight"))
    except ConfigError as error:
        return "onstart", f"pfscalib: {error}"
    command = wf.commands.check("run1", "check.json") if case.stage == "check" else wf.commands.register()
    rc, lines = cli_line(command, capsys)
    assert rc != 0, f"{case.id}: accepted by every stage"
    assert len(lines) == 1, lines
    return case.stage, lines[0]


@pytest.mark.parametrize("case", ALL)
def test_bad_input_is_one_line_before_any_job(site, case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PFSCALIB_UNSET_DIR", raising=False)
    before = fingerprint(site.repo)
    stage, line = refusal(site, case, capsys)
    assert stage == case.stage, f"refused at {stage}, expected at {case.stage}: {line}"
    assert "\n" not in line and line.startswith("pfscalib: ")
    for text in case.expect:
        assert text in line, line
    assert "Traceback" not in line and "^[" not in line  # no regular expression shown
    assert fingerprint(site.repo) == before
    assert not (tmp_path / "check.json").exists()  # the check did not pass: no job can start


# ---------------------------------------------------------------- accepted forms (not errors)
ACCEPTED = [
    pytest.param(lambda t: t.replace("'2025-03-01T00:00:00'", "2025-03-01T00:00:00"), {}, id="unquoted dates"),
    pytest.param(lambda t: t.replace("'2025-03-01T00:00:00'", "2025-03-01"), {}, id="unquoted day"),
    pytest.param(lambda t: t.replace("run1:", "18:"), {"*": lambda s: s.replace("run1", "18")}, id="numeric epoch"),
    pytest.param(None, {"*": lambda s: s.replace("\n", "\t\n")}, id="trailing tabs (spreadsheet)"),
    pytest.param(None, {"*": lambda s: "\ufeff# exported\n" + s.replace("\n", "\r\n")}, id="BOM, CRLF, comment"),
]


@pytest.mark.parametrize("edit,tables", ACCEPTED)
def test_forms_a_person_writes_are_accepted(site, tmp_path, monkeypatch, edit, tables):
    """What YAML or a spreadsheet makes of valid input is read as meant, not refused."""
    monkeypatch.chdir(tmp_path)
    files = write_case(site, tmp_path, Case("ok", "none", ()))
    text = Path(files[0]).read_text()
    Path(files[0]).write_text(edit(text) if edit else text)
    for path in (tmp_path / "visits").iterdir():
        if "*" in tables:
            path.write_text(tables["*"](path.read_text()))
    wf = preflight.load(files, load_configfile(files[0]))
    epoch_name = next(iter(wf.epochs))
    assert wf.validity("bias", epoch_name).begin.startswith("2025-03-01")
    assert wf.selections[("bias", epoch_name, "b1")].visits == (100, 101, 102, 103, 104)


# ---------------------------------------------------------------- the console, through snakemake
CONSOLE = [
    (["-n"], Case("dag: duplicate key", "dag", ("key 'rerun' appears twice",), yaml_text=lambda t: t + "rerun: u/x\n")),
    ([], Case("onstart: -c field mistyped", "onstart", ("no attribute spectralOfset",),
              config=steps(bootstrap={"config": ["bootstrap:spectralOfset=3"]}))),
    ([], Case("check: calib collection typo", "check", ("'u/demo/calb' (config collections)",),
              config=collections(calib="u/demo/calb"))),
]  # fmt: skip


@pytest.mark.parametrize("args,case", [pytest.param(*c, id=c[1].id) for c in CONSOLE])
def test_the_line_reaches_the_console_before_any_step_job(site, tmp_path, args, case):
    files = write_case(site, tmp_path, case)
    before = fingerprint(site.repo)
    proc = snakemake(tmp_path, *args, "--configfile", files[0], check=False, rerun_incomplete=False)
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if line.startswith("pfscalib: ")]
    assert proc.returncode != 0 and len(lines) == 1, out[-3000:]
    assert all(text in lines[0] for text in case.expect), lines
    assert "Traceback" not in out
    assert fingerprint(site.repo) == before
    # job logs
    logs = tmp_path / "logs"
    jobs = list(logs.rglob("*.log")) if logs.exists() else []
    assert all(p.name == "check_visits.log" for p in jobs) and bool(jobs) == (case.stage == "check"), jobs
