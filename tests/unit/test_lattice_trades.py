"""The trade accumulator: hand-computed values and invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.lattice.trades import TradeAccumulator


def _t(px: str, sz: str, side: str, ts: int) -> dict[str, object]:
    return {"tid": ts, "px": px, "sz": sz, "side": side, "exchange_ts": ts}


def test_hand_computed_minute():
    acc = TradeAccumulator()
    acc.update([_t("100", "2", "buy", 1_000), _t("102", "1", "sell", 2_000)])
    acc.update([_t("99", "3", "buy", 3_000), _t("101", "0.5", "sell", 4_000)])
    bar = acc.build()
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 102.0, 99.0, 101.0)
    assert bar.v_buy_m_1 == 200 + 297
    assert bar.v_sell_m_1 == 102 + 50.5
    assert bar.v_total_m_1 == pytest.approx(649.5)
    assert bar.cvd_delta_m_1 == pytest.approx(497 - 152.5)
    assert bar.trade_count_m_1 == 4
    assert bar.v_base_m_1 == 6.5
    assert (bar.first_trade_ts, bar.last_trade_ts) == (1_000, 4_000)


def test_open_and_close_follow_exchange_time_not_arrival():
    acc = TradeAccumulator()
    acc.update([_t("105", "1", "buy", 5_000)])
    acc.update([_t("100", "1", "buy", 1_000)])  # a late batch for an earlier instant
    bar = acc.build()
    assert (bar.open, bar.close) == (100.0, 105.0)


def test_empty_minute_has_no_prices_and_zero_volume():
    bar = TradeAccumulator().build()
    assert (bar.open, bar.high, bar.low, bar.close) == (None, None, None, None)
    assert (bar.v_total_m_1, bar.trade_count_m_1, bar.cvd_delta_m_1) == (0.0, 0, 0.0)


def test_reset_starts_over():
    acc = TradeAccumulator()
    acc.update([_t("1", "1", "buy", 1)])
    acc.reset()
    assert acc.build().trade_count_m_1 == 0


trades = st.lists(
    st.tuples(
        st.decimals("0.01", "100000", places=2),
        st.decimals("0.001", "1000", places=3),
        st.sampled_from(["buy", "sell"]),
        st.integers(0, 59_999),
    ),
    min_size=1,
    max_size=50,
)


@given(trades)
def test_ohlc_enclosure_and_volume_identities(rows):
    acc = TradeAccumulator()
    acc.update([_t(str(px), str(sz), side, ts) for px, sz, side, ts in rows])
    bar = acc.build()
    assert bar.low is not None
    assert bar.high is not None
    for price in (bar.open, bar.close):
        assert price is not None
        assert bar.low <= price <= bar.high
    assert bar.trade_count_m_1 == len(rows)
    assert bar.v_total_m_1 == pytest.approx(bar.v_buy_m_1 + bar.v_sell_m_1)
    assert bar.cvd_delta_m_1 == pytest.approx(bar.v_buy_m_1 - bar.v_sell_m_1)


@given(trades, st.integers(1, 10))
def test_batching_does_not_change_the_bar(rows, size):
    items = [_t(str(px), str(sz), side, ts) for px, sz, side, ts in rows]
    whole = TradeAccumulator()
    whole.update(items)
    chunked = TradeAccumulator()
    for i in range(0, len(items), size):
        chunked.update(items[i : i + size])
    assert chunked.build() == whole.build()
