"""Parse Hyperliquid WebSocket frames into ``md.raw.v0`` values (pure: no I/O, no clock).

The same parser serves the live connector and the replay of recorded frames, so both handle the
known wire faults the same way: the greeting text frame, exact duplicate trades re-sent in the
snapshot after a reconnect (dropped by ``(coin, tid, time, px, sz)``), trades slightly out of
order (delivered and counted), and malformed frames (rejected with a reason, never raised).
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas import raw
from schemas.raw import RawValue, Source

VENUE = "hyperliquid"
GREETING = "Websocket connection established."
_SIDES = {"B": "buy", "A": "sell"}

#: Resolves an exchange coin to its asset_uid; None for a coin we do not track.
Resolver = Callable[[str], int | None]


class FrameError(ValueError):
    """A frame is malformed; the message is the reason recorded in the dead-letter topic."""


@dataclass
class ParseResult:
    """What one frame produced.

    Attributes:
        records: ``md.raw.v0`` values, in frame order.
        rejected: The reason, when the whole frame was rejected (it goes to the DLQ).
        channel: The frame's channel (``trades``, ``pong``, ``greeting`` ...).
    """

    records: list[RawValue] = field(default_factory=list)
    rejected: str | None = None
    channel: str = ""


class TradeDeduper:
    """Remember the last ``window`` trades per coin; report the ones seen before.

    Args:
        window: Trades remembered per coin (a reconnect snapshot re-sends up to ~30).
    """

    def __init__(self, window: int = 5000) -> None:
        self.window = window
        self._seen: dict[str, OrderedDict[tuple[int, int, str, str], None]] = {}

    def is_new(self, coin: str, tid: int, time: int, px: str, sz: str) -> bool:
        """Return True the first time a trade is seen, False for a repeat."""
        seen = self._seen.setdefault(coin, OrderedDict())
        key = (tid, time, px, sz)
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > self.window:
            seen.popitem(last=False)
        return True


class FrameParser:
    """Turn frames into raw values and count what happened (``stats``).

    Args:
        resolve: Coin -> asset_uid, None for an untracked coin.
        source: ``ws`` live, ``replay`` for recorded frames.
        dedup_window: Trades remembered per coin for duplicate detection.
    """

    def __init__(self, resolve: Resolver, source: Source, dedup_window: int = 5000) -> None:
        self.resolve = resolve
        self.source: Source = source
        self.dedup = TradeDeduper(dedup_window)
        self.stats: Counter[str] = Counter()
        self._last_trade_ts: dict[str, int] = {}

    def parse(self, frame: str | bytes, ingest_ts: int) -> ParseResult:
        """Parse one frame received at ``ingest_ts`` (epoch ms)."""
        try:
            text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        except UnicodeDecodeError:
            return self._reject("frame is not UTF-8", "")
        if text.strip() == GREETING:
            return ParseResult(channel="greeting")
        try:
            message = json.loads(text)
        except ValueError:
            return self._reject("frame is not JSON", "")
        return self.parse_message(message, ingest_ts)

    def parse_message(self, message: object, ingest_ts: int) -> ParseResult:
        """Parse an already decoded frame (recorded captures, CSV-rebuilt frames)."""
        if not isinstance(message, dict) or not isinstance(message.get("channel"), str):
            return self._reject("frame has no channel", "")
        channel = message["channel"]
        self.stats[f"frames.{channel}"] += 1
        handler = _HANDLERS.get(channel)
        if handler is None:
            # pong, subscriptionResponse, error, post, allMids ...: not market data for md.raw.
            return ParseResult(channel=channel)
        try:
            records = handler(self, message.get("data"), ingest_ts)
        except FrameError as exc:
            return self._reject(str(exc), channel)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            return self._reject(f"{channel}: missing or mistyped field ({exc!r})", channel)
        return ParseResult(records=records, channel=channel)

    def _reject(self, reason: str, channel: str) -> ParseResult:
        self.stats["malformed"] += 1
        return ParseResult(rejected=reason, channel=channel)

    def _asset(self, coin: object) -> tuple[str, int]:
        if not isinstance(coin, str) or not coin:
            raise FrameError("coin is missing")
        uid = self.resolve(coin)
        if uid is None:
            raise FrameError(f"unknown coin {coin!r}")
        return coin, uid

    def _trades(self, data: Any, ingest_ts: int) -> list[RawValue]:
        if not isinstance(data, list):
            raise FrameError("trades: data is not a list")
        if not data:
            return []
        coin, uid = self._asset(data[0]["coin"])
        fresh = []
        for item in data:
            if item["coin"] != coin:
                raise FrameError("trades: one frame mixes coins")
            side = _SIDES.get(item["side"])
            if side is None:
                raise FrameError(f"trades: side {item['side']!r} is not B or A")
            tid, time = _int(item["tid"], "tid"), _int(item["time"], "time")
            px, sz = _positive(item["px"], "px"), _positive(item["sz"], "sz")
            if not self.dedup.is_new(coin, tid, time, px, sz):
                self.stats["duplicate_trades"] += 1
                continue
            if time < self._last_trade_ts.get(coin, time):
                self.stats["out_of_order_trades"] += 1
            self._last_trade_ts[coin] = max(time, self._last_trade_ts.get(coin, time))
            fresh.append(raw.trade(tid, px, sz, side, time))  # type: ignore[arg-type]
        self.stats["trades"] += len(fresh)
        if not fresh:
            return []
        return [raw.trade_batch(uid, VENUE, coin, self.source, ingest_ts, fresh)]

    def _bbo(self, data: Any, ingest_ts: int) -> list[RawValue]:
        coin, uid = self._asset(data["coin"])
        bid, ask = data["bbo"]
        return [
            raw.bbo(
                uid,
                VENUE,
                coin,
                self.source,
                _int(data["time"], "time"),
                ingest_ts,
                _level_tuple(bid),
                _level_tuple(ask),
            )
        ]

    def _book(self, data: Any, ingest_ts: int) -> list[RawValue]:
        coin, uid = self._asset(data["coin"])
        bids, asks = data["levels"]
        time = _int(data["time"], "time")
        return [
            raw.book(uid, VENUE, coin, self.source, time, ingest_ts, _levels(bids), _levels(asks))
        ]

    def _candle(self, data: Any, ingest_ts: int) -> list[RawValue]:
        coin, uid = self._asset(data["s"])
        return [candle_value(uid, coin, self.source, ingest_ts, data)]

    def _ctx(self, data: Any, ingest_ts: int) -> list[RawValue]:
        coin, uid = self._asset(data["coin"])
        # activeAssetCtx carries no exchange time: the receive time stands in for it.
        return [ctx_value(uid, coin, self.source, ingest_ts, ingest_ts, data["ctx"])]


def candle_value(uid: int, coin: str, source: Source, ingest_ts: int, c: Any) -> RawValue:
    """Return a raw candle from a Hyperliquid candle (WS ``candle`` or ``candleSnapshot``)."""
    ohlcv = tuple(_decimal(c[k], k) for k in ("o", "h", "l", "c", "v"))
    return raw.candle(
        uid,
        VENUE,
        coin,
        source,
        ingest_ts,
        interval=str(c["i"]),
        open_ts=_int(c["t"], "t"),
        close_ts=_int(c["T"], "T"),
        ohlcv=ohlcv,  # type: ignore[arg-type]
        n=_int(c["n"], "n") if c.get("n") is not None else None,
    )


def ctx_value(
    uid: int, coin: str, source: Source, exchange_ts: int, ingest_ts: int, ctx: Any
) -> RawValue:
    """Return a raw asset context from a Hyperliquid perp ctx object."""
    if not isinstance(ctx, dict):
        raise FrameError("ctx is not an object")
    impact = ctx.get("impactPxs") or [None, None]
    return raw.asset_ctx(
        uid,
        VENUE,
        coin,
        source,
        exchange_ts,
        ingest_ts,
        open_interest=_opt(ctx.get("openInterest"), "openInterest"),
        mark_px=_opt(ctx.get("markPx"), "markPx"),
        oracle_px=_opt(ctx.get("oraclePx"), "oraclePx"),
        mid_px=_opt(ctx.get("midPx"), "midPx"),
        funding=_opt(ctx.get("funding"), "funding"),
        funding_interval_ms=3_600_000 if ctx.get("funding") is not None else None,
        premium=_opt(ctx.get("premium"), "premium"),
        impact_bid_px=_opt(impact[0], "impactPxs"),
        impact_ask_px=_opt(impact[1], "impactPxs"),
        prev_day_px=_opt(ctx.get("prevDayPx"), "prevDayPx"),
        day_ntl_vlm=_opt(ctx.get("dayNtlVlm"), "dayNtlVlm"),
        day_base_vlm=_opt(ctx.get("dayBaseVlm"), "dayBaseVlm"),
    )


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"{name} is not an integer: {value!r}")
    return value


def decimal_text(value: object, name: str) -> str:
    """Return ``value`` as a finite decimal string, or raise :class:`FrameError`."""
    return _decimal(value, name)


def positive_text(value: object, name: str) -> str:
    """Return ``value`` as a positive decimal string, or raise :class:`FrameError`."""
    return _positive(value, name)


def _decimal(value: object, name: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise FrameError(f"{name} is not a decimal: {value!r}")
    text = str(value)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise FrameError(f"{name} is not a decimal: {value!r}") from None
    if not number.is_finite():
        raise FrameError(f"{name} is not finite: {value!r}")
    return text


def _positive(value: object, name: str) -> str:
    text = _decimal(value, name)
    if Decimal(text) <= 0:
        raise FrameError(f"{name} must be positive: {value!r}")
    return text


def _opt(value: object, name: str) -> str | None:
    return None if value is None else _decimal(value, name)


def _level_tuple(level: Any) -> tuple[str, str, int | None] | None:
    if level is None:
        return None
    return _positive(level["px"], "px"), _decimal(level["sz"], "sz"), _count(level)


def _count(level: Any) -> int | None:
    # Order count per level; absent in recordings that kept only price and size.
    n = level.get("n")
    return None if n is None else _int(n, "n")


def _levels(levels: Any) -> list[dict[str, Any]]:
    if not isinstance(levels, list):
        raise FrameError("book side is not a list")
    return [
        raw.level(_positive(lv["px"], "px"), _decimal(lv["sz"], "sz"), _count(lv)) for lv in levels
    ]


_HANDLERS: dict[str, Callable[[FrameParser, Any, int], list[RawValue]]] = {
    "trades": FrameParser._trades,
    "bbo": FrameParser._bbo,
    "l2Book": FrameParser._book,
    "candle": FrameParser._candle,
    "activeAssetCtx": FrameParser._ctx,
}
