"""The exactly-once stage without a broker: the stall watchdog and Faust's read-offset filter."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.types import TP

from topology.faust_eos import EosStage, StageStalledError


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


def test_a_transactional_source_accepts_holes_and_drops_redeliveries(tmp_path: Any) -> None:
    # lattice.v0 / market.in.v0 are written in transactions: commit markers take offsets.
    async def scenario() -> list[bool]:
        stage, _ = _stage(tmp_path, stall_timeout_s=3600.0, contiguous=False)
        seen = []
        for offset in (5, 7, 6, 7, 9):
            admitted = await stage.admit(0, offset)
            seen.append(admitted)
            if admitted:
                stage.done(0, offset)
        assert stage.pending == {0: 10}
        return seen

    assert asyncio.run(scenario()) == [True, True, False, False, True]
