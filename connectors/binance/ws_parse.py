"""Parse recorded Binance WebSocket messages (combined-stream envelopes) into raw values.

``trade`` becomes a one-trade batch (aggressor = buyer unless the buyer is the maker), and
``bookTicker`` a BBO. ``depthUpdate`` diffs need a maintained book and are counted, not used.
Duplicate trades (same trade id) are dropped, as for Hyperliquid.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from connectors.hyperliquid.ws_parse import (
    FrameError,
    ParseResult,
    Resolver,
    TradeDeduper,
    decimal_text,
    positive_text,
)
from schemas import raw
from schemas.raw import RawValue, Side, Source

VENUE = "binance"
#: Levels per side kept from a REST depth snapshot (the book body is top-N).
SNAPSHOT_LEVELS = 20


class BinanceParser:
    """Turn Binance messages into raw values; ``stats`` counts outcomes.

    Args:
        resolve: Symbol (``BTCUSDT``) -> asset_uid, None if untracked.
        source: ``replay`` for recordings.
    """

    def __init__(self, resolve: Resolver, source: Source) -> None:
        self.resolve = resolve
        self.source: Source = source
        self.dedup = TradeDeduper()
        self.stats: Counter[str] = Counter()

    def parse_message(self, message: object, ingest_ts: int, symbol: str = "") -> ParseResult:
        """Parse one decoded message received at ``ingest_ts``.

        Args:
            message: A combined-stream envelope, or a REST depth snapshot.
            ingest_ts: Receive time, epoch ms.
            symbol: The market, for a depth snapshot (it does not name its symbol).
        """
        if isinstance(message, dict) and "lastUpdateId" in message and symbol:
            self.stats["frames.depthSnapshot"] += 1
            try:
                return ParseResult(records=[self._snapshot(message, ingest_ts, symbol)])
            except (FrameError, KeyError, TypeError, ValueError) as exc:
                self.stats["malformed"] += 1
                return ParseResult(rejected=f"binance depth snapshot: {exc!r}")
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            self.stats["malformed"] += 1
            return ParseResult(rejected="binance: not a combined-stream message")
        data = message["data"]
        event = str(data.get("e", "bookTicker" if "b" in data and "a" in data else ""))
        self.stats[f"frames.{event}"] += 1
        try:
            if event == "trade":
                return ParseResult(records=self._trade(data, ingest_ts), channel=event)
            if event == "bookTicker":
                return ParseResult(records=[self._bbo(data, ingest_ts)], channel=event)
        except FrameError as exc:
            self.stats["malformed"] += 1
            return ParseResult(rejected=f"binance {event}: {exc}", channel=event)
        except (KeyError, TypeError) as exc:
            self.stats["malformed"] += 1
            return ParseResult(rejected=f"binance {event}: missing field {exc!r}", channel=event)
        return ParseResult(channel=event)

    def _uid(self, symbol: object) -> tuple[str, int]:
        if not isinstance(symbol, str):
            raise FrameError("symbol is missing")
        uid = self.resolve(symbol)
        if uid is None:
            raise FrameError(f"unknown symbol {symbol!r}")
        return symbol, uid

    def _trade(self, data: dict[str, Any], ingest_ts: int) -> list[RawValue]:
        symbol, uid = self._uid(data["s"])
        tid, time = int(data["t"]), int(data["T"])
        px, sz = positive_text(data["p"], "p"), positive_text(data["q"], "q")
        if not self.dedup.is_new(symbol, tid, time, px, sz):
            self.stats["duplicate_trades"] += 1
            return []
        side: Side = "sell" if data["m"] else "buy"
        trade = raw.trade(tid, px, sz, side, time)
        self.stats["trades"] += 1
        return [raw.trade_batch(uid, VENUE, symbol, self.source, ingest_ts, [trade])]

    def _snapshot(self, data: dict[str, Any], ingest_ts: int, symbol: str) -> RawValue:
        symbol, uid = self._uid(symbol)
        time = int(data.get("T") or data.get("E") or ingest_ts)
        sides = []
        for side in ("bids", "asks"):
            levels = data[side][:SNAPSHOT_LEVELS]
            sides.append(
                [raw.level(positive_text(p, "px"), decimal_text(q, "sz")) for p, q in levels]
            )
        return raw.book(uid, VENUE, symbol, self.source, time, ingest_ts, sides[0], sides[1])

    def _bbo(self, data: dict[str, Any], ingest_ts: int) -> RawValue:
        symbol, uid = self._uid(data["s"])
        time = int(data.get("T") or data.get("E") or ingest_ts)
        bid = (positive_text(data["b"], "b"), decimal_text(data["B"], "B"), None)
        ask = (positive_text(data["a"], "a"), decimal_text(data["A"], "A"), None)
        return raw.bbo(uid, VENUE, symbol, self.source, time, ingest_ts, bid, ask)
