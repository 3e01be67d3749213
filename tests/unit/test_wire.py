"""The Confluent wire format and the Avro codec, without a registry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import catalog, wire
from schemas.errors import SchemaError, WireFormatError


@pytest.fixture
def codec() -> wire.AvroCodec:
    return wire.AvroCodec(catalog.load("ops.smoke.v0").parsed, schema_id=258)


def test_frame_layout_is_magic_byte_then_big_endian_id():
    assert wire.frame(258, b"xy") == b"\x00\x00\x00\x01\x02xy"
    assert wire.unframe(b"\x00\x00\x00\x01\x02xy") == (258, b"xy")


@given(schema_id=st.integers(0, 2**32 - 1), payload=st.binary(max_size=64))
def test_frame_round_trips(schema_id, payload):
    assert wire.unframe(wire.frame(schema_id, payload)) == (schema_id, payload)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than the 5-byte header"),
        (b"\x00\x00", "shorter"),
        (b"\x01\x00\x00\x00\x01x", "magic byte is 1"),
    ],
)
def test_unframe_rejects_malformed_frames(data, message):
    with pytest.raises(WireFormatError, match=message):
        wire.unframe(data)


@given(
    run_id=st.text(max_size=20),
    seq=st.integers(-(2**63), 2**63 - 1),
    committed=st.booleans(),
    note=st.text(max_size=20),
)
def test_codec_round_trips_records(run_id, seq, committed, note):
    codec = wire.AvroCodec(catalog.load("ops.smoke.v0").parsed, schema_id=7)
    record = {"run_id": run_id, "seq": seq, "committed": committed, "note": note}
    assert codec.decode(codec.encode(record)) == record


def test_encoding_is_deterministic(codec):
    record = {"run_id": "r", "seq": 3, "committed": True, "note": ""}
    assert codec.encode(record) == codec.encode(dict(reversed(list(record.items()))))


def test_codec_fills_defaults(codec):
    assert codec.decode(codec.encode({"run_id": "r", "seq": 1, "committed": False}))["note"] == ""


def test_codec_refuses_another_schema_id(codec):
    other = wire.AvroCodec(catalog.load("ops.smoke.v0").parsed, schema_id=9)
    frame = other.encode({"run_id": "r", "seq": 1, "committed": True})
    with pytest.raises(WireFormatError, match="schema id 9, codec expects 258"):
        codec.decode(frame)


def test_codec_reports_truncated_payload(codec):
    frame = codec.encode({"run_id": "abcdef", "seq": 1, "committed": True})
    with pytest.raises(WireFormatError, match="does not decode"):
        codec.decode(frame[:7])


def test_catalog_lists_and_names_subjects():
    assert "ops.smoke.v0" in catalog.available_topics()
    assert catalog.load("ops.smoke.v0").subject == "ops.smoke.v0-value"


def test_catalog_unknown_topic_is_a_clear_error():
    with pytest.raises(SchemaError, match=r"no schema for topic 'nope\.v0'"):
        catalog.load("nope.v0")


def test_catalog_rejects_an_invalid_schema(tmp_path, monkeypatch):
    (tmp_path / "bad.v0.avsc").write_text(
        '{"type": "record", "name": "X", "fields": [{"name": "a"}]}'
    )
    monkeypatch.setattr(catalog, "AVRO_DIR", tmp_path)
    catalog.load.cache_clear()
    try:
        with pytest.raises(SchemaError, match="not a valid Avro schema"):
            catalog.load("bad.v0")
    finally:
        catalog.load.cache_clear()
