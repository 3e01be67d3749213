"""The detect stage's per-asset state: IQR clamp bounds (spec 002 §4.4, per z column, refreshed
daily) and the hotlist (§7.4, D.8) that lets a hot asset pass the membership gate."""

from __future__ import annotations

from typing import Any

import pytest

from packs.detector import load_detector_pack
from processors.detect.events import Provenance
from processors.detect.processor import DAY_MS, STORE, DetectorProcessor
from processors.lattice.baselines import iqr_bounds, sketch_add
from state.memory import MemoryStore
from tests.kit.lattice import small_pack

MIN = 10
DAY0 = 20_000 * DAY_MS  # a UTC midnight


def processor() -> DetectorProcessor:
    pack = load_detector_pack()
    prov = Provenance("test", pack.version, pack.hash(), "test")
    return DetectorProcessor(pack, small_pack(min_samples=MIN), {STORE: MemoryStore(STORE)}, prov)


def row(ts: int, z: float, **kw: Any) -> dict[str, Any]:
    return {"exchange_ts": ts, "revision": 0, "dq_status": "ok", "z_vol_m_1": z, **kw}


def bounds_of(values: list[float]) -> tuple[float, float]:
    sketch = None
    for v in values:
        sketch = sketch_add(sketch, v, max_centroids=small_pack().quantiles.max_centroids)
    got = iqr_bounds(sketch, small_pack().quantiles.iqr_k)
    assert got is not None
    return got


def test_bounds_start_after_min_samples_then_refresh_at_midnight_from_the_day() -> None:
    proc = processor()
    day0 = [float(i % 7) - 3 for i in range(40)]  # -3..3
    seen = [proc._iqr(1, row(DAY0 + 60_000 * (i + 1), z)) for i, z in enumerate(day0)]
    # Nothing clamps until MIN values were seen; then the bootstrap bounds of those MIN stay.
    assert all(b == {} for b in seen[:MIN])
    assert seen[MIN] == {"z_vol_m_1": bounds_of(day0[:MIN])}
    assert seen[-1] == seen[MIN]
    # The first row of the next day refreshes from the whole finished day (k = 3).
    day1 = [10.0 + (i % 3) for i in range(5)]
    first = proc._iqr(1, row(DAY0 + DAY_MS + 60_000, day1[0]))
    assert first == seen[MIN]  # bounds as of *before* the row
    after = proc._iqr(1, row(DAY0 + DAY_MS + 120_000, day1[1]))
    assert after == {"z_vol_m_1": bounds_of(day0)}
    lo, hi = after["z_vol_m_1"]
    assert lo < -3
    assert hi > 3
    # Day 1 holds fewer than MIN values: the next midnight keeps day 0's bounds.
    for i, z in enumerate(day1[2:]):
        proc._iqr(1, row(DAY0 + DAY_MS + 180_000 + 60_000 * i, z))
    proc._iqr(1, row(DAY0 + 2 * DAY_MS + 60_000, 0.0))
    assert proc._iqr(1, row(DAY0 + 2 * DAY_MS + 120_000, 0.0)) == after


@pytest.mark.parametrize("extra", [{"revision": 1}, {"dq_status": "stale"}, {"z_vol_m_1": None}])
def test_revised_stale_or_missing_values_are_not_counted(extra: dict[str, Any]) -> None:
    proc = processor()
    for i in range(3 * MIN):
        proc._iqr(1, row(DAY0 + 60_000 * (i + 1), 1.0, **extra))
    assert proc._iqr(1, row(DAY0 + DAY_MS, 1.0, **extra)) == {}


def test_assets_keep_their_own_bounds_and_they_survive_a_restart() -> None:
    store = MemoryStore(STORE)
    pack = load_detector_pack()
    prov = Provenance("test", pack.version, pack.hash(), "test")
    proc = DetectorProcessor(pack, small_pack(min_samples=MIN), {STORE: store}, prov)
    for i in range(MIN):
        proc._iqr(1, row(DAY0 + 60_000 * (i + 1), float(i)))
        proc._iqr(2, row(DAY0 + 60_000 * (i + 1), float(-i)))
    proc.flush()
    again = DetectorProcessor(pack, small_pack(min_samples=MIN), {STORE: store}, prov)
    one = again._iqr(1, row(DAY0 + 60_000 * (MIN + 1), 0.0))["z_vol_m_1"]
    two = again._iqr(2, row(DAY0 + 60_000 * (MIN + 1), 0.0))["z_vol_m_1"]
    assert one == bounds_of([float(i) for i in range(MIN)])
    assert two == bounds_of([float(-i) for i in range(MIN)])
    assert one != two


MINUTE = 60_000


def test_a_high_severity_event_makes_the_asset_hot_for_the_d8_ttl() -> None:
    proc = processor()
    proc._make_hot(1, "vol_spike_m_1", 80, DAY0)  # ttl = 15 + 0.3 * 80 = 39 minutes
    assert proc._is_hot(1, DAY0 + 39 * MINUTE - 1)
    assert not proc._is_hot(1, DAY0 + 39 * MINUTE)
    assert not proc._is_hot(2, DAY0)
    proc._make_hot(2, "vol_spike_m_1", 69, DAY0)  # under s_hot = 70
    assert not proc._is_hot(2, DAY0)


def test_always_hot_subtypes_at_any_severity_and_the_later_expiry_wins() -> None:
    proc = processor()
    proc._make_hot(1, "basis_jolt_m_5", 10, DAY0)  # always hot: 15 + 3 = 18 minutes
    assert proc._is_hot(1, DAY0 + 17 * MINUTE)
    assert not proc._is_hot(1, DAY0 + 18 * MINUTE)
    proc._make_hot(1, "price_up_oi_up_m_5", 90, DAY0 + 10 * MINUTE)  # by severity: 42 min
    proc._make_hot(1, "liq_cluster_m_5", 0, DAY0 + 11 * MINUTE)  # expires sooner: ignored
    assert proc._is_hot(1, DAY0 + 51 * MINUTE)
    assert not proc._is_hot(1, DAY0 + 52 * MINUTE)


def test_minutes_waiting_for_their_frame_are_separate_values() -> None:
    store = MemoryStore(STORE)
    pack = load_detector_pack()
    prov = Provenance("test", pack.version, pack.hash(), "test")
    proc = DetectorProcessor(pack, small_pack(min_samples=MIN), {STORE: store}, prov)
    labels = [DAY0 + i * 60_000 for i in range(3)]
    for label in labels:  # sealed minutes with no market frame yet: they wait
        proc.step(0, {"body": {"partition": 0, "seal": "close", "exchange_ts": label,
                               "watermark": label + 61_000, "ingest_ts": label, "rows": 0,
                               "config_hash": "x"}})  # fmt: skip
    proc.flush()
    keys = sorted(k for k, _ in store.scan(b"m:0:"))
    assert keys == [b"m:0:%d" % label for label in labels]
    again = DetectorProcessor(pack, small_pack(min_samples=MIN), {STORE: store}, prov)
    assert sorted(again._partition(0)["pending"]) == sorted(str(x) for x in labels)
    proc.step(0, {"body": {"partition": 0, "seal": "close", "exchange_ts": labels[0],
                           "watermark": labels[0] + 62_000, "ingest_ts": labels[0], "rows": 0,
                           "config_hash": "x"}})  # fmt: skip
    before = dict(store.scan(b"m:0:"))
    proc.flush()
    after = dict(store.scan(b"m:0:"))
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {b"m:0:%d" % labels[0]}  # only the minute that changed was written
