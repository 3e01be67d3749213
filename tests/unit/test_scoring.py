"""The §10 scoring and emission model: hand-computed severities, novelty, debounce, coalescing,
budgets, the global cap, penalties and tiers; the §10.9 worked example gives 96."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.detector import DetectorPack, detector_id, load_detector_pack
from processors.detect.scoring import (
    Emission,
    KeyState,
    Scorer,
    ScorerState,
    novelty_boost,
    severity,
    sigmoid,
)
from processors.detect.types import REASONS, Trigger
from tests.kit.packs import changed

PACK = load_detector_pack()
SCORER = Scorer(PACK)
TS = 1_756_891_800_000
EMPTY = ScorerState()
_CLASS = {"vol_spike_m_1": "spike", "price_spike_up_m_1": "spike", "price_spike_down_m_1": "spike",
          "oi_spike_up_m_5": "spike", "spread_stress_m_1": "shift", "funding_jolt_h_1": "shift",
          "price_up_oi_up_m_5": "quadrant", "basket_shock_dt_5s": "synchrony"}  # fmt: skip


def trig(subtype: str = "vol_spike_m_1", **kw: Any) -> Trigger:
    """The §10.9 trigger by default: primary 3.6 clamped to 3.2, secondary 2.1, breadth 4/6."""
    base: dict[str, Any] = {
        "detector_id": detector_id(subtype), "event_class": _CLASS[subtype], "subtype": subtype,
        "tf": "1h" if subtype == "funding_jolt_h_1" else "1m", "window_sec": 60, "asset_uid": 101,
        "symbol": "BTC", "exchange_ts": TS, "primary_z": 3.6, "primary_bounds": (-3.0, 3.2),
        "secondary_z": (2.1,), "breadth": 4 / 6,
    }  # fmt: skip
    return Trigger(**(base | kw))


def run(*triggers: Trigger, state: ScorerState = EMPTY, scorer: Scorer = SCORER):
    return scorer.step(state, list(triggers))


def sev_of(*triggers: Trigger, state: ScorerState = EMPTY) -> list[int]:
    return [e.severity for e in run(*triggers, state=state)[1].emissions]


def why(*triggers: Trigger, state: ScorerState = EMPTY) -> list[tuple[str, str]]:
    return [(s.trigger.subtype, s.reason) for s in run(*triggers, state=state)[1].suppressions]


def pack_with(**changes: Any) -> DetectorPack:
    return changed(PACK, **changes)


def emitted(key_state: KeyState, key: str = "BTC:spike:1m") -> ScorerState:
    return ScorerState(keys=((key, key_state),))


LAST = KeyState(
    last_emit_ts=TS, last_severity=96, last_subtype="vol_spike_m_1",
    cooldown_until_ts=TS + 45_000, first_seen_at=TS,
)  # fmt: skip


# ---------------------------------------------------------------- §10.9


def test_worked_example_reproduces_severity_96():
    state, result = run(trig())
    assert result.suppressions == ()
    (e,) = result.emissions
    assert e == Emission(trig(), 96, TS, "BTC:spike:1m", (), "first")
    # core = 1.0 * 3.2 + 0.5 * 2.1 + 0.4 * 4/6 = 4.5167; raw = core + 0.8; 100 sigmoid(0.6 raw)
    assert 100 * sigmoid(0.6 * (3.2 + 1.05 + 0.4 * 4 / 6 + 0.8)) == pytest.approx(96.0456, abs=1e-4)
    # "Emit, set cooldown=45s, store last_severity=96."
    assert dict(state.keys) == {"BTC:spike:1m": LAST}


# ---------------------------------------------------------------- severity kernel


def test_iqr_clamp_applies_to_scoring_only():
    assert sev_of(trig(primary_bounds=None)) == [97]  # 3.6 unclamped
    assert sev_of(trig(primary_z=50.0)) == [96]  # clamped to 3.2 like 3.6
    t = trig(secondary_z=(2.1,), secondary_bounds=((-1.0, 1.0),))
    assert sev_of(t) == sev_of(trig(secondary_z=(1.0,)))


def test_secondary_is_the_strongest_and_never_negative():
    assert sev_of(trig(secondary_z=(-4.0,))) == sev_of(trig(secondary_z=()))
    assert sev_of(trig(secondary_z=(0.5, 2.1, 1.0))) == [96]


def test_quality_penalties_subtract_before_the_sigmoid():
    assert sev_of(trig(dq_penalty=1.0)) == [94]  # raw - 0.6
    assert sev_of(trig(dq_penalty=1.0, illiquidity_penalty=1.0)) == [93]  # raw - 0.9


def test_class_weights_come_from_the_lut():
    t = trig("spread_stress_m_1", primary_z=2.4, primary_bounds=None, secondary_z=(), breadth=0.0)
    # shift: 100 sigmoid(0.55 (0.7 * 2.4 + 0.8)) = 79.6
    assert sev_of(t) == [80]
    policy = PACK.resolve("spread_stress_m_1", "mid")
    assert severity(t, 0.0, policy, PACK) == 72  # without novelty


def test_novelty_boost_kernel():
    assert novelty_boost(0.8, None, 120, 0.8) == 0.8
    assert novelty_boost(0.8, 60_000, 120, 0.8) == pytest.approx(0.8 * math.exp(-0.5))
    assert novelty_boost(0.8, None, 120, 0.5) == 0.5
    assert sigmoid(-800) == 0.0
    assert sigmoid(800) == 1.0


# ---------------------------------------------------------------- novelty and debounce


def test_after_cooldown_novelty_decays_with_time_since_last_emission():
    state, _ = run(trig())
    _, result = run(trig(exchange_ts=TS + 60_000), state=state)
    (e,) = result.emissions
    # novelty 0.8 exp(-60/120) = 0.485 -> 100 sigmoid(0.6 (4.5167 + 0.485)) = 95.3
    assert (e.severity, e.cause, e.first_seen_at) == (95, "after_cooldown", TS)


def test_a_silent_key_starts_a_new_episode():
    near = emitted(
        replace(LAST, last_emit_ts=TS - 500_000, cooldown_until_ts=TS - 455_000, first_seen_at=0)
    )
    (e,) = run(trig(), state=near)[1].emissions
    assert (e.severity, e.cause, e.first_seen_at) == (94, "after_cooldown", 0)  # same episode
    far = emitted(replace(LAST, last_emit_ts=TS - 601_000, cooldown_until_ts=TS - 556_000))
    (e,) = run(trig(), state=far)[1].emissions  # 601 s > 5 half-lives of 120 s
    assert (e.severity, e.cause, e.first_seen_at) == (96, "first", TS)


def test_within_cooldown_the_same_subtype_is_suppressed():
    state = emitted(LAST)
    assert why(trig(exchange_ts=TS + 30_000), state=state) == [("vol_spike_m_1", "cooldown")]
    new_state, _ = run(trig(exchange_ts=TS + 30_000), state=state)
    assert dict(new_state.keys)["BTC:spike:1m"] == LAST  # a suppression changes nothing


def test_reemit_at_plus_30_percent_within_cooldown():
    # novelty at 30 s: 0.8 exp(-0.25) = 0.623; primary 0.4 alone: 100 sigmoid(0.6 * 1.023) = 64.9
    low = trig(exchange_ts=TS + 30_000, primary_z=0.4, secondary_z=(), breadth=0.0)
    assert severity(low, 0.8 * math.exp(-0.25), PACK.resolve("vol_spike_m_1", "mid"), PACK) == 65
    at_50 = emitted(replace(LAST, last_severity=50))
    (e,) = run(low, state=at_50)[1].emissions  # 65 >= 50 * 1.3 (= 65.00000000000001)
    assert (e.severity, e.cause, e.first_seen_at) == (65, "reemit_gain", TS)
    assert why(low, state=emitted(replace(LAST, last_severity=51))) == [
        ("vol_spike_m_1", "cooldown")
    ]
    state, _ = run(low, state=at_50)
    assert dict(state.keys)["BTC:spike:1m"].cooldown_until_ts == TS + 75_000  # restarted


def test_subtype_change_emits_immediately_with_novelty_reset():
    t = trig("price_spike_down_m_1", exchange_ts=TS + 10_000)
    (e,) = run(t, state=emitted(LAST))[1].emissions
    assert (e.severity, e.cause, e.first_seen_at) == (96, "subtype_change", TS + 10_000)


def test_below_the_class_threshold_is_suppressed():
    t = trig(primary_z=0.1, secondary_z=(), breadth=0.0, dq_penalty=1.0)  # 100 sigmoid(0.18) = 54
    state, result = run(t)
    assert result.emissions == ()
    assert why(t) == [("vol_spike_m_1", "below_threshold")]
    assert state == EMPTY


def test_per_detector_cooldown_overrides_the_class():
    oi = trig("oi_spike_up_m_5", primary_bounds=None)
    state, _ = run(oi)
    assert dict(state.keys)["BTC:spike:1m"].cooldown_until_ts == TS + 60_000  # B.1: 60 s
    assert why(replace(oi, exchange_ts=TS + 50_000), state=state) == [
        ("oi_spike_up_m_5", "cooldown")
    ]


def test_one_batch_spanning_minutes_is_processed_in_time_order():
    _state, result = run(trig(exchange_ts=TS + 60_000), trig())
    assert [(e.trigger.exchange_ts, e.severity, e.cause) for e in result.emissions] == [
        (TS, 96, "first"), (TS + 60_000, 95, "after_cooldown"),
    ]  # fmt: skip


# ---------------------------------------------------------------- coalescing


def test_same_key_within_1s_coalesces_into_the_strongest():
    vol = trig()
    price = trig("price_spike_up_m_1", primary_z=2.6, primary_bounds=None, exchange_ts=TS + 1000)
    _, result = run(price, vol)
    (e,) = result.emissions
    assert (e.trigger, e.coalesced) == (vol, ("price_spike_up_m_1",))
    assert why(price, vol) == [("price_spike_up_m_1", "coalesced")]


def test_coalescing_stops_at_the_window_class_and_tf():
    vol = trig()
    late = trig("price_spike_up_m_1", primary_z=2.6, primary_bounds=None, exchange_ts=TS + 1001)
    _, result = run(vol, late)
    assert [(e.trigger.subtype, e.cause) for e in result.emissions] == [
        ("vol_spike_m_1", "first"), ("price_spike_up_m_1", "subtype_change"),
    ]  # fmt: skip
    spread = trig("spread_stress_m_1", primary_z=2.4, primary_bounds=None)
    funding = trig("funding_jolt_h_1", primary_z=1.2, primary_bounds=None)
    keys = [e.debounce_key for e in run(vol, spread, funding)[1].emissions]
    assert sorted(keys) == ["BTC:shift:1h", "BTC:shift:1m", "BTC:spike:1m"]


# ---------------------------------------------------------------- budgets and cap


def _alternating(n: int, **kw: Any) -> list[Trigger]:
    subs = ("vol_spike_m_1", "price_spike_up_m_1")
    return [trig(subs[i % 2], exchange_ts=TS + 2000 * i, **kw) for i in range(n)]


def test_class_budget_per_symbol_per_minute():
    _, result = run(*_alternating(5))  # subtype changes bypass the cooldown, not the budget
    assert len(result.emissions) == 4
    assert [(s.trigger.exchange_ts, s.reason) for s in result.suppressions] == [
        (TS + 8000, "budget_class")
    ]


def test_class_budget_counts_across_steps_and_resets_next_minute():
    state, first = run(*_alternating(4))
    assert len(first.emissions) == 4
    extra = trig("vol_spike_m_1", exchange_ts=TS + 20_000, primary_z=9.0, primary_bounds=None)
    state2, _ = run(replace(extra, subtype="price_spike_down_m_1"), state=state)
    assert why(replace(extra, subtype="price_spike_down_m_1"), state=state) == [
        ("price_spike_down_m_1", "budget_class")
    ]
    next_minute = trig("price_spike_down_m_1", exchange_ts=TS + 60_000)
    assert len(run(next_minute, state=state2)[1].emissions) == 1


def test_tail_tier_spike_budget_is_two():
    _, result = run(*_alternating(3, tier="tail"))
    assert len(result.emissions) == 2
    assert [s.reason for s in result.suppressions] == ["budget_class"]


def test_global_cap_drops_lowest_severity_but_keeps_every_class():
    scorer = Scorer(pack_with(global_cap_per_min=3))
    spikes = [
        trig(symbol=s, asset_uid=i, primary_z=z, primary_bounds=None)
        for i, (s, z) in enumerate([("AAA", 4.0), ("BBB", 3.5), ("CCC", 3.2), ("DDD", 3.1)])
    ]
    quad = trig("price_up_oi_up_m_5", symbol="EEE", asset_uid=9, primary_z=1.1,
                primary_bounds=None, secondary_z=(1.0,))  # fmt: skip
    state, result = run(*spikes, quad, scorer=scorer)
    assert quad.event_class == "quadrant"
    sev = {e.trigger.symbol: e.severity for e in result.emissions}
    assert set(sev) == {"AAA", "BBB", "EEE"}
    assert sev["EEE"] < min(sev["AAA"], sev["BBB"])  # kept for class diversity
    assert sorted((s.trigger.symbol, s.reason) for s in result.suppressions) == [
        ("CCC", "global_cap"), ("DDD", "global_cap"),
    ]  # fmt: skip
    later = trig(symbol="FFF", asset_uid=20, exchange_ts=TS + 5000, primary_z=9.0)
    _, result = run(later, state=state, scorer=scorer)
    assert [s.reason for s in result.suppressions] == ["global_cap"]  # the minute is full


def test_global_cap_smaller_than_the_class_count_keeps_the_strongest():
    scorer = Scorer(pack_with(global_cap_per_min=1))
    spike = trig(symbol="AAA", asset_uid=1)
    quad = trig("price_up_oi_up_m_5", symbol="BBB", asset_uid=2, primary_z=1.1, primary_bounds=None)
    _, result = run(quad, spike, scorer=scorer)
    assert [e.trigger.symbol for e in result.emissions] == ["AAA"]


def test_kill_switch_suppresses_everything():
    scorer = Scorer(pack_with(emit_events=False))
    state, result = run(trig(), scorer=scorer)
    assert (state, result.emissions, [s.reason for s in result.suppressions]) == (
        EMPTY, (), ["emit_disabled"],
    )  # fmt: skip


# ---------------------------------------------------------------- state


def test_state_round_trips_through_json():
    state, _ = run(*_alternating(3), trig("spread_stress_m_1", primary_z=2.4))
    data = json.loads(json.dumps(state.to_state()))
    assert ScorerState.from_state(data) == state
    with pytest.raises(ValueError, match="version"):
        ScorerState.from_state(data | {"v": 2})


def test_pruning_forgets_only_what_cannot_matter():
    state, _ = run(trig())
    far = TS + PACK.memory_ms() + 60_000
    pruned, _result = run(trig("spread_stress_m_1", exchange_ts=far, primary_z=2.4), state=state)
    assert [k for k, _s in pruned.keys] == ["BTC:shift:1m"]
    assert all(m >= far - 120_000 for m, *_rest in pruned.class_counts)
    assert (
        run(trig(exchange_ts=far + 60_000), state=pruned)[1]
        == run(trig(exchange_ts=far + 60_000), state=state)[1]
    )


@pytest.mark.parametrize("subtype", ["vol_spike_m_1", "price_spike_up_m_1"])
def test_a_key_past_its_memory_behaves_as_never_seen(subtype):
    late = trig(subtype, exchange_ts=TS + PACK.memory_ms())
    assert run(late, state=emitted(LAST)) == run(late)


def test_reasons_are_a_fixed_vocabulary():
    assert set(REASONS) >= {"below_threshold", "cooldown", "budget_class", "global_cap", "gated_dq"}
    assert len(REASONS) == len(set(REASONS))


# ---------------------------------------------------------------- properties

_POOL = [
    trig(), trig("price_spike_up_m_1", primary_z=2.7), trig("spread_stress_m_1", primary_z=2.4),
    trig(symbol="ETH", asset_uid=2, primary_z=3.1), trig("funding_jolt_h_1", primary_z=1.2),
    trig("price_up_oi_up_m_5", symbol="SOL", asset_uid=3, primary_z=1.5),
    trig(symbol="SOL", asset_uid=3, primary_z=0.2, secondary_z=()),
    trig("basket_shock_dt_5s", primary_z=1.0, breadth=1.0),
]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.permutations(_POOL), st.integers(1, 8))
def test_output_does_not_depend_on_input_order(shuffled, cap):
    scorer = Scorer(pack_with(global_cap_per_min=cap))
    assert scorer.step(LAST_STATE, shuffled) == scorer.step(LAST_STATE, list(_POOL))


LAST_STATE = emitted(replace(LAST, last_emit_ts=TS - 20_000, cooldown_until_ts=TS + 25_000))


@settings(max_examples=200, deadline=None)
@given(
    z1=st.floats(-50, 50), z2=st.floats(-50, 50), sec=st.floats(-50, 50),
    breadth=st.floats(0, 1), novelty=st.floats(0, 0.8), dq=st.sampled_from([0.0, 1.0]),
    subtype=st.sampled_from(sorted(_CLASS)),
)  # fmt: skip
def test_severity_is_monotone_in_primary_and_within_0_100(
    z1, z2, sec, breadth, novelty, dq, subtype
):
    lo, hi = sorted((z1, z2))
    policy = PACK.resolve(subtype, "mid")
    a = trig(subtype, primary_z=lo, secondary_z=(sec,), breadth=breadth, dq_penalty=dq)
    b = replace(a, primary_z=hi)
    s_lo, s_hi = severity(a, novelty, policy, PACK), severity(b, novelty, policy, PACK)
    assert 0 <= s_lo <= s_hi <= 100
