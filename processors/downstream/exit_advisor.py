"""The exit advisor (spec 003 §13): manage an open trade once a minute, one advice at a time.

``advise(trade, quote, minute_ms, params)`` looks at one open trade and the sealed minute of its
asset and returns at most one :class:`Adjustment`. Pure: the trade carries all the state the
rules need (``opened_ms``, ``last_adjust_ms``, the levels). Run it after the paper executor's
stops and targets of that minute (a trade stopped out this minute gets no advice).

Unrealised R is taken at the minute's close. Rules, first that applies wins (closes beat moves):

1. ``close`` / ``max_hold``: the trade is ``max_hold_minutes`` old.
2. ``close`` / ``hostile_flow``: ``cvd_slope_z`` against the trade by ``hostile_cvd_slope_z``
   or more (a long: ``<= -z``) and ``absorp_score > hostile_absorp_score`` (missing: no rule).
3. ``close`` / ``rr_decay``: from ``rr_decay_start_share`` of the max hold the target decays
   linearly toward the entry, reaching it at the max hold; the trade closes when the close has
   reached the decayed target. The target itself never moves inward ("all moves monotonic":
   the decay is expressed only as this close).
4. ``move_sl`` / ``breakeven``: unrealised ``>= breakeven_trigger_r`` and the stop still on the
   losing side of the entry -> stop to the entry.
5. ``trail_tp`` / ``trail``: unrealised ``>= trail_trigger_r`` -> target out by
   ``trail_step_r`` R. Applied again after every interval while the trade stays above the
   trigger (as the spec reads); max hold and the RR decay bound how far it runs.

Rate limit: a move (4, 5) needs ``min_interval_minutes`` since ``trade.last_adjust_ms``; closes
are not limited (a close ends the trade, so it cannot churn, and an exit must not wait). Moves
are monotonic: a long's stop and target only rise, a short's only fall. No advice in the
trade's opening minute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from packs.risk import ExitAdvisor
from processors.downstream.types import MINUTE_MS, Quote, Trade, sign

Action = Literal["move_sl", "trail_tp", "close"]


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One piece of advice on one trade.

    ``new_stop`` and ``new_take_profit`` are the levels the trade should have afterwards (the
    unchanged one repeated; both unchanged for a close). ``adjust_id`` is
    ``adj:<trade_id>:<minute_ms>``: at most one advice per trade and minute.
    """

    adjust_id: str
    trade_id: str
    minute_ms: int
    action: Action
    new_stop: float
    new_take_profit: float
    reason: str
    unrealised_r: float

    def to_json(self) -> dict[str, Any]:
        """Return the JSON data of this value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Adjustment:
        """Rebuild from :meth:`to_json` output."""
        return cls(**data)


def decayed_target(trade: Trade, minute_ms: int, params: ExitAdvisor) -> float | None:
    """Return the RR-decayed target at ``minute_ms``, or None before the decay starts.

    From ``rr_decay_start_share * max_hold_minutes`` after the open, the target slides linearly
    from ``take_profit`` to ``entry_price``, which it reaches at the max hold and keeps after.
    None too when the target is not on the profit side of the entry.
    """
    s = sign(trade.side)
    if s * (trade.take_profit - trade.entry_price) <= 0:
        return None
    hold_ms = params.max_hold_minutes * MINUTE_MS
    start_ms = params.rr_decay_start_share * hold_ms
    age_ms = minute_ms - trade.opened_ms
    if age_ms < start_ms:
        return None
    span = hold_ms - start_ms
    progress = 1.0 if span <= 0 else min(1.0, (age_ms - start_ms) / span)
    return trade.entry_price + (trade.take_profit - trade.entry_price) * (1.0 - progress)


def advise(trade: Trade, quote: Quote, minute_ms: int, params: ExitAdvisor) -> Adjustment | None:
    """Return the advice for ``trade`` in the minute ``minute_ms`` (spec 003 §13), or None.

    See the module docstring for the rules, their order and the rate limit.

    Args:
        trade: The open trade as it stands after this minute's stops and targets.
        quote: Its asset's sealed minute (close, ``cvd_slope_z``, ``absorp_score``).
        minute_ms: The minute (the quote's ``minute_ms``).
        params: The pack's exit section.
    """
    if minute_ms <= trade.opened_ms:
        return None
    r = trade.unrealised_r(quote.close)

    def advice(action: Action, reason: str, stop: float, take_profit: float) -> Adjustment:
        return Adjustment(
            adjust_id=f"adj:{trade.trade_id}:{minute_ms}",
            trade_id=trade.trade_id,
            minute_ms=minute_ms,
            action=action,
            new_stop=stop,
            new_take_profit=take_profit,
            reason=reason,
            unrealised_r=r,
        )

    reason = _close_reason(trade, quote, minute_ms, params)
    if reason is not None:
        return advice("close", reason, trade.stop, trade.take_profit)
    last = trade.last_adjust_ms
    if last is not None and minute_ms - last < params.min_interval_minutes * MINUTE_MS:
        return None
    s = sign(trade.side)
    if r >= params.breakeven_trigger_r and s * (trade.entry_price - trade.stop) > 0:
        return advice("move_sl", "breakeven", trade.entry_price, trade.take_profit)
    per_unit = abs(trade.entry_price - trade.initial_stop)
    if r >= params.trail_trigger_r and per_unit > 0:
        new_tp = trade.take_profit + s * params.trail_step_r * per_unit
        return advice("trail_tp", "trail", trade.stop, new_tp)
    return None


def _close_reason(trade: Trade, quote: Quote, minute_ms: int, params: ExitAdvisor) -> str | None:
    s = sign(trade.side)
    if minute_ms - trade.opened_ms >= params.max_hold_minutes * MINUTE_MS:
        return "max_hold"
    z, absorp = quote.cvd_slope_z, quote.absorp_score
    if (
        z is not None
        and absorp is not None
        and s * z <= -params.hostile_cvd_slope_z
        and absorp > params.hostile_absorp_score
    ):
        return "hostile_flow"
    target = decayed_target(trade, minute_ms, params)
    if target is not None and s * (quote.close - target) >= 0:
        return "rr_decay"
    return None
