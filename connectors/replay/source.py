"""Replay recorded files into ``md.raw.v0``, deterministically (spec 002 §16, DESIGN.md §4).

Files are read in sorted path order and merged by recorded receive time (ties: file order, then
line order), so the same files always give the same records in the same order. WebSocket
frames go through the live parsers (duplicate trades dropped, malformed frames to the DLQ).
Heartbeats and gap markers are derived from the data's own times, never from the wall clock.
A replay can be limited to a window of recorded time (``ingest_ts``, which for histories is the
exchange time), optionally clamped to the span of the dense inputs (1-minute candles, live
captures) so that sparse histories such as years of funding do not stretch the replay.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from connectors.assets import AssetRegistry
from connectors.binance.ws_parse import BinanceParser
from connectors.heartbeats import HeartbeatClock
from connectors.hyperliquid.ws_parse import FrameParser, ParseResult
from connectors.replay.history import meta_symbols, read_cassette, read_feather, venue_of
from connectors.replay.readers import (
    Input,
    ReplayFormatError,
    read_frame_capture,
    read_hl_books_csv,
    read_hl_prices_csv,
    read_hl_trades_csv,
)
from schemas import raw
from schemas.raw import RawValue, Source

_IGNORED = {"PROVENANCE.md", "SHA256SUMS", "README.md"}
SOURCE: Source = "replay"

#: ``(from_ms, to_ms)``: the half-open window ``[from_ms, to_ms)`` of ``ingest_ts``; None = open.
Window = tuple[int | None, int | None]


class RawOutput(Protocol):
    """Where replayed records go: :class:`connectors.raw_sink.RawSink` or a test collector."""

    def send(self, value: RawValue) -> None:
        """Write one record."""

    def heartbeat(self, stream_ts: int, ingest_ts: int, source: Source) -> None:
        """Write a heartbeat to every partition."""

    def dead_letter(
        self, original: bytes, reason: str, stage: str, key: bytes | None = None
    ) -> None:
        """Keep a rejected input."""


@dataclass
class ReplayStats:
    """What a replay did."""

    files: int = 0
    inputs: int = 0
    records: Counter[str] = field(default_factory=Counter)
    heartbeats: int = 0
    dead_letters: int = 0
    gaps: int = 0
    parser: Counter[str] = field(default_factory=Counter)
    #: Inputs left out because their ``ingest_ts`` is outside :attr:`window`.
    outside_window: int = 0
    #: The window applied (after ``auto_window``), ``[from, to)``; ``(None, None)``: everything.
    window: Window = (None, None)
    #: ``(first, last)`` ``ingest_ts`` of the dense inputs (1m candles, live captures), if any.
    span: tuple[int, int] | None = None


def discover(paths: Iterable[Path]) -> list[Path]:
    """Expand directories (recursively) into the data files a replay reads, sorted.

    Raises:
        ReplayFormatError: A path does not exist.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and p.name not in _IGNORED]
        elif path.is_file():
            files.append(path)
        else:
            raise ReplayFormatError(f"{path}: no such file or directory")
    return sorted(set(files))


def open_inputs(path: Path, registry: AssetRegistry) -> Iterator[Input]:
    """Return the inputs of one file, chosen by its name.

    ``meta`` cassettes register their symbols in ``registry`` and yield nothing.

    Raises:
        ReplayFormatError: The file is not a format we read.
    """
    name = path.name
    for prefix, reader in (
        ("trades_", read_hl_trades_csv),
        ("prices_", read_hl_prices_csv),
        ("orderbooks_", read_hl_books_csv),
    ):
        if name.startswith(prefix) and name.endswith(".csv"):
            return reader(path, name.removeprefix(prefix).removesuffix(".csv"))
    if name.endswith(".gz") or name.endswith(".jsonl"):
        return read_frame_capture(path, "spot" if "spot" in path.parts else "perp")
    if name.endswith(".feather"):
        return read_feather(path, venue_of(path))
    if name.endswith(".json") and name.startswith("meta"):
        listed, delisted = meta_symbols(path)
        registry.sync_listing("hyperliquid", "perp", listed, delisted)
        return iter(())
    if name.endswith(".json"):
        return read_cassette(path)
    raise ReplayFormatError(f"{path}: not a recorded format we read (see docs/ingest.md)")


class Replay:
    """One replay run over a set of files.

    Args:
        registry: Resolves symbols to asset ids (registering new ones).
        gap_ms: A silence longer than this across all live-feed inputs of one venue is a
            recorded outage: every asset of that venue seen so far gets a gap marker.
        heartbeat_ms: Heartbeat spacing in stream time.
    """

    def __init__(
        self, registry: AssetRegistry, *, gap_ms: int = 10_000, heartbeat_ms: int = 1000
    ) -> None:
        self.registry = registry
        self.gap_ms = gap_ms
        self.clock = HeartbeatClock(heartbeat_ms)
        self.parsers: dict[tuple[str, str], FrameParser | BinanceParser] = {}
        self.stats = ReplayStats()
        # Per venue: recordings of different venues are separate feeds with their own outages.
        self._last_ingest: dict[str, int] = {}
        self._last_seen: dict[str, dict[int, tuple[str, int]]] = {}

    def run(
        self,
        paths: Iterable[Path],
        out: RawOutput,
        *,
        window: Window = (None, None),
        auto_window: bool = False,
        on_input: Callable[[Input], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> ReplayStats:
        """Replay ``paths`` into ``out``.

        Args:
            paths: Files and directories.
            out: Where records, heartbeats and dead letters go.
            window: Keep only inputs with ``from_ms <= ingest_ts < to_ms`` (None: unbounded).
                Unreadable inputs are kept whatever their time: they go to the dead letters.
            auto_window: Also clamp the window to the span of the dense inputs (1-minute
                candles, live-feed frames), leaving out sparse histories (funding, hourly
                candles, cassettes) before the first and after the last of them. Without dense
                inputs the window is left as given.
            on_input: Sees each input before it is processed (pacing, progress).
            on_start: Told the number of inputs to process once they are read.

        Raises:
            ValueError: ``window`` is empty (``from_ms >= to_ms``).
        """
        if window[0] is not None and window[1] is not None and window[0] >= window[1]:
            raise ValueError(f"empty replay window [{window[0]}, {window[1]})")
        files = discover(paths)
        self.stats.files = len(files)
        inputs, self.stats.span = self._read(files)
        self.stats.window = _clamp(window, self.stats.span if auto_window else None)
        start, end = self.stats.window
        kept = [item for item in inputs if _in_window(item, start, end)]
        self.stats.outside_window = len(inputs) - len(kept)
        if on_start is not None:
            on_start(len(kept))
        for item in kept:
            if on_input is not None:
                on_input(item)
            self._one(item, out)
        for parser in self.parsers.values():
            self.stats.parser.update(parser.stats)
        return self.stats

    def _read(self, files: list[Path]) -> tuple[list[Input], tuple[int, int] | None]:
        """Return every input in replay order, and the span of the dense ones (or None)."""
        streams: list[tuple[tuple[int, int, int], Input]] = []
        dense: list[int] = []
        for index, path in enumerate(files):
            for seq, item in enumerate(open_inputs(path, self.registry)):
                streams.append(((item.ingest_ts, index, seq), item))
                if _is_dense(path, item):
                    dense.append(item.ingest_ts)
        streams.sort(key=lambda s: s[0])
        span = (min(dense), max(dense)) if dense else None
        return [item for _key, item in streams], span

    def _one(self, item: Input, out: RawOutput) -> None:
        self.stats.inputs += 1
        live_feed = item.frame is not None  # histories are sparse by nature: no gap logic
        if live_feed:
            last = self._last_ingest.get(item.venue)
            if last is not None and item.ingest_ts - last > self.gap_ms:
                self._mark_gaps(item.venue, item.ingest_ts, out)
            self._last_ingest[item.venue] = max(last or item.ingest_ts, item.ingest_ts)
        result = self._parse(item)
        if result.rejected is not None:
            out.dead_letter(item.origin, result.rejected, f"replay.{item.venue}")
            self.stats.dead_letters += 1
            return
        for value in result.records:
            out.send(value)
            self.stats.records[raw.kind_of(value)] += 1
            if live_feed:
                seen = self._last_seen.setdefault(value["venue"], {})
                seen[value["asset_uid"]] = (value["symbol"], value["exchange_ts"])
            due = self.clock.advance(value["exchange_ts"])
            if due is not None:
                out.heartbeat(due, value["ingest_ts"], SOURCE)
                self.stats.heartbeats += 1

    def _parse(self, item: Input) -> ParseResult:
        if item.value is not None:
            value = dict(item.value)
            value["asset_uid"] = self.registry.resolve(item.venue, item.kind, item.symbol)
            return ParseResult(records=[value])
        if item.frame is None or item.venue not in ("hyperliquid", "binance"):
            return ParseResult(rejected=f"unreadable input in {item.venue} recording")
        parser = self._parser(item.venue, item.kind)
        if isinstance(parser, BinanceParser):
            return parser.parse_message(item.frame, item.ingest_ts, item.symbol)
        return parser.parse_message(item.frame, item.ingest_ts)

    def _parser(self, venue: str, kind: str) -> FrameParser | BinanceParser:
        parser = self.parsers.get((venue, kind))
        if parser is None:
            resolve = self._resolver(venue, kind)
            parser = (
                FrameParser(resolve, SOURCE)
                if venue == "hyperliquid"
                else BinanceParser(resolve, SOURCE)
            )
            self.parsers[(venue, kind)] = parser
        return parser

    def _mark_gaps(self, venue: str, resume_ts: int, out: RawOutput) -> None:
        for uid, (symbol, last_ts) in sorted(self._last_seen.get(venue, {}).items()):
            out.send(
                raw.gap(
                    uid,
                    venue,
                    symbol,
                    SOURCE,
                    since_ts=last_ts,
                    until_ts=max(resume_ts, last_ts),
                    ingest_ts=resume_ts,
                    reason="recorded_gap",
                )
            )
            self.stats.gaps += 1

    def _resolver(self, venue: str, kind: str) -> Callable[[str], int]:
        def resolve(symbol: str) -> int:
            return self.registry.resolve(venue, kind, symbol)

        return resolve


def _is_dense(path: Path, item: Input) -> bool:
    # A live feed (a WS frame, recorded or rebuilt from CSV) or a 1-minute candle. A REST
    # cassette's frame (l2Book) is a single snapshot, not a feed: it does not set the span.
    if item.frame is not None:
        return path.suffix != ".json"
    value = item.value
    return (
        value is not None and raw.kind_of(value) == "candle" and value["body"]["interval"] == "1m"
    )


def _clamp(window: Window, span: tuple[int, int] | None) -> Window:
    # The window, narrowed to [first, last] of the span when there is one.
    start, end = window
    if span is None:
        return window
    first, last = span
    return (
        first if start is None else max(start, first),
        last + 1 if end is None else min(end, last + 1),
    )


def _in_window(item: Input, start: int | None, end: int | None) -> bool:
    if item.frame is None and item.value is None:
        return True  # unreadable: always reported to the dead letters, whatever its time
    return (start is None or item.ingest_ts >= start) and (end is None or item.ingest_ts < end)
