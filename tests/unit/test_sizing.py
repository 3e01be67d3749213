"""Sizing: spec 001 quantities, HRP/CVaR overlays, near-liquidation, funding, gates, JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.risk import RiskPolicy, load_risk_policy
from processors.downstream.risk import RiskState, on_close, on_control, on_minute
from processors.downstream.sizing import (
    PILL_CVAR,
    PILL_HRP,
    Decision,
    compute_order_qty,
    floor_to_step,
    funding_cost_bps,
    liquidation_price,
    round_trip_cost_bps,
    size,
)
from processors.downstream.types import MINUTE_MS, ClosedTrade, Quote, Signal
from tests.kit.packs import changed
from tests.kit.trading import btc_trade, closed_trade

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
READY = T0 + 60 * MINUTE_MS
PARAMS = load_risk_policy()


def make_signal(**kw: Any) -> Signal:
    base: dict[str, Any] = {
        "event_id": "ev-1",
        "asset_uid": 7,
        "symbol": "BTC",
        "tf": "1m",
        "subtype": "price_spike_up_m_1",
        "severity": 60,
        "exchange_ts": READY,
        "side": "long",
    }
    return Signal(**{**base, **kw})


def make_quote(**kw: Any) -> Quote:
    base: dict[str, Any] = {
        "asset_uid": 7,
        "symbol": "BTC",
        "minute_ms": READY,
        "open": 60_000.0,
        "high": 60_100.0,
        "low": 59_900.0,
        "close": 60_000.0,
        "bid": 59_990.0,
        "ask": 60_010.0,
        "atr": 600.0,
    }
    return Quote(**{**base, **kw})


def make_closed(pnl: float, closed_ms: int) -> ClosedTrade:
    trade = btc_trade(closed_ms - MINUTE_MS, trade_id="d:ev-0")
    return closed_trade(trade, pnl / 50.0, closed_ms, pnl_usd=pnl)


def ready_state(params: RiskPolicy = PARAMS) -> RiskState:
    state, _ = on_minute(RiskState.initial(params), T0, params)
    return state


def decide(
    signal: Signal | None = None,
    quote: Quote | None = None,
    state: RiskState | None = None,
    params: RiskPolicy = PARAMS,
    *,
    no_quote: bool = False,
    **kw: Any,
) -> Decision:
    args: dict[str, Any] = {
        "equity": 10_000.0,
        "free_balance": 10_000.0,
        "hrp_scale": 1.0,
        "hrp_budget_date": "2026-01-01",
        "hrp_budget_version": "sha256:0123456789abcdef",
        "cvar_max_lev": None,
        "cvar_samples": 0,
        "cvar_source": None,
        "open_symbols": frozenset(),
        "params": params,
    }
    return size(
        signal or make_signal(),
        None if no_quote else (quote or make_quote()),
        state or ready_state(params),
        **{**args, **kw},
    )


# ------------------------------------------------------------------ quantity kernels


def test_spec_example_btc_at_60k_gives_0_333():
    assert compute_order_qty(60_000.0, 1_000_000.0, 10, 20_000.0, 0.001) == 0.333


@pytest.mark.parametrize(
    ("args", "qty"),
    [
        ((60_000.0, 1_000.0, 10, 20_000.0, 0.001), 0.166),  # free balance * leverage binds
        ((60_000.0, 1_000.0, 10, 20_000.0, 0.00001), 0.16666),
        ((0.5, 10_000.0, 10, 20_000.0, 1.0), 40_000.0),
        ((0.0, 10_000.0, 10, 20_000.0, 0.001), 0.0),
        ((60_000.0, 10_000.0, 0.0, 20_000.0, 0.001), 0.0),
    ],
)
def test_compute_order_qty_cases(args, qty):
    assert compute_order_qty(*args) == qty


@pytest.mark.parametrize(
    ("value", "step", "out"),
    [
        (0.3, 0.1, 0.3),  # 0.3 / 0.1 = 2.9999999999999996 steps
        (0.7, 0.1, 0.7),
        (0.3329999, 0.001, 0.332),
        (1e-7, 0.001, 0.0),
        (-1.0, 0.001, 0.0),
        (math.nan, 0.001, 0.0),
    ],
)
def test_floor_to_step_is_robust_to_float_noise(value, step, out):
    assert floor_to_step(value, step) == out


@settings(max_examples=200, deadline=None)
@given(
    value=st.floats(min_value=1e-6, max_value=1e6),
    step=st.sampled_from([1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0]),
)
def test_floor_to_step_never_inflates_and_loses_less_than_a_step(value, step):
    out = floor_to_step(value, step)
    assert out <= value * (1 + 1e-9)
    assert out > value - step * (1 + 1e-9)
    count = out / step  # a whole number of steps (up to float noise)
    assert abs(count - round(count)) <= 1e-9 * max(1.0, count)


def test_liquidation_price_for_longs_and_shorts():
    assert liquidation_price(60_000.0, "long", 10, 0.005) == pytest.approx(54_300.0)
    assert liquidation_price(60_000.0, "short", 10, 0.005) == pytest.approx(65_700.0)


@pytest.mark.parametrize(
    ("rate", "side", "bps"),
    [
        (0.0001, "long", 4.0),  # longs pay positive funding: 4 hourly periods of 1 bp
        (0.0001, "short", 0.0),  # shorts receive it: not counted as edge
        (-0.0001, "short", 4.0),  # shorts pay negative funding
        (-0.0001, "long", 0.0),
    ],
)
def test_funding_cost_sign(rate, side, bps):
    cost = funding_cost_bps(rate, side, hold_minutes=240, periods_per_day=24)
    assert cost == pytest.approx(bps)


def test_round_trip_cost_uses_maker_fee_only_for_maker_entries():
    assert round_trip_cost_bps(PARAMS.execution) == pytest.approx(13.0)
    maker = changed(PARAMS, execution__maker_only=True).execution
    assert round_trip_cost_bps(maker) == pytest.approx(1.5 + 6.5)


# ------------------------------------------------------------------ size: the happy path


def test_long_is_sized_by_risk_at_the_ask():
    d = decide()
    assert d.action == "open"
    assert d.drop_reason is None
    assert d.decision_id == "d:ev-1"
    assert d.cluster == "majors"
    assert d.price == 60_010.0
    assert d.stop == 60_010.0 - 900.0  # 1.5 ATR
    assert d.take_profit == 60_010.0 + 1_800.0  # 2 R
    assert d.qty == 0.02777  # 25 USD (0.25 % of 10k) / 900, floored to BTC's 0.00001
    assert d.risk_usd == pytest.approx(0.02777 * 900.0)
    assert d.leverage == 10
    assert d.pills == ()
    assert d.funding_cost_bps is None
    assert d.expected_edge_bps == pytest.approx(60 * 0.5 - 13.0)
    assert d.risk_policy_rev == 1


def test_short_is_priced_at_the_bid_with_the_stop_above():
    d = decide(make_signal(side="short"))
    assert d.action == "open"
    assert d.price == 59_990.0
    assert d.stop == 59_990.0 + 900.0
    assert d.take_profit == 59_990.0 - 1_800.0


def test_no_book_uses_the_close_and_no_atr_the_assumed_stop():
    d = decide(quote=make_quote(bid=None, ask=None, atr=None))
    assert d.price == 60_000.0
    assert d.stop == pytest.approx(60_000.0 * (1 - 0.003))


def test_spec_example_through_size_when_the_notional_cap_binds():
    quote = make_quote(symbol="XYZ", bid=None, ask=None, atr=6.0)  # default lot step 0.001
    d = decide(make_signal(symbol="XYZ"), quote, free_balance=1_000_000.0)
    assert d.cluster == "alts"
    assert d.qty == 0.333


# ------------------------------------------------------------------ overlays


def test_hrp_scale_cuts_risk_to_70_percent_with_the_pill():
    normal = decide()
    tight = decide(hrp_scale=0.7)
    assert tight.risk_pct == pytest.approx(0.7 * PARAMS.sizing.risk_pct)
    assert tight.qty == 0.01944  # 17.5 USD / 900
    assert tight.risk_usd == pytest.approx(0.7 * normal.risk_usd, rel=1e-3)
    assert tight.pills == (PILL_HRP,)
    assert tight.hrp_scale == 0.7
    assert tight.hrp_budget_date == "2026-01-01"
    assert tight.hrp_budget_version == "sha256:0123456789abcdef"


@pytest.mark.parametrize(("given_scale", "used"), [(math.nan, 0.5), (1.3, 1.0), (-0.2, 0.0)])
def test_hrp_scale_is_clamped_and_nan_is_the_min_scale(given_scale, used):
    assert decide(hrp_scale=given_scale).hrp_scale == used


def test_cvar_cap_lowers_leverage_and_quantity_with_the_pill():
    quote = make_quote(symbol="XYZ", bid=None, ask=None, atr=6.0)
    signal = make_signal(symbol="XYZ")
    free = decide(signal, quote, free_balance=5_000.0)
    capped = decide(
        signal, quote, free_balance=5_000.0, cvar_max_lev=2.0, cvar_samples=57, cvar_source="own"
    )
    assert free.qty == 0.333  # 20k cap / 60k
    assert capped.qty == 0.166  # 5k * 2 / 60k
    assert capped.leverage == 2.0
    assert capped.pills == (PILL_CVAR,)
    assert (capped.cvar_cap_max_lev, capped.cvar_samples, capped.cvar_source) == (2.0, 57, "own")


def test_a_cvar_cap_above_the_leverage_does_not_bind():
    d = decide(cvar_max_lev=20.0)
    assert d.leverage == 10
    assert d.pills == ()


def test_both_pills_together():
    # 0.1x of the free balance buys less than the risk budget would: the cap cuts the size
    assert decide(hrp_scale=0.6, cvar_max_lev=0.1).pills == (PILL_HRP, PILL_CVAR)


def test_a_cvar_cap_below_the_leverage_that_does_not_cut_the_size_shows_no_pill():
    # 3x still allows more than the 25 USD risk buys (0.028 BTC): the pill would be noise
    d = decide(cvar_max_lev=3.0)
    assert d.leverage == 3.0
    assert d.qty == 0.02777
    assert d.pills == ()


# ------------------------------------------------------------------ minimums: never inflate


def test_below_min_qty_is_dropped_not_inflated():
    params = changed(PARAMS, sizing__min_qty=1.0)
    d = decide(params=params)
    assert d.action == "drop"
    assert d.drop_reason == "below_min_qty"
    assert d.qty == 0.0
    assert d.risk_usd == 0.0


def test_below_min_notional_is_dropped():
    params = changed(PARAMS, sizing__min_notional_usd=5_000.0)  # the order is ~3.3k
    d = decide(params=params)
    assert d.drop_reason == "below_min_notional"
    assert d.qty == 0.0


def test_a_risk_quantity_under_one_lot_is_dropped():
    assert decide(equity=0.5).drop_reason == "below_min_qty"


# ------------------------------------------------------------------ near-liquidation guard


@pytest.mark.parametrize("side", ["long", "short"])
def test_near_liquidation_blocks_both_sides(side):
    quote = make_quote(bid=None, ask=None, atr=2_800.0)  # stop 7 %: 1.5 x 7 % > 9.5 % to liq
    d = decide(make_signal(side=side), quote)
    assert d.action == "drop"
    assert d.drop_reason == f"near_liquidation_{side}"
    assert d.qty == 0.0
    assert d.price == 60_000.0  # the drop records how far it got


@pytest.mark.parametrize("side", ["long", "short"])
def test_near_liquidation_passes_just_inside_and_at_lower_leverage(side):
    signal = make_signal(side=side)
    inside = make_quote(bid=None, ask=None, atr=2_520.0)  # stop 6.3 %: 9.45 % < 9.5 %
    assert decide(signal, inside).action == "open"
    far = make_quote(bid=None, ask=None, atr=2_800.0)
    assert decide(signal, far, cvar_max_lev=2.0).action == "open"  # liq 49.5 % away
    off = changed(PARAMS, controls__near_liquidation__enabled=False)
    assert decide(signal, far, params=off).action == "open"


# ------------------------------------------------------------------ funding and edge


def test_funding_paid_by_a_long_can_sink_the_edge():
    d = decide(quote=make_quote(funding_rate=0.0001))
    assert d.funding_cost_bps == pytest.approx(4.0)
    assert d.expected_edge_bps == pytest.approx(30.0 - 13.0 - 4.0)
    assert d.action == "open"
    d = decide(quote=make_quote(funding_rate=0.0005))
    assert d.funding_cost_bps == pytest.approx(20.0)
    assert d.drop_reason == "edge_below_min"
    assert d.qty == 0.0


def test_funding_a_short_receives_is_not_edge_but_funding_it_pays_is_cost():
    short = make_signal(side="short")
    receives = decide(short, make_quote(funding_rate=0.0005))
    assert receives.funding_cost_bps == 0.0
    assert receives.expected_edge_bps == pytest.approx(17.0)
    assert receives.action == "open"
    pays = decide(short, make_quote(funding_rate=-0.0005))
    assert pays.drop_reason == "edge_below_min"


def test_weak_signal_edge_below_min():
    params = changed(PARAMS, sizing__min_edge_bps=5.0)
    d = decide(make_signal(severity=40), params=params)  # 20 - 13 = 7 bps
    assert d.action == "open"
    d = decide(make_signal(severity=40), make_quote(funding_rate=0.0001), params=params)
    assert d.drop_reason == "edge_below_min"  # 7 - 4 = 3 bps


# ------------------------------------------------------------------ gates surface as drops


def _state_after(pnls: list[float]) -> RiskState:
    state = ready_state()
    for i, pnl in enumerate(pnls):
        state, _ = on_close(state, make_closed(pnl, READY - 10 * MINUTE_MS + i), PARAMS)
    return state


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (_state_after([-600.0]), "hard_stop"),
        (_state_after([-310.0]), "daily_cap"),
        (_state_after([-10.0, -10.0, -10.0, -10.0]), "streak_halt"),
        (on_minute(RiskState.initial(PARAMS), READY - 5 * MINUTE_MS, PARAMS)[0], "warmup"),
        (on_control(ready_state(), {"level": "CRIT", "at_ms": READY}, PARAMS)[0], "fail_safe"),
    ],
)
def test_each_gate_reason_is_a_drop_with_the_overlays_recorded(state, reason):
    d = decide(state=state, hrp_scale=0.7, cvar_max_lev=2.0, cvar_samples=9)
    assert d.action == "drop"
    assert d.drop_reason == reason
    assert d.qty == 0.0
    assert d.price is None
    assert d.hrp_scale == 0.7
    assert d.cvar_samples == 9
    assert d.pills == (PILL_HRP,)  # nothing was sized: the CVaR cap cut nothing


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"open_symbols": {"BTC"}}, "already_open"),
        ({"no_quote": True}, "no_price"),
        ({"quote": make_quote(bid=None, ask=None, close=0.0)}, "no_price"),
        ({"free_balance": 199.0}, "min_free_balance"),
        ({"cvar_max_lev": 0.0}, "cvar_cap_zero"),
        ({"cvar_max_lev": math.nan}, "cvar_cap_zero"),
    ],
)
def test_pre_sizing_drops(kw, reason):
    d = decide(**kw)
    assert d.action == "drop"
    assert d.drop_reason == reason
    assert d.qty == 0.0


def test_decision_minute_defaults_to_the_signal_and_can_be_given():
    assert decide().minute_ms == READY
    later = READY + 3 * MINUTE_MS
    assert decide(minute_ms=later).minute_ms == later
    # the gate reads the given minute: 5 minutes after the start is still warm-up
    assert decide(minute_ms=T0 + 5 * MINUTE_MS).drop_reason == "warmup"


# ------------------------------------------------------------------ json and determinism


@pytest.mark.parametrize(
    "d",
    [
        decide(hrp_scale=0.7, cvar_max_lev=2.0, quote=make_quote(funding_rate=0.0001)),
        decide(free_balance=10.0),
    ],
)
def test_decision_json_round_trip(d):
    data = json.loads(json.dumps(d.to_json()))
    assert isinstance(data["pills"], list)
    assert Decision.from_json(data) == d


def test_same_inputs_give_the_same_decision():
    assert decide(hrp_scale=0.8).to_json() == decide(hrp_scale=0.8).to_json()
