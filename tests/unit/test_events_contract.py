"""The event contract (spec 002 §11): the Avro schema, deterministic UUIDv7 ids, bounds, JSON."""

from __future__ import annotations

import io
import json
import math
import uuid
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import catalog
from schemas.events import MAX_ARRAY, event_id, iso_ms, to_json, uuid7_ms, violations
from tests.kit.events import CONFIG_HASH, EXCHANGE_TS, sample_event

SCHEMA = catalog.load("alpha.events.v0")


def _roundtrip(event: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA.parsed, event)
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, SCHEMA.parsed, SCHEMA.parsed)
    assert isinstance(decoded, dict)
    return decoded


def _field(record: dict[str, Any], path: str) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    field = next(f for f in record["fields"] if f["name"] == head)
    return _field(field["type"], rest) if rest else field


def test_required_fields_of_section_11_1_are_not_optional() -> None:
    raw = json.loads(SCHEMA.text)
    required = [
        "v", "event_id", "emitted_at", "exchange_ts", "symbol", "asset_uid", "tf", "class",
        "subtype", "severity", "debounce_key", "local_state.dq.status", "market_frame.leader",
        "membership.is_in_universe", "membership.is_hot", "membership.universe_rev",
        "provenance.producer", "provenance.feature_pack", "provenance.detector_pack",
        "provenance.config_hash", "provenance.git_commit", "provenance.universe_policy_rev",
    ]  # fmt: skip
    for path in required:
        field = _field(raw, path)
        assert not isinstance(field["type"], list), f"{path} must not be nullable"
        assert "default" not in field, f"{path} must be required (no default)"
    for path in ("coalesced", "attachments", "market_frame.rs_top", "market_frame.rs_bottom"):
        assert "default" in _field(raw, path), f"{path} is optional in §11.1"
    enums = {f["name"]: f["type"] for f in raw["fields"] if isinstance(f["type"], dict)}
    assert enums["class"]["symbols"] == [
        "spike", "shift", "quadrant", "divergence", "synchrony", "rotation",
    ]  # fmt: skip
    assert enums["tf"]["symbols"] == ["m1", "m15", "h1"]


def test_the_spec_example_encodes_and_decodes() -> None:
    event = sample_event()
    decoded = _roundtrip(event)
    assert decoded.pop("event_id") == uuid.UUID(event.pop("event_id"))
    assert decoded == event


def test_a_value_outside_the_enums_does_not_encode() -> None:
    with pytest.raises(ValueError, match="made_up_m_1"):
        _roundtrip(sample_event(subtype="made_up_m_1"))


def test_event_id_is_a_uuid7_whose_time_is_the_bar() -> None:
    value = event_id(EXCHANGE_TS, "BTC:spike:1m", "vol_spike_m_1", 0, CONFIG_HASH)
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert uuid7_ms(value) == EXCHANGE_TS
    assert value == event_id(EXCHANGE_TS, "BTC:spike:1m", "vol_spike_m_1", 0, CONFIG_HASH)


def test_event_id_changes_with_every_identity_part() -> None:
    base = (EXCHANGE_TS, "BTC:spike:1m", "vol_spike_m_1", 0, CONFIG_HASH)
    variants = [
        (EXCHANGE_TS + 60_000, *base[1:]),
        (EXCHANGE_TS, "ETH:spike:1m", *base[2:]),
        (EXCHANGE_TS, "BTC:spike:1m", "price_spike_up_m_1", 0, CONFIG_HASH),
        (EXCHANGE_TS, "BTC:spike:1m", "vol_spike_m_1", 1, CONFIG_HASH),
        (*base[:4], "sha256:" + "cd" * 32),
    ]
    ids = {event_id(*base)} | {event_id(*v) for v in variants}
    assert len(ids) == 1 + len(variants)


@given(st.integers(0, 2**47), st.integers(0, 2**47), st.text(max_size=20))
def test_event_ids_sort_by_bar_time(a: int, b: int, key: str) -> None:
    ida, idb = (event_id(t, key, "vol_spike_m_1", 0, CONFIG_HASH) for t in (a, b))
    if a < b:
        assert ida < idb
    assert uuid7_ms(ida) == a


def test_event_id_rejects_a_time_uuid7_cannot_hold() -> None:
    with pytest.raises(ValueError, match="48-bit"):
        event_id(-1, "k", "vol_spike_m_1", 0, CONFIG_HASH)


def test_bounds_of_section_11_2() -> None:
    assert violations(sample_event()) == []
    frame = dict(sample_event()["market_frame"], rs_top=[f"S{i}" for i in range(MAX_ARRAY + 1)])
    local = sample_event()["local_state"]
    local = dict(local, features=dict(local["features"], z_vol_m_1=math.nan))
    bad = sample_event(severity=101, market_frame=frame, local_state=local)
    problems = violations(bad, encoded_size=20_000)
    assert len(problems) == 4, problems
    assert any("severity 101" in p for p in problems)
    assert any("rs_top has 17" in p for p in problems)
    assert any("z_vol_m_1" in p and "not finite" in p for p in problems)
    assert any("encoded size" in p for p in problems)


def test_json_rendering_matches_the_spec_example() -> None:
    out = to_json(_roundtrip(sample_event()))
    assert list(out)[:4] == ["v", "event_id", "emitted_at", "exchange_ts"]
    assert out["exchange_ts"] == "2025-09-03T09:30:00Z"
    assert out["ingest_ts"] == "2025-09-03T09:30:00.142Z"
    assert out["emitted_at"] == "2025-09-03T09:30:01.500Z"
    assert out["novelty"] == {"first_seen_at": "2025-09-03T09:29:00Z"}
    assert out["tf"] == "1m"
    assert out["class"] == "spike"
    assert out["coalesced"] == ["price_spike_up_m_1"]
    assert out["local_state"]["dq"] == {
        "status": "ok", "ingest_lag_ms": 142, "book_staleness_ms": 41, "oi_staleness_ms": 1800,
    }  # fmt: skip
    assert out["market_frame"]["rs_top"] == ["SOL", "HYPE", "APT", "SEI", "ENA"]
    assert "replay_of" not in out["provenance"]
    assert "revision" not in out
    assert out["attachments"] == {"bar_refs": {"1m": ["BTC/1m/2025-09-03T09:26:00Z"]}}
    assert json.loads(json.dumps(out)) == out


def test_json_rendering_leaves_out_empty_optionals_and_marks_replays() -> None:
    prov = dict(sample_event()["provenance"], replay_of=True)
    out = to_json(sample_event(coalesced=[], attachments=None, provenance=prov, revision=1))
    assert "coalesced" not in out
    assert "attachments" not in out
    assert out["provenance"]["replay_of"] is True
    assert out["revision"] == 1


def test_json_rendering_keeps_zero_values() -> None:
    frame = dict(sample_event()["market_frame"], shock_count_5s=0)
    out = to_json(sample_event(severity=0, market_frame=frame))
    assert out["severity"] == 0
    assert out["market_frame"]["shock_count_5s"] == 0


def test_iso_ms() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00Z"
    assert iso_ms(1_001) == "1970-01-01T00:00:01.001Z"
