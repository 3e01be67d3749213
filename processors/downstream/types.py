"""The values the downstream processors pass each other (pure data, no I/O).

Time is stream time in epoch milliseconds (``*_ms``); a minute is named by its end, like the
lattice's bars (the bar labelled t covers [t-60 s, t)). Money is quote currency (USD); ``r`` values
are multiples of a trade's initial risk R (entry to stop, in money: ``risk_usd``).

Every type has ``to_json`` / ``from_json`` with plain JSON data, so state round-trips through a
table and a replay reproduces it: no floats are rounded, no dict order is relied on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Side = Literal["long", "short"]
Route = Literal["paper", "canary", "full"]

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def sign(side: Side) -> int:
    """+1 for a long, -1 for a short."""
    return 1 if side == "long" else -1


def _to_json(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@dataclass(frozen=True, slots=True)
class Quote:
    """One asset's market in one sealed minute (from the lattice row of that minute).

    ``high``/``low`` bound every trade price of the minute (stops and targets touched inside it
    fill); ``bid``/``ask`` are the book at the minute's close (None: no book, use ``close``).
    """

    asset_uid: int
    symbol: str
    minute_ms: int
    open: float
    high: float
    low: float
    close: float
    bid: float | None = None
    ask: float | None = None
    atr: float | None = None  # average true range in price units (None while warming up)
    funding_rate: float | None = None  # per funding interval, fraction (longs pay when > 0)
    cvd_slope_z: float | None = None  # for the exit advisor's hostile-flow rule
    absorp_score: float | None = None  # 0..1, absorption on the side against the trade

    def to_json(self) -> dict[str, Any]:
        """Return the value as plain JSON data."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quote:
        """Rebuild the value from :meth:`to_json` data."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Signal:
    """An event that may open a trade: the part of an ``alpha.events.v0`` payload sizing uses."""

    event_id: str
    asset_uid: int
    symbol: str  # exchange symbol, e.g. "BTC"; the base used by CLUSTER_MAP
    tf: str  # "1m" | "15m" | "1h"
    subtype: str
    severity: int
    exchange_ts: int  # ms, the event's minute
    side: Side

    def to_json(self) -> dict[str, Any]:
        """Return the value as plain JSON data."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signal:
        """Rebuild the value from :meth:`to_json` data."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Trade:
    """An open (or pending) position opened by one decision. Stops only tighten, targets widen."""

    trade_id: str  # the decision's id: deterministic from the event id
    asset_uid: int
    symbol: str
    cluster: str
    tf: str
    side: Side
    qty: float
    entry_price: float
    stop: float
    take_profit: float
    risk_usd: float  # 1 R in money: qty * |entry - initial stop|
    risk_pct: float  # share of equity risked at entry (after the HRP scale)
    leverage: float
    opened_ms: int
    route: Route
    initial_stop: float
    last_adjust_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the value as plain JSON data."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trade:
        """Rebuild the value from :meth:`to_json` data."""
        return cls(**data)

    def unrealised_r(self, price: float) -> float:
        """Unrealised PnL at ``price`` in R (fees left out)."""
        per_unit = abs(self.entry_price - self.initial_stop)
        if per_unit <= 0:
            return 0.0
        return sign(self.side) * (price - self.entry_price) / per_unit


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A trade that ended: its outcome feeds the loss streak, the day's PnL and the CVaR samples."""

    trade: Trade
    exit_price: float
    closed_ms: int
    pnl_usd: float  # after fees
    fees_usd: float
    r: float  # pnl_usd / trade.risk_usd
    reason: str  # "stop" | "take_profit" | "early_close" | "max_hold" | "eod" | "kill_switch" ...

    def to_json(self) -> dict[str, Any]:
        """Return the value as plain JSON data (the trade nested)."""
        data = _to_json(self)
        data["trade"] = self.trade.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClosedTrade:
        """Rebuild the value from :meth:`to_json` data."""
        return cls(**{**data, "trade": Trade.from_json(data["trade"])})
