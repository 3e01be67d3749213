"""The portfolio risk state machine: caps, streaks, hard stops, fail-safe, warm-up, backpressure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from packs.risk import RiskPolicy, load_risk_policy
from processors.downstream.risk import (
    FAIL_SAFE,
    PAPER,
    KillSwitch,
    ModeSwitch,
    RiskOutputs,
    RiskState,
    apply_backpressure,
    clear_hard_stop,
    drop_metrics,
    gate,
    metric_key,
    on_cancel,
    on_close,
    on_control,
    on_minute,
    parse_metric_key,
    utc_day,
)
from processors.downstream.types import MINUTE_MS, ClosedTrade, Signal
from tests.kit.packs import changed
from tests.kit.trading import btc_trade, closed_trade

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
PARAMS = load_risk_policy()


def make_signal(**kw: Any) -> Signal:
    base: dict[str, Any] = {
        "event_id": "e1",
        "asset_uid": 7,
        "symbol": "BTC",
        "tf": "1m",
        "subtype": "price_spike_up_m_1",
        "severity": 60,
        "exchange_ts": T0 + 60 * MINUTE_MS,
        "side": "long",
    }
    return Signal(**{**base, **kw})


def make_closed(pnl: float, closed_ms: int, **kw: Any) -> ClosedTrade:
    trade = btc_trade(closed_ms - 10 * MINUTE_MS)
    return closed_trade(trade, pnl / 50.0, closed_ms, pnl_usd=pnl, **kw)


def started(params: RiskPolicy = PARAMS, at: int = T0) -> RiskState:
    state, _ = on_minute(RiskState.initial(params), at, params)
    return state


def close_all(
    state: RiskState, pnls: list[float], at: int, params: RiskPolicy = PARAMS
) -> tuple[RiskState, list[RiskOutputs]]:
    outs = []
    for i, pnl in enumerate(pnls):
        state, out = on_close(state, make_closed(pnl, at + i * MINUTE_MS), params)
        outs.append(out)
    return state, outs


READY = T0 + 60 * MINUTE_MS  # past the 30-minute warm-up


# ------------------------------------------------------------------ state and json


def test_initial_state_uses_the_pack_equity_and_paper_mode():
    state = RiskState.initial(PARAMS)
    assert state.equity_usd == state.peak_equity_usd == 10_000.0
    assert state.mode == PAPER
    assert state.started_ms is None


def test_state_json_round_trip_is_exact_and_deterministic():
    state, _ = close_all(started(), [-120.5, 30.25, -400.0], READY)
    state, _ = on_control(state, {"level": "CRIT", "reason": "dq", "at_ms": READY}, PARAMS)
    data = state.to_json()
    text = json.dumps(data, sort_keys=True)
    back = RiskState.from_json(json.loads(text))
    assert back == state
    assert json.dumps(back.to_json(), sort_keys=True) == text
    assert back.counters  # the metric counts survive the round trip


def test_unknown_state_version_is_refused():
    data = started().to_json()
    data["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        RiskState.from_json(data)


def test_metric_keys_sort_labels_and_parse_back():
    key = metric_key("mode_switch_total", to="fail_safe", **{"from": "paper"})
    assert key == 'mode_switch_total{from="paper",to="fail_safe"}'
    assert parse_metric_key(key) == ("mode_switch_total", {"from": "paper", "to": "fail_safe"})
    odd = metric_key("x_total", reason='a"b\\c')
    assert parse_metric_key(odd) == ("x_total", {"reason": 'a"b\\c'})
    assert parse_metric_key("streak_halt_total") == ("streak_halt_total", {})


# ------------------------------------------------------------------ minutes, day, warm-up


def test_first_minute_starts_the_warmup_once():
    state = started(at=T0)
    state, _ = on_minute(state, T0 + 5 * MINUTE_MS, PARAMS)
    assert state.started_ms == T0
    assert state.last_minute_ms == T0 + 5 * MINUTE_MS
    assert state.day == "2026-01-01"


def test_warmup_gate_until_warmup_minutes_after_the_first_minute():
    signal = make_signal()
    assert gate(RiskState.initial(PARAMS), signal, T0, PARAMS) == "warmup"  # nothing seen yet
    state = started(at=T0)
    assert gate(state, signal, T0 + 29 * MINUTE_MS, PARAMS) == "warmup"
    assert gate(state, signal, T0 + 30 * MINUTE_MS, PARAMS) is None
    no_warmup = changed(PARAMS, controls__warmup_minutes=0)
    assert gate(RiskState.initial(no_warmup), signal, T0, no_warmup) is None


def test_utc_day_changes_at_midnight():
    assert utc_day(T0 - 1) == "2025-12-31"
    assert utc_day(T0) == "2026-01-01"


def test_an_earlier_minute_does_not_move_the_day_back():
    state = started(at=T0 + DAY)
    state, _ = on_minute(state, T0 + DAY - MINUTE_MS, PARAMS)
    assert state.day == "2026-01-02"
    assert state.last_minute_ms == T0 + DAY


# ------------------------------------------------------------------ daily cap


def test_daily_cap_halts_for_the_day_and_counts_once():
    state, outs = close_all(started(), [-150.0, -150.0, -10.0], READY)
    assert state.day_halted
    assert state.realised_pnl_day_usd == -310.0
    assert outs[0].metrics == ()
    assert outs[1].metrics == (("daily_cap_trigger_total", 1),)
    assert outs[2].metrics == ()  # already halted: no second trigger
    assert state.counter("daily_cap_trigger_total") == 1
    assert gate(state, make_signal(), READY + 10 * MINUTE_MS, PARAMS) == "daily_cap"


def test_day_rollover_resets_the_daily_cap_but_not_the_streak():
    state, _ = close_all(started(), [-150.0, -150.0], READY)
    state, _ = on_minute(state, T0 + DAY - MINUTE_MS, PARAMS)
    assert state.day_halted  # still the same day
    state, _ = on_minute(state, T0 + DAY, PARAMS)  # the minute ending 00:00 opens the new day
    assert not state.day_halted
    assert state.realised_pnl_day_usd == 0.0
    assert state.loss_streak == 2
    assert gate(state, make_signal(), T0 + DAY, PARAMS) is None


def test_a_stale_day_halt_does_not_block_the_next_day_before_the_rollover():
    state, _ = close_all(started(), [-310.0], READY)
    assert gate(state, make_signal(), READY, PARAMS) == "daily_cap"
    assert gate(state, make_signal(), T0 + DAY, PARAMS) is None


def test_a_close_in_a_new_day_rolls_the_day_first():
    state, _ = close_all(started(), [-310.0], READY)
    state, _ = on_close(state, make_closed(-20.0, T0 + DAY + MINUTE_MS), PARAMS)
    assert state.day == "2026-01-02"
    assert state.realised_pnl_day_usd == -20.0
    assert not state.day_halted
    assert state.equity_usd == 10_000.0 - 330.0


# ------------------------------------------------------------------ loss streak


def test_loss_streak_halts_for_the_cooldown_and_restarts_the_count():
    state, outs = close_all(started(), [-10.0, -10.0, -10.0, -10.0], READY)
    last_close = READY + 3 * MINUTE_MS
    assert outs[3].metrics == (("streak_halt_total", 1),)
    assert state.loss_streak == 0
    assert state.halted_until_ms == last_close + 120 * MINUTE_MS
    assert gate(state, make_signal(), last_close + 119 * MINUTE_MS, PARAMS) == "streak_halt"
    assert gate(state, make_signal(), last_close + 120 * MINUTE_MS, PARAMS) is None


def test_a_win_or_a_scratch_resets_the_streak():
    state, outs = close_all(started(), [-10.0, -10.0, -10.0, 5.0, -10.0], READY)
    assert state.loss_streak == 1
    assert state.halted_until_ms is None
    assert all(out.metrics == () for out in outs)
    state, _ = close_all(state, [0.0], READY + DAY // 2)
    assert state.loss_streak == 0


def test_equity_and_peak_follow_realised_pnl():
    state, _ = close_all(started(), [200.0, -50.0], READY)
    assert state.equity_usd == 10_150.0
    assert state.peak_equity_usd == 10_200.0


# ------------------------------------------------------------------ hard stop and kill switch


def test_hard_stop_on_max_loss_emits_one_kill_switch():
    state, outs = close_all(started(), [-350.0, -260.0, -100.0], READY)
    assert outs[0].records == ()
    assert len(outs[1].records) == 1
    kill = outs[1].records[0]
    assert isinstance(kill, KillSwitch)
    assert kill.reason == "max_loss"
    assert kill.at_ms == READY + MINUTE_MS
    assert kill.detail["realised_pnl_day_usd"] == -610.0
    assert outs[2].records == ()  # a later breach: no second kill switch
    assert state.hard_stopped
    assert state.kill_switch_emitted
    assert state.hard_stop_reason == "max_loss"
    assert state.counter(metric_key("kill_switch_total", reason="max_loss")) == 1
    state, out = on_cancel(state, 10_000, PARAMS)
    assert out.records == ()


def test_hard_stop_on_drawdown_from_the_peak_even_on_a_winning_day():
    params = changed(PARAMS, controls__max_drawdown_pct=0.02)
    state, outs = close_all(started(params), [500.0, -250.0], READY, params)
    assert outs[1].records[0].reason == "max_drawdown"  # 10 250 <= 10 500 * 0.98
    assert state.realised_pnl_day_usd == 250.0
    assert state.hard_stopped


def test_drawdown_breach_fires_on_the_crossing_close():
    params = changed(PARAMS, controls__max_drawdown_pct=0.02)
    state, outs = close_all(started(params), [500.0, -200.0, -20.0], READY, params)
    assert [len(out.records) for out in outs] == [0, 0, 1]  # 10 300 > 10 290, then 10 280
    assert state.hard_stop_reason == "max_drawdown"


def test_hard_stop_survives_the_day_rollover():
    state, _ = close_all(started(), [-600.0], READY)
    state, out = on_minute(state, T0 + 2 * DAY, PARAMS)
    assert out.records == ()
    assert state.hard_stopped
    assert not state.day_halted
    assert gate(state, make_signal(), T0 + 2 * DAY, PARAMS) == "hard_stop"


def test_cancel_budget_overflow_is_a_hard_stop():
    state = started()
    state, out = on_cancel(state, 500, PARAMS)
    assert out.records == ()
    assert not state.hard_stopped
    state, out = on_cancel(state, 0, PARAMS)
    assert state.cancels_day == 500
    assert out.records == ()
    state, out = on_cancel(state, 1, PARAMS)
    assert out.records == (KillSwitch("cancel_budget", T0, {"cancels_day": 501, "budget": 500}),)
    _, out = on_cancel(state, 1, PARAMS, at_ms=T0 + 5)
    assert out.records == ()


def test_cancels_reset_at_rollover():
    state, _ = on_cancel(started(), 400, PARAMS)
    state, _ = on_minute(state, T0 + DAY, PARAMS)
    state, out = on_cancel(state, 400, PARAMS)
    assert state.cancels_day == 400
    assert out.records == ()


def test_clearing_the_hard_stop_rearms_the_kill_switch():
    state, _ = close_all(started(), [-600.0], READY)
    state = clear_hard_stop(state)
    assert not state.hard_stopped
    assert not state.kill_switch_emitted
    state, _ = on_minute(state, T0 + DAY, PARAMS)
    _, outs = close_all(state, [-600.0], T0 + DAY + MINUTE_MS)
    assert len(outs[0].records) == 1


def test_kill_switch_json_round_trip():
    kill = KillSwitch("max_loss", T0, {"equity_usd": 9_400.0, "b": 1})
    data = json.loads(json.dumps(kill.to_json()))
    assert data["kind"] == "kill_switch"
    assert list(data["detail"]) == ["b", "equity_usd"]
    assert KillSwitch.from_json(data) == kill


# ------------------------------------------------------------------ fail-safe


def test_crit_control_starts_the_fail_safe_and_its_end_restores_paper():
    crit = {"level": "CRIT", "reason": "feed_down", "at_ms": READY}
    state, out = on_control(started(), crit, PARAMS)
    assert out.records == (ModeSwitch(PAPER, FAIL_SAFE, "feed_down", READY),)
    assert dict(out.metrics) == {
        'fail_safe_trigger_total{reason="feed_down"}': 1,
        'mode_switch_total{from="paper",to="fail_safe"}': 1,
    }
    assert state.mode == FAIL_SAFE
    assert state.fail_safe_until_ms == READY + 15 * MINUTE_MS
    assert gate(state, make_signal(), READY + 14 * MINUTE_MS, PARAMS) == "fail_safe"
    state, out = on_minute(state, READY + 14 * MINUTE_MS, PARAMS)
    assert out.records == ()
    state, out = on_minute(state, READY + 15 * MINUTE_MS, PARAMS)
    assert out.records == (ModeSwitch(FAIL_SAFE, PAPER, "cooldown_over", READY + 15 * MINUTE_MS),)
    assert state.mode == PAPER
    assert gate(state, make_signal(), READY + 15 * MINUTE_MS, PARAMS) is None
    assert state.counter('mode_switch_total{from="fail_safe",to="paper"}') == 1


def test_a_second_crit_extends_the_fail_safe_without_a_second_switch():
    state, _ = on_control(started(), {"level": "CRIT", "at_ms": READY}, PARAMS)
    later = READY + 10 * MINUTE_MS
    state, out = on_control(state, {"level": "crit", "at_ms": later}, PARAMS)
    assert out.records == ()
    assert out.metrics == (('fail_safe_trigger_total{reason="crit"}', 1),)
    assert state.fail_safe_until_ms == later + 15 * MINUTE_MS
    assert state.counter('fail_safe_trigger_total{reason="crit"}') == 2


@pytest.mark.parametrize(
    ("record", "switch"),
    [
        ({"level": "WARN", "at_ms": READY}, True),
        ({"kind": "kill_switch", "reason": "max_loss", "at_ms": READY, "detail": {}}, True),
        ({"level": "CRIT", "at_ms": READY}, False),
    ],
)
def test_other_control_records_or_a_disabled_fail_safe_change_nothing(record, switch):
    params = changed(PARAMS, controls__fail_safe__switch_to_paper_on_crit=switch)
    state = started(params)
    after, out = on_control(state, record, params)
    assert after == state
    assert out == RiskOutputs()


# ------------------------------------------------------------------ gate order and entry policy


def test_gate_reports_the_most_severe_reason_first():
    state, _ = close_all(started(), [-150.0, -150.0, -150.0, -150.0], READY)
    state, _ = on_control(state, {"level": "CRIT", "at_ms": READY}, PARAMS)
    at = READY + 5 * MINUTE_MS
    assert gate(state, make_signal(), at, PARAMS) == "hard_stop"
    assert gate(clear_hard_stop(state), make_signal(), at, PARAMS) == "fail_safe"


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (make_signal(severity=39), "below_min_severity"),
        (make_signal(tf="1h"), "timeframe_not_traded"),
        (make_signal(severity=40, tf="15m"), None),
    ],
)
def test_gate_applies_the_entry_policy(signal, reason):
    assert gate(started(), signal, READY, PARAMS) == reason


def test_drop_metrics_name_the_spec_counters():
    assert dict(drop_metrics("warmup", "BTC", PARAMS)) == {
        'risk_drop_total{reason="warmup"}': 1,
        'warmup_drop_total{symbol="BTC"}': 1,
    }
    degrade = changed(PARAMS, controls__backpressure__drop_mode="degrade")
    assert dict(drop_metrics("backpressure", "ETH", degrade)) == {
        'backpressure_total{mode="degrade"}': 1,
        'risk_drop_total{reason="backpressure"}': 1,
    }
    assert drop_metrics("daily_cap", "BTC", PARAMS) == (('risk_drop_total{reason="daily_cap"}', 1),)


# ------------------------------------------------------------------ backpressure


def burst(n: int, minute: int = READY) -> list[Signal]:
    severities = [40 + (i * 7) % 50 for i in range(n)]  # distinct, out of order
    return [
        make_signal(event_id=f"e{i:02d}", severity=sev, exchange_ts=minute)
        for i, sev in enumerate(severities)
    ]


def test_halt_keeps_the_highest_severity_and_is_order_independent():
    signals = burst(25)
    kept, dropped = apply_backpressure(signals, PARAMS)
    assert len(kept) == 20
    assert len(dropped) == 5
    assert {reason for _, reason in dropped} == {"backpressure"}
    assert min(s.severity for s in kept) >= max(s.severity for s, _ in dropped)
    assert [s.event_id for s in kept] == [
        s.event_id for s in sorted(signals, key=lambda s: (-s.severity, s.event_id))[:20]
    ]
    assert apply_backpressure(list(reversed(signals)), PARAMS) == (kept, dropped)


def test_halt_breaks_severity_ties_by_event_id():
    signals = [make_signal(event_id=f"e{i}", severity=50) for i in (3, 1, 2)]
    params = changed(PARAMS, controls__backpressure__max_queue_len=2)
    kept, dropped = apply_backpressure(signals, params)
    assert [s.event_id for s in kept] == ["e1", "e2"]
    assert [s.event_id for s, _ in dropped] == ["e3"]


def test_degrade_keeps_only_strong_signals_then_caps():
    params = changed(
        PARAMS,
        controls__backpressure__drop_mode="degrade",
        controls__backpressure__max_queue_len=4,
    )
    signals = [
        make_signal(event_id=f"e{i}", severity=s) for i, s in enumerate([90, 60, 75, 70, 69, 95])
    ]
    kept, dropped = apply_backpressure(signals, params)
    assert [s.severity for s in kept] == [95, 90, 75, 70]
    assert sorted(s.severity for s, _ in dropped) == [60, 69]
    few = signals[:3]  # within the limit: nothing is dropped, weak ones included
    kept, dropped = apply_backpressure(few, params)
    assert len(kept) == 3
    assert dropped == ()


def test_backpressure_counts_each_minute_separately_and_can_be_off():
    signals = burst(15, READY) + burst(15, READY + MINUTE_MS)
    kept, dropped = apply_backpressure(signals, PARAMS)
    assert len(kept) == 30
    assert dropped == ()
    assert [s.exchange_ts for s in kept] == sorted(s.exchange_ts for s in kept)
    off = changed(PARAMS, controls__backpressure__enabled=False)
    kept, dropped = apply_backpressure(burst(40), off)
    assert len(kept) == 40
    assert dropped == ()
