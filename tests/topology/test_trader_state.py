"""The trader's state values stay small when a partition lags (Kafka's 1 MB record limit)."""

from __future__ import annotations

from state.memory import MemoryStore
from tests.kit.trading import DAY2, PARTITIONS, SYMBOLS, Market, reports, story_policy
from topology.trader_driver import TraderDriver

POLICY = story_policy()


def test_a_lagging_partition_leaves_one_small_value_per_pending_minute_then_none():
    store = MemoryStore("trade.state.v1")
    d = TraderDriver(POLICY, PARTITIONS, store, flush_every=50)
    market = Market()
    minutes = [DAY2 + m * 60_000 for m in range(600)]
    lagging = PARTITIONS - 1
    held = []
    for t in minutes:  # every partition but the last reports 600 minutes
        quotes = [market.quote(s) for s in SYMBOLS]
        for r in reports(t, quotes, []):
            if r["partition"] == lagging:
                held.append(r)
            else:
                d.pipe(r)
    d.flush()
    sizes = {k: len(v) for k, v in store.scan(b"")}
    assert not d.values("risk.state.v0")  # nothing could be processed yet
    assert sum(1 for k in sizes if k.startswith(b"m:")) == len(minutes)
    assert max(sizes.values()) < 64 * 1024
    assert sizes[b"core"] < 16 * 1024
    d.pipe_all(held)  # the partition catches up: every minute goes, no pending value is left
    d.flush()
    assert not [k for k, _ in store.scan(b"m:")]
    assert d.proc.state.core["last_minute"] == minutes[-1]
