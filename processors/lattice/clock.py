"""Stream-time minute sealing for one partition (spec 002 §2.2; DESIGN.md §4).

The bar labelled ``t`` covers exchange times ``[t - 60 s, t)``. A partition's watermark is the
largest exchange time seen on it (heartbeats included). The bar **closes** when the watermark
reaches ``t + lateness`` (1.5 s) and becomes **final** at ``t + grace`` (3 s). A tick for a closed
but not final minute **amends** it; a tick for a final minute is **late** (DQ counters only).
Pure: the state is explicit and every decision depends on exchange times alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MINUTE_MS = 60_000
LATENESS_MS = 1_500
GRACE_MS = 3_000
#: A jump of stream time over more minutes than this seals only the first ones (stale
#: ``no_data`` rows that report the outage) and skips the rest: two recordings 39 days apart
#: would otherwise seal 57,000 empty minutes per asset in one step (see docs/lattice.md).
MAX_FILL_MINUTES = 60


class Seal(StrEnum):
    """What happened to a minute."""

    CLOSE = "close"
    FINAL = "final"


class TickFate(StrEnum):
    """Where a tick goes, given the minute it belongs to and the watermark."""

    OPEN = "open"  # its minute has not closed: accumulate
    AMEND = "amend"  # closed, within grace: revise the row
    LATE = "late"  # final: count it, do not rewrite


def label_of(exchange_ts: int) -> int:
    """Return the label (end time) of the minute containing ``exchange_ts``."""
    return (exchange_ts // MINUTE_MS + 1) * MINUTE_MS


@dataclass(frozen=True, slots=True)
class ClockState:
    """Sealing state of one partition.

    Attributes:
        watermark: Largest exchange time seen, epoch ms (-1 before the first record).
        next_close: Label of the next minute to close (0 before the first record).
        next_final: Label of the next minute to become final.
    """

    watermark: int = -1
    next_close: int = 0
    next_final: int = 0


def advance(
    state: ClockState,
    exchange_ts: int,
    *,
    lateness_ms: int = LATENESS_MS,
    grace_ms: int = GRACE_MS,
    max_fill_minutes: int = MAX_FILL_MINUTES,
) -> tuple[ClockState, list[tuple[Seal, int]]]:
    """Move the watermark to ``exchange_ts`` (if later); return the seals it triggers, in order.

    Closes and finals interleave by the time they become due, a close before a final at the same
    instant, so every later stage sees one order. Minutes before the first record are never
    sealed: the lattice starts at the first minute it has data for. A jump that would close more
    than ``max_fill_minutes`` minutes closes and finalises the first ``max_fill_minutes`` of them,
    then continues at the minute of ``exchange_ts``: the minutes between are never sealed.
    """
    if state.next_close == 0:
        first = label_of(exchange_ts)
        state = ClockState(watermark=-1, next_close=first, next_final=first)
    if exchange_ts <= state.watermark:
        return state, []
    to_close = (exchange_ts - lateness_ms - state.next_close) // MINUTE_MS + 1
    if to_close > max_fill_minutes:
        last = state.next_close + (max_fill_minutes - 1) * MINUTE_MS
        state, filled = advance(
            state, last + grace_ms, lateness_ms=lateness_ms, grace_ms=grace_ms,
            max_fill_minutes=max_fill_minutes,
        )  # fmt: skip
        resume = label_of(exchange_ts)
        state = ClockState(watermark=state.watermark, next_close=resume, next_final=resume)
        state, more = advance(
            state, exchange_ts, lateness_ms=lateness_ms, grace_ms=grace_ms,
            max_fill_minutes=max_fill_minutes,
        )  # fmt: skip
        return state, filled + more
    seals: list[tuple[Seal, int]] = []
    close, final = state.next_close, state.next_final
    while True:
        close_due = close + lateness_ms
        final_due = final + grace_ms
        if close_due <= exchange_ts and close_due <= final_due:
            seals.append((Seal.CLOSE, close))
            close += MINUTE_MS
        elif final_due <= exchange_ts and final < close:
            seals.append((Seal.FINAL, final))
            final += MINUTE_MS
        else:
            break
    return ClockState(watermark=exchange_ts, next_close=close, next_final=final), seals


def fate(state: ClockState, tick_ts: int) -> TickFate:
    """Classify a tick against the partition's sealing state (before it advances the clock)."""
    minute = label_of(tick_ts)
    if state.next_close == 0 or minute >= state.next_close:
        return TickFate.OPEN
    if minute >= state.next_final:
        return TickFate.AMEND
    return TickFate.LATE
