"""The paper executor's state and step outputs (spec 001, spec 004 P0-2, P1-2).

``PaperBook`` is the whole state of :mod:`processors.downstream.paper`: working entry orders,
open trades, money, the realised-edge EWMA per regime, counters and the kill-switch flag. It is
an explicit, versioned, JSON-serialisable value with every collection sorted by id, so a replay
or a restart from a stored book gives the same outputs bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from processors.downstream.orders import EdgeState, Fill, Order, OrderStatus
from processors.downstream.types import ClosedTrade, Side, Trade

STATE_VERSION = 1


def counter_key(name: str, **labels: str) -> str:
    """Return a counter's key in Prometheus text form: ``name{k="v",...}`` (labels sorted)."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


@dataclass(frozen=True, slots=True)
class EntryRequest:
    """A sized decision to open a trade (the input of ``paper.submit_entry``).

    ``price`` is the reference price of the decision minute ``minute_ms`` (its close), ``bid`` /
    ``ask`` that minute's closing book when known. ``limit_price`` overrides the executor's limit.
    ``regime`` names the realised-edge bucket (default: ``tf``). ``risk_usd`` is the sized R;
    the opened trade's ``risk_usd`` is recomputed at the fill as ``qty * |fill - stop|``.
    """

    trade_id: str
    asset_uid: int
    symbol: str
    cluster: str
    tf: str
    side: Side
    qty: float
    price: float
    stop: float
    take_profit: float
    risk_usd: float
    risk_pct: float
    leverage: float
    minute_ms: int
    bid: float | None = None
    ask: float | None = None
    limit_price: float | None = None
    regime: str | None = None

    @property
    def regime_name(self) -> str:
        """Return the realised-edge regime (``regime``, else ``tf``)."""
        return self.tf if self.regime is None else self.regime

    @property
    def mid(self) -> float:
        """Return the decision minute's mid (``price`` without a two-sided book)."""
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2.0
        return self.price

    def to_json(self) -> dict[str, Any]:
        """Return the JSON data of this value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EntryRequest:
        """Rebuild from :meth:`to_json` output."""
        return cls(**data)


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """A working entry order and the decision it came from."""

    order: Order
    request: EntryRequest


@dataclass(frozen=True, slots=True)
class Position:
    """An open trade, its realised-edge regime and the fee its entry paid."""

    trade: Trade
    regime: str
    entry_fee_usd: float


@dataclass(frozen=True, slots=True)
class PaperOutputs:
    """What one step did, in the order it happened.

    ``orders``: orders that changed status (filled, cancelled, rejected), exits included;
    ``fills``: executions; ``opened``: trades whose entry filled; ``closed``: trades that ended.
    """

    orders: tuple[Order, ...] = ()
    fills: tuple[Fill, ...] = ()
    opened: tuple[Trade, ...] = ()
    closed: tuple[ClosedTrade, ...] = ()

    def __add__(self, other: PaperOutputs) -> PaperOutputs:
        return PaperOutputs(
            self.orders + other.orders,
            self.fills + other.fills,
            self.opened + other.opened,
            self.closed + other.closed,
        )

    @property
    def cancelled(self) -> tuple[Order, ...]:
        """Return the orders this step cancelled (expired, kill switch, ...)."""
        return tuple(o for o in self.orders if o.status == "cancelled")


@dataclass(frozen=True, slots=True)
class PaperBook:
    """The paper executor's state (spec 001; spec 004 P0-2, P1-2).

    Attributes:
        starting_equity_usd: Equity at the start.
        cash_usd: Starting equity + realised PnL - entry fees of the open trades.
        realised_pnl_usd: Sum of closed trades' PnL after fees.
        fees_usd: Every fee paid, entries and exits.
        entries: Working entry orders by order id (stops and targets live on the trades).
        positions: Open trades by trade id.
        edges: Realised-edge EWMA per regime, by regime.
        counters: ``counter_key`` -> count (``trades_opened_total{route="canary"}``, ...).
        stopped: Set by the kill switch: no new entries.
        stopped_reason: Why it stopped.
        stopped_ms: The minute it stopped.
    """

    starting_equity_usd: float
    cash_usd: float
    realised_pnl_usd: float = 0.0
    fees_usd: float = 0.0
    entries: tuple[PendingEntry, ...] = ()
    positions: tuple[Position, ...] = ()
    edges: tuple[tuple[str, EdgeState], ...] = ()
    counters: tuple[tuple[str, int], ...] = ()
    stopped: bool = False
    stopped_reason: str | None = None
    stopped_ms: int | None = None

    @classmethod
    def new(cls, starting_equity_usd: float) -> PaperBook:
        """Return an empty book holding ``starting_equity_usd`` in cash."""
        return cls(starting_equity_usd=starting_equity_usd, cash_usd=starting_equity_usd)

    @property
    def open_orders(self) -> tuple[Order, ...]:
        """Return the working orders, by order id."""
        return tuple(e.order for e in self.entries)

    @property
    def trades(self) -> tuple[Trade, ...]:
        """Return the open trades, by trade id."""
        return tuple(p.trade for p in self.positions)

    def position(self, trade_id: str) -> Position | None:
        """Return the open trade ``trade_id`` with its bookkeeping, if open."""
        return next((p for p in self.positions if p.trade.trade_id == trade_id), None)

    def edge(self, regime: str) -> EdgeState | None:
        """Return ``regime``'s realised-edge state (None before its first fill)."""
        return next((s for r, s in self.edges if r == regime), None)

    def counter(self, name: str, **labels: str) -> int:
        """Return a counter's value (0 when it never counted)."""
        key = counter_key(name, **labels)
        return next((n for k, n in self.counters if k == key), 0)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON data of this value."""
        """Return the JSON-serialisable state (versioned)."""
        return {
            "v": STATE_VERSION,
            "starting_equity_usd": self.starting_equity_usd,
            "cash_usd": self.cash_usd,
            "realised_pnl_usd": self.realised_pnl_usd,
            "fees_usd": self.fees_usd,
            "entries": [
                {"order": e.order.to_json(), "request": e.request.to_json()} for e in self.entries
            ],
            "positions": [
                {"trade": p.trade.to_json(), "regime": p.regime, "entry_fee_usd": p.entry_fee_usd}
                for p in self.positions
            ],
            "edges": [[r, s.to_json()] for r, s in self.edges],
            "counters": [[k, n] for k, n in self.counters],
            "stopped": self.stopped,
            "stopped_reason": self.stopped_reason,
            "stopped_ms": self.stopped_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaperBook:
        """Rebuild from :meth:`to_json` output."""
        """Rebuild from :meth:`to_json` output.

        Raises:
            ValueError: Unknown state version.
        """
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"PaperBook version {data.get('v')!r} is not {STATE_VERSION}")
        return cls(
            starting_equity_usd=data["starting_equity_usd"],
            cash_usd=data["cash_usd"],
            realised_pnl_usd=data["realised_pnl_usd"],
            fees_usd=data["fees_usd"],
            entries=tuple(
                PendingEntry(Order.from_json(e["order"]), EntryRequest.from_json(e["request"]))
                for e in data["entries"]
            ),
            positions=tuple(
                Position(Trade.from_json(p["trade"]), p["regime"], p["entry_fee_usd"])
                for p in data["positions"]
            ),
            edges=tuple((r, EdgeState.from_json(s)) for r, s in data["edges"]),
            counters=tuple((k, n) for k, n in data["counters"]),
            stopped=data["stopped"],
            stopped_reason=data["stopped_reason"],
            stopped_ms=data["stopped_ms"],
        )


@dataclass
class _Out:
    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    opened: list[Trade] = field(default_factory=list)
    closed: list[ClosedTrade] = field(default_factory=list)


class Draft:
    """A step's private, mutable copy of a book; :meth:`freeze` turns it back into values.

    Only the executor's steps use it, each on a fresh copy, so the steps stay pure.
    """

    def __init__(self, book: PaperBook) -> None:
        self.starting = book.starting_equity_usd
        self.cash = book.cash_usd
        self.realised = book.realised_pnl_usd
        self.fees = book.fees_usd
        self.entries = {e.order.order_id: e for e in book.entries}
        self.positions = {p.trade.trade_id: p for p in book.positions}
        self.edges = dict(book.edges)
        self.counters = dict(book.counters)
        self.stopped = book.stopped
        self.stopped_reason = book.stopped_reason
        self.stopped_ms = book.stopped_ms
        self.out = _Out()

    def count(self, name: str, **labels: str) -> None:
        """Add one to a counter."""
        key = counter_key(name, **labels)
        self.counters[key] = self.counters.get(key, 0) + 1

    def cancel(self, order_id: str, reason: str, status: OrderStatus = "cancelled") -> Order:
        """Take a working entry off the book as ``status`` with ``reason``; return it."""
        order = dataclasses.replace(self.entries.pop(order_id).order, status=status, reason=reason)
        self.out.orders.append(order)
        metric = "orders_rejected_total" if status == "rejected" else "orders_cancelled_total"
        self.count(metric, reason=reason)
        return order

    def freeze(self) -> tuple[PaperBook, PaperOutputs]:
        """Return the new book (collections sorted by id) and the step's outputs."""
        book = PaperBook(
            starting_equity_usd=self.starting,
            cash_usd=self.cash,
            realised_pnl_usd=self.realised,
            fees_usd=self.fees,
            entries=tuple(self.entries[k] for k in sorted(self.entries)),
            positions=tuple(self.positions[k] for k in sorted(self.positions)),
            edges=tuple(sorted(self.edges.items(), key=lambda kv: kv[0])),
            counters=tuple(sorted(self.counters.items())),
            stopped=self.stopped,
            stopped_reason=self.stopped_reason,
            stopped_ms=self.stopped_ms,
        )
        out = PaperOutputs(
            tuple(self.out.orders),
            tuple(self.out.fills),
            tuple(self.out.opened),
            tuple(self.out.closed),
        )
        return book, out
