"""Exactly-once that is actually true on Faust (DESIGN.md §5).

faust-streaming 0.15.3's ``exactly_once`` leaves three holes, each found by reading its code
and closed here:

1. **Outputs outside the transaction.** ``TransactionManager.send`` picks the transactional
   producer from the *destination* topic's assignor group, so a send to a topic the app does
   not consume (our ``lattice.v0``) goes through the plain producer, not the transaction.
   :meth:`EosStage.send` sends every output, changelog record and dead letter with the
   transactional producer of the *source* partition, so they commit with that partition's
   offsets and nothing else.
2. **Commits racing the agent.** The periodic commit runs in its own task while the agent keeps
   processing; records handled between "which offsets" and "commit the transaction" would put
   their outputs in a transaction whose offsets do not include them. :class:`EosStage` holds one
   lock around each record's processing and around every commit (``Consumer.force_commit`` is
   wrapped), so a transaction holds exactly the effects of the offsets it commits.
3. **Local state ahead of the commit.** Faust writes table values to RocksDB at once; after a
   crash they are not rolled back. State here is staged in the processor's cache and written
   (RocksDB + changelog, in the transaction) by the pre-commit hook; and the worker wipes its
   local tables at every start, so state is always restored from the committed changelog
   (``read_committed``), the Kafka Streams recovery rule.

The crash test (``tests/integration/test_lattice_worker.py``) is the proof, not this comment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import faust
from faust.transport.consumer import Consumer

_ORIGINAL_FORCE_COMMIT = Consumer.force_commit


async def _guarded_force_commit(self: Consumer, *args: Any, **kwargs: Any) -> bool:
    stage: EosStage | None = getattr(self.app, "_alpha_eos", None)
    if stage is None:
        return bool(await _ORIGINAL_FORCE_COMMIT(self, *args, **kwargs))
    async with stage.lock:
        await stage.before_commit()
        return bool(await _ORIGINAL_FORCE_COMMIT(self, *args, **kwargs))


Consumer.force_commit = _guarded_force_commit  # type: ignore[method-assign]


class EosStage:
    """The exactly-once plumbing of one stage: lock, pre-commit hook, transactional sends.

    Args:
        app: The Faust app (``processing_guarantee="exactly_once"``).
        source_topic: The stage's single input topic.
        before_commit: Coroutine run under the lock before every commit (flush staged state).
    """

    def __init__(
        self, app: faust.App, source_topic: str, before_commit: Callable[[], Awaitable[None]]
    ) -> None:
        self.app = app
        self.source_topic = source_topic
        self.lock = asyncio.Lock()
        self._before_commit = before_commit
        app._alpha_eos = self  # type: ignore[attr-defined]

    async def before_commit(self) -> None:
        """Run the stage's pre-commit hook (the caller holds :attr:`lock`)."""
        await self._before_commit()

    def transactional_id(self, source_partition: int) -> str:
        """The transactional id Faust gives the source partition's producer."""
        group = self.app.assignor.group_for_topic(self.source_topic)
        return f"{self.app.conf.id}-{group}-{source_partition}"

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
        await producer.send(
            topic,
            key,
            value,
            partition,
            None,
            headers,
            transactional_id=self.transactional_id(source_partition),
        )


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
