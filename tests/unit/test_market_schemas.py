"""The market stage's outputs fit their Avro schemas: ``market.snapshot.v0``, ``universe.v0`` and
the ``MarketFrame`` branch of ``lattice.v0`` (added at the end of the union, BACKWARD compatible).

``MarketProcessor`` is driven through minutes that produce every kind of output (bootstrap,
entries, hard exits, hotlist additions, expiries and evictions, a stale minute, warm-up and
partial rows, a minute forced out without a partition), and every output goes through the
real codec the way the workers send it: lattice.v0 values wrapped as ``{"body": value}`` (like
``topology.driver``), the snapshot and universe values as they are (flat records).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest

from packs.universe import load_universe_policy
from processors.market.snapshot import (
    FRAME_KEYS,
    LATTICE_TOPIC,
    SNAPSHOT_KEYS,
    SNAPSHOT_TOPIC,
    UNIVERSE_TOPIC,
    MarketProcessor,
    Output,
)
from processors.market.universe import ENTRY_REASONS
from schemas import catalog
from schemas.compat import backward_problems
from schemas.wire import AvroCodec, unframe
from tests.kit.packs import changed

L = 1_756_900_860_000  # 2025-09-03T12:01:00Z
MINUTE_MS = 60_000
PARTITIONS = 3
MINUTES = 12
#: From this minute on the last partition never seals: minutes emitted only when forced.
SILENT_FROM = 8
LAG = 2
#: sha256 of the canonical JSON (sorted keys, no spaces) of the union branches lattice.v0 had
#: before MarketFrame was added. Changing either breaks readers of lattice.v0: a new major.
BRANCH_SHA256 = {
    "FeatureRow": "c52eddb50380d8db664796247b5c8c94ef6b719356da88e288cb9a883294a307",
    "SealMarker": "2fdb3e4c79b245f9227f3042edc2b116d7f8f69e8b72a260b06c55f84e221174",
}
#: Universe audit reasons the state machine writes (processors/market/universe.py).
MEMBERSHIP_REASONS = {*ENTRY_REASONS, "exit", "hard_exit"}
HOTLIST_REASONS = {"hotlist", "hot_expired", "hot_evicted"}

POLICY = changed(
    load_universe_policy(),
    freeze_min=0,
    hard_exit={"stale_min": 2},
    hotlist={"ttl_base_min": 1.0, "ttl_k_min_per_point": 0.0, "max_size": 1},
    market={"max_partition_lag_min": LAG, "rs": {"top_n": 2}, "min_assets_for_context": 3},
)


def label(m: int) -> int:
    return L + m * MINUTE_MS


def summary(uid: int, m: int, **fields: Any) -> dict[str, Any]:
    """A decoded market.in.v0 AssetSummary of asset ``uid`` at minute ``m``."""
    x = (uid * 7919 + m * 104729) % 1000 / 1000
    body = {
        "asset_uid": uid, "symbol": "BTC" if uid == 1 else f"A{uid}", "tf": "m1",
        "exchange_ts": label(m), "revision": 0, "partition": uid % PARTITIONS, "dq_status": "ok",
        "warmup": False, "mid_close": 10.0 + uid, "ret_m_1": (x - 0.5) / 100,
        "ret_m_5": (x - 0.5) / 50, "v_total_m_1": 1000.0 * (uid + x), "z_vol_m_1": 4 * x - 1,
        "z_ret_abs_m_1": 3 * x, "is_vol_spike_m_1": x > 0.8, "is_price_spike_up_m_1": False,
        "is_price_spike_down_m_1": False, "oi_close": 1e5 * (1 + x), "funding_h_1": 1e-5,
        "time_to_next_funding_sec": 3600 - m * 60, "basis_bp_m_5": 0.5,
    }  # fmt: skip
    body.update(fields)
    return {"body": body}


def seal(p: int, m: int, kind: str = "close") -> dict[str, Any]:
    return {
        "body": {
            "partition": p, "seal": kind, "exchange_ts": label(m), "watermark": label(m) + 1500,
            "ingest_ts": label(m) + 1600, "rows": 0,
        }
    }  # fmt: skip


def minute_rows(m: int) -> list[dict[str, Any]]:
    """The summaries of minute ``m``: quirks on purpose, see the comments."""
    uids = [u for u in range(1, 7) if not (u == 6 and m >= 4)]  # 6 vanishes: hard exit
    if m >= 5:
        uids.append(7)  # a newcomer: entry after k_entry minutes
    rows = []
    for uid in uids:
        fields: dict[str, Any] = {}
        if m == 1 and uid == 2:  # warm-up: RS incomplete
            fields = {"warmup": True, "ret_m_5": None, "z_vol_m_1": None, "z_ret_abs_m_1": None}
        if m == 2 and uid == 3:  # not ok: no RS, null in its frame asset
            fields = {"dq_status": "partial", "mid_close": None, "oi_close": None}
        if m == 3:  # no funding clock anywhere: null
            fields = {"time_to_next_funding_sec": None}
        if m == 6:  # every row stale: no eligible asset, stale snapshot
            fields = {"dq_status": "stale"}
        rows.append(summary(uid, m, **fields))
    return rows


def run() -> list[Output]:
    proc = MarketProcessor(POLICY, partitions=PARTITIONS)
    out: list[Output] = []
    for m in range(MINUTES):
        rows = minute_rows(m)
        for p in range(PARTITIONS):
            if m >= SILENT_FROM and p == PARTITIONS - 1:
                continue  # the last partition stops sealing: minutes forced out without it
            for r in rows:
                if r["body"]["partition"] == p:
                    out += proc.step(r)
            out += proc.step(seal(p, m))
            out += proc.step(seal(p, m, "final"))
        if m == 1:
            out += proc.hot(4, 0.0, "manual", label(m))  # expires at the next update
        if m == 4:
            out += proc.hot(5, 0.0, "manual", label(m))
            out += proc.hot(1, 95.0, "basis_jolt", label(m) + 30_000)  # outlives 5: evicts it
    return out


@pytest.fixture(scope="module")
def outputs() -> list[Output]:
    return run()


def codec(topic: str) -> AvroCodec:
    return AvroCodec(catalog.load(topic).parsed, 1)


def on_the_wire(out: Output) -> dict[str, Any]:
    """The value as the worker encodes it: lattice.v0 wraps the body, the others are flat."""
    return {"body": out.value} if out.topic == LATTICE_TOPIC else out.value


def by_topic(outputs: list[Output], topic: str) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == topic]


def raw_schema(topic: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((catalog.AVRO_DIR / f"{topic}.avsc").read_text())
    return raw


def lattice_branches(raw: dict[str, Any]) -> list[dict[str, Any]]:
    [body] = raw["fields"]
    assert body["name"] == "body"
    branches: list[dict[str, Any]] = body["type"]
    return branches


def records(schema: Any) -> Iterator[dict[str, Any]]:
    """Every record schema defined anywhere in ``schema`` (a parsed JSON value)."""
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            yield schema
        for value in schema.values():
            yield from records(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from records(item)


def canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------- the scenario
def test_the_scenario_produces_every_kind_of_output(outputs: list[Output]) -> None:
    snaps = by_topic(outputs, SNAPSHOT_TOPIC)
    frames = by_topic(outputs, LATTICE_TOPIC)
    audits = by_topic(outputs, UNIVERSE_TOPIC)
    emitted = MINUTES - LAG  # the last LAG minutes wait for the silent partition
    assert [s["exchange_ts"] for s in snaps] == [label(m) for m in range(emitted)]
    assert len(frames) == PARTITIONS * emitted
    reasons = {r for a in audits for r in a["reasons"].values()}
    assert reasons == MEMBERSHIP_REASONS - {"exit"}
    assert {r for a in audits for r in a["hot_reasons"].values()} == HOTLIST_REASONS
    # nulls, empty arrays and every dq_status reach the codec
    stale = next(s for s in snaps if s["dq_status"] == "stale")
    assert stale["leader"] is None
    assert stale["dominance_share"] is None
    assert stale["rs_scores"] == []
    assert stale["rs_top"] == []
    assert any(s["time_to_next_funding_sec"] is None for s in snaps)
    assert any(s["leader_prev"] is None for s in snaps)
    assert any(r["rs_incomplete"] for s in snaps for r in s["rs_scores"])
    assert {s["context_scope"] for s in snaps} == {"all", "universe"}
    forced = [s for s in snaps if s["partitions_missing"]]
    assert [(s["exchange_ts"], s["partitions_missing"], s["dq_status"]) for s in forced] == [
        (label(m), [PARTITIONS - 1], "partial") for m in range(SILENT_FROM, emitted)
    ]
    assert any(a["rs_score_m_5"] is None for f in frames for a in f["assets"])
    assert any(a["is_hot"] for f in frames for a in f["assets"])
    assert any(f["assets"] == [] for f in frames)


# ---------------------------------------------------------------------- round trips
def test_every_output_round_trips_through_its_topic_codec(outputs: list[Output]) -> None:
    codecs = {t: codec(t) for t in (SNAPSHOT_TOPIC, UNIVERSE_TOPIC, LATTICE_TOPIC)}
    for out in outputs:
        value = on_the_wire(out)
        c = codecs[out.topic]
        # strict: a key the schema does not name fails instead of being dropped silently
        assert fastavro.validate(value, catalog.load(out.topic).parsed, strict=True)
        assert c.decode(c.encode(value)) == value


def test_market_frames_decode_as_frames_not_rows_or_seals(outputs: list[Output]) -> None:
    c = codec(LATTICE_TOPIC)
    frame = next(o for o in outputs if o.topic == LATTICE_TOPIC)
    _, payload = unframe(c.encode(on_the_wire(frame)))
    decoded = fastavro.schemaless_reader(
        io.BytesIO(payload), catalog.load(LATTICE_TOPIC).parsed, None, return_record_name=True
    )
    assert isinstance(decoded, dict)
    name, body = decoded["body"]
    assert name == "alpha.lattice.v0.MarketFrame"
    assert body == frame.value


def test_lattice_rows_and_seals_still_encode_as_before() -> None:
    c = codec(LATTICE_TOPIC)
    seal_marker = {
        "partition": 1, "seal": "final", "exchange_ts": L, "watermark": L + 1, "ingest_ts": L + 2,
        "rows": 3, "config_hash": "sha256:x",
    }  # fmt: skip
    assert c.decode(c.encode({"body": seal_marker})) == {"body": seal_marker}


# ---------------------------------------------------------------------- shapes
def test_snapshot_fields_are_the_snapshot_keys_in_order() -> None:
    raw = raw_schema(SNAPSHOT_TOPIC)
    assert raw["namespace"] == "alpha.market.snapshot.v0"
    assert tuple(f["name"] for f in raw["fields"]) == SNAPSHOT_KEYS


def test_frame_fields_are_the_frame_keys_in_order() -> None:
    frame = lattice_branches(raw_schema(LATTICE_TOPIC))[-1]
    assert frame["name"] == "MarketFrame"
    assert tuple(f["name"] for f in frame["fields"]) == FRAME_KEYS


def test_universe_fields_are_the_audit_keys_in_order(outputs: list[Output]) -> None:
    raw = raw_schema(UNIVERSE_TOPIC)
    audits = by_topic(outputs, UNIVERSE_TOPIC)
    assert {tuple(a) for a in audits} == {tuple(f["name"] for f in raw["fields"])}


def test_reason_enums_name_what_the_state_machine_writes() -> None:
    raw = raw_schema(UNIVERSE_TOPIC)
    types = {f["name"]: f["type"] for f in raw["fields"]}
    assert set(types["reasons"]["values"]["symbols"]) == MEMBERSHIP_REASONS
    assert set(types["hot_reasons"]["values"]["symbols"]) == HOTLIST_REASONS


def test_rs_score_records_are_the_same_in_snapshot_and_frame() -> None:
    snap = {f["name"]: f for f in raw_schema(SNAPSHOT_TOPIC)["fields"]}
    frame = {f["name"]: f for f in lattice_branches(raw_schema(LATTICE_TOPIC))[-1]["fields"]}
    assert canonical(snap["rs_scores"]["type"]) == canonical(frame["rs_scores"]["type"])


def test_nullable_fields_default_to_null() -> None:
    for topic in (SNAPSHOT_TOPIC, UNIVERSE_TOPIC, LATTICE_TOPIC):
        for record in records(raw_schema(topic)):
            for field in record["fields"]:
                if isinstance(field["type"], list) and field["type"][0] == "null":
                    assert "default" in field, (record["name"], field["name"])
                    assert field["default"] is None, (record["name"], field["name"])


@pytest.mark.parametrize("topic", [SNAPSHOT_TOPIC, UNIVERSE_TOPIC, LATTICE_TOPIC])
def test_every_record_and_field_is_documented(topic: str) -> None:
    raw = raw_schema(topic)
    assert raw.get("doc")
    for record in records(raw):
        assert record.get("doc"), record["name"]
        for field in record["fields"]:
            assert field.get("doc"), (record["name"], field["name"])


# ---------------------------------------------------------------------- compatibility
def test_market_frame_is_added_last_and_the_other_branches_are_unchanged() -> None:
    branches = lattice_branches(raw_schema(LATTICE_TOPIC))
    assert [b["name"] for b in branches] == ["FeatureRow", "SealMarker", "MarketFrame"]
    for branch in branches[:2]:
        digest = hashlib.sha256(canonical(branch).encode()).hexdigest()
        assert digest == BRANCH_SHA256[branch["name"]], branch["name"]


def test_lattice_with_market_frame_reads_data_written_without_it() -> None:
    new = raw_schema(LATTICE_TOPIC)
    old = copy.deepcopy(new)
    lattice_branches(old).pop()
    assert [b["name"] for b in lattice_branches(old)] == ["FeatureRow", "SealMarker"]
    assert backward_problems(json.dumps(new), json.dumps(old)) == []
    # and the check would notice: a reader without the branch cannot read frames
    assert backward_problems(json.dumps(old), json.dumps(new))
