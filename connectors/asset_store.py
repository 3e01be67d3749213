"""Persist the asset registry in the compacted topic ``asset.registry.v0``.

Loading reads the topic from the beginning to its end offsets at start-up; saving writes the
entries changed since the last save. Keys are ``venue:kind:symbol:generation``.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from connectors.assets import AssetEntry, AssetRegistry
from schemas.errors import AlphaError
from schemas.wire import AvroCodec

TOPIC = "asset.registry.v0"


class AssetStoreError(AlphaError):
    """The asset registry topic could not be read or written."""


def load_registry(bootstrap_servers: str, codec: AvroCodec, timeout_s: float = 30) -> AssetRegistry:
    """Read every entry of ``asset.registry.v0`` and return the registry they make."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"alpha-asset-loader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 3,
        }
    )
    try:
        metadata = consumer.list_topics(TOPIC, timeout=timeout_s).topics.get(TOPIC)
        if metadata is None or metadata.error is not None:
            raise AssetStoreError(f"{TOPIC} is missing: run `alpha topics create`")
        ends = {}
        for p in metadata.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=timeout_s)
            if high > 0:
                ends[p] = high
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in ends])
        latest: dict[bytes, AssetEntry | None] = {}
        deadline = time.monotonic() + timeout_s
        done: set[int] = set()
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise AssetStoreError(f"reading {TOPIC} did not finish within {timeout_s:.0f}s")
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is not None:
                    raise AssetStoreError(f"reading {TOPIC}: {msg.error()}")
                value = msg.value()
                latest[msg.key() or b""] = _decode(codec, value) if value else None
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    done.add(msg.partition() or 0)
    except KafkaException as exc:
        raise AssetStoreError(f"reading {TOPIC}: {exc.args[0].str()}") from exc
    finally:
        consumer.close()
    return AssetRegistry(e for e in latest.values() if e is not None)


def save_registry(
    bootstrap_servers: str, codec: AvroCodec, registry: AssetRegistry, timeout_s: float = 30
) -> int:
    """Write the entries changed since the last save; return how many."""
    changed = registry.drain()
    if not changed:
        return 0
    producer = Producer(
        {"bootstrap.servers": bootstrap_servers, "enable.idempotence": True, "log_level": 3}
    )
    for entry in changed:
        producer.produce(TOPIC, key=entry.key.encode(), value=codec.encode(_encode(entry)))
    if producer.flush(timeout_s):
        raise AssetStoreError(f"writing {TOPIC}: not acknowledged within {timeout_s:.0f}s")
    return len(changed)


def _encode(entry: AssetEntry) -> dict[str, object]:
    return {
        "asset_uid": entry.asset_uid,
        "venue": entry.venue,
        "kind": entry.kind,
        "symbol": entry.symbol,
        "generation": entry.generation,
        "status": entry.status,
        "aliases": dict(sorted(entry.aliases.items())),
    }


def _decode(codec: AvroCodec, value: bytes) -> AssetEntry:
    d = codec.decode(value)
    return AssetEntry(
        d["venue"],
        d["kind"],
        d["symbol"],
        d["generation"],
        d["asset_uid"],
        d["status"],
        d["aliases"],
    )
