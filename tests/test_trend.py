"""Trend-relative judgement (issue 31): a camera's metric against its own earlier certified builds."""

from __future__ import annotations

import pytest

from pfscalib.job import trend

EPOCHS = {
    "run1": {"begin": "2025-01-01T00:00:00"},
    "run2": {"begin": "2025-02-01T00:00:00"},
    "run3": {"begin": "2025-03-01T00:00:00"},
    "run0": {"begin": "2024-12-01T00:00:00"},  # listed last, earliest in time
}


def sentinel(epoch: str, value: float, camera: str = "b1", step: str = "bias") -> dict:
    data_id = {"instrument": "PFS", "arm": camera[0], "spectrograph": int(camera[1])}
    return {"step": step, "epoch": epoch, "dataId": data_id, "quality": {"metrics": {"bias.mean": value}}}


def test_a_level_drifting_15_percent_in_the_third_epoch_is_flagged_inside_the_fixed_limits():
    # bias.mean's fixed limits are |x| < 10 ADU (yellow): 2.3 ADU passes them, the trend flags it
    builds = [sentinel("run1", 2.0), sentinel("run2", 2.0), sentinel("run3", 2.3)]
    bands = trend.judge(builds[2], builds, EPOCHS)
    assert [b.metric for b in bands] == ["bias.mean"] and bands[0].outside
    assert trend.verdict(bands) == "warn"
    assert bands[0].words() == "bias.mean 2.3 is above its trend 1.8..2.2 (median of 2 earlier build(s) 2)"
    steady = sentinel("run3", 2.1)
    assert trend.verdict(trend.judge(steady, [*builds[:2], steady], EPOCHS)) == "pass"


def test_the_first_builds_have_no_trend_and_other_cameras_and_later_epochs_do_not_count():
    builds = [sentinel("run0", 2.0, camera="r1"), sentinel("run2", 9.0), sentinel("run1", 2.0)]
    assert trend.verdict(trend.judge(builds[2], builds, EPOCHS)) == "none"  # run2 is later, r1 another camera
    second = [sentinel("run0", 2.0), sentinel("run1", 9.0)]  # one earlier build: the gate's incumbent, no trend
    assert trend.verdict(trend.judge(second[1], second, EPOCHS)) == "none"
    assert trend.epoch_order(EPOCHS) == ["run0", "run1", "run2", "run3"]


def test_the_band_widens_to_the_scatter_of_a_noisy_history():
    values = [1.0, 1.3, 0.8, 1.2, 0.9]
    centre, low, high = trend.band(values, {**trend.DEFAULTS})
    assert centre == 1.0
    mad = 0.2  # |values - 1.0| = 0, .3, .2, .2, .1 -> median 0.2
    assert (low, high) == pytest.approx((1.0 - 3 * 1.4826 * mad, 1.0 + 3 * 1.4826 * mad))
    assert trend.band([], trend.DEFAULTS) is None
    # the window keeps the last builds only
    assert trend.band([100.0, 1.0, 1.0], {**trend.DEFAULTS, "window": 2})[0] == 1.0
