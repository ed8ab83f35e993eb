"""Issue #32: the dry run shows every action. Each step job's certification and cleaning, hidden behind the
options of `pfscalib job`, are shown by `snakemake -n -p` as the guide's commands (comment lines before the
executed command, built from the same JobRequest), and `pfscalib plan --guide` prints the whole run as the
guide's command sequence."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest
import yaml

from pfscalib.plan.commands import guide_line
from pfscalib.plan.contract import GuideCommand, JobRequest
from pfscalib.plan.steps import STEP_NAMES
from pfscalib.plan.workflow import Workflow

from conftest import PROJECT, run

SITE = "config/pfs.example.yaml"
CERTIFY = ("butler certify-calibrations ", "certifyDetectorMaps.py ")


def request_of(job_line: str) -> JobRequest:
    """The JobRequest a `(pfscalib job ... -- pipetask run ... -j N) > LOG 2>&1` line carries, read back
    with the options the job itself parses."""
    argv = shlex.split(job_line.removeprefix("(").split(") > ")[0])
    parser = argparse.ArgumentParser()
    JobRequest.add_arguments(parser)
    return JobRequest.from_args(parser.parse_args(argv[2 : argv.index("--")]))


@pytest.fixture(scope="module")
def dry_run() -> str:
    proc = run(["snakemake", "-n", "-p", "--cores", "2", "--configfile", SITE], cwd=PROJECT, check=True)
    return proc.stdout


def step_jobs(output: str) -> list[tuple[str, list[str], str]]:
    """(rule, comment lines, executed line) of every step job of a dry run."""
    jobs = []
    for block in output.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        if rule not in STEP_NAMES:
            continue
        shell = block.split("Shell command: ", 1)[1].split("\n\n", 1)[0].strip().splitlines()
        jobs.append((rule, shell[:-1], shell[-1]))
    return jobs


def test_every_step_job_shows_its_certification_and_cleaning(dry_run):
    jobs = step_jobs(dry_run)
    assert len(jobs) == 8 * 6 + 4 * 4 + 3  # as test_dry_run_of_site_config_needs_no_datastore counts them
    for rule, comments, executed in jobs:
        assert executed.startswith("(pfscalib job ") and executed.endswith("2>&1"), executed
        request = request_of(executed)
        assert request.step == rule
        # one source: the comment lines are the request's own guide commands
        assert comments == [guide_line(c, "then") for c in request.guide()]
        assert all(c.startswith("# then") for c in comments)
        certify = next(c for c in comments if any(k in c for k in CERTIFY))
        # into which CALIBRATION collection, over which validity range, of which dataset type
        words = shlex.split(certify.split(": ", 1)[1])
        assert request.calib in words and request.chain in words
        assert words[words.index("--begin-date") + 1] == request.begin_date == "2000-01-01T00:00:00"
        assert words[words.index("--end-date") + 1] == request.end_date == "2050-12-31T23:59:59"
        if rule == "detectorMap":  # the guide certifies detectorMaps with certifyDetectorMaps.py
            assert words[0] == "certifyDetectorMaps.py" and request.copy_as == "detectorMap_calib"
        else:
            assert words[:2] == ["butler", "certify-calibrations"] and words[5] == request.dataset_type
        # what is cleaned: the chain's RUNs (a glob, quoted for the shell) and the intermediate types
        clean = next(c for c in comments if "butlerCleanRun.py" in c)
        assert f"'{request.chain}/*'" in clean
        words = shlex.split(clean.split(": ", 1)[1])
        assert request.clean and words[3 : 3 + len(request.clean)] == list(request.clean)
        # the replaced certification of this camera (or arm) only, and only if there is one
        decertify = comments[0]
        assert "butlerDecertify.py" in decertify and "if the quality gate passes" in decertify
        assert f"arm={request.arm}" in decertify


def test_the_comment_lines_are_skipped_by_bash(dry_run):
    """The shell string is comments, then the command: bash runs only the command."""
    _, comments, _ = step_jobs(dry_run)[0]
    script = "\n".join([*comments, "echo ran"])
    proc = run(["bash", "-euo", "pipefail", "-c", script], check=True)
    assert proc.stdout == "ran\n"


def test_the_executed_command_is_the_job_command(dry_run, monkeypatch):
    """The executed line is byte for byte the job's command with -j, as before the comments came."""
    monkeypatch.chdir(PROJECT)
    wf = Workflow(yaml.safe_load((PROJECT / SITE).read_text()), SITE)
    for rule, _, executed in step_jobs(dry_run):
        request = request_of(executed)
        unit = request.arm + ("" if request.spectrograph is None else str(request.spectrograph))
        threads = min(wf.job_threads(rule, request.epoch, unit), 2)  # Snakemake caps threads at --cores
        log = f"logs/{request.epoch}/{rule}/{unit}.log"
        assert executed == f"({wf.commands.job(rule, request.epoch, unit)} -j {threads}) > {log} 2>&1"


def test_plan_guide_prints_the_run_as_the_guides_commands():
    proc = run(["pfscalib", "plan", "--guide", "--config", SITE], cwd=PROJECT, check=True)
    lines = proc.stdout.splitlines()
    pipetasks = [i for i, line in enumerate(lines) if line.startswith("pipetask run ")]
    certifies = [i for i, line in enumerate(lines) if line.startswith(CERTIFY)]
    cleans = [i for i, line in enumerate(lines) if line.startswith("butlerCleanRun.py ")]
    assert len(pipetasks) == len(certifies) == len(cleans) == 8 * 6 + 4 * 4 + 3  # one certify per job
    # in run order: each job's pipetask, then its certification, then its cleaning
    for p, c, k in zip(pipetasks, certifies, cleans, strict=True):
        assert p < c < k
        chain = re.search(r" -o (\S+) ", lines[p]).group(1)
        assert shlex.split(lines[c])[3 if lines[c].startswith("butler ") else 2] == chain
        assert shlex.split(lines[k])[2] == f"{chain}/*"
    # -j: the job's threads, capped at the run's cores as Snakemake does
    assert lines[pipetasks[0]].endswith(" -j 2")
    wider = run(["pfscalib", "plan", "--guide", "--cores", "64", "--config", SITE], cwd=PROJECT, check=True)
    assert re.search(r"^pipetask run .* -o u/pfsuser/run18/bias/b1 .* -j 11$", wider.stdout, re.M)
    # the steps in the guide's order, the fibre-profile inputs defined before fiberProfiles
    steps = [re.search(r" -o u/pfsuser/run18/(\w+)/", lines[p]).group(1) for p in pipetasks]
    assert steps == sorted(steps, key=STEP_NAMES.index)
    define = next(i for i, line in enumerate(lines) if line.startswith("defineFiberProfilesInputs.py "))
    assert pipetasks[steps.index("detectorMap")] < define < pipetasks[steps.index("fiberProfiles")]
    assert sum(line.startswith("certifyDetectorMaps.py ") for line in lines) == steps.count("detectorMap") == 12


def test_guide_commands_of_an_arm_an_open_range_and_an_awkward_value():
    """A per-arm job names no spectrograph; an unbounded range has no --end-date; a value with a newline
    or quote stays on its one comment line, quoted as a shell needs."""
    request = JobRequest(
        repo="/data/my repo",
        chain="u/x/run18/fiberNorms/b",
        dataset_type="fiberNorms_calib",
        calib="u/x/calib/fiberNorms_calib",
        begin_date="2025-01-01T00:00:00",
        arm="b",
        clean=("postISRCCD",),
        step="fiberNorms",
        epoch="run18",
        state="s.json",
        sentinel="t.json",
    )
    certify = request.guide()[1]
    assert certify.argv[-2:] == ["--begin-date", "2025-01-01T00:00:00"] and "--end-date" not in certify.argv
    clean = request.guide()[2]
    assert clean.argv[-3:] == ["--id", "instrument=PFS", "arm=b"]
    assert guide_line(clean, "then") == (
        "# then: butlerCleanRun.py '/data/my repo' 'u/x/run18/fiberNorms/b/*' postISRCCD --id instrument=PFS arm=b"
    )
    line = guide_line(GuideCommand(["butler", "x", "a\nb; rm -rf /"], "it holds"), "then")
    assert "\n" not in line and line.startswith("# then, if it holds: butler x ")


def test_guide_commands_of_a_detector_map_and_of_the_offset_scan_collections():
    """A detectorMap is certified as the guide does (certifyDetectorMaps.py, its copy decertified as
    detectorMap_calib); a bootstrap with spectralOffset auto removes its scan collections afterwards."""
    base = {"repo": "R", "begin_date": "B", "end_date": "E", "arm": "r", "spectrograph": 2, "epoch": "e"}
    base |= {"state": "s", "sentinel": "t"}
    dmap = JobRequest(
        chain="u/x/e/detectorMap/r2", dataset_type="detectorMap_candidate", calib="u/x/calib/detectorMap_calib",
        copy_as="detectorMap_calib", step="detectorMap", **base,
    )  # fmt: skip
    decertify, certify = dmap.guide()[:2]
    assert decertify.argv[:4] == ["butlerDecertify.py", "R", "u/x/calib/detectorMap_calib", "detectorMap_calib"]
    assert certify.argv == [
        "certifyDetectorMaps.py", "R", "u/x/e/detectorMap/r2", "u/x/calib/detectorMap_calib", "--instrument", "PFS",
        "--begin-date", "B", "--end-date", "E",
    ]  # fmt: skip
    scans = ("u/x/e/bootstrapIsr/r2*", "u/x/e/bootstrapScan/r2/*")
    boot = JobRequest(
        chain="u/x/e/bootstrap/r2", dataset_type="detectorMap_bootstrap", calib="u/x/bootstrap", step="bootstrap",
        clean_collections=scans, **base,
    )  # fmt: skip
    removals = [c.argv[1:4] for c in boot.guide()[2:]]
    assert removals == [[verb, "R", glob] for glob in scans for verb in ("remove-collections", "remove-runs")]
