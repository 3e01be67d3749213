"""Alerts, bad input and metrics of the downstream stage (fail-safe: spec 001 "Resilience")."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from processors.downstream.trader import BadTradeIn, TraderProcessor
from schemas.errors import AlphaError
from state.memory import MemoryStore
from tests.kit.trading import DAY2, PARTITIONS, Market, reports, signal, story_policy
from topology.trader_cli import alert_record
from topology.trader_driver import TraderDriver
from topology.trader_worker import export

POLICY = story_policy()
MIN = 60_000


def _minute(d: TraderDriver, market: Market, t: int, *symbols: str) -> None:
    quotes = [market.quote(s) for s in ("BTC", "ETH", "DOGE")]
    d.pipe_all(reports(t, quotes, [signal(s, t) for s in symbols]))


def test_a_crit_alert_pauses_entries_for_the_cooldown_with_mode_switches():
    d = TraderDriver(POLICY, PARTITIONS)
    market = Market()
    start = DAY2
    warm = POLICY.controls.warmup_minutes
    for m in range(warm + 1):
        _minute(d, market, start + m * MIN)
    t0 = start + (warm + 1) * MIN
    d.pipe(alert_record("CRIT", "venue down", t0))
    _minute(d, market, t0, "BTC")
    cooldown = POLICY.controls.fail_safe.cooldown_minutes
    for m in range(1, cooldown + 2):
        _minute(d, market, t0 + m * MIN)
    _minute(d, market, t0 + (cooldown + 2) * MIN, "ETH")
    decisions = d.values("sizing.decisions.v0")
    assert [(v["symbol"], v["drop_reason"]) for v in decisions] == [
        ("BTC", "fail_safe"),
        ("ETH", None),
    ]
    switches = [v["mode_switch"] for v in d.values("control.v0") if v["kind"] == "mode_switch"]
    assert [(s["from_mode"], s["to_mode"]) for s in switches] == [
        ("paper", "fail_safe"),
        ("fail_safe", "paper"),
    ]
    assert switches[0]["reason"] == "venue down"
    assert not [v for v in d.values("control.v0") if v["kind"] == "kill_switch"]


def test_alerts_are_validated_before_they_are_written():
    with pytest.raises(AlphaError, match="level"):
        alert_record("PANIC", "x", 0)
    with pytest.raises(AlphaError, match="reason"):
        alert_record("CRIT", " ", 0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"partitions": 3}, "reports 3 lattice partitions"),
        ({"partition": PARTITIONS}, "outside"),
        ({"partition": -2}, "outside"),
        ({"alerts": [{"level": "CRIT", "reason": "r"}]}, "malformed"),
        ({"quotes": [{"symbol": "X"}]}, "malformed"),
        ({"signals": [{"event_id": "e"}]}, "malformed"),
    ],
)
def test_a_bad_record_raises_without_changing_state(change, match):
    store = MemoryStore("trade.state.v1")
    proc = TraderProcessor(POLICY, store, PARTITIONS)
    good = next(iter(reports(DAY2, [Market().quote("BTC")], [])))
    with pytest.raises(BadTradeIn, match=match):
        proc.step({**good, **change})
    proc.flush()
    assert store.get(b"core") is None or b'"pending":{}' in (store.get(b"core") or b"")


def test_metrics_are_exported_under_the_spec_names():
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("alpha_streak_halt_total"), value("alpha_trades_opened_total", route="canary")
    export({"streak_halt_total": 2, 'trades_opened_total{route="canary"}': 3, "minutes": 1})
    assert value("alpha_streak_halt_total") == before[0] + 2
    assert value("alpha_trades_opened_total", route="canary") == before[1] + 3


def test_resume_lifts_a_hard_stop_and_the_next_day_trades_again():
    from processors.downstream.types import DAY_MS
    from tests.kit.trading import STORY, story

    d = TraderDriver(POLICY, PARTITIONS, flush_every=100)
    d.pipe_all(story())
    assert d.values("risk.state.v0")[-1]["hard_stopped"] is True
    market = Market()
    t = DAY2 + (STORY["crash"] + 40) * MIN
    d.pipe(alert_record("RESUME", "risk desk checked the book", t))
    _minute(d, market, t, "BTC")
    tomorrow = DAY2 + DAY_MS + 60 * MIN
    _minute(d, market, tomorrow, "ETH")
    switches = [v["mode_switch"] for v in d.values("control.v0") if v["kind"] == "mode_switch"]
    assert [(s["from_mode"], s["reason"]) for s in switches] == [
        ("hard_stop", "risk desk checked the book")
    ]
    last = [v for v in d.values("sizing.decisions.v0") if v["minute_ms"] >= t]
    # the same day the daily loss cap still holds; the next day trades again
    assert [(v["symbol"], v["drop_reason"]) for v in last] == [("BTC", "daily_cap"), ("ETH", None)]
    assert d.values("risk.state.v0")[-1]["hard_stopped"] is False
    d.pipe(alert_record("RESUME", "again", tomorrow + MIN))  # nothing to lift: ignored
    _minute(d, market, tomorrow + 2 * MIN)
    assert len([v for v in d.values("control.v0") if v["kind"] == "mode_switch"]) == 1


def test_the_sizing_api_answers_with_the_latest_cap_of_a_key_or_the_prior():
    import json

    from topology.sizing_api import answer

    caps = {"BTC|1m": {"symbol": "BTC", "tf": "1m", "cvar_r": -3.0, "n_samples": 3}}
    body = {"equity": 10_000, "price": 60_000, "sl_kATR": 1.5, "atr": 600, "alpha": 0.95}
    status, capped = answer(
        json.dumps({**body, "symbol": "BTC", "tf": "1m"}).encode(), caps, POLICY
    )
    assert status == 200
    assert (capped["source"], capped["cvar_r"], capped["n_samples"]) == ("cvar.caps.v0", -3.0, 3)
    status, prior = answer(json.dumps({**body, "symbol": "ETH", "tf": "1m"}).encode(), caps, POLICY)
    assert (status, prior["source"], prior["cvar_r"]) == (200, "prior", POLICY.cvar.prior_cvar_r)
    assert capped["max_lev"] < prior["max_lev"]  # a fatter tail allows less leverage
    budget = 10_000 * POLICY.cvar.risk_budget_per_trade_pct
    assert capped["max_size"] * 1.5 * 600 * 3.0 == pytest.approx(budget, rel=1e-9)
    assert answer(b"{", caps, POLICY)[0] == 400
    status, error = answer(json.dumps({"equity": -1}).encode(), caps, POLICY)
    assert status == 400
    assert "equity" in error["error"]
    assert "price" in error["error"]
