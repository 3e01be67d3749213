"""Rollups by recomputation: the 15m bar equals the bar of all its trades; sums are exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.lattice.rollup import RollupError, fold_dq, fold_trades
from processors.lattice.trades import TradeAccumulator, TradeBar

M = 60_000

minutes = st.lists(
    st.lists(
        st.tuples(
            st.decimals("1", "1000", places=2),
            st.decimals("0.01", "10", places=2),
            st.sampled_from(["buy", "sell"]),
            st.integers(0, M - 1),
        ),
        max_size=6,
    ),
    min_size=15,
    max_size=15,
)


def _bars(rows: list[list[tuple[object, object, str, int]]]) -> tuple[list[TradeBar], TradeBar]:
    bars, whole = [], TradeAccumulator()
    for i, minute in enumerate(rows):
        acc = TradeAccumulator()
        trades = [
            {"px": str(px), "sz": str(sz), "side": side, "exchange_ts": i * M + ts}
            for px, sz, side, ts in minute
        ]
        acc.update(trades)
        whole.update(trades)
        bars.append(acc.build())
    return bars, whole.build()


@given(minutes)
def test_15m_equals_the_bar_of_all_its_trades(rows):
    bars, whole = _bars(rows)
    folded = fold_trades("15m", bars)
    assert (folded.open, folded.high, folded.low, folded.close) == (
        whole.open,
        whole.high,
        whole.low,
        whole.close,
    )
    assert folded.trade_count_m_1 == whole.trade_count_m_1
    assert folded.v_total_m_1 == pytest.approx(whole.v_total_m_1)
    # §15.5: the window's volume is exactly the ordered sum of its minutes.
    total = 0.0
    for b in bars:
        total += b.v_total_m_1
    assert folded.v_total_m_1 == total


@given(minutes)
def test_ohlc_enclosure_at_15m(rows):
    folded = fold_trades("15m", _bars(rows)[0])
    if folded.trade_count_m_1:
        assert folded.low is not None
        assert folded.high is not None
        assert folded.low <= (folded.open or 0) <= folded.high
        assert folded.low <= (folded.close or 0) <= folded.high


def test_wrong_number_of_parts():
    bar = TradeAccumulator().build()
    with pytest.raises(RollupError, match="needs 4 bars, got 3"):
        fold_trades("1h", [bar] * 3)


@pytest.mark.parametrize(
    ("bad", "status"),
    [(0, "ok"), (1, "ok"), (2, "partial"), (4, "partial"), (5, "stale"), (15, "stale")],
)
def test_dq_fold_thresholds(bad, status):
    assert fold_dq(["stale"] * bad + ["ok"] * (15 - bad)) == status
