"""The ClickHouse tables: DDL generated from the Avro schemas, row mapping, the real engine (chDB).

One chDB directory for the module: the embedded engine holds one session per process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.synthetic.generator import generate
from schemas.events import to_json
from tests.kit.lattice import small_pack, synthetic_detector_pack
from topology.pipeline_driver import PipelineDriver
from topology.sink import LAYOUTS, RowError, rows_of
from topology.warehouse import (
    CORE_DDL,
    TABLES,
    Warehouse,
    WarehouseError,
    chdb_path,
    check_read_only,
    ddl,
)


def test_the_checked_in_ddl_is_the_generated_one() -> None:
    # Regenerate with: python -m topology.warehouse ddl > deploy/clickhouse/001_core.sql
    assert CORE_DDL.read_text(encoding="utf-8") == ddl()
    # ... and python -m topology.warehouse ddl 002_downstream > deploy/clickhouse/002_...sql
    downstream = CORE_DDL.with_name("002_downstream.sql").read_text(encoding="utf-8")
    assert downstream == ddl(migration="002_downstream")
    assert "alpha.decisions" in downstream
    assert "alpha.decisions" not in CORE_DDL.read_text(encoding="utf-8")


def test_every_avro_field_of_a_feature_row_is_a_column() -> None:
    names = {n for n, _ in LAYOUTS["lattice.v0"].cols}
    for field in ("asset_uid", "tf", "exchange_ts", "revision", "close", "z_vol_m_1", "extras"):
        assert field in names
    types = dict(LAYOUTS["lattice.v0"].cols)
    assert types["close"] == "Nullable(Float64)"
    assert types["dq_reasons"] == "Array(String)"
    assert types["extras"] == "Map(String, Float64)"
    assert types["tf"] == "LowCardinality(String)"


def test_chdb_path_of_a_dsn() -> None:
    assert chdb_path("chdb:///var/x/ch") == Path("/var/x/ch")
    assert chdb_path("http://u:p@host:8123/alpha") is None


@pytest.fixture(scope="module")
def driver() -> PipelineDriver:
    values = generate("volume_spike", assets=4, minutes=77, seed=7, inject_at_minute=45)
    d = PipelineDriver(
        small_pack(min_samples=30),
        detector_pack=synthetic_detector_pack(),
        partitions=2,
        flush_every=10_000,
    )
    d.pipe_stream(values)
    d.flush()
    assert d.events(), "the scenario should fire"
    return d


def test_rows_of_maps_rows_events_and_skips_seals(driver: PipelineDriver) -> None:
    kinds = {"row": 0, "skipped": 0}
    for s in driver.outputs:
        if s.topic != "lattice.v0":
            continue
        row = rows_of("lattice.v0", {"body": s.value})
        kinds["row" if row is not None else "skipped"] += 1
    assert kinds["row"] > 0
    assert kinds["skipped"] > 0  # seal markers and market frames
    event = driver.events()[0]
    row = rows_of("alpha.events.v0", event)
    assert row is not None
    assert row["event_id"] == str(event["event_id"])
    assert row["config_hash"] == event["provenance"]["config_hash"]
    assert json.loads(row["payload"]) == to_json(event)
    assert row["replay_of"] is False
    with pytest.raises(RowError, match="lacks"):
        rows_of("market.snapshot.v0", {"tf": "m1"})


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warehouse]:
    w = Warehouse(f"chdb://{tmp_path_factory.mktemp('chdb') / 'store'}")
    try:
        yield w
    finally:
        w.close()


def _insert(w: Warehouse, topic: str, values: list[dict[str, Any]], offset0: int) -> None:
    from datetime import UTC, datetime

    layout = LAYOUTS[topic]
    data = []
    for i, v in enumerate(values):
        row = rows_of(topic, v)
        if row is not None:
            data.append([*row.values(), topic, 0, offset0 + i, datetime.fromtimestamp(0, UTC)])
    w.insert(layout.table.name, layout.names, data)


def test_migrations_apply_once(warehouse: Warehouse, tmp_path: Path) -> None:
    first = warehouse.migrate()
    assert first == ["001_core.sql", "002_downstream.sql"]
    assert warehouse.migrate() == []
    extra = tmp_path / "ddl"
    extra.mkdir()
    (extra / "003_later.sql").write_text(
        "-- a later stage\nCREATE TABLE IF NOT EXISTS alpha.t_later (x Int64)"
        " ENGINE = MergeTree ORDER BY x;\n"
    )
    assert warehouse.migrate(extra) == ["003_later.sql"]
    assert warehouse.rows("SELECT count() FROM alpha.t_later") == [(0,)]
    tables = {r[0] for r in warehouse.rows("SHOW TABLES FROM alpha")}
    assert {t.name for t in TABLES} | {"sink_offsets", "anomaly_event_dedup"} <= tables


def test_a_batch_written_twice_is_seen_once(warehouse: Warehouse, driver: PipelineDriver) -> None:
    warehouse.migrate()
    rows = [{"body": s.value} for s in driver.outputs if s.topic == "lattice.v0"]
    events = driver.events()
    for _ in range(2):  # a crash between the rows and the offsets re-delivers the batch
        _insert(warehouse, "lattice.v0", rows, 0)
        _insert(warehouse, "alpha.events.v0", events, 0)
    keys = {
        (r["body"]["asset_uid"], r["body"]["tf"], r["body"]["exchange_ts"])
        for r in rows
        if "revision" in r["body"]
    }
    final = warehouse.rows("SELECT count() FROM alpha.features_snapshot FINAL")[0][0]
    assert final == len(keys)
    raw = warehouse.rows("SELECT count() FROM alpha.features_snapshot")[0][0]
    assert raw >= final
    ids = warehouse.rows("SELECT event_id FROM alpha.anomaly_event_dedup ORDER BY event_id")
    assert [r[0] for r in ids] == sorted({str(e["event_id"]) for e in events})
    payloads = warehouse.rows("SELECT payload FROM alpha.anomaly_event FINAL")
    assert len(payloads) == len(events)


def test_queries_are_read_only(warehouse: Warehouse) -> None:
    warehouse.migrate()
    with pytest.raises(WarehouseError, match=r"(?i)readonly"):
        warehouse.text("DROP TABLE alpha.features_snapshot")
    text = warehouse.text("SELECT 1 AS one SETTINGS max_threads = 1", "TSVWithNames")
    assert text.splitlines() == ["one", "1"]
    # A query must not leave the session read-only: the sink inserts right after it.
    warehouse.insert("sink_offsets", ("topic", "partition", "next_offset"), [["t", 0, 7]])
    assert warehouse.rows("SELECT next_offset FROM alpha.sink_offsets WHERE topic = 't'") == [(7,)]


@pytest.mark.parametrize(
    "sql", ["select 1", "  -- note\n WITH 1 AS x SELECT x", "/* c */ (SELECT 1)", "SHOW TABLES"]
)
def test_queries_pass_the_read_only_check(sql: str) -> None:
    check_read_only(sql)


@pytest.mark.parametrize(
    "sql", ["INSERT INTO t VALUES (1)", "/* SELECT */ DROP TABLE t", "", "SET readonly = 0"]
)
def test_anything_else_is_refused(sql: str) -> None:
    with pytest.raises(WarehouseError, match="readonly"):
        check_read_only(sql)


def test_a_held_directory_is_a_clear_error(warehouse: Warehouse) -> None:
    path = chdb_path(warehouse.dsn)
    assert path is not None
    import subprocess
    import sys

    code = (
        "from topology.warehouse import Warehouse, WarehouseError\n"
        f"try:\n    Warehouse('chdb://{path}')\nexcept WarehouseError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert "cannot open ClickHouse" in out.stdout, out.stdout + out.stderr
    assert "alpha sql" in out.stdout


def test_the_downstream_records_land_in_their_tables_once(warehouse: Warehouse) -> None:
    from tests.kit.trading import PARTITIONS, story, story_policy
    from topology.trader_driver import TraderDriver

    warehouse.migrate()
    d = TraderDriver(story_policy(), PARTITIONS, flush_every=1000)
    d.pipe_all(story())
    want = {}
    for topic, table in (("sizing.decisions.v0", "decisions"), ("orders.v0", "orders")):
        values = d.values(topic)
        for _ in range(2):  # a re-delivered batch replaces itself
            _insert(warehouse, topic, values, 0)
        want[table] = len(values)
    fills = d.values("fills.v0")
    _insert(warehouse, "fills.v0", fills, 0)
    want["fills"] = len(fills)
    for table, n in want.items():
        assert n > 0
        assert warehouse.rows(f"SELECT count() FROM alpha.{table} FINAL") == [(n,)]  # noqa: S608
    pills = warehouse.rows(
        "SELECT countIf(has(pills, 'Cluster budget tight')), countIf(drop_reason = 'hard_stop')"
        " FROM alpha.decisions FINAL"
    )
    assert pills[0][0] > 0
    assert pills[0][1] > 0
    killed = warehouse.rows(
        "SELECT count() FROM alpha.orders FINAL WHERE status = 'cancelled'"
        " AND reason = 'kill_switch'"
    )
    assert killed == [(2,)]
