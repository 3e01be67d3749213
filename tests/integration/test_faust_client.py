"""Faust talks to our Kafka 4.x broker through aiokafka: plain, transactional, and as a worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.cimpl import NewTopic

from topology.admin import admin_client

pytestmark = pytest.mark.integration
APP = Path(__file__).with_name("faust_echo_app.py")


def _create(settings, *names: str, partitions: int = 2) -> None:
    admin = admin_client(settings.bootstrap_servers)
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    )
    for future in futures.values():
        future.result()


def test_aiokafka_transactions_and_group_consumer(local_stack):
    topic = f"it.aiokafka.{uuid.uuid4().hex[:8]}.v0"
    _create(local_stack, topic)

    async def scenario() -> list[bytes]:
        producer = AIOKafkaProducer(
            bootstrap_servers=local_stack.bootstrap_servers, transactional_id=f"it-{topic}"
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed", key=b"k")
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted", key=b"k")
            await producer.abort_transaction()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=local_stack.bootstrap_servers,
            group_id=f"it-{topic}",
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        seen: list[bytes] = []
        try:
            deadline = time.monotonic() + 30
            while not seen and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen += [r.value for r in records]
            await consumer.commit()
        finally:
            await consumer.stop()
        return seen

    assert asyncio.run(scenario()) == [b"committed"]


def test_faust_exactly_once_worker_processes_records(local_stack, tmp_path):
    tag = uuid.uuid4().hex[:8]
    src, dst = f"it.faust.{tag}.in.v0", f"it.faust.{tag}.out.v0"
    _create(local_stack, src, dst)
    env = dict(
        os.environ,
        IT_APP_ID=f"it-faust-{tag}",
        IT_BOOTSTRAP=local_stack.bootstrap_servers,
        IT_DATADIR=str(tmp_path / "faust"),
        IT_IN=src,
        IT_OUT=dst,
    )
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, str(APP), "worker", "-l", "warn", "--without-web"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        producer = Producer({"bootstrap.servers": local_stack.bootstrap_servers})
        for value in (b"alpha", b"beta", b"gamma"):
            producer.produce(src, value=value, key=value)
        assert producer.flush(30) == 0

        consumer = Consumer(
            {
                "bootstrap.servers": local_stack.bootstrap_servers,
                "group.id": f"it-check-{tag}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        consumer.subscribe([dst])
        seen: list[bytes] = []
        deadline = time.monotonic() + 120
        try:
            while len(seen) < 3 and time.monotonic() < deadline:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
                msgs = consumer.consume(10, timeout=0.5)
                seen += [m.value() or b"" for m in msgs if m.error() is None]
        finally:
            consumer.close()
        assert sorted(seen) == [b"ALPHA", b"BETA", b"GAMMA"], (tmp_path / "worker.log").read_text()[
            -3000:
        ]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        log.close()
