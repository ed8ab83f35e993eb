"""Issue #5: bad input through the real CLI (one line, non-zero, repository untouched) and injection."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from lsst.daf.butler import Butler

from conftest import PROJECT, run
from helpers import certifications, external_repo_config, snakemake, workdir_config


def digest(repo: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(repo.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(repo)).encode() + path.read_bytes())
    return h.hexdigest()


REGISTRY_CASES = [
    (
        "bias",
        "epoch\tvisits\nrun1\t100..104^999\n",
        "row 2: visit 999 (bias, epoch run1, b1): not in the registry",
    ),
    ("dark", "epoch\tvisits\nrun1\t100..102\n", "dark.tsv: row 2: visit 100 (dark, epoch run1, b1): is a bias"),
    ("bootstrap", "epoch\tvisits\nrun1\t105^114\n", "visit 105 (bootstrap, epoch run1, b1): is a dark"),
    # arcs told by lamps and observation_type comparison: the pair is one quartz and one arc
    ("bootstrap", "epoch\tvisits\nrun1\t108^109\n", "bootstrap needs a quartz and an arc, got a quartz, a quartz"),
    ("bootstrap", "epoch\tvisits\nrun1\t114^115\n", "bootstrap needs a quartz and an arc, got an arc, an arc"),
    ("fiberNorms", "epoch\tvisits\nrun1\t110..111\n", "visit 110 (fiberNorms, epoch run1, b): has dither 675"),
    # run2's biases in run1's rows: they would be calibrated with run2's products
    ("bias", "epoch\tvisits\nrun1\t200..204\n", "visit 200 (bias, epoch run1, b1): taken at 2025-04-07"),
]


@pytest.mark.parametrize(
    "step,table,message", REGISTRY_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(REGISTRY_CASES)]
)
def test_bad_visits_stop_before_any_job_and_leave_the_repo_untouched(tmp_path, demo_repo, step, table, message):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1", "r1"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1", "r1"])
    (workdir / f"visits/{step}.tsv").write_text(table)
    before = digest(demo_repo)
    proc = snakemake(workdir, "--show-failed-logs", check=False, rerun_incomplete=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert digest(demo_repo) == before
    assert not (workdir / "results/certified").exists() and not (workdir / "logs/run1/bias").exists()


SITE_CASES = [
    ("missing input collection", lambda c: c.update(collections={"inputs": ["PFS/defaultz"]}),
     "input collection 'PFS/defaultz' does not exist"),
    ("missing prerequisite", lambda c: c.update(prerequisites=["defects", "nirDark"]),
     "prerequisite nirDark is not certified for camera b1"),
]  # fmt: skip


@pytest.mark.parametrize("name,edit,message", SITE_CASES, ids=[c[0] for c in SITE_CASES])
def test_site_problems_stop_before_any_job(tmp_path, demo_repo, name, edit, message):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1", "r1"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1", "r1"])
    path = workdir / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    before = digest(demo_repo)
    proc = snakemake(workdir, "--show-failed-logs", check=False, rerun_incomplete=False)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "pfscalib: check-visits:" in ln]
    assert proc.returncode != 0 and lines and message in lines[0], lines
    assert digest(demo_repo) == before
    assert not (workdir / "results/certified").exists()


def test_camera_without_raws_is_caught_by_the_check(tmp_path, demo_repo):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1", "n3"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1", "n3"])
    proc = snakemake(workdir, "--show-failed-logs", check=False, rerun_incomplete=False)
    assert proc.returncode != 0 and "has no raw for n3" in proc.stdout + proc.stderr


def test_bad_config_is_one_line_from_the_cli(tmp_path, demo_repo):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1"])
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["epochs"]["run1"]["end"] = "2025-01-01T00:00:00"
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    before = digest(demo_repo)
    proc = snakemake(workdir, check=False, rerun_incomplete=False)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("pfscalib:")]
    assert proc.returncode != 0 and errors == [
        "pfscalib: config/config.yaml: epochs.run1: end 2025-01-01T00:00:00 is not after begin 2025-03-01T00:00:00"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert digest(demo_repo) == before


HOSTILE = 'repo dir; $(touch PWNED) `touch PWNED2` it\'s "x"'


def test_hostile_strings_reach_pipetask_and_butler_as_single_arguments(tmp_path, demo_template):
    repo = tmp_path / HOSTILE
    shutil.copytree(demo_template, repo)
    workdir = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(repo), ["b1"])
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["steps"]["bias"] = {"threads": 1, "extra_args": ["--output-run-name-that-does-not-exist;$(touch PWNED)"]}
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, "-n", "-p", "results/certified/run1/bias/b1.json", check=False, rerun_incomplete=False)
    command = next(line for line in dry.stdout.splitlines() if "pipetask run" in line)
    argv = shlex.split(command.strip().removeprefix("(").split(") > ")[0])
    assert argv[argv.index("-b") + 1] == str(repo)
    assert "--output-run-name-that-does-not-exist;$(touch PWNED)" in argv
    # for real: the preflight parses them with pipetask run's own parser and refuses the unknown option, as one
    # argument, in one line before any job; no shell ever sees it and the repository is untouched
    before = digest(repo)
    refused = snakemake(workdir, "results/certified/run1/bias/b1.json", check=False, rerun_incomplete=False)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert [ln for ln in out.splitlines() if ln.startswith("pfscalib:")] == [
        "pfscalib: config/config.yaml: steps.bias.extra_args: '--output-run-name-that-does-not-exist;$(touch PWNED)'"
        " is refused by pipetask run: No such option '--output-run-name-that-does-not-exist;$(touch PWNED)'."
    ]
    assert "Traceback" not in out
    assert not list(tmp_path.rglob("PWNED*")) and not list(PROJECT.rglob("PWNED*"))
    assert digest(repo) == before and certifications(repo) == {}
    assert not (workdir / "results/certified").exists() and no_job_ran(workdir)
    # without them, the hostile repository path reaches pipetask and butler as one argument each
    config["steps"]["bias"] = {"threads": 1}
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "results/certified/run1/bias/b1.json", check=False, rerun_incomplete=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len([k for k in certifications(repo) if k[0] == "bias"]) == 1
    assert not list(tmp_path.rglob("PWNED*")) and not list(PROJECT.rglob("PWNED*"))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("rerun", "u/x; rm -rf ~", "rerun: 'u/x; rm -rf ~' is not a collection name"),
        ("instrument_name", "PFS' OR '1'='1", "instrument_name: \"PFS' OR '1'='1\" is not an instrument name"),
    ],
)
def test_strings_that_reach_query_literals_are_constrained(monkeypatch, key, value, message):
    from pfscalib.plan.config import ConfigError
    from pfscalib.plan.workflow import Workflow

    monkeypatch.chdir(PROJECT)
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config[key] = value
    with pytest.raises(ConfigError, match=__import__("re").escape(message)):
        Workflow(config)


def test_select_visits_binds_target_names(demo_repo):
    quoted = run(
        [
            "pfscalib",
            "select-visits",
            "--repo",
            str(demo_repo),
            "--epoch",
            "run1",
            "--target-name",
            "bias' OR visit.target_name = 'dark",
        ],
        check=True,
    )
    assert quoted.stdout.splitlines() == ["epoch\tvisits\tcomment"]  # matched literally: no such target
    plain = run(
        [
            "pfscalib",
            "select-visits",
            "--repo",
            str(demo_repo),
            "--epoch",
            "run1",
            "--target-name",
            "dark",  # lower case at Subaru since 2023-12
            "--where",
            "visit.day_obs = 20250310",
        ],
        check=True,
    )
    assert [line.split("\t")[1] for line in plain.stdout.splitlines()[1:]] == ["105..107"]


# ---------------------------------------------------------------- issue #29
def config_lines(proc) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("pfscalib: ")]


def no_job_ran(workdir: Path) -> bool:
    """No job's log (each job writes its own under logs/)."""
    return not list((workdir / "logs").rglob("*.log"))


def edit_config(workdir: Path, edit) -> None:
    path = workdir / "config/config.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))


PROFILES_PER_CAMERA = (
    "epoch\tvisits\tgroup\trole\tcameras\n"
    "run1\t116..117\t0\tbright\tb1\n"
    "run1\t119..120\t0\tbright\tr1\n"
    "run1\t118\t0\tdark\t\n"
)

ISSUE29_CASES = [
    # (id, stage: dag (snakemake -n) or onstart (a real run), edit of the config dict, tables, words of the line)
    ("spectralOffset wider than the detector", "dag", lambda c: c["spectralOffset"].update(b1=5000), {},
     ("config/config.yaml: spectralOffset.b1: 5000 pixels", "4096 pixels along wavelength")),
    ("absurd memory", "dag", lambda c: c["steps"]["bias"].update(mem_mb=10**30), {},
     ("config/config.yaml: steps.bias.mem_mb", "is greater than the maximum of 16777216")),
    ("threads beyond a node", "dag", lambda c: c["steps"]["flat"].update(threads=100000), {},
     ("config/config.yaml: steps.flat.threads", "is greater than the maximum of 1024")),
    ("runtime beyond a node", "dag", lambda c: c["steps"]["dark"].update(runtime=10**7), {},
     ("config/config.yaml: steps.dark.runtime", "is greater than the maximum of 43200")),
    ("camera typo in cameras", "dag", lambda c: c.update(cameras=["b1", "r2"]), {},
     ("config/config.yaml: cameras: r2 has no spectralOffset", "spectralOffset names r1", "r2 for r1")),
    # issue #32: every camera has an offset (the site's map names more cameras): still named against cameras
    ("camera typo in cameras, every camera with an offset", "dag",
     lambda c: (c.update(cameras=["b1", "r2"]), c["spectralOffset"].update(b2=0, r2=3)), {},
     ("config/config.yaml: cameras: b1, r2 are not the same arms on every spectrograph",
      "spectralOffset names b2, r1, which cameras lacks", "r2 for r1?")),
    ("a camera typo that repeats another", "dag", lambda c: c.update(cameras=["b1", "b1"]), {},
     ("config/config.yaml: cameras: 'b1' listed more than once",)),
    ("open-ended epoch before another", "dag",
     lambda c: c["epochs"].update(run1={"begin": "2025-03-01T00:00:00", "end": None},
                                  run2={"begin": "2025-04-01T00:00:00", "end": "2025-05-01T00:00:00"}), {},
     ("config/config.yaml: epochs.run1: ", "epoch run1 has no end, so it overlaps epoch run2")),
    ("fibre-profile groups differ per camera", "dag", None, {"fiberProfiles": PROFILES_PER_CAMERA},
     ("fiberProfiles.tsv: row 2: ", "group 0 has other visits for r1 than for b1", "rows 2, 3")),
    ("instrument class mistyped", "onstart",
     lambda c: c.update(instrument="pfscalib.demo.instrument.PrimeFocusSpectrograp"), {},
     ("config/config.yaml: instrument: 'pfscalib.demo.instrument.PrimeFocusSpectrograp' cannot be imported",)),
    ("instrument not an Instrument", "onstart", lambda c: c.update(instrument="pfscalib.plan.config.Settings"), {},
     ("config/config.yaml: instrument: 'pfscalib.plan.config.Settings' is not an lsst.pipe.base Instrument",)),
    ("extra_args pipetask does not take", "onstart",
     lambda c: c["steps"]["bias"].update(extra_args=["--clobber-output"]), {},
     ("config/config.yaml: steps.bias.extra_args: '--clobber-output' is refused by pipetask run",
      "No such option '--clobber-output'")),
    ("extra_args lacking a value", "onstart", lambda c: c["steps"]["flat"].update(extra_args=["--skip-existing-in"]),
     {}, ("steps.flat.extra_args", "requires an argument")),
]  # fmt: skip


@pytest.mark.parametrize("name,stage,edit,tables,words", ISSUE29_CASES, ids=[c[0] for c in ISSUE29_CASES])
def test_issue29_input_is_one_line_before_any_job(tmp_path, demo_repo, name, stage, edit, tables, words):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1", "r1"])
    external_repo_config(workdir, str(demo_repo), ["b1", "r1"])
    if edit:
        edit_config(workdir, edit)
    for step, text in tables.items():
        (workdir / f"visits/{step}.tsv").write_text(text)
    before = digest(demo_repo)
    proc = snakemake(workdir, *(["-n"] if stage == "dag" else []), check=False, rerun_incomplete=False)
    lines = config_lines(proc)
    assert proc.returncode != 0 and len(lines) == 1, (proc.stdout + proc.stderr)[-3000:]
    assert all(w in lines[0] for w in words), lines
    assert "Traceback" not in proc.stdout + proc.stderr
    assert digest(demo_repo) == before and no_job_ran(workdir)


def test_a_visit_one_camera_of_the_arm_lacks_is_refused_by_the_check(tmp_path, demo_repo):
    """fiberNorms is one job per arm: a visit needs the raw of every camera of the arm (b1 and b2), not of
    one of them; pipetask's query would silently leave b2's out of the job."""
    butler = Butler.from_config(str(demo_repo), writeable=True)
    refs = butler.query_datasets(
        "raw",
        collections="*",
        find_first=False,
        where="instrument = 'PFS' AND visit = 116 AND arm = 'b' AND spectrograph = 2",
    )
    assert refs
    butler.pruneDatasets(refs, disassociate=True, unstore=True, purge=True)
    del butler
    workdir = workdir_config(tmp_path / "wd", cameras=["b1", "b2"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1", "b2"])
    # visit 116 only in fiberNorms: the fibre profiles from groups 1..3, renumbered
    profiles = workdir / "visits/fiberProfiles.tsv"
    rows = [ln.split("\t") for ln in profiles.read_text().splitlines()]
    kept = [rows[0]] + [[*r[:2], str(int(r[2]) - 1), *r[3:]] for r in rows[1:] if r[2] != "0"]
    profiles.write_text("".join("\t".join(r) + "\n" for r in kept))
    (workdir / "visits/fiberNorms.tsv").write_text("epoch\tvisits\nrun1\t108..109^116\n")
    before = digest(demo_repo)
    proc = snakemake(workdir, "--show-failed-logs", check=False, rerun_incomplete=False)
    lines = [ln for ln in config_lines(proc) if "check-visits:" in ln]
    assert proc.returncode != 0 and lines, (proc.stdout + proc.stderr)[-3000:]
    assert "fiberNorms.tsv: row 2: visit 116 (fiberNorms, epoch run1, b): has no raw for b2" in lines[0]
    assert "the registry has it for b1" in lines[0]
    assert digest(demo_repo) == before
    assert not (workdir / "results/certified").exists()


def test_an_edited_table_is_checked_again_before_any_job(tmp_path, demo_repo):
    """After a build, a mistyped visit added to a table: the epoch's check runs again (in the run's onstart)
    and refuses it in one line before any pipetask job; a good edit then reruns exactly its job."""
    workdir = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1"])
    target = "results/certified/run1/bias/b1.json"
    first = snakemake(workdir, target, check=False, rerun_incomplete=False)
    assert first.returncode == 0, first.stderr[-3000:]
    sentinel = (workdir / target).read_text()
    table = workdir / "visits/bias.tsv"
    original = table.read_text()
    table.write_text(original.replace("100..104", "100..105"))  # 105: a dark, typed for 104
    before = digest(demo_repo)
    proc = snakemake(workdir, target, check=False, rerun_incomplete=False)
    lines = config_lines(proc)
    assert proc.returncode != 0 and len(lines) == 1, (proc.stdout + proc.stderr)[-3000:]
    assert "bias.tsv: row 2: visit 105 (bias, epoch run1, b1): is a dark" in lines[0], lines
    assert "the table changed since epoch run1 was checked" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert digest(demo_repo) == before and (workdir / target).read_text() == sentinel
    assert not re.search(r"^(local)?rule bias:", proc.stdout + proc.stderr, re.M)  # no job started
    # still refused on the next run (the check's record is not renewed by a failed check)
    assert config_lines(snakemake(workdir, target, check=False, rerun_incomplete=False)) == lines
    # a good edit: checked again, passes, and only the bias job reruns
    table.write_text(original.replace("100..104", "100..103"))
    good = snakemake(workdir, target, check=False, rerun_incomplete=False)
    assert good.returncode == 0, good.stderr[-3000:]
    assert set(re.findall(r"^(?:local)?rule (\w+):", good.stdout + good.stderr, re.M)) == {"bias"}
    assert json.loads((workdir / "results/checks/run1.json").read_text())["checked"] == "ok"
