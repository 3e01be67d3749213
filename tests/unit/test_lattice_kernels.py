"""Feature kernels: hand-computed values and NULL rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.lattice.kernels import (
    DAY_MS,
    atr_proxy,
    cvd_level,
    ols_slope,
    ret,
    time_weighted_mean,
)

MIDNIGHT = 1_756_944_000_000  # 2025-09-04T00:00:00Z
assert MIDNIGHT % DAY_MS == 0


def test_returns_and_their_null_rules():
    assert ret(101.0, 100.0) == pytest.approx(0.01)
    assert ret(99.0, 100.0) == pytest.approx(-0.01)
    assert ret(None, 100.0) is None
    assert ret(100.0, None) is None
    assert ret(100.0, 0.0) is None


def test_atr_proxy():
    assert atr_proxy(102.0, 98.0, 100.0) == pytest.approx(0.04)
    assert atr_proxy(None, 98.0, 100.0) is None
    assert atr_proxy(102.0, 98.0, None) is None


def test_cvd_level_resets_with_the_first_bar_of_the_utc_day():
    last_of_day = cvd_level(500.0, MIDNIGHT - 60_000, 25.0, MIDNIGHT)  # bar [23:59, 00:00)
    assert last_of_day == 525.0
    first_of_next = cvd_level(last_of_day, MIDNIGHT, 7.0, MIDNIGHT + 60_000)  # [00:00, 00:01)
    assert first_of_next == 7.0
    assert cvd_level(first_of_next, MIDNIGHT + 60_000, -2.0, MIDNIGHT + 120_000) == 5.0
    assert cvd_level(None, None, 3.0, MIDNIGHT + 60_000) == 3.0


def test_slope_hand_computed():
    assert ols_slope([0.0, 1.0, 2.0, 3.0, 4.0]) == pytest.approx(1.0)
    assert ols_slope([10.0, 10.0, 10.0]) == pytest.approx(0.0)
    assert ols_slope([1.0, 3.0, 2.0, 5.0, 4.0]) == pytest.approx(0.8)
    assert ols_slope([1.0, None, 3.0]) is None
    assert ols_slope([1.0]) is None


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=20))
def test_slope_matches_numpy_polyfit(values):
    expected = np.polyfit(np.arange(len(values)), np.array(values), 1)[0]
    assert ols_slope(values) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_time_weighted_mean_with_carry_and_unknowns():
    samples = [(-5, 1.0), (15, None), (30, 2.0)]  # 1 for [0,15), unknown [15,30), 2 for [30,60)
    assert time_weighted_mean(samples, 0, 60) == pytest.approx((1 * 15 + 2 * 30) / 45)
    assert time_weighted_mean([], 0, 60) is None
    assert time_weighted_mean([(70, 5.0)], 0, 60) is None  # nothing live in the window
