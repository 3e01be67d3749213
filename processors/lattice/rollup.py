"""Rollups 1m -> 15m -> 1h by recomputation, never by averaging (spec 002 §15.2-15.3).

Folds the trade-built fields of contiguous constituent bars and the DQ of the window. Sums run
in minute order, so ``v_total`` of a window equals the ordered sum of its minutes exactly (the
§15.5 validation). A window is complete only when every constituent is present (no partial
rollups, §2.1).
"""

from __future__ import annotations

from collections.abc import Sequence

from processors.lattice.trades import TradeBar

#: Constituents per rollup: 15 one-minute bars make a 15m bar, 4 fifteen-minute bars an hour.
PARTS = {"15m": 15, "1h": 4}
PARTIAL_SHARE = 0.10  # >= 10 % of constituents not ok -> partial
STALE_SHARE = 0.30  # >= 30 % -> stale


class RollupError(ValueError):
    """A rollup was asked of the wrong number of constituents."""


def fold_trades(tf: str, parts: Sequence[TradeBar]) -> TradeBar:
    """Fold the constituents of one ``tf`` window, oldest first.

    Raises:
        RollupError: Not exactly ``PARTS[tf]`` constituents.
    """
    if len(parts) != PARTS[tf]:
        raise RollupError(f"a {tf} rollup needs {PARTS[tf]} bars, got {len(parts)}")
    traded = [p for p in parts if p.trade_count_m_1 > 0]
    highs = [p.high for p in traded if p.high is not None]
    lows = [p.low for p in traded if p.low is not None]
    v_buy = v_sell = v_total = cvd = v_base = 0.0
    count = 0
    for p in parts:
        v_buy += p.v_buy_m_1
        v_sell += p.v_sell_m_1
        v_total += p.v_total_m_1
        cvd += p.cvd_delta_m_1
        v_base += p.v_base_m_1
        count += p.trade_count_m_1
    return TradeBar(
        open=traded[0].open if traded else None,
        high=max(highs) if highs else None,
        low=min(lows) if lows else None,
        close=traded[-1].close if traded else None,
        v_buy_m_1=v_buy,
        v_sell_m_1=v_sell,
        v_total_m_1=v_total,
        trade_count_m_1=count,
        cvd_delta_m_1=cvd,
        v_base_m_1=v_base,
        first_trade_ts=traded[0].first_trade_ts if traded else None,
        last_trade_ts=traded[-1].last_trade_ts if traded else None,
    )


def fold_dq(statuses: Sequence[str]) -> str:
    """Return the window's ``dq_status`` from its constituents' (§15.3: X = 10 %, Y = 30 %)."""
    if not statuses:
        return "stale"
    bad = sum(s != "ok" for s in statuses) / len(statuses)
    if bad >= STALE_SHARE:
        return "stale"
    if bad >= PARTIAL_SHARE:
        return "partial"
    return "ok"
