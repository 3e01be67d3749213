"""The trade accumulator of one asset-minute (spec 002 §5.1-5.2, Appendix A).

``update / build / reset``, nothing else (STYLE.md: Bars). Prices come as the exchange's decimal
strings and are read as float64 once; sums run in record order, so the same records give the
same bits. Volumes are in quote currency (px x sz), as Appendix A defines ``v_*_m_1``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import compress
from typing import Any


@dataclass(frozen=True, slots=True)
class TradeBar:
    """Trade-built fields of one minute; prices are None when the minute had no trade."""

    open: float | None
    high: float | None
    low: float | None
    close: float | None
    v_buy_m_1: float
    v_sell_m_1: float
    v_total_m_1: float
    trade_count_m_1: int
    cvd_delta_m_1: float
    v_base_m_1: float
    first_trade_ts: int | None
    last_trade_ts: int | None


class TradeAccumulator:
    """Accumulate the trades of one asset-minute, in arrival order."""

    __slots__ = (
        "_base",
        "_close",
        "_count",
        "_first",
        "_high",
        "_last",
        "_low",
        "_open",
        "_vb",
        "_vs",
    )

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything (start of a minute)."""
        self._open: float | None = None
        self._close: float | None = None
        self._high = float("-inf")
        self._low = float("inf")
        self._vb = 0.0
        self._vs = 0.0
        self._base = 0.0
        self._count = 0
        self._first: int | None = None
        self._last: int | None = None

    def update(self, trades: Iterable[Mapping[str, Any]]) -> None:
        """Add trades (``md.raw.v0`` Trade dicts: px, sz, side, exchange_ts).

        Open is the earliest trade by exchange time and close the latest (ties: arrival order),
        so a batch that arrives out of order still gives the right open and close.
        """
        for t in trades:
            px, sz, ts = float(t["px"]), float(t["sz"]), int(t["exchange_ts"])
            notional = px * sz
            if t["side"] == "buy":
                self._vb += notional
            else:
                self._vs += notional
            self._base += sz
            self._count += 1
            self._high = max(self._high, px)
            self._low = min(self._low, px)
            if self._first is None or ts < self._first:
                self._first, self._open = ts, px
            if self._last is None or ts >= self._last:
                self._last, self._close = ts, px

    def update_columns(
        self, px: Sequence[float], sz: Sequence[float], ts: Sequence[int], buy: Sequence[bool]
    ) -> None:
        """Add trades given as columns (price, size, exchange time, taker buy), in arrival order.

        The same bits as :meth:`update` over the same trades when every price and size is a
        positive finite float (what :meth:`processors.lattice.minute.MinuteAcc.add_trades`
        lets through): the sums fold left in arrival order, the extremes and open/close pick
        what the one-by-one comparisons pick (open: the first of the earliest trades; close:
        the last of the latest). One pass of C-level loops per column instead of one Python
        iteration per trade: this is the hot path of dense trade batches.
        """
        n = len(px)
        if not n:
            return
        notional = list(map(operator.mul, px, sz))
        self._vb = reduce(operator.add, compress(notional, buy), self._vb)
        self._vs = reduce(operator.add, compress(notional, map(operator.not_, buy)), self._vs)
        self._base = reduce(operator.add, sz, self._base)
        self._count += n
        self._high = max(self._high, max(px))
        self._low = min(self._low, min(px))
        first = min(ts)
        if self._first is None or first < self._first:
            self._first, self._open = first, px[ts.index(first)]
        last = max(ts)
        if self._last is None or last >= self._last:
            at = n - 1 - list(reversed(ts)).index(last)
            self._last, self._close = last, px[at]

    def to_state(self) -> list[Any]:
        """Return the accumulator's scalars as JSON data (see :meth:`from_state`)."""
        return [
            self._open,
            self._close,
            self._high,
            self._low,
            self._vb,
            self._vs,
            self._base,
            self._count,
            self._first,
            self._last,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> TradeAccumulator:
        """Rebuild an accumulator from :meth:`to_state` data (it continues identically)."""
        acc = cls()
        (
            acc._open,
            acc._close,
            acc._high,
            acc._low,
            acc._vb,
            acc._vs,
            acc._base,
            acc._count,
            acc._first,
            acc._last,
        ) = data
        acc._high, acc._low = float(acc._high), float(acc._low)
        return acc

    def build(self) -> TradeBar:
        """Return the minute's trade fields (prices None without trades)."""
        traded = self._count > 0
        return TradeBar(
            open=self._open,
            high=self._high if traded else None,
            low=self._low if traded else None,
            close=self._close,
            v_buy_m_1=self._vb,
            v_sell_m_1=self._vs,
            v_total_m_1=self._vb + self._vs,
            trade_count_m_1=self._count,
            cvd_delta_m_1=self._vb - self._vs,
            v_base_m_1=self._base,
            first_trade_ts=self._first,
            last_trade_ts=self._last,
        )
