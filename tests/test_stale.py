"""Issue #32 (1): status knows what is stale. After b1's bias alone is rebuilt, every product built from it
(b1's dark ... fiberProfiles, the b arm's fiberNorms) is STALE naming the bias, in the table, tsv/json and the
summary, exactly the step jobs `snakemake -n` would rerun; the command status prints rebuilds them and clears
STALE. One camera (b1), one epoch, on a private copy of the session's demo repository."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from pfscalib.plan import paths
from pfscalib.plan.steps import STEP_NAMES

from conftest import private_copy, run
from helpers import external_workdir, snakemake

BIAS = paths.sentinel("bias", "run1", "b1")
DARK = paths.sentinel("dark", "run1", "b1")
DOWNSTREAM = {(step, "b" if step == "fiberNorms" else "b1") for step in STEP_NAMES if step != "bias"}


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
def rebuilt_bias(tmp_path_factory, demo_template):
    """b1 run1 built whole, then b1's bias alone rebuilt (forced, its target only): (workdir, old bias)."""
    tmp = tmp_path_factory.mktemp("stale")
    repo = private_copy(tmp, demo_template)
    workdir = external_workdir(tmp, repo)
    snakemake(workdir)
    code, rows = products(workdir)
    assert code == 0 and {r["state"] for r in rows} <= {"ok", "n/a"}, rows  # nothing stale after a whole run
    assert read(workdir, DARK)["inputs"] == {BIAS: read(workdir, BIAS)["datasetId"]}  # what the dark read
    old = read(workdir, BIAS)
    snakemake(workdir, BIAS, "--forcerun", BIAS)
    assert read(workdir, BIAS)["datasetId"] != old["datasetId"]
    return workdir, old


def test_every_product_downstream_of_a_rebuilt_bias_is_stale_naming_it(rebuilt_bias):
    workdir, _ = rebuilt_bias
    code, rows = products(workdir)
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


def test_stale_products_are_exactly_the_jobs_a_dry_run_would_rerun(rebuilt_bias):
    workdir, _ = rebuilt_bias
    _, rows = products(workdir)
    stale = {paths.sentinel(r["step"], r["epoch"], r["camera"]) for r in rows if r["state"] == "stale"}
    assert stale == dry_run_step_jobs(workdir) and len(stale) == len(DOWNSTREAM)


def test_table_and_summary_say_stale_and_how_to_rebuild(rebuilt_bias):
    workdir, _ = rebuilt_bias
    table = run(["pfscalib", "status"], cwd=workdir)
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["run1", "b1", "pass", *["STALE"] * (len(STEP_NAMES) - 1)]
    command = f"snakemake --cores 2 all -R {DARK}"
    note = f"run1: {len(DOWNSTREAM)} stale, built before bias b1 was rebuilt; to rebuild:"
    assert lines[lines.index(note) + 1] == f"  {command}"
    summary = run(["pfscalib", "summary"], cwd=workdir)
    assert summary.returncode == 1
    assert "b1 dark STALE, flat STALE, bootstrap STALE, detectorMap STALE, fiberProfiles STALE, fiberNorms STALE" in (
        summary.stdout
    )
    assert f"  {note}\n    {command}\n" in summary.stdout


def test_the_printed_command_rebuilds_exactly_the_stale_products_and_clears_stale(rebuilt_bias):
    workdir, old_bias = rebuilt_bias
    before = {(step, unit): read(workdir, paths.sentinel(step, "run1", unit))["datasetId"] for step, unit in DOWNSTREAM}
    summary = run(["pfscalib", "summary"], cwd=workdir).stdout
    command = shlex.split(re.search(r"^ +(snakemake .*)$", summary, re.M)[1])
    assert command[:3] == ["snakemake", "--cores", "2"]
    snakemake(workdir, *command[3:])
    for step, unit in DOWNSTREAM:  # each rebuilt from the new bias
        assert read(workdir, paths.sentinel(step, "run1", unit))["datasetId"] != before[(step, unit)]
    assert read(workdir, DARK)["inputs"] == {BIAS: read(workdir, BIAS)["datasetId"]} != {BIAS: old_bias["datasetId"]}
    code, rows = products(workdir)
    assert code == 0 and not [r for r in rows if r["state"] == "stale"], rows
    assert dry_run_step_jobs(workdir) == set()


def test_staleness_propagates_over_every_recorded_input_and_names_each_root(tmp_path):
    """Without a run: b1's and b2's biases both rebuilt, b2's dark rebuilt since too; the b arm's fiberNorms
    reads both cameras' chains. A sentinel without `inputs` (written before they were recorded) is not judged."""
    from pfscalib.tools.status import rebuild_command, staleness

    chain = [s for s in STEP_NAMES if s != "fiberNorms"]
    ids = {}  # sentinel -> its datasetId now
    recorded = {}  # sentinel -> {input sentinel: datasetId when it was built}
    for camera in ("b1", "b2"):
        for before, step in zip([None, *chain], chain):
            ids[paths.sentinel(step, "run1", camera)] = f"{step}-{camera}"
            if before:
                need = paths.sentinel(before, "run1", camera)
                recorded[paths.sentinel(step, "run1", camera)] = {need: f"{before}-{camera}"}
    norms = paths.sentinel("fiberNorms", "run1", "b")
    ids[norms] = "norms"
    recorded[norms] = {paths.sentinel("fiberProfiles", "run1", c): f"fiberProfiles-{c}" for c in ("b1", "b2")}
    ids[paths.sentinel("bias", "run1", "b1")] = ids[paths.sentinel("bias", "run1", "b2")] = "new"
    ids[paths.sentinel("dark", "run1", "b2")] = "dark-b2-new"
    recorded[paths.sentinel("dark", "run1", "b2")] = {paths.sentinel("bias", "run1", "b2"): "new"}
    sentinels = {
        tmp_path / p: {"datasetId": i, **({"inputs": recorded[p]} if p in recorded else {})} for p, i in ids.items()
    }
    del sentinels[tmp_path / paths.sentinel("detectorMap", "run1", "b1")]["inputs"]  # an old sentinel

    stale = staleness(sentinels, tmp_path)

    flat_b2 = paths.sentinel("flat", "run1", "b2")
    assert set(stale) == {paths.sentinel(s, "run1", "b1") for s in ("dark", "flat", "bootstrap")} | {
        paths.sentinel(s, "run1", "b2") for s in chain[2:]
    } | {norms}
    assert stale[paths.sentinel("bootstrap", "run1", "b1")].replaced == ("bias b1",)
    assert stale[paths.sentinel("bootstrap", "run1", "b2")].replaced == ("dark b2",)
    assert stale[flat_b2].roots == (flat_b2,)
    assert set(stale[norms].replaced) == {"dark b2"} and stale[norms].roots == (flat_b2,)
    assert rebuild_command(norms, stale[norms].roots) == f"snakemake --cores 2 {norms} -R {flat_b2}"
