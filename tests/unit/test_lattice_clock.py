"""Stream-time sealing: close at +1.5 s, final at +3 s, amend within grace, late beyond it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.lattice.clock import (
    MAX_FILL_MINUTES,
    ClockState,
    Seal,
    TickFate,
    advance,
    fate,
    label_of,
)

T0 = 1_756_904_100_000  # a minute boundary
M = 60_000


def _run(times: list[int]) -> tuple[ClockState, list[tuple[Seal, int]]]:
    state, seals = ClockState(), []
    for ts in times:
        state, new = advance(state, ts)
        seals += new
    return state, seals


def test_labels_are_minute_ends():
    assert label_of(T0) == T0 + M
    assert label_of(T0 + M - 1) == T0 + M
    assert label_of(T0 - 1) == T0


def test_close_at_lateness_final_at_grace():
    label = T0 + M
    state, seals = _run([T0 + 5_000, label + 1_499])
    assert seals == []
    state, seals = advance(state, label + 1_500)
    assert seals == [(Seal.CLOSE, label)]
    state, seals = advance(state, label + 2_999)
    assert seals == []
    state, seals = advance(state, label + 3_000)
    assert seals == [(Seal.FINAL, label)]


def test_a_jump_seals_every_minute_in_order_for_silent_minutes_too():
    _state, seals = _run([T0 + 1, T0 + 3 * M + 3_000])
    assert seals == [
        (Seal.CLOSE, T0 + M),
        (Seal.FINAL, T0 + M),
        (Seal.CLOSE, T0 + 2 * M),
        (Seal.FINAL, T0 + 2 * M),
        (Seal.CLOSE, T0 + 3 * M),
        (Seal.FINAL, T0 + 3 * M),
    ]


def test_tick_fates():
    label = T0 + M
    state, _ = _run([T0 + 10, label + 2_000])  # minute `label` closed, not final
    assert fate(state, T0 + 59_000) is TickFate.AMEND
    assert fate(state, label + 100) is TickFate.OPEN
    state, _ = advance(state, label + 3_000)
    assert fate(state, T0 + 59_000) is TickFate.LATE


def test_older_times_do_not_move_the_watermark():
    state, _ = _run([T0 + 50_000])
    again, seals = advance(state, T0 + 10_000)
    assert again == state
    assert seals == []


@given(st.lists(st.integers(0, 30 * M), min_size=1, max_size=60))
def test_every_minute_closes_once_then_finalizes_once_in_order(offsets):
    state, seals = _run([T0 + o for o in offsets])
    closes = [t for s, t in seals if s is Seal.CLOSE]
    finals = [t for s, t in seals if s is Seal.FINAL]
    assert closes == sorted(set(closes))
    assert finals == sorted(set(finals))
    assert finals == closes[: len(finals)]
    # Each final comes after its close.
    for label in finals:
        assert seals.index((Seal.CLOSE, label)) < seals.index((Seal.FINAL, label))
    # Everything due by the watermark has been sealed.
    wm = state.watermark
    assert all(t + 1_500 > wm for t in [state.next_close])
    assert all(t + 3_000 > wm for t in [state.next_final])


@given(
    st.lists(st.integers(0, 10 * M), min_size=2, max_size=40),
    st.lists(st.integers(0, 10 * M), max_size=40),
)
def test_seals_depend_only_on_the_watermark_not_on_the_steps(offsets, extra):
    times = sorted(T0 + o for o in offsets)
    # Heartbeats or other records in between (never past the last time) change nothing.
    between = sorted(t for t in (T0 + e for e in extra) if times[0] <= t <= times[-1])
    assert _run(sorted(times + between))[1] == _run([times[0], times[-1]])[1]


def test_a_long_jump_seals_the_first_hour_then_resumes_at_the_new_minute():
    day = 24 * 60 * M
    later = T0 + 39 * day + 20_000  # two recordings 39 days apart
    state, seals = _run([T0 + 1, later])
    closes = [t for s, t in seals if s is Seal.CLOSE]
    finals = [t for s, t in seals if s is Seal.FINAL]
    assert closes == [T0 + k * M for k in range(1, MAX_FILL_MINUTES + 1)]
    assert finals == closes  # the filled minutes are final too: nothing is left half-sealed
    assert state.watermark == later
    assert state.next_close == state.next_final == label_of(later)
    assert fate(state, later + 1_000) is TickFate.OPEN
    assert fate(state, T0 + 20 * day) is TickFate.LATE  # a skipped minute stays skipped
    _, after = advance(state, label_of(later) + 3_000)
    assert after == [(Seal.CLOSE, label_of(later)), (Seal.FINAL, label_of(later))]


def test_a_jump_of_exactly_the_fill_seals_every_minute():
    last = T0 + MAX_FILL_MINUTES * M
    _, seals = _run([T0 + 1, last + 3_000])
    assert [t for s, t in seals if s is Seal.CLOSE] == [
        T0 + k * M for k in range(1, MAX_FILL_MINUTES + 1)
    ]
    _, seals = _run([T0 + 1, last + M + 1_500])  # one more minute to close: the cap applies
    assert [t for s, t in seals if s is Seal.CLOSE][-1] == last
    assert (Seal.CLOSE, last + M) not in seals
