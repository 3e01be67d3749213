"""``alpha sink``: the topics into ClickHouse exactly once, with a query endpoint for ``alpha sql``.

The sink is a plain ``read_committed`` consumer (no Faust: it keeps no state but its offsets,
and those live in ClickHouse next to the rows). It assigns itself every partition of its topics
at the offsets stored in ``alpha.sink_offsets`` and loops: take up to ``batch_max`` records or
``batch_ms`` of them, decode each with the writer schema the registry holds for its id, turn
them into rows (:func:`rows_of`), insert the rows table by table, then insert the batch's next
offsets. A crash after the rows and before the offsets re-delivers the batch: every table is a
``ReplacingMergeTree`` keyed by the record's identity, so the second copy replaces the first
and ``FINAL`` / the ``*_dedup`` views never show a duplicate (docs/analytics.md). A record that
cannot be decoded or mapped goes to ``alpha.sink.dlq`` with the reason, and the sink goes on.

One sink per store: a chDB directory can be opened by one process only, so the sink also
serves read-only SQL over HTTP on 127.0.0.1 (``POST /query``, ``GET /status``) and writes
where to find it into ``<runtime>/sink.json``; ``alpha sql`` uses it while the sink runs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from processors.detect.processor import kind_of
from schemas.errors import AlphaError
from schemas.events import to_json
from topology import spec
from topology.events_cli import RegistryDecoder
from topology.warehouse import (
    SINK_COLUMN_NAMES,
    TABLE_BY_TOPIC,
    TableSpec,
    Warehouse,
    WarehouseError,
    columns,
)

log = logging.getLogger(__name__)

TOPICS = tuple(t.topic for t in TABLE_BY_TOPIC.values())
DLQ_TOPIC = "alpha.sink.dlq"
ENDPOINT_FILE = "sink.json"

ROWS = Counter("alpha_sink_rows_total", "Rows written to ClickHouse, by table.", ["table"])
BATCHES = Counter("alpha_sink_batches_total", "Batches written (rows, then offsets).")
SINK_DLQ = Counter("alpha_sink_dlq_total", "Records sent to alpha.sink.dlq, by topic.", ["topic"])
LAG = Gauge("alpha_sink_lag_records", "Records behind the high watermark, by topic.", ["topic"])


class SinkError(AlphaError):
    """The sink cannot start or cannot write."""


# ----------------------------------------------------------------------------- records -> rows


class RowError(ValueError):
    """A decoded record does not fit its table (dead-lettered with this message)."""


def _cell(value: Any, ctype: str) -> Any:
    if isinstance(value, uuid.UUID):  # fastavro decodes the uuid logical type
        return str(value)
    if ctype == "String" and isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if ctype.startswith("Array(String") and isinstance(value, list):
        return [
            json.dumps(v, sort_keys=True, separators=(",", ":")) if isinstance(v, dict) else v
            for v in value
        ]
    if value is None and ctype.startswith(("Array", "Map")):
        return [] if ctype.startswith("Array") else {}
    return value


def _event_row(event: Mapping[str, Any]) -> dict[str, Any]:
    prov = event["provenance"]
    member = event["membership"]
    row = dict(event)
    row.update(
        is_in_universe=member["is_in_universe"],
        is_hot=member["is_hot"],
        universe_rev=member["universe_rev"],
        producer=prov["producer"],
        feature_pack=prov["feature_pack"],
        detector_pack=prov["detector_pack"],
        config_hash=prov["config_hash"],
        git_commit=prov["git_commit"],
        universe_policy_rev=prov["universe_policy_rev"],
        source_lag_ms=prov.get("source_lag_ms"),
        clock_skew_ms=prov.get("clock_skew_ms"),
        replay_of=bool(prov.get("replay_of")),
        payload=json.dumps(to_json(event), ensure_ascii=False, separators=(",", ":")),
    )
    return row


@dataclass
class TableLayout:
    """A table's insert columns: its payload columns, then the sink's."""

    table: TableSpec
    cols: list[tuple[str, str]]

    @property
    def names(self) -> list[str]:
        """Column names in insert order."""
        return [n for n, _ in self.cols] + list(SINK_COLUMN_NAMES)


LAYOUTS = {t.topic: TableLayout(t, columns(t)) for t in TABLE_BY_TOPIC.values()}


def rows_of(topic: str, value: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the column values of a decoded record, or None when its table takes no such record.

    ``lattice.v0`` carries seal markers and market frames beside feature rows: only the rows are
    stored (the frames' content is ``market_snapshot``).

    Raises:
        RowError: The record lacks a column its table needs.
    """
    if topic == "lattice.v0":
        body = value.get("body", value)
        if kind_of(body) != "row":
            return None
        value = body
    elif topic.startswith("alpha.events"):
        try:
            value = _event_row(value)
        except (KeyError, TypeError) as exc:
            raise RowError(f"{topic}: event lacks {exc}") from exc
    layout = LAYOUTS[topic]
    try:
        return {name: _cell(value[name], ctype) for name, ctype in layout.cols}
    except KeyError as exc:
        raise RowError(f"{topic}: record lacks column {exc}") from exc


# ----------------------------------------------------------------------------- the loop


@dataclass
class SinkOptions:
    """How the sink runs (see ``alpha sink --help``)."""

    bootstrap: str
    registry_url: str
    dsn: str
    runtime: Path
    host: str = "127.0.0.1"
    query_port: int = 8124
    batch_max: int = 20_000
    batch_ms: int = 500
    topics: tuple[str, ...] = TOPICS
    group_id: str = "alpha-sink"


@dataclass
class SinkStatus:
    """What ``GET /status`` answers."""

    started_at: float = field(default_factory=time.time)
    batches: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    positions: dict[str, int] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)
    last_batch_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The status as a JSON object (lag = records behind the high watermarks)."""
        lag = {k: max(0, self.ends.get(k, 0) - v) for k, v in self.positions.items()}
        return {
            "pid": os.getpid(),
            "batches": self.batches,
            "rows": dict(sorted(self.rows.items())),
            "dead_letters": self.dead_letters,
            "positions": dict(sorted(self.positions.items())),
            "ends": dict(sorted(self.ends.items())),
            "lag": sum(lag.values()),
            "last_batch_at": self.last_batch_at,
        }


class Sink:
    """The consume -> insert rows -> insert offsets loop (see module docstring)."""

    def __init__(self, options: SinkOptions, warehouse: Warehouse | None = None) -> None:
        self.options = options
        self.warehouse = warehouse or Warehouse(options.dsn)
        self.warehouse.migrate()
        self.decoder = RegistryDecoder(options.registry_url)
        self.status = SinkStatus()
        self._stop = threading.Event()
        self._dlq: Producer | None = None
        self.consumer = Consumer(
            {
                "bootstrap.servers": options.bootstrap,
                "group.id": options.group_id,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )

    def stop(self) -> None:
        """Ask the loop to finish its batch and return."""
        self._stop.set()

    def _assign(self) -> None:
        stored = self.warehouse.offsets()
        assignment = []
        for topic in self.options.topics:
            for p in range(spec.topic(topic).partitions):
                offset = stored.get((topic, p), OFFSET_BEGINNING)
                assignment.append(TopicPartition(topic, p, offset))
                if offset != OFFSET_BEGINNING:
                    self.status.positions[f"{topic}/{p}"] = offset
        self.consumer.assign(assignment)
        log.info("sink: %d partitions, %d with stored offsets", len(assignment), len(stored))

    def run(self) -> None:
        """Loop until :meth:`stop` (or SIGTERM through the CLI)."""
        self._assign()
        last_ends = 0.0
        try:
            while not self._stop.is_set():
                batch = self._take()
                if batch:
                    self._write(batch)
                now = time.monotonic()
                if now - last_ends > 1.0:
                    self._refresh_ends()
                    last_ends = now
        finally:
            self.consumer.close()
            if self._dlq is not None:
                self._dlq.flush(10)

    def _take(self) -> list[Any]:
        batch: list[Any] = []
        deadline = time.monotonic() + self.options.batch_ms / 1000
        while len(batch) < self.options.batch_max and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msgs = self.consumer.consume(min(5000, self.options.batch_max - len(batch)), left)
            for msg in msgs:
                if msg.error():
                    log.warning("sink: %s", msg.error())
                    continue
                batch.append(msg)
        return batch

    def _write(self, batch: Sequence[Any]) -> None:
        per_table: dict[str, list[list[Any]]] = defaultdict(list)
        nexts: dict[tuple[str, int], int] = {}
        for msg in batch:
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            nexts[(topic, partition)] = offset + 1
            try:
                value = self.decoder.decode(msg.value() or b"")
                row = rows_of(topic, value)
            except (AlphaError, RowError, ValueError, KeyError, TypeError) as exc:
                self._dead_letter(msg, str(exc))
                continue
            if row is None:
                continue
            layout = LAYOUTS[topic]
            _ts_type, ts_ms = msg.timestamp()
            kafka_ts = datetime.fromtimestamp(max(ts_ms, 0) / 1000, tz=UTC)
            per_table[layout.table.name].append([*row.values(), topic, partition, offset, kafka_ts])
        for layout in LAYOUTS.values():
            data = per_table.get(layout.table.name)
            if data:
                self.warehouse.insert(layout.table.name, layout.names, data)
                ROWS.labels(layout.table.name).inc(len(data))
                rows = self.status.rows
                rows[layout.table.name] = rows.get(layout.table.name, 0) + len(data)
        self.warehouse.insert(
            "sink_offsets",
            ("topic", "partition", "next_offset"),
            [[t, p, o] for (t, p), o in sorted(nexts.items())],
        )
        for (t, p), o in nexts.items():
            self.status.positions[f"{t}/{p}"] = o
        self.status.batches += 1
        self.status.last_batch_at = time.time()
        BATCHES.inc()

    def _refresh_ends(self) -> None:
        per_topic: dict[str, int] = defaultdict(int)
        for topic in self.options.topics:
            for p in range(spec.topic(topic).partitions):
                tp = TopicPartition(topic, p)
                try:
                    # Every fetch response carries the partition's high watermark: the cached
                    # figure is at most one long-poll old. Asking the broker instead queues
                    # behind the consumer's fetch (up to 500 ms per partition, every second),
                    # which stalled the sink for seconds at low traffic; ask only until a
                    # fetch has answered for the partition.
                    _lo, hi = self.consumer.get_watermark_offsets(tp, cached=True)
                    if hi < 0:
                        _lo, hi = self.consumer.get_watermark_offsets(tp, timeout=2, cached=False)
                except Exception:  # the broker is restarting: keep the last figures
                    return
                key = f"{topic}/{p}"
                self.status.ends[key] = hi
                pos = self.consumer.position([tp])[0].offset
                if pos >= 0:
                    self.status.positions[key] = max(self.status.positions.get(key, 0), pos)
                per_topic[topic] += max(0, hi - self.status.positions.get(key, 0))
        for topic, lag in per_topic.items():
            LAG.labels(topic).set(lag)

    def _dead_letter(self, msg: Any, reason: str) -> None:
        if self._dlq is None:
            self._dlq = Producer({"bootstrap.servers": self.options.bootstrap})
        headers: list[tuple[str, str | bytes | None]] = [
            ("alpha.reason", reason[:500].encode()),
            ("alpha.source", f"{msg.topic()}/{msg.partition()}@{msg.offset()}".encode()),
        ]
        self._dlq.produce(DLQ_TOPIC, msg.value(), key=msg.key(), headers=headers)
        self._dlq.poll(0)
        self.status.dead_letters += 1
        SINK_DLQ.labels(msg.topic()).inc()
        log.warning(
            "sink: dead-lettered %s/%d@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason
        )


# ----------------------------------------------------------------------------- query endpoint


def _handler(warehouse: Warehouse, status: SinkStatus) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("query endpoint: %s", format % args)

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/status":
                self._reply(200, json.dumps(status.as_json()).encode(), "application/json")
            else:
                self._reply(404, b"GET /status or POST /query\n")

        def do_POST(self) -> None:
            if not self.path.startswith("/query"):
                self._reply(404, b"POST /query\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            sql = self.rfile.read(length).decode("utf-8")
            fmt = self.headers.get("X-Alpha-Format") or "PrettyCompactMonoBlock"
            try:
                text = warehouse.text(sql, fmt)
            except WarehouseError as exc:
                self._reply(400, str(exc).encode())
                return
            self._reply(200, text.encode())

    return Handler


def endpoint_url(server: ThreadingHTTPServer) -> str:
    """The ``http://host:port`` a query server listens on."""
    host, port = server.server_address[:2]
    name = host.decode() if isinstance(host, bytes) else str(host)
    return f"http://{name}:{port}"


@contextmanager
def query_endpoint(
    warehouse: Warehouse, status: SinkStatus, options: SinkOptions
) -> Iterator[ThreadingHTTPServer]:
    """Serve read-only SQL and status on ``options.host``; advertise it in ``sink.json``."""
    try:
        server = ThreadingHTTPServer(
            (options.host, options.query_port), _handler(warehouse, status)
        )
    except OSError as exc:
        raise SinkError(
            f"cannot serve queries on {options.host}:{options.query_port}: {exc.strerror}"
            " (ALPHA_SQL_PORT, or --query-port 0 for any free port)"
        ) from exc
    thread = threading.Thread(target=server.serve_forever, name="sink-query", daemon=True)
    thread.start()
    options.runtime.mkdir(parents=True, exist_ok=True)
    marker = options.runtime / ENDPOINT_FILE
    url = endpoint_url(server)
    marker.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "url": url,
                "dsn": options.dsn,
            }
        )
        + "\n",
        encoding="utf-8",
    )
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("pid") == os.getpid():
                marker.unlink()
        except (OSError, ValueError):
            pass


def run_sink(options: SinkOptions, on_ready: Callable[[str], None] | None = None) -> SinkStatus:
    """Run the sink in the foreground until SIGTERM/SIGINT; return its final status."""
    sink = Sink(options)
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def _stop(signum: int, _frame: Any) -> None:
        sink.stop()

    for s in previous:
        signal.signal(s, _stop)
    try:
        with query_endpoint(sink.warehouse, sink.status, options) as server:
            if on_ready is not None:
                on_ready(endpoint_url(server))
            sink.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sink.warehouse.close()
    return sink.status
