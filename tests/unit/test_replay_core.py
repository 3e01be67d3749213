"""Offset replays without a broker: time and offset bounds, the replayer, digest and comparison.

The replayer test is the whole claim in miniature: the raw wire bytes of a synthetic run, fed
through :class:`topology.replay.Replayer` with fresh state, give the events a "live" driver made
from the same values, byte for byte but ``provenance.replay_of``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
from typing import Any

import pytest

from connectors.heartbeats import HeartbeatClock
from connectors.synthetic.generator import generate
from processors.detect.events import Provenance
from schemas import catalog, raw
from schemas.wire import AvroCodec
from tests.kit.events import EXCHANGE_TS, sample_event
from tests.kit.lattice import small_pack, synthetic_detector_pack
from topology.pipeline_driver import PipelineDriver
from topology.replay import (
    Bounds,
    Replayer,
    ReplayError,
    canonical,
    compare,
    field_difference,
    in_window,
    parse_time,
    resolve_ranges,
    side,
)
from topology.replay_cli import add_replay_parser

Event = dict[str, Any]
PARTITIONS = 2


# ---------------------------------------------------------------------------- time and offsets
@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2025-09-03T12:00:00Z", 1_756_900_800_000),
        ("2025-09-03T12:00Z", 1_756_900_800_000),
        ("2025-09-03T14:00:00+02:00", 1_756_900_800_000),
        ("2025-09-03T12:00:00", 1_756_900_800_000),  # no offset: UTC
        ("2025-09-03T12:00:00.250Z", 1_756_900_800_250),
        ("2025-09-03", 1_756_857_600_000),
        ("1756900800000", 1_756_900_800_000),
        (" 1756900800000 ", 1_756_900_800_000),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time(text) == ms


@pytest.mark.parametrize("text", ["1756900800", "20250903", "yesterday", "2025-13-01"])
def test_parse_time_rejects_seconds_dates_as_digits_and_garbage(text: str) -> None:
    with pytest.raises(ReplayError, match="--to-time"):
        parse_time(text, "--to-time")


MARKS = {0: (0, 100), 1: (10, 50), 2: (0, 0)}


def test_open_bounds_are_the_watermarks() -> None:
    assert resolve_ranges(MARKS, Bounds()) == {0: (0, 100), 1: (10, 50), 2: (0, 0)}


def test_the_same_offset_on_every_partition_is_clamped_to_each() -> None:
    ranges = resolve_ranges(MARKS, Bounds(from_offset=30, to_offset=60))
    assert ranges == {0: (30, 60), 1: (30, 50), 2: (0, 0)}
    assert resolve_ranges(MARKS, Bounds(from_offset=5))[1] == (10, 50)  # below retention's head


def test_offsets_of_a_time_and_no_record_after_it() -> None:
    # offsets_for_times answers -1 where no record is at or after the time: nothing to read
    ranges = resolve_ranges(MARKS, Bounds(from_offsets={0: 40, 1: -1, 2: -1}))
    assert ranges == {0: (40, 100), 1: (50, 50), 2: (0, 0)}
    ranges = resolve_ranges(MARKS, Bounds(from_offsets={0: 40, 1: 20}, to_offsets={0: 30, 1: -1}))
    assert ranges == {0: (40, 40), 1: (20, 50), 2: (0, 0)}  # an end before the start is empty


# ---------------------------------------------------------------------------- compare and digest
def _events() -> list[Event]:
    return [
        sample_event(exchange_ts=EXCHANGE_TS + i * 60_000, event_id=f"0199-{i}", severity=60 + i)
        for i in range(4)
    ]


def _replayed(events: list[Event]) -> list[Event]:
    out = copy.deepcopy(events)
    for e in out:
        e["provenance"]["replay_of"] = True
    return out


def test_identical_in_any_order_and_replay_of_ignored() -> None:
    live = _events()
    result = compare(live, list(reversed(_replayed(live))))
    assert result.identical
    assert result.first is None
    assert result.live.digest == result.replay.digest
    assert result.live.digest.startswith("sha256:")
    assert result.live.by_class() == {"spike": 4}


def test_a_missing_event_is_the_first_difference() -> None:
    live = _events()
    result = compare(live, _replayed(live)[:1] + _replayed(live)[2:])
    assert not result.identical
    assert result.live.digest != result.replay.digest
    first = result.first
    assert first is not None
    assert (first.event_id, first.revision, first.missing_on) == ("0199-1", 0, "replay")
    assert first.exchange_ts == EXCHANGE_TS + 60_000
    result = compare(live[1:], _replayed(live))
    assert result.first is not None
    assert (result.first.event_id, result.first.missing_on) == ("0199-0", "live")


def test_a_changed_severity_names_the_field_and_both_values() -> None:
    live = _events()
    replay = _replayed(live)
    replay[2]["severity"] = 91
    replay[3]["severity"] = 1  # later in digest order: not the first
    first = compare(live, replay).first
    assert first is not None
    assert (first.event_id, first.missing_on, first.path) == ("0199-2", None, "severity")
    assert (first.live, first.replay) == (62, 91)


def test_a_nested_field_path() -> None:
    live = _events()
    replay = _replayed(live)
    replay[0]["local_state"]["features"]["z_vol_m_1"] = 3.6000000000000005  # one ulp
    replay[0]["market_frame"]["rs_top"] = ["SOL"]
    first = compare(live, replay).first
    assert first is not None
    assert first.path == "local_state.features.z_vol_m_1"
    assert (first.live, first.replay) == (3.6, 3.6000000000000005)


def test_duplicates_are_dropped_keeping_the_last_copy() -> None:
    live = _events()
    stale = _replayed(live)
    stale[1]["severity"] = 5  # an older replay with other packs
    result = compare(live, stale + _replayed(live))
    assert result.identical
    assert (result.replay.read, result.replay.duplicates, len(result.replay.events)) == (8, 4, 4)
    # the other way round the stale copy wins, and shows
    result = compare(live, _replayed(live) + stale)
    assert result.first is not None
    assert (result.first.event_id, result.first.path) == ("0199-1", "severity")


def test_a_revision_is_another_event() -> None:
    live = _events()
    amended = sample_event(event_id="0199-1", revision=1, exchange_ts=EXCHANGE_TS + 60_000)
    result = compare([*live, amended], _replayed(live))
    assert result.first is not None
    assert (result.first.event_id, result.first.revision) == ("0199-1", 1)
    assert result.first.missing_on == "replay"
    assert result.live.duplicates == 0


def test_canonical_bytes_ignore_map_order_but_not_bits() -> None:
    a = {"x": 1.0, "y": {"b": 2, "a": None}}
    b = {"y": {"a": None, "b": 2}, "x": 1.0}
    assert canonical(a) == canonical(b)
    assert canonical({"x": -0.0}) != canonical({"x": 0.0})
    assert canonical({"x": float("nan")}) == canonical({"x": float("nan")})
    assert field_difference({"x": -0.0}, {"x": 0.0}) == ("x", -0.0, 0.0)
    assert field_difference({"x": [1, 2]}, {"x": [1]}) == ("x.length", 2, 1)
    assert field_difference({"x": 1}, {"y": 1}) == ("x", 1, "<absent>")


def test_digest_depends_on_content_only() -> None:
    live = _events()
    assert side(live).digest == side(reversed(copy.deepcopy(live))).digest
    assert side(live).digest != side(live[:3]).digest
    assert side([]).digest == "sha256:" + hashlib.sha256(b"").hexdigest()


def test_window_is_half_open_on_exchange_ts() -> None:
    event = sample_event()
    assert in_window(event, None, None)
    assert in_window(event, EXCHANGE_TS, EXCHANGE_TS + 1)
    assert not in_window(event, EXCHANGE_TS + 1, None)
    assert not in_window(event, None, EXCHANGE_TS)


# ---------------------------------------------------------------------------- the replayer
def _topic_values() -> list[raw.RawValue]:
    """A synthetic run with the heartbeats the ingest sink adds (what md.raw.v0 holds)."""
    clock = HeartbeatClock(1000)
    out: list[raw.RawValue] = []
    for v in generate("basket_shock", assets=4, minutes=42, seed=7, inject_at_minute=34):
        out.append(v)
        due = clock.advance(int(v["exchange_ts"]))
        if due is not None:
            out += [raw.heartbeat(p, due, int(v["ingest_ts"]), "synthetic") for p in range(2)]
    return out


def test_replayer_makes_the_live_events_from_raw_bytes() -> None:
    pack, detector_pack = small_pack(min_samples=30), synthetic_detector_pack()
    values = _topic_values()
    live = PipelineDriver(pack, detector_pack, partitions=PARTITIONS, flush_every=1000)
    live.pipe_all(values)
    prov = live.provenance
    replayed = Provenance(
        prov.producer, prov.detector_pack, prov.detector_hash, prov.git_commit, replay_of=True
    )
    driver = PipelineDriver(
        pack, detector_pack, provenance=replayed, partitions=PARTITIONS, flush_every=1000
    )
    schema = catalog.load(raw.TOPIC).parsed
    codec = AvroCodec(schema, 7)
    replayer = Replayer(driver, codec)
    sent = []
    for offset, value in enumerate(values):
        p = driver.partition_of(value)
        sent += replayer.feed(p, offset, codec.encode(dict(value)))
        if offset == 100:
            assert replayer.feed(p, -1, b"not avro") == []
            assert replayer.feed(p, -2, AvroCodec(schema, 8).encode(dict(value))) == []
    replayer.finish()
    want = live.events()
    assert len(want) > 5
    got = [s.value for s in sent]
    assert [e["event_id"] for e in got] == [e["event_id"] for e in want]
    assert all(e["provenance"]["replay_of"] for e in got)
    assert compare(want, got).identical
    stats = replayer.stats
    assert stats.total_records == len(values) + 2
    assert sum(stats.pipe_errors.values()) == 2
    assert len(stats.pipe_errors) == 2  # "not avro" and "another schema id", one bucket each
    assert sum(stats.events.values()) == len(want)
    assert driver.outputs == []  # the replayer keeps no history


# ---------------------------------------------------------------------------- the parser
def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alpha")
    add_replay_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["replay", *argv])


def test_run_is_the_default_action_and_options_survive_either_form() -> None:
    plain = _parse("--from-offset", "5", "--to-time", "2025-09-03")
    named = _parse("run", "--from-offset", "5", "--to-time", "2025-09-03")
    before = _parse("--from-offset", "5", "--to-time", "2025-09-03", "run")
    for ns in (plain, named, before):
        assert ns.func.__name__ == "_cmd_run"
        assert (ns.from_offset, ns.to_time, ns.dry_run) == (5, "2025-09-03", False)
    assert _parse("--dry-run").dry_run is True
    verify = _parse("verify", "--from-time", "2025-09-03", "--run", "alpha-replay-1")
    assert verify.func.__name__ == "_cmd_verify"
    assert (verify.window_from, verify.window_to, verify.run) == (
        "2025-09-03",
        None,
        "alpha-replay-1",
    )
    with pytest.raises(SystemExit):
        _parse("--from-offset", "5", "--from-time", "2025-09-03")
