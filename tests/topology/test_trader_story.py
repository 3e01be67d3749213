"""The spec 000 golden path through the downstream stage, in-process (tests/kit/trading.py).

Crowded L1 longs are scaled down by the HRP budget, a loss streak halts trading for the
cooldown, gapped stops worsen the CVaR and cap the leverage, a hard stop emits one kill switch
and cancels every working order. Replays and restarts give the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest

from processors.downstream.hrp import cluster_scale
from processors.downstream.sizing import PILL_CVAR, PILL_HRP
from tests.kit.trading import DAY2, L1, PARTITIONS, STORY, story, story_policy
from topology.trader_driver import TraderDriver

POLICY = story_policy()


def _minute(value: dict[str, Any]) -> int:
    return (int(value["minute_ms"]) - DAY2) // 60_000


@pytest.fixture(scope="module")
def run() -> TraderDriver:
    d = TraderDriver(POLICY, PARTITIONS, flush_every=50)
    d.pipe_all(story())
    return d


def _decisions(run: TraderDriver, symbol: str | None = None) -> list[dict[str, Any]]:
    return [v for v in run.values("sizing.decisions.v0") if symbol is None or v["symbol"] == symbol]


def test_the_day_starts_with_an_hrp_budget_from_the_hourly_closes(run):
    lines = {v["cluster"]: v for v in run.values("hrp.budget.v0")}
    assert sorted(lines) == ["l1", "majors", "memes"]
    assert {v["date"] for v in lines.values()} == {"2025-07-02"}
    assert all(v["n_returns"] >= POLICY.hrp.min_history_h for v in lines.values())
    assert sum(v["weight"] for v in lines.values()) == pytest.approx(1.0)
    assert lines["l1"]["max_equity_risk_pct"] == pytest.approx(
        lines["l1"]["weight"] * POLICY.hrp.target_risk_budget_pct
    )


def test_crowded_l1_longs_are_sized_at_the_reduced_scale_with_the_pill(run):
    crowd = [v for v in _decisions(run) if v["symbol"] in L1 and _minute(v) < STORY["streak"]]
    opened = [v for v in crowd if v["action"] == "open"]
    assert [v["symbol"] for v in opened] == list(L1)
    scales = [v["hrp_scale"] for v in opened]
    assert scales[0] == 1.0
    assert scales == sorted(scales, reverse=True)
    assert scales[-1] < 1.0
    budget = next(v for v in run.values("hrp.budget.v0") if v["cluster"] == "l1")
    held = 0.0
    for v in opened:
        want = cluster_scale(held, budget["max_equity_risk_pct"], POLICY.hrp.min_scale)
        assert v["hrp_scale"] == pytest.approx(want)
        assert v["risk_pct"] == pytest.approx(POLICY.sizing.risk_pct * v["hrp_scale"])
        assert (PILL_HRP in v["pills"]) == (v["hrp_scale"] < 1.0)
        assert v["hrp_budget_date"] == "2025-07-02"
        assert v["hrp_budget_version"] == budget["version"]
        held += v["risk_pct"]
    assert [v["drop_reason"] for v in crowd if v["action"] == "drop"] == ["already_open"]


def test_a_loss_streak_halts_trading_for_the_cooldown(run):
    closed = [v["closed"] for v in run.values("trade.adjust.v0") if v["kind"] == "closed"]
    streak = [c for c in closed if (c["closed_ms"] - DAY2) // 60_000 == STORY["streak"]]
    assert len(streak) == len(L1) >= POLICY.controls.loss_streak_max
    assert all(c["pnl_usd"] < 0 and c["reason"] == "stop" for c in streak)
    halted = [v for v in _decisions(run, "ETH") if _minute(v) == STORY["halted_signal"]]
    assert [v["drop_reason"] for v in halted] == ["streak_halt"]
    first_btc = _decisions(run, "BTC")[0]
    cooldown_end = STORY["streak"] + POLICY.controls.session_cooldown_minutes
    assert _minute(first_btc) >= cooldown_end
    assert first_btc["action"] == "open"  # trading resumed after the cooldown


def test_gapped_stops_worsen_the_cvar_and_cap_the_leverage_with_the_pill(run):
    btc = [v for v in _decisions(run, "BTC") if v["action"] == "open"]
    assert len(btc) == 4
    caps = [v["cvar_cap_max_lev"] for v in btc]
    assert caps == sorted(caps, reverse=True)
    assert caps[-1] < caps[0]
    assert [v["cvar_samples"] for v in btc] == [0, 1, 2, 3]
    assert PILL_CVAR not in btc[0]["pills"]
    assert all(PILL_CVAR in v["pills"] for v in btc[1:])
    assert all(v["leverage"] == v["cvar_cap_max_lev"] for v in btc)
    cvar = [v for v in run.values("cvar.caps.v0") if v["symbol"] == "BTC"]
    assert [v["n_samples"] for v in cvar] == [1, 2, 3]
    assert cvar[0]["cvar_r"] > cvar[-1]["cvar_r"]  # more negative: a fatter tail


def test_a_hard_stop_emits_one_kill_switch_and_cancels_every_working_order(run):
    controls = run.values("control.v0")
    kills = [v for v in controls if v["kind"] == "kill_switch"]
    assert len(kills) == 1
    assert kills[0]["kill_switch"]["reason"] == "max_loss"
    at = kills[0]["kill_switch"]["at_ms"]
    cancelled = [v for v in run.values("orders.v0") if v["status"] == "cancelled"]
    assert sorted(v["symbol"] for v in cancelled if v["reason"] == "kill_switch") == [
        "ADA",
        "SUI",
    ]
    entries = {}
    for v in run.values("orders.v0"):
        if v["kind"] == "entry":
            entries[v["order_id"]] = v
    assert not [v for v in entries.values() if v["status"] == "open"]  # none left working
    after = [v for v in _decisions(run) if v["minute_ms"] > at]
    assert after
    assert {v["drop_reason"] for v in after} == {"hard_stop"}
    last = run.values("risk.state.v0")[-1]
    assert last["hard_stopped"] is True
    assert last["kill_switch_emitted"] is True
    assert last["realised_pnl_day_usd"] <= -POLICY.controls.hard_stop_loss_usd


def test_every_fill_belongs_to_an_order_that_filled_once(run):
    fills = run.values("fills.v0")
    assert len({f["fill_id"] for f in fills}) == len(fills)
    filled = {v["order_id"] for v in run.values("orders.v0") if v["status"] == "filled"}
    assert {f["order_id"] for f in fills} == filled


def test_replays_and_restarts_give_the_same_bytes(run):
    values = list(story())
    again = TraderDriver(POLICY, PARTITIONS, flush_every=1)
    again.pipe_all(values)
    restarted = TraderDriver(POLICY, PARTITIONS, flush_every=7)
    for i, v in enumerate(values):
        restarted.pipe(v)
        if i % 97 == 0:
            restarted.restart()
    want = [(s.topic, s.partition, s.key, s.data) for s in run.outputs]
    assert [(s.topic, s.partition, s.key, s.data) for s in again.outputs] == want
    assert [(s.topic, s.partition, s.key, s.data) for s in restarted.outputs] == want
