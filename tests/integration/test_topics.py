"""``alpha topics create`` on the real broker: every declared topic, idempotent, drift found."""

from __future__ import annotations

import dataclasses

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from tests.kit.stack import alpha
from topology.admin import admin_client, create_topics, inspect
from topology.spec import TOPICS, Cleanup

pytestmark = pytest.mark.integration


def test_every_declared_topic_exists_with_its_partitions_and_cleanup(local_stack):
    admin = admin_client(local_stack.bootstrap_servers)
    metadata = admin.list_topics(timeout=10)
    for spec in TOPICS:
        assert spec.name in metadata.topics, spec.name
        assert len(metadata.topics[spec.name].partitions) == spec.partitions, spec.name
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in TOPICS]
    configs = {r.name: f.result() for r, f in admin.describe_configs(resources).items()}
    for spec in TOPICS:
        assert configs[spec.name]["cleanup.policy"].value == str(spec.cleanup), spec.name
        if spec.cleanup is Cleanup.DELETE:
            assert configs[spec.name]["retention.ms"].value == str(spec.retention_ms), spec.name


def test_create_twice_is_harmless(local_stack):
    again = alpha(local_stack, "topics", "create")
    assert again.returncode == 0, again.stderr
    assert f"0 created, {len(TOPICS)} already present, 0 drifted" in again.stdout


def test_drift_is_reported_not_altered(local_stack):
    admin: AdminClient = admin_client(local_stack.bootstrap_servers)
    name = "it.drift.v0"
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result()
    declared = (dataclasses.replace(TOPICS[0], name=name, partitions=TOPICS[0].partitions),)
    states = create_topics(admin, replication=1, specs=declared)
    assert [s.status for s in states] == ["drift"]
    assert "2 partitions, declared 8" in states[0].detail
    assert len(admin.list_topics(name, timeout=10).topics[name].partitions) == 2
    assert inspect(admin, declared)[0].status == "drift"


def test_topics_list_shows_the_broker_state(local_stack):
    listing = alpha(local_stack, "topics", "list")
    assert listing.returncode == 0, listing.stderr
    for spec in TOPICS:
        assert spec.name in listing.stdout
    assert "missing" not in listing.stdout
