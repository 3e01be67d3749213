"""Opt-in: the same broker and registry as containers, for machines with a Docker engine.

Used when ``ALPHA_TEST_DOCKER=1``; our development machines have no Docker engine, so the
default fixtures start the real services directly (``alpha stack up``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from topology.admin import admin_client, create_topics
from topology.settings import APICURIO_VERSION, KAFKA_VERSION, StackSettings


@contextmanager
def container_stack() -> Iterator[StackSettings]:
    """Start Kafka and Apicurio Registry containers; yield settings pointing at them."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with (
        KafkaContainer(f"apache/kafka:{KAFKA_VERSION}").with_kraft() as kafka,
        DockerContainer(f"apicurio/apicurio-registry:{APICURIO_VERSION}").with_exposed_ports(
            8080
        ) as registry,
    ):
        wait_for_logs(registry, "Installed features", timeout=120)
        host, port = kafka.get_bootstrap_server().rsplit(":", 1)
        settings = StackSettings(
            host=host,
            kafka_port=int(port),
            registry_port=int(registry.get_exposed_port(8080)),
        )
        create_topics(admin_client(settings.bootstrap_servers), replication=1)
        yield settings
