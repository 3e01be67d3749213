"""The paper executor: entries, stops, targets, closes and the kill switch, one minute at a time.

Spec 001 "Exchange modes" and "Canary & Rollback", spec 004 P0-2 (the kill switch cancels open
orders), P1-2 (realised edge per regime) and P1-3 (end of day), DESIGN §9. Every step is pure:
``(book, input) -> (book, outputs)`` with the book an explicit, versioned value
(:class:`~processors.downstream.paper_state.PaperBook`); nothing reads a clock or draws a
random number.

The model, in stream time (a minute is named by its end, its quote is the sealed bar):

* **Entries** are limit orders created at minute t that may only fill against quotes of minutes
  after t, until ``expires_ms = t + order_ttl_minutes`` (then cancelled, ``expired``). A buy
  fills when the minute's low reaches its limit (a sell: the high).
  - *Taker* (default): a marketable limit ``allowance_bps`` beyond the far touch of minute t. It
    fills at the fill minute's closing ask (bid for a sell; the close without a book) plus
    ``slippage_bps``, never worse than the limit, at the taker fee.
  - *Maker* (``maker_only`` or ``post_only``): at the near touch of minute t
    (``maker_offset_bps`` behind it), filled at the limit at the maker fee. A maker limit that
    would cross the book is rejected (``post_only_would_cross``) when submitted, and again when
    the next minute opens through it (the order would have crossed on arrival).
  - A fill at or beyond the trade's stop or target is not taken (``price_through_levels``).
  - A widened regime (spec 004 P1-2) moves the limit's passive offset from the mid ``o`` to
    ``o + (widen_factor - 1) * |o|``: a maker quote ``widen_factor`` times as far from the mid, a
    taker limit accepting ``2 - widen_factor`` times its price concession.
* **Stops and targets** live on the open trade (the only resting orders are entries). From the
  minute after the entry fill, a minute whose range touches the stop or the target closes the
  trade: opening beyond the target -> target; opening beyond the stop -> stop at the open (gap);
  else the stop if touched (**when both are touched in one minute the stop is assumed first**:
  conservative), else the target. Stops fill as taker market orders with ``slippage_bps``;
  targets as maker limits exactly at the level. A maker entry's own fill minute is checked for
  its stop only (the stop may come after the fill; the target cannot be told apart).
* **Routes**: every trade is paper-filled; ``canary``/``full`` are labels (spec 001).
* **Money**: ``cash_usd`` = starting equity + realised PnL - fees of open trades' entries; PnL of
  a closed trade is after both fees. Funding and margin are not simulated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

from packs.risk import Execution, RealisedEdge
from processors.downstream.exit_advisor import Adjustment
from processors.downstream.orders import Order, is_widened, mid_price, order_side, touch
from processors.downstream.paper_fills import (
    clean_quote,
    close_position,
    entry_order,
    exit_trigger,
    work_entry,
)
from processors.downstream.paper_state import (
    Draft,
    EntryRequest,
    PaperBook,
    PaperOutputs,
    PendingEntry,
)
from processors.downstream.types import Quote, Trade, sign

__all__ = [
    "EntryRequest",
    "PaperBook",
    "PaperOutputs",
    "adjust_trade",
    "apply_adjustment",
    "cancel_all",
    "close_trade",
    "end_of_day",
    "exit_trigger",
    "flatten",
    "mark_to_market",
    "on_minute",
    "on_quote",
    "submit_entry",
    "widened",
]


def widened(book: PaperBook, regime: str, minute_ms: int, params: RealisedEdge) -> bool:
    """Return True while ``regime``'s entries are widened (spec 004 P1-2).

    That is while its realised-edge EWMA has been below ``-cost_floor_bps`` for
    ``sustain_minutes``.
    """
    return is_widened(book.edge(regime), minute_ms, params)


def submit_entry(
    book: PaperBook,
    request: EntryRequest,
    params: Execution,
    *,
    allowance_bps: float | None = None,
    maker_offset_bps: float = 0.0,
) -> tuple[PaperBook, Order]:
    """Place a trade's entry order (see the module docstring for the pricing).

    A refusal is a result, not an exception: the order comes back ``rejected`` with a reason
    (``stopped``, ``duplicate``, ``invalid_order``, ``invalid_levels``,
    ``post_only_would_cross``) and is not kept; only the book's counters change.

    Args:
        book: The executor's state.
        request: The sized decision (its ``minute_ms`` is the decision minute).
        params: The pack's execution section.
        allowance_bps: How far beyond the far touch a taker limit may fill (default
            ``slippage_bps``; not in the pack).
        maker_offset_bps: How far behind the near touch a maker limit rests (default 0: at the
            touch; not in the pack).
    """
    d = Draft(book)
    order = entry_order(d, request, params, allowance_bps, maker_offset_bps)
    if order.status == "rejected":
        d.count("orders_rejected_total", reason=order.reason or "")
    else:
        d.entries[order.order_id] = PendingEntry(order, request)
        d.count("orders_submitted_total", route=order.route)
    return d.freeze()[0], order


def on_quote(book: PaperBook, quote: Quote, params: Execution) -> tuple[PaperBook, PaperOutputs]:
    """Run one asset's sealed minute: its stops and targets first, then its working entries.

    A quote whose bar is not a valid positive OHLC is skipped (``quotes_invalid_total``); a
    crossed or non-positive book is ignored and the close stands in for it.
    """
    d = Draft(book)
    q = clean_quote(d, quote)
    if q is None:
        return d.freeze()
    for pos in sorted(d.positions.values(), key=lambda p: p.trade.trade_id):
        if pos.trade.asset_uid == q.asset_uid and pos.trade.opened_ms < q.minute_ms:
            hit = exit_trigger(pos.trade, q)
            if hit is not None:
                close_position(d, pos, hit[1], hit[0], q.minute_ms, params, mid_price(q))
    for order_id in sorted(d.entries):
        pending = d.entries[order_id]
        if pending.order.asset_uid == q.asset_uid and pending.order.created_ms < q.minute_ms:
            work_entry(d, pending, q, params)
    return d.freeze()


def on_minute(
    book: PaperBook, quotes: Iterable[Quote], minute_ms: int, params: Execution
) -> tuple[PaperBook, PaperOutputs]:
    """Run one sealed minute of every asset.

    :func:`on_quote` for every quote (by ``asset_uid``), then the entries of assets that had no
    quote expire when ``expires_ms <= minute_ms``.
    """
    outputs = PaperOutputs()
    for quote in sorted(quotes, key=lambda q: q.asset_uid):
        book, out = on_quote(book, quote, params)
        outputs = outputs + out
    d = Draft(book)
    for order_id in sorted(d.entries):
        order = d.entries[order_id].order
        if order.expires_ms <= minute_ms:
            d.cancel(order_id, "expired")
    book, out = d.freeze()
    return book, outputs + out


def close_trade(
    book: PaperBook,
    trade_id: str,
    *,
    price: float,
    minute_ms: int,
    reason: str,
    params: Execution,
    mid: float | None = None,
) -> tuple[PaperBook, PaperOutputs]:
    """Close a whole open trade with a reduce-only market order at ``price`` plus slippage.

    Reduce-only: the exit's quantity is the position's, and an unknown (already closed) trade is
    a no-op, so a close never opens or grows a position. ``mid`` (default ``price``) prices the
    fill's ``pnl_vs_mid_bps``.
    """
    d = Draft(book)
    pos = d.positions.get(trade_id)
    if pos is not None:
        close_position(d, pos, price, reason, minute_ms, params, price if mid is None else mid)
    return d.freeze()


def adjust_trade(
    book: PaperBook,
    trade_id: str,
    *,
    minute_ms: int,
    stop: float | None = None,
    take_profit: float | None = None,
) -> tuple[PaperBook, Trade | None]:
    """Move an open trade's stop and target, monotonically (spec 003 §13).

    A stop only tightens (a long's only rises), a target only widens (a long's only rises); a
    move the other way is ignored. ``last_adjust_ms`` is set when something moved. Returns the
    trade as it now stands (None when it is not open).
    """
    d = Draft(book)
    pos = d.positions.get(trade_id)
    if pos is None:
        return book, None
    t = pos.trade
    pick = max if t.side == "long" else min
    new_stop = t.stop if stop is None else pick(t.stop, stop)
    new_tp = t.take_profit if take_profit is None else pick(t.take_profit, take_profit)
    if new_stop == t.stop and new_tp == t.take_profit:
        return book, t
    t = replace(t, stop=new_stop, take_profit=new_tp, last_adjust_ms=minute_ms)
    d.positions[trade_id] = replace(pos, trade=t)
    d.count("trade_adjustments_total")
    return d.freeze()[0], t


def apply_adjustment(
    book: PaperBook, adjustment: Adjustment, quote: Quote, params: Execution
) -> tuple[PaperBook, PaperOutputs]:
    """Carry out the exit advisor's advice: a close at the quote's touch, or a level move."""
    if adjustment.action == "close":
        pos = book.position(adjustment.trade_id)
        if pos is None:
            return book, PaperOutputs()
        xside = order_side(pos.trade.side, "exit")
        return close_trade(
            book,
            adjustment.trade_id,
            price=touch(quote, xside),
            minute_ms=adjustment.minute_ms,
            reason=adjustment.reason,
            params=params,
            mid=mid_price(quote),
        )
    book, _ = adjust_trade(
        book,
        adjustment.trade_id,
        minute_ms=adjustment.minute_ms,
        stop=adjustment.new_stop,
        take_profit=adjustment.new_take_profit,
    )
    return book, PaperOutputs()


def cancel_all(
    book: PaperBook, minute_ms: int, reason: str = "kill_switch"
) -> tuple[PaperBook, tuple[Order, ...]]:
    """Cancel every open order and stop the executor (spec 004 P0-2, the kill switch).

    Afterwards :func:`submit_entry` rejects with ``stopped``; open trades keep their stops and
    targets and may still be closed (exits are reduce-only). ``minute_ms`` is recorded as the
    stop time.
    """
    d = Draft(book)
    cancelled = tuple(d.cancel(order_id, reason) for order_id in sorted(d.entries))
    d.stopped, d.stopped_reason, d.stopped_ms = True, reason, minute_ms
    d.count("kill_switch_total", reason=reason)
    return d.freeze()[0], cancelled


def flatten(
    book: PaperBook,
    quotes: Iterable[Quote],
    minute_ms: int,
    params: Execution,
    *,
    reason: str,
    min_notional_usd: float = 0.0,
) -> tuple[PaperBook, PaperOutputs]:
    """Close every open trade with notional ``qty * mid >= min_notional_usd`` at its touch.

    A trade without a quote (no price to close at) or below the notional is carried.
    """
    by_asset = {q.asset_uid: q for q in quotes}
    d = Draft(book)
    for trade_id in sorted(d.positions):
        pos = d.positions[trade_id]
        quote = by_asset.get(pos.trade.asset_uid)
        if quote is None:
            continue
        mid = mid_price(quote)
        if pos.trade.qty * mid >= min_notional_usd:
            xside = order_side(pos.trade.side, "exit")
            close_position(d, pos, touch(quote, xside), reason, minute_ms, params, mid)
    return d.freeze()


def end_of_day(
    book: PaperBook, quotes: Iterable[Quote], minute_ms: int, params: Execution
) -> tuple[PaperBook, PaperOutputs]:
    """At the 00:00 UTC rollover: flatten (``eod``) or carry the open trades (spec 004 P1-3).

    With ``close_at_daily_rollover`` every trade whose notional is at least
    ``min_close_notional_usd`` is closed at the rollover minute's closing touch; the rest (and
    everything when the flag is off) is carried into the new day. The caller decides when the
    day rolls (the first sealed minute with ``minute_ms % DAY_MS == 0``).
    """
    eod = params.end_of_day
    if not eod.close_at_daily_rollover:
        return book, PaperOutputs()
    return flatten(
        book, quotes, minute_ms, params, reason="eod", min_notional_usd=eod.min_close_notional_usd
    )


def mark_to_market(book: PaperBook, quotes: Iterable[Quote]) -> float:
    """Return the open trades' unrealised PnL in USD at the quotes' mids (fees left out).

    A trade whose asset has no quote counts 0.
    """
    by_asset = {q.asset_uid: q for q in quotes}
    parts = []
    for pos in book.positions:
        quote = by_asset.get(pos.trade.asset_uid)
        if quote is not None:
            t = pos.trade
            parts.append(sign(t.side) * t.qty * (mid_price(quote) - t.entry_price))
    return math.fsum(parts)
