"""Every shipped Avro schema parses, is named for its topic, and documents its fields."""

from __future__ import annotations

import json

import pytest

from schemas import catalog
from topology.spec import BY_NAME


@pytest.mark.parametrize("topic", catalog.available_topics())
def test_schema_belongs_to_a_declared_topic(topic):
    assert topic in BY_NAME


@pytest.mark.parametrize("topic", catalog.available_topics())
def test_schema_namespace_carries_the_topic_major(topic):
    major = topic.rsplit(".", 1)[1]
    raw = json.loads((catalog.AVRO_DIR / f"{topic}.avsc").read_text())
    assert raw["namespace"].endswith(f".{major}"), raw["namespace"]


@pytest.mark.parametrize("topic", catalog.available_topics())
def test_every_field_is_documented(topic):
    raw = json.loads((catalog.AVRO_DIR / f"{topic}.avsc").read_text())
    assert raw.get("doc")
    for field in raw["fields"]:
        assert field.get("doc"), field["name"]
