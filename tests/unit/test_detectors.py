"""The detector catalogue (spec 002 §9, Appendix B): each detector fires on a hand-built row and
stays silent (or is gated with its reason) on warm-up, bad DQ, illiquidity, NULL inputs and values
below its threshold."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.detector import DetectorPack, load_detector_pack
from packs.feature import load_feature_pack
from processors.detect.catalogue import PANEL, detect, evaluate, guard_limits
from processors.detect.types import (
    AssetHistory,
    DetectContext,
    MarketHistory,
    MinuteSample,
    Trigger,
    update_history,
    update_market_history,
)
from tests.kit.packs import changed

PACK = load_detector_pack()
TS = 1_756_891_800_000  # 2025-09-03T09:30:00Z, a 15m boundary
MIN = 60_000
CTX = DetectContext()

QUIET: dict[str, Any] = {
    "asset_uid": 101, "venue": "hyperliquid", "symbol": "BTC", "tf": "m1", "exchange_ts": TS,
    "revision": 0, "final": False, "dq_status": "ok", "dq_reasons": [], "warmup": False,
    "illiquidity_hit": False, "is_in_universe": True, "is_hot": False, "universe_rev": 3127,
    "ingest_lag_ms": 142, "book_staleness_ms": 41, "oi_staleness_ms": 1800,
    "ret_s_30": 0.0002, "ret_m_1": 0.0005, "ret_m_5": 0.0005, "ret_abs_m_1": 0.0005,
    "rv_m_1": 0.001, "v_total_m_1": 1.8e7, "trade_count_m_1": 412, "cvd_delta_m_1": 1.0e5,
    "cvd_slope_m_5": 0.0, "oi_roc_m_5": 0.001, "liq_count_m_5": None, "liq_notional_m_5": None,
    "funding_h_1": 0.0001, "basis_bp_m_5": 2.0, "time_to_next_funding_sec": 2143,
    "spread_mean_m_1": 0.75, "spread_p95_m_1": 1.8, "z_vol_m_1": 0.5, "z_ret_abs_m_1": 0.3,
    "z_oi_roc_m_5": 0.2, "z_spread_m_1": 0.1, "z_basis_m_5": 0.4, "is_vol_spike_m_1": False,
    "is_price_spike_up_m_1": False, "is_price_spike_down_m_1": False,
    "is_oi_spike_up_m_5": False, "is_oi_spike_down_m_5": False, "is_spread_stress_m_1": False,
    "is_liq_cluster_m_5": None, "b_mean_vol": 1.0e7, "b_mean_spread": 0.7,
}  # fmt: skip


def make_row(**overrides: Any) -> dict[str, Any]:
    return QUIET | overrides


def subtypes(triggers: list[Trigger] | tuple[Trigger, ...]) -> list[str]:
    return [t.subtype for t in triggers]


def fired(row: Mapping[str, Any], frame: Mapping[str, Any] | None = None, **ctx: Any) -> list[str]:
    return subtypes(detect(row, frame or {}, DetectContext(**ctx), PACK))


def reasons(row: Mapping[str, Any], frame: Mapping[str, Any] | None = None, **ctx: Any):
    found = evaluate(row, frame or {}, DetectContext(**ctx), PACK)
    return [(s.trigger.subtype, s.reason) for s in found.suppressions]


def one(row: Mapping[str, Any], subtype: str, frame=None, **ctx: Any) -> Trigger:
    found = [
        t for t in detect(row, frame or {}, DetectContext(**ctx), PACK) if t.subtype == subtype
    ]
    assert len(found) == 1, found
    return found[0]


def history_of(*rows: Mapping[str, Any]) -> AssetHistory:
    h = AssetHistory()
    for r in rows:
        h = update_history(h, r)
    return h


def pack_with(**changes: Any) -> DetectorPack:
    return changed(PACK, **changes)


# ---------------------------------------------------------------- shared rules


def test_a_quiet_row_fires_nothing_and_suppresses_nothing():
    found = evaluate(make_row(), {}, CTX, PACK)
    assert found.triggers == ()
    assert found.suppressions == ()


@pytest.mark.parametrize("tf", ["m15", "h1"])
def test_only_1m_rows_are_evaluated(tf):
    assert evaluate(make_row(tf=tf, z_vol_m_1=9.0), {}, CTX, PACK).triggers == ()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"dq_status": "partial"}, "gated_dq"),
        ({"dq_status": "stale", "warmup": True}, "gated_dq"),  # first failing gate wins
        ({"warmup": True}, "gated_warmup"),
        ({"is_in_universe": False, "is_hot": False}, "gated_membership"),
        ({"is_in_universe": None, "is_hot": None}, "gated_membership"),
        ({"illiquidity_hit": True}, "gated_illiquid"),
    ],
)
def test_row_gates_suppress_with_their_reason(overrides, reason):
    row = make_row(z_vol_m_1=3.6, **overrides)
    assert fired(row) == []
    assert reasons(row) == [("vol_spike_m_1", reason)]


def test_membership_comes_from_the_context_first():
    row = make_row(z_vol_m_1=3.6, is_in_universe=None, is_hot=None)
    assert fired(row, is_hot=True) == ["vol_spike_m_1"]
    assert fired(make_row(z_vol_m_1=3.6), is_in_universe=False, is_hot=False) == []


def test_a_disabled_detector_does_not_run():
    pack = pack_with(detectors__vol_spike_m_1__enabled=False)
    assert evaluate(make_row(z_vol_m_1=3.6), {}, CTX, pack) == evaluate(make_row(), {}, CTX, pack)


def test_non_finite_inputs_are_null():
    assert fired(make_row(z_vol_m_1=math.nan)) == []
    assert fired(make_row(z_vol_m_1=math.inf)) == []


def test_trigger_carries_the_panel_flags_penalties_bounds_and_breadth():
    row = make_row(
        z_vol_m_1=3.6, z_ret_abs_m_1=2.1, is_vol_spike_m_1=True, is_oi_spike_up_m_5=True,
        book_staleness_ms=2000, revision=1,
    )  # fmt: skip
    frame = {"leader": "ETH", "shock_count_5s": 4}
    t = one(row, "vol_spike_m_1", frame, iqr_bounds={"z_vol_m_1": (-3.0, 3.2)}, tier="mid")
    assert t.detector_id == "spike.vol_spike_m_1"
    assert (t.event_class, t.tf, t.window_sec, t.asset_uid, t.symbol) == (
        "spike", "1m", 60, 101, "BTC",
    )  # fmt: skip
    assert (t.exchange_ts, t.revision, t.debounce_key) == (TS, 1, "BTC:spike:1m")
    assert (t.primary_z, t.primary_bounds, t.secondary_z) == (3.6, (-3.0, 3.2), (2.1,))
    assert t.breadth == pytest.approx(4 / 6)
    assert (t.dq_penalty, t.illiquidity_penalty) == (1.0, 0.0)
    names = [n for n, _v in t.features]
    assert names == sorted(set(PANEL) | {"trade_count_m_1"})
    assert dict(t.features)["z_vol_m_1"] == 3.6
    assert dict(t.features)["trade_count_m_1"] == 412.0
    assert t.flags == ("is_oi_spike_up_m_5", "is_vol_spike_m_1")
    assert t.detail == (("confirmed", True),)
    hash(t)  # hashable all the way down


def test_near_guard_sets_the_illiquidity_penalty():
    row = make_row(z_vol_m_1=3.6)
    assert one(row, "vol_spike_m_1", v_min=1.6e7).illiquidity_penalty == 1.0  # 1.8e7 < 1.92e7
    assert one(row, "vol_spike_m_1", v_min=1.4e7).illiquidity_penalty == 0.0
    assert one(row, "vol_spike_m_1", spread_cap=0.9).illiquidity_penalty == 1.0  # 0.75 > 0.72
    assert one(row, "vol_spike_m_1", spread_cap=1.0).illiquidity_penalty == 0.0


def test_guard_limits_follow_the_lattice():
    ill = load_feature_pack().illiquidity
    assert guard_limits(make_row(), ill) == (max(1e4, 0.005 * 1e7), 15 * 0.7)
    assert guard_limits(make_row(b_mean_vol=None, b_mean_spread=None), ill) == (1e4, None)


# ---------------------------------------------------------------- spike


def test_vol_spike_fires():
    t = one(make_row(z_vol_m_1=3.0), "vol_spike_m_1")
    assert t.detail == (("confirmed", False),)
    assert t.secondary_z == (0.3,)


@pytest.mark.parametrize(
    "overrides",
    [{"z_vol_m_1": 2.99}, {"z_vol_m_1": None}, {"z_vol_m_1": 3.6, "warmup": True}],
)
def test_vol_spike_silent(overrides):
    assert "vol_spike_m_1" not in fired(make_row(**overrides))


def test_vol_spike_needs_five_trades():
    row = make_row(z_vol_m_1=3.6, trade_count_m_1=4)
    assert fired(row) == []
    assert reasons(row) == [("vol_spike_m_1", "gated_precondition")]


@pytest.mark.parametrize(("tier", "z", "fires"), [
    ("top", 3.1, False), ("top", 3.2, True), ("mid", 3.0, True),
    ("tail", 3.6, False), ("tail", 3.8, True),
])  # fmt: skip
def test_vol_spike_tier_thresholds(tier, z, fires):
    assert (fired(make_row(z_vol_m_1=z), tier=tier) == ["vol_spike_m_1"]) is fires


@pytest.mark.parametrize(
    ("ret", "subtype"), [(0.004, "price_spike_up_m_1"), (-0.004, "price_spike_down_m_1")]
)
def test_price_spike_fires_by_sign(ret, subtype):
    t = one(make_row(z_ret_abs_m_1=2.7, ret_m_1=ret, ret_abs_m_1=abs(ret)), subtype)
    assert (t.primary_z, t.secondary_z) == (2.7, (0.5,))
    assert "rv_m_1" in dict(t.features)


@pytest.mark.parametrize(
    "overrides",
    [
        {"z_ret_abs_m_1": 2.49, "ret_m_1": 0.004},
        {"z_ret_abs_m_1": 2.7, "ret_m_1": None},
        {"z_ret_abs_m_1": 2.7, "ret_m_1": 0.0},
        {"z_ret_abs_m_1": None, "ret_m_1": 0.004},
    ],
)
def test_price_spike_silent(overrides):
    assert fired(make_row(**overrides)) == []


def test_price_spike_gated_on_a_stale_minute():
    row = make_row(z_ret_abs_m_1=2.7, ret_m_1=0.004, dq_status="stale")
    assert reasons(row) == [("price_spike_up_m_1", "gated_dq")]


@pytest.mark.parametrize(
    ("z", "roc", "subtype"),
    [(2.3, 0.02, "oi_spike_up_m_5"), (-2.3, -0.02, "oi_spike_down_m_5")],
)
def test_oi_spike_fires(z, roc, subtype):
    t = one(
        make_row(z_oi_roc_m_5=z, oi_roc_m_5=roc), subtype, iqr_bounds={"z_oi_roc_m_5": (-2.0, 2.1)}
    )
    assert t.primary_z == 2.3
    assert t.primary_bounds == ((-2.0, 2.1) if z > 0 else (-2.1, 2.0))  # mirrored for -z


@pytest.mark.parametrize(
    "overrides",
    [
        {"z_oi_roc_m_5": 2.3, "oi_roc_m_5": 0.01},  # |roc| < 1.5 %
        {"z_oi_roc_m_5": 1.9, "oi_roc_m_5": 0.02},
        {"z_oi_roc_m_5": 2.3, "oi_roc_m_5": -0.02},  # z and roc disagree
        {"z_oi_roc_m_5": None, "oi_roc_m_5": 0.02},
    ],
)
def test_oi_spike_silent(overrides):
    assert fired(make_row(**overrides)) == []


@pytest.mark.parametrize("staleness", [25_000, None])
def test_oi_spike_needs_fresh_oi(staleness):
    row = make_row(z_oi_roc_m_5=2.3, oi_roc_m_5=0.02, oi_staleness_ms=staleness)
    assert reasons(row) == [("oi_spike_up_m_5", "gated_oi_stale")]


def test_liq_cluster_from_the_feed():
    t = one(make_row(liq_count_m_5=5, liq_notional_m_5=1.2e6), "liq_cluster_m_5")
    assert t.primary_z == pytest.approx(5 / 3)
    assert dict(t.detail) == {"liq_count_m_5": 5, "liq_notional_m_5": 1.2e6, "source": "feed"}
    assert fired(make_row(liq_count_m_5=2, liq_notional_m_5=1e5)) == []


PROXY = {"z_ret_abs_m_1": 3.0, "ret_m_1": -0.006, "z_spread_m_1": 1.5, "z_oi_roc_m_5": -2.0,
         "oi_roc_m_5": -0.012}  # fmt: skip


def test_liq_cluster_inferred_without_a_feed():
    t = one(make_row(**PROXY), "liq_cluster_m_5")
    assert dict(t.detail) == {"proxy_score": 6.5, "source": "proxy"}
    assert t.primary_z == pytest.approx(6.5 / 6.0)


@pytest.mark.parametrize(
    "overrides",
    [{"oi_roc_m_5": 0.001}, {"z_spread_m_1": 0.5}, {"z_oi_roc_m_5": None}, {"liq_count_m_5": 1}],
)
def test_liq_cluster_proxy_silent(overrides):
    assert "liq_cluster_m_5" not in fired(make_row(**PROXY | overrides))


def test_liq_cluster_proxy_needs_a_fresh_book():
    found = reasons(make_row(**PROXY, book_staleness_ms=3500))
    assert ("liq_cluster_m_5", "gated_book_stale") in found


# ---------------------------------------------------------------- shift


def test_spread_stress_fires_and_needs_a_fresh_book():
    t = one(make_row(z_spread_m_1=2.4), "spread_stress_m_1")
    assert (t.event_class, t.primary_z, t.secondary_z) == ("shift", 2.4, ())
    assert "spread_p95_m_1" in dict(t.features)
    assert fired(make_row(z_spread_m_1=1.9)) == []
    assert reasons(make_row(z_spread_m_1=2.4, book_staleness_ms=None)) == [
        ("spread_stress_m_1", "gated_book_stale")
    ]


def test_basis_jolt_fires_both_ways():
    t = one(
        make_row(z_basis_m_5=-2.8, z_oi_roc_m_5=-1.2),
        "basis_jolt_m_5",
        iqr_bounds={"z_basis_m_5": (-2.5, 3.0)},
    )
    assert (t.primary_z, t.primary_bounds, t.secondary_z) == (2.8, (-3.0, 2.5), (1.2,))
    assert dict(t.detail) == {"direction": "discount"}
    assert dict(one(make_row(z_basis_m_5=2.6), "basis_jolt_m_5").detail) == {"direction": "premium"}


@pytest.mark.parametrize("z", [2.4, -2.4, None])
def test_basis_jolt_silent(z):
    assert fired(make_row(z_basis_m_5=z)) == []


def _funding_history(prev: float | None) -> AssetHistory:
    return history_of(make_row(exchange_ts=TS - 60 * MIN, funding_h_1=prev))


def test_funding_jolt_on_a_10bp_change():
    t = one(make_row(funding_h_1=0.0013), "funding_jolt_h_1", history=_funding_history(0.0001))
    assert (t.detector_id, t.tf, t.window_sec, t.debounce_key) == (
        "shift.funding_jolt_h_1", "1h", 3600, "BTC:shift:1h",
    )  # fmt: skip
    assert t.primary_z == pytest.approx(1.2)
    assert dict(t.detail) == {
        "flip": False, "funding_delta": pytest.approx(0.0012), "funding_now": 0.0013,
        "funding_prev": 0.0001, "time_to_next_funding_sec": 2143,
    }  # fmt: skip


def test_funding_jolt_on_a_flip_within_the_hour():
    t = one(make_row(funding_h_1=-0.0001), "funding_jolt_h_1", history=_funding_history(0.0002))
    assert t.primary_z == 1.0
    assert dict(t.detail)["flip"] is True


@pytest.mark.parametrize(
    ("now", "prev", "to_funding"),
    [
        (0.0006, 0.0001, 2143),  # Δ 5 bp, same sign
        (-0.0001, 0.0002, 4000),  # a flip, but funding is more than 1 h away
        (-0.0001, 0.0002, None),
        (0.0013, None, 2143),  # no value an hour ago
    ],
)
def test_funding_jolt_silent(now, prev, to_funding):
    row = make_row(funding_h_1=now, time_to_next_funding_sec=to_funding)
    assert fired(row, history=_funding_history(prev)) == []
    assert fired(make_row(funding_h_1=0.0013)) == []  # no history at all


# ---------------------------------------------------------------- quadrant


@pytest.mark.parametrize(
    ("ret", "roc", "subtype", "regime"),
    [
        (0.004, 0.012, "price_up_oi_up_m_5", "trend_build"),
        (0.004, -0.012, "price_up_oi_down_m_5", "short_squeeze"),
        (-0.004, 0.012, "price_down_oi_up_m_5", "trend_down_build"),
        (-0.004, -0.012, "price_down_oi_down_m_5", "long_squeeze"),
    ],
)
def test_quadrant_fires_by_sign_matrix(ret, roc, subtype, regime):
    assert fired(make_row(ret_m_5=ret, oi_roc_m_5=roc)) == [subtype]
    t = one(make_row(ret_m_5=ret, oi_roc_m_5=roc), subtype)
    assert t.detector_id == f"quadrant.{subtype}"
    assert t.primary_z == pytest.approx(0.004 / 0.003)
    assert t.secondary_z[0] == pytest.approx(1.2)
    assert dict(t.detail) == {"regime": regime}


@pytest.mark.parametrize(
    "overrides",
    [
        {"ret_m_5": 0.0029, "oi_roc_m_5": 0.012},
        {"ret_m_5": 0.004, "oi_roc_m_5": 0.009},
        {"ret_m_5": None, "oi_roc_m_5": 0.012},
    ],
)
def test_quadrant_silent(overrides):
    assert fired(make_row(**overrides)) == []


def test_quadrant_needs_fresh_oi():
    row = make_row(ret_m_5=0.004, oi_roc_m_5=0.012, oi_staleness_ms=20_001)
    assert reasons(row) == [("price_up_oi_up_m_5", "gated_oi_stale")]


# ---------------------------------------------------------------- divergence


def _flow_history(cvd: float, vol: float, minutes: int = 4) -> AssetHistory:
    rows = [
        make_row(exchange_ts=TS - k * MIN, cvd_delta_m_1=cvd, v_total_m_1=vol)
        for k in range(minutes, 0, -1)
    ]
    return history_of(*rows)


def test_price_up_cvd_down_fires():
    row = make_row(ret_m_5=0.004, cvd_delta_m_1=-3e5, v_total_m_1=1e6)
    t = one(row, "price_up_cvd_down_m_5", history=_flow_history(-3e5, 1e6))
    assert t.detector_id == "div.price_up_cvd_down_m_5"
    assert t.primary_z == pytest.approx(0.004 / 0.003)
    assert t.secondary_z[0] == pytest.approx(3.0)  # share -0.3 vs q 0.1
    assert dict(t.detail) == {
        "cvd_share_5": pytest.approx(-0.3), "cvd_sum_5": -1.5e6, "v_total_sum_5": 5e6,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("ret", "cvd", "minutes"),
    [(0.004, -0.5e5, 4), (0.002, -3e5, 4), (0.004, -3e5, 3)],  # weak flow, small move, a gap
)
def test_price_up_cvd_down_silent(ret, cvd, minutes):
    row = make_row(ret_m_5=ret, cvd_delta_m_1=cvd, v_total_m_1=1e6)
    assert fired(row, history=_flow_history(cvd, 1e6, minutes)) == []


def test_price_flat_cvd_trend_fires():
    row = make_row(ret_m_5=0.0005, cvd_slope_m_5=-3e5, v_total_m_1=1e6)
    t = one(row, "price_flat_cvd_trend_m_5", history=_flow_history(0, 1e6))
    assert t.primary_z == pytest.approx(1.5)
    assert dict(t.detail) == {"cvd_slope_share": pytest.approx(-0.3), "direction": "distribution"}


@pytest.mark.parametrize(("ret", "slope"), [(0.002, 3e5), (0.0005, 1e5), (0.0005, None)])
def test_price_flat_cvd_trend_silent(ret, slope):
    row = make_row(ret_m_5=ret, cvd_slope_m_5=slope, v_total_m_1=1e6)
    assert fired(row, history=_flow_history(0, 1e6)) == []


def test_premium_no_oi_fires_and_is_gated():
    t = one(make_row(z_basis_m_5=2.2, oi_roc_m_5=-0.001), "premium_no_oi_m_5")
    assert (t.event_class, t.primary_z) == ("divergence", 2.2)
    assert fired(make_row(z_basis_m_5=2.2, oi_roc_m_5=0.002)) == []
    assert fired(make_row(z_basis_m_5=1.9, oi_roc_m_5=-0.001)) == []
    assert fired(make_row(z_basis_m_5=2.2, oi_roc_m_5=None)) == []
    row = make_row(z_basis_m_5=2.2, oi_roc_m_5=0.0, oi_staleness_ms=30_000)
    assert reasons(row) == [("premium_no_oi_m_5", "gated_oi_stale")]


# ---------------------------------------------------------------- synchrony


def _shock(count: int, size: int, **extra: Any) -> dict[str, Any]:
    return {"leader": "BTC", "shock_count_5s": count, "universe_size": size,
            "dominance_share": 0.42, "return_dispersion_m_5": 0.006} | extra  # fmt: skip


def test_basket_shock_fires_on_the_leader_row():
    t = one(make_row(), "basket_shock_dt_5s", _shock(6, 35, shock_count_approx=True))
    assert (t.detector_id, t.event_class, t.window_sec) == (
        "sync.basket_shock_dt_5s",
        "synchrony",
        5,
    )
    assert (t.primary_z, t.breadth) == (1.0, 1.0)
    assert dict(t.detail) == {
        "approx": True, "dominance_share": 0.42, "leader": "BTC", "required": 6,
        "return_dispersion_m_5": 0.006, "shock_count_5s": 6, "universe_size": 35,
    }  # fmt: skip


@pytest.mark.parametrize(("count", "size", "fires"), [
    (4, 20, True), (3, 20, False), (6, 40, True), (5, 40, False), (5, 35, False),
])  # fmt: skip
def test_basket_shock_threshold(count, size, fires):
    assert (fired(make_row(), _shock(count, size)) == ["basket_shock_dt_5s"]) is fires


def test_basket_shock_silent_off_the_leader_or_without_inputs():
    assert fired(make_row(symbol="ETH"), _shock(9, 20)) == []
    assert fired(make_row(), _shock(9, 20, universe_size=None)) == []
    assert fired(make_row(), {}) == []
    assert reasons(make_row(warmup=True), _shock(9, 20)) == [("basket_shock_dt_5s", "gated_warmup")]


# ---------------------------------------------------------------- rotation


def _bucketed(values: tuple[float, float, float], k: int) -> float:
    return values[2 - k // 15]  # minute TS - k*MIN: k 0..14 -> bucket 2, 15..29 -> 1, 30..44 -> 0


def _rotation_ctx(
    z_vol=(3.0, 2.0, 1.0), ret5=(0.004, 0.002, 0.0), followers=(0.0, 0.5, 1.0), leader="BTC"
) -> DetectContext:
    history, market = AssetHistory(), MarketHistory()
    for k in range(44, 0, -1):  # the 44 minutes before TS
        ts = TS - k * MIN
        history = update_history(
            history,
            make_row(exchange_ts=ts, z_vol_m_1=_bucketed(z_vol, k), ret_m_5=_bucketed(ret5, k)),
        )
        f = _bucketed(followers, k)
        market = update_market_history(
            market, {"leader": leader, "rs_scores": {"BTC": 0.0, "ETH": f, "SOL": f}}, ts
        )
    return DetectContext(history=history, market=market)


NOW_FRAME = {"leader": "SOL", "rs_scores": {"BTC": 1.0, "ETH": 1.0, "SOL": 3.0}}


def test_leader_cooling_followers_hot_fires_for_the_former_leader():
    ctx = _rotation_ctx()
    found = detect(make_row(z_vol_m_1=1.0, ret_m_5=0.0), NOW_FRAME, ctx, PACK)
    assert subtypes(found) == ["leader_cooling_followers_hot_m_15"]
    t = found[0]
    assert (t.detector_id, t.tf, t.window_sec) == (
        "rot.leader_cooling_followers_hot_m_15",
        "15m",
        900,
    )
    assert t.primary_z == pytest.approx(3.0)  # (1.0 - 0.0) + (3.0 - 1.0), δ = 1
    assert dict(t.detail) == {
        "divergence": pytest.approx(3.0),
        "follower_rs_median_delta": pytest.approx(1.0),
        "leader_ret_m_5_delta": pytest.approx(-0.004),
        "leader_z_vol_m_1_delta": pytest.approx(-2.0),
    }


@pytest.mark.parametrize(
    ("kwargs", "row", "frame"),
    [
        ({}, {"exchange_ts": TS + MIN}, NOW_FRAME),  # not a 15m boundary
        ({"followers": (0.0, 0.5, 0.4)}, {}, NOW_FRAME),  # followers not rising twice
        ({"z_vol": (3.0, 3.5, 1.0)}, {}, NOW_FRAME),  # leader not cooling twice
        ({"leader": "ETH"}, {}, NOW_FRAME),  # BTC was not the leader
        ({"z_vol": (1.3, 1.2, 1.0), "followers": (0.0, 0.1, 0.2)}, {}, NOW_FRAME),  # below δ
    ],
)
def test_leader_cooling_silent(kwargs, row, frame):
    ctx = _rotation_ctx(**kwargs)
    assert detect(make_row(z_vol_m_1=1.0, ret_m_5=0.0) | row, frame, ctx, PACK) == []


SECTORS = {
    "BTC": "majors",
    "ETH": "majors",
    "SOL": "l1",
    "APT": "l1",
    "DOGE": "meme",
    "PEPE": "meme",
}


def _sector_ctx(now: Mapping[str, float], before: Mapping[str, float]) -> DetectContext:
    market = MarketHistory()
    for k in range(29, 0, -1):
        scores = before if k >= 15 else now
        rs = {s: scores[tag] for s, tag in SECTORS.items()}
        market = update_market_history(
            market, {"leader": "BTC", "rs_scores": rs}, TS - k * MIN, SECTORS
        )
    return DetectContext(market=market, sectors=SECTORS)


def _sector_frame(scores: Mapping[str, float]) -> dict[str, Any]:
    return {"leader": "BTC", "rs_scores": {s: scores[tag] for s, tag in SECTORS.items()}}


BEFORE = {"majors": 2.0, "l1": 0.5, "meme": 0.0}


def test_sector_flip_fires():
    now = {"majors": 0.2, "l1": 2.0, "meme": 1.5}
    found = detect(make_row(), _sector_frame(now), _sector_ctx(now, BEFORE), PACK)
    assert subtypes(found) == ["rs_flip_sector_m_15"]
    assert found[0].primary_z == pytest.approx(3.6)  # (2.0 - 0.2) / 0.5
    assert dict(found[0].detail) == {
        "delta": pytest.approx(1.8), "new_sector": "l1", "new_sector_rs": 2.0,
        "old_sector": "majors", "old_sector_rs": 0.2,
    }  # fmt: skip


@pytest.mark.parametrize(
    "now",
    [
        {"majors": 1.9, "l1": 2.0, "meme": 0.0},  # majors still second
        {"majors": 0.9, "l1": 1.2, "meme": 1.0},  # lead of 0.3 < δ
    ],
)
def test_sector_flip_silent(now):
    assert detect(make_row(), _sector_frame(now), _sector_ctx(now, BEFORE), PACK) == []


def test_sector_flip_needs_sector_tags():
    now = {"majors": 0.2, "l1": 2.0, "meme": 1.5}
    ctx = _sector_ctx(now, BEFORE)
    untagged = DetectContext(market=MarketHistory())
    assert detect(make_row(), _sector_frame(now), untagged, PACK) == []
    assert subtypes(detect(make_row(), _sector_frame(now), ctx, PACK)) == ["rs_flip_sector_m_15"]


# ---------------------------------------------------------------- history values


def test_history_replaces_revisions_prunes_and_round_trips():
    h = history_of(
        *(make_row(exchange_ts=TS - k * MIN, funding_h_1=k * 1e-5) for k in range(70, -1, -1))
    )
    assert [m.ts for m in h.minutes] == [TS - k * MIN for k in range(60, -1, -1)]
    h2 = update_history(h, make_row(revision=1, funding_h_1=0.5))
    assert len(h2.minutes) == len(h.minutes)
    assert h2.at(TS) == MinuteSample(TS, 0.5, 1e5, 1.8e7, 0.5, 0.0005)
    assert update_history(h, make_row(tf="m15")) is h
    assert AssetHistory.from_state(json.loads(json.dumps(h2.to_state()))) == h2
    with pytest.raises(ValueError, match="version"):
        AssetHistory.from_state({"v": 99, "minutes": []})


def test_market_history_sector_means_and_round_trip():
    m = update_market_history(
        MarketHistory(),
        _sector_frame({"majors": 1.0, "l1": 2.0, "meme": 3.0}) | {"leader": "ETH"},
        TS,
        SECTORS,
    )
    sample = m.minutes[0]
    assert sample.leader == "ETH"
    assert sample.follower_rs_median == 2.0  # BTC 1, SOL 2, APT 2, DOGE 3, PEPE 3
    assert sample.sector_rs == (("l1", 2.0), ("majors", 1.0), ("meme", 3.0))
    assert MarketHistory.from_state(json.loads(json.dumps(m.to_state()))) == m


def test_market_history_reads_the_snapshot_record_list_too():
    records = [
        {"asset_uid": i, "symbol": s, "rs_score_m_5": v, "rs_incomplete": False}
        for i, (s, v) in enumerate([("SOL", 2.0), ("BTC", 1.0), ("ETH", 3.0), ("XRP", None)])
    ]
    as_list = update_market_history(MarketHistory(), {"leader": "BTC", "rs_scores": records}, TS)
    as_map = update_market_history(
        MarketHistory(), {"leader": "BTC", "rs_scores": {"ETH": 3.0, "SOL": 2.0, "BTC": 1.0}}, TS
    )
    assert as_list == as_map
    assert as_list.minutes[0].follower_rs_median == 2.5


def test_folding_twice_is_folding_once():
    row = make_row(z_vol_m_1=3.6)
    once = update_history(AssetHistory(), row)
    assert evaluate(row, {}, DetectContext(history=once), PACK) == evaluate(row, {}, CTX, PACK)


# ---------------------------------------------------------------- properties

_z = st.one_of(st.none(), st.floats(-8, 8, allow_nan=False))
_ret = st.one_of(st.none(), st.floats(-0.02, 0.02))


@settings(max_examples=200, deadline=None)
@given(
    z_vol=_z, z_ret=_z, z_oi=_z, z_spread=_z, z_basis=_z,
    ret1=_ret, ret5=_ret, roc=st.one_of(st.none(), st.floats(-0.05, 0.05)),
    dq=st.sampled_from(["ok", "partial", "stale"]), warmup=st.booleans(),
)  # fmt: skip
def test_any_row_gives_sorted_gated_deterministic_output(
    z_vol, z_ret, z_oi, z_spread, z_basis, ret1, ret5, roc, dq, warmup
):
    row = make_row(
        z_vol_m_1=z_vol, z_ret_abs_m_1=z_ret, z_oi_roc_m_5=z_oi, z_spread_m_1=z_spread,
        z_basis_m_5=z_basis, ret_m_1=ret1, ret_m_5=ret5, oi_roc_m_5=roc, dq_status=dq,
        warmup=warmup,
    )  # fmt: skip
    found = evaluate(row, {}, CTX, PACK)
    shuffled = evaluate(dict(reversed(list(row.items()))), {}, CTX, PACK)
    assert found == shuffled
    keys = [t.sort_key for t in found.triggers]
    assert keys == sorted(keys)
    if dq != "ok" or warmup:
        assert found.triggers == ()
    for t in found.triggers:
        assert math.isfinite(t.primary_z)
        assert t.primary_z > 0
        assert 0.0 <= t.breadth <= 1.0
