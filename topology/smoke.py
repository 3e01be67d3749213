"""``alpha smoke``: prove the stack end to end: registry, wire format, transactions, read_committed.

One run registers the ``ops.smoke.v0`` value schema, writes three transactions (a committed batch,
an aborted batch, a committed end marker) and reads the topic back with a ``read_committed``
consumer until it meets the end marker. It passes only if exactly the committed records came back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from connectors.registry import SchemaRegistry
from schemas.errors import AlphaError
from schemas.wire import AvroCodec
from topology.settings import StackSettings

TOPIC = "ops.smoke.v0"


class SmokeError(AlphaError):
    """The stack self-test read back something other than exactly the committed records."""


@dataclass(frozen=True, slots=True)
class SmokeResult:
    """What a smoke run did and saw."""

    run_id: str
    schema_id: int
    committed: tuple[int, ...]
    aborted: tuple[int, ...]
    seen: tuple[int, ...]
    elapsed_ms: int


def run_smoke(
    settings: StackSettings, report: Callable[[str], None], *, records: int = 5
) -> SmokeResult:
    """Run the self-test against the stack described by ``settings``.

    Raises:
        SmokeError: An aborted record was visible, a committed one missing, or the end marker
            did not arrive in time.
        RegistryError: The registry refused or could not be reached.
    """
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:12]
    with SchemaRegistry(settings.registry_url) as registry:
        codec = registry.codec(TOPIC)
    report(f"registered {TOPIC}-value in the registry: schema id {codec.schema_id}")
    start_offset = _end_offset(settings)
    committed = tuple(range(records))
    aborted = tuple(range(records, 2 * records))
    marker = 2 * records
    _produce(settings, codec, run_id, committed, aborted, marker)
    report(
        f"produced run {run_id}: {records} records committed, {records} aborted,"
        f" end marker committed (from offset {start_offset})"
    )
    seen = _read_back(settings, codec, run_id, start_offset, marker)
    result = SmokeResult(
        run_id,
        codec.schema_id,
        (*committed, marker),
        aborted,
        seen,
        int((time.monotonic() - started) * 1000),
    )
    if seen != result.committed:
        raise SmokeError(f"read_committed saw seq {list(seen)}, expected {list(result.committed)}")
    report(f"read back {len(seen)} committed records, 0 aborted: ok ({result.elapsed_ms} ms)")
    return result


def _producer(settings: StackSettings, run_id: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "transactional.id": f"alpha-smoke-{run_id}",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "log_level": 0,
        }
    )


def _produce(
    settings: StackSettings,
    codec: AvroCodec,
    run_id: str,
    committed: tuple[int, ...],
    aborted: tuple[int, ...],
    marker: int,
) -> None:
    producer = _producer(settings, run_id)
    try:
        producer.init_transactions(30)
        for seqs, commit in ((committed, True), (aborted, False), ((marker,), True)):
            producer.begin_transaction()
            for seq in seqs:
                value = {"run_id": run_id, "seq": seq, "committed": commit, "note": "alpha smoke"}
                producer.produce(TOPIC, key=b"smoke", value=codec.encode(value))
            if commit:
                producer.commit_transaction(30)
            else:
                producer.flush(30)  # the records reach the log, then the abort marker hides them
                producer.abort_transaction(30)
    except KafkaException as exc:
        raise SmokeError(f"transactional produce failed: {exc.args[0].str()}") from exc


def _consumer(settings: StackSettings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "alpha-smoke",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )


def _end_offset(settings: StackSettings) -> int:
    # A topic created a moment ago can answer "not leader" for a while after metadata shows a
    # leader: retry what the broker calls retriable, until a deadline.
    consumer = _consumer(settings)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
                return int(high)
            except KafkaException as exc:
                err = exc.args[0]
                if not _transient(err) or time.monotonic() > deadline:
                    raise SmokeError(f"cannot read {TOPIC} offsets: {err.str()}") from exc
                time.sleep(0.2)
    finally:
        consumer.close()


def _transient(err: KafkaError) -> bool:
    return bool(err.retriable()) or err.code() in (
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    )


def _read_back(
    settings: StackSettings, codec: AvroCodec, run_id: str, start: int, marker: int
) -> tuple[int, ...]:
    consumer = _consumer(settings)
    consumer.assign([TopicPartition(TOPIC, 0, start)])
    seen: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(100, timeout=0.5):
                if (err := msg.error()) is not None:
                    raise SmokeError(f"consumer error: {err.str()}")
                record = codec.decode(msg.value() or b"")
                if record["run_id"] != run_id:
                    continue
                seen.append(int(record["seq"]))
                if record["seq"] == marker:
                    return tuple(seen)
    finally:
        consumer.close()
    raise SmokeError(f"end marker of run {run_id} not read within 30s (saw seq {seen})")
