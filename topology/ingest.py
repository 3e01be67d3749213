"""Drivers behind ``alpha ingest replay|synthetic|hyperliquid``: wire sources to the raw sink.

Each run registers the ``md.raw.v0`` schema, loads the asset registry from its compacted topic,
writes records (and heartbeats, dead letters), flushes, and saves any new asset identities.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.asset_store import load_registry, save_registry
from connectors.assets import AssetRegistry
from connectors.heartbeats import HeartbeatClock
from connectors.raw_sink import RawSink
from connectors.registry import SchemaRegistry
from connectors.replay.readers import Input
from connectors.replay.source import Replay, ReplayStats, Window
from schemas import raw
from schemas.errors import AlphaError
from schemas.events import parse_epoch_ms
from schemas.wire import AvroCodec
from topology import spec
from topology.settings import StackSettings

Report = Callable[[str], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class IngestError(AlphaError):
    """An ingest run was given unusable options."""


@dataclass
class IngestContext:
    """What every ingest run needs: codecs, the asset registry, the sink."""

    settings: StackSettings
    raw_codec: AvroCodec
    asset_codec: AvroCodec
    assets: AssetRegistry
    sink: RawSink


@contextmanager
def ingest_context(settings: StackSettings, **sink_config: object) -> Iterator[IngestContext]:
    """Open codecs, registry and sink; at the end flush and save new asset identities."""
    with SchemaRegistry(settings.registry_url) as registry:
        raw_codec = registry.codec(raw.TOPIC)
        asset_codec = registry.codec("asset.registry.v0")
    assets = load_registry(settings.bootstrap_servers, asset_codec)
    sink = RawSink(
        settings.bootstrap_servers,
        raw_codec,
        partitions=spec.topic(raw.TOPIC).partitions,
        extra_config=sink_config,
    )
    ctx = IngestContext(settings, raw_codec, asset_codec, assets, sink)
    try:
        yield ctx
    finally:
        # Also on ^C or an error: what was produced is delivered, new identities are kept.
        sink.flush()
        save_registry(settings.bootstrap_servers, asset_codec, assets)


def parse_speed(text: str | None) -> float | None:
    """Parse ``--speed``: ``10x`` or ``10`` -> 10.0; ``max`` or None -> as fast as possible.

    Raises:
        IngestError: Not a positive factor.
    """
    if text is None or text == "max":
        return None
    try:
        factor = float(text.removesuffix("x"))
    except ValueError:
        raise IngestError(f"--speed {text!r}: use a factor like 10x, or max") from None
    if factor <= 0:
        raise IngestError(f"--speed {text!r} must be positive")
    return factor


def parse_time(text: str, option: str = "--from-time") -> int:
    """Parse a replay window bound into epoch milliseconds.

    ISO-8601, UTC unless it names an offset (``2025-07-21``, ``2025-07-21T00:00Z``,
    ``2025-07-21T02:00:00.5+02:00``), or epoch milliseconds (``1753056000000``).

    Raises:
        IngestError: Neither, or digits too small to be epoch milliseconds (seconds, ``20250721``).
    """
    try:
        return parse_epoch_ms(text)
    except ValueError as exc:
        raise IngestError(f"{option} {text!r}: {exc}") from None


def parse_window(start: str | None, end: str | None) -> Window:
    """Parse ``--from-time``/``--to-time`` into a replay window ``[from, to)``; None = open.

    Raises:
        IngestError: A bound does not parse, or the window is empty.
    """
    window = (
        None if start is None else parse_time(start, "--from-time"),
        None if end is None else parse_time(end, "--to-time"),
    )
    if window[0] is not None and window[1] is not None and window[0] >= window[1]:
        raise IngestError(f"--from-time {start} is not before --to-time {end}")
    return window


def format_time(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC: ``2025-07-21T07:22:59.999Z``."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Pacer:
    """Sleep so recorded time passes ``speed`` times faster than wall time (None: no pacing)."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self._origin: tuple[int, float] | None = None

    def __call__(self, ingest_ts: int) -> None:
        """Wait until the input recorded at ``ingest_ts`` is due."""
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = (ingest_ts, time.monotonic())
            return
        due = self._origin[1] + (ingest_ts - self._origin[0]) / 1000 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run_replay(
    ctx: IngestContext,
    paths: Sequence[Path],
    *,
    speed: float | None = None,
    window: Window = (None, None),
    auto_window: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[], None] | None = None,
) -> ReplayStats:
    """Replay recorded files into ``md.raw.v0``.

    ``window`` and ``auto_window``: see :meth:`connectors.replay.source.Replay.run`.
    """
    pace = Pacer(speed)

    def on_input(item: Input) -> None:
        pace(item.ingest_ts)
        if on_progress is not None:
            on_progress()

    return Replay(ctx.assets).run(
        paths,
        ctx.sink,
        window=window,
        auto_window=auto_window,
        on_input=on_input,
        on_start=on_start,
    )


def run_synthetic(
    ctx: IngestContext,
    *,
    scenario: str,
    assets: int,
    minutes: int,
    seed: int,
    inject_at_minute: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Generate a seeded scenario into ``md.raw.v0``; return record counts by kind.

    ``inject_at_minute`` None is the generator's default (``default_inject_minute``).
    """
    from connectors.synthetic.generator import VENUE, generate, symbols

    for symbol in symbols(assets):
        ctx.assets.resolve(VENUE, "perp", symbol)
    clock = HeartbeatClock()
    counts: dict[str, int] = {}
    for n, value in enumerate(
        generate(
            scenario, assets=assets, minutes=minutes, seed=seed, inject_at_minute=inject_at_minute
        )
    ):
        ctx.sink.send(value)
        kind = raw.kind_of(value)
        counts[kind] = counts.get(kind, 0) + 1
        due = clock.advance(value["exchange_ts"])
        if due is not None:
            ctx.sink.heartbeat(due, value["ingest_ts"], "synthetic")
            counts["heartbeat"] = counts.get("heartbeat", 0) + 1
        if on_progress is not None and n % 1000 == 0:
            on_progress(value["exchange_ts"])
    return counts
