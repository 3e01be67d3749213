"""Paper orders and fills, canary routing and the realised-edge EWMA (spec 001, spec 004 P1-2).

The pieces of the paper executor (:mod:`processors.downstream.paper`) that are plain data or
plain arithmetic: the ``Order`` and ``Fill`` records, the pricing kernels (touch, mid, fee,
slippage and edge in basis points), the deterministic canary draw (spec 001 "Canary &
Rollback") and the per-regime realised-edge EWMA with its "widen" flag (spec 004 P1-2).

Prices are quote currency per unit, quantities base units, money USD, ``*_bps`` basis points
(1 bps = 1e-4), instants ``*_ms`` stream-time epoch milliseconds naming a minute by its end.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from packs.risk import RealisedEdge, Rollout
from processors.downstream.types import MINUTE_MS, Quote, Route, Side

OrderSide = Literal["buy", "sell"]
OrderKind = Literal["entry", "exit"]
OrderType = Literal["limit", "market"]
OrderStatus = Literal["open", "filled", "cancelled", "rejected"]
Liquidity = Literal["maker", "taker"]

BPS = 1e-4
_DRAW_SCALE = float(2**64)


def order_side(side: Side, kind: OrderKind) -> OrderSide:
    """Return the order side that opens (``entry``) or closes (``exit``) a ``side`` position."""
    opens_long = side == "long"
    buys = opens_long if kind == "entry" else not opens_long
    return "buy" if buys else "sell"


def side_sign(side: OrderSide) -> int:
    """+1 for a buy, -1 for a sell."""
    return 1 if side == "buy" else -1


def entry_order_id(trade_id: str) -> str:
    """Return the entry order id of a trade (the trade id is the decision's id)."""
    return f"o:{trade_id}"


def exit_order_id(trade_id: str, n: int = 1) -> str:
    """Return the id of a trade's ``n``-th exit order (exits close the whole position: n = 1)."""
    return f"o:{trade_id}:exit:{n}"


def _to_json(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@dataclass(frozen=True, slots=True)
class Order:
    """A paper order and its last status.

    ``price`` is the limit (None for a market order). ``route`` is the canary route of the trade
    (spec 001): every route is paper-filled, the tag only splits the metrics. ``regime`` names the
    realised-edge bucket of an entry (spec 004 P1-2). ``expires_ms`` is the last minute an entry
    may fill in; ``reason`` says why it was cancelled or rejected.
    """

    order_id: str
    trade_id: str
    asset_uid: int
    symbol: str
    side: OrderSide
    kind: OrderKind
    type: OrderType
    price: float | None
    qty: float
    post_only: bool
    reduce_only: bool
    maker_only: bool
    route: Route
    created_ms: int
    expires_ms: int
    status: OrderStatus = "open"
    reason: str | None = None
    regime: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the JSON data of this value."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        """Rebuild from :meth:`to_json` output."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order in one minute.

    ``slippage_bps`` is the cost against the price the order expected (the touch for a taker
    entry, the limit for a maker, the level for a stop; positive = worse). ``pnl_vs_mid_bps`` is
    the fill's edge against the minute's mid (spec 004 P1-2): ``(mid - price) / mid`` for a buy,
    ``(price - mid) / mid`` for a sell, in bps.
    """

    fill_id: str
    order_id: str
    trade_id: str
    asset_uid: int
    symbol: str
    side: OrderSide
    qty: float
    price: float
    fee_usd: float
    liquidity: Liquidity
    slippage_bps: float
    minute_ms: int
    pnl_vs_mid_bps: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the JSON data of this value."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fill:
        """Rebuild from :meth:`to_json` output."""
        return cls(**data)


def canary_draw(trade_id: str, rng_seed: int) -> float:
    """Return a uniform number in [0, 1) from sha256 of ``f"{rng_seed}:{trade_id}"``.

    The first 8 bytes of the digest as a big-endian integer over 2**64: the same id and seed give
    the same number on every machine and in every replay.
    """
    digest = hashlib.sha256(f"{rng_seed}:{trade_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _DRAW_SCALE


def route_of(trade_id: str, rollout: Rollout) -> Route:
    """Return the trade's route (spec 001 "Canary & Rollback").

    ``disabled`` -> ``paper``; ``full`` -> ``full``; ``canary`` -> ``canary`` when
    :func:`canary_draw` < ``canary_fraction``, else ``paper``. Execution is paper-only here, so a
    ``canary`` or ``full`` trade is still filled by the paper executor: the route is a label that
    lets ``trades_opened_total{route}`` and the per-route gauges split the performance.
    """
    if rollout.mode == "disabled":
        return "paper"
    if rollout.mode == "full":
        return "full"
    return (
        "canary" if canary_draw(trade_id, rollout.rng_seed) < rollout.canary_fraction else "paper"
    )


def mid_price(quote: Quote) -> float:
    """Return the mid of the closing book, or the close when the book is unknown."""
    if quote.bid is not None and quote.ask is not None:
        return (quote.bid + quote.ask) / 2.0
    return quote.close


def touch(quote: Quote, side: OrderSide) -> float:
    """Return the price a taker ``side`` order meets at the minute's close.

    The ask for a buy, the bid for a sell, the close when that side of the book is unknown.
    """
    level = quote.ask if side == "buy" else quote.bid
    return quote.close if level is None else level


def fee_usd(qty: float, price: float, fee_bps: float) -> float:
    """Return the fee of a fill: ``fee_bps`` of its notional ``qty * price``."""
    return abs(qty) * price * fee_bps * BPS


def slipped(price: float, side: OrderSide, slippage_bps: float) -> float:
    """Return ``price`` moved against a ``side`` order by ``slippage_bps``."""
    return price * (1.0 + side_sign(side) * slippage_bps * BPS)


def cost_bps(side: OrderSide, price: float, expected: float) -> float:
    """Return how much worse than ``expected`` a ``side`` fill at ``price`` is, in bps."""
    return side_sign(side) * (price - expected) / expected / BPS


def pnl_vs_mid_bps(side: OrderSide, price: float, mid: float) -> float:
    """Return a fill's edge against ``mid`` in bps (positive: bought below / sold above the mid)."""
    return -cost_bps(side, price, mid)


@dataclass(frozen=True, slots=True)
class EdgeState:
    """The realised-edge EWMA of one regime (spec 004 P1-2).

    ``below_since_ms`` is the minute the EWMA last went below ``-cost_floor_bps`` (None while at
    or above it); the regime is widened once it has stayed below for ``sustain_minutes``.
    """

    ewma_bps: float
    last_ms: int
    n_fills: int = 1
    below_since_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON data of this value."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EdgeState:
        """Rebuild from :meth:`to_json` output."""
        return cls(**data)


def update_edge(
    state: EdgeState | None, edge_bps: float, minute_ms: int, params: RealisedEdge
) -> EdgeState:
    """Fold one fill's ``pnl_vs_mid_bps`` into a regime's EWMA (spec 004 P1-2).

    Stream-time EWMA with span ``ewma_minutes``: ``alpha = 2 / (span + 1)`` per minute and an old
    value weighs ``(1 - alpha) ** dt`` after ``dt`` minutes (``dt`` at least 1, so several fills
    of one minute each count; the caller passes them in a fixed order). The first fill starts the
    EWMA at its own value.
    """
    floor = -params.cost_floor_bps
    if state is None:
        ewma = edge_bps
        n = 1
        previous_below: int | None = None
    else:
        alpha = 2.0 / (params.ewma_minutes + 1.0)
        dt = max((minute_ms - state.last_ms) / MINUTE_MS, 1.0)
        keep = (1.0 - alpha) ** dt
        ewma = keep * state.ewma_bps + (1.0 - keep) * edge_bps
        n = state.n_fills + 1
        previous_below = state.below_since_ms
    below = None
    if ewma < floor:
        below = minute_ms if previous_below is None else previous_below
    return EdgeState(ewma_bps=ewma, last_ms=minute_ms, n_fills=n, below_since_ms=below)


def is_widened(state: EdgeState | None, minute_ms: int, params: RealisedEdge) -> bool:
    """Return True when the EWMA has been below ``-cost_floor_bps`` for ``sustain_minutes``.

    The EWMA only moves on fills, so a regime recovers on the first fill that lifts it back to
    ``-cost_floor_bps`` or above.
    """
    if state is None or state.below_since_ms is None:
        return False
    return minute_ms - state.below_since_ms >= params.sustain_minutes * MINUTE_MS
