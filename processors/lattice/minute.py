"""The raw state of one asset-minute and the bar built from it (spec 002 §3.4, §5, §8.1, §8.6).

A :class:`MinuteAcc` holds what the minute's records left: the trade accumulator's scalars, the
BBO and book samples, the context samples, and the DQ tallies. It is JSON-serialisable, so the
worker's state store holds it between records and a restarted worker continues bit-identically.
:func:`build_bar` turns it into a :class:`MinuteBar` with the tested accumulators of this package.

Choices made here: ``mid_s_30`` is the mid live at ``label - 30 s``, i.e. of the last quote
stamped at or before that instant (a quote is live from its own timestamp, as in the
time-weighted spread); ``mid_ohlc`` is the open/high/low/close of the two-sided BBO mids stamped
inside the minute (the carried quote excluded), the §5.1 fallback for a minute without trades.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.lattice.book import BookAccumulator, BookBar, BookSample
from processors.lattice.context import ContextAccumulator, ContextBar, ContextCarry
from processors.lattice.quotes import Quote, QuoteAccumulator, QuoteBar
from processors.lattice.trades import TradeAccumulator, TradeBar

MINUTE_MS = 60_000


def _num(text: str | None) -> float | None:
    """Read a decimal string; None for missing, non-finite or non-positive values."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


@dataclass(frozen=True, slots=True)
class TradeColumns:
    """The fields of a batch's trades as columns, each read once (see :func:`trade_columns`)."""

    tid: list[int]
    px: list[str]
    sz: list[str]
    side: list[str]
    ts: list[int]


def trade_columns(trades: Any) -> TradeColumns | None:
    """Return the trades' fields as columns, or None unless every trade is shaped as decoded.

    Shaped as decoded: every field present with exactly the type decoded Avro gives (``int``
    ids and times, ``str`` prices, sizes and sides). The lattice checks, splits and adds a
    batch from these columns instead of walking its trade dicts once per step; anything else
    (None) takes the trade-by-trade paths, which keep their exact behaviour.
    """
    try:
        cols = TradeColumns(
            [t["tid"] for t in trades],
            [t["px"] for t in trades],
            [t["sz"] for t in trades],
            [t["side"] for t in trades],
            [t["exchange_ts"] for t in trades],
        )
    except Exception:  # not a list of trade mappings: the trade-by-trade paths decide
        return None
    ints, strs = {int}, {str}
    if not (
        set(map(type, cols.tid)) <= ints
        and set(map(type, cols.ts)) <= ints
        and set(map(type, cols.px)) <= strs
        and set(map(type, cols.sz)) <= strs
        and set(map(type, cols.side)) <= strs
    ):
        return None
    return cols


def _valid(cols: TradeColumns) -> tuple[list[float], list[float], list[bool]] | None:
    """Return prices, sizes and taker-buy flags if no trade would be dropped for its numbers.

    None when a price or size is not a positive finite number (``_num`` would drop it).
    """
    try:
        px = list(map(float, cols.px))
        sz = list(map(float, cols.sz))
    except ValueError:
        return None
    isfinite = math.isfinite
    if not (all(map(isfinite, px)) and all(map(isfinite, sz))):
        return None
    if px and (min(px) <= 0 or min(sz) <= 0):
        return None
    return px, sz, [side == "buy" for side in cols.side]


class MinuteAcc:
    """Everything one asset's records contributed to one minute (labelled ``label_ts``)."""

    __slots__ = (
        "books",
        "candle",
        "ctx",
        "dropped",
        "label_ts",
        "quotes",
        "records",
        "skews",
        "sources",
        "tids",
        "trades",
    )

    def __init__(self, label_ts: int) -> None:
        self.label_ts = label_ts
        self.trades = TradeAccumulator()
        self.tids: list[int] = []
        self.quotes: list[list[Any]] = []  # [ts, bid | None, ask | None]
        self.books: list[list[Any]] = []  # [ts, bid_depth, ask_depth, quote_depth]
        self.ctx: list[list[Any]] = []  # [ts, AssetCtx body]
        self.candle: dict[str, Any] | None = None
        self.dropped = 0
        self.records = 0
        self.skews: list[int] = []
        self.sources: dict[str, int] = {}

    # ------------------------------------------------------------------ update
    def note(self, record: Mapping[str, Any]) -> None:
        """Count one record of the minute (source and ingest-vs-exchange skew)."""
        self.records += 1
        source = str(record["source"])
        self.sources[source] = self.sources.get(source, 0) + 1
        self.skews.append(int(record["ingest_ts"]) - int(record["exchange_ts"]))

    def add_trades(
        self, trades: list[Mapping[str, Any]], columns: TradeColumns | None = None
    ) -> None:
        """Add trades of this minute; invalid or repeated ones (by tid) are dropped.

        A batch shaped as decoded whose trades are all valid and new (the usual case) is added
        as columns (:meth:`TradeAccumulator.update_columns`, the same bits); any other takes
        the one-by-one path below, which decides trade by trade. ``columns`` are the batch's
        :func:`trade_columns` when the caller has them already.
        """
        cols = trade_columns(trades) if columns is None else columns
        valid = None if cols is None else _valid(cols)
        if cols is not None and valid is not None:
            new = set(cols.tid)
            if len(new) == len(cols.tid) and new.isdisjoint(self.tids):
                px, sz, buy = valid
                self.tids += cols.tid
                self.trades.update_columns(px, sz, cols.ts, buy)
                return
        good = []
        seen = set(self.tids)
        for t in trades:
            tid = int(t["tid"])
            if _num(t["px"]) is None or _num(t["sz"]) is None or tid in seen:
                self.dropped += 1
                continue
            seen.add(tid)
            self.tids.append(tid)
            good.append(t)
        self.trades.update(good)

    def add_quote(self, ts: int, body: Mapping[str, Any]) -> None:
        """Add a BBO update."""
        self.quotes.append([ts, _num(body.get("bid_px")), _num(body.get("ask_px"))])

    def add_book(self, ts: int, sample: BookSample) -> None:
        """Add a reduced top-N book snapshot."""
        self.books.append([ts, sample.bid_depth, sample.ask_depth, sample.quote_depth])

    def add_ctx(self, ts: int, body: Mapping[str, Any]) -> None:
        """Add an asset-context sample."""
        self.ctx.append([ts, dict(body)])

    def add_candle(self, body: Mapping[str, Any]) -> None:
        """Keep a 1m exchange candle for the minute (bootstrap only, §3.6)."""
        self.candle = dict(body)

    # ------------------------------------------------------------------ state
    def to_json(self) -> dict[str, Any]:
        """Return the minute as JSON data."""
        return {
            "label_ts": self.label_ts,
            "trades": self.trades.to_state(),
            "tids": self.tids,
            "quotes": self.quotes,
            "books": self.books,
            "ctx": self.ctx,
            "candle": self.candle,
            "dropped": self.dropped,
            "records": self.records,
            "skews": self.skews,
            "sources": self.sources,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, copy: bool = True) -> MinuteAcc:
        """Rebuild a minute from :meth:`to_json` data.

        With ``copy=False`` the minute takes ``data``'s lists and dicts as they are (no copy:
        adding to the minute changes them too), for a caller that replaces ``data`` with
        :meth:`to_json` right after; copying every sample of the minute at every record made
        a minute's cost grow with the square of its records.
        """
        acc = cls(int(data["label_ts"]))
        acc.trades = TradeAccumulator.from_state(data["trades"])
        acc.candle = data["candle"]
        acc.dropped = int(data["dropped"])
        acc.records = int(data["records"])
        if copy:
            acc.tids = list(data["tids"])
            acc.quotes = [list(q) for q in data["quotes"]]
            acc.books = [list(b) for b in data["books"]]
            acc.ctx = [list(c) for c in data["ctx"]]
            acc.skews = list(data["skews"])
            acc.sources = dict(data["sources"])
        else:
            acc.tids = data["tids"]
            acc.quotes = data["quotes"]
            acc.books = data["books"]
            acc.ctx = data["ctx"]
            acc.skews = data["skews"]
            acc.sources = data["sources"]
        return acc


@dataclass(frozen=True, slots=True)
class Carry:
    """What a minute inherits from the one before it: last quote, last book, context."""

    quote: Quote | None = None
    book: BookSample | None = None
    ctx: ContextCarry = field(default_factory=ContextCarry)

    def to_json(self) -> dict[str, Any]:
        """Return the carry as JSON data."""
        q, b, c = self.quote, self.book, self.ctx
        return {
            "quote": None if q is None else [q.exchange_ts, q.bid, q.ask],
            "book": None if b is None else [b.exchange_ts, b.bid_depth, b.ask_depth, b.quote_depth],
            "ctx": [c.oi, c.oi_ts, c.funding_h, c.next_funding_ts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Carry:
        """Rebuild a carry from :meth:`to_json` data."""
        q, b, c = data["quote"], data["book"], data["ctx"]
        return cls(
            quote=None if q is None else Quote(int(q[0]), q[1], q[2]),
            book=None if b is None else BookSample(int(b[0]), b[1], b[2], b[3]),
            ctx=ContextCarry(c[0], c[1], c[2], c[3]),
        )


@dataclass(frozen=True, slots=True)
class MinuteBar:
    """The raw fields of one asset-minute, before history, baselines and DQ."""

    label_ts: int
    trades: TradeBar
    quotes: QuoteBar
    book: BookBar
    ctx: ContextBar
    mid_s_30: float | None
    mid_ohlc: tuple[float, float, float, float] | None
    candle: dict[str, Any] | None
    records: int
    dropped: int
    clock_skew_ms: int | None
    source: str
    carry: Carry


def build_bar(
    acc: MinuteAcc, carry: Carry, *, spread_min_samples: int, oi_stale_ms: int
) -> MinuteBar:
    """Build the minute's raw fields from its accumulator and the carry of the minute before."""
    label = acc.label_ts
    in_minute = [Quote(int(ts), b, a) for ts, b, a in sorted(acc.quotes, key=lambda q: q[0])]
    quotes = QuoteAccumulator(label, carry.quote, min_samples=spread_min_samples)
    for quote in in_minute:
        quotes.update(quote)
    qbar = quotes.build()
    books = BookAccumulator(label, carry.book)
    for ts, bd, ad, qd in sorted(acc.books, key=lambda b: b[0]):
        books.update(BookSample(int(ts), bd, ad, qd))
    bbar = books.build()
    ctx = ContextAccumulator(label, carry.ctx, oi_stale_ms=oi_stale_ms)
    for ts, body in sorted(acc.ctx, key=lambda c: c[0]):
        ctx.update(int(ts), body)
    cbar = ctx.build()
    # mid 30 s before the close: the last quote live at label - 30 s (the carry counts).
    half = label - 30_000
    live = [q for q in ([carry.quote] if carry.quote else []) if q.exchange_ts <= half]
    live += [q for q in in_minute if q.exchange_ts <= half]
    mid_s_30 = live[-1].mid if live else None
    mids = [q.mid for q in in_minute if q.mid is not None]
    source = "none"
    if acc.sources:
        source = sorted(Counter(acc.sources).items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    return MinuteBar(
        label_ts=label,
        trades=acc.trades.build(),
        quotes=qbar,
        book=bbar,
        ctx=cbar,
        mid_s_30=mid_s_30,
        mid_ohlc=(mids[0], max(mids), min(mids), mids[-1]) if mids else None,
        candle=acc.candle,
        records=acc.records,
        dropped=acc.dropped,
        clock_skew_ms=int(statistics.median_low(acc.skews)) if acc.skews else None,
        source=source,
        carry=Carry(quote=qbar.last_quote, book=bbar.last_sample, ctx=cbar.carry),
    )
