"""The live Hyperliquid connector: WebSocket subscriptions, REST polling, heartbeats.

Three producers feed one bounded queue; one writer drains it into the raw output (a
:class:`connectors.raw_sink.RawSink`). When the output is slow the queue fills and the socket
reader waits on it: TCP backpressure, never a silent drop. Reconnects use exponential backoff
with jitter, resubscribe in a fixed order, and write a gap marker per coin so the lattice can mark
the lost minutes stale. Wall time enters only here, as ``ingest_ts`` and heartbeat stream time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors import metrics
from connectors.hyperliquid.rest import RestPoller
from connectors.hyperliquid.ws_parse import VENUE, FrameParser
from connectors.replay.source import RawOutput
from schemas import raw
from schemas.raw import RawValue

log = logging.getLogger(__name__)
FEED = "hyperliquid"
CHANNELS: tuple[str, ...] = ("trades", "bbo", "l2Book", "candle", "activeAssetCtx")


class HyperliquidSettings(BaseSettings):
    """Live connector settings (``ALPHA_HL_*`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="ALPHA_HL_", frozen=True, extra="ignore")

    ws_url: str = Field(default="wss://api.hyperliquid.xyz/ws", description="WebSocket endpoint.")
    rest_url: str = Field(default="https://api.hyperliquid.xyz/info", description="REST info.")
    channels: tuple[str, ...] = Field(default=CHANNELS, description="Channels per coin.")
    candle_interval: str = Field(default="1m", description="Interval of the candle channel.")
    ping_after_s: float = Field(default=30.0, description="Ping after this much silence.")
    dead_after_s: float = Field(default=60.0, description="Reconnect after this much silence.")
    backoff_initial_s: float = Field(default=0.5, description="First reconnect delay.")
    backoff_max_s: float = Field(default=30.0, description="Reconnect delay cap.")
    ctx_poll_s: float = Field(default=5.0, description="metaAndAssetCtxs period (±20% jitter).")
    predicted_poll_s: float = Field(default=60.0, description="predictedFundings period.")
    bootstrap_minutes: int = Field(default=120, description="candleSnapshot minutes at start.")
    queue_max: int = Field(default=10_000, description="Frames buffered before the reader waits.")
    heartbeat_s: float = Field(default=1.0, description="Heartbeat period, wall time.")
    heartbeat_lag_ms: int = Field(
        default=1500, description="Heartbeats announce wall time minus this, at most."
    )
    rest_weight_per_min: int = Field(default=1200, description="REST weight budget per minute.")


def now_ms() -> int:
    """Wall clock, epoch ms: the only clock of the connector."""
    return time.time_ns() // 1_000_000


@dataclass
class _Item:
    kind: str  # frame | value | heartbeat | dead
    ingest_ts: int
    frame: str | bytes = ""
    value: RawValue | None = None
    stream_ts: int = 0
    reason: str = ""


@dataclass
class LiveState:
    """What the connector has seen, shared by its tasks."""

    last_exchange_ts: dict[str, int] = field(default_factory=dict)
    stream_ts: int = 0
    connected: bool = False
    sessions: int = 0
    frames_in: int = 0
    heartbeats: int = 0


class HyperliquidConnector:
    """Run the live feeds for ``coins`` into ``out``.

    Args:
        settings: Endpoints, timings, queue size.
        coins: Coins to subscribe, validated against ``meta`` at start.
        resolve: Coin -> asset_uid.
        out: Raw output (records, heartbeats, dead letters); its calls may block.
        rng: Jitter source (seed it in tests).
        on_meta: Receives ``(listed, delisted)`` from discovery (the asset registry).
    """

    def __init__(
        self,
        settings: HyperliquidSettings,
        coins: tuple[str, ...],
        resolve: Callable[[str], int],
        out: RawOutput,
        rng: random.Random | None = None,
        on_meta: Callable[[list[str], list[str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.coins = tuple(sorted(set(coins)))
        self.resolve = resolve
        self.out = out
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.parser = FrameParser(self._resolve_known, "ws")
        self.state = LiveState()
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=settings.queue_max)
        self.rest = RestPoller(
            settings,
            self.coins,
            resolve,
            self._enqueue_value,
            self.rng,
            emit_dead=self._enqueue_dead,
            on_meta=on_meta,
        )
        self._counted: dict[str, int] = {}
        self.max_queue_depth = 0

    def _resolve_known(self, coin: str) -> int | None:
        return self.resolve(coin) if coin in self.coins else None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then drain the queue into the output."""
        # The writer first: discovery already queues bootstrap candles, maybe more than fit.
        writer = asyncio.create_task(self._writer(), name="hl-writer")
        try:
            await self.rest.discover()
        except BaseException:
            writer.cancel()
            raise
        tasks = [
            asyncio.create_task(self._ws_loop(stop), name="hl-ws"),
            asyncio.create_task(self.rest.run(stop), name="hl-rest"),
            asyncio.create_task(self._heartbeat_loop(stop), name="hl-heartbeat"),
        ]
        stopped = asyncio.create_task(stop.wait())
        try:
            # The writer only ends by failing (the broker refused a record): stop everything.
            await asyncio.wait({stopped, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, stopped):
                task.cancel()
            await asyncio.gather(*tasks, stopped, return_exceptions=True)
            if not writer.done():
                await self.queue.join()
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if not writer.cancelled() and (error := writer.exception()) is not None:
            raise error

    async def drained(self) -> None:
        """Wait until every queued item has reached the output."""
        await self.queue.join()

    # ------------------------------------------------------------------ WebSocket

    async def _ws_loop(self, stop: asyncio.Event) -> None:
        attempt = 0
        lost_at: float | None = None
        while not stop.is_set():
            try:
                async with websockets.connect(
                    self.settings.ws_url, ping_interval=None, max_size=2**24, open_timeout=10
                ) as ws:
                    await self._subscribe(ws)
                    self.state.connected = True
                    self.state.sessions += 1
                    if lost_at is not None:
                        metrics.WS_RECONNECT_SECONDS.labels(FEED).observe(
                            time.monotonic() - lost_at
                        )
                        await self._mark_gaps("disconnect")
                        lost_at = None
                    attempt = 0
                    await self._read(ws)
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                log.warning("hyperliquid websocket lost: %s", exc)
            self.state.connected = False
            if stop.is_set():
                break
            metrics.WS_DISCONNECTS.labels(FEED).inc()
            lost_at = lost_at or time.monotonic()
            delay = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2**attempt)
            attempt += 1
            await asyncio.sleep(delay * (0.5 + self.rng.random()))

    async def _subscribe(self, ws: Any) -> None:
        # Deterministic order: coins sorted, channels in settings order.
        for coin in self.coins:
            for channel in self.settings.channels:
                sub: dict[str, str] = {"type": channel, "coin": coin}
                if channel == "candle":
                    sub["interval"] = self.settings.candle_interval
                await ws.send(json.dumps({"method": "subscribe", "subscription": sub}))

    async def _read(self, ws: Any) -> None:
        silent_since = time.monotonic()
        pinged = False
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), timeout=self.settings.ping_after_s)
            except TimeoutError:
                if time.monotonic() - silent_since >= self.settings.dead_after_s:
                    raise TimeoutError("no frame for too long: reconnecting") from None
                if not pinged:
                    await ws.send(json.dumps({"method": "ping"}))
                    pinged = True
                continue
            silent_since, pinged = time.monotonic(), False
            self.state.frames_in += 1
            await self._put(_Item("frame", now_ms(), frame=frame))

    async def _mark_gaps(self, reason: str) -> None:
        until = now_ms()
        for coin in self.coins:
            since = self.state.last_exchange_ts.get(coin)
            if since is None:
                continue
            value = raw.gap(
                self.resolve(coin), VENUE, coin, "ws",
                since_ts=since, until_ts=max(since, until), ingest_ts=until, reason=reason,
            )  # fmt: skip
            await self._put(_Item("value", until, value=value))

    # ------------------------------------------------------------------ heartbeats

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.heartbeat_s)
            wall = now_ms()
            stream_ts = max(self.state.stream_ts, wall - self.settings.heartbeat_lag_ms)
            await self._put(_Item("heartbeat", wall, stream_ts=stream_ts))

    # ------------------------------------------------------------------ queue and writer

    async def _enqueue_value(self, value: RawValue) -> None:
        await self._put(_Item("value", value["ingest_ts"], value=value))

    async def _enqueue_dead(self, original: bytes, reason: str) -> None:
        await self._put(_Item("dead", now_ms(), frame=original, reason=reason))

    async def _put(self, item: _Item) -> None:
        await self.queue.put(item)  # waits when full: the socket is not read meanwhile
        depth = self.queue.qsize()
        self.max_queue_depth = max(self.max_queue_depth, depth)
        metrics.QUEUE_DEPTH.set(depth)

    async def _writer(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                await asyncio.to_thread(self._write, item)
            except Exception:
                log.exception("hyperliquid writer failed on a %s item", item.kind)
                raise
            finally:
                self.queue.task_done()
                metrics.QUEUE_DEPTH.set(self.queue.qsize())

    def _write(self, item: _Item) -> None:
        if item.kind == "heartbeat":
            self.out.heartbeat(item.stream_ts, item.ingest_ts, "ws")
            self.state.heartbeats += 1
            return
        if item.kind == "value" and item.value is not None:
            self._deliver([item.value])
            return
        if item.kind == "dead":
            self.out.dead_letter(_bytes(item.frame), item.reason, "ingest.hyperliquid.rest")
            return
        result = self.parser.parse(item.frame, item.ingest_ts)
        self._count_parser()
        metrics.WS_MESSAGES.labels(FEED, result.channel or "invalid").inc()
        if result.rejected is not None:
            self.out.dead_letter(_bytes(item.frame), result.rejected, "ingest.hyperliquid.ws")
            metrics.INGEST_TICKS.labels(VENUE, "malformed").inc()
            return
        self._deliver(result.records)

    def _count_parser(self) -> None:
        for stat, outcome in (
            ("duplicate_trades", "duplicate"),
            ("out_of_order_trades", "out_of_order"),
        ):
            new = self.parser.stats[stat] - self._counted.get(stat, 0)
            if new:
                metrics.INGEST_TICKS.labels(VENUE, outcome).inc(new)
                self._counted[stat] = self.parser.stats[stat]

    def _deliver(self, records: list[RawValue]) -> None:
        for value in records:
            self.out.send(value)
            if raw.kind_of(value) == "trades":
                metrics.INGEST_TICKS.labels(VENUE, "delivered").inc(len(value["body"]["trades"]))
            coin, ts = value["symbol"], value["exchange_ts"]
            self.state.last_exchange_ts[coin] = max(ts, self.state.last_exchange_ts.get(coin, ts))
            if value["source"] == "ws":
                self.state.stream_ts = max(self.state.stream_ts, ts)


def _bytes(frame: str | bytes) -> bytes:
    return frame if isinstance(frame, bytes) else frame.encode()
