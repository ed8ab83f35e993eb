"""Issue #33: the timing twin of the demo (off by default; each quantum sleeps and pads its real-site figures x
scale) and `pfscalib plan`'s season for it. The twin on the real SLURM under a binding disk budget is in
tests/test_slurm.py (one cluster for both SLURM tests)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits

from pfscalib.demo.twin import PAD_EXTNAME
from pfscalib.plan.realsite import duration

from helpers import TWIN_SCALE, predicted, twin_workdir

MB = 1_000_000


def test_twin_is_off_by_default_and_sleeps_and_pads_its_scaled_figures(tmp_path, monkeypatch):
    from pfscalib.demo import twin
    from pfscalib.plan.realsite import TWIN_ENV, padded_mb

    class Quantum:
        def getName(self):
            return "bootstrap"

        def runQuantum(self, butlerQC, inputRefs, outputRefs):
            return "ran"

    timed = twin.timed(Quantum)
    monkeypatch.delenv(TWIN_ENV, raising=False)
    started = time.monotonic()
    assert timed().runQuantum(None, None, None) == "ran" and time.monotonic() - started < 0.05  # off: no sleep
    monkeypatch.setenv(TWIN_ENV, "0.002")
    started = time.monotonic()
    timed().runQuantum(None, None, None)
    assert time.monotonic() - started >= duration("bootstrap").seconds * 0.002  # 270 s x 0.002 = 0.54 s

    ref = SimpleNamespace(datasetType=SimpleNamespace(name="postISRCCD"), dataId=SimpleNamespace(mapping={"arm": "b"}))
    path = tmp_path / "x.fits"
    fits.PrimaryHDU(np.zeros((16, 16), dtype=np.float32)).writeto(path)
    twin.pad(str(path), ref)  # what the formatter passes: the dataset type and data ID
    target = padded_mb("postISRCCD", "b") * 0.002 * MB
    assert target - 2880 <= path.stat().st_size <= target + 2 * 2880
    with fits.open(path) as hdus:  # the demo's reader sees the image unchanged
        assert hdus[0].data.shape == (16, 16) and hdus[PAD_EXTNAME].header["EXTNAME"] == PAD_EXTNAME


def test_plan_predicts_the_twin_season_from_the_figures(tmp_path, monkeypatch):
    workdir = twin_workdir(tmp_path)
    wf, free = predicted(workdir, monkeypatch, None)
    largest = max(j.disk_mb for j in wf.disk.jobs())
    _, bound = predicted(workdir, monkeypatch, largest)
    for season in (free, bound):
        assert season.makespan >= season.bound - 1e-6 and season.jobs == 14 and not season.stuck
        steps = [j.disk.step for j in season.critical_path]
        assert steps == ["bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"]
    assert bound.peak_held_mb <= largest < free.peak_held_mb and bound.makespan > free.makespan
    # the twin's images count at their real size x scale (above the demo's own 0.27 MB)
    assert wf.disk.size("postISRCCD", "b") == pytest.approx(205.3 * TWIN_SCALE * MB, rel=0.01)
