"""The exactly-once stage without a broker: the stall watchdog and Faust's read-offset filter."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
import pytest
from faust.types import TP

from topology import faust_eos
from topology.faust_eos import EosStage, FetchLedger, OffsetGapError, StageStalledError


async def _no_flush(partition: int) -> None:
    return None


def _stage(
    tmp_path: Any, stall_timeout_s: float, *, contiguous: bool = True
) -> tuple[EosStage, list[BaseException]]:
    app = faust.App("t-watchdog", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    stage = EosStage(
        app,
        "md.raw.v0",
        _no_flush,
        lambda: None,
        stall_timeout_s=stall_timeout_s,
        contiguous=contiguous,
    )
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app.crash = crash  # type: ignore[method-assign]
    return stage, crashes


def test_a_lock_held_past_the_timeout_crashes_with_the_holder_named(tmp_path: Any) -> None:
    async def scenario() -> list[BaseException]:
        stage, crashes = _stage(tmp_path, stall_timeout_s=0.0)
        async with stage.hold("md.raw.v0/3@17"):
            await stage._watchdog()
        return crashes

    crashes = asyncio.run(scenario())
    assert len(crashes) == 1
    assert isinstance(crashes[0], StageStalledError)
    assert "md.raw.v0/3@17" in str(crashes[0])


def test_an_idle_or_quick_stage_is_left_alone(tmp_path: Any) -> None:
    async def scenario() -> list[BaseException]:
        stage, crashes = _stage(tmp_path, stall_timeout_s=3600.0)
        await stage._watchdog()  # idle
        async with stage.hold("commit"):
            await stage._watchdog()  # held, but far below the timeout
        await stage._watchdog()  # released
        return crashes

    assert asyncio.run(scenario()) == []


def test_hold_releases_the_lock_when_the_work_raises(tmp_path: Any) -> None:
    async def scenario() -> tuple[bool, object]:
        stage, _ = _stage(tmp_path, stall_timeout_s=3600.0)
        with pytest.raises(ValueError, match="boom"):
            async with stage.hold("commit"):
                raise ValueError("boom")
        return stage.lock.locked(), stage._held

    assert asyncio.run(scenario()) == (False, None)


def test_diagnose_lists_the_running_tasks(tmp_path: Any) -> None:
    async def scenario() -> str:
        stage, _ = _stage(tmp_path, stall_timeout_s=3600.0)
        blocker = asyncio.Event()
        waiting = asyncio.create_task(blocker.wait(), name="stuck-send")
        await asyncio.sleep(0)  # let the task start and block
        text = stage.diagnose()
        blocker.set()
        await waiting
        return text

    text = asyncio.run(scenario())
    assert "--- task stuck-send" in text


def test_faust_never_filters_the_source_topic_by_read_offset(tmp_path: Any) -> None:
    # Faust drops records below the last offset it delivered; a seek-back re-fetches exactly
    # those, so for the source topic the stage's own admit() must see them all.
    stage, _ = _stage(tmp_path, stall_timeout_s=3600.0)
    stage.install_read_offsets()
    stage.install_read_offsets()  # idempotent (every assignment calls it)
    read_offset: Any = stage.app.consumer._read_offset  # type: ignore[attr-defined]
    source, other = TP("md.raw.v0", 1), TP("lattice.v0", 1)
    read_offset[source] = 3373
    read_offset[other] = 41
    read_offset.update({source: 9000})
    assert read_offset[source] is None
    assert read_offset[other] == 41
    assert read_offset[TP("lattice.v0", 2)] is None  # unknown partitions read from the start


def _offsets(stage: EosStage, committed: int) -> list[int]:
    """Give ``stage`` a broker whose committed offset is ``committed``; return its seeks."""
    seeks: list[int] = []

    async def start_offset(partition: int) -> int:
        return committed

    async def seek(partition: int, offset: int) -> None:
        seeks.append(offset)

    async def earliest(partition: int) -> int:
        return 0

    stage._start_offset = start_offset  # type: ignore[method-assign]
    stage._earliest = earliest  # type: ignore[method-assign]
    stage._seek = seek  # type: ignore[method-assign]
    return seeks


async def _feed(stage: EosStage, offsets: tuple[int, ...]) -> list[bool]:
    seen = []
    for offset in offsets:
        admitted = await stage.admit(0, offset)
        seen.append(admitted)
        if admitted:
            stage.done(0, offset)
    return seen


def test_a_transactional_source_accepts_holes_and_drops_redeliveries(tmp_path: Any) -> None:
    # lattice.v0 / market.in.v0 are written in transactions: commit markers take offsets.
    async def scenario() -> tuple[list[bool], list[int], dict[int, int]]:
        stage, _ = _stage(tmp_path, stall_timeout_s=3600.0, contiguous=False)
        seeks = _offsets(stage, committed=5)
        seen = await _feed(stage, (5, 7, 6, 7, 9))
        return seen, seeks, stage.pending

    seen, seeks, pending = asyncio.run(scenario())
    assert seen == [True, True, False, False, True]
    assert seeks == []  # the first record was the committed one: nothing to confirm
    assert pending == {0: 10}


@pytest.mark.parametrize(
    ("contiguous", "offsets", "seen"),
    [
        # A stale fetch delivers 8 and 9 first although the group committed 3: trusting it
        # skipped records. The stage seeks back to 3, drops the stale records and starts at the
        # first record the seek brings (4: 3 is a commit marker); later holes are markers again.
        pytest.param(False, (8, 9, 4, 6, 8, 9), [False, False, True, True, True, True], id="stale"),
        # Offsets 3 and 4 are markers: the seek brings 5 again, which is then the true start.
        pytest.param(False, (5, 6, 5, 6, 7), [False, False, True, True, True], id="markers"),
        # md.raw.v0 has no holes: a first record past the committed offset is a skip, repaired.
        pytest.param(True, (6, 7, 3, 4, 5, 6), [False, False, True, True, True, True], id="raw"),
    ],
)
def test_a_start_past_the_committed_offset_is_confirmed_by_one_seek(
    tmp_path: Any, contiguous: bool, offsets: tuple[int, ...], seen: list[bool]
) -> None:
    async def scenario() -> tuple[list[bool], list[int]]:
        stage, _ = _stage(tmp_path, stall_timeout_s=3600.0, contiguous=contiguous)
        seeks = _offsets(stage, committed=3)
        return await _feed(stage, offsets), seeks

    assert asyncio.run(scenario()) == (seen, [3])


def test_a_start_the_seek_never_brings_stops_the_worker(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faust_eos, "SEEK_PATIENCE", 2)

    async def scenario() -> list[int]:
        stage, _ = _stage(tmp_path, stall_timeout_s=3600.0, contiguous=False)
        seeks = _offsets(stage, committed=3)
        with pytest.raises(OffsetGapError, match="not delivered again after 5 seeks"):
            await _feed(stage, tuple(range(8, 40)))
        return seeks

    assert asyncio.run(scenario()) == [3] * faust_eos.MAX_SEEKS


def test_the_ledger_tells_a_dropped_record_from_a_commit_marker() -> None:
    ledger = FetchLedger()
    ledger.note(0, [5, 7, 8])  # 6 is a commit marker: aiokafka never returns it
    assert not ledger.skipped(0, 5, 5)
    assert not ledger.skipped(0, 6, 7)  # the hole 6 was never fetched: a marker
    ledger.note(0, [9, 10, 11])
    assert ledger.skipped(0, 9, 11)  # 9 and 10 were fetched and never delivered: a drop
    ledger.note(0, [9, 10])  # a refetch after a seek starts over
    assert not ledger.skipped(0, 9, 9)


def test_a_record_faust_dropped_in_a_transactional_source_is_fetched_again(
    tmp_path: Any,
) -> None:
    # Faust took 6..8 from aiokafka, dropped 6 and 7 (the partition was paused mid-iteration)
    # and delivered 8: the stage seeks back to 6 instead of taking the hole for markers.
    async def scenario() -> tuple[list[bool], list[int]]:
        stage, _ = _stage(tmp_path, stall_timeout_s=3600.0, contiguous=False)
        seeks = _offsets(stage, committed=5)
        stage.ledger.note(0, [5, 6, 7, 8])
        seen = await _feed(stage, (5, 8))
        stage.ledger.note(0, [6, 7, 8, 10])  # the refetch after the seek; 9 is a marker
        return seen + await _feed(stage, (6, 7, 8, 10)), seeks

    seen, seeks = asyncio.run(scenario())
    assert seen == [True, False, True, True, True, True]
    assert seeks == [6]


def test_records_that_sent_outputs_are_committed_by_the_eager_timer(tmp_path: Any) -> None:
    """A sealed minute's outputs commit (become visible) soon, not at the next periodic commit."""

    class Event:
        def __init__(self, offset: int) -> None:
            self.message = type("M", (), {"partition": 0, "offset": offset, "key": None})()
            self.value = b"x"

    class Stream:
        def __init__(self, n: int) -> None:
            self.n = n

        async def events(self) -> Any:
            for offset in range(self.n):
                yield Event(offset)

    async def scenario() -> list[tuple[str, int]]:
        app = faust.App("t-eager", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
        stage = EosStage(app, "md.raw.v0", _no_flush, lambda: None, eager_commit_s=0.05)
        log: list[tuple[str, int]] = []

        async def admit(partition: int, offset: int) -> bool:
            return True

        async def commit(start_new_transaction: bool = True) -> bool:
            log.append(("commit", stage.pending.get(0, -1)))
            stage.pending.clear()
            return True

        async def handle(partition: int, offset: int, key: bytes | None, value: bytes) -> None:
            if offset == 2:  # the record that seals a minute: it sends outputs
                stage._sends += 1
            log.append(("record", offset))

        stage.admit = admit  # type: ignore[method-assign]
        stage.commit = commit  # type: ignore[method-assign]
        await stage.process(Stream(2), handle)  # no outputs yet
        await stage._eager_commit()
        await stage.process(Stream(3), handle)  # offset 2 sends
        await stage._eager_commit()
        await stage._eager_commit()  # nothing new: no second commit
        return log

    log = asyncio.run(scenario())
    assert log == [
        ("record", 0),
        ("record", 1),
        ("record", 0),
        ("record", 1),
        ("record", 2),
        ("commit", 3),
    ]


def test_an_expensive_last_commit_spaces_the_eager_commits_out(tmp_path: Any) -> None:
    async def scenario() -> tuple[int, bool]:
        app = faust.App("t-eager-cost", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
        stage = EosStage(app, "md.raw.v0", _no_flush, lambda: None, eager_commit_s=0.05)
        commits = []

        async def commit(start_new_transaction: bool = True) -> bool:
            commits.append(1)
            return True

        highwater = {"md.raw.v0": 50_000}

        class Consumer:
            def highwater(self, tp: TP) -> int:
                return highwater[tp.topic]

        stage.commit = commit  # type: ignore[method-assign]
        app._consumer = Consumer()  # type: ignore[assignment]
        stage.next_offset = {0: 10_000}  # 40,000 records behind: a replay
        stage._eager_due = True
        stage._commit_took = 60.0  # the last commit took a minute: wait 4 minutes
        stage._commit_ended = time.monotonic()
        await stage._eager_commit()
        held = stage._eager_due
        highwater["md.raw.v0"] = 10_010  # caught up (live): commit at once despite the cost
        await stage._eager_commit()
        return len(commits), held

    assert asyncio.run(scenario()) == (1, True)
