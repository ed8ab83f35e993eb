"""One results tree per datastore and rerun (issue #32): a site's config and the demo's, run from one
directory, write disjoint trees; the demo's stays where the README says (results/, logs/ here)."""

from __future__ import annotations

import json
import os

import yaml

from pfscalib.plan import paths

from helpers import external_repo_config, snakemake, workdir_config


def files_under(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_a_site_config_and_the_demo_config_in_one_directory_write_disjoint_trees(tmp_path, demo_repo):
    wd = workdir_config(tmp_path / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(wd, str(demo_repo), ["b1"])
    demo = yaml.safe_load((wd / "config/config.yaml").read_text())
    site = {k: v for k, v in demo.items() if k != "workdir"} | {"rerun": "u/site"}  # as a site writes it
    (wd / "config/site.yaml").write_text(yaml.safe_dump(site))
    before = files_under(wd)

    snakemake(wd, paths.check("run1"), "--configfile", "config/config.yaml")
    demo_files = files_under(wd) - before
    assert paths.check("run1") in demo_files and any(f.startswith("logs/") for f in demo_files)

    tree = paths.default_workdir(str(demo_repo), "u/site")
    assert tree.startswith("runs/repo-") and tree.endswith("/u/site")
    # a target names a file of the config's own tree (Snakemake reads it in the workdir)
    snakemake(wd, paths.check("run1"), "--configfile", "config/site.yaml")
    site_files = files_under(wd) - before - demo_files
    assert f"{tree}/{paths.check('run1')}" in site_files
    assert any(f.startswith(f"{tree}/logs/") for f in site_files)
    assert any(f.startswith(f"{tree}/.snakemake/") for f in site_files)  # its own locks and job records
    # Snakemake opens its own timestamped run log before it reads the Snakefile: the one file left here
    outside = sorted(f for f in site_files if not f.startswith((f"{tree}/", ".snakemake/log/")))
    assert not outside, outside
    assert json.loads((wd / tree / paths.check("run1")).read_text()) != {}


def test_a_relative_path_of_a_config_whose_tree_is_elsewhere_is_read_from_where_it_was_given(tmp_path):
    from pfscalib.plan.preflight import set_workdir

    config = {
        "datastore": "data/repo", "rerun": "u/x", "visits": {"bias": "visits/bias.tsv"},
        "limits": "my-limits.yaml", "pipelines_dir": "$DRP_STELLA_DIR/pipelines",
        "executables": {"pipetask": "pipetask", "defineFiberProfilesInputs": "bin/define.py"},
    }  # fmt: skip
    here = os.getcwd()
    set_workdir(config)
    assert config["workdir"] == os.path.join(here, paths.default_workdir("data/repo", "u/x"))
    assert config["datastore"] == os.path.join(here, "data/repo")
    assert config["visits"]["bias"] == os.path.join(here, "visits/bias.tsv")
    assert config["limits"] == os.path.join(here, "my-limits.yaml")
    assert config["pipelines_dir"] == "$DRP_STELLA_DIR/pipelines"  # expanded by pipetask
    assert config["executables"] == {"pipetask": "pipetask", "defineFiberProfilesInputs": f"{here}/bin/define.py"}
    demo = {"datastore": "results/demo/repo", "rerun": "u/demo", "workdir": ".", "visits": {"bias": "v.tsv"}}
    set_workdir(demo)
    assert demo["datastore"] == "results/demo/repo" and demo["visits"] == {"bias": "v.tsv"}  # the demo: as written
