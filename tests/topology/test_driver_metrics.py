"""What the processor reports for the worker's metrics, through the TopologyTestDriver."""

from __future__ import annotations

from connectors.synthetic.generator import generate
from topology.driver import TopologyTestDriver


def test_baseline_updates_follow_final_ok_rows():
    driver = TopologyTestDriver(flush_every=50)
    driver.pipe_stream(generate("calm", assets=2, minutes=20, seed=3))
    rows = [s.value for s in driver.read("lattice.v0", rows_only=True) if s.value["tf"] == "m1"]
    ok_rows = sum(r["dq_status"] == "ok" for r in rows)
    vol = driver.processor.baseline_updates[("vol", "1m")]
    # every final ok minute moves the volume baseline once; the last minutes are not final yet
    assert 0 < vol <= ok_rows
    assert ok_rows - vol <= 2 * 2  # at most the last two minutes of each asset are not final
    assert all(tf in ("1m", "15m", "1h") for _f, tf in driver.processor.baseline_updates)
