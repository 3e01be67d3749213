"""Avro through the real registry in the Confluent wire format; transactions on the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.registry import SchemaRegistry
from schemas import catalog, wire
from topology.settings import StackSettings
from topology.smoke import run_smoke

pytestmark = pytest.mark.integration
TOPIC = "ops.smoke.v0"


def _consume_until(
    consumer: Consumer, done: Callable[[list[Message]], bool], timeout_s: float = 30.0
) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done(got):
        for msg in consumer.consume(100, timeout=0.5):
            assert msg.error() is None, msg.error()
            got.append(msg)
    return got


def _consumer(settings: StackSettings, isolation: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"it-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )


def _end(settings: StackSettings) -> int:
    consumer = _consumer(settings, "read_committed")
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)[1])
    finally:
        consumer.close()


def test_avro_record_round_trips_through_the_registry_in_confluent_wire_format(local_stack):
    with SchemaRegistry(local_stack.registry_url) as registry:
        codec = registry.codec(TOPIC)
    start = _end(local_stack)
    record = {"run_id": uuid.uuid4().hex, "seq": 41, "committed": True, "note": "wire"}

    producer = Producer({"bootstrap.servers": local_stack.bootstrap_servers})
    producer.produce(TOPIC, key=b"k", value=codec.encode(record))
    assert producer.flush(30) == 0

    consumer = _consumer(local_stack, "read_committed")
    consumer.assign([TopicPartition(TOPIC, 0, start)])
    try:
        msgs = _consume_until(consumer, lambda got: len(got) >= 1)
    finally:
        consumer.close()
    assert len(msgs) == 1
    value = msgs[0].value()
    assert value is not None
    schema_id, _payload = wire.unframe(value)
    assert value[0] == 0
    assert schema_id == codec.schema_id

    # Decode with Confluent's own deserializer, which fetches the writer schema by id from the
    # registry: proves the frame and the registration are what any Confluent consumer expects.
    with SchemaRegistryClient({"url": local_stack.registry_url}) as client:
        context = SerializationContext(TOPIC, MessageField.VALUE)
        decoded = AvroDeserializer(client)(value, context)
        latest = client.get_latest_version(catalog.load(TOPIC).subject)
    assert decoded == record
    assert latest.schema_id == schema_id


def test_aborted_transaction_is_invisible_to_read_committed(local_stack):
    with SchemaRegistry(local_stack.registry_url) as registry:
        codec = registry.codec(TOPIC)
    run_id = uuid.uuid4().hex
    start = _end(local_stack)
    producer = Producer(
        {"bootstrap.servers": local_stack.bootstrap_servers, "transactional.id": f"it-{run_id}"}
    )
    producer.init_transactions(30)
    for seq, commit in ((0, False), (1, True)):
        producer.begin_transaction()
        value = {"run_id": run_id, "seq": seq, "committed": commit, "note": ""}
        producer.produce(TOPIC, key=b"k", value=codec.encode(value))
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    def seqs(isolation: str, expected: int) -> list[int]:
        consumer = _consumer(local_stack, isolation)
        consumer.assign([TopicPartition(TOPIC, 0, start)])
        try:
            msgs = _consume_until(consumer, lambda got: len(got) >= expected)
        finally:
            consumer.close()
        return [codec.decode(m.value() or b"")["seq"] for m in msgs]

    # read_uncommitted sees both: the aborted record really reached the log...
    assert seqs("read_uncommitted", 2) == [0, 1]
    # ...and read_committed sees only the committed one.
    assert seqs("read_committed", 1) == [1]


def test_smoke_command_logic_reads_back_exactly_the_committed_records(local_stack):
    lines: list[str] = []
    result = run_smoke(local_stack, lines.append, records=3)
    assert result.seen == (0, 1, 2, 6)
    assert not set(result.aborted) & set(result.seen)
    assert any("schema id" in line for line in lines)
