"""Read back what a test wrote: end offsets before and after, then everything in between."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message, TopicPartition

from topology.settings import StackSettings


def _consumer(settings: StackSettings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"it-read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )


def end_offsets(settings: StackSettings, topic: str) -> dict[int, int]:
    """Return the end offset of every partition of ``topic``."""
    consumer = _consumer(settings)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in sorted(partitions)
        }
    finally:
        consumer.close()


def read_between(
    settings: StackSettings,
    topic: str,
    start: dict[int, int],
    end: dict[int, int],
    timeout_s: float = 60,
) -> list[Message]:
    """Return every message of ``topic`` from ``start`` up to ``end`` (per partition, in order)."""
    wanted = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not wanted:
        return []
    consumer = _consumer(settings)
    consumer.assign([TopicPartition(topic, p, s) for p, (s, _e) in wanted.items()])
    got: dict[int, list[Message]] = {p: [] for p in wanted}
    deadline = time.monotonic() + timeout_s
    try:
        tps = [TopicPartition(topic, p) for p in wanted]
        while any(not _done(got[p], e) for p, (_s, e) in wanted.items()) and not _past(
            consumer, tps, wanted
        ):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for msg in consumer.consume(1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                p = msg.partition()
                assert p is not None
                if p in got and (msg.offset() or 0) < wanted[p][1]:
                    got[p].append(msg)
    finally:
        consumer.close()
    return [m for p in sorted(got) for m in got[p]]


def _past(
    consumer: Consumer, tps: list[TopicPartition], wanted: dict[int, tuple[int, int]]
) -> bool:
    # Transactional topics end with commit markers that are never delivered: the consumer's
    # position moves past them, so "position >= end" means everything before end was read.
    return all(tp.offset >= wanted[tp.partition][1] for tp in consumer.position(tps))


def _done(messages: list[Message], end: int) -> bool:
    # Non-transactional topics: offsets are contiguous, so the last one is end - 1.
    return bool(messages) and (messages[-1].offset() or 0) + 1 >= end
