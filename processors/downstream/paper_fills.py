"""The paper executor's mechanics: entry pricing, fills, stop/target triggers and closes.

Private to :mod:`processors.downstream.paper` (whose module docstring states the model); the
functions work on a step's :class:`~processors.downstream.paper_state.Draft` in place, so the
public steps stay pure.
"""

from __future__ import annotations

import math
from dataclasses import replace

from packs.risk import Execution
from processors.downstream.orders import (
    BPS,
    Fill,
    Liquidity,
    Order,
    OrderSide,
    cost_bps,
    entry_order_id,
    exit_order_id,
    fee_usd,
    is_widened,
    mid_price,
    order_side,
    pnl_vs_mid_bps,
    route_of,
    side_sign,
    slipped,
    touch,
    update_edge,
)
from processors.downstream.paper_state import Draft, EntryRequest, PendingEntry, Position
from processors.downstream.types import MINUTE_MS, ClosedTrade, Quote, Trade, sign


def exit_trigger(
    trade: Trade, quote: Quote, *, stop_only: bool = False
) -> tuple[str, float] | None:
    """Return ``(reason, trigger price)`` when the minute closes ``trade``, else None.

    Order of rules: open beyond the target -> ``take_profit`` at the target; open beyond the
    stop -> ``stop`` at the open (gap); stop touched -> ``stop`` at the stop (before a target
    touched in the same minute: conservative); target touched -> ``take_profit``.
    """
    s = sign(trade.side)
    adverse, favourable = (quote.low, quote.high) if s > 0 else (quote.high, quote.low)
    if not stop_only and s * (quote.open - trade.take_profit) >= 0:
        return "take_profit", trade.take_profit
    if s * (quote.open - trade.stop) <= 0:
        return "stop", quote.open
    if s * (adverse - trade.stop) <= 0:
        return "stop", trade.stop
    if not stop_only and s * (favourable - trade.take_profit) >= 0:
        return "take_profit", trade.take_profit
    return None


def entry_order(
    d: Draft,
    req: EntryRequest,
    params: Execution,
    allowance_bps: float | None,
    maker_offset_bps: float,
) -> Order:
    """Return the entry order for ``req``: open with its limit, or rejected with a reason."""
    maker = params.maker_only or params.post_only
    side = order_side(req.side, "entry")
    order = Order(
        order_id=entry_order_id(req.trade_id),
        trade_id=req.trade_id,
        asset_uid=req.asset_uid,
        symbol=req.symbol,
        side=side,
        kind="entry",
        type="limit",
        price=None,
        qty=req.qty,
        post_only=params.post_only,
        reduce_only=False,
        maker_only=params.maker_only,
        route=route_of(req.trade_id, params.rollout),
        created_ms=req.minute_ms,
        expires_ms=req.minute_ms + params.order_ttl_minutes * MINUTE_MS,
        regime=req.regime_name,
    )
    refusal = _refusal(d, req, order.order_id)
    if refusal is not None:
        return replace(order, status="rejected", reason=refusal)
    s = side_sign(side)
    if req.limit_price is not None:
        limit = req.limit_price
    elif maker:
        near = req.bid if side == "buy" else req.ask
        limit = (req.price if near is None else near) * (1.0 - s * maker_offset_bps * BPS)
    else:
        far = req.ask if side == "buy" else req.bid
        allow = params.slippage_bps if allowance_bps is None else allowance_bps
        limit = (req.price if far is None else far) * (1.0 + s * allow * BPS)
    if is_widened(d.edges.get(order.regime), req.minute_ms, params.realised_edge):
        mid = req.mid
        offset = s * (mid - limit) / mid
        offset += (params.realised_edge.widen_factor - 1.0) * abs(offset)
        limit = mid * (1.0 - s * offset)
        d.count("entries_widened_total", regime=order.regime)
    order = replace(order, price=limit)
    if not (math.isfinite(limit) and limit > 0):
        return replace(order, status="rejected", reason="invalid_order")
    if maker and _crosses(req, side, limit):
        return replace(order, status="rejected", reason="post_only_would_cross")
    return order


def _refusal(d: Draft, req: EntryRequest, order_id: str) -> str | None:
    s = sign(req.side)
    if d.stopped:
        return "stopped"
    if order_id in d.entries or req.trade_id in d.positions:
        return "duplicate"
    numbers = (req.qty, req.price, req.stop, req.take_profit)
    if not all(math.isfinite(x) and x > 0 for x in numbers):
        return "invalid_order"
    if s * (req.price - req.stop) <= 0 or s * (req.take_profit - req.price) <= 0:
        return "invalid_levels"
    return None


def _crosses(req: EntryRequest, side: OrderSide, limit: float) -> bool:
    s = side_sign(side)
    far = req.ask if side == "buy" else req.bid
    if far is not None:
        return s * (limit - far) >= 0
    return s * (limit - req.price) > 0


def clean_quote(d: Draft, q: Quote) -> Quote | None:
    """Return the quote fit to trade against, without a crossed book; None for a bad bar."""
    bar = (q.open, q.high, q.low, q.close)
    if not all(math.isfinite(x) and x > 0 for x in bar) or not (
        q.low <= min(q.open, q.close) and q.high >= max(q.open, q.close)
    ):
        d.count("quotes_invalid_total")
        return None
    if q.bid is None and q.ask is None:
        return q
    book = (q.bid, q.ask)
    if any(x is not None and not (math.isfinite(x) and x > 0) for x in book) or (
        q.bid is not None and q.ask is not None and q.bid > q.ask
    ):
        d.count("quotes_book_ignored_total")
        return replace(q, bid=None, ask=None)
    return q


def work_entry(d: Draft, pending: PendingEntry, q: Quote, params: Execution) -> None:
    """Fill, reject, expire or keep one working entry against the minute ``q``."""
    order = pending.order
    limit = order.price
    if limit is None:  # entries are always limits; a hand-made state may say otherwise
        d.cancel(order.order_id, "invalid_order")
        return
    s = side_sign(order.side)
    maker = order.post_only or order.maker_only
    if maker and q.minute_ms == order.created_ms + MINUTE_MS and s * (limit - q.open) > 0:
        d.cancel(order.order_id, "post_only_would_cross", status="rejected")
        return
    reach = q.low if order.side == "buy" else q.high
    if s * (reach - limit) <= 0:
        liquidity: Liquidity = "maker" if maker else "taker"
        expected = limit if maker else touch(q, order.side)
        price = limit if maker else slipped(expected, order.side, params.slippage_bps)
        price = price if s * (price - limit) <= 0 else limit  # never worse than the limit
        req = pending.request
        sp = sign(req.side)
        if sp * (price - req.stop) <= 0 or sp * (req.take_profit - price) <= 0:
            d.cancel(order.order_id, "price_through_levels")
        else:
            _fill_entry(d, pending, q, price, expected, liquidity, params)
        return
    if q.minute_ms >= order.expires_ms:
        d.cancel(order.order_id, "expired")


def _fill_entry(
    d: Draft,
    pending: PendingEntry,
    q: Quote,
    price: float,
    expected: float,
    liquidity: Liquidity,
    params: Execution,
) -> None:
    order, req = pending.order, pending.request
    fee = fee_usd(
        req.qty, price, params.maker_fee_bps if liquidity == "maker" else params.taker_fee_bps
    )
    edge = pnl_vs_mid_bps(order.side, price, mid_price(q))
    fill = Fill(
        fill_id=f"f:{order.order_id}",
        order_id=order.order_id,
        trade_id=req.trade_id,
        asset_uid=req.asset_uid,
        symbol=req.symbol,
        side=order.side,
        qty=req.qty,
        price=price,
        fee_usd=fee,
        liquidity=liquidity,
        slippage_bps=cost_bps(order.side, price, expected),
        minute_ms=q.minute_ms,
        pnl_vs_mid_bps=edge,
    )
    trade = Trade(
        trade_id=req.trade_id,
        asset_uid=req.asset_uid,
        symbol=req.symbol,
        cluster=req.cluster,
        tf=req.tf,
        side=req.side,
        qty=req.qty,
        entry_price=price,
        stop=req.stop,
        take_profit=req.take_profit,
        risk_usd=req.qty * abs(price - req.stop),
        risk_pct=req.risk_pct,
        leverage=req.leverage,
        opened_ms=q.minute_ms,
        route=order.route,
        initial_stop=req.stop,
    )
    del d.entries[order.order_id]
    d.cash -= fee
    d.fees += fee
    d.edges[order.regime] = update_edge(
        d.edges.get(order.regime), edge, q.minute_ms, params.realised_edge
    )
    pos = Position(trade=trade, regime=order.regime, entry_fee_usd=fee)
    d.positions[trade.trade_id] = pos
    d.out.orders.append(replace(order, status="filled"))
    d.out.fills.append(fill)
    d.out.opened.append(trade)
    d.count("trades_opened_total", route=order.route)
    d.count("fills_total", liquidity=liquidity)
    if liquidity == "maker":
        hit = exit_trigger(trade, q, stop_only=True)
        if hit is not None:
            close_position(d, pos, hit[1], hit[0], q.minute_ms, params, mid_price(q))


def close_position(
    d: Draft,
    pos: Position,
    level: float,
    reason: str,
    minute_ms: int,
    params: Execution,
    mid: float,
) -> None:
    """Close ``pos`` at ``level`` (a target at the level, else a market order with slippage)."""
    t = pos.trade
    xside = order_side(t.side, "exit")
    target = reason == "take_profit"
    liquidity: Liquidity = "maker" if target else "taker"
    price = level if target else slipped(level, xside, params.slippage_bps)
    fee = fee_usd(t.qty, price, params.maker_fee_bps if target else params.taker_fee_bps)
    order = Order(
        order_id=exit_order_id(t.trade_id),
        trade_id=t.trade_id,
        asset_uid=t.asset_uid,
        symbol=t.symbol,
        side=xside,
        kind="exit",
        type="limit" if target else "market",
        price=level if target else None,
        qty=t.qty,
        post_only=False,
        reduce_only=params.reduce_only_exits,
        maker_only=False,
        route=t.route,
        created_ms=minute_ms,
        expires_ms=minute_ms,
        status="filled",
        reason=reason,
        regime=pos.regime,
    )
    fill = Fill(
        fill_id=f"f:{order.order_id}",
        order_id=order.order_id,
        trade_id=t.trade_id,
        asset_uid=t.asset_uid,
        symbol=t.symbol,
        side=xside,
        qty=t.qty,
        price=price,
        fee_usd=fee,
        liquidity=liquidity,
        slippage_bps=cost_bps(xside, price, level),
        minute_ms=minute_ms,
        pnl_vs_mid_bps=pnl_vs_mid_bps(xside, price, mid),
    )
    gross = sign(t.side) * t.qty * (price - t.entry_price)
    pnl = gross - pos.entry_fee_usd - fee
    closed = ClosedTrade(
        trade=t,
        exit_price=price,
        closed_ms=minute_ms,
        pnl_usd=pnl,
        fees_usd=pos.entry_fee_usd + fee,
        r=pnl / t.risk_usd if t.risk_usd > 0 else 0.0,
        reason=reason,
    )
    del d.positions[t.trade_id]
    d.cash += gross - fee
    d.fees += fee
    d.realised += pnl
    d.out.orders.append(order)
    d.out.fills.append(fill)
    d.out.closed.append(closed)
    d.count("trades_closed_total", reason=reason)
    d.count("fills_total", liquidity=liquidity)
