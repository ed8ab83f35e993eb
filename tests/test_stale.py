"""Issue #32 (1): status knows what is stale, without a run: how staleness propagates over the inputs each
sentinel recorded, and the command that rebuilds it. The same on the whole demo (b1's bias rebuilt alone, then
status, `snakemake -n` and the printed command) is in test_workflow_e2e, on its run."""

from __future__ import annotations

from pfscalib.plan import paths
from pfscalib.plan.steps import STEP_NAMES


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
