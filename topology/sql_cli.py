"""``alpha sink`` and ``alpha sql``: the ClickHouse side of the topology (docs/analytics.md).

``alpha sql`` asks the running sink's query endpoint when the store is the embedded chDB one
(a chDB directory opens in one process only), and opens the store itself when no sink runs;
against a ClickHouse server it connects directly. Queries are read-only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from schemas.errors import AlphaError
from topology.settings import StackSettings

#: Named example queries (``alpha sql --example NAME``), documented in docs/analytics.md.
EXAMPLES: dict[str, tuple[str, str]] = {
    "rows-per-tf": (
        "feature rows per timeframe and source",
        "SELECT tf, source, count() AS rows, uniqExact(asset_uid) AS assets,"
        " min(time) AS first, max(time) AS last"
        " FROM alpha.features_snapshot FINAL GROUP BY tf, source ORDER BY tf, source",
    ),
    "event-rates": (
        "events by class per hour",
        "SELECT toStartOfHour(time) AS hour, class, count() AS events"
        " FROM alpha.anomaly_event_dedup GROUP BY hour, class ORDER BY hour, class",
    ),
    "severity-quantiles": (
        "severity quantiles (p50, p90, p99) by class",
        "SELECT class, count() AS events,"
        " arrayMap(x -> round(x, 1), quantilesExact(0.5, 0.9, 0.99)(severity)) AS p50_p90_p99"
        " FROM alpha.anomaly_event_dedup GROUP BY class ORDER BY events DESC, class",
    ),
    "top-events": (
        "the ten strongest events",
        "SELECT time, symbol, class, subtype, severity, event_id"
        " FROM alpha.anomaly_event_dedup ORDER BY severity DESC, time, event_id LIMIT 10",
    ),
    "around-event": (
        "1m features from 10 minutes before to 5 after the strongest event"
        " (edit the event_id to look at another)",
        "WITH (SELECT (asset_uid, exchange_ts) FROM alpha.anomaly_event_dedup"
        " ORDER BY severity DESC, time, event_id LIMIT 1) AS e"
        " SELECT time, symbol, close, round(ret_m_1 * 1e4, 1) AS ret_bp,"
        " round(z_vol_m_1, 2) AS z_vol,"
        " round(z_ret_abs_m_1, 2) AS z_ret, round(cvd_delta_m_1, 0) AS cvd, dq_status"
        " FROM alpha.features_snapshot FINAL"
        " WHERE tf = 'm1' AND asset_uid = e.1"
        " AND exchange_ts BETWEEN e.2 - 600000 AND e.2 + 300000 ORDER BY exchange_ts",
    ),
    "dq-ok-rate": (
        "data-quality split of the 1m rows per asset",
        "SELECT symbol, count() AS rows, round(countIf(dq_status = 'ok') / count(), 3) AS ok_rate,"
        " countIf(dq_status = 'partial') AS partial, countIf(dq_status = 'stale') AS stale"
        " FROM alpha.features_snapshot FINAL WHERE tf = 'm1' GROUP BY symbol ORDER BY symbol",
    ),
}

_FORMATS = {
    "pretty": "PrettyCompactMonoBlock",
    "csv": "CSVWithNames",
    "tsv": "TSVWithNames",
    "json": "JSONEachRow",
    "markdown": "Markdown",
}


class SqlError(AlphaError):
    """A query failed or no store answered."""


def _endpoint(settings: StackSettings, dsn: str) -> str | None:
    marker = settings.runtime / "sink.json"
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("dsn") != dsn:
        return None
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None  # a marker left by a killed sink
    return str(info["url"])


def run_query(settings: StackSettings, sql: str, fmt: str, dsn: str | None = None) -> str:
    """Run one read-only query; return ClickHouse's rendering of the result in ``fmt``.

    Raises:
        SqlError: The query failed, or neither the sink nor the store answered.
    """
    from topology.warehouse import Warehouse, WarehouseError, chdb_path

    dsn = dsn or settings.clickhouse_dsn
    url = _endpoint(settings, dsn) if chdb_path(dsn) is not None else None
    if url is not None and url.startswith("http://"):
        request = urllib.request.Request(  # noqa: S310 (http:// checked above)
            url + "/query", data=sql.encode(), headers={"X-Alpha-Format": fmt}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as reply:  # noqa: S310
                return str(reply.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise SqlError(exc.read().decode("utf-8", errors="replace").strip()) from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise SqlError(f"the sink's query endpoint {url} does not answer: {exc}") from exc
    try:
        warehouse = Warehouse(dsn)
    except WarehouseError as exc:
        raise SqlError(str(exc)) from exc
    try:
        return warehouse.text(sql, fmt)
    except WarehouseError as exc:
        raise SqlError(str(exc)) from exc
    finally:
        warehouse.close()


def _cmd_sql(args: argparse.Namespace, settings: StackSettings) -> int:
    if args.list:
        for name, (what, sql) in EXAMPLES.items():
            sys.stdout.write(f"{name:<20} {what}\n    {sql}\n")
        return 0
    if args.example:
        if args.example not in EXAMPLES:
            raise SqlError(f"no example {args.example!r}; known: {', '.join(EXAMPLES)}")
        sql = EXAMPLES[args.example][1]
    elif args.query == "-":
        sql = sys.stdin.read()
    elif args.query:
        sql = args.query
    else:
        raise SqlError('give a query (alpha sql "SELECT ..."), --example NAME or --list')
    fmt = _FORMATS.get(args.format, args.format)
    sys.stdout.write(run_query(settings, sql, fmt, args.dsn))
    sys.stdout.flush()
    return 0


def _cmd_sink(args: argparse.Namespace, settings: StackSettings) -> int:
    from prometheus_client import start_http_server

    from topology.sink import SinkOptions, run_sink

    if not args.debug:
        logging.getLogger().setLevel(getattr(logging, args.log_level.upper()))
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=settings.host)
    dsn = args.dsn or settings.clickhouse_dsn
    options = SinkOptions(
        bootstrap=settings.bootstrap_servers,
        registry_url=settings.registry_url,
        dsn=dsn,
        runtime=settings.runtime,
        host=settings.host,
        query_port=settings.sql_port if args.query_port is None else args.query_port,
        batch_max=args.batch_max,
        batch_ms=args.batch_ms,
    )

    def ready(url: str) -> None:
        sys.stderr.write(f"alpha sink: {dsn} <- {', '.join(options.topics)}; SQL at {url}\n")
        sys.stderr.flush()

    status = run_sink(options, ready)
    sys.stderr.write(f"alpha sink: stopped after {status.batches} batches, rows {status.rows}\n")
    return 0


def add_sql_parsers(sub: Any) -> None:
    """Add ``alpha sink`` and ``alpha sql``."""
    sink = sub.add_parser(
        "sink",
        help="write lattice.v0, market.snapshot.v0, universe.v0 and the event topics to"
        " ClickHouse (exactly once) and serve alpha sql",
        description=(sys.modules[__name__].__doc__ or "")
        + "\nThe sink stores its offsets in ClickHouse (alpha.sink_offsets) and resumes from"
        " them; see docs/analytics.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sink.add_argument(
        "--dsn", help="chdb:///dir or http://user:pw@host:8123 (ALPHA_CLICKHOUSE_URL)"
    )
    sink.add_argument(
        "--query-port", type=int, help="serve alpha sql here (ALPHA_SQL_PORT, 8124; 0 = any)"
    )
    sink.add_argument("--batch-max", type=int, default=20_000, help="records per batch (20000)")
    sink.add_argument(
        "--batch-ms", type=int, default=500, help="milliseconds to fill a batch (500)"
    )
    sink.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    sink.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="warning"
    )
    sink.set_defaults(func=_cmd_sink)

    sql = sub.add_parser(
        "sql",
        help="run a read-only SQL query on the ClickHouse tables and print a table",
        description="Run a read-only query. While the sink runs, it answers (one process owns an"
        " embedded chDB directory); otherwise the store is opened directly. Tables: "
        "features_snapshot, market_snapshot, anomaly_event, anomaly_event_replay, universe_audit"
        " (database alpha; *_dedup views show one row per key). Examples: alpha sql --list.",
    )
    sql.add_argument("query", nargs="?", help='the query, or "-" to read it from stdin')
    sql.add_argument("--example", metavar="NAME", help="run a named example query (--list)")
    sql.add_argument("--list", action="store_true", help="list the example queries")
    sql.add_argument(
        "--format",
        default="pretty",
        help="pretty (default), csv, tsv, json, markdown, or any ClickHouse output format",
    )
    sql.add_argument("--dsn", help="chdb:///dir or http://... (default ALPHA_CLICKHOUSE_URL)")
    sql.set_defaults(func=_cmd_sql)


__all__ = ["EXAMPLES", "SqlError", "add_sql_parsers", "run_query"]
