"""``alpha replay`` on the real broker: re-run from md.raw.v0 offsets, then verify (spec 002 §16).

A private stack holds the synthetic ``basket_shock`` scenario (4 assets, 42 minutes, seed 7,
injection at minute 34, a feature pack warm after 30 samples), run live by real ``alpha worker
lattice|market|detector`` processes into ``alpha.events.v0``. Then:

1. ``alpha replay run`` from the beginning publishes on ``alpha.events.replay.v0`` the live
   events -- same ids, partitions, keys and payloads, ``provenance.replay_of`` true -- and
   ``alpha replay verify`` says IDENTICAL (exit 0).
2. ``alpha replay --from-offset N`` (the default action) starts mid-topic with fresh state, so
   baselines warm up later; ``alpha replay verify`` (both runs, deduplicated) and ``alpha replay
   verify --run`` (that run only) must say what a plain computation over both topics says, with
   exit 1 when they differ.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Message

from schemas import catalog, raw
from tests.conftest import require_stack
from tests.kit.kafka import end_offsets, read_between
from tests.kit.lattice import pack_file as write_pack
from tests.kit.lattice import synthetic_detector_pack_file
from tests.kit.stack import alpha, running_stack
from tests.kit.workers import WorkerProcess, committed, wait_until
from topology.settings import StackSettings

pytestmark = pytest.mark.integration
SCENARIO, ASSETS, MINUTES, INJECT, MIN_SAMPLES = "basket_shock", 4, 42, 34, 30
LIVE, REPLAY = "alpha.events.v0", "alpha.events.replay.v0"
DONE_TIMEOUT_S = 240
START_OFFSET = 180
_SEQ = itertools.count()
Event = dict[str, Any]
Identity = tuple[str, int]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    require_stack()
    with running_stack(tmp_path_factory.mktemp("replay-stack")) as settings:
        yield settings


def _worker(stack: StackSettings, tmp: Path, role: str, *extra: str) -> WorkerProcess:
    n = next(_SEQ)
    group = f"it-replay-{role}"
    return WorkerProcess(
        stack, role, tmp / f"{group}-{n}.log", "--app-id", group, "--data-dir",
        str(tmp / f"{group}-{n}"), "--commit-interval", "0.5", "--session-timeout", "6",
        *extra,
    )  # fmt: skip


def _drain(stack: StackSettings, workers: list[WorkerProcess], group: str, topic: str) -> None:
    """Wait until ``group`` committed past the last record of ``topic`` (as of now)."""
    records = read_between(stack, topic, {}, end_offsets(stack, topic))
    want: dict[int, int] = dict.fromkeys(range(len(end_offsets(stack, topic))), 0)
    for m in records:
        want[m.partition() or 0] = (m.offset() or 0) + 1
    wait_until(
        lambda: (
            all(w.alive() for w in workers) and committed(stack, group, topic, len(want)) == want
        ),
        DONE_TIMEOUT_S,
        f"{group} to commit past every {topic} record",
        lambda: "\n".join(w.tail() for w in workers),
    )


@pytest.fixture(scope="module")
def packs(stack: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """Ingest the scenario and run every stage live to the end; return the pack options."""
    tmp = tmp_path_factory.mktemp("replay-workers")
    feature = ("--feature-pack", str(write_pack(tmp, MIN_SAMPLES)))
    detector = ("--detector-pack", str(synthetic_detector_pack_file(tmp)))
    result = alpha(
        stack, "ingest", "synthetic", "--scenario", SCENARIO, "--assets", str(ASSETS),
        "--minutes", str(MINUTES), "--seed", "7", "--inject-at", str(INJECT), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    workers = [
        _worker(stack, tmp, "lattice", *feature),
        _worker(stack, tmp, "market"),
        _worker(stack, tmp, "detector", *feature, *detector),
    ]
    try:
        _drain(stack, workers, "it-replay-lattice", raw.TOPIC)
        _drain(stack, workers, "it-replay-market", "market.in.v0")
        _drain(stack, workers, "it-replay-detector", "lattice.v0")
    finally:
        for w in workers:
            assert w.stop() == 0, w.tail()
    return (*feature, *detector)


def _decode(msg: Message) -> Event:
    # The shipped schema, not the tool's registry decoder: an independent reading.
    record = fastavro.schemaless_reader(
        io.BytesIO((msg.value() or b"")[5:]), catalog.load(LIVE).parsed, None
    )
    assert isinstance(record, dict)
    return record


def _read(stack: StackSettings, topic: str) -> list[Message]:
    return read_between(stack, topic, {}, end_offsets(stack, topic))


def _run_of(msg: Message) -> str:
    headers = dict(msg.headers() or [])
    value = headers.get("alpha-replay-run", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _normal(event: Event) -> Event:
    return {**event, "event_id": str(event["event_id"]), "provenance": {
        **event["provenance"], "replay_of": False}}  # fmt: skip


def _latest(events: list[Event]) -> dict[Identity, Event]:
    return {(str(e["event_id"]), e["revision"]): _normal(e) for e in events}


def _first_difference(live: list[Event], replay: list[Event]) -> tuple[str, str] | None:
    """``(event_id, what)`` of the first event, by (exchange_ts, id, revision), that differs."""
    a, b = _latest(live), _latest(replay)
    keys = sorted({*a, *b}, key=lambda k: ((a.get(k) or b[k])["exchange_ts"], k[0], k[1]))
    for k in keys:
        if k not in a or k not in b:
            return k[0], "missing on " + ("live" if k not in a else "replay")
        if a[k] != b[k]:
            return k[0], "differs"
    return None


def _replay(stack: StackSettings, *args: str) -> tuple[str, str]:
    result = alpha(stack, "replay", *args, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"replay (alpha-replay-[0-9a-f]+):", result.stdout)
    assert found, result.stdout
    assert re.search(r"records in [\d.]+ s: [\d,]+ records/s", result.stdout), result.stdout
    return found.group(1), result.stdout


def test_a_replay_from_the_beginning_is_identical(
    stack: StackSettings, packs: tuple[str, ...]
) -> None:
    live_msgs = _read(stack, LIVE)
    assert len(live_msgs) > 5, "the live run published too few events to compare"
    before = end_offsets(stack, REPLAY)
    run_id, out = _replay(stack, "run", *packs)
    assert "pipe errors (undecodable md.raw.v0 records, skipped): 0" in out
    assert f"published {len(live_msgs)} events on {REPLAY}" in out, out
    assert f"\n{len(_read(stack, raw.TOPIC))} records in " in out, out  # every record, once
    replay_msgs = read_between(stack, REPLAY, before, end_offsets(stack, REPLAY))
    assert {_run_of(m) for m in replay_msgs} == {run_id}
    live = {str(_decode(m)["event_id"]): m for m in live_msgs}
    again = {str(_decode(m)["event_id"]): m for m in replay_msgs}
    assert sorted(again) == sorted(live)  # the original ids
    for event_id, m in again.items():
        event = _decode(m)
        assert event["provenance"]["replay_of"] is True
        assert (m.partition(), m.key()) == (live[event_id].partition(), live[event_id].key())
        assert _normal(event) == _normal(_decode(live[event_id]))

    verify = alpha(stack, "replay", "verify", timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "IDENTICAL" in verify.stdout
    digests = re.findall(r"^(live|replay)\s+(sha256:[0-9a-f]{64})$", verify.stdout, re.M)
    assert len(digests) == 2
    assert digests[0][1] == digests[1][1]


def test_a_replay_from_the_middle_is_reported_honestly(
    stack: StackSettings, packs: tuple[str, ...]
) -> None:
    # A few minutes in (heartbeat-only partitions hold one record a second): late enough to
    # change every baseline, early enough to warm up before the injection and emit events.
    middle = START_OFFSET
    before = end_offsets(stack, REPLAY)
    run_id, out = _replay(stack, "--from-offset", str(middle), *packs)  # run is the default
    assert not re.search(r"published 0 events", out), out
    assert re.search(rf"^\s*0\s+{middle}\s", out, re.M), out  # partition 0 starts at N
    live = [_decode(m) for m in _read(stack, LIVE)]
    replay_msgs = _read(stack, REPLAY)
    everything = [_decode(m) for m in replay_msgs]
    mine = [_decode(m) for m in read_between(stack, REPLAY, before, end_offsets(stack, REPLAY))]

    verify = alpha(stack, "replay", "verify", timeout=120)
    expected = _first_difference(live, everything)
    assert verify.returncode == (0 if expected is None else 1), verify.stdout + verify.stderr
    assert ("IDENTICAL" in verify.stdout) is (expected is None), verify.stdout
    assert "duplicates of (event_id, revision) dropped (the last copy kept)" in verify.stdout
    assert run_id in verify.stdout
    if expected is not None:
        assert expected[0] in verify.stdout

    only = alpha(stack, "replay", "verify", "--run", run_id, timeout=120)
    expected = _first_difference(live, mine)
    assert expected is not None, "a mid-topic replay with fresh state made every live event"
    assert only.returncode == 1, only.stdout + only.stderr
    first = re.search(
        r"DIFFERENT: first difference: event (\S+) rev \d+ .*?(is on|at) ", only.stdout
    )
    assert first, only.stdout
    assert first.group(1) == expected[0]
    if expected[1].startswith("missing"):
        assert expected[1].replace("missing on", "not on") in only.stdout
