"""Issue #5: resume after SIGKILL at every point of every step kind, atomic re-certification."""

from __future__ import annotations

import json
import os

import pytest
from lsst.daf.butler import Butler, CollectionType

from pfscalib.internals.faults import FAULT_POINTS
from pfscalib.job import butler as butlerops
from pfscalib.plan.steps import STEP_NAMES, STEPS

from helpers import calib_collection, certifications, snakemake, workdir_config

CAMERA = "b1"
UNITS = {step: ("b" if STEPS[step].per_arm else CAMERA) for step in STEP_NAMES}


def expected_keys() -> set:
    """What a clean run certifies for one camera and epoch run1."""
    keys = set()
    for step in STEP_NAMES:
        unit = UNITS[step]
        data_id = {"arm": unit[0], "instrument": "PFS", **({} if STEPS[step].per_arm else {"spectrograph": 1})}
        keys.add((STEPS[step].certified_as, tuple(sorted(data_id.items())), "2025-03-01T00:00:00"))
    return keys


# A step kind: the fields of pfscalib.plan.steps.Step that change what a job does after pipetask (where it
# certifies, a copied product in a nested RUN, the profiles_run it reads, a per-arm data ID). dark and flat
# are bias's kind: one step per kind, the first in the chain.
KIND = ("outside_calib_chain", "copies_product", "profile_groups", "per_arm")


def first_of_each_kind() -> list[str]:
    kinds: dict[tuple, str] = {}
    for step in STEP_NAMES:
        kinds.setdefault(tuple(getattr(STEPS[step], field) for field in KIND), step)
    return list(kinds.values())


KIND_STEPS = first_of_each_kind()
# The job's own points for every kind; the registry's (inside an SQLite commit, between pipetask's collection
# commits, after the sentinel) for the first step and the one that copies its product, which keeps the
# suite's time (each is also reproduced without the seam in test_recovery.py).
EVERY_KIND = ("before-pipetask", "pipetask", "after-pipetask", "certify", "clean")
EXPECTED = [(p, s) for s in KIND_STEPS for p in FAULT_POINTS if p in EVERY_KIND or s in ("bias", "detectorMap")]


@pytest.fixture(scope="module")
def faulted_run(tmp_path_factory):
    """Kill jobs once at each fault point (before pipetask creates its RUN, inside an SQLite commit, between
    pipetask's collection commits, during pipetask, after it, inside the certification transaction, during
    clean, after the sentinel). Each killed job is started again by Snakemake's retries, as the profiles do
    (a job resumes the same way under a new Snakemake: test_random_kill kills whole runs); the same command is
    run again if a run still fails. Returns the work directory and the failed job attempts."""
    workdir = workdir_config(tmp_path_factory.mktemp("faults"), cameras=[CAMERA], epochs=("run1",))
    faults = [f"{p}@/{s}/" for p, s in EXPECTED]
    env = {**os.environ, "PFSCALIB_FAULT": ",".join(faults), "PFSCALIB_FAULT_DIR": str(workdir / "faults")}
    retries = max(sum(1 for _, s in EXPECTED if s == step) for step in STEP_NAMES)  # a job's faults
    failures = 0
    for _ in range(3):
        proc = snakemake(workdir, "--retries", str(retries), env=env, check=False)
        failures += (proc.stdout + proc.stderr).count("Error in rule ")
        if proc.returncode == 0:
            break
    else:
        raise AssertionError(f"did not recover:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return workdir, failures


def test_every_fault_point_of_every_step_kind_was_hit(faulted_run):
    workdir, failures = faulted_run
    markers = {p.name for p in (workdir / "faults").iterdir()}
    assert markers == {f"{point}--results_state_run1_{step}_{UNITS[step]}.json" for point, step in EXPECTED}
    assert KIND_STEPS == ["bias", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"]
    assert failures == len(EXPECTED) == 5 * len(KIND_STEPS) + 3 * 2


def test_state_after_faults_equals_a_clean_run(faulted_run):
    workdir, _ = faulted_run
    repo = workdir / "results/demo/repo"
    certs = certifications(repo)
    assert set(certs) == expected_keys()
    butler = Butler.from_config(str(repo))
    for step in STEP_NAMES:
        s, unit = STEPS[step], UNITS[step]
        sentinel = json.loads((workdir / f"results/certified/run1/{step}/{unit}.json").read_text())
        associations = butlerops.certified(butler, calib_collection(step), s.certified_as)
        assert len(associations) == 1, step  # certified exactly once, no duplicates
        assert str(associations[0]["ref"].id) == sentinel["datasetId"]
        chain = f"u/demo/run1/{step}/{unit}"
        runs = [
            c
            for c in butler.registry.getCollectionChain(chain)
            if c.startswith(f"{chain}/") and butler.registry.getCollectionType(c) is CollectionType.RUN
        ]
        assert runs == [sentinel["run"].removesuffix("/certify")], step  # resumed in place: no orphan runs
        for intermediate in s.clean:
            assert not list(butler.query_datasets(intermediate, collections=runs, find_first=False, explain=False)), (
                step,
                intermediate,
            )
            # counted before cleaning, once: the job killed while cleaning does not undercount on its rerun
            assert sentinel["written"].get(intermediate, [0])[0] > 0, (step, intermediate, sentinel["written"])
    assert not list((workdir / "results/state").rglob("*.json"))  # no half-done job left behind


def test_failed_recertification_keeps_the_old_one(faulted_run):
    workdir, _ = faulted_run
    repo = workdir / "results/demo/repo"
    sentinel = workdir / "results/certified/run1/bias/b1.json"
    before = certifications(repo)
    env = {**os.environ, "PFSCALIB_FAULT": "certify", "PFSCALIB_FAULT_DIR": str(workdir / "faults-recertify")}
    proc = snakemake(workdir, "--forcerun", "results/certified/run1/bias/b1.json", env=env, check=False)
    assert proc.returncode != 0
    assert certifications(repo) == before  # the transaction rolled back: still certified, same dataset
    assert not sentinel.exists()  # and no sentinel claims the new build
    proc = snakemake(workdir, "results/certified/run1/bias/b1.json", check=False)  # the bias again, alone
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = certifications(repo)
    assert set(after) == set(before)
    bias_key = next(k for k in before if k[0] == "bias")
    assert after[bias_key] != before[bias_key] and json.loads(sentinel.read_text())["datasetId"] == after[bias_key][0]
