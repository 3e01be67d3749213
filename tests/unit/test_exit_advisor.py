"""The exit advisor (spec 003 §13): each rule, their priority, the rate limit, shorts mirrored,
and the monotonicity of every move (hypothesis)."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.risk import load_risk_policy
from processors.downstream.exit_advisor import Adjustment, advise, decayed_target
from processors.downstream.types import MINUTE_MS, Quote, Trade

P = load_risk_policy().exit  # BE 0.7 R, trail 1 R by 0.5 R, hostile 2.0 / 0.6, 720 min, 0.5, 5 min
T0 = 1_756_891_800_000


def trade(**kw: Any) -> Trade:
    """A long at 100, stop 98 (1 R = 2 per unit), target 104, opened at T0."""
    base: dict[str, Any] = {
        "trade_id": "d:1", "asset_uid": 1, "symbol": "BTC", "cluster": "majors", "tf": "1m",
        "side": "long", "qty": 1.0, "entry_price": 100.0, "stop": 98.0, "take_profit": 104.0,
        "risk_usd": 2.0, "risk_pct": 0.005, "leverage": 10.0, "opened_ms": T0,
        "route": "paper", "initial_stop": 98.0,
    }  # fmt: skip
    base.update(kw)
    return Trade(**base)


def short(**kw: Any) -> Trade:
    """The mirror: a short at 100, stop 102, target 96."""
    return trade(
        **{"side": "short", "stop": 102.0, "take_profit": 96.0, "initial_stop": 102.0, **kw}
    )


def quote(close: float, minute: int = 10, **kw: Any) -> Quote:
    m = T0 + minute * MINUTE_MS
    return Quote(1, "BTC", m, close, close, close, close, **kw)


def at(minute: int) -> int:
    return T0 + minute * MINUTE_MS


def test_no_advice_in_the_opening_minute_or_when_nothing_applies() -> None:
    assert advise(trade(), quote(103.0, 0), at(0), P) is None
    assert advise(trade(), quote(101.0), at(10), P) is None  # 0.5 R


def test_breakeven_moves_the_stop_to_the_entry() -> None:
    adj = advise(trade(), quote(101.4), at(10), P)  # 0.7 R
    assert adj is not None
    assert (adj.action, adj.reason, adj.new_stop, adj.new_take_profit) == (
        "move_sl", "breakeven", 100.0, 104.0,
    )  # fmt: skip
    assert adj.unrealised_r == pytest.approx(0.7)
    assert adj.adjust_id == f"adj:d:1:{at(10)}"
    assert advise(trade(), quote(101.38), at(10), P) is None  # 0.69 R


def test_breakeven_takes_priority_over_the_trail() -> None:
    adj = advise(trade(), quote(102.5), at(10), P)  # 1.25 R, stop still below entry
    assert adj is not None
    assert adj.action == "move_sl"


def test_trail_moves_the_target_out_by_half_an_r() -> None:
    adj = advise(trade(stop=100.0), quote(102.0), at(10), P)  # 1 R, already at break-even
    assert adj is not None
    assert (adj.action, adj.reason, adj.new_stop, adj.new_take_profit) == (
        "trail_tp", "trail", 100.0, 105.0,
    )  # fmt: skip
    assert advise(trade(stop=100.0), quote(101.9), at(10), P) is None  # 0.95 R


def test_shorts_mirror_breakeven_and_trail() -> None:
    be = advise(short(), quote(98.6), at(10), P)
    assert be is not None
    assert (be.action, be.new_stop) == ("move_sl", 100.0)
    trail = advise(short(stop=100.0), quote(98.0), at(10), P)
    assert trail is not None
    assert (trail.action, trail.new_take_profit) == ("trail_tp", 95.0)
    assert advise(short(), quote(101.0), at(10), P) is None  # a losing short


def test_moves_are_rate_limited_but_closes_are_not() -> None:
    recent = trade(last_adjust_ms=at(6))
    assert advise(recent, quote(101.5), at(10), P) is None  # 4 min since the last move
    adj = advise(recent, quote(101.5), at(11), P)  # 5 min: allowed again
    assert adj is not None
    assert adj.action == "move_sl"
    hostile = quote(100.5, cvd_slope_z=-2.5, absorp_score=0.9)
    close = advise(recent, hostile, at(10), P)
    assert close is not None
    assert (close.action, close.reason) == ("close", "hostile_flow")


@pytest.mark.parametrize(
    ("z", "absorp", "closes"),
    [
        (-2.0, 0.61, True),
        (-3.0, 1.0, True),
        (-1.99, 0.9, False),  # not hostile enough
        (-2.5, 0.6, False),  # absorption must exceed 0.6
        (2.5, 0.9, False),  # flow with the long
        (None, 0.9, False),  # unknown: no rule
        (-2.5, None, False),
    ],
)
def test_hostile_flow_closes_a_long(z: float | None, absorp: float | None, closes: bool) -> None:
    adj = advise(trade(), quote(100.5, cvd_slope_z=z, absorp_score=absorp), at(10), P)
    assert (adj is not None and adj.action == "close") is closes


def test_hostile_flow_mirrors_for_shorts() -> None:
    up = quote(99.5, cvd_slope_z=2.0, absorp_score=0.7)
    adj = advise(short(), up, at(10), P)
    assert adj is not None
    assert adj.reason == "hostile_flow"
    assert advise(short(), replace(up, cvd_slope_z=-2.0), at(10), P) is None


def test_max_hold_closes_and_beats_every_other_rule() -> None:
    assert advise(trade(), quote(99.0, 719), at(719), P) is None
    hostile = quote(103.0, 720, cvd_slope_z=-3.0, absorp_score=0.9)
    adj = advise(trade(), hostile, at(720), P)
    assert adj is not None
    assert (adj.action, adj.reason, adj.new_stop, adj.new_take_profit) == (
        "close", "max_hold", 98.0, 104.0,
    )  # fmt: skip


def test_rr_decay_target_slides_from_target_to_entry() -> None:
    t = trade()
    assert decayed_target(t, at(359), P) is None  # before 50 % of 720 min
    assert decayed_target(t, at(360), P) == pytest.approx(104.0)
    assert decayed_target(t, at(540), P) == pytest.approx(102.0)
    assert decayed_target(t, at(720), P) == pytest.approx(100.0)
    assert decayed_target(t, at(900), P) == pytest.approx(100.0)
    assert decayed_target(short(), at(540), P) == pytest.approx(98.0)
    assert decayed_target(trade(take_profit=99.0), at(540), P) is None


def test_rr_decay_closes_at_the_decayed_target_without_moving_it_inward() -> None:
    t = trade(stop=100.0, last_adjust_ms=at(538))  # rate-limited: only a close can come
    assert advise(t, quote(101.9, 540), at(540), P) is None
    adj = advise(t, quote(102.0, 540), at(540), P)
    assert adj is not None
    assert (adj.action, adj.reason) == ("close", "rr_decay")
    assert adj.new_take_profit == 104.0  # the target is not pulled in
    s = advise(short(stop=100.0, last_adjust_ms=at(538)), quote(98.0, 540), at(540), P)
    assert s is not None
    assert s.reason == "rr_decay"


def test_hostile_flow_beats_rr_decay() -> None:
    q = quote(102.5, 540, cvd_slope_z=-2.5, absorp_score=0.8)
    adj = advise(trade(), q, at(540), P)
    assert adj is not None
    assert adj.reason == "hostile_flow"


def test_adjustment_round_trips_through_json() -> None:
    adj = advise(trade(), quote(101.5), at(10), P)
    assert adj is not None
    assert Adjustment.from_json(json.loads(json.dumps(adj.to_json()))) == adj


# ---------------------------------------------------------------- monotonicity (hypothesis)

sides = st.sampled_from(["long", "short"])
prices = st.floats(80.0, 120.0)


def ratchets(side: str, new: float, old: float) -> bool:
    """True when ``new`` is ``old`` or further in the trade's favour (a long's: higher)."""
    return new >= old if side == "long" else new <= old


@settings(max_examples=300, deadline=None)
@given(
    side=sides,
    stop_r=st.floats(-1.0, 0.5),
    tp_r=st.floats(0.5, 6.0),
    close=prices,
    age=st.integers(1, 800),
    last=st.one_of(st.none(), st.integers(0, 800)),
    z=st.one_of(st.none(), st.floats(-5, 5)),
    absorp=st.one_of(st.none(), st.floats(0, 1)),
)
def test_every_advice_is_monotonic(
    side: str,
    stop_r: float,
    tp_r: float,
    close: float,
    age: int,
    last: int | None,
    z: float | None,
    absorp: float | None,
) -> None:
    s = 1 if side == "long" else -1
    t = trade(
        side=side, initial_stop=100.0 - s * 2.0, stop=100.0 + s * 2.0 * stop_r,
        take_profit=100.0 + s * 2.0 * tp_r,
        last_adjust_ms=None if last is None else at(min(last, age - 1)),
    )  # fmt: skip
    adj = advise(t, quote(close, age, cvd_slope_z=z, absorp_score=absorp), at(age), P)
    if adj is None:
        return
    assert ratchets(side, adj.new_stop, t.stop)  # a stop only tightens
    assert ratchets(side, adj.new_take_profit, t.take_profit)  # a target only widens
    if adj.action != "close":
        assert t.last_adjust_ms is None or adj.minute_ms - t.last_adjust_ms >= 5 * MINUTE_MS
        assert (adj.new_stop, adj.new_take_profit) != (t.stop, t.take_profit)


@settings(max_examples=100, deadline=None)
@given(side=sides, path=st.lists(prices, min_size=1, max_size=120))
def test_levels_ratchet_along_a_path(side: str, path: list[float]) -> None:
    t = short() if side == "short" else trade()
    stops, targets, moves = [t.stop], [t.take_profit], []
    for m, close in enumerate(path, start=1):
        adj = advise(t, quote(close, m), at(m), P)
        if adj is None:
            continue
        if adj.action == "close":
            break
        moves.append(adj.minute_ms)
        t = replace(t, stop=adj.new_stop, take_profit=adj.new_take_profit, last_adjust_ms=at(m))
        stops.append(t.stop)
        targets.append(t.take_profit)
    order = sorted if side == "long" else (lambda xs: sorted(xs, reverse=True))
    assert stops == order(stops)
    assert targets == order(targets)
    assert all(b - a >= 5 * MINUTE_MS for a, b in itertools.pairwise(moves))
