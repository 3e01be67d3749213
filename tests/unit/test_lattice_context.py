"""The context accumulator: OI freshness, hourly funding, basis sums, funding clock."""

from __future__ import annotations

import pytest

from processors.lattice.context import ContextAccumulator, ContextCarry

L = 1_756_904_160_000
S = L - 60_000


def test_oi_samples_of_the_minute():
    acc = ContextAccumulator(L)
    for ts, oi in (
        (S + 1_000, "100"),
        (S + 30_000, "90"),
        (S + 50_000, "120"),
        (S + 55_000, "110"),
    ):
        acc.update(ts, {"open_interest": oi})
    bar = acc.build()
    assert (bar.oi_open, bar.oi_close, bar.oi_min, bar.oi_max) == (100.0, 110.0, 90.0, 120.0)
    assert bar.oi_staleness_ms == 5_000
    assert bar.carry.oi == 110.0


def test_stale_oi_is_null_but_its_age_is_reported():
    bar = ContextAccumulator(L, carry=ContextCarry(oi=5.0, oi_ts=L - 25_000)).build()
    assert bar.oi_close is None
    assert bar.oi_staleness_ms == 25_000
    fresh = ContextAccumulator(L, carry=ContextCarry(oi=5.0, oi_ts=L - 15_000)).build()
    assert (fresh.oi_open, fresh.oi_close) == (5.0, 5.0)


def test_funding_is_hourly_and_carries():
    acc = ContextAccumulator(L)
    acc.update(S + 1, {"funding": "0.0008", "funding_interval_ms": 8 * 3_600_000})
    bar = acc.build()
    assert bar.funding_h_1 == pytest.approx(0.0001)
    later = ContextAccumulator(L + 60_000, carry=bar.carry).build()
    assert later.funding_h_1 == pytest.approx(0.0001)


def test_basis_in_basis_points_and_funding_clock():
    acc = ContextAccumulator(L)
    acc.update(S + 1, {"mark_px": "101", "oracle_px": "100", "next_funding_ts": L + 90_500})
    acc.update(S + 2, {"mark_px": "99", "oracle_px": "100"})
    acc.update(S + 3, {"mark_px": "99", "oracle_px": "0"})  # no index: no sample
    bar = acc.build()
    assert bar.basis_bp_sum == pytest.approx(100 - 100)
    assert bar.basis_bp_count == 2
    assert bar.time_to_next_funding_sec == 90


def test_nothing_known_is_all_null():
    bar = ContextAccumulator(L).build()
    assert (bar.oi_close, bar.oi_staleness_ms, bar.funding_h_1, bar.time_to_next_funding_sec) == (
        None,
        None,
        None,
        None,
    )
    assert bar.basis_bp_count == 0
