"""Issue #3: the workflow on the demo, driven by the real snakemake CLI.

One module-scoped run (demo: enabled, so the workflow builds its own repo as `make demo` does) on the demo's
four cameras and both epochs; the tests after it inspect, rerun and rebuild it in order. Issue #32 (1), status
knows what is stale, is checked on it too: b1's bias rebuilt alone, then what status and `snakemake -n` say,
then the command status prints.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lsst.daf.butler import Butler

from pfscalib.plan import paths
from pfscalib.plan.steps import STEP_NAMES, STEPS

from conftest import PROJECT, outside_dump, run
from helpers import certifications, snakemake, workdir_config
from reportcheck import check_pictures_render, first_page, report_results

CAMERAS = yaml.safe_load((PROJECT / "config/config.yaml").read_text())["cameras"]  # make demo's: b1 r1 b2 r2


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = workdir_config(tmp_path_factory.mktemp("workflow"), cameras=CAMERAS)
    snakemake(workdir, "results/demo/repo/demo.json")  # the site as built, before the workflow runs
    (workdir / "site-before.json").write_text(json.dumps(outside_dump(workdir / "results/demo/repo")))
    snakemake(workdir)
    return workdir


# ------------------------------------------------------------------ the README's newcomer path
README_MARK = "<!-- newcomer:"
# Links that make the finished demo work directory look like a clone in which `make demo` has run.
CLONE_LINKS = ("Snakefile", "rules", "report", "profiles", "Makefile")


def readme_commands() -> list[tuple[str, str]]:
    """(setup, command) for every line of the README's marked blocks: `source` lines are the block's
    setup, typed once in a new shell before the block's other commands."""
    lines = (PROJECT / "README.md").read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith(README_MARK):
            assert lines[i + 1] == "```", f"README line {i + 2}: a fenced block must follow the mark"
            end = lines.index("```", i + 2)
            block = lines[i + 2 : end]
            setup = "\n".join(c for c in block if c.startswith("source "))
            out += [(setup, c) for c in block if c.strip() and not c.startswith("source ")]
    return out


def clean_environment() -> dict[str, str]:
    """A new login shell's environment: no venv on PATH; PYTHONPATH only where a developer's worktree
    set it to make its own package win over the venv's editable install."""
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in ("PYTHONPATH", "TMPDIR") if k in os.environ})
    return env


def check_summary(workdir: Path, out: str) -> None:
    assert [ln for ln in out.splitlines() if "all 7 calibrations certified" in ln] == [
        "  run1 [2025-03-01, 2025-04-01): pass (sp1 pass, sp2 pass); b1 r1 b2 r2: all 7 calibrations certified",
        "  run2 [2025-04-01, 2025-05-01): pass (sp1 pass, sp2 pass); b1 r1 b2 r2: all 7 calibrations certified",
    ]
    assert "Report: snakemake --report report.html" in out


def check_status(workdir: Path, out: str) -> None:
    lines = out.splitlines()
    lines = lines[lines.index(next(ln for ln in lines if ln.startswith("epoch "))) :]  # after make's echo
    assert lines[0].split() == ["epoch", "camera", *STEP_NAMES] and max(map(len, lines)) <= 100
    assert [ln.split() for ln in lines[1 : 1 + 2 * len(CAMERAS)]] == [
        [e, c, *["pass"] * 7] for e in ("run1", "run2") for c in CAMERAS
    ]


def check_nothing_to_do(workdir: Path, out: str) -> None:
    assert "Nothing to be done" in out


def check_forced_plan(workdir: Path, out: str) -> None:
    assert len([ln for ln in out.splitlines() if "pfscalib job" in ln]) == 2 * (6 * len(CAMERAS) + 2)
    assert "This was a dry-run" in out


def check_bias_table(workdir: Path, out: str) -> None:
    text = out or (workdir / "bias.tsv").read_text()
    assert text.splitlines()[:2] == ["epoch\tvisits\tcomment", "run1\t100..104\t5 bias, target bias, 2025-03-10"]
    assert len(text.splitlines()) == 2  # run2's bias visits are outside run1's range


def check_quartz_table(workdir: Path, out: str) -> None:
    """fiberNorms' undithered quartz, without the fibre-profile frames (116..127, also at dither 0)."""
    assert [line.split("\t")[:3] for line in out.splitlines()[1:]] == [["run1", "108..109", "b1,r1"]], out


def check_collections(workdir: Path, out: str) -> None:
    """The chain and its six CALIBRATION collections, short enough to read (not the ~800 RUNs under u/demo)."""
    rows = [ln.split() for ln in out.splitlines()[2:] if ln.strip()]
    assert rows[0] == ["u/demo/calib", "CHAINED"] and len(rows) == 7, out
    assert {r[0] for r in rows[1:]} == {
        f"u/demo/calib/{t}"
        for t in ("bias", "dark", "fiberFlat", "detectorMap_calib", "fiberProfiles", "fiberNorms_calib")
    }


def check_report(workdir: Path, out: str) -> None:
    assert "report.html" in out and (workdir / "report.html").stat().st_size > 100_000


# What each README command (as written, without its comment) must show; a README command without a
# check here fails the test.
README_CHECKS = {
    "pfscalib summary": check_summary,
    "pfscalib status": check_status,
    "make status": check_status,
    "snakemake -n -p": check_nothing_to_do,
    "snakemake -n -p -F": check_forced_plan,
    "pfscalib select-visits --epoch run1 --kind bias": check_bias_table,
    "pfscalib select-visits --epoch run1 --kind bias > bias.tsv": check_bias_table,
    "pfscalib select-visits --epoch run1 --where \"visit.target_name = 'flat' AND visit.dither = 0\" --cameras b1,r1": (
        check_quartz_table
    ),
    "butler query-collections results/demo/repo u/demo/calib --chains TREE": check_collections,
    "make report": check_report,
}


@pytest.fixture(scope="module")
def readme_run(demo_run):
    """Every newcomer command of the README, each in a new shell with a clean environment, in the demo's
    finished work directory (made to look like a clone): {command: (returncode, stdout + stderr)}."""
    links = [demo_run / name for name in (*CLONE_LINKS, ".venv")]
    for name in CLONE_LINKS:
        (demo_run / name).symlink_to(PROJECT / name)
    (demo_run / ".venv").symlink_to(Path(sys.prefix))  # the venv `make demo` made

    def shell(setup: str, command: str) -> tuple[str, tuple[int, str]]:
        proc = subprocess.run(
            ["bash", "-c", f"{setup}\n{command}"], cwd=demo_run, env=clean_environment(), capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        return command, (proc.returncode, proc.stdout + proc.stderr)

    try:  # two at a time (they only read the repository and Snakemake's records): the time budget
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            results = dict(pool.map(lambda line: shell(*line), readme_commands()))
    finally:
        for link in links:  # later tests copy the directory: no links to the project or the venv
            link.unlink()
    return results


def test_readme_newcomer_commands_work_as_written(demo_run, readme_run):
    assert len(readme_run) >= 8
    for command, (returncode, out) in readme_run.items():
        assert returncode == 0, f"README command {command!r} failed ({returncode}):\n{out[-3000:]}"
        bare = command.split(" #")[0].strip()
        assert bare in README_CHECKS, f"README command {bare!r} has no check in README_CHECKS"
        README_CHECKS[bare](demo_run, out)


def test_the_site_s_collections_are_untouched_by_a_whole_run(demo_run):
    """PFS/calib, its children, PFS/defaults and the raws: the same chains and certifications after the run."""
    before = json.loads((demo_run / "site-before.json").read_text())
    after = json.loads(json.dumps(outside_dump(demo_run / "results/demo/repo")))
    assert {name: after.get(name) for name in before} == before
    # the one new collection outside the rerun: where defineFiberProfilesInputs.py defines profiles_runs
    assert set(after) - set(before) == {"PFS/fiberProfilesInputs"}


def test_demo_certifies_every_calibration(demo_run):
    repo = demo_run / "results/demo/repo"
    certs = certifications(repo)
    for step in STEP_NAMES:
        units = ["b", "r"] if STEPS[step].per_arm else CAMERAS
        for epoch, (begin, end) in {"run1": ("2025-03-01", "2025-04-01"), "run2": ("2025-04-01", "2025-05-01")}.items():
            for unit in units:
                sentinel = json.loads((demo_run / f"results/certified/{epoch}/{step}/{unit}.json").read_text())
                data_id = tuple(sorted(sentinel["dataId"].items()))
                key = (STEPS[step].certified_as, data_id, sentinel["validity"]["begin"])
                assert certs[key] == (sentinel["datasetId"], end + "T00:00:00"), (step, epoch, unit)
                assert sentinel["validity"]["begin"].startswith(begin)
                assert sentinel["commands"][0][:2] == ["pipetask", "run"]
                # make demo's config trips none of the shipped limits (issue #19)
                assert sentinel["quality"]["verdict"] == "pass", (step, epoch, unit, sentinel["quality"]["rules"])
    assert len(certs) == 2 * (6 * len(CAMERAS) + 2)
    # intermediates are gone, certified products are not
    butler = Butler.from_config(str(repo))
    assert not list(
        butler.query_datasets("biasProc", collections="u/demo/run1/bias/b1", find_first=False, explain=False)
    )


def test_target_for_one_camera_schedules_only_that_camera(tmp_path):
    workdir = workdir_config(tmp_path)
    proc = snakemake(workdir, "-n", "results/certified/run1/bootstrap/r1.json")
    jobs = re.findall(r"^rule (\w+):", proc.stdout, re.M)
    assert sorted(set(jobs)) == [
        "bias",
        "bootstrap",
        "check_visits",
        "dark",
        "demo_repo",
        "flat",
        "register_dataset_types",
    ]
    wildcards = re.findall(r"wildcards: (.*)", proc.stdout)
    camera_jobs = [w for w in wildcards if "arm=" in w]
    assert len(camera_jobs) == 4 and all("arm=r, spectrograph=1" in w and "epoch=run1" in w for w in camera_jobs)


def test_dry_run_of_site_config_needs_no_datastore(tmp_path):
    proc = run(
        ["snakemake", "-n", "-p", "--cores", "64", "--configfile", "config/pfs.example.yaml"], cwd=PROJECT, check=True
    )
    assert not Path("/work/pfs/data/datastore").exists()
    output = proc.stdout + proc.stderr
    commands = [line for line in output.splitlines() if "pfscalib job" in line]
    # 12 cameras (b, r, n x 4): 6 per-camera steps for b and r, 4 for n (no bias, no dark), fiberNorms per arm
    assert len(commands) == 8 * 6 + 4 * 4 + 3
    assert not [c for c in commands if re.search(r"--arm n .*--step (bias|dark) ", c)]
    # one defineFiberProfilesInputs.py per mode and epoch: brn only here
    defines = [line for line in output.splitlines() if "-- defineFiberProfilesInputs.py" in line]
    assert len(defines) == 1 and "--name run18_brn" in defines[0]
    b1 = next(c for c in commands if "logs/run18/bootstrap/b1.log" in c)
    assert "-c bootstrap:spectralOffset=-10" in b1 and "visit IN (11, 22)" in b1
    # 16 threads configured; a bootstrap has 2 visits: -j 2 (and 2 CPUs on SLURM)
    assert b1.rstrip().endswith("-j 2) > logs/run18/bootstrap/b1.log 2>&1")
    assert all("-j 16)" in c for c in commands if "--step fiberNorms" in c)
    # the config's memory and wall time reach every job (through the declared Resource.evaluate)
    job = output[output.index("rule fiberProfiles:") :]
    job = job[: job.index("Shell command")]
    resources = re.search(r"resources: (.*)", job).group(1).split(", ")
    assert {"runtime=240", "mem_mb=32000"} <= set(resources) and "threads: 16" in job
    # with scarce cores the jobs with the most chain ahead start first (bias 7 ... fiberNorms 1)
    assert "priority: 2" in job and "priority: 1" in output[output.index("rule fiberNorms:") :]


@pytest.mark.parametrize(
    "table,old,new,rerun",
    [
        # every step's table: that step of run1 and the steps behind it rerun, never the ones before
        ("bias", "100..104", "100..103", {"bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles"}),
        ("flat", "108..113", "108..112", {"flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"}),
        ("bootstrap", "108^114", "108^115", {"bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"}),
        ("detectorMap", "108..109^114..115", "108..109^114", {"detectorMap", "fiberProfiles", "fiberNorms"}),
        ("fiberNorms", "run1\t108..109", "run1\t108", {"fiberNorms"}),
        # dark visits: the dark chain of run1 reruns, never bias
        ("dark", "105..107", "105..106", {"dark", "flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"}),
        # fibre-profile groups: a new profiles_run is defined, then fiberProfiles and fiberNorms rerun
        (
            "fiberProfiles",
            "run1\t119..120\t1\tbright",
            "run1\t119\t1\tbright",
            {"fiberProfilesInputs", "fiberProfiles", "fiberNorms"},
        ),
    ],
)
def test_editing_a_table_reruns_exactly_its_jobs(demo_run, table, old, new, rerun):
    path = demo_run / f"visits/{table}.tsv"
    original = path.read_text()
    assert old in original
    path.write_text(original.replace(old, new))
    try:
        proc = snakemake(demo_run, "-n")
    finally:
        path.write_text(original)
    jobs = set(re.findall(r"^rule (\w+):", proc.stdout, re.M))
    assert rerun <= jobs
    assert not jobs & ({"bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles"} - rerun)
    assert all("epoch=run1" in w for w in re.findall(r"wildcards: (.*)", proc.stdout) if "arm=" in w)


@pytest.mark.parametrize(
    "edit,camera,rerun",
    [
        # one camera's spectralOffset: its bootstrap and what follows, in every epoch, and its arm's fiberNorms
        (
            lambda c: c["spectralOffset"].update(b1=-9),
            "b1",
            {"bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"},
        ),
        # a -c override for one camera: that camera's flat and what follows
        (
            lambda c: c["steps"]["flat"].update(camera_config={"r1": ["isr:doFlat=False"]}),
            "r1",
            {"flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"},
        ),
    ],
    ids=["spectralOffset", "camera_config"],
)
def test_editing_the_config_reruns_exactly_its_jobs(demo_run, edit, camera, rerun):
    path = demo_run / "config/config.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    edit(config)
    path.write_text(yaml.safe_dump(config))
    try:
        proc = snakemake(demo_run, "-n")
    finally:
        path.write_text(original)
    blocks = re.split(r"^rule ", proc.stdout, flags=re.M)[1:]  # one per job: name, then its fields
    jobs = {(b.split(":")[0], re.search(r"wildcards: (.*)", b)[1]) for b in blocks if "wildcards: " in b}
    arm, spectrograph = camera[0], camera[1]
    expected = {
        (step, f"epoch={epoch}, arm={arm}" + ("" if STEPS[step].per_arm else f", spectrograph={spectrograph}"))
        for step in rerun
        for epoch in ("run1", "run2")
    }
    assert {j for j in jobs if j[0] in STEP_NAMES} == expected


# ------------------------------------------------------------------ a rebuilt bias: what is stale (issue #32)
BIAS = paths.sentinel("bias", "run1", "b1")
DARK = paths.sentinel("dark", "run1", "b1")
# b1's chain in run1 and the b arm's fiberNorms (it reads b1's and b2's profiles); run2 reads nothing of run1
DOWNSTREAM = {(step, "b" if STEPS[step].per_arm else "b1") for step in STEP_NAMES if step != "bias"}


def read(workdir: Path, path: str) -> dict:
    return json.loads((workdir / path).read_text())


def products(workdir: Path) -> tuple[int, list[dict]]:
    """`pfscalib status --format json`: its exit status and the product rows (not the roll-up's)."""
    proc = run(["pfscalib", "status", "--format", "json"], cwd=workdir)
    return proc.returncode, [r for r in json.loads(proc.stdout) if r["scope"] == "product"]


def dry_run_step_jobs(workdir: Path) -> set[str]:
    """The outputs (sentinels) of the step jobs `snakemake -n` lists as needing to run."""
    proc = snakemake(workdir, "-n", rerun_incomplete=False)
    blocks = re.findall(r"^(?:local)?rule (\w+):\n((?:[ \t]+.*\n)*)", proc.stdout, re.M)
    return {re.search(r"output: (\S+)", body)[1] for rule, body in blocks if rule in STEP_NAMES}


@pytest.fixture(scope="module")
def rebuilt_bias(demo_run):
    """The whole demo built, then b1's bias of run1 alone rebuilt (forced, its target only): (certifications
    before, the old bias's sentinel)."""
    code, rows = products(demo_run)
    assert code == 0 and {r["state"] for r in rows} <= {"ok", "n/a"}, rows  # nothing stale after a whole run
    assert read(demo_run, DARK)["inputs"] == {BIAS: read(demo_run, BIAS)["datasetId"]}  # what the dark read
    before, old = certifications(demo_run / "results/demo/repo"), read(demo_run, BIAS)
    snakemake(demo_run, BIAS, "--forcerun", BIAS)
    assert read(demo_run, BIAS)["datasetId"] != old["datasetId"]
    return before, old


def test_every_product_downstream_of_a_rebuilt_bias_is_stale_naming_it(demo_run, rebuilt_bias):
    code, rows = products(demo_run)
    assert code == 1  # stale is not ok
    stale = {(r["step"], r["camera"]): r for r in rows if r["state"] == "stale"}
    assert set(stale) == DOWNSTREAM
    assert next(r for r in rows if (r["step"], r["camera"]) == ("bias", "b1"))["status"] == "pass"
    for (step, unit), row in stale.items():
        target = paths.sentinel(step, "run1", unit)
        assert row["staleInputs"] == "bias b1", row
        assert row["status"].startswith("stale: bias b1 rebuilt since"), row
        assert row["rebuild"] == f"snakemake --cores 2 {target} -R {DARK}", row  # the dark: built from the bias
        assert row["rebuild"] in row["status"]
    assert "(via dark b1)" in stale[("flat", "b1")]["status"]
    assert stale[("dark", "b1")]["verdict"] == "" and "via" not in stale[("dark", "b1")]["status"]


def test_stale_products_are_exactly_the_jobs_a_dry_run_would_rerun(demo_run, rebuilt_bias):
    _, rows = products(demo_run)
    stale = {paths.sentinel(r["step"], r["epoch"], r["camera"]) for r in rows if r["state"] == "stale"}
    assert stale == dry_run_step_jobs(demo_run) and len(stale) == len(DOWNSTREAM)


def test_table_and_summary_say_stale_and_how_to_rebuild(demo_run, rebuilt_bias):
    table = run(["pfscalib", "status"], cwd=demo_run)
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["run1", "b1", "pass", *["STALE"] * (len(STEP_NAMES) - 1)]
    assert lines[2].split() == ["run1", "r1", *["pass"] * len(STEP_NAMES)]
    command = f"snakemake --cores 2 all -R {DARK}"
    note = f"run1: {len(DOWNSTREAM)} stale, built before bias b1 was rebuilt; to rebuild:"
    assert lines[lines.index(note) + 1] == f"  {command}"
    summary = run(["pfscalib", "summary"], cwd=demo_run)
    assert summary.returncode == 1
    assert "b1 dark STALE, flat STALE, bootstrap STALE, detectorMap STALE, fiberProfiles STALE, fiberNorms STALE" in (
        summary.stdout
    )
    assert f"  {note}\n    {command}\n" in summary.stdout


def test_the_printed_command_rebuilds_exactly_the_stale_products_and_leaves_others_identical(demo_run, rebuilt_bias):
    """The command status prints rebuilds b1's chain and the b arm's fiberNorms from the new bias, clears STALE,
    and leaves every other camera's and epoch's certification as it was (replaced, never duplicated)."""
    before, old_bias = rebuilt_bias
    repo = demo_run / "results/demo/repo"
    ids = {(step, unit): read(demo_run, paths.sentinel(step, "run1", unit))["datasetId"] for step, unit in DOWNSTREAM}
    summary = run(["pfscalib", "summary"], cwd=demo_run).stdout
    command = shlex.split(re.search(r"^ +(snakemake .*)$", summary, re.M)[1])
    assert command[:3] == ["snakemake", "--cores", "2"]
    proc = snakemake(demo_run, *command[3:])
    rebuilt = re.findall(r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+wildcards: (.*)", proc.stdout + proc.stderr, re.M)
    assert {w for r, w in rebuilt if r in STEP_NAMES} == {"epoch=run1, arm=b, spectrograph=1", "epoch=run1, arm=b"}
    for step, unit in DOWNSTREAM:  # each rebuilt from the new bias
        assert read(demo_run, paths.sentinel(step, "run1", unit))["datasetId"] != ids[(step, unit)]
    assert read(demo_run, DARK)["inputs"] == {BIAS: read(demo_run, BIAS)["datasetId"]} != {BIAS: old_bias["datasetId"]}
    code, rows = products(demo_run)
    assert code == 0 and not [r for r in rows if r["state"] == "stale"], rows
    assert dry_run_step_jobs(demo_run) == set()
    after = certifications(repo)
    changed = {k for k in before if before[k] != after.get(k)}
    assert len(changed) == len(STEP_NAMES)  # the bias and its DOWNSTREAM, nothing else
    assert all(dict(k[1]).get("arm") == "b" and dict(k[1]).get("spectrograph", 1) == 1 for k in changed)
    assert all(k[2].startswith("2025-03-01") for k in changed)  # run2 untouched
    assert set(after) == set(before)  # replaced, never duplicated


def test_lint_is_clean():
    proc = run(["snakemake", "--lint"], cwd=PROJECT)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr


def test_status_table_reports_a_decertified_camera(demo_run, tmp_path):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(demo_run, workdir, ignore=shutil.ignore_patterns(".snakemake"))
    code, rows = products(workdir)  # the product rows, not the roll-up's
    assert code == 0 and len(rows) == 2 * (6 * len(CAMERAS) + 2) and {r["status"] for r in rows} == {"pass"}
    run(
        [
            "results/demo/repo/bin/butlerDecertify.py",  # the demo's stand-in, beside its repository
            "results/demo/repo",
            "u/demo/calib/dark",
            "dark",
            "--begin-date",
            "2025-03-01T00:00:00",
            "--end-date",
            "2025-04-01T00:00:00",
            "--id",
            "instrument=PFS",
            "arm=r",
            "spectrograph=1",
        ],
        cwd=workdir,
        check=True,
    )
    bad = run(["pfscalib", "status", "--format", "tsv"], cwd=workdir)
    assert bad.returncode == 1
    lines = [line.split("\t") for line in bad.stdout.splitlines()]
    header, body = lines[0], [r for line in lines[1:] if (r := dict(zip(lines[0], line)))["scope"] == "product"]
    assert header[:5] == ["epoch", "step", "camera", "datasetType", "status"]
    broken = [r for r in body if not r["status"].startswith("pass")]
    assert [(r["epoch"], r["step"], r["camera"], r["status"]) for r in broken] == [
        ("run1", "dark", "r1", "NOT CERTIFIED (sentinel says certified)")
    ]
    table = run(["pfscalib", "status"], cwd=workdir).stdout.splitlines()
    assert table[2].split() == ["run1", "r1", "pass", "LOST", *["pass"] * 5]
    assert "LOST: NOT CERTIFIED (sentinel says certified)" in table
    wide = run(["pfscalib", "status", "--wide"], cwd=workdir).stdout
    assert "NOT CERTIFIED" in wide and "pass [2025-03-01, 2025-04-01)" in wide


def test_report_shows_a_picture_per_calibration_and_camera(demo_run, readme_run, tmp_path):
    report = demo_run / "report.html"  # written by the README's `make report`
    html = report.read_text()
    # every picture decodes, loads in headless Chromium, and the report page renders
    pictures = set(check_pictures_render(report, tmp_path))
    expected = 2 * (6 * len(CAMERAS) + 2)  # epochs x (6 per-camera calibrations x cameras + fiberNorms per arm)
    assert len(pictures) >= expected
    for step in STEP_NAMES:
        assert f"{step}_{'b' if STEPS[step].per_arm else 'b1'}.png" in html
    assert "certifications.tsv" in html and "quality.tsv" in html
    # camera x calibration: a category per camera, with a drift panel across the epochs
    for camera in CAMERAS:
        assert f'"{camera}"' in html and "drift across epochs" in html
    # the first page: the camera x calibration grid of each epoch, one verdict per cell (all pass on the demo),
    # each a link that opens a picture the report holds; the run's verdict; the tables inline; the collections
    # the run certified into (not the site's)
    front = first_page(html)
    cells = re.findall(r'<td class="v (\w+)" data-epoch="(\w+)" data-camera="(\w+)" data-step="(\w+)" '
                       r'data-verdict="([\w ]+)"[^>]*><a href="([^"]+)"', front)  # fmt: skip
    assert len(cells) == 2 * len(CAMERAS) * len(STEP_NAMES)
    assert {(e, c, s) for _, e, c, s, _, _ in cells} == {
        (e, c, s) for e in ("run1", "run2") for c in CAMERAS for s in STEP_NAMES
    }
    assert {(kind, verdict) for kind, *_, verdict, _ in cells} == {("pass", "pass")}
    results = report_results(html)
    for *_, link in cells:
        shown = re.search(r"results\[&#x27;([^&]+)&#x27;\]", link) or re.search(r"results\['([^']+)'\]", link)
        assert shown and results[shown.group(1)]["mime_type"] == "image/png", link
    assert re.findall(r'data-run="(run\d)">([A-Z]+)<', front) == [("run1", "PASS"), ("run2", "PASS")]
    assert "<th>why</th>" in front and "<th>datasetId</th>" in front  # the quality and certification tables
    assert "u/demo/calib/bias" in front and "u/demo/bootstrap" in front and "PFS/calib" not in front


def test_disk_prediction_is_within_10_percent_of_what_each_job_wrote(demo_run, monkeypatch):
    """Issue #21: every job of one camera and epoch (b1, run1; fiberNorms of arm b), predicted from its
    pipeline's connections and the demo config's measured sizes, against the file sizes its sentinel
    recorded in the datastore before cleaning."""
    from pfscalib.plan.workflow import Workflow

    monkeypatch.chdir(demo_run)  # the epoch's check (the dither count) and the pipeline cache
    wf = Workflow(yaml.safe_load((demo_run / "config/config.yaml").read_text()))
    for step in STEP_NAMES:
        unit = "b" if STEPS[step].per_arm else "b1"
        predicted = wf.disk.job(step, "run1", unit)
        written = json.loads((demo_run / f"results/certified/run1/{step}/{unit}.json").read_text())["written"]
        # every type written is predicted, in number at least (a quantum may find no work: the dark visits
        # of a fibre-profile group write no adjusted detectorMap)
        assert set(predicted.datasets) == set(written), step
        assert all(predicted.datasets[t][0] >= n for t, (n, _) in written.items()), step
        measured = sum(nbytes for _, nbytes in written.values())
        assert abs(predicted.written / measured - 1) < 0.10, (step, predicted.written, measured)


def test_a_disk_budget_smaller_than_the_largest_job_stops_before_any_job(tmp_path):
    workdir = workdir_config(tmp_path)
    proc = snakemake(workdir, "--resources", "disk_mb=2", check=False)
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert re.fullmatch(
        r"pfscalib: job fiberProfiles run\d \w\d writes an estimated \d+ MB into the datastore, more than the "
        r"whole disk budget disk_mb=2: .*",
        lines[-1],
    )
    assert not (workdir / "results/demo").exists() and not (workdir / "logs").exists()  # nothing ran
