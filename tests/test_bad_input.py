"""Issue #5: bad input through the real CLI (one line, non-zero, repository untouched) and injection."""

from __future__ import annotations

import hashlib
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT, run
from test_databases import external_repo_config
from test_workflow_e2e import certifications, workdir_config


def digest(repo: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(repo.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(repo)).encode() + path.read_bytes())
    return h.hexdigest()


def snakemake(workdir: Path, *args: str):
    return run(["snakemake", "-s", str(PROJECT / "Snakefile"), "--cores", "2", *args], cwd=workdir)


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
    proc = snakemake(workdir, "--show-failed-logs")
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
    proc = snakemake(workdir, "--show-failed-logs")
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "pfscalib: check-visits:" in ln]
    assert proc.returncode != 0 and lines and message in lines[0], lines
    assert digest(demo_repo) == before
    assert not (workdir / "results/certified").exists()


def test_camera_without_raws_is_caught_by_the_check(tmp_path, demo_repo):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1", "n3"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1", "n3"])
    proc = snakemake(workdir, "--show-failed-logs")
    assert proc.returncode != 0 and "has no raw for n3" in proc.stdout + proc.stderr


def test_bad_config_is_one_line_from_the_cli(tmp_path, demo_repo):
    workdir = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1"])
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config["epochs"]["run1"]["end"] = "2025-01-01T00:00:00"
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    before = digest(demo_repo)
    proc = snakemake(workdir)
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
    dry = snakemake(workdir, "-n", "-p", "results/certified/run1/bias/b1.json")
    command = next(line for line in dry.stdout.splitlines() if "pipetask run" in line)
    argv = shlex.split(command.strip().removeprefix("(").split(") > ")[0])
    assert argv[argv.index("-b") + 1] == str(repo)
    assert "--output-run-name-that-does-not-exist;$(touch PWNED)" in argv
    # for real: pipetask rejects the unknown option as one argument; nothing is executed by a shell
    config["steps"]["bias"] = {"threads": 1}
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workdir, "results/certified/run1/bias/b1.json")
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
    from pfscalib.config import ConfigError
    from pfscalib.workflow import Workflow

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
