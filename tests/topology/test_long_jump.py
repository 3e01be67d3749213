"""A long jump of stream time (two recordings days apart): an hour of stale rows, then resume.

Without the cap the lattice sealed every minute of the jump for every asset and the market stage
framed each of them: a 39-day jump between the bundled candles and tick captures ran for more
than half an hour and fenced the lattice worker's transaction (docs/lattice.md, "Time").
"""

from __future__ import annotations

from processors.lattice.clock import MAX_FILL_MINUTES
from tests.kit.lattice import MINUTE_MS, UID, healthy_minute, heartbeat, label, rows
from topology.pipeline_driver import PipelineDriver

DAYS = 2


def _heartbeats(d: PipelineDriver, ts: int) -> None:
    for p in range(d.partitions):
        d.pipe(heartbeat(ts, p), partition=p)


def test_a_two_day_jump_fills_an_hour_then_resumes() -> None:
    d = PipelineDriver(flush_every=1000)
    for minute in range(5):
        for v in healthy_minute(minute, mid=100.0):
            d.pipe(v)
        _heartbeats(d, label(minute) + 3_000)
    jump = DAYS * 24 * 60
    for minute in (jump, jump + 1, jump + 2):
        for v in healthy_minute(minute, mid=101.0):
            d.pipe(v)
        _heartbeats(d, label(minute) + 3_000)
    d.flush()
    got = rows(d)
    before = [t for t in got if t <= label(4)]
    filled = [t for t in got if label(4) < t < label(jump)]
    after = [t for t in got if t >= label(jump)]
    assert len(before) == 5
    assert filled == [label(4) + k * MINUTE_MS for k in range(1, MAX_FILL_MINUTES + 1)]
    assert all(got[t]["dq_status"] == "stale" for t in filled)
    assert after == [label(jump), label(jump + 1), label(jump + 2)]
    assert got[label(jump + 1)]["dq_status"] != "stale"
    snapshots = [s.value["exchange_ts"] for s in d.outputs if s.topic == "market.snapshot.v0"]
    framed = sorted(set(snapshots))  # a minute may be revised (a second snapshot)
    assert framed == sorted(before + filled + after)  # not one per minute of the two days
    assert d.dead_letters == []
    assert d.stage_dead_letters == []
    assert UID in {s.value["asset_uid"] for s in d.read("lattice.v0", rows_only=True)}
