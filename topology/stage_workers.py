"""The market and detector workers: Faust apps around the market and detect processors.

Like the lattice worker (:mod:`topology.lattice_worker`) each agent is thin -- decode, ``step``,
encode, send -- with one input topic, state in a RocksDB table with a changelog, and every output,
changelog record and dead letter in the source partition's transaction
(:class:`topology.faust_eos.EosStage`).

- ``alpha worker market``: ``market.in.v0`` (one partition) -> ``market.snapshot.v0``,
  ``universe.v0`` and one market frame per ``lattice.v0`` partition; state ``market.state.v1``.
- ``alpha worker detector``: ``lattice.v0`` (rows, seals, frames) -> ``alpha.events.v0``;
  events that break the contract's bounds go to ``alpha.events.dlq`` with the reason; each
  minute step's quotes and events also go to ``trade.in.v0`` for the downstream stage
  (:mod:`processors.detect.feed`); state ``detect.state.v1``.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from connectors.registry import SchemaRegistry
from packs.detector import DetectorPack, load_detector_pack
from packs.feature import load_feature_pack
from packs.universe import UniversePolicy, load_universe_policy
from processors.detect import processor as detect
from processors.detect.events import Provenance
from processors.detect.feed import TRADE_IN_TOPIC as TRADE_IN
from processors.market import stage as market_stage
from processors.market.snapshot import MarketInError, MarketProcessor
from schemas import catalog
from schemas.errors import WireFormatError
from schemas.events import violations
from schemas.wire import AvroCodec
from topology import spec
from topology.faust_eos import EosStage, TableStore
from topology.lattice_worker import WorkerOptions, build_app, run_app

log = logging.getLogger(__name__)
T = TypeVar("T")

MARKET_IN = "market.in.v0"
LATTICE = "lattice.v0"
EVENTS = detect.EVENTS_TOPIC

TRIGGERS = Counter(
    "alpha_detector_triggers_total", "Detector triggers (before scoring).", ["class", "subtype"]
)
PUBLISHED = Counter("alpha_event_published_total", "Events published, by class.", ["class"])
SUPPRESSED = Counter(
    "alpha_event_suppressed_total", "Triggers that did not become events, by reason.", ["reason"]
)
SEVERITY = Histogram(
    "alpha_severity_histogram",
    "Severity of published events, by class.",
    ["class"],
    buckets=(10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
)
BUDGET = Gauge(
    "alpha_budget_utilization",
    "Share of the global per-minute cap a class used in the last scored minute (0-1).",
    ["class"],
)
DEFERRED = Counter(
    "alpha_deferred_detectors_total",
    "Triggers held back by the per-minute caps (budget_class, global_cap), by liquidity tier.",
    ["tier"],
)
EVENTS_DLQ = Counter(
    "alpha_events_dlq_total", "Records sent to alpha.events.dlq, by reason.", ["reason"]
)
MARKET_DLQ = Counter("alpha_market_dlq_total", "market.in.v0 records sent to its DLQ.", ["reason"])
MARKET_PENDING = Gauge(
    "alpha_market_pending_minutes", "Minutes the market stage waits on (a lagging partition)."
)
MARKET_OUTCOMES = Counter(
    "alpha_market_records_total", "market.in.v0 records by outcome.", ["outcome"]
)
DETECT_OUTCOMES = Counter(
    "alpha_detect_records_total", "lattice.v0 records by outcome.", ["outcome"]
)


def git_commit() -> str:
    """Return ``ALPHA_GIT_COMMIT``, else the checkout's ``git rev-parse HEAD``, else unknown."""
    env = os.environ.get("ALPHA_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else "unknown"


def producer_name() -> str:
    """Return ``alpha-detector@<package version>``."""
    try:
        version = metadata.version("alpha-data-detector")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"alpha-detector@{version}"


def codecs_for(registry_url: str, topics: tuple[str, ...]) -> dict[str, AvroCodec]:
    """Register each topic's schema; return its wire-format codec."""
    with SchemaRegistry(registry_url) as registry:
        return {t: registry.codec(t) for t in topics}


class StageWorker:
    """What both workers share: the app, the EOS stage, dead letters, encode and send."""

    def __init__(
        self, options: WorkerOptions, source: str, table: str, partitions: int, name: str
    ) -> None:
        self.options = options
        self.source_topic = source
        self.app = build_app(options)
        self.source = self.app.topic(source, key_serializer="raw", value_serializer="raw")
        self.table = self.app.Table(table, partitions=partitions, key_type=bytes, value_type=bytes)
        self.stores: dict[int, TableStore] = {}
        self.codecs: dict[str, AvroCodec] = {}
        # Both sources are written in transactions: their offsets have holes (commit markers).
        self.eos = EosStage(
            self.app,
            source,
            self._flush_partition,
            self._forget,
            options.stall_timeout_s,
            contiguous=False,
            eager_commit_s=options.eager_commit_s,
        )
        self.app.agent(self.source, name=name)(self._agent)

    def _store(self, partition: int) -> TableStore:
        store = self.stores.get(partition)
        if store is None:
            store = self.stores[partition] = TableStore(self.table, partition)
        return store

    def _forget(self) -> None:
        self.stores.clear()

    async def _flush_partition(self, partition: int) -> None:
        self._save(partition)
        store = self.stores.get(partition)
        if store is None:
            return
        for key, value in store.drain():
            await self.eos.send(partition, store.changelog_topic, key, value, partition)

    def _save(self, partition: int) -> None:
        raise NotImplementedError

    async def _agent(self, stream: Any) -> None:
        await self.eos.process(stream, self._handle)

    async def _handle(self, partition: int, offset: int, key: bytes | None, data: bytes) -> None:
        raise NotImplementedError

    async def _send(
        self, source_partition: int, topic: str, key: bytes | None, partition: int, value: Any
    ) -> bytes:
        codec = self.codecs[topic]
        data = codec.encode({"body": value} if catalog.body_wrapped(topic) else value)
        await self.eos.send(source_partition, topic, key, data, partition)
        return data

    async def _step(
        self,
        partition: int,
        offset: int,
        key: bytes | None,
        data: bytes,
        step: Callable[[Any], T],
        errors: tuple[type[Exception], ...],
        dlq: Counter,
        dlq_topic: str | None = None,
    ) -> T | None:
        """Decode ``data`` and ``step`` it; a record that raises ``errors`` is dead-lettered.

        The dead letter goes to ``dlq_topic`` (default: the source topic's DLQ) with the
        exception as its reason, counted in ``dlq`` by exception type; returns None then.
        """
        caught: tuple[type[Exception], ...] = (WireFormatError, *errors)
        try:
            return step(self.codecs[self.source_topic].decode(data))
        except caught as exc:
            dlq.labels(type(exc).__name__).inc()
            reason = f"{type(exc).__name__}: {exc}"
            source = f"{self.source_topic}/{partition}@{offset}"
            topic = dlq_topic or spec.dlq_name(self.source_topic)
            await self._dead_letter(partition, topic, key, data, reason, source)
            return None

    async def _dead_letter(
        self,
        partition: int,
        topic: str,
        key: bytes | None,
        data: bytes,
        reason: str,
        source: str,
    ) -> None:
        headers = [("error", reason.encode()), ("stage", self.app.conf.id.encode())]
        headers.append(("source", source.encode()))
        dlq_partitions = spec.topic(topic).partitions
        await self.eos.send(partition, topic, key, data, partition % dlq_partitions, headers)
        log.warning("%s: %s -> %s: %s", self.app.conf.id, source, topic, reason)

    def run(self, loglevel: str = "warning") -> None:
        """Wipe local tables, then run the Faust worker until SIGTERM/SIGINT."""
        run_app(self.app, loglevel)


class MarketWorker(StageWorker):
    """``alpha worker market`` (see module docstring)."""

    def __init__(self, options: WorkerOptions, policy: UniversePolicy | None = None) -> None:
        super().__init__(options, MARKET_IN, market_stage.STORE, 1, "market")
        self.policy = policy or load_universe_policy()
        self.partitions = spec.topic(LATTICE).partitions
        self.codecs = codecs_for(
            options.registry_url, (MARKET_IN, LATTICE, "market.snapshot.v0", "universe.v0")
        )
        self.proc: MarketProcessor | None = None

    def _forget(self) -> None:
        super()._forget()
        self.proc = None

    def _processor(self) -> MarketProcessor:
        if self.proc is None:
            self.proc = market_stage.load_market(self.policy, self.partitions, self._store(0))
        return self.proc

    def _save(self, partition: int) -> None:
        if self.proc is not None:
            market_stage.save_market(self.proc, self._store(partition))

    async def _handle(self, partition: int, offset: int, key: bytes | None, data: bytes) -> None:
        proc = self._processor()
        errors = (MarketInError,)
        outs = await self._step(partition, offset, key, data, proc.step, errors, MARKET_DLQ)
        if outs is None:
            return
        for o in outs:
            await self._send(partition, o.topic, o.key, o.partition, o.value)
        for outcome, n in sorted(proc.counters.items()):
            MARKET_OUTCOMES.labels(outcome).inc(n)
        proc.counters.clear()
        MARKET_PENDING.set(proc.pending_minutes)


class DetectorWorker(StageWorker):
    """``alpha worker detector`` (see module docstring)."""

    def __init__(
        self,
        options: WorkerOptions,
        pack: DetectorPack | None = None,
        policy: UniversePolicy | None = None,
    ) -> None:
        partitions = spec.topic(LATTICE).partitions
        super().__init__(options, LATTICE, detect.STORE, partitions, "detector")
        self.pack = pack or load_detector_pack()
        self.policy = policy or load_universe_policy()
        self.feature_pack = options.pack or load_feature_pack()
        self.provenance = Provenance(
            producer=producer_name(),
            detector_pack=self.pack.version,
            detector_hash=self.pack.hash(),
            git_commit=git_commit(),
        )
        self.codecs = codecs_for(options.registry_url, (LATTICE, EVENTS, TRADE_IN))
        self.processors: dict[int, detect.DetectorProcessor] = {}

    def _forget(self) -> None:
        super()._forget()
        self.processors.clear()

    def _processor(self, partition: int) -> detect.DetectorProcessor:
        proc = self.processors.get(partition)
        if proc is None:
            proc = self.processors[partition] = detect.DetectorProcessor(
                self.pack,
                self.feature_pack,
                {detect.STORE: self._store(partition)},
                self.provenance,
                event_partitions=spec.topic(EVENTS).partitions,
                policy=self.policy,
                trade_partitions=spec.topic(LATTICE).partitions,
            )
            if log.isEnabledFor(logging.INFO):
                store = self._store(partition)
                log.info(
                    "detector partition %d: restored state holds %d keys, %d pending minutes",
                    partition,
                    sum(1 for _ in store.scan()),
                    sum(1 for _ in store.scan(b"m:%d:" % partition)),
                )
        return proc

    def _save(self, partition: int) -> None:
        proc = self.processors.get(partition)
        if proc is not None:
            proc.flush()

    async def _handle(self, partition: int, offset: int, key: bytes | None, data: bytes) -> None:
        proc = self._processor(partition)
        source = f"{LATTICE}/{partition}@{offset}"
        outs = await self._step(
            partition,
            offset,
            key,
            data,
            functools.partial(proc.step, partition),
            (detect.BadLatticeRecord,),
            EVENTS_DLQ,
            spec.dlq_name(EVENTS),
        )
        if outs is None:
            return
        codec = self.codecs[EVENTS]
        for o in outs:
            if o.topic == TRADE_IN:
                await self._send(partition, o.topic, o.key, o.partition, o.value)
                continue
            encoded = codec.encode(o.value)
            problems = violations(o.value, len(encoded))
            if problems:
                EVENTS_DLQ.labels("contract").inc()
                reason = "contract: " + "; ".join(problems)
                dlq = spec.dlq_name(EVENTS)
                await self._dead_letter(partition, dlq, o.key, encoded, reason, source)
                continue
            await self.eos.send(partition, o.topic, o.key, encoded, o.partition)
            PUBLISHED.labels(o.value["class"]).inc()
            SEVERITY.labels(o.value["class"]).observe(o.value["severity"])
        self._observe(proc)

    def _observe(self, proc: detect.DetectorProcessor) -> None:
        report = proc.report
        for t in report.triggers:
            TRIGGERS.labels(t.event_class, t.subtype).inc()
        for s in report.suppressions:
            SUPPRESSED.labels(s.reason).inc()
            if s.reason in ("budget_class", "global_cap"):
                DEFERRED.labels(s.trigger.tier).inc()
        if report.emissions:
            cap = self.pack.global_cap_per_min
            by_class: dict[str, int] = {}
            for e in report.emissions:
                by_class[e.trigger.event_class] = by_class.get(e.trigger.event_class, 0) + 1
            for cls, n in sorted(by_class.items()):
                BUDGET.labels(cls).set(min(1.0, n / cap))
        for outcome, n in sorted(proc.counters.items()):
            DETECT_OUTCOMES.labels(outcome).inc(n)
        proc.counters.clear()
