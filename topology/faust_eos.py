"""Exactly-once that is actually true on Faust (DESIGN.md §5).

faust-streaming 0.15.3's ``exactly_once`` leaves these holes, each found by reading its code or
by the kill -9 test, and closed here:

1. **Outputs outside the transaction.** ``TransactionManager.send`` picks the transactional
   producer from the *destination* topic's assignor group, so a send to a topic the app does
   not consume (our ``lattice.v0``) goes through the plain producer, not the transaction.
   :meth:`EosStage.send` sends every output, changelog record and dead letter with the
   transactional producer of the *source* partition, so they commit with that partition's
   offsets and nothing else.
2. **Commits racing the agent.** The periodic commit runs in its own task while the agent keeps
   processing. :class:`EosStage` holds one lock around each record's processing and around
   every commit (``Consumer.force_commit`` is replaced for apps that opt in), so a transaction
   holds exactly the effects of the offsets it commits.
3. **Offsets from acks, not from work done.** Faust commits the offsets its streams *acked*;
   it acks records it skipped (an older consumer generation), can re-seek a partition to its
   committed offset mid-run (``getmany`` while flow is stopped) and re-deliver records whose
   effects are already staged, after a restart can deliver a partition from *past* its
   committed offset (records fetched before the seek; Faust's ``seek`` also touches the
   consumer from outside its thread), and leaves a partition's transaction open when its ack list
   does not yield a committable offset (a transaction that outlives
   ``transaction.timeout.ms`` is aborted by the broker and the worker stalls, fenced). Here
   the stage commits what it *processed*: :meth:`EosStage.admit` starts each assigned partition
   at the committed offset asked of the broker (Faust's own copy is empty between a revocation
   and its seek; a transactional source's first record past it is confirmed by one seek back),
   lets through only the next offset of each partition (a re-delivered record is dropped; on a
   gap the consumer is sent back, inside its own thread, and records are dropped until the
   missing one arrives),
   Faust's own "read offset" filter is switched off for the source topic (it drops every record
   below the highest offset it delivered, so the records a seek-back re-fetches never reached
   the agent and the partition stalled: the defect of 1 in 5 crash runs, 2026-11-24),
   :meth:`EosStage.done` records it, and
   :meth:`EosStage.commit` commits, for every partition with work, its staged state
   (RocksDB + changelog in the transaction) and the next offset, in one transaction.
4. **Local state ahead of the commit.** Faust writes table values to RocksDB at once; after a
   crash they are not rolled back. State here is staged in the processor's cache and written
   by the commit, right before the transaction that carries its changelog; the worker wipes its
   local tables at every start, so state is always restored from the committed changelog
   (``read_committed``), the Kafka Streams recovery rule. A failed commit crashes the worker.
5. **Rebalances.** On revocation the stage commits its work first (as Kafka Streams does) and
   forgets every partition's processor and offsets; an assigned partition starts from its
   restored table and committed offset.
6. **Stalls.** A produce or commit that never completes (seen once in twenty crash runs after a
   restart: changelog produces answered ``NOT_ENOUGH_REPLICAS``, the broker's mapping of a
   transaction it could not verify) would hold the stage lock forever. A watchdog crashes the
   worker when the lock is held longer than ``stall_timeout_s``, after logging every task's stack
   and every transactional producer's state; the restart restores from the committed state.
7. **Failed sends committed anyway.** aiokafka's transaction commit waits for the transaction's
   batches without looking at their outcome (``flush_for_commit``), so a batch the broker refused
   with a non-retriable error is dropped while the offsets commit: a lost output. The stage
   awaits every send's delivery before it commits the partition (:meth:`EosStage._delivered`);
   a failure crashes the worker instead.

The crash tests (``tests/integration/test_lattice_worker.py``, ``test_analytics_sink.py``) are
the proof, not this comment.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from prometheus_client import Counter

log = logging.getLogger(__name__)

_ORIGINAL_FORCE_COMMIT = Consumer.force_commit
MAX_SEEKS = 5  # seeks back to a missing offset before the worker stops
SEEK_PATIENCE = 50_000  # records dropped while waiting for a seek before seeking again
STALL_TIMEOUT_S = 120.0  # the stage lock held longer than this crashes the worker
EAGER_COST_RATIO = 4.0  # behind, an eager commit waits this many times the last commit's time
EAGER_BACKLOG = 1_000  # records not yet read above which the stage counts as behind


EOS_REDELIVERED = Counter(
    "alpha_eos_redelivered_total",
    "Input records delivered again after they were processed (dropped), by topic.",
    ["topic"],
)
EOS_GAPS = Counter(
    "alpha_eos_offset_gaps_total",
    "Times the consumer skipped input offsets and was sent back to them, by topic.",
    ["topic"],
)


class OffsetGapError(RuntimeError):
    """Records of the input were not delivered and seeking back did not bring them."""


class StageStalledError(RuntimeError):
    """The stage lock was held (a record or a commit in progress) past the stall timeout."""


async def _stage_force_commit(
    self: Consumer, topics: Any = None, start_new_transaction: bool = True
) -> bool:
    stage: EosStage | None = getattr(self.app, "_alpha_eos", None)
    if stage is None:
        return bool(await _ORIGINAL_FORCE_COMMIT(self, topics, start_new_transaction))
    async with stage.hold("commit"):
        return await stage.commit(start_new_transaction=start_new_transaction)


Consumer.force_commit = _stage_force_commit  # type: ignore[method-assign]


class _ReadOffsets(dict[Any, Any]):
    """Faust's per-partition read offsets, always None (= deliver) for one topic.

    Faust's fetch loop drops a record whose offset is below the last one it delivered for the
    partition. After :meth:`EosStage._seek` sends the consumer back to a missing offset, the
    re-fetched records are all below that mark, so Faust dropped them and the partition stalled.
    :meth:`EosStage.admit` already drops re-deliveries and repairs gaps, so for the source topic
    this filter only does harm; other topics keep Faust's behaviour.
    """

    def __init__(self, topic: str, initial: Mapping[Any, Any]) -> None:
        super().__init__(initial)
        self.topic = topic

    def __getitem__(self, tp: Any) -> Any:
        if tp.topic == self.topic:
            return None
        return self.get(tp)


class FetchLedger:
    """The source offsets aiokafka handed to Faust, per partition, not yet seen by the stage.

    Faust's ``getmany`` drops records it already took from aiokafka when, mid-iteration, the
    partition stops being active (recovery pausing and resuming streams), the flow stops or the
    generation changes; aiokafka's position is already past them. On a transactional source a
    hole in the offsets is normally a commit marker or an aborted record, so such a drop looked
    like one: the detector skipped 30 market frames after a restart (analytics fault test,
    2026-11-24). aiokafka itself never returns markers or aborted records, so a hole is a drop
    exactly when the ledger saw offsets inside it. Thread-safe: aiokafka's thread appends, the
    stage's loop pops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fetched: dict[int, collections.deque[int]] = {}

    def note(self, partition: int, offsets: list[int]) -> None:
        """Record offsets aiokafka returned (a refetch after a seek restarts the ledger)."""
        if not offsets:
            return
        with self._lock:
            queue = self._fetched.setdefault(partition, collections.deque())
            if queue and offsets[0] <= queue[-1]:
                queue.clear()
            queue.extend(offsets)

    def skipped(self, partition: int, start: int, offset: int) -> bool:
        """Forget offsets below ``offset``; True if one of them was at or after ``start``.

        True means a record in ``[start, offset)`` was fetched but never reached the stage.
        """
        found = False
        with self._lock:
            queue = self._fetched.get(partition)
            while queue and queue[0] <= offset:
                head = queue.popleft()
                found = found or start <= head < offset
        return found

    def clear(self) -> None:
        """Forget everything (a rebalance)."""
        with self._lock:
            self._fetched.clear()


async def _ledger_fetch_records(self: Any, *args: Any, **kwargs: Any) -> Any:
    records = await _ORIGINAL_FETCH_RECORDS(self, *args, **kwargs)
    stage: EosStage | None = getattr(self.consumer.app, "_alpha_eos", None)
    if stage is not None and records:
        for tp, messages in records.items():
            if tp.topic == stage.source_topic:
                stage.ledger.note(tp.partition, [m.offset for m in messages])
    return records


_ORIGINAL_FETCH_RECORDS = AIOKafkaConsumerThread._fetch_records
AIOKafkaConsumerThread._fetch_records = _ledger_fetch_records  # type: ignore[method-assign]


class EosStage:
    """The exactly-once plumbing of one stage: lock, offsets, commits, transactional sends.

    Args:
        app: The Faust app (``processing_guarantee="exactly_once"``).
        source_topic: The stage's single input topic.
        flush: Coroutine that writes a partition's staged state and sends its changelog in the
            partition's transaction; the commit calls it under :attr:`lock`.
        forget: Drops every partition's processor and staged state (on a rebalance).
        stall_timeout_s: The longest the stage lock may be held before the watchdog crashes
            the worker (liveness only: wall time never reaches an output).
        contiguous: True when the source is written without transactions, so its offsets
            have no holes and a gap means records were not delivered (repaired by seeking
            back). False for a transactional source (``lattice.v0``, ``market.in.v0``): commit
            markers and aborted records leave holes, so a gap is accepted and only
            re-deliveries are dropped.
        eager_commit_s: When a record's handling sent outputs, commit within this many
            seconds instead of waiting for the periodic commit: a stage's outputs are visible
            only once its transaction commits, so this is what makes a sealed minute's rows,
            frames and events visible downstream at once. None: periodic commits only. While
            the stage is behind (more than :data:`EAGER_BACKLOG` records not yet read, as in a
            full-speed replay, where a commit carries many minutes of state), an eager commit
            also waits :data:`EAGER_COST_RATIO` times as long as the last commit took, so
            commits do not crowd out the work; caught up (live), it commits at once.
    """

    def __init__(
        self,
        app: faust.App,
        source_topic: str,
        flush: Callable[[int], Awaitable[None]],
        forget: Callable[[], None],
        stall_timeout_s: float = STALL_TIMEOUT_S,
        *,
        contiguous: bool = True,
        eager_commit_s: float | None = None,
    ) -> None:
        self.app = app
        self.eager_commit_s = eager_commit_s
        self._sends = 0  # output sends so far (handlers' sends, not the commit's changelog)
        self._eager_due = False  # outputs were sent since the last commit
        self._commit_ended = time.monotonic()  # when the last commit ended
        self._commit_took = 0.0  # how long it took (s)
        self.contiguous = contiguous
        self.source_topic = source_topic
        self.lock = asyncio.Lock()
        self.stall_timeout_s = stall_timeout_s
        self._held: tuple[str, float] | None = None  # (what, monotonic start) while locked
        self._flush = flush
        self._forget = forget
        self.next_offset: dict[int, int] = {}  # partition -> next offset to process
        self.pending: dict[int, int] = {}  # partition -> offset to commit (work not committed)
        self._seeking: dict[int, tuple[int, int]] = {}  # partition -> (seeks, records dropped)
        self._first_seen: dict[int, int] = {}  # partition -> first offset delivered (unconfirmed)
        self._confirmed: set[int] = set()  # partitions whose start offset is confirmed
        self._deliveries: dict[int, list[Awaitable[Any]]] = {}  # partition -> sends to confirm
        self.ledger = FetchLedger()
        app._alpha_eos = self  # type: ignore[attr-defined]
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        app.timer(max(0.5, stall_timeout_s / 8), name="alpha-eos-watchdog")(self._watchdog)
        if eager_commit_s is not None:
            app.timer(eager_commit_s, name="alpha-eos-eager-commit")(self._eager_commit)

    @asynccontextmanager
    async def hold(self, what: str) -> AsyncIterator[None]:
        """Hold the stage lock for ``what`` (a record or a commit), watched for stalls."""
        async with self.lock:
            self._held = (what, time.monotonic())
            try:
                yield
            finally:
                self._held = None

    async def _watchdog(self) -> None:
        held = self._held
        if held is None or time.monotonic() - held[1] < self.stall_timeout_s:
            return
        what, since = held
        exc = StageStalledError(
            f"{self.source_topic}: the stage lock has been held by {what} for"
            f" {time.monotonic() - since:.0f} s; stopping the worker (state is restored at restart)"
        )
        log.error("%s\n%s", exc, self.diagnose())
        await self.app.crash(exc)

    def diagnose(self) -> str:
        """Every asyncio task's stack and every transactional producer's state, as text."""
        out = io.StringIO()
        producer: Any = self.app.producer
        for tid, txn_producer in sorted(producer._transaction_producers.items()):
            manager = txn_producer._txn_manager
            out.write(
                f"producer {tid}: state={manager.state.name} pid={manager.producer_id}"
                f" epoch={manager.producer_epoch} txn_partitions={sorted(manager._txn_partitions)}"
                f" pending={sorted(manager._pending_txn_partitions)}"
                f" pending_offsets={manager._pending_txn_offsets}"
                f" batches={sorted(txn_producer._message_accumulator._batches)}\n"
            )
        for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
            out.write(f"--- task {task.get_name()}: {task.get_coro()!r}\n")
            task.print_stack(limit=12, file=out)
        return out.getvalue()

    async def process(
        self, stream: Any, handle: Callable[[int, int, bytes | None, bytes], Awaitable[None]]
    ) -> None:
        """The agent loop of a stage: per record, under the lock, admit, ``handle``, done.

        ``handle(partition, offset, key, value)`` stages the record's effects and sends its
        outputs with :meth:`send`. An :class:`OffsetGapError` crashes the worker.
        """
        async for event in stream.events():
            message = event.message
            partition, offset = message.partition, message.offset
            async with self.hold(f"{self.source_topic}/{partition}@{offset}"):
                try:
                    admitted = await self.admit(partition, offset)
                except OffsetGapError as exc:
                    log.error("%s", exc)
                    await self.app.crash(exc)
                    raise
                if not admitted:
                    continue
                sends = self._sends
                await handle(partition, offset, message.key, event.value)
                self.done(partition, offset)
                if self._sends != sends:
                    self._eager_due = True

    def _backlog(self) -> int:
        """Records of the assigned partitions not read yet (from the fetch's high watermarks)."""
        total = 0
        for partition, next_offset in self.next_offset.items():
            try:
                highwater = self.app.consumer.highwater(TP(self.source_topic, partition))
            except Exception:  # not known yet (no fetch answered for it): count it as caught up
                highwater = None
            if highwater is not None:
                total += max(0, int(highwater) - next_offset)
        return total

    async def _eager_commit(self) -> None:
        """Commit soon after outputs were sent (see ``eager_commit_s``)."""
        if not self._eager_due:
            return
        if (
            time.monotonic() - self._commit_ended < EAGER_COST_RATIO * self._commit_took
            and self._backlog() > EAGER_BACKLOG
        ):
            return  # behind, and the last commit was expensive: let work run in between
        async with self.hold("eager commit"):
            self._eager_due = False
            await self.commit()

    def transactional_id(self, source_partition: int) -> str:
        """The transactional id Faust gives the source partition's producer."""
        group = self.app.assignor.group_for_topic(self.source_topic)
        return f"{self.app.conf.id}-{group}-{source_partition}"

    async def admit(self, partition: int, offset: int) -> bool:
        """Return True if the record at ``offset`` is the partition's next one to process.

        The first record of a partition after an assignment is checked against the group's
        committed offset, asked of the broker (Faust's own copy is empty between a revocation
        and its seek, and trusting the first delivered offset then skipped records). A record
        below the next offset was processed already (its effects are staged or committed):
        dropped. A record above it means Faust did not deliver the records in between (seen
        after restarts: a fetch made before the seek to the committed offset): for a
        contiguous source the consumer is sent back to the next offset and records are
        dropped until it arrives; retention-deleted records are checked and accepted loudly.
        A transactional source has holes (commit markers, aborted records), so the first
        record after an assignment is confirmed by one seek back to the committed offset
        (:meth:`_confirm_start`); a later hole is accepted unless the :class:`FetchLedger`
        shows Faust dropped a fetched record inside it, which is repaired the same way.

        Raises:
            OffsetGapError: Seeking back did not bring the missing records after
                :data:`MAX_SEEKS` attempts (the worker stops rather than skip them).
        """
        expected = self.next_offset.get(partition)
        if expected is None:
            expected = self.next_offset[partition] = await self._start_offset(partition)
            log.info(
                "%s/%d: starts at committed offset %d (first record delivered: %d)",
                self.source_topic, partition, expected, offset,
            )  # fmt: skip
        if offset < expected:
            EOS_REDELIVERED.labels(self.source_topic).inc()
            return False
        dropped = self.ledger.skipped(partition, expected, offset)
        if offset == expected:
            self._seeking.pop(partition, None)
            self._confirmed.add(partition)
            return True
        if not self.contiguous:
            if partition in self._confirmed and not dropped:
                return True  # a commit marker or an aborted record: not a lost record
            self._confirmed.discard(partition)
            return await self._confirm_start(partition, expected, offset)
        return await self._on_gap(partition, expected, offset)

    async def _start_offset(self, partition: int) -> int:
        """The group's committed offset of ``partition`` (the earliest offset if none)."""
        thread: Any = self.app.consumer._thread  # type: ignore[attr-defined]
        aio_consumer = thread._ensure_consumer()
        tp = TopicPartition(self.source_topic, partition)

        async def committed() -> int | None:
            value = await aio_consumer.committed(tp)
            return value if isinstance(value, int) and value >= 0 else None

        offset = await thread.call_thread(committed)
        return await self._earliest(partition) if offset is None else int(offset)

    async def _earliest(self, partition: int) -> int:
        """The partition's earliest offset (retention may have deleted older records)."""
        consumer: Any = self.app.consumer
        tp = TP(self.source_topic, partition)
        return int((await consumer.earliest_offsets(tp)).get(tp, 0))

    async def _confirm_start(self, partition: int, expected: int, offset: int) -> bool:
        """Confirm a transactional source's record past ``expected`` (a start, or a drop).

        The records between the committed offset and the first one delivered may be markers
        and aborted records, or real records a stale fetch skipped: the consumer is sent back
        to ``expected`` and the first record it delivers at or below the first one seen is the
        true start (records above it come from the stale fetch and are dropped).
        """
        seeking = self._seeking.get(partition)
        if seeking is None:
            self._first_seen[partition] = offset
            return await self._seek_back(partition, expected, offset, 1)
        first_seen = self._first_seen[partition]
        if offset <= first_seen:
            if offset < first_seen:
                EOS_GAPS.labels(self.source_topic).inc()
                log.warning(
                    "%s/%d: record %d was delivered when %d was expected; the seek back"
                    " brought %d (records %d..%d would have been skipped)",
                    self.source_topic, partition, first_seen, expected, offset, offset,
                    first_seen - 1,
                )  # fmt: skip
            self._seeking.pop(partition, None)
            self._first_seen.pop(partition, None)
            self._confirmed.add(partition)
            return True
        if seeking[1] < SEEK_PATIENCE:
            self._seeking[partition] = (seeking[0], seeking[1] + 1)
            return False
        return await self._seek_back(partition, expected, first_seen, seeking[0] + 1)

    async def _seek_back(self, partition: int, expected: int, offset: int, attempts: int) -> bool:
        if attempts > MAX_SEEKS:
            raise OffsetGapError(
                f"{self.source_topic}/{partition}: offsets from {expected} were not delivered"
                f" again after {MAX_SEEKS} seeks (first record seen: {offset}); stopping"
                " instead of skipping them"
            )
        self._seeking[partition] = (attempts, 0)
        await self._seek(partition, expected)
        return False

    async def _on_gap(self, partition: int, expected: int, offset: int) -> bool:
        seeking = self._seeking.get(partition)
        if seeking is not None and seeking[1] < SEEK_PATIENCE:
            self._seeking[partition] = (seeking[0], seeking[1] + 1)
            return False  # the seek is on its way: drop what was fetched before it
        attempts = 1 if seeking is None else seeking[0] + 1
        earliest = await self._earliest(partition)
        if earliest > expected:
            log.warning(
                "%s/%d: offsets %d..%d were deleted by retention; going on at %d",
                self.source_topic, partition, expected, earliest - 1, offset,
            )  # fmt: skip
            self._seeking.pop(partition, None)
            return True
        EOS_GAPS.labels(self.source_topic).inc()
        log.warning(
            "%s/%d: got offset %d, expected %d; seeking back (attempt %d)",
            self.source_topic, partition, offset, expected, attempts,
        )  # fmt: skip
        return await self._seek_back(partition, expected, offset, attempts)

    async def _seek(self, partition: int, offset: int) -> None:
        """Seek inside the consumer's own thread (Faust's ``seek`` touches it from outside)."""
        thread: Any = self.app.consumer._thread  # type: ignore[attr-defined]
        aio_consumer = thread._ensure_consumer()
        tp = TopicPartition(self.source_topic, partition)

        async def seek() -> None:
            aio_consumer.seek(tp, offset)

        await thread.call_thread(seek)

    def done(self, partition: int, offset: int) -> None:
        """Record that the record at ``offset`` was processed (its effects are staged)."""
        self.next_offset[partition] = offset + 1
        self.pending[partition] = offset + 1

    async def commit(self, start_new_transaction: bool = True) -> bool:
        """Commit every partition's staged work with its offsets (the caller holds the lock).

        Per partition, in its own transaction: flush staged state (RocksDB + changelog), send
        the offsets, commit. Any failure crashes the worker: its local state may be ahead of
        what is committed, and only a restart (wipe + restore) makes it consistent again.
        """
        if not self.pending:
            return False
        started = time.monotonic()
        consumer: Any = self.app.consumer
        group_id = self.app.conf.id
        producer: Any = self.app.producer
        committed: dict[TP, int] = {}
        try:
            for partition, offset in sorted(self.pending.items()):
                tp = TP(self.source_topic, partition)
                tid = self.transactional_id(partition)
                if tid not in producer._transaction_producers:
                    raise RuntimeError(f"no transactional producer {tid} to commit {tp}")
                await self._flush(partition)
                await self._delivered(partition)
                await producer.commit_transactions(
                    {tid: {TopicPartition(tp.topic, tp.partition): offset}},
                    group_id,
                    start_new_transaction=start_new_transaction,
                )
                committed[tp] = offset
                log.info("%s/%d: committed up to %d", tp.topic, tp.partition, offset)
        except Exception as exc:
            log.exception("commit failed; stopping the worker (state is restored at restart)")
            await self.app.crash(exc)
            raise
        finally:
            self._commit_ended = time.monotonic()
            self._commit_took = self._commit_ended - started
            for tp, offset in committed.items():
                self.pending.pop(tp.partition, None)
                consumer._committed_offset[tp] = offset
                # Faust's own ack bookkeeping is not used for commits: keep it from growing.
                consumer._acked.pop(tp, None)
                consumer._acked_index.pop(tp, None)
        return True

    async def _on_revoked(self, app: Any, revoked: Any, **_: Any) -> None:
        # Commit what was processed while the producers still own their transactions, then
        # forget every partition: the new assignment starts from tables and committed offsets.
        log.info("%s: partitions revoked: %s", self.source_topic, sorted(revoked))
        async with self.hold("revocation"):
            await self.commit()
            self._reset()

    async def _on_assigned(self, app: Any, assigned: Any, **_: Any) -> None:
        log.info("%s: partitions assigned: %s", self.source_topic, sorted(assigned))
        async with self.hold("assignment"):
            self.install_read_offsets()
            self._reset()

    def install_read_offsets(self) -> None:
        """Switch Faust's read-offset filter off for the source topic (:class:`_ReadOffsets`).

        Called at every assignment, which precedes the start of the fetcher whose loop binds
        the mapping once (creating the consumer earlier, in ``__init__``, kept Faust from
        starting its transactional producers).
        """
        consumer: Any = self.app.consumer
        if not isinstance(consumer._read_offset, _ReadOffsets):
            consumer._read_offset = _ReadOffsets(self.source_topic, consumer._read_offset)

    def _reset(self) -> None:
        self.next_offset.clear()
        self.pending.clear()
        self._seeking.clear()
        self._first_seen.clear()
        self._confirmed.clear()
        self.ledger.clear()
        self._deliveries.clear()
        self._forget()

    async def send(
        self,
        source_partition: int,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Append a record to the source partition's open transaction (awaits the append only).

        The transaction's commit flushes it; if the worker dies first, it is aborted with the
        offsets it belongs to.
        """
        producer = self.app.producer
        delivery = await producer.send(
            topic,
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=self.transactional_id(source_partition),
        )
        self._deliveries.setdefault(source_partition, []).append(delivery)
        self._sends += 1

    async def _delivered(self, partition: int) -> None:
        """Wait until every record sent in ``partition``'s transaction is written.

        aiokafka commits a transaction even when one of its batches failed (its commit waits for
        the batches' futures without looking at them), so a record the broker refused would be
        lost while the offsets that produced it commit. The stage looks first: a failed record
        raises here and the commit does not happen.
        """
        deliveries = self._deliveries.pop(partition, [])
        if deliveries:
            await asyncio.gather(*deliveries)


class TableStore:
    """A :class:`state.store.KeyValueStore` over one partition of a Faust RocksDB table.

    Writes go to the partition's RocksDB at once and their changelog records are queued;
    :meth:`drain` hands them to the caller, who sends them in the partition's transaction.
    Reads see the partition's RocksDB (restored from the changelog by Faust on assignment).
    Only the stage's pre-commit hook writes, under the commit lock.

    Args:
        table: A Faust table with raw key and value serializers.
        partition: The source partition whose state this is.
    """

    def __init__(self, table: Any, partition: int) -> None:
        self.table = table
        self.name = str(table.name)
        self.partition = partition
        self._changes: list[tuple[bytes, bytes | None]] = []

    def _db(self) -> Any:
        return self.table.data._db_for_partition(self.partition)

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` in this partition, or None."""
        value = self._db().get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key``."""
        self.apply({key: value})

    def delete(self, key: bytes) -> None:
        """Remove ``key``."""
        self.apply({key: None})

    def apply(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Write a batch to RocksDB and queue its changelog records (None = tombstone)."""
        db = self._db()
        for key, value in batch.items():
            if value is None:
                if db.get(key) is not None:
                    del db[key]
            else:
                db[key] = value
            self._changes.append((key, value))

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Yield this partition's pairs under ``prefix`` in key order."""
        for key, value in self._db().items(from_key=prefix):
            if not bytes(key).startswith(prefix):
                break
            yield bytes(key), bytes(value)

    def close(self) -> None:
        """Nothing to release: Faust owns the database."""

    def drain(self) -> list[tuple[bytes, bytes | None]]:
        """Return and forget the changelog records written since the last drain."""
        changes, self._changes = self._changes, []
        return changes

    @property
    def changelog_topic(self) -> str:
        """The table's changelog topic name."""
        return str(self.table.changelog_topic.get_topic_name())
