"""The lattice worker: a Faust app whose one agent runs :class:`LatticeProcessor` per partition.

The agent is thin (STYLE.md): decode, ``step``, encode, send. It consumes ``md.raw.v0`` only,
keeps its state in four RocksDB tables with changelogs (``state.names``), and writes rows and
seal markers to ``lattice.v0``, summaries to ``market.in.v0``, rejects to ``lattice.dlq``; all
inside the source partition's transaction (:mod:`topology.faust_eos`). No windowed tables, no
timers: stream time only (DESIGN.md §4).

Run it with ``alpha worker lattice``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from prometheus_client import Counter, Gauge, Histogram

from connectors.registry import SchemaRegistry
from packs.feature import FeaturePack, load_feature_pack
from processors.lattice.processor import BadRecord, LatticeProcessor, Output
from schemas.errors import WireFormatError
from schemas.wire import AvroCodec
from state.store import KeyValueStore
from topology import spec
from topology.driver import LATTICE_STORES, RAW_TOPIC
from topology.faust_eos import STALL_TIMEOUT_S, EosStage, TableStore

log = logging.getLogger(__name__)

DLQ_TOPIC = spec.dlq_name("lattice.v0")
OUT_TOPICS = ("lattice.v0", "market.in.v0")

FINALIZE_MS = Histogram(
    "alpha_bar_finalize_latency_ms",
    "Processing time of a sealing record (rows of every asset of the partition), by tf, ms.",
    ["tf"],
    buckets=(0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
SNAPSHOT_WRITES = Counter(
    "alpha_snapshot_writes_total", "Feature rows written, by tf and dq status.", ["tf", "status"]
)
BASELINE_UPDATES = Counter(
    "alpha_baseline_updates_total",
    "Baseline updates by final rows, by feature and tf.",
    ["feature", "tf"],
)
DQ_STATUS = Counter("alpha_dq_status_count", "Feature rows by dq_status.", ["status"])
NULL_RATE = Gauge("alpha_null_rate", "Share of NULLs in the last 1m rows, by feature.", ["feature"])
CLOCK_SKEW = Histogram(
    "alpha_clock_skew_ms",
    "Median ingest - exchange time of each 1m row's records, ms.",
    buckets=(-1000, 0, 50, 100, 250, 500, 1000, 3000, 10000),
)
LATTICE_DLQ = Counter(
    "alpha_lattice_dlq_total", "md.raw.v0 records sent to lattice.dlq.", ["reason"]
)
NULLABLE = (
    "mid_close", "ret_m_1", "ret_m_5", "spread_mean_m_1", "oi_close", "oi_roc_m_5",
    "basis_bp_m_5", "obi_top5_mean_m_1", "z_vol_m_1", "z_ret_abs_m_1", "z_spread_m_1",
)  # fmt: skip
TF_NAME = {"m1": "1m", "m15": "15m", "h1": "1h"}
STREAM_BUFFER = 200_000
POLL_RECORDS = 2_000
#: RocksDB options of the stage's tables. With Faust's defaults (64 MiB write buffers, up to 3
#: per database) each partition's database holds everything written to it, up to 64-192 MiB, in
#: memtables before a flush; the accumulators are rewritten at every commit (0.2-1 MB/s at 16-76
#: ticks per record), so a long-running worker's RSS would grow by up to 8 x 64 MiB or more.
#: Reads hit the processor's cache, not RocksDB: smaller buffers only mean more, smaller flushes.
TABLE_OPTIONS = {"write_buffer_size": 8 * 2**20, "max_write_buffer_number": 2}


#: Default of ``--eager-commit``: a sealed minute is committed (visible) within 0.1 s.
EAGER_COMMIT_S = 0.1


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How to run a lattice worker.

    Attributes:
        bootstrap: Kafka bootstrap servers.
        registry_url: Schema registry (Confluent API).
        app_id: Consumer group / Faust app id (changelog topic prefix).
        data_dir: Where Faust keeps its RocksDB tables (wiped at every start).
        commit_interval_s: Faust's commit interval.
        replication: Replication factor of the changelog topics.
        session_timeout_s: Consumer session timeout: how long a dead worker's partitions
            wait before another member (or its own restart) takes them over.
        pack: The feature pack.
        stall_timeout_s: How long a record or commit may hold the stage before the worker
            crashes (:class:`topology.faust_eos.EosStage`).
        eager_commit_s: Commit within this many seconds after a record produced outputs (a
            sealed minute), not only every ``commit_interval_s``; None: periodic only.
    """

    bootstrap: str
    registry_url: str
    app_id: str = "alpha-lattice"
    data_dir: Path = Path("lattice-worker")
    commit_interval_s: float = 1.0
    replication: int = 1
    session_timeout_s: float = 10.0
    pack: FeaturePack | None = None
    stall_timeout_s: float = STALL_TIMEOUT_S
    eager_commit_s: float | None = EAGER_COMMIT_S


def build_app(options: WorkerOptions) -> faust.App:
    """Return a Faust app with the settings every exactly-once stage runs with."""
    return faust.App(
        options.app_id,
        broker=f"kafka://{options.bootstrap}",
        store="rocksdb://",
        processing_guarantee="exactly_once",
        web_enabled=False,
        datadir=str(options.data_dir),
        topic_replication_factor=options.replication,
        topic_allow_declare=True,
        table_standby_replicas=0,
        broker_commit_interval=options.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=max(0.5, options.session_timeout_s / 5),
        broker_rebalance_timeout=options.session_timeout_s * 2,
        # Faust takes a partition off the fetcher when the stream queue is under pressure and,
        # after a restart with a backlog, does not always put it back (the partition then
        # advances one record per commit). A queue far larger than a poll keeps it off that
        # path; records are small, so memory stays modest.
        stream_buffer_maxsize=STREAM_BUFFER,
        broker_max_poll_records=POLL_RECORDS,
    )


def run_app(app: faust.App, loglevel: str) -> None:
    """Wipe the app's local tables, then run its Faust worker until SIGTERM/SIGINT.

    State is always restored from the committed changelogs (docs/lattice.md), never from a
    local table a crash may have left ahead of the committed offsets.
    """
    tabledir = Path(app.conf.tabledir)
    if tabledir.exists():
        shutil.rmtree(tabledir)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()


class LatticeWorker:
    """Build the Faust app of the lattice stage (see module docstring)."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.pack = options.pack or load_feature_pack()
        with SchemaRegistry(options.registry_url) as registry:
            self.codecs: dict[str, AvroCodec] = {
                t: registry.codec(t) for t in (RAW_TOPIC, *OUT_TOPICS)
            }
        self.dlq_partitions = spec.topic(DLQ_TOPIC).partitions
        self.app = build_app(options)
        partitions = spec.topic(RAW_TOPIC).partitions
        self.source = self.app.topic(RAW_TOPIC, key_serializer="raw", value_serializer="raw")
        self.tables = {
            # Keys and values are raw bytes: TableStore writes RocksDB and the changelog itself,
            # and Faust's recovery copies changelog bytes into RocksDB as they are.
            name: self.app.Table(
                name,
                partitions=partitions,
                key_type=bytes,
                value_type=bytes,
                options=TABLE_OPTIONS,
            )
            for name in LATTICE_STORES
        }
        self.processors: dict[int, LatticeProcessor] = {}
        self.stores: dict[int, dict[str, TableStore]] = {}
        self.eos = EosStage(
            self.app,
            RAW_TOPIC,
            self._flush_partition,
            self._forget,
            options.stall_timeout_s,
            eager_commit_s=options.eager_commit_s,
        )
        self.app.agent(self.source, name="lattice")(self._agent)

    def _forget(self) -> None:
        # After a rebalance every partition starts from its table state, never from a cache.
        self.processors.clear()
        self.stores.clear()

    def _processor(self, partition: int) -> LatticeProcessor:
        proc = self.processors.get(partition)
        if proc is None:
            stores = {name: TableStore(t, partition) for name, t in self.tables.items()}
            self.stores[partition] = stores
            typed: Mapping[str, KeyValueStore] = stores
            proc = self.processors[partition] = LatticeProcessor(self.pack, typed)
        return proc

    async def _flush_partition(self, partition: int) -> None:
        """Commit hook: write a partition's staged state, its changelog into its transaction."""
        proc = self.processors.get(partition)
        if proc is None:
            return
        proc.flush()
        for store in self.stores[partition].values():
            for key, value in store.drain():
                await self.eos.send(partition, store.changelog_topic, key, value, partition)

    async def _agent(self, stream: Any) -> None:
        await self.eos.process(stream, self._handle)

    async def _handle(self, partition: int, offset: int, key: bytes | None, data: bytes) -> None:
        started = time.perf_counter()
        try:
            record = self.codecs[RAW_TOPIC].decode(data)
            outs = self._processor(partition).step(partition, record)
        except (WireFormatError, BadRecord) as exc:
            await self._dead_letter(partition, offset, key, data, exc)
            return
        for out in outs:
            codec = self.codecs[out.topic]
            await self.eos.send(
                partition, out.topic, out.key, codec.encode({"body": out.value}), out.partition
            )
        if outs:
            self._observe(outs, (time.perf_counter() - started) * 1000)
        proc = self.processors[partition]
        for (feature, tf), n in proc.baseline_updates.items():
            BASELINE_UPDATES.labels(feature, tf).inc(n)
        proc.baseline_updates.clear()

    async def _dead_letter(
        self, partition: int, offset: int, key: bytes | None, data: bytes, exc: Exception
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        headers = [
            ("error", reason.encode()),
            ("stage", b"lattice"),
            ("source", f"{RAW_TOPIC}/{partition}@{offset}".encode()),
        ]
        await self.eos.send(
            partition, DLQ_TOPIC, key, data, partition % self.dlq_partitions, headers
        )
        LATTICE_DLQ.labels(type(exc).__name__).inc()
        log.warning("lattice: %s/%d@%d -> %s: %s", RAW_TOPIC, partition, offset, DLQ_TOPIC, reason)

    def _observe(self, outs: list[Output], elapsed_ms: float) -> None:
        rows = [o.value for o in outs if o.topic == "lattice.v0" and o.key is not None]
        for tf in sorted({TF_NAME[r["tf"]] for r in rows}):
            FINALIZE_MS.labels(tf).observe(elapsed_ms)
        minute_rows = [r for r in rows if r["tf"] == "m1"]
        for r in rows:
            SNAPSHOT_WRITES.labels(TF_NAME[r["tf"]], r["dq_status"]).inc()
            DQ_STATUS.labels(r["dq_status"]).inc()
        for r in minute_rows:
            if r.get("clock_skew_ms") is not None:
                CLOCK_SKEW.observe(r["clock_skew_ms"])
        if minute_rows:
            for feature in NULLABLE:
                nulls = sum(r.get(feature) is None for r in minute_rows)
                NULL_RATE.labels(feature).set(nulls / len(minute_rows))

    def run(self, loglevel: str = "warning") -> None:
        """Wipe local tables, then run the Faust worker until it is stopped (SIGTERM/SIGINT)."""
        run_app(self.app, loglevel)
