"""Write ``md.raw.v0`` records, heartbeats and dead letters to Kafka.

An idempotent producer with the ``murmur2_random`` partitioner, so a key lands on the partition
Faust's aiokafka would choose. A full local queue blocks (``poll`` until there is room): the sink
slows its caller down and never drops a record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connectors.metrics import INGEST_DLQ, INGEST_RECORDS, PRODUCE_LATENCY_MS
from schemas import raw
from schemas.errors import AlphaError
from schemas.ids import asset_key
from schemas.raw import RawValue, Source
from schemas.wire import AvroCodec


class SinkError(AlphaError):
    """The broker refused or lost a record (delivery failed after the producer's retries)."""


class RawSink:
    """Produce raw records to ``md.raw.v0`` and rejects to ``md.raw.dlq``.

    Args:
        bootstrap_servers: Brokers.
        codec: The ``md.raw.v0`` codec bound to its registered schema id.
        partitions: Partition count of ``md.raw.v0`` (heartbeats go to each).
        extra_config: More librdkafka settings (tests use it to shrink queues).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        codec: AvroCodec,
        *,
        partitions: int,
        extra_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.codec = codec
        self.partitions = partitions
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "compression.type": "lz4",
            "log_level": 3,
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self._failure: KafkaError | None = None
        self.produced = 0
        self.dead_letters = 0

    def send(self, value: RawValue) -> None:
        """Produce one raw record keyed by its ``asset_uid``."""
        payload = self.codec.encode(value)
        self._produce(raw.TOPIC, asset_key(value["asset_uid"]), payload, None, value["ingest_ts"])
        INGEST_RECORDS.labels(value["source"], raw.kind_of(value)).inc()

    def heartbeat(self, stream_ts: int, ingest_ts: int, source: Source) -> None:
        """Write a heartbeat carrying ``stream_ts`` to every partition."""
        for partition in range(self.partitions):
            payload = self.codec.encode(raw.heartbeat(partition, stream_ts, ingest_ts, source))
            self._produce(raw.TOPIC, None, payload, partition, ingest_ts)
        INGEST_RECORDS.labels(source, "heartbeat").inc(self.partitions)

    def dead_letter(
        self, original: bytes, reason: str, stage: str, key: bytes | None = None
    ) -> None:
        """Keep a rejected input, with why and where, on ``md.raw.dlq``."""
        headers = [("error", reason.encode()), ("stage", stage.encode())]
        self._produce(raw.DLQ_TOPIC, key, original, None, None, headers)
        INGEST_DLQ.labels(stage).inc()
        self.dead_letters += 1

    def flush(self, timeout_s: float = 60) -> None:
        """Wait until everything sent is acknowledged.

        Raises:
            SinkError: A record could not be delivered, or the flush timed out.
        """
        remaining = self._producer.flush(timeout_s)
        self._raise_failure()
        if remaining:
            raise SinkError(f"{remaining} records not acknowledged within {timeout_s:.0f}s")

    def poll(self) -> None:
        """Serve delivery callbacks (call now and then from long loops)."""
        self._producer.poll(0)
        self._raise_failure()

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        ingest_ts: int | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._failure = err
            elif ingest_ts is not None:
                PRODUCE_LATENCY_MS.observe(max(0, time.time() * 1000 - ingest_ts))

        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: wait for the broker
            except KafkaException as exc:
                raise SinkError(f"producing to {topic}: {exc.args[0].str()}") from exc
        self.produced += 1
        self._producer.poll(0)
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            err, self._failure = self._failure, None
            raise SinkError(f"delivery failed: {err.str()}")
