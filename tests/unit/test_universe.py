"""The universe state machine (spec 002 §7): hand-computed minutes, properties, state round trip."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.universe import UniversePolicy, load_universe_policy
from processors.market.universe import Universe, UniverseError, UniverseInput
from tests.kit.packs import changed, merge

T0 = 1_756_900_800_000  # 2025-09-03T12:00:00Z: aligned to the hour
MINUTE_MS = 60_000
BASE = load_universe_policy()


def policy(**changes: Any) -> UniversePolicy:
    """Return the shipped policy with nested ``changes`` merged in (validated)."""
    return changed(BASE, **changes)


#: A small universe: 2 enter after 2 minutes, leave above rank 3 after 2 minutes; one-minute
#: dollar-volume lookback so the rank is the current minute's; no freeze, dwell or churn limit.
SMALL = {
    "n_base": 2,
    "entry_band": {"n_entry": 2, "k_entry": 2},
    "exit_band": {"n_exit": 3, "k_exit": 2},
    "freeze_min": 0,
    "min_dwell_min": 0,
    "scores": {"dv_lookback_min": 1, "oi_lookback_min": 1},
    "churn": {"max_changes_per_hour": 100},
    "hard_exit": {"stale_min": 3, "dead_dv_usd": 10.0},
}


def small(**changes: Any) -> UniversePolicy:
    return policy(**merge(SMALL, changes))


def t(minute: int) -> int:
    return T0 + minute * MINUTE_MS


def inputs(
    volumes: Mapping[int, float],
    oi: Mapping[int, float] | None = None,
    dq: Mapping[int, str] | None = None,
) -> list[UniverseInput]:
    return [
        UniverseInput(
            asset_uid=uid,
            symbol=f"A{uid}",
            dq_status=(dq or {}).get(uid, "ok"),
            dollar_volume=v,
            oi_notional=(oi or {}).get(uid),
        )
        for uid, v in volumes.items()
    ]


def run(
    u: Universe, minutes: range, volumes: Mapping[int, float], **kw: Any
) -> list[dict[str, Any]]:
    audits: list[dict[str, Any]] = []
    for m in minutes:
        audits += u.update(t(m), inputs(volumes, **kw))
    return audits


def members(u: Universe) -> list[int]:
    return sorted(u.members)


# ---------------------------------------------------------------------- ranking (§7.2)
def test_composite_rank_by_hand():
    u = Universe(small(entry_band={"k_entry": 5}))
    u.update(t(0), inputs({1: 100, 2: 200, 3: 300, 4: 50}, oi={1: 1000, 2: 10, 4: 500}))
    # rank_desc(dv): 3->1, 2->2, 1->3, 4->4; rank_desc(oi) over {1, 2, 4}: 1->1, 4->2, 2->3
    # U: 1 = .7*3 + .3*1 = 2.4; 2 = .7*2 + .3*3 = 2.3; 3 (no OI) = 1; 4 = .7*4 + .3*2 = 3.4
    assert u.ranks == {3: 1, 2: 2, 1: 3, 4: 4}


def test_rolling_windows_sum_dollar_volume_and_median_oi():
    u = Universe(small(scores={"dv_lookback_min": 3, "oi_lookback_min": 3}))
    for m, (dv1, oi1) in enumerate([(10, 1.0), (20, 5.0), (30, 3.0), (40, 100.0)]):
        u.update(t(m), inputs({1: dv1, 2: 75}, oi={1: oi1, 2: 4.0}))
    assert u.dv_l1(1) == 90  # 20 + 30 + 40: the first minute left the 3-minute window
    assert u.dv_l1(2) == 225
    # rank_desc(dv): 2 -> 1, 1 -> 2; median OI of 1 = median(5, 3, 100) = 5 > 4: 1 -> 1, 2 -> 2
    # U: 1 = .7*2 + .3*1 = 1.7; 2 = .7*1 + .3*2 = 1.3
    assert u.ranks == {2: 1, 1: 2}


def test_liquidity_tiers_by_dollar_volume_decile():
    u = Universe(small())
    u.update(t(0), inputs({uid: 1000.0 * (21 - uid) for uid in range(1, 21)} | {21: 1000.0}))
    tiers = u.tiers()
    # 21 assets: decile = ceil(10 rank / 21): ranks 1-2 top, 19-21 tail (20, 21 tie: 21 last).
    assert [uid for uid, tier in sorted(tiers.items()) if tier == "top"] == [1, 2]
    assert [uid for uid, tier in sorted(tiers.items()) if tier == "tail"] == [19, 20, 21]
    assert set(tiers.values()) == {"top", "mid", "tail"}
    few = Universe(small())
    few.update(t(0), inputs({1: 300.0, 2: 200.0, 3: 100.0}))
    assert few.tiers() == {1: "mid", 2: "mid", 3: "tail"}  # no top decile under 10 assets


def test_ties_break_by_asset_uid():
    u = Universe(small())
    u.update(t(0), inputs({7: 10, 3: 10, 5: 10}))
    assert u.ranks == {3: 1, 5: 2, 7: 3}


# ---------------------------------------------------------------------- membership (§7.3)
def test_bootstrap_then_entry_after_streak():
    u = Universe(small(entry_band={"k_entry": 3}, exit_band={"n_exit": 4}))
    assert run(u, range(2), {1: 300, 2: 200, 3: 100}) == []
    [boot] = u.update(t(2), inputs({1: 300, 2: 200, 3: 100}))
    assert boot["added"] == [1, 2]
    assert boot["reasons"] == {"1": "bootstrap", "2": "bootstrap"}
    assert (boot["rev"], boot["exchange_ts"], boot["universe_policy_rev"]) == (1, t(2), 1)
    # asset 3 jumps to rank 1: inside n_entry for minutes 3, 4 -> not yet; 5 -> enters
    assert run(u, range(3, 5), {1: 300, 2: 200, 3: 1000}) == []
    [entry] = u.update(t(5), inputs({1: 300, 2: 200, 3: 1000}))
    assert entry["added"] == [3]
    assert entry["removed"] == []
    assert entry["reasons"] == {"3": "entry"}
    assert entry["rev"] == 2
    assert entry["members"] == [1, 2, 3]
    assert entry["symbols"] == {"3": "A3"}
    assert u.membership(3) == (True, False, 2)
    assert u.membership(9) == (False, False, 2)


def test_no_exit_inside_the_band():
    u = Universe(small(exit_band={"n_exit": 3}))
    run(u, range(2), {1: 300, 2: 200, 3: 100})
    assert members(u) == [1, 2]
    # 2 drops to rank 3 (> n_entry, not > n_exit) for an hour: 3 enters, 2 stays
    audits = run(u, range(2, 62), {1: 300, 2: 200, 3: 250})
    assert [a["added"] for a in audits] == [[3]]
    assert all(a["removed"] == [] for a in audits)
    assert members(u) == [1, 2, 3]


def test_exit_after_k_exit_minutes_outside_the_band():
    u = Universe(small(entry_band={"k_entry": 99}))
    u.bootstrapped = True  # skip bootstrap: seed members by hand
    u.members = {1: t(-100), 2: t(-100)}
    vols = {1: 300, 2: 10, 3: 200, 4: 100}  # 2 ranks 4 > n_exit 3
    assert u.update(t(0), inputs(vols)) == []  # exit streak 1
    [out] = u.update(t(1), inputs(vols))
    assert out["removed"] == [2]
    assert out["reasons"] == {"2": "exit"}
    assert members(u) == [1]


def test_min_dwell_delays_an_exit():
    u = Universe(small(min_dwell_min=10))
    run(u, range(2), {1: 300, 2: 200, 3: 100, 4: 50})  # bootstrap at minute 1
    assert u.members == {1: t(1), 2: t(1)}
    vols = {1: 300, 2: 1, 3: 100, 4: 50}  # 2 ranks 4 > n_exit from minute 2: streak 2 at 3
    removed = {m: a["removed"] for m in range(2, 14) for a in u.update(t(m), inputs(vols))}
    assert removed == {3: [], 11: [2]}  # 3 enters at minute 3; 2 leaves at t(1) + 10 min
    assert u.membership(2)[0] is False


def test_freeze_defers_changes_after_a_change():
    u = Universe(small(freeze_min=5))
    run(u, range(2), {1: 300, 2: 200, 3: 100})  # bootstrap at minute 1, frozen until t(6)
    hist = {m: u.update(t(m), inputs({1: 300, 2: 200, 3: 900})) for m in range(2, 8)}
    # 3 qualifies from minute 3 (2 minutes at rank 1), but enters only when the freeze ends
    assert [m for m, a in hist.items() if a] == [6]
    assert hist[6][0]["added"] == [3]
    assert u.frozen_until == t(11)


def test_hard_exit_despite_dwell_and_freeze():
    u = Universe(small(min_dwell_min=60, freeze_min=60))
    run(u, range(2), {1: 300, 2: 200, 3: 100})
    # asset 2 goes stale with no volume (one minute missing altogether)
    assert u.update(t(2), inputs({1: 300, 2: 0, 3: 100}, dq={2: "stale"})) == []
    assert u.update(t(3), inputs({1: 300, 3: 100})) == []
    [out] = u.update(t(4), inputs({1: 300, 2: 0, 3: 100}, dq={2: "stale"}))
    assert out["removed"] == [2]
    assert out["reasons"] == {"2": "hard_exit"}


def test_stale_member_with_volume_is_not_dead():
    u = Universe(small(min_dwell_min=60, freeze_min=60))
    run(u, range(2), {1: 300, 2: 200, 3: 100})
    assert run(u, range(2, 10), {1: 300, 2: 200, 3: 100}, dq={2: "stale"}) == []
    assert members(u) == [1, 2]


def test_churn_cap_defers_entries_to_the_next_hour():
    u = Universe(
        small(
            n_base=3,
            entry_band={"n_entry": 3, "k_entry": 1},
            exit_band={"n_exit": 9},
            churn={"max_changes_per_hour": 1},
        )
    )
    u.update(t(0), inputs({1: 300}))  # bootstrap: exempt from the cap
    assert members(u) == [1]
    [first] = u.update(t(1), inputs({1: 300, 2: 200, 3: 100}))
    assert first["added"] == [2]  # the better rank takes the hour's only change
    assert run(u, range(2, 60), {1: 300, 2: 200, 3: 100}) == []
    [later] = u.update(t(60), inputs({1: 300, 2: 200, 3: 100}))  # 13:00: a new hour
    assert later["added"] == [3]


def test_a_gap_restarts_the_entry_streak():
    u = Universe(small(entry_band={"k_entry": 2}))
    u.update(t(0), inputs({1: 300}))
    assert u.update(t(2), inputs({1: 300})) == []  # minute 1 missing: streak restarts at 1
    assert len(u.update(t(3), inputs({1: 300}))) == 1


def test_time_must_move_forward():
    u = Universe(small())
    u.update(t(1), inputs({1: 1}))
    with pytest.raises(UniverseError, match="not after"):
        u.update(t(1), inputs({1: 1}))


def test_rev_bumps_only_on_change():
    u = Universe(small())
    run(u, range(2), {1: 300, 2: 200, 3: 100})
    assert u.rev == 1
    assert run(u, range(2, 30), {1: 300, 2: 200, 3: 100}) == []
    assert u.rev == 1


def test_revise_replaces_a_minute():
    u = Universe(small(scores={"dv_lookback_min": 5}))
    u.update(t(0), inputs({1: 100, 2: 50}))
    u.revise(t(0), inputs({1: 10}))
    u.update(t(1), inputs({1: 1, 2: 1}))
    assert u.dv_l1(1) == 11
    assert u.ranks == {2: 1, 1: 2}


# ---------------------------------------------------------------------- hotlist (§7.4, D.8)
@pytest.mark.parametrize(("severity", "ttl_min"), [(70, 36), (80, 39), (90, 42)])
def test_hot_ttl_from_severity(severity, ttl_min):
    u = Universe(small())
    [audit] = u.hot(5, severity, "vol_spike", t(0), symbol="HOT")
    assert u.hotlist[5]["expires_at"] == t(0) + ttl_min * MINUTE_MS
    assert audit["hot_added"] == [5]
    assert audit["hot_reasons"] == {"5": "hotlist"}
    assert audit["symbols"] == {"5": "HOT"}
    assert audit["hot"] == [5]
    assert audit["rev"] == 1
    assert u.membership(5) == (False, True, 1)


def test_hot_expires_by_stream_time():
    u = Universe(small())
    u.hot(5, 80, "oi_spike", t(0))  # 39 minutes
    assert all(a["hot_removed"] == [] for a in run(u, range(1, 39), {1: 10}))
    assert u.membership(5)[1]
    [out] = u.update(t(39), inputs({1: 10}))
    assert out["hot_removed"] == [5]
    assert out["hot_reasons"] == {"5": "hot_expired"}
    assert u.membership(5) == (False, False, 3)  # rev 2 was asset 1's bootstrap


def test_hot_threshold_and_always_hot_reasons():
    u = Universe(small())
    assert u.hot(5, 69.9, "vol_spike", t(0)) == []
    assert len(u.hot(5, 10, "basis_jolt", t(0))) == 1  # a subtype that is always hot
    with pytest.raises(UniverseError, match="hot reason"):
        u.hot(6, 90, "rumour", t(0))


def test_hot_again_extends_without_a_rev_bump():
    u = Universe(small())
    u.hot(5, 70, "vol_spike", t(0))
    assert u.hot(5, 90, "oi_spike", t(1)) == []
    assert u.hotlist[5]["expires_at"] == t(1) + 42 * MINUTE_MS
    assert u.hotlist[5]["reason"] == "oi_spike"
    assert u.rev == 1
    assert u.hot(5, 70, "vol_spike", t(2)) == []  # expires earlier: changes nothing
    assert u.hotlist[5]["expires_at"] == t(1) + 42 * MINUTE_MS


def test_full_hotlist_evicts_the_first_to_expire():
    u = Universe(small(hotlist={"max_size": 2}))
    u.hot(1, 70, "vol_spike", t(0))
    u.hot(2, 90, "vol_spike", t(0))
    [out] = u.hot(3, 80, "vol_spike", t(0))
    assert out["hot_added"] == [3]
    assert out["hot_removed"] == [1]
    assert out["hot_reasons"] == {"1": "hot_evicted", "3": "hotlist"}
    assert u.hot(4, 70, "vol_spike", t(0)) == []  # would expire first itself: ignored


def test_hot_event_already_expired_is_ignored():
    u = Universe(small())
    u.update(t(100), inputs({1: 1}))
    assert u.hot(5, 70, "vol_spike", t(60)) == []


# ---------------------------------------------------------------------- state
def _script(u: Universe, minutes: range) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in minutes:
        vols = {
            uid: float((uid * 37 + m * 11) % 50 + (m if uid == 4 else 0)) for uid in range(1, 7)
        }
        dq = {6: "stale"} if m % 7 == 0 else {}
        oi = {uid: float(uid * 1000 + m) for uid in (1, 2, 5)}
        if m % 9 == 0:
            out += u.hot(3, 75, "oi_spike", t(m))
        out += u.update(t(m), inputs(vols, oi=oi, dq=dq))
    return out


def test_state_round_trip_continues_identically():
    pol = small(n_base=3, entry_band={"n_entry": 3}, exit_band={"n_exit": 4}, freeze_min=2)
    whole = Universe(pol)
    first = _script(whole, range(40))
    rest = _script(whole, range(40, 90))
    half = Universe(pol)
    assert _script(half, range(40)) == first
    resumed = Universe.from_state(pol, json.loads(json.dumps(half.to_state())))
    assert resumed.to_state() == half.to_state()
    assert _script(resumed, range(40, 90)) == rest
    assert resumed.to_state() == whole.to_state()
    assert first + rest, "the script changes membership at least once"


def test_unknown_state_version_is_refused():
    with pytest.raises(UniverseError, match="version"):
        Universe(small(), {"v": 99})


# ---------------------------------------------------------------------- properties
PROP_POLICY = small(
    n_base=3,
    entry_band={"n_entry": 2, "k_entry": 1},
    exit_band={"n_exit": 3, "k_exit": 1},
    freeze_min=4,
)
volume_minutes = st.lists(
    st.dictionaries(st.integers(1, 6), st.integers(0, 1000), min_size=1, max_size=6),
    min_size=5,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(volume_minutes)
def test_membership_never_flips_inside_the_freeze_window(minutes):
    u = Universe(PROP_POLICY)
    last_change: int | None = None
    for m, vols in enumerate(minutes):
        for audit in u.update(t(m), inputs({k: float(v) for k, v in vols.items()})):
            regular = [r for r in audit["reasons"].values() if r != "hard_exit"]
            if regular and last_change is not None:
                assert t(m) - last_change >= 4 * MINUTE_MS
            if audit["reasons"]:
                last_change = t(m)


@settings(max_examples=40, deadline=None)
@given(volume_minutes, st.randoms(use_true_random=False))
def test_input_order_does_not_matter(minutes, rnd):
    a, b = Universe(PROP_POLICY), Universe(PROP_POLICY)
    for m, vols in enumerate(minutes):
        rows = inputs({k: float(v) for k, v in vols.items()})
        shuffled = list(rows)
        rnd.shuffle(shuffled)
        assert a.update(t(m), rows) == b.update(t(m), shuffled)
    assert a.to_state() == b.to_state()
