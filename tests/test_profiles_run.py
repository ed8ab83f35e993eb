"""Issue 28, finding 7: profiles_run names are shared with the observatory (drp_doc use.rst: `run18_brn`,
`2026may_m`, a user's subset prefixed with the user's name). `pfscalib define-profiles` reuses a name only
for an identical definition (the groups and each visit's role, bright or dark), and otherwise defines the
rerun user's `<user>_<name>`; the jobs read the chosen name from its record at run time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lsst.daf.butler import Butler

from conftest import PROJECT, run

GROUPS = [["116..117", "118"], ["119..120", "121"]]


def define_command(repo: Path, name: str, groups: list) -> list[str]:
    argv = [str(repo / "bin/defineFiberProfilesInputs.py"), str(repo), "PFS", name]
    for bright, dark in groups:
        argv += ["--bright", bright] + (["--dark", dark] if dark else [])
    return argv


def define_profiles(repo: Path, workdir: Path, name: str, groups: list, fallback: str):
    wrapper = ["pfscalib", "define-profiles", "--repo", str(repo), "--name", name, "--fallback", fallback]
    wrapper += ["--groups", json.dumps(groups), "--output", str(workdir / "record.json"), "--"]
    return run([*wrapper, *define_command(repo, name, groups)], cwd=workdir)


def definition(repo: Path, name: str):
    from pfscalib.job.butler import profiles_run_definition

    return profiles_run_definition(Butler.from_config(str(repo)), "PFS", name)


def observatory_defines(repo: Path, name: str, groups: list) -> None:
    run(define_command(repo, name, groups), check=True)


@pytest.mark.parametrize(
    "theirs",
    [
        pytest.param([["116..117", "118"], ["122..123", "124"]], id="other-groups"),
        pytest.param([["118", "116..117"], ["121", "119..120"]], id="same-visits-other-roles"),
    ],
)
def test_a_shared_name_with_another_definition_is_not_reused(demo_repo, tmp_path, theirs):
    """(a) the observatory's `run1_brn` holds other groups: today's code failed the definition; (b) it holds
    the same visits with bright and dark swapped: today's code reused it silently. Both: the build defines
    `demo_run1_brn` with its own groups and the observatory's is untouched."""
    observatory_defines(demo_repo, "run1_brn", theirs)
    before = definition(demo_repo, "run1_brn")
    proc = define_profiles(demo_repo, tmp_path, "run1_brn", GROUPS, "demo_run1_brn")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["profiles_run"] == "demo_run1_brn" and record["planned"] == "run1_brn"
    assert definition(demo_repo, "demo_run1_brn") == {
        0: {"bright": [116, 117], "dark": [118]},
        1: {"bright": [119, 120], "dark": [121]},
    }
    assert definition(demo_repo, "run1_brn") == before
    # run again (a rerun of the job): the build's own definition is reused, nothing defined twice
    again = define_profiles(demo_repo, tmp_path, "run1_brn", GROUPS, "demo_run1_brn")
    assert again.returncode == 0 and "demo_run1_brn already defined" in again.stderr


def test_an_identical_definition_is_reused_and_a_taken_fallback_is_one_line(demo_repo, tmp_path):
    observatory_defines(demo_repo, "run1_brn", GROUPS)
    proc = define_profiles(demo_repo, tmp_path, "run1_brn", GROUPS, "demo_run1_brn")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "record.json").read_text())["profiles_run"] == "run1_brn"
    assert definition(demo_repo, "demo_run1_brn") is None
    # both names held by other definitions: refused in one line, nothing defined
    other = [["122..123", "124"]]
    observatory_defines(demo_repo, "demo_run1_brn", GROUPS)
    proc = define_profiles(demo_repo, tmp_path, "run1_brn", other, "demo_run1_brn")
    errors = [ln for ln in proc.stderr.splitlines() if "define-profiles:" in ln]
    assert proc.returncode == 1 and len(errors) == 1 and "run1_brn and demo_run1_brn" in errors[0]


def test_the_jobs_select_the_chosen_name(tmp_path, monkeypatch):
    """The commands name the planned profiles_run (stable across runs); the job's -d query takes the name
    define-profiles recorded."""
    from pfscalib.job.run import with_profiles_run
    from pfscalib.plan.workflow import Workflow

    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((PROJECT / "config/pfs.example-m.yaml").read_text())
    config["visits"] = {k: str(PROJECT / v) for k, v in config["visits"].items()}
    site = Workflow(config, "pfs.example-m.yaml")
    assert site.selections.profiles_run_fallback("run18", "brn") == "pfsuser_run18_brn"
    job = site.commands.job("fiberProfiles", "run18", "n2").split(" -- ")
    assert "--profiles-from results/fiberProfilesInputs/run18/brn.json" in job[0]
    record = Path("results/fiberProfilesInputs/run18/brn.json")
    record.parent.mkdir(parents=True)
    groups = [list(g) for g in site.selections.profile_groups("run18", "brn")]
    record.write_text(json.dumps({"profiles_run": "pfsuser_run18_brn", "planned": "run18_brn", "groups": groups}))
    again = Workflow(config, "pfs.example-m.yaml")
    assert again.profiles_run("run18", "brn") == "run18_brn"  # the command does not change
    command = site.commands.pipetask("fiberProfiles", "run18", "n2")
    chosen = with_profiles_run(command, str(record))
    assert chosen.where == "profiles_run = 'pfsuser_run18_brn' AND arm='n' AND spectrograph=2"


def test_a_build_whose_epoch_is_named_like_an_observing_run_uses_its_own_name(demo_repo, tmp_path):
    """(a) end to end: the observatory's `run1_brn` holds other groups; the build of b1's fiberProfiles
    succeeds with `demo_run1_brn`, its fiberProfiles built from the build's groups."""
    from helpers import external_repo_config, snakemake, workdir_config

    observatory_defines(demo_repo, "run1_brn", [["125..126", "127"]])
    workdir = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(demo_repo), ["b1"])
    target = "results/certified/run1/fiberProfiles/b1.json"
    proc = snakemake(workdir, target, check=False, rerun_incomplete=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((workdir / "results/fiberProfilesInputs/run1/brn.json").read_text())
    assert record["profiles_run"] == "demo_run1_brn" and record["planned"] == "run1_brn"
    sentinel = json.loads((workdir / target).read_text())
    assert "profiles_run = 'demo_run1_brn'" in " ".join(sentinel["commands"][0])
    assert definition(demo_repo, "run1_brn") == {0: {"bright": [125, 126], "dark": [127]}}
