"""``alpha ingest replay`` on the real broker: byte-identical, keyed for Faust, bad rows kept."""

from __future__ import annotations

import shutil

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Message

from connectors.asset_store import load_registry
from connectors.registry import SchemaRegistry
from schemas import raw
from schemas.ids import asset_uid
from tests.kit.kafka import end_offsets, read_between
from tests.kit.stack import alpha
from topology.settings import REPO_ROOT

pytestmark = pytest.mark.integration
COLLECTOR = REPO_ROOT / "data" / "samples" / "hyperliquid-ws-collector-2025-09-03"
BINANCE = REPO_ROOT / "data" / "samples" / "binance-ws-raw-hftbacktest"


def _replay(settings, *paths) -> tuple[list[Message], str]:
    start = end_offsets(settings, raw.TOPIC)
    result = alpha(settings, "ingest", "replay", *map(str, paths))
    assert result.returncode == 0, result.stdout + result.stderr
    return read_between(settings, raw.TOPIC, start, end_offsets(settings, raw.TOPIC)), result.stdout


def test_two_replays_write_byte_identical_records(local_stack):
    first, summary = _replay(local_stack, COLLECTOR, BINANCE)
    second, _ = _replay(local_stack, COLLECTOR, BINANCE)
    assert len(first) > 10_000
    assert [(m.partition(), m.key(), m.value()) for m in first] == [
        (m.partition(), m.key(), m.value()) for m in second
    ]
    assert "duplicate trades dropped 32" in summary
    assert "gap markers 6" in summary


def test_replayed_records_are_keyed_and_partitioned_as_faust_expects(local_stack):
    msgs, _ = _replay(local_stack, COLLECTOR / "trades_BTC.csv")
    partitioner = DefaultPartitioner()
    btc = str(asset_uid("hyperliquid", "perp", "BTC")).encode()
    keyed = [m for m in msgs if m.key() is not None]
    assert keyed
    assert {m.key() for m in keyed} == {btc}
    expected = partitioner(btc, list(range(8)), list(range(8)))
    assert {m.partition() for m in keyed} == {expected}
    # Heartbeats reach every partition.
    assert {m.partition() for m in msgs if m.key() is None} == set(range(8))


def test_malformed_rows_go_to_the_dlq_and_the_rest_is_delivered(local_stack, tmp_path):
    folder = tmp_path / "hyperliquid-bad"
    folder.mkdir()
    good = (COLLECTOR / "trades_ETH.csv").read_text().splitlines()
    bad_rows = ["1756904200.1,abc,1.0,buy,1,1756904199000", "1756904201.2,3000.0,1.0,buy"]
    (folder / "trades_ETH.csv").write_text("\n".join([*good[:50], *bad_rows, *good[50:]]) + "\n")
    shutil.copy(COLLECTOR / "PROVENANCE.md", folder / "PROVENANCE.md")
    dlq_start = end_offsets(local_stack, raw.DLQ_TOPIC)
    msgs, summary = _replay(local_stack, folder)
    dead = read_between(
        local_stack, raw.DLQ_TOPIC, dlq_start, end_offsets(local_stack, raw.DLQ_TOPIC)
    )
    assert sorted(m.value() or b"" for m in dead) == sorted(r.encode() for r in bad_rows)
    for m in dead:
        headers = dict(m.headers() or [])
        assert headers["stage"] == b"replay.hyperliquid"
        assert headers["error"]
    with SchemaRegistry(local_stack.registry_url) as registry:
        codec = registry.codec(raw.TOPIC)
    trades = sum(
        len(v["body"]["trades"])
        for v in (codec.decode(m.value() or b"") for m in msgs)
        if raw.kind_of(v) == "trades"
    )
    assert trades == 781  # 782 rows, one duplicate delivery dropped; both bad rows kept aside
    assert "dead letters 2" in summary


def test_asset_registry_survives_in_its_topic(local_stack):
    _replay(local_stack, COLLECTOR / "trades_SOL.csv")
    with SchemaRegistry(local_stack.registry_url) as registry:
        codec = registry.codec("asset.registry.v0")
    loaded = load_registry(local_stack.bootstrap_servers, codec)
    entry = loaded.lookup("hyperliquid", "perp", "SOL")
    assert entry is not None
    assert entry.asset_uid == asset_uid("hyperliquid", "perp", "SOL")
    assert entry.status == "active"


def test_assets_cli_lists_and_remaps(local_stack):
    _replay(local_stack, COLLECTOR / "trades_ETH.csv")
    listing = alpha(local_stack, "assets", "list")
    assert listing.returncode == 0, listing.stderr
    eth = str(asset_uid("hyperliquid", "perp", "ETH"))
    assert eth in listing.stdout
    remap = alpha(local_stack, "assets", "remap", "hyperliquid", "perp", "ETH")
    assert remap.returncode == 0, remap.stderr
    new = str(asset_uid("hyperliquid", "perp", "ETH", 1))
    assert f"asset_uid {eth} frozen" in remap.stdout
    assert new in remap.stdout
    after = alpha(local_stack, "assets", "list").stdout
    rows = {line.split()[4]: line.split()[5] for line in after.splitlines()[1:] if "ETH" in line}
    assert rows == {eth: "remapped", new: "active"}
    # Later data for ETH now carries the new id.
    msgs, _ = _replay(local_stack, COLLECTOR / "trades_ETH.csv")
    assert {m.key() for m in msgs if m.key() is not None} == {new.encode()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest", "replay", "/nowhere/at/all"), "no such file or directory"),
        (("ingest", "synthetic", "--scenario", "nope", "--minutes", "5"), "unknown scenario"),
    ],
)
def test_bad_ingest_arguments_are_one_line(local_stack, args, message):
    result = alpha(local_stack, *args)
    assert result.returncode == 1
    assert message in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
