"""The live connector against a local exchange that plays back real recorded frames.

Real broker and registry; the exchange is the only stand-in (this machine cannot reach it), and
what it sends is the recorded bytes: a forced disconnect, the re-sent trades snapshot, malformed
frames. Every recorded trade and book must arrive in md.raw.v0 exactly once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from prometheus_client import REGISTRY

from connectors.hyperliquid.live import CHANNELS, HyperliquidConnector, HyperliquidSettings
from connectors.raw_sink import SinkError
from schemas import raw
from schemas.ids import asset_uid
from tests.kit.hl_playback import MALFORMED, PlaybackExchange, recorded_frames
from tests.kit.kafka import end_offsets, read_between
from tests.unit.test_hl_parse import Collector
from topology.ingest import ingest_context

pytestmark = pytest.mark.integration
COINS = ("BTC", "kPEPE")


def _expected_trades(frames: list[str]) -> set[tuple[int, int, str, str]]:
    out = set()
    for frame in frames:
        msg = json.loads(frame)
        if msg["channel"] == "trades":
            out |= {(t["tid"], t["time"], t["px"], t["sz"]) for t in msg["data"]}
    return out


async def _run(settings, exchange: PlaybackExchange, wrap=None, **hl_overrides):
    hl = HyperliquidSettings(
        ws_url=exchange.ws_url,
        rest_url=exchange.rest_url,
        ping_after_s=2,
        backoff_initial_s=0.05,
        ctx_poll_s=0.5,
        heartbeat_s=0.5,
        **hl_overrides,
    )
    await exchange.start()
    try:
        with ingest_context(settings) as ctx:

            def resolve(coin: str) -> int:
                return ctx.assets.resolve("hyperliquid", "perp", coin)

            out = wrap(ctx.sink) if wrap else ctx.sink
            connector = HyperliquidConnector(hl, COINS, resolve, out, rng=random.Random(7))
            stop = asyncio.Event()
            task = asyncio.create_task(connector.run(stop))
            await asyncio.wait_for(exchange.done.wait(), timeout=60)
            deadline = time.monotonic() + 60
            while connector.state.frames_in < exchange.total_sent or not connector.state.heartbeats:
                assert time.monotonic() < deadline, (connector.state, exchange.total_sent)
                await asyncio.sleep(0.02)
            await asyncio.wait_for(connector.drained(), timeout=60)
            stop.set()
            await asyncio.wait_for(task, timeout=60)
    finally:
        await exchange.stop()
    return connector


def test_recorded_frames_arrive_exactly_once_through_disconnect_and_bad_frames(local_stack):
    frames = recorded_frames()
    exchange = PlaybackExchange(
        frames, disconnect_after=30, subscriptions_per_session=len(COINS) * len(CHANNELS)
    )
    raw_start, dlq_start = (
        end_offsets(local_stack, raw.TOPIC),
        end_offsets(local_stack, raw.DLQ_TOPIC),
    )
    before = _metrics()
    connector = asyncio.run(_run(local_stack, exchange))
    moved = {k: v - before[k] for k, v in _metrics().items()}
    records = read_between(local_stack, raw.TOPIC, raw_start, end_offsets(local_stack, raw.TOPIC))
    dead = read_between(
        local_stack, raw.DLQ_TOPIC, dlq_start, end_offsets(local_stack, raw.DLQ_TOPIC)
    )

    # Two sessions, each subscribed to every (coin, channel) in the same order.
    assert exchange.sessions == 2
    assert exchange.subscriptions[0] == exchange.subscriptions[1]
    assert len(exchange.resent) == 1

    client = SchemaRegistryClient({"url": local_stack.registry_url})
    decode = AvroDeserializer(client)
    partitioner = DefaultPartitioner()
    values = []
    for msg in records:
        value = decode(msg.value(), SerializationContext(raw.TOPIC, MessageField.VALUE))
        values.append(value)
        if value["asset_uid"]:
            # Keyed as Faust's aiokafka would place it.
            assert msg.key() == str(value["asset_uid"]).encode()
            assert msg.partition() == partitioner(msg.key(), list(range(8)), list(range(8)))
        else:
            assert value["body"]["partition"] == msg.partition()
    client.close()

    btc = [v for v in values if v["symbol"] == "BTC"]
    trades = [
        (t["tid"], t["exchange_ts"], t["px"], t["sz"])
        for v in btc
        if raw.kind_of(v) == "trades"
        for t in v["body"]["trades"]
    ]
    assert Counter(trades).most_common(1)[0][1] == 1, "a trade was delivered twice"
    assert set(trades) == _expected_trades(frames)
    assert len(trades) == 64
    assert sum(raw.kind_of(v) == "book" for v in btc) == 46
    assert connector.parser.stats["duplicate_trades"] == len(json.loads(exchange.resent[0])["data"])

    gaps = [v for v in btc if raw.kind_of(v) == "gap"]
    assert len(gaps) == 1
    assert gaps[0]["body"]["reason"] == "disconnect"
    assert all(v["source"] in ("ws", "rest") for v in btc)
    assert any(raw.kind_of(v) == "ctx" and v["source"] == "rest" for v in btc)
    assert any(
        v["body"].get("next_funding_ts") == 1737921600000 for v in btc if raw.kind_of(v) == "ctx"
    )
    kpepe = [v for v in values if v["symbol"] == "kPEPE"]
    assert sum(v["source"] == "candle_snapshot" for v in kpepe) == 24
    assert sum(raw.kind_of(v) == "heartbeat" for v in values) >= 8

    reasons = [str(dict(m.headers() or [])["error"]) for m in dead]
    assert len(dead) == len(MALFORMED)
    assert sorted(m.value() or b"" for m in dead) == sorted(f.encode() for f in MALFORMED)
    assert any("not JSON" in r for r in reasons)

    assert moved["disconnects"] == 1
    assert moved["duplicates"] == connector.parser.stats["duplicate_trades"] > 0
    assert moved["dlq"] == len(MALFORMED)
    assert moved["trades"] == 64
    assert moved["throttled"] == 1  # ...and contexts still arrived (asserted above)
    assert any("px" in r for r in reasons)


def _metrics() -> dict[str, float]:
    def get(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return {
        "disconnects": get("hl_ws_disconnects_total", {"feed": "hyperliquid"}),
        "duplicates": get(
            "alpha_ingest_ticks_total", {"venue": "hyperliquid", "outcome": "duplicate"}
        ),
        "trades": get("alpha_ingest_ticks_total", {"venue": "hyperliquid", "outcome": "delivered"}),
        "dlq": get("alpha_ingest_dlq_total", {"stage": "ingest.hyperliquid.ws"}),
        "throttled": get("hl_rest_requests_total", {"type": "metaAndAssetCtxs", "outcome": "429"}),
    }


class SlowSink:
    """Wraps the real sink, taking a while per record (a slow broker or network)."""

    def __init__(self, sink, delay_s: float) -> None:
        self.sink, self.delay_s, self.sent = sink, delay_s, 0

    def send(self, value):
        time.sleep(self.delay_s)
        self.sent += 1
        self.sink.send(value)

    def heartbeat(self, *args):
        self.sink.heartbeat(*args)

    def dead_letter(self, *args, **kwargs):
        self.sink.dead_letter(*args, **kwargs)


def test_slow_output_blocks_the_reader_and_loses_nothing(local_stack):
    frames = recorded_frames()
    exchange = PlaybackExchange(
        frames, disconnect_after=30, subscriptions_per_session=len(COINS) * len(CHANNELS)
    )
    start = end_offsets(local_stack, raw.TOPIC)
    slow: list[SlowSink] = []

    def wrap(sink):
        slow.append(SlowSink(sink, delay_s=0.01))
        return slow[0]

    connector = asyncio.run(_run(local_stack, exchange, wrap=wrap, queue_max=4))
    # The queue filled up (the reader waited on it) and never grew past its bound...
    assert connector.max_queue_depth == 4
    # ...and every recorded trade still arrived exactly once.
    codec_client = SchemaRegistryClient({"url": local_stack.registry_url})
    decode = AvroDeserializer(codec_client)
    msgs = read_between(local_stack, raw.TOPIC, start, end_offsets(local_stack, raw.TOPIC))
    values = [decode(m.value(), SerializationContext(raw.TOPIC, MessageField.VALUE)) for m in msgs]
    codec_client.close()
    trades = [
        (t["tid"], t["exchange_ts"], t["px"], t["sz"])
        for v in values
        if v["symbol"] == "BTC" and raw.kind_of(v) == "trades"
        for t in v["body"]["trades"]
    ]
    assert sorted(trades) == sorted(_expected_trades(frames))
    assert slow[0].sent == sum(1 for v in values if v["asset_uid"])


class BrokenOutput(Collector):
    """An output whose broker refuses everything."""

    def send(self, value: dict[str, Any]) -> None:
        raise SinkError("delivery failed: broker down")


def test_a_failing_output_stops_the_connector_with_its_error():
    async def scenario() -> None:
        exchange = PlaybackExchange(
            recorded_frames(), disconnect_after=5, subscriptions_per_session=5
        )
        await exchange.start()
        settings = HyperliquidSettings(ws_url=exchange.ws_url, rest_url=exchange.rest_url)
        connector = HyperliquidConnector(settings, ("BTC",), _uid, BrokenOutput())
        try:
            await asyncio.wait_for(connector.run(asyncio.Event()), timeout=30)
        finally:
            await exchange.stop()

    with pytest.raises(SinkError, match="broker down"):
        asyncio.run(scenario())


def _uid(coin: str) -> int:
    return asset_uid("hyperliquid", "perp", coin)
