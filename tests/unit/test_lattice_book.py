"""The L2 book accumulator: top-5 depth, time-weighted OBI, median quote depth."""

from __future__ import annotations

import pytest

from processors.lattice.book import BookAccumulator, sample

L = 1_756_904_160_000
S = L - 60_000


def _levels(*pairs: tuple[str, str]) -> list[dict[str, object]]:
    return [{"px": px, "sz": sz, "n": 1} for px, sz in pairs]


def test_sample_uses_the_top_five_levels():
    bids = _levels(("100", "1"), ("99", "1"), ("98", "1"), ("97", "1"), ("96", "1"), ("95", "100"))
    asks = _levels(("101", "2"))
    s = sample(S, bids, asks)
    assert (s.bid_depth, s.ask_depth) == (5.0, 2.0)
    assert s.quote_depth == pytest.approx(100 + 99 + 98 + 97 + 96 + 202)
    assert s.obi == pytest.approx(5 / 7)


def test_time_weighted_obi_with_carry_and_median_depth():
    carry = sample(S - 10_000, _levels(("100", "3")), _levels(("101", "1")))  # obi 0.75 for 20 s
    acc = BookAccumulator(L, carry=carry)
    acc.update(sample(S + 20_000, _levels(("100", "1")), _levels(("101", "1"))))  # 0.5 for 30 s
    acc.update(sample(S + 50_000, _levels(("100", "1")), _levels(("101", "3"))))  # 0.25 for 10 s
    bar = acc.build()
    assert bar.obi_top5_mean_m_1 == pytest.approx((0.75 * 20 + 0.5 * 30 + 0.25 * 10) / 60)
    # The carried snapshot belongs to the previous minute: median over this minute's two.
    assert bar.depth_top5_quote_median_m_1 == pytest.approx((201 + 403) / 2)
    assert bar.book_updates == 2


def test_no_book_is_null():
    bar = BookAccumulator(L).build()
    assert (bar.obi_top5_mean_m_1, bar.depth_top5_quote_median_m_1) == (None, None)
