"""Asset identity, heartbeats and replays of the bundled recordings, without a broker."""

from __future__ import annotations

import hashlib

import pytest

from connectors.assets import AssetEntry, AssetRegistry, AssetRegistryError
from connectors.heartbeats import HeartbeatClock
from connectors.replay.readers import ReplayFormatError, _seconds_to_ms
from connectors.replay.source import Replay
from schemas import raw
from schemas.ids import asset_uid
from tests.unit.test_hl_parse import CODEC, Collector
from topology.settings import REPO_ROOT

SAMPLES = REPO_ROOT / "data" / "samples"


class HashingCollector(Collector):
    def __init__(self) -> None:
        super().__init__()
        self.digest = hashlib.sha256()

    def send(self, value):
        super().send(value)
        self.digest.update(CODEC.encode(value))

    def heartbeat(self, stream_ts, ingest_ts, source):
        super().heartbeat(stream_ts, ingest_ts, source)
        self.digest.update(f"hb{stream_ts}:{ingest_ts}".encode())


# ----------------------------------------------------------------------------- asset ids


def test_asset_uid_is_stable_positive_and_distinct():
    btc = asset_uid("hyperliquid", "perp", "BTC")
    assert btc == asset_uid("hyperliquid", "perp", "BTC")
    assert 0 < btc < 2**63
    others = {
        asset_uid("hyperliquid", "spot", "BTC"),
        asset_uid("binance", "perp", "BTC"),
        asset_uid("hyperliquid", "perp", "btc"),
        asset_uid("hyperliquid", "perp", "BTC", 1),
    }
    assert btc not in others
    assert len(others) == 4


def test_registry_is_identical_after_a_restart_from_its_entries():
    registry = AssetRegistry()
    ids = {s: registry.resolve("hyperliquid", "perp", s) for s in ("BTC", "ETH", "kPEPE")}
    restarted = AssetRegistry(registry.drain())
    assert {s: restarted.resolve("hyperliquid", "perp", s) for s in ids} == ids
    assert restarted.drain() == []


def test_delisted_keeps_its_id_and_remap_makes_a_new_one():
    registry = AssetRegistry()
    old = registry.resolve("hyperliquid", "perp", "MATIC")
    changed = registry.sync_listing("hyperliquid", "perp", ["BTC"], ["MATIC"])
    assert [(e.symbol, e.status) for e in changed] == [("MATIC", "delisted")]
    assert registry.resolve("hyperliquid", "perp", "MATIC") == old
    new = registry.remap("hyperliquid", "perp", "MATIC")
    assert new.asset_uid != old
    assert new.generation == 1
    assert registry.resolve("hyperliquid", "perp", "MATIC") == new.asset_uid
    frozen = registry.by_uid(old)
    assert frozen is not None
    assert frozen.status == "remapped"
    # A restart from the persisted entries keeps the current generation.
    restarted = AssetRegistry(registry.entries())
    assert restarted.resolve("hyperliquid", "perp", "MATIC") == new.asset_uid


def test_an_id_is_never_given_to_another_market():
    taken = AssetEntry("hyperliquid", "perp", "BTC", 0, asset_uid("hyperliquid", "perp", "BTC"))
    impostor = AssetEntry("hyperliquid", "perp", "XYZ", 0, taken.asset_uid)
    with pytest.raises(AssetRegistryError, match="already hyperliquid:perp:BTC:0"):
        AssetRegistry([taken, impostor])


# ----------------------------------------------------------------------------- heartbeats


def test_heartbeats_announce_second_boundaries_of_stream_time():
    clock = HeartbeatClock(1000)
    seen = [clock.advance(ts) for ts in (10_100, 10_900, 10_500, 11_000, 11_200, 14_700, 14_800)]
    assert seen == [None, None, None, 11_000, None, 14_000, None]
    assert clock.stream_ts == 14_800


# ----------------------------------------------------------------------------- replays


def test_receive_seconds_convert_exactly():
    assert _seconds_to_ms("1756904112.5455544") == 1756904112545
    assert _seconds_to_ms("1756904112") == 1756904112000
    assert _seconds_to_ms("1756904112.9") == 1756904112900


def test_collector_replay_drops_the_32_reconnect_duplicates_and_marks_both_outages():
    out = HashingCollector()
    stats = Replay(AssetRegistry()).run([SAMPLES / "hyperliquid-ws-collector-2025-09-03"], out)
    assert stats.parser["duplicate_trades"] == 32
    assert (
        sum(len(r["body"]["trades"]) for r in out.records if raw.kind_of(r) == "trades")
        == 3306 - 32
    )
    assert stats.records["bbo"] == 5395
    assert stats.records["book"] == 1338
    gaps = [r for r in out.records if raw.kind_of(r) == "gap"]
    assert len(gaps) == 6  # two outages x three assets
    assert all(g["exchange_ts"] - g["body"]["since_ts"] > 50_000 for g in gaps)
    assert out.dead == []
    ingest = [r["ingest_ts"] for r in out.records]
    assert ingest == sorted(ingest)


def test_replay_is_deterministic():
    digests = []
    for _ in range(2):
        out = HashingCollector()
        Replay(AssetRegistry()).run(
            [
                SAMPLES / "hyperliquid-ws-collector-2025-09-03",
                SAMPLES / "binance-ws-raw-hftbacktest",
            ],
            out,
        )
        digests.append(out.digest.hexdigest())
    assert digests[0] == digests[1]


def test_binance_capture_trades_bbo_and_depth_snapshot():
    out = Collector()
    stats = Replay(AssetRegistry()).run([SAMPLES / "binance-ws-raw-hftbacktest"], out)
    kinds = {raw.kind_of(r) for r in out.records}
    assert {"trades", "bbo", "book"} <= kinds
    book = next(r for r in out.records if raw.kind_of(r) == "book")
    assert book["symbol"] == "BTCUSDT"
    assert len(book["body"]["bids"]) == 20
    assert stats.parser["frames.depthUpdate"] > 0  # counted, not used
    assert out.dead == []


def test_histories_and_cassettes():
    out = Collector()
    Replay(AssetRegistry()).run(
        [
            SAMPLES / "hyperliquid-perps-candles-funding-freqtrade-2025-07",
            SAMPLES / "hyperliquid-rest-python-sdk-cassettes",
        ],
        out,
    )
    candles = [r for r in out.records if raw.kind_of(r) == "candle"]
    assert sum(c["source"] == "candle_snapshot" for c in candles) == 24
    one_minute = [c for c in candles if c["body"]["interval"] == "1m"]
    assert one_minute[0]["body"]["close_ts"] - one_minute[0]["body"]["open_ts"] == 59_999
    funding = [
        r for r in out.records if raw.kind_of(r) == "ctx" and r["body"]["funding"] is not None
    ]
    assert funding
    assert all(f["body"]["funding_interval_ms"] for f in funding)


def test_unknown_file_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReplayFormatError, match="not a recorded format we read"):
        Replay(AssetRegistry()).run([tmp_path / "notes.txt"], Collector())
    with pytest.raises(ReplayFormatError, match="no such file"):
        Replay(AssetRegistry()).run([tmp_path / "missing"], Collector())
