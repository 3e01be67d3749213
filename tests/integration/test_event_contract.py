"""The event contract on the real registry: users' ``alpha schemas check`` and a foreign reader.

1. ``alpha schemas check`` against the registry rejects (exit 1) a change the registry's BACKWARD
   rule refuses, and passes an add-with-default, without registering anything.
2. An ``alpha.events.v0`` value can be read by a consumer that has only the bytes and the
   registry: Apache Avro's reference reader (not fastavro, which our code uses), with the
   writer schema fetched over plain HTTP by the id in the wire header.
"""

from __future__ import annotations

import io
import json
import struct
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from connectors.registry import SchemaRegistry
from tests.kit.events import sample_event
from tests.kit.stack import alpha
from topology.settings import StackSettings

pytestmark = pytest.mark.integration

V1: dict[str, Any] = {"type": "record", "name": "Probe", "namespace": "alpha.it.v0",
      "fields": [{"name": "a", "type": "long"}]}  # fmt: skip


@pytest.fixture
def probe_topic(local_stack: StackSettings) -> str:
    topic = f"it.check.{uuid.uuid4().hex[:8]}.v0"
    with SchemaRegistryClient({"url": local_stack.registry_url}) as client:
        # registered as `alpha` registers: canonical JSON text (schemas.catalog.read)
        text = json.dumps(V1, sort_keys=True, separators=(",", ":"))
        client.register_schema(f"{topic}-value", Schema(text, "AVRO"))
    return topic


def _check(
    settings: StackSettings, tmp: Path, topic: str, schema: dict[str, Any]
) -> tuple[int, str]:
    tmp.mkdir(exist_ok=True)
    (tmp / f"{topic}.avsc").write_text(json.dumps(schema))
    result = alpha(settings, "schemas", "check", "--schemas-dir", str(tmp))
    return result.returncode, result.stdout + result.stderr


def _versions(settings: StackSettings, topic: str) -> list[int]:
    with SchemaRegistryClient({"url": settings.registry_url}) as client:
        return list(client.get_versions(f"{topic}-value"))


def test_schemas_check_rejects_an_incompatible_change(
    local_stack: StackSettings, probe_topic: str, tmp_path: Path
) -> None:
    changed = dict(V1, fields=[{"name": "a", "type": "string"}])
    code, out = _check(local_stack, tmp_path / "bad", probe_topic, changed)
    assert code == 1, out
    assert "incompatible" in out
    assert probe_topic in out
    assert _versions(local_stack, probe_topic) == [1], "check must not register"


def test_schemas_check_passes_an_add_with_default(
    local_stack: StackSettings, probe_topic: str, tmp_path: Path
) -> None:
    added = dict(
        V1, fields=[{"name": "a", "type": "long"}, {"name": "b", "type": "string", "default": ""}]
    )
    code, out = _check(local_stack, tmp_path / "ok", probe_topic, added)
    assert code == 0, out
    assert " ok " in out
    code, out = _check(local_stack, tmp_path / "same", probe_topic, V1)
    assert code == 0, out
    assert "same" in out
    assert _versions(local_stack, probe_topic) == [1]


def test_the_shipped_schemas_pass_against_the_registry(local_stack: StackSettings) -> None:
    result = alpha(local_stack, "schemas", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alpha.events.v0" in result.stdout


def test_a_foreign_reader_decodes_an_event_with_only_the_registry(
    local_stack: StackSettings,
) -> None:
    with SchemaRegistry(local_stack.registry_url) as registry:
        data = registry.codec("alpha.events.v0").encode(sample_event())
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    url = f"{local_stack.registry_url}/schemas/ids/{schema_id}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (local registry)
        writer = avro.schema.parse(json.loads(response.read())["schema"])
    reader = avro.io.DatumReader(writer)
    decoded: Any = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[5:])))
    want = sample_event()
    assert decoded["event_id"] == want["event_id"] or str(decoded["event_id"]) == want["event_id"]
    assert decoded["class"] == "spike"
    assert decoded["severity"] == want["severity"]
    assert decoded["local_state"]["features"] == want["local_state"]["features"]
    assert decoded["market_frame"]["rs_top"] == want["market_frame"]["rs_top"]
    assert decoded["provenance"] == want["provenance"]
