"""Readers for histories: freqtrade Feather files (candles, funding, mark) and REST cassettes.

They yield ready values (:class:`Input` with ``value``); ``asset_uid`` is resolved later by the
replay. These formats carry no receive time, so ``ingest_ts`` is the exchange time: a candle's
close, a funding sample's time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.feather as feather

from connectors.hyperliquid.ws_parse import FrameError, candle_value
from connectors.replay.readers import Input, ReplayFormatError
from schemas import raw

_INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "8h": 28_800_000}
_FEATHER = re.compile(
    r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Z]+)(?:_(?P<settle>[A-Z]+))?"
    r"-(?P<tf>\d+[mhd])(?:-(?P<what>futures|funding_rate|mark))?\.feather$"
)


def venue_of(path: Path) -> str:
    """Guess the venue from a path (``hyperliquid``/``binance`` in a folder or file name).

    Raises:
        ReplayFormatError: Neither name appears.
    """
    text = str(path).lower()
    for venue in ("hyperliquid", "binance"):
        if venue in text:
            return venue
    raise ReplayFormatError(f"{path}: cannot tell the venue from the path (hyperliquid/binance)")


def feather_market(path: Path, venue: str) -> tuple[str, str, str, str]:
    """Return ``(symbol, kind, interval, what)`` of a freqtrade Feather file name.

    Raises:
        ReplayFormatError: The name is not ``BASE_QUOTE[_SETTLE]-TF[-what].feather``.
    """
    match = _FEATHER.match(path.name)
    if match is None:
        raise ReplayFormatError(f"{path.name}: not a freqtrade Feather name")
    base, quote, settle = match["base"], match["quote"], match["settle"]
    kind = "perp" if settle else "spot"
    symbol = base if venue == "hyperliquid" else f"{base}{quote}"
    return symbol, kind, match["tf"], match["what"] or "candles"


def read_feather(path: Path, venue: str) -> Iterator[Input]:
    """Yield candles, funding samples or mark prices from a freqtrade Feather file."""
    symbol, kind, interval, what = feather_market(path, venue)
    step = _INTERVAL_MS.get(interval)
    if step is None:
        raise ReplayFormatError(f"{path.name}: unsupported interval {interval}")
    table = feather.read_table(path)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    for i, date in enumerate(columns["date"]):
        open_ts = int(date.timestamp() * 1000)
        row = {name: columns[name][i] for name in ("open", "high", "low", "close", "volume")}
        origin = json.dumps({"file": path.name, "row": i}).encode()
        if any(not isinstance(v, float | int) or not math.isfinite(v) for v in row.values()):
            yield Input(open_ts, venue, None, None, origin, symbol, kind)
            continue
        yield Input(
            *_feather_value(what, symbol, venue, open_ts, step, interval, row),
            origin,
            symbol,
            kind,
        )


def _feather_value(
    what: str, symbol: str, venue: str, open_ts: int, step: int, interval: str, row: dict[str, Any]
) -> tuple[int, str, None, raw.RawValue]:
    if what == "funding_rate":
        # freqtrade stores the rate in "open", stamped at the funding time.
        value = raw.asset_ctx(
            0, venue, symbol, "replay", open_ts, open_ts,
            funding=repr(float(row["open"])), funding_interval_ms=step,
        )  # fmt: skip
        return open_ts, venue, None, value
    close_ts = open_ts + step - 1
    if what == "mark":
        mark = raw.asset_ctx(
            0, venue, symbol, "replay", close_ts, close_ts, mark_px=_txt(row["close"])
        )
        return close_ts, venue, None, mark
    ohlcv = tuple(_txt(row[k]) for k in ("open", "high", "low", "close", "volume"))
    value = raw.candle(
        0, venue, symbol, "replay", close_ts,
        interval=interval, open_ts=open_ts, close_ts=close_ts, ohlcv=ohlcv, n=None,  # type: ignore[arg-type]
    )  # fmt: skip
    return close_ts, venue, None, value


def _txt(number: float) -> str:
    # repr() is the shortest text that reads back to the same float: stable across runs.
    return repr(float(number))


def read_cassette(path: Path) -> Iterator[Input]:
    """Yield values from a recorded Hyperliquid REST ``info`` response (candles, funding, book).

    ``meta`` and ``allMids`` carry no time and yield nothing (``meta`` feeds discovery instead:
    see :func:`meta_symbols`).
    """
    body = json.loads(path.read_text())
    name = path.name
    if name.startswith("candleSnapshot"):
        for c in body:
            close_ts = int(c["T"])
            value = candle_value(0, str(c["s"]), "candle_snapshot", close_ts, c)
            yield Input(close_ts, "hyperliquid", None, value, json.dumps(c).encode(), str(c["s"]))
    elif name.startswith("fundingHistory"):
        for f in body:
            t = int(f["time"])
            value = raw.asset_ctx(
                0, "hyperliquid", str(f["coin"]), "replay", t, t,
                funding=str(f["fundingRate"]), premium=str(f["premium"]),
                funding_interval_ms=3_600_000,
            )  # fmt: skip
            yield Input(t, "hyperliquid", None, value, json.dumps(f).encode(), str(f["coin"]))
    elif name.startswith("l2Book"):
        frame = {"channel": "l2Book", "data": body}
        yield Input(int(body["time"]), "hyperliquid", frame, None, path.read_bytes())
    elif not name.startswith(("meta", "allMids")):
        raise ReplayFormatError(f"{name}: not a known REST cassette")


def meta_symbols(path: Path) -> tuple[list[str], list[str]]:
    """Return ``(listed, delisted)`` perp symbols of a ``meta`` response."""
    body = json.loads(path.read_text())
    universe = body["universe"] if isinstance(body, dict) else body[0]["universe"]
    listed = [a["name"] for a in universe if not a.get("isDelisted")]
    delisted = [a["name"] for a in universe if a.get("isDelisted")]
    return listed, delisted


__all__ = ["FrameError", "meta_symbols", "read_cassette", "read_feather", "venue_of"]
