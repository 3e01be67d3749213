"""The BBO accumulator: hand-computed time weights, p95, realized vol, NULL rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.lattice.quotes import Quote, QuoteAccumulator

L = 1_756_904_160_000  # label: minute [L - 60 s, L)
S = L - 60_000


def test_time_weighted_spread_counts_the_carried_quote():
    acc = QuoteAccumulator(L, carry=Quote(S - 5_000, 100.0, 101.0))  # spread 1 for 15 s
    acc.update(Quote(S + 15_000, 100.0, 102.0))  # spread 2 for 45 s
    bar = acc.build()
    assert bar.spread_mean_m_1 == pytest.approx((1 * 15 + 2 * 45) / 60)
    assert bar.mid_close == 101.0
    assert bar.book_staleness_ms == 45_000
    assert bar.quote_updates == 1


def test_p95_matches_numpy_and_needs_samples():
    spreads = [1.0, 2.0, 3.0, 4.0, 10.0]
    acc = QuoteAccumulator(L, min_samples=5)
    for i, s in enumerate(spreads):
        acc.update(Quote(S + i * 1000, 100.0, 100.0 + s))
    assert acc.build().spread_p95_m_1 == pytest.approx(float(np.percentile(spreads, 95)))
    few = QuoteAccumulator(L, min_samples=5)
    few.update(Quote(S, 100.0, 101.0))
    assert few.build().spread_p95_m_1 is None


def test_realized_vol_from_consecutive_mids():
    acc = QuoteAccumulator(L, carry=Quote(S - 1, 99.0, 101.0))  # mid 100
    acc.update(Quote(S + 1, 100.0, 102.0))  # mid 101
    acc.update(Quote(S + 2, 98.0, 100.0))  # mid 99
    expected = math.sqrt(math.log(101 / 100) ** 2 + math.log(99 / 101) ** 2)
    assert acc.build().rv_m_1 == pytest.approx(expected)


def test_no_quotes_means_nulls():
    bar = QuoteAccumulator(L).build()
    assert (bar.mid_close, bar.spread_mean_m_1, bar.rv_m_1, bar.book_staleness_ms) == (
        None,
        None,
        None,
        None,
    )


def test_one_sided_or_crossed_book_has_no_mid_or_spread():
    acc = QuoteAccumulator(L)
    acc.update(Quote(S + 10, None, 101.0))
    acc.update(Quote(S + 20, 102.0, 101.0))  # crossed
    bar = acc.build()
    assert bar.mid_close is None
    assert bar.spread_mean_m_1 is None


@given(
    st.lists(
        st.tuples(st.integers(0, 59_999), st.floats(1, 1000), st.floats(0.001, 10)),
        min_size=1,
        max_size=30,
    )
)
def test_mean_spread_lies_between_the_extremes(rows):
    acc = QuoteAccumulator(L)
    for ts, bid, spread in rows:
        acc.update(Quote(S + ts, bid, bid + spread))
    bar = acc.build()
    spreads = [(bid + s) - bid for _t, bid, s in rows]
    if bar.spread_mean_m_1 is not None:
        assert min(spreads) - 1e-9 <= bar.spread_mean_m_1 <= max(spreads) + 1e-9
