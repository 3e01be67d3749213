"""Asset identity, heartbeats and replays of the bundled recordings, without a broker."""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from connectors.assets import AssetEntry, AssetRegistry, AssetRegistryError
from connectors.heartbeats import HeartbeatClock
from connectors.replay.readers import ReplayFormatError, _seconds_to_ms
from connectors.replay.source import Replay
from schemas import raw
from schemas.ids import asset_uid
from tests.unit.test_hl_parse import CODEC, Collector
from topology import cli, ingest_cli
from topology.ingest import IngestError, format_time, parse_time, parse_window
from topology.settings import REPO_ROOT

SAMPLES = REPO_ROOT / "data" / "samples"
FREQTRADE = SAMPLES / "hyperliquid-perps-candles-funding-freqtrade-2025-07"
BTC_HISTORY = [
    FREQTRADE / "BTC_USDC_USDC-1m-futures.feather",
    FREQTRADE / "BTC_USDC_USDC-1h-funding_rate.feather",
]
CALIBRATION = SAMPLES / "hyperliquid-ws-calibration-2025-09-04"


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
        [*BTC_HISTORY, SAMPLES / "hyperliquid-rest-python-sdk-cassettes"],
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


def test_bundled_freqtrade_files_match_their_provenance():
    # Byte copies: every bundled Feather file is listed with its SHA256, and nothing else is.
    listed = dict(
        re.findall(
            r"^\| `([^`]+\.feather)` \| \d+ \| `([0-9a-f]{64})` \|$",
            (FREQTRADE / "PROVENANCE.md").read_text(),
            re.MULTILINE,
        )
    )
    files = {p.name: p for p in FREQTRADE.glob("*.feather")}
    assert set(listed) == set(files)
    coins = {name.split("_", 1)[0] for name in files}
    assert len(coins) == 12
    assert set(files) == {
        f"{c}_USDC_USDC-{what}.feather" for c in coins for what in ("1m-futures", "1h-funding_rate")
    }
    for name, path in files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[name], name


# ----------------------------------------------------------------------------- replay windows


def test_window_keeps_inputs_recorded_in_from_to():
    out = Collector()
    start, end = parse_time("2025-07-22"), parse_time("2025-07-22T01:00Z")
    stats = Replay(AssetRegistry()).run(BTC_HISTORY, out, window=(start, end))
    # 1m candles are stamped at their close: 00:00:59.999 .. 00:59:59.999; funding at 00:00:00.092.
    assert stats.records == {"candle": 60, "ctx": 1}
    assert stats.inputs == 61
    assert stats.outside_window == 6808 + 18778 - 61
    assert stats.window == (start, end)
    assert all(start <= r["ingest_ts"] < end for r in out.records)
    assert out.records[0]["ingest_ts"] == start + 92
    assert out.records[-1]["ingest_ts"] == end - 1


def test_auto_window_skips_funding_outside_the_candles_span():
    out = Collector()
    stats = Replay(AssetRegistry()).run(BTC_HISTORY, out, auto_window=True)
    first, last = parse_time("2025-07-21T11:28:59.999Z"), parse_time("2025-07-26T04:55:59.999Z")
    assert stats.span == (first, last)
    assert stats.window == (first, last + 1)
    assert stats.records["candle"] == 6808  # every 1m candle
    funding = [r for r in out.records if raw.kind_of(r) == "ctx"]
    assert [format_time(funding[i]["ingest_ts"]) for i in (0, -1)] == [
        "2025-07-21T12:00:00.010Z",
        "2025-07-26T03:00:00.027Z",
    ]
    assert stats.outside_window == 18778 - len(funding)
    # An explicit bound narrows the automatic window further; the span stays what it is.
    narrowed = Replay(AssetRegistry()).run(
        BTC_HISTORY, Collector(), window=(None, parse_time("2025-07-21T12:00Z")), auto_window=True
    )
    assert narrowed.window == (first, parse_time("2025-07-21T12:00Z"))
    assert narrowed.records == {"candle": 32}  # opens 11:28 .. 11:59
    assert narrowed.span == (first, last)


def test_auto_window_without_dense_inputs_keeps_everything():
    stats = Replay(AssetRegistry()).run(BTC_HISTORY[1:], Collector(), auto_window=True)
    assert stats.span is None
    assert stats.window == (None, None)
    assert stats.outside_window == 0
    assert stats.records == {"ctx": 18778}
    assert ingest_cli.window_summary(stats, auto=False) == ""
    assert ingest_cli.window_summary(stats, auto=True) == (
        "; auto-window: no 1m candles or live captures, nothing skipped"
    )


def test_window_over_a_live_capture_keeps_the_reconnect():
    # The 2025-09-04 calibration capture, three minutes around its 18 s reconnect at 19:58:12.
    out = Collector()
    start, end = parse_time("2025-09-04T19:57Z"), parse_time("2025-09-04T20:00Z")
    stats = Replay(AssetRegistry()).run([CALIBRATION], out, window=(start, end), auto_window=True)
    assert stats.span == (
        parse_time("2025-09-04T19:46:56.673Z"),
        parse_time("2025-09-04T20:21:45.109Z"),
    )
    assert stats.window == (start, end)
    assert stats.inputs + stats.outside_window == 60_301
    assert stats.records == {"bbo": 3601, "book": 891, "trades": 471}
    assert stats.parser["duplicate_trades"] == 27  # every re-sent trade of the reconnect
    assert stats.gaps == 3  # BTC, ETH, SOL
    assert out.dead == []  # and no unreadable row anywhere in the capture
    assert all(start <= r["ingest_ts"] < end for r in out.records)


def test_unreadable_inputs_reach_the_dead_letters_whatever_the_window(tmp_path):
    folder = tmp_path / "hyperliquid"
    folder.mkdir()
    (folder / "trades_BTC.csv").write_text(
        "timestamp,price,size,side,trade_id,exchange_timestamp\n"
        "1756904112.5,110000.0,0.1,buy,1,1756904112400\n"
        "1756904113.5,short row\n"
    )
    out = Collector()
    stats = Replay(AssetRegistry()).run([folder], out, window=(0, 1000))
    assert stats.outside_window == 1
    assert [stage for _, _, stage in out.dead] == ["replay.hyperliquid"]
    with pytest.raises(ValueError, match="empty replay window"):
        Replay(AssetRegistry()).run([folder], out, window=(1000, 1000))


def test_window_bounds_parse_iso_utc_or_epoch_ms():
    assert parse_time("2025-07-21") == 1753056000000
    assert parse_time("2025-07-21T00:00Z") == 1753056000000
    assert parse_time("2025-07-21T00:00:00") == 1753056000000  # no offset: UTC
    assert parse_time("2025-07-21T02:00:00.250+02:00") == 1753056000250
    assert parse_time("1753056000000") == 1753056000000
    assert format_time(1753056000250) == "2025-07-21T00:00:00.250Z"
    assert parse_window(None, "2025-07-21") == (None, 1753056000000)
    for bad in ("yesterday", "1753056000", "20250721", "2025-07-32"):
        with pytest.raises(IngestError, match="--from-time"):
            parse_time(bad)
    with pytest.raises(IngestError, match="not before --to-time"):
        parse_window("2025-07-22", "2025-07-21")


def test_cli_replay_reports_the_window_and_what_it_skipped(monkeypatch, capsys):
    @contextmanager
    def no_broker(settings):
        yield SimpleNamespace(assets=AssetRegistry(), sink=SinkWithPartitions())

    class SinkWithPartitions(Collector):
        partitions = 6

    monkeypatch.setattr(ingest_cli, "ingest_context", no_broker)
    argv = ["ingest", "replay", *map(str, BTC_HISTORY), "--to-time", "2025-07-21T12:00Z"]
    assert cli.main([*argv, "--auto-window"]) == 0
    line = capsys.readouterr().out.replace("\n", "")
    assert "-> md.raw.v0: candle 32;" in line
    assert (
        "window [2025-07-21T11:28:59.999Z, 2025-07-21T12:00:00.000Z) (auto: 1m candles / live"
        " captures 2025-07-21T11:28:59.999Z .. 2025-07-26T04:55:59.999Z):"
        f" {6808 + 18778 - 32} inputs outside it skipped"
    ) in line
    assert cli.main([*argv[:2], "x", "--from-time", "yesterday"]) == 1
    assert "alpha: error: --from-time 'yesterday'" in capsys.readouterr().err
