"""The Hyperliquid frame parser and the connector's writer, on real and fuzzed frames (no I/O)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.hyperliquid.live import HyperliquidConnector, HyperliquidSettings, _Item
from connectors.hyperliquid.ws_parse import GREETING, FrameParser
from schemas import catalog, raw, wire
from schemas.ids import asset_uid
from tests.kit.hl_playback import recorded_frames

CODEC = wire.AvroCodec(catalog.load(raw.TOPIC).parsed, 1)


def _resolve(coin: str) -> int | None:
    return asset_uid("hyperliquid", "perp", coin) if coin in {"BTC", "ETH"} else None


class Collector:
    """A raw output that keeps everything in memory."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.dead: list[tuple[bytes, str, str]] = []
        self.heartbeats: list[int] = []

    def send(self, value: dict[str, Any]) -> None:
        CODEC.decode(CODEC.encode(value))  # every record must fit the Avro contract
        self.records.append(value)

    def heartbeat(self, stream_ts: int, ingest_ts: int, source: str) -> None:
        self.heartbeats.append(stream_ts)

    def dead_letter(
        self, original: bytes, reason: str, stage: str, key: bytes | None = None
    ) -> None:
        self.dead.append((original, reason, stage))


def test_real_capture_parses_completely():
    parser = FrameParser(_resolve, "replay")
    records = []
    for frame in recorded_frames():
        result = parser.parse(frame, 1)
        assert result.rejected is None
        records += result.records
    assert sum(len(r["body"]["trades"]) for r in records if raw.kind_of(r) == "trades") == 64
    assert sum(raw.kind_of(r) == "book" for r in records) == 46
    book = next(r for r in records if raw.kind_of(r) == "book")
    assert book["body"]["bids"][0] == {"px": "105055.0", "sz": "3.03622", "n": 5}


def test_resent_snapshot_trades_are_dropped_once_seen():
    parser = FrameParser(_resolve, "ws")
    trades_frame = next(f for f in recorded_frames() if '"channel":"trades"' in f)
    first = parser.parse(trades_frame, 1)
    again = parser.parse(trades_frame, 2)
    assert len(first.records[0]["body"]["trades"]) == 30
    assert again.records == []
    assert again.rejected is None
    assert parser.stats["duplicate_trades"] == 30


def test_out_of_order_trades_are_delivered_and_counted():
    parser = FrameParser(_resolve, "ws")
    for t, tid in ((2000, 1), (1000, 2)):
        frame = {"channel": "trades", "data": [_trade(tid=tid, time=t)]}
        assert parser.parse(json.dumps(frame), 5).records
    assert parser.stats["out_of_order_trades"] == 1


def test_control_frames_are_not_data():
    parser = FrameParser(_resolve, "ws")
    for frame in (GREETING, '{"channel":"pong"}', '{"channel":"subscriptionResponse","data":{}}'):
        result = parser.parse(frame, 1)
        assert result.records == []
        assert result.rejected is None
    error = parser.parse('{"channel":"error","data":"Invalid subscription"}', 1)
    assert error.channel == "error"
    assert error.rejected is None


def test_null_bbo_side_and_ctx_nulls():
    parser = FrameParser(_resolve, "ws")
    bbo = {"coin": "BTC", "time": 7, "bbo": [None, {"px": "2", "sz": "1", "n": 1}]}
    value = parser.parse(json.dumps({"channel": "bbo", "data": bbo}), 9).records[0]
    assert value["body"]["bid_px"] is None
    assert value["body"]["ask_px"] == "2"
    ctx = {
        "coin": "ETH",
        "ctx": {
            "funding": "0.0000125",
            "openInterest": "1.5",
            "midPx": None,
            "premium": None,
            "impactPxs": None,
            "markPx": "3",
            "oraclePx": "3",
        },
    }
    value = parser.parse(json.dumps({"channel": "activeAssetCtx", "data": ctx}), 9).records[0]
    assert value["body"]["mid_px"] is None
    assert value["body"]["funding"] == "0.0000125"
    assert value["body"]["funding_interval_ms"] == 3_600_000


def test_unknown_coin_is_rejected_with_a_reason():
    result = FrameParser(_resolve, "ws").parse(
        json.dumps({"channel": "trades", "data": [_trade(coin="DOGE")]}), 1
    )
    assert result.rejected == "unknown coin 'DOGE'"


# ----------------------------------------------------------------------------- fuzzing

DECIMALS = st.decimals(min_value="0.00001", max_value="1000000", places=5).map(str)


def _trade(
    coin: str = "BTC",
    tid: int = 1,
    time: int = 1000,
    px: str = "100.5",
    sz: str = "0.1",
    side: str = "B",
) -> dict[str, Any]:
    return {
        "coin": coin,
        "side": side,
        "px": px,
        "sz": sz,
        "time": time,
        "tid": tid,
        "hash": "0x0",
        "users": ["a", "b"],
    }


good_trades = st.builds(
    lambda n, coin, pxs, sz, side, t0: {
        "channel": "trades",
        "data": [
            _trade(coin, tid=t0 * 1000 + i, time=t0 + i, px=pxs, sz=sz, side=side) for i in range(n)
        ],
    },
    st.integers(1, 5),
    st.sampled_from(["BTC", "ETH"]),
    DECIMALS,
    DECIMALS,
    st.sampled_from("BA"),
    st.integers(1, 10**12),
)
good_books = st.builds(
    lambda coin, px, sz, t: {
        "channel": "l2Book",
        "data": {
            "coin": coin,
            "time": t,
            "levels": [[{"px": px, "sz": sz, "n": 1}], [{"px": px, "sz": sz, "n": 2}]],
        },
    },
    st.sampled_from(["BTC", "ETH"]),
    DECIMALS,
    DECIMALS,
    st.integers(1, 10**12),
)
good_frames = st.one_of(good_trades, good_books).map(json.dumps)


def _break(frame: dict[str, Any], how: int) -> dict[str, Any]:
    broken: dict[str, Any] = json.loads(json.dumps(frame))
    item = broken["data"][0] if broken["channel"] == "trades" else broken["data"]
    if how == 0:
        item.pop("coin")
    elif how == 1:
        key = "px" if broken["channel"] == "trades" else "time"
        item[key] = "not-a-number" if key == "px" else "soon"
    elif how == 2:
        key = "side" if broken["channel"] == "trades" else "levels"
        item[key] = "X" if key == "side" else [[{"px": "-1", "sz": "1"}], []]
    else:
        broken["data"] = "garbage"
    return broken


bad_frames = st.one_of(
    st.builds(_break, st.one_of(good_trades, good_books), st.integers(0, 3)).map(json.dumps),
    st.text(max_size=40).filter(
        lambda s: (
            not s.strip().startswith(("{", "[", '"')) and s.strip() != GREETING and not _is_json(s)
        )
    ),
    st.binary(max_size=40).filter(lambda b: not _is_utf8_json(b)),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
    .filter(lambda d: "channel" not in d)
    .map(json.dumps),
)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _is_utf8_json(data: bytes) -> bool:
    try:
        return _is_json(data.decode())
    except UnicodeDecodeError:
        return False


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), good_frames, bad_frames), min_size=1, max_size=20))
def test_fuzzed_frames_never_crash_bad_ones_reach_the_dlq_good_ones_are_delivered(mix):
    out = Collector()
    connector = HyperliquidConnector(
        HyperliquidSettings(), ("BTC", "ETH"), _resolve_known, out, rng=random.Random(1)
    )
    good_count = bad_count = 0
    expected_trades: set[tuple[int, int]] = set()
    for is_good, good, bad in mix:
        frame = good if is_good else bad
        connector._write(_Item("frame", 1, frame=frame))
        if is_good:
            good_count += 1
            message = json.loads(good)
            if message["channel"] == "trades":
                expected_trades |= {(t["tid"], t["time"]) for t in message["data"]}
        else:
            bad_count += 1
    assert len(out.dead) == bad_count
    assert all(reason for _frame, reason, _stage in out.dead)
    delivered = {
        (t["tid"], t["exchange_ts"])
        for r in out.records
        if raw.kind_of(r) == "trades"
        for t in r["body"]["trades"]
    }
    assert delivered == expected_trades
    books = sum(raw.kind_of(r) == "book" for r in out.records)
    good_books_sent = sum(1 for ok, good, _ in mix if ok and '"l2Book"' in good)
    assert books == good_books_sent


def _resolve_known(coin: str) -> int:
    uid = _resolve(coin)
    assert uid is not None
    return uid


class SilentSocket:
    """A WebSocket on which nothing arrives; records what the client sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def recv(self) -> str:
        await asyncio.sleep(3600)
        return ""

    async def send(self, text: str) -> None:
        self.sent.append(text)


def test_silence_brings_a_ping_then_a_reconnect():
    settings = HyperliquidSettings(ping_after_s=0.05, dead_after_s=0.2)
    connector = HyperliquidConnector(
        settings, ("BTC",), _resolve_known, Collector(), rng=random.Random(1)
    )
    ws = SilentSocket()

    async def read() -> None:
        await connector._read(ws)

    with pytest.raises(TimeoutError, match="reconnecting"):
        asyncio.run(read())
    assert ws.sent == ['{"method": "ping"}']


def test_subscriptions_are_in_a_fixed_order():
    settings = HyperliquidSettings()
    connector = HyperliquidConnector(settings, ("ETH", "BTC", "ETH"), _resolve_known, Collector())
    ws = SilentSocket()
    asyncio.run(connector._subscribe(ws))
    subs = [json.loads(s)["subscription"] for s in ws.sent]
    assert [(s["coin"], s["type"]) for s in subs] == [
        (c, ch)
        for c in ("BTC", "ETH")
        for ch in ("trades", "bbo", "l2Book", "candle", "activeAssetCtx")
    ]
    assert all(s.get("interval") == "1m" for s in subs if s["type"] == "candle")
