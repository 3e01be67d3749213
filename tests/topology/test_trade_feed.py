"""The detector's ``trade.in.v0`` reports: every partition reports every framed minute, once final.

The downstream stage trusts three things of the feed (processors.detect.feed): each partition
reports each minute it framed, a partition's reports come in minute order and end with a final
one, and the signals are exactly the events the detector published (same ids, same minute).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from connectors.synthetic.generator import generate
from tests.kit.lattice import small_pack, synthetic_detector_pack
from topology.pipeline_driver import PipelineDriver

ASSETS, MINUTES, SEED, INJECT, WARMUP = 4, 77, 7, 45, 30


@pytest.fixture(scope="module")
def driver() -> PipelineDriver:
    values = generate(
        "oi_build_long", assets=ASSETS, minutes=MINUTES, seed=SEED, inject_at_minute=INJECT
    )
    d = PipelineDriver(
        small_pack(min_samples=WARMUP),
        detector_pack=synthetic_detector_pack(),
        partitions=2,
        flush_every=10_000,
        trade_feed=True,
    )
    d.pipe_stream(values)
    d.flush()
    assert d.dead_letters == []
    assert d.stage_dead_letters == []
    return d


def _feed(d: PipelineDriver) -> list[dict[str, Any]]:
    return [s.value for s in d.outputs if s.topic == "trade.in.v0"]


def test_every_partition_reports_every_framed_minute_in_order_and_finally(driver):
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in _feed(driver):
        assert r["partitions"] == 2
        by_partition[r["partition"]].append(r)
    assert sorted(by_partition) == [0, 1]
    minutes = [sorted({r["minute_ms"] for r in rs}) for rs in by_partition.values()]
    assert minutes[0] == minutes[1]
    assert len(minutes[0]) >= MINUTES - 5
    for rs in by_partition.values():
        labels = [r["minute_ms"] for r in rs]
        assert labels == sorted(labels)
        finals: dict[int, int] = defaultdict(int)
        for r in rs:
            finals[r["minute_ms"]] += r["final"]
        # every minute but possibly the last one (its final seal may not have come) is closed once
        assert all(finals[m] == 1 for m in sorted(finals)[:-1])


def test_signals_are_the_published_events(driver):
    events = {str(e["event_id"]): e for e in driver.events()}
    signals = [s for r in _feed(driver) for s in r["signals"]]
    assert events, "the scenario must fire"
    assert sorted(s["event_id"] for s in signals) == sorted(events)
    for s in signals:
        e = events[s["event_id"]]
        assert (s["asset_uid"], s["subtype"], s["severity"]) == (
            e["asset_uid"], e["subtype"], e["severity"]
        )  # fmt: skip
        assert s["tf"] in ("1m", "15m", "1h")


def test_quotes_are_the_minute_rows_prices(driver):
    rows = {
        (s.value["asset_uid"], s.value["exchange_ts"]): s.value
        for s in driver.outputs
        if s.topic == "lattice.v0" and s.value.get("tf") == "m1" and s.value.get("revision") == 0
    }
    quotes = [(r["minute_ms"], q) for r in _feed(driver) for q in r["quotes"]]
    assert len(quotes) >= ASSETS * (MINUTES - 10)
    for minute, q in quotes:
        row = rows[(q["asset_uid"], minute)]
        assert (q["open"], q["high"], q["low"], q["close"]) == (
            row["open"], row["high"], row["low"], row["close"]
        )  # fmt: skip
        assert q["low"] <= q["close"] <= q["high"]
        if q["bid"] is not None:
            assert q["bid"] <= row["mid_close"] <= q["ask"]


def test_without_the_feed_option_nothing_goes_to_trade_in():
    values = generate("oi_build_long", assets=2, minutes=20, seed=SEED, inject_at_minute=15)
    d = PipelineDriver(small_pack(min_samples=5), partitions=2, flush_every=10_000)
    d.pipe_stream(values)
    assert not [s for s in d.outputs if s.topic == "trade.in.v0"]
