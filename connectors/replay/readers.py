"""Readers for the recorded data formats, each yielding :class:`Input` items in file order.

An input is either a **frame** (a Hyperliquid or Binance WebSocket message, as recorded, or
rebuilt from the WS-derived CSVs) that goes through the same parser as live data, or a ready
**value** (candles, funding and mark histories from Feather files and REST cassettes). Every
input keeps the recorded receive time as ``ingest_ts``; formats without one use the exchange
time. ``origin`` is the original bytes, kept for the dead-letter topic.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import AlphaError
from schemas.raw import RawValue

#: Columns per side in the WS-derived order book CSVs.
BOOK_LEVELS = 20


@dataclass(frozen=True, slots=True)
class Input:
    """One recorded input.

    Attributes:
        ingest_ts: Recorded receive time (epoch ms), or the exchange time when none was recorded.
        venue: ``hyperliquid`` or ``binance``.
        frame: A decoded WebSocket message (dict), or None.
        value: A ready ``md.raw.v0`` value without ``asset_uid`` resolved (0), or None.
        origin: The original bytes (a file line), for the dead-letter topic.
        symbol: For values: the market, with ``kind`` (``perp``/``spot``).
        kind: ``perp`` or ``spot``.
    """

    ingest_ts: int
    venue: str
    frame: dict[str, Any] | None
    value: RawValue | None
    origin: bytes
    symbol: str = ""
    kind: str = "perp"


class ReplayFormatError(AlphaError, ValueError):
    """A file is not one of the formats we read."""


def _seconds_to_ms(text: str) -> int:
    # "1756904112.5455544" -> 1756904112545: exact decimal arithmetic, no float rounding.
    whole, _, frac = text.partition(".")
    return int(whole) * 1000 + int((frac + "000")[:3])


def read_hl_trades_csv(path: Path, coin: str) -> Iterator[Input]:
    """Hyperliquid WS-derived ``trades_<COIN>.csv``: rows sharing a receive time are one frame."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        batch: list[dict[str, Any]] = []
        lines: list[str] = []
        batch_ts = ""
        for row in reader:
            line = ",".join(row)
            if len(row) != 6:
                yield _bad_row(line, "hyperliquid")
                continue
            ts, px, sz, side, tid, exch = row
            if batch and ts != batch_ts:
                yield _trades_frame(batch_ts, batch, lines)
                batch, lines = [], []
            batch_ts = ts
            side_code = {"buy": "B", "sell": "A"}.get(side, side)
            batch.append(
                {
                    "coin": coin,
                    "side": side_code,
                    "px": px,
                    "sz": sz,
                    "time": _int_or(exch),
                    "tid": _int_or(tid),
                }
            )
            lines.append(line)
        if batch:
            yield _trades_frame(batch_ts, batch, lines)


def read_hl_prices_csv(path: Path, coin: str) -> Iterator[Input]:
    """Hyperliquid WS-derived ``prices_<COIN>.csv``: a bid row then an ask row per BBO update."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        pending: list[str] | None = None
        for row in reader:
            line = ",".join(row)
            if len(row) != 5:
                yield _bad_row(line, "hyperliquid")
                continue
            if row[3] == "bid":
                if pending is not None:
                    yield _bad_row(",".join(pending), "hyperliquid")
                pending = row
                continue
            if pending is None or row[3] != "ask" or pending[4] != row[4]:
                yield _bad_row(line, "hyperliquid")
                pending = None
                continue
            bid = {"px": pending[1], "sz": pending[2], "n": None}
            ask = {"px": row[1], "sz": row[2], "n": None}
            frame = {
                "channel": "bbo",
                "data": {"coin": coin, "time": _int_or(row[4]), "bbo": [bid, ask]},
            }
            origin = (",".join(pending) + "\n" + line).encode()
            yield Input(_seconds_to_ms(pending[0]), "hyperliquid", frame, None, origin)
            pending = None


def read_hl_books_csv(path: Path, coin: str) -> Iterator[Input]:
    """Hyperliquid WS-derived ``orderbooks_<COIN>.csv``: one 20-level snapshot per row."""
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for row in reader:
            line = ",".join(row)
            if len(row) < 3 + 4 * BOOK_LEVELS:
                yield _bad_row(line, "hyperliquid")
                continue
            bids, asks = [], []
            for i in range(BOOK_LEVELS):
                bp, bs, ap, as_ = row[3 + 4 * i : 7 + 4 * i]
                if bp:
                    bids.append({"px": bp, "sz": bs, "n": None})
                if ap:
                    asks.append({"px": ap, "sz": as_, "n": None})
            data = {"coin": coin, "time": _int_or(row[2]), "levels": [bids, asks]}
            frame = {"channel": "l2Book", "data": data}
            yield Input(_seconds_to_ms(row[0]), "hyperliquid", frame, None, line.encode())


def read_frame_capture(path: Path, kind: str = "perp") -> Iterator[Input]:
    """Raw WS capture (hftbacktest layout): ``<receive ns> <JSON frame>`` per line, gzip or not."""
    venue = "binance" if "binance" in str(path).lower() else "hyperliquid"
    # Binance REST depth snapshots in a capture do not name their market: the file name does.
    symbol = path.name.split("_", 1)[0].upper() if venue == "binance" else ""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for raw_line in fh:
            line = raw_line.rstrip(b"\n")
            if not line:
                continue
            ts, _, body = line.partition(b" ")
            try:
                ingest_ts = int(ts) // 1_000_000
                frame = json.loads(body)
            except ValueError:
                yield Input(0, "unknown", None, None, line, kind=kind)
                continue
            message = frame if isinstance(frame, dict) else None
            yield Input(ingest_ts, venue, message, None, line, symbol, kind)


def _trades_frame(ts: str, batch: list[dict[str, Any]], lines: list[str]) -> Input:
    frame = {"channel": "trades", "data": batch}
    return Input(_seconds_to_ms(ts), "hyperliquid", frame, None, "\n".join(lines).encode())


def _bad_row(line: str, venue: str) -> Input:
    # No frame and no value: the replay sends it to the dead-letter topic with a reason.
    try:
        ts = _seconds_to_ms(line.split(",", 1)[0])
    except ValueError:
        ts = 0
    return Input(ts, venue, None, None, line.encode())


def _int_or(text: str) -> int | str:
    # Leave a non-integer as it is: the frame parser rejects it with a reason.
    return int(text) if re.fullmatch(r"-?\d+", text) else text
