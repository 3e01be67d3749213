"""The registry behaves as our contract checks need: register, fetch by id, compatibility, 409."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

pytestmark = pytest.mark.integration


def _schema(*fields: dict[str, object]) -> Schema:
    record = {"type": "record", "name": "Probe", "namespace": "alpha.it.v0", "fields": list(fields)}
    return Schema(json.dumps(record), "AVRO")


V1 = _schema({"name": "a", "type": "long"})
V2_ADDS_WITH_DEFAULT = _schema(
    {"name": "a", "type": "long"}, {"name": "b", "type": "string", "default": ""}
)
V2_CHANGES_TYPE = _schema({"name": "a", "type": "string"})


@pytest.fixture
def client(local_stack) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": local_stack.registry_url}) as client:
        yield client


@pytest.fixture
def subject() -> str:
    return f"it.probe.{uuid.uuid4().hex[:8]}-value"


def test_register_is_idempotent_and_fetchable_by_id(client, subject):
    first = client.register_schema(subject, V1)
    assert client.register_schema(subject, V1) == first
    fetched = client.get_schema(first)
    assert json.loads(fetched.schema_str)["fields"][0] == {"name": "a", "type": "long"}
    assert client.lookup_schema(subject, V1).version == 1


def test_global_compatibility_is_backward(client):
    assert client.get_compatibility() == "BACKWARD"


def test_backward_compatible_change_is_a_new_version(client, subject):
    client.register_schema(subject, V1)
    assert client.test_compatibility(subject, V2_ADDS_WITH_DEFAULT) is True
    client.register_schema(subject, V2_ADDS_WITH_DEFAULT)
    assert client.get_versions(subject) == [1, 2]


def test_incompatible_change_is_refused_with_409(client, subject):
    client.register_schema(subject, V1)
    assert client.test_compatibility(subject, V2_CHANGES_TYPE) is False
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, V2_CHANGES_TYPE)
    assert caught.value.http_status_code == 409
    assert client.get_versions(subject) == [1]
