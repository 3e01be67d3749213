"""The ClickHouse store: the tables of spec 002 §12, their DDL, one client for both backends.

Two backends behind one interface, the same SQL for both (DESIGN.md §8), both through
clickhouse-connect's ``Client``:

- ``chdb:///abs/dir`` (default ``chdb://<ALPHA_HOME>/clickhouse``): the real ClickHouse engine
  in-process (chDB), data in a persistent directory. Only one process may open a directory
  (ClickHouse locks ``<dir>/status``): the sink owns it and serves read-only queries to
  ``alpha sql`` over HTTP (:mod:`topology.sink`).
- ``http://user:password@host:8123/alpha``: a ClickHouse server (docker-compose, production).

The DDL is generated from the Avro schemas of the topics each table stores (:func:`ddl`) and
checked in as ``deploy/clickhouse/001_core.sql`` (a test keeps the file and the generator equal);
later stages add numbered files (``002_downstream.sql``...) that :meth:`Warehouse.migrate` applies
in order once, recording them in ``schema_migrations``.

Exactly-once: every table is a ``ReplacingMergeTree`` whose sorting key is the record's identity
(a feature row's ``(asset_uid, tf, exchange_ts)`` with ``revision`` as the version, an event's
``event_id`` and ``revision``...). The sink writes a batch's rows, then the batch's next offsets
into ``sink_offsets``; a crash between the two re-delivers the batch, whose rows replace
themselves. ``SELECT ... FINAL`` and the ``*_dedup`` views never show a duplicate.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from schemas import catalog
from schemas.errors import AlphaError
from topology.settings import REPO_ROOT

DDL_DIR = REPO_ROOT / "deploy" / "clickhouse"
CORE_DDL = DDL_DIR / "001_core.sql"
DATABASE = "alpha"

#: Columns the sink adds to every record table (not part of any payload).
SINK_COLUMNS = (
    "_topic LowCardinality(String)",
    "_partition Int32",
    "_offset Int64",
    "_kafka_ts DateTime64(3, 'UTC')",
    "_inserted_at DateTime('UTC') DEFAULT now()",
)
SINK_COLUMN_NAMES = ("_topic", "_partition", "_offset", "_kafka_ts")


class WarehouseError(AlphaError):
    """The analytics store cannot be opened, migrated or queried."""


@dataclass(frozen=True)
class TableSpec:
    """One table: which topic (and record of a union) fills it, and its engine clauses."""

    name: str
    topic: str
    record: str | None
    engine: str
    order_by: str
    partition_by: str | None = None
    ttl: str | None = None
    extra: tuple[str, ...] = ()
    doc: str = ""
    time_column: str = "exchange_ts"
    migration: str = "001_core"


def _ms(column: str) -> str:
    return f"fromUnixTimestamp64Milli({column}, 'UTC')"


#: Retention (§12.4, §15.4): 1m 90 days, 15m 1 year, 1h 3 years -- counted from when the row was
#: stored, not from its exchange time, so a replay of last year's data is not deleted on arrival.
_FEATURE_TTL = (
    "_inserted_at + INTERVAL 90 DAY DELETE WHERE tf = 'm1', "
    "_inserted_at + INTERVAL 1 YEAR DELETE WHERE tf = 'm15', "
    "_inserted_at + INTERVAL 3 YEAR DELETE WHERE tf = 'h1'"
)

_EVENT_EXTRA = (
    "is_in_universe Bool",
    "is_hot Bool",
    "universe_rev Int64",
    "producer LowCardinality(String)",
    "feature_pack LowCardinality(String)",
    "detector_pack LowCardinality(String)",
    "config_hash LowCardinality(String)",
    "git_commit LowCardinality(String)",
    "universe_policy_rev Int64",
    "source_lag_ms Nullable(Int64)",
    "clock_skew_ms Nullable(Int64)",
    "replay_of Bool",
    "payload String CODEC(ZSTD(3))",
)
_EVENT_COLUMNS = (
    "event_id",
    "emitted_at",
    "exchange_ts",
    "ingest_ts",
    "symbol",
    "asset_uid",
    "tf",
    "class",
    "subtype",
    "window_sec",
    "severity",
    "revision",
    "debounce_key",
)


def _event_table(name: str, topic: str, doc: str) -> TableSpec:
    return TableSpec(
        name=name,
        topic=topic,
        record=None,
        engine="ReplacingMergeTree",
        order_by="(class, subtype, exchange_ts, asset_uid, event_id, revision)",
        partition_by=f"toYYYYMM({_ms('exchange_ts')})",
        extra=_EVENT_EXTRA,
        doc=doc,
    )


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        name="features_snapshot",
        topic="lattice.v0",
        record="FeatureRow",
        engine="ReplacingMergeTree(revision)",
        order_by="(asset_uid, tf, exchange_ts)",
        partition_by=f"(tf, toYYYYMM({_ms('exchange_ts')}))",
        ttl=_FEATURE_TTL,
        doc="Feature rows of every tf (spec 002 §12.1 A); the highest revision wins.",
    ),
    TableSpec(
        name="market_snapshot",
        topic="market.snapshot.v0",
        record=None,
        engine="ReplacingMergeTree",
        order_by="(tf, exchange_ts)",
        partition_by=f"toYYYYMM({_ms('exchange_ts')})",
        doc="The market context of each minute (spec 002 §12.1 B).",
    ),
    _event_table(
        "anomaly_event",
        "alpha.events.v0",
        "Published events (spec 002 §12.1 C): typed columns plus the exact JSON payload.",
    ),
    _event_table(
        "anomaly_event_replay",
        "alpha.events.replay.v0",
        "Events re-emitted by offset replays (alpha replay), kept apart from the live ones.",
    ),
    TableSpec(
        name="universe_audit",
        topic="universe.v0",
        record=None,
        engine="ReplacingMergeTree",
        order_by="(exchange_ts, rev)",
        partition_by=f"toYYYYMM({_ms('exchange_ts')})",
        doc="Universe membership and hotlist changes (spec 002 §12.2).",
    ),
    TableSpec(
        name="decisions",
        migration="002_downstream",
        topic="sizing.decisions.v0",
        record=None,
        engine="ReplacingMergeTree",
        order_by="(minute_ms, decision_id)",
        partition_by=f"toYYYYMM({_ms('minute_ms')})",
        time_column="minute_ms",
        doc="Sizing decisions of the downstream stage, opened or dropped, with overlay inputs.",
    ),
    TableSpec(
        name="orders",
        migration="002_downstream",
        topic="orders.v0",
        record=None,
        engine="ReplacingMergeTree",
        order_by="(created_ms, order_id, status)",
        partition_by=f"toYYYYMM({_ms('created_ms')})",
        time_column="created_ms",
        doc="Paper orders, one row per status (open, filled, cancelled, rejected).",
    ),
    TableSpec(
        name="fills",
        migration="002_downstream",
        topic="fills.v0",
        record=None,
        engine="ReplacingMergeTree",
        order_by="(minute_ms, fill_id)",
        partition_by=f"toYYYYMM({_ms('minute_ms')})",
        time_column="minute_ms",
        doc="Paper fills with fees, slippage and the fill's edge against the mid.",
    ),
)
TABLE_BY_TOPIC = {t.topic: t for t in TABLES}


# ----------------------------------------------------------------------------- DDL from Avro


def _named_types(schema: Any, names: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for s in schema:
            _named_types(s, names)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            names[schema["name"]] = schema
        for f in schema.get("fields", ()):
            _named_types(f["type"], names)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], names)


_SCALARS = {
    "long": "Int64",
    "int": "Int32",
    "double": "Float64",
    "float": "Float32",
    "boolean": "Bool",
    "string": "String",
    "bytes": "String",
}


def column_type(avro: Any, names: Mapping[str, Any]) -> str:
    """Return the ClickHouse type of an Avro type (records become JSON text)."""
    if isinstance(avro, str) and avro in names:
        avro = names[avro]
    if isinstance(avro, str):
        return _SCALARS[avro]
    if isinstance(avro, list):
        inner = [t for t in avro if t != "null"]
        if len(inner) != 1:
            return "String"
        t = column_type(inner[0], names)
        simple = not t.startswith(("Array", "Map", "LowCardinality", "Nullable"))
        if "null" in avro and simple:
            return f"Nullable({t})"
        return t
    kind = avro["type"]
    if kind == "enum":
        return "LowCardinality(String)"
    if kind == "array":
        return f"Array({column_type(avro['items'], names)})"
    if kind == "map":
        return f"Map(String, {column_type(avro['values'], names)})"
    if kind == "record":
        return "String"  # JSON text
    return column_type(kind, names)


def _schema(topic: str) -> dict[str, Any]:
    """The Avro schema of a topic (the replay topic carries the event schema)."""
    name = "alpha.events.v0" if topic.startswith("alpha.events") else topic
    schema: dict[str, Any] = json.loads(catalog.load(name).text)
    return schema


def _record_of(table: TableSpec) -> dict[str, Any]:
    schema = _schema(table.topic)
    names: dict[str, Any] = {}
    _named_types(schema, names)
    if table.record is not None:
        return dict(names[table.record])
    return dict(schema)


def columns(table: TableSpec) -> list[tuple[str, str]]:
    """Return ``(name, type)`` of the payload columns of a table, in schema order."""
    if table.topic.startswith("alpha.events"):
        schema = _schema(table.topic)
        names: dict[str, Any] = {}
        _named_types(schema, names)
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        out = [(c, column_type(fields[c], names)) for c in _EVENT_COLUMNS]
        return out + [(e.split(" ", 1)[0], e.split(" ", 1)[1]) for e in _EVENT_EXTRA]
    record = _record_of(table)
    names = {}
    _named_types(_schema(table.topic), names)
    return [(f["name"], column_type(f["type"], names)) for f in record["fields"]]


def table_ddl(table: TableSpec, database: str = DATABASE) -> str:
    """Return the ``CREATE TABLE IF NOT EXISTS`` statement of a table."""
    cols = [f"    {name} {ctype}" for name, ctype in columns(table)]
    cols.append(f"    time DateTime64(3, 'UTC') ALIAS {_ms(table.time_column)}")
    cols += [f"    {c}" for c in SINK_COLUMNS]
    lines = [
        f"-- {table.doc} Source: {table.topic}.",
        f"CREATE TABLE IF NOT EXISTS {database}.{table.name}",
        "(",
        ",\n".join(cols),
        ")",
        f"ENGINE = {table.engine}",
    ]
    if table.partition_by:
        lines.append(f"PARTITION BY {table.partition_by}")
    lines.append(f"ORDER BY {table.order_by}")
    if table.ttl:
        lines.append(f"TTL {table.ttl}")
    return "\n".join(lines) + ";"


def _dedup_view(table: TableSpec, database: str) -> str:
    source = f"{database}.{table.name}"
    if table.topic.startswith("alpha.events"):
        body = (
            f"SELECT *, time FROM {source} FINAL"  # noqa: S608 (names from TABLES)
            " ORDER BY event_id, revision DESC LIMIT 1 BY event_id"
        )
        what = "the latest revision of each event"
    else:
        body = f"SELECT *, time FROM {source} FINAL"  # noqa: S608 (names from TABLES)
        what = "one row per key"
    return (
        f"-- {table.name} without duplicates ({what}).\n"
        f"CREATE VIEW IF NOT EXISTS {source}_dedup AS {body};"
    )


MIGRATIONS = ("001_core", "002_downstream")


def ddl(database: str = DATABASE, migration: str = "001_core") -> str:
    """Return a migration's DDL: its record tables and dedup views (core: database, offsets)."""
    if migration not in MIGRATIONS:
        raise WarehouseError(f"unknown migration {migration!r}: {', '.join(MIGRATIONS)}")
    command = "ddl" if migration == "001_core" else f"ddl {migration}"
    parts = [
        f"-- Generated by `python -m topology.warehouse {command}` from schemas/avro; do not edit.",
        "-- Tables of spec 002 §12; docs/analytics.md explains them."
        if migration == "001_core"
        else "-- The downstream stage's tables (DESIGN.md §8); docs/downstream.md explains them.",
        f"CREATE DATABASE IF NOT EXISTS {database};",
    ]
    for table in TABLES:
        if table.migration == migration:
            parts.append(table_ddl(table, database))
            parts.append(_dedup_view(table, database))
    if migration != "001_core":
        return "\n\n".join(parts) + "\n"
    parts.append(
        "-- The sink's exactly-once position: the next offset of each partition it has stored.\n"
        f"CREATE TABLE IF NOT EXISTS {database}.sink_offsets\n"
        "(\n    topic LowCardinality(String),\n    partition Int32,\n    next_offset Int64,\n"
        "    _inserted_at DateTime('UTC') DEFAULT now()\n)\n"
        "ENGINE = ReplacingMergeTree(next_offset)\nORDER BY (topic, partition);"
    )
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- the client


def chdb_path(dsn: str) -> Path | None:
    """Return the directory of a ``chdb://`` DSN, or None for a server DSN."""
    parts = urlsplit(dsn)
    if parts.scheme != "chdb":
        return None
    return Path(parts.netloc + parts.path)


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


class Warehouse:
    """A ClickHouse client (chDB or server) with the project's tables; thread-safe.

    Args:
        dsn: ``chdb:///dir`` or ``http(s)://[user:password@]host:port[/database]``.

    Raises:
        WarehouseError: The store cannot be opened (a chDB directory held by another process,
            a server that does not answer).
    """

    def __init__(self, dsn: str) -> None:
        import clickhouse_connect

        self.dsn = dsn
        self.lock = threading.RLock()
        path = chdb_path(dsn)
        #: True for chDB (in-process), False for a server.
        self.embedded = path is not None
        try:
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                self.client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
            else:
                self.client = clickhouse_connect.get_client(dsn=dsn)
        except Exception as exc:  # the drivers raise many types; one line for the user
            held = path is not None and ("status" in str(exc) or "EmbeddedServer" in str(exc))
            hint = " (another process holds the directory: query it through `alpha sql`)"
            raise WarehouseError(
                f"cannot open ClickHouse at {dsn}: {_first_line(exc)}{hint if held else ''}"
            ) from exc

    def close(self) -> None:
        """Release the client (and a chDB directory)."""
        with self.lock:
            self.client.close()

    def migrate(self, directory: Path = DDL_DIR) -> list[str]:
        """Apply every ``NNN_*.sql`` of ``directory`` not applied yet, in order; return them."""
        with self.lock:
            self.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            self.command(
                f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations (name String,"
                " applied_at DateTime('UTC') DEFAULT now()) ENGINE = ReplacingMergeTree"
                " ORDER BY name"
            )
            done = {r[0] for r in self.rows(f"SELECT name FROM {DATABASE}.schema_migrations")}  # noqa: S608
            applied = []
            for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
                if path.name in done:
                    continue
                for statement in _statements(path.read_text(encoding="utf-8")):
                    self.command(statement)
                self.client.insert(
                    f"{DATABASE}.schema_migrations", [[path.name]], column_names=["name"]
                )
                applied.append(path.name)
            return applied

    def command(self, sql: str) -> None:
        """Run a statement that returns nothing."""
        with self.lock:
            try:
                self.client.command(sql)
            except Exception as exc:
                raise WarehouseError(f"ClickHouse: {_first_line(exc)}") from exc

    def rows(self, sql: str, *, readonly: bool = False) -> list[tuple[Any, ...]]:
        """Run a query; return its rows (``readonly``: as in :meth:`text`)."""
        settings = None
        if readonly:
            check_read_only(sql)
            settings = None if self.embedded else {"readonly": 2}
        with self.lock:
            try:
                return [tuple(r) for r in self.client.query(sql, settings=settings).result_rows]
            except Exception as exc:
                raise WarehouseError(f"ClickHouse: {_first_line(exc)}") from exc

    def text(self, sql: str, fmt: str = "PrettyCompactMonoBlock", *, readonly: bool = True) -> str:
        """Run a query; return its result rendered by ClickHouse in ``fmt``.

        Read-only queries: a server enforces it (``readonly = 2`` on the request, so ``SETTINGS``
        clauses still work); chDB would keep that setting for the whole session and refuse the
        sink's next insert, so there the statement must be a query (:func:`check_read_only`).
        """
        settings = None
        if readonly:
            check_read_only(sql)
            settings = None if self.embedded else {"readonly": 2}
        with self.lock:
            try:
                data = self.client.raw_query(sql, fmt=fmt, settings=settings)
            except Exception as exc:
                raise WarehouseError(f"ClickHouse: {_first_line(exc)}") from exc
        return bytes(data).decode("utf-8", errors="replace")

    def insert(self, table: str, names: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        """Insert rows (``data``) into ``alpha.<table>``."""
        if not data:
            return
        with self.lock:
            try:
                self.client.insert(f"{DATABASE}.{table}", data, column_names=list(names))
            except Exception as exc:
                raise WarehouseError(f"ClickHouse insert into {table}: {_first_line(exc)}") from exc

    def offsets(self) -> dict[tuple[str, int], int]:
        """Return the sink's stored next offset of every partition."""
        rows = self.rows(
            f"SELECT topic, partition, max(next_offset) FROM {DATABASE}.sink_offsets"  # noqa: S608
            " GROUP BY topic, partition"
        )
        return {(str(t), int(p)): int(o) for t, p, o in rows}


_QUERY_WORDS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
_COMMENTS = re.compile(r"(--[^\n]*|/\*.*?\*/)", re.DOTALL)


def check_read_only(sql: str) -> None:
    """Refuse anything but a query (``SELECT``, ``WITH``, ``SHOW``, ``DESCRIBE``, ...).

    ClickHouse refuses several statements in one request, so the first word decides.

    Raises:
        WarehouseError: The statement could write or change something (readonly).
    """
    text = _COMMENTS.sub(" ", sql).lstrip(" \t\r\n(")
    word = text.split(None, 1)[0].upper() if text.split() else ""
    if word not in _QUERY_WORDS:
        raise WarehouseError(
            f"readonly: {word or 'an empty statement'} is not a query; alpha sql runs"
            f" {', '.join(_QUERY_WORDS)} statements only"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    text = re.sub(r"\s+", " ", text.splitlines()[0] if text else text)
    return text[:400]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m topology.warehouse ddl [migration]``: print a migration's generated DDL."""
    import sys

    args = list(argv if argv is not None else sys.argv[1:])
    if not args or args[0] != "ddl" or len(args) > 2 or (args[1:] and args[1] not in MIGRATIONS):
        sys.stderr.write(
            f"usage: python -m topology.warehouse ddl [{'|'.join(MIGRATIONS)}]"
            f" > {DDL_DIR}/<migration>.sql\n"
        )
        return 2
    sys.stdout.write(ddl(migration=args[1] if len(args) == 2 else "001_core"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "CORE_DDL",
    "DATABASE",
    "TABLES",
    "TABLE_BY_TOPIC",
    "TableSpec",
    "Warehouse",
    "WarehouseError",
    "chdb_path",
    "columns",
    "ddl",
]
