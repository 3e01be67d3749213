"""Builders for ``md.raw.v0`` values (see ``schemas/avro/md.raw.v0.avsc``).

Plain dicts shaped exactly as the Avro schema, so fastavro writes them without a mapping layer;
the union branch is chosen by fastavro from the body's fields, and the builders set every field so
the choice is never ambiguous. Prices and sizes stay decimal strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

TOPIC = "md.raw.v0"
DLQ_TOPIC = "md.raw.dlq"

Source = Literal["ws", "rest", "replay", "synthetic", "candle_snapshot"]
SOURCES: tuple[str, ...] = ("ws", "rest", "replay", "synthetic", "candle_snapshot")
Side = Literal["buy", "sell"]

RawValue = dict[str, Any]

CTX_FIELDS: tuple[str, ...] = (
    "open_interest",
    "mark_px",
    "oracle_px",
    "mid_px",
    "funding",
    "funding_interval_ms",
    "next_funding_ts",
    "premium",
    "impact_bid_px",
    "impact_ask_px",
    "prev_day_px",
    "day_ntl_vlm",
    "day_base_vlm",
)


def _envelope(
    asset_uid: int,
    venue: str,
    symbol: str,
    source: Source,
    exchange_ts: int,
    ingest_ts: int,
    body: dict[str, Any],
) -> RawValue:
    return {
        "asset_uid": asset_uid,
        "venue": venue,
        "symbol": symbol,
        "source": source,
        "exchange_ts": exchange_ts,
        "ingest_ts": ingest_ts,
        "body": body,
    }


def trade(tid: int, px: str, sz: str, side: Side, exchange_ts: int) -> dict[str, Any]:
    """Return one trade of a batch."""
    return {"tid": tid, "px": px, "sz": sz, "side": side, "exchange_ts": exchange_ts}


def trade_batch(
    asset_uid: int,
    venue: str,
    symbol: str,
    source: Source,
    ingest_ts: int,
    trades: Sequence[dict[str, Any]],
) -> RawValue:
    """Return a trade batch; its ``exchange_ts`` is the latest trade time in it."""
    exchange_ts = max(t["exchange_ts"] for t in trades)
    return _envelope(
        asset_uid, venue, symbol, source, exchange_ts, ingest_ts, {"trades": list(trades)}
    )


def bbo(
    asset_uid: int,
    venue: str,
    symbol: str,
    source: Source,
    exchange_ts: int,
    ingest_ts: int,
    bid: tuple[str, str, int | None] | None,
    ask: tuple[str, str, int | None] | None,
) -> RawValue:
    """Return a best bid/offer update; ``bid``/``ask`` are ``(px, sz, n)`` or None when empty."""
    body = {
        "bid_px": bid[0] if bid else None,
        "bid_sz": bid[1] if bid else None,
        "bid_n": bid[2] if bid else None,
        "ask_px": ask[0] if ask else None,
        "ask_sz": ask[1] if ask else None,
        "ask_n": ask[2] if ask else None,
    }
    return _envelope(asset_uid, venue, symbol, source, exchange_ts, ingest_ts, body)


def level(px: str, sz: str, n: int | None = None) -> dict[str, Any]:
    """Return one book level."""
    return {"px": px, "sz": sz, "n": n}


def book(
    asset_uid: int,
    venue: str,
    symbol: str,
    source: Source,
    exchange_ts: int,
    ingest_ts: int,
    bids: Sequence[dict[str, Any]],
    asks: Sequence[dict[str, Any]],
) -> RawValue:
    """Return a top-N book snapshot (levels best first)."""
    body = {"bids": list(bids), "asks": list(asks)}
    return _envelope(asset_uid, venue, symbol, source, exchange_ts, ingest_ts, body)


def asset_ctx(
    asset_uid: int,
    venue: str,
    symbol: str,
    source: Source,
    exchange_ts: int,
    ingest_ts: int,
    **fields: str | int | None,
) -> RawValue:
    """Return an asset context; fields not given are unknown (null).

    Raises:
        ValueError: A field name is not part of the context.
    """
    unknown = set(fields) - set(CTX_FIELDS)
    if unknown:
        raise ValueError(f"unknown asset context fields: {sorted(unknown)}")
    body = {name: fields.get(name) for name in CTX_FIELDS}
    return _envelope(asset_uid, venue, symbol, source, exchange_ts, ingest_ts, body)


def candle(
    asset_uid: int,
    venue: str,
    symbol: str,
    source: Source,
    ingest_ts: int,
    *,
    interval: str,
    open_ts: int,
    close_ts: int,
    ohlcv: tuple[str, str, str, str, str],
    n: int | None,
) -> RawValue:
    """Return an exchange candle; ``exchange_ts`` is its close time."""
    o, h, low, c, v = ohlcv
    body = {
        "interval": interval,
        "open_ts": open_ts,
        "close_ts": close_ts,
        "o": o,
        "h": h,
        "l": low,
        "c": c,
        "v": v,
        "n": n,
    }
    return _envelope(asset_uid, venue, symbol, source, close_ts, ingest_ts, body)


def heartbeat(partition: int, stream_ts: int, ingest_ts: int, source: Source) -> RawValue:
    """Return a heartbeat carrying ``stream_ts`` for ``partition``."""
    return _envelope(0, "", "", source, stream_ts, ingest_ts, {"partition": partition})


def gap(
    asset_uid: int,
    venue: str,
    symbol: str,
    source: Source,
    *,
    since_ts: int,
    until_ts: int,
    ingest_ts: int,
    reason: str,
) -> RawValue:
    """Return a gap marker: data for the asset was lost between ``since_ts`` and ``until_ts``."""
    body = {"since_ts": since_ts, "reason": reason}
    return _envelope(asset_uid, venue, symbol, source, until_ts, ingest_ts, body)


def kind_of(value: RawValue) -> str:
    """Return the body kind of a raw value: trades, bbo, book, ctx, candle, heartbeat, gap."""
    body = value["body"]
    if "trades" in body:
        return "trades"
    if "bid_px" in body:
        return "bbo"
    if "bids" in body:
        return "book"
    if "open_interest" in body:
        return "ctx"
    if "interval" in body:
        return "candle"
    if "partition" in body:
        return "heartbeat"
    return "gap"
