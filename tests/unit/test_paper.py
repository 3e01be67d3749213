"""The paper executor: routing, entry pricing and fills, stops and targets, closes, the kill
switch, end of day, realised edge and state round trips (spec 001, spec 004 P0-2, P1-2, P1-3)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packs.risk import Execution, load_risk_policy
from processors.downstream.exit_advisor import Adjustment
from processors.downstream.orders import (
    EdgeState,
    Fill,
    Order,
    canary_draw,
    is_widened,
    route_of,
    update_edge,
)
from processors.downstream.paper import (
    EntryRequest,
    PaperBook,
    PaperOutputs,
    adjust_trade,
    apply_adjustment,
    cancel_all,
    close_trade,
    end_of_day,
    exit_trigger,
    mark_to_market,
    on_minute,
    on_quote,
    submit_entry,
    widened,
)
from processors.downstream.types import MINUTE_MS, Quote, Trade
from tests.kit.packs import changed

EXEC = load_risk_policy().execution
MAKER = changed(EXEC, post_only=True)
T0 = 1_756_891_800_000
BPS = 1e-4


def req(**kw: Any) -> EntryRequest:
    """A long BTC entry at 100 (book 99.9 / 100.1), stop 98, target 104, decided at T0."""
    base: dict[str, Any] = {
        "trade_id": "d:1", "asset_uid": 1, "symbol": "BTC", "cluster": "majors", "tf": "1m",
        "side": "long", "qty": 2.0, "price": 100.0, "stop": 98.0, "take_profit": 104.0,
        "risk_usd": 4.0, "risk_pct": 0.005, "leverage": 10.0, "minute_ms": T0,
        "bid": 99.9, "ask": 100.1,
    }  # fmt: skip
    base.update(kw)
    return EntryRequest(**base)


def quote(minute: int = 1, **kw: Any) -> Quote:
    """Asset 1's bar ``minute`` minutes after T0: a quiet 100 by default."""
    base: dict[str, Any] = {
        "asset_uid": 1, "symbol": "BTC", "minute_ms": T0 + minute * MINUTE_MS,
        "open": 100.0, "high": 100.2, "low": 99.8, "close": 100.0, "bid": 99.9, "ask": 100.1,
    }  # fmt: skip
    base.update(kw)
    return Quote(**base)


def opened(
    params: Execution = EXEC, book: PaperBook | None = None, **kw: Any
) -> tuple[PaperBook, Trade]:
    """A book with the default entry filled in minute T0+1."""
    book, order = submit_entry(book or PaperBook.new(10_000.0), req(**kw), params)
    assert order.status == "open"
    book, out = on_quote(book, quote(1, asset_uid=order.asset_uid), params)
    assert len(out.opened) == 1
    return book, out.opened[0]


# ---------------------------------------------------------------- routing (spec 001)


def test_route_of_modes_and_realised_canary_fraction() -> None:
    ro = EXEC.rollout
    assert route_of("d:1", replace_rollout(mode="disabled")) == "paper"
    assert route_of("d:1", replace_rollout(mode="full")) == "full"
    ids = [f"evt:{i}" for i in range(20_000)]
    routes = [route_of(i, ro) for i in ids]
    assert set(routes) == {"canary", "paper"}
    share = routes.count("canary") / len(ids)
    assert abs(share - ro.canary_fraction) < 0.01
    assert routes == [route_of(i, ro) for i in ids]  # deterministic
    other = [route_of(i, replace_rollout(rng_seed=ro.rng_seed + 1)) for i in ids]
    assert other != routes  # the seed matters
    assert all(0.0 <= canary_draw(i, 1337) < 1.0 for i in ids[:100])


def test_canary_draw_is_pinned() -> None:
    # sha256("1337:d:1")[:8] / 2**64: a change of the hash recipe reroutes every live trade.
    assert canary_draw("d:1", 1337) == pytest.approx(0.3092690, abs=1e-7)


def replace_rollout(**kw: Any) -> Any:
    return changed(EXEC, rollout=kw).rollout


def test_route_is_tagged_on_order_trade_and_counter() -> None:
    tid = next(f"d:{i}" for i in range(1000) if route_of(f"d:{i}", EXEC.rollout) == "canary")
    book, trade = opened(trade_id=tid)
    assert trade.route == "canary"
    assert book.counter("trades_opened_total", route="canary") == 1
    assert book.counter("trades_opened_total", route="paper") == 0
    assert book.counter("orders_submitted_total", route="canary") == 1


# ---------------------------------------------------------------- entries


def test_taker_entry_fills_only_in_a_later_minute_at_ask_plus_slippage() -> None:
    book, order = submit_entry(PaperBook.new(10_000.0), req(), EXEC)
    assert order.order_id == "o:d:1"
    assert order.price == pytest.approx(100.1 * (1 + 2 * BPS))  # far touch + allowance
    assert order.expires_ms == T0 + 5 * MINUTE_MS
    same, out = on_quote(book, quote(0, low=90.0), EXEC)  # the decision minute: no look-ahead
    assert out == PaperOutputs()
    assert same.open_orders == book.open_orders
    book, out = on_quote(book, quote(1, close=100.0, bid=99.96, ask=100.06), EXEC)
    (fill,) = out.fills
    assert fill.price == pytest.approx(100.06 * (1 + 2 * BPS))  # inside the limit
    assert fill.liquidity == "taker"
    assert fill.fee_usd == pytest.approx(2.0 * fill.price * 4.5 * BPS)
    assert fill.slippage_bps == pytest.approx(2.0)
    assert fill.pnl_vs_mid_bps == pytest.approx((100.01 - fill.price) / 100.01 / BPS)
    (trade,) = out.opened
    assert trade.entry_price == fill.price
    assert trade.opened_ms == T0 + MINUTE_MS
    assert trade.risk_usd == pytest.approx(2.0 * (fill.price - 98.0))
    assert trade.initial_stop == 98.0
    assert out.orders[0].status == "filled"
    assert book.open_orders == ()
    assert book.cash_usd == pytest.approx(10_000.0 - fill.fee_usd)
    assert book.fees_usd == pytest.approx(fill.fee_usd)


def test_taker_fill_is_never_worse_than_its_limit() -> None:
    book, order = submit_entry(PaperBook.new(10_000.0), req(), EXEC)
    assert order.price is not None
    # traded down to the limit, then ran away: the close's ask is far above the limit
    q = quote(1, open=100.5, low=order.price, high=101.0, close=100.9, bid=100.8, ask=101.0)
    _, out = on_quote(book, q, EXEC)
    assert out.fills[0].price == order.price


def test_short_taker_entry_mirrors() -> None:
    r = req(side="short", stop=102.0, take_profit=96.0)
    book, order = submit_entry(PaperBook.new(10_000.0), r, EXEC)
    assert order.side == "sell"
    assert order.price == pytest.approx(99.9 * (1 - 2 * BPS))
    _, out = on_quote(book, quote(1, bid=99.95, ask=100.05), EXEC)
    assert out.fills[0].price == pytest.approx(99.95 * (1 - 2 * BPS))
    assert out.opened[0].risk_usd == pytest.approx(2.0 * (102.0 - out.fills[0].price))


def test_unreached_entry_expires_after_ttl() -> None:
    book, order = submit_entry(PaperBook.new(10_000.0), req(), EXEC)
    assert order.price is not None
    high_bar = {"open": 101.0, "high": 101.5, "low": order.price + 0.01, "close": 101.0}
    for m in range(1, 5):
        book, out = on_quote(book, quote(m, **high_bar), EXEC)
        assert out.orders == ()
    assert len(book.open_orders) == 1
    book, out = on_quote(book, quote(5, **high_bar), EXEC)
    assert [(o.status, o.reason) for o in out.orders] == [("cancelled", "expired")]
    assert out.cancelled == out.orders
    assert book.open_orders == ()
    assert book.counter("orders_cancelled_total", reason="expired") == 1


def test_on_minute_expires_orders_of_assets_without_a_quote() -> None:
    book, _ = submit_entry(PaperBook.new(10_000.0), req(asset_uid=7), EXEC)
    book, out = on_minute(book, [quote(4)], T0 + 4 * MINUTE_MS, EXEC)
    assert len(book.open_orders) == 1
    book, out = on_minute(book, [quote(5)], T0 + 5 * MINUTE_MS, EXEC)
    assert [o.reason for o in out.cancelled] == ["expired"]
    assert book.open_orders == ()


def test_maker_entry_rests_at_the_touch_and_fills_at_its_limit() -> None:
    book, order = submit_entry(PaperBook.new(10_000.0), req(), MAKER)
    assert order.price == 99.9
    assert order.post_only
    book, out = on_quote(book, quote(1, low=99.95), EXEC)  # not reached
    assert out.fills == ()
    book, out = on_quote(book, quote(2, low=99.9), MAKER)
    (fill,) = out.fills
    assert (fill.price, fill.liquidity, fill.slippage_bps) == (99.9, "maker", 0.0)
    assert fill.fee_usd == pytest.approx(2.0 * 99.9 * 1.5 * BPS)


def test_post_only_that_would_cross_is_rejected_on_submit() -> None:
    book, order = submit_entry(PaperBook.new(10_000.0), req(limit_price=100.1), MAKER)
    assert (order.status, order.reason) == ("rejected", "post_only_would_cross")
    assert book.open_orders == ()
    assert book.counter("orders_rejected_total", reason="post_only_would_cross") == 1
    _, ok = submit_entry(PaperBook.new(10_000.0), req(limit_price=100.09), MAKER)
    assert ok.status == "open"
    # no book: the reference price is the touch
    _, no_book = submit_entry(
        PaperBook.new(1.0), req(bid=None, ask=None, limit_price=100.01), MAKER
    )
    assert no_book.reason == "post_only_would_cross"


def test_post_only_rejected_when_next_minute_opens_through_it() -> None:
    book, _ = submit_entry(PaperBook.new(10_000.0), req(), MAKER)
    book, out = on_quote(book, quote(1, open=99.8, low=99.5), MAKER)
    assert [(o.status, o.reason) for o in out.orders] == [("rejected", "post_only_would_cross")]
    assert out.fills == ()
    assert book.open_orders == ()


def test_maker_fill_minute_checks_the_stop_only() -> None:
    book, _ = submit_entry(PaperBook.new(10_000.0), req(), MAKER)
    _, out = on_quote(book, quote(1, low=97.0, high=105.0, close=99.0), MAKER)
    assert len(out.opened) == 1
    (closed,) = out.closed
    assert closed.reason == "stop"
    assert closed.exit_price == pytest.approx(98.0 * (1 - 2 * BPS))


def test_taker_fill_minute_does_not_check_exits() -> None:
    book, _ = submit_entry(PaperBook.new(10_000.0), req(), EXEC)
    book, out = on_quote(book, quote(1, low=97.5, close=100.0), EXEC)
    assert len(out.opened) == 1
    assert out.closed == ()
    assert len(book.positions) == 1


def test_fill_through_the_stop_is_not_taken() -> None:
    book, _ = submit_entry(PaperBook.new(10_000.0), req(), EXEC)
    _, out = on_quote(book, quote(1, open=99.0, low=97.0, close=97.5, bid=97.4, ask=97.6), EXEC)
    assert out.fills == ()
    assert [o.reason for o in out.cancelled] == ["price_through_levels"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"stop": 100.5}, "invalid_levels"),
        ({"take_profit": 99.0}, "invalid_levels"),
        ({"side": "short"}, "invalid_levels"),
        ({"qty": 0.0}, "invalid_order"),
        ({"price": math.nan}, "invalid_order"),
    ],
)
def test_bad_entries_are_rejected_with_a_reason(changes: dict[str, Any], reason: str) -> None:
    book, order = submit_entry(PaperBook.new(10_000.0), req(**changes), EXEC)
    assert (order.status, order.reason) == ("rejected", reason)
    assert book.entries == ()


def test_duplicate_trade_id_is_rejected() -> None:
    book, _ = submit_entry(PaperBook.new(10_000.0), req(), EXEC)
    book2, again = submit_entry(book, req(), EXEC)
    assert again.reason == "duplicate"
    assert book2.entries == book.entries
    book3, _ = on_quote(book, quote(1), EXEC)
    assert submit_entry(book3, req(), EXEC)[1].reason == "duplicate"  # now an open trade


# ---------------------------------------------------------------- stops and targets


def test_stop_closes_with_slippage_and_fees() -> None:
    book, trade = opened()
    entry_fee = book.fees_usd
    book, out = on_quote(book, quote(2, low=97.9, close=98.5), EXEC)
    (closed,) = out.closed
    exit_price = 98.0 * (1 - 2 * BPS)
    exit_fee = 2.0 * exit_price * 4.5 * BPS
    assert closed.reason == "stop"
    assert closed.exit_price == pytest.approx(exit_price)
    assert closed.fees_usd == pytest.approx(entry_fee + exit_fee)
    assert closed.pnl_usd == pytest.approx(2.0 * (exit_price - trade.entry_price) - closed.fees_usd)
    assert closed.r == pytest.approx(closed.pnl_usd / trade.risk_usd)
    assert book.realised_pnl_usd == pytest.approx(closed.pnl_usd)
    assert book.cash_usd == pytest.approx(10_000.0 + closed.pnl_usd)
    exit_order = next(o for o in out.orders if o.kind == "exit")
    assert exit_order.order_id == "o:d:1:exit:1"
    assert (exit_order.type, exit_order.reduce_only, exit_order.qty) == ("market", True, 2.0)
    assert out.fills[0].slippage_bps == pytest.approx(2.0)
    assert book.positions == ()
    assert book.counter("trades_closed_total", reason="stop") == 1


def test_take_profit_fills_at_the_level_as_maker() -> None:
    book, _ = opened()
    _, out = on_quote(book, quote(2, high=104.0, close=103.5), EXEC)
    (closed,) = out.closed
    assert (closed.reason, closed.exit_price) == ("take_profit", 104.0)
    assert out.fills[0].liquidity == "maker"
    assert out.fills[0].fee_usd == pytest.approx(2.0 * 104.0 * 1.5 * BPS)


def test_stop_and_target_in_one_minute_assume_the_stop() -> None:
    book, _ = opened()
    _, out = on_quote(book, quote(2, high=105.0, low=97.0), EXEC)
    assert out.closed[0].reason == "stop"


def test_gap_through_the_stop_fills_at_the_open() -> None:
    book, _ = opened()
    _, out = on_quote(book, quote(2, open=96.0, high=96.5, low=95.0, close=96.0), EXEC)
    assert out.closed[0].exit_price == pytest.approx(96.0 * (1 - 2 * BPS))
    assert out.fills[0].slippage_bps == pytest.approx((1 - 96.0 * (1 - 2 * BPS) / 96.0) / BPS)


def test_open_beyond_the_target_takes_the_target_first() -> None:
    book, _ = opened()
    _, out = on_quote(book, quote(2, open=105.0, high=105.0, low=97.0, close=97.5), EXEC)
    assert (out.closed[0].reason, out.closed[0].exit_price) == ("take_profit", 104.0)


def test_short_stop_and_target_mirror() -> None:
    short: dict[str, Any] = {"side": "short", "stop": 102.0, "take_profit": 96.0}
    book, _ = opened(**short)
    _, out = on_quote(book, quote(2, high=102.0), EXEC)
    assert out.closed[0].reason == "stop"
    assert out.closed[0].exit_price == pytest.approx(102.0 * (1 + 2 * BPS))
    _, out = on_quote(book, quote(2, low=96.0), EXEC)
    assert (out.closed[0].reason, out.closed[0].exit_price) == ("take_profit", 96.0)
    _, out = on_quote(book, quote(2, open=103.0, high=103.0, low=101.0, close=102.5), EXEC)
    assert out.closed[0].exit_price == pytest.approx(103.0 * (1 + 2 * BPS))


def test_exit_trigger_returns_none_inside_the_levels() -> None:
    _, trade = opened()
    assert exit_trigger(trade, quote(2, high=103.9, low=98.1)) is None
    assert exit_trigger(trade, quote(2, high=104.0), stop_only=True) is None


# ---------------------------------------------------------------- closes, adjustments


def test_close_trade_is_reduce_only() -> None:
    book, trade = opened()
    book, out = close_trade(
        book, trade.trade_id, price=101.0, minute_ms=T0 + 3 * MINUTE_MS, reason="max_hold",
        params=EXEC,
    )  # fmt: skip
    (closed,) = out.closed
    assert closed.reason == "max_hold"
    assert closed.exit_price == pytest.approx(101.0 * (1 - 2 * BPS))
    assert out.orders[0].qty == trade.qty
    assert out.orders[0].side == "sell"
    again, none = close_trade(
        book, trade.trade_id, price=101.0, minute_ms=T0 + 4 * MINUTE_MS, reason="x", params=EXEC
    )
    assert none == PaperOutputs()
    assert again == book


def test_adjust_trade_only_tightens_stops_and_widens_targets() -> None:
    book, trade = opened()
    m = T0 + 3 * MINUTE_MS
    same, t = adjust_trade(book, trade.trade_id, minute_ms=m, stop=97.0, take_profit=103.0)
    assert same == book
    assert t == trade
    book, t = adjust_trade(book, trade.trade_id, minute_ms=m, stop=99.5, take_profit=105.0)
    assert t is not None
    assert (t.stop, t.take_profit, t.last_adjust_ms) == (99.5, 105.0, m)
    assert book.trades == (t,)
    assert adjust_trade(book, "nope", minute_ms=m, stop=1.0) == (book, None)


def test_apply_adjustment_moves_and_closes() -> None:
    book, trade = opened()
    move = Adjustment("adj:d:1:x", trade.trade_id, T0 + 3 * MINUTE_MS, "move_sl",
                      trade.entry_price, trade.take_profit, "breakeven", 0.8)  # fmt: skip
    book, out = apply_adjustment(book, move, quote(3), EXEC)
    assert out == PaperOutputs()
    assert book.trades[0].stop == trade.entry_price
    close = replace(move, action="close", reason="hostile_flow", minute_ms=T0 + 4 * MINUTE_MS)
    book, out = apply_adjustment(book, close, quote(4), EXEC)
    assert out.closed[0].reason == "hostile_flow"
    assert out.closed[0].exit_price == pytest.approx(99.9 * (1 - 2 * BPS))  # sells at the bid
    assert out.fills[0].pnl_vs_mid_bps == pytest.approx(-(0.1 / 100 + 99.9 * 2 * BPS / 100) / BPS)
    assert apply_adjustment(book, close, quote(5), EXEC) == (book, PaperOutputs())


# ---------------------------------------------------------------- kill switch, end of day, MtM


def test_kill_switch_cancels_open_orders_and_stops_entries() -> None:
    book, _ = opened()
    book, _ = submit_entry(book, req(trade_id="d:2", asset_uid=2), EXEC)
    book, _ = submit_entry(book, req(trade_id="d:3", asset_uid=3), EXEC)
    book, cancelled = cancel_all(book, T0 + 2 * MINUTE_MS)
    assert [(o.order_id, o.status, o.reason) for o in cancelled] == [
        ("o:d:2", "cancelled", "kill_switch"),
        ("o:d:3", "cancelled", "kill_switch"),
    ]
    assert book.open_orders == ()
    assert (book.stopped, book.stopped_reason, book.stopped_ms) == (
        True,
        "kill_switch",
        T0 + 120_000,
    )
    book, refused = submit_entry(book, req(trade_id="d:4"), EXEC)
    assert (refused.status, refused.reason) == ("rejected", "stopped")
    assert book.entries == ()
    book, out = on_quote(book, quote(3, low=97.0), EXEC)  # open trades keep their stops
    assert out.closed[0].reason == "stop"


def test_end_of_day_carries_by_default_and_flattens_when_asked() -> None:
    book, _ = opened()
    book, _ = opened(book=book, trade_id="d:2", asset_uid=2, qty=0.05)  # notional ~5 USD < 10
    book, _ = opened(book=book, trade_id="d:3", asset_uid=3)
    quotes = [quote(2, asset_uid=1), quote(2, asset_uid=2)]  # asset 3 has no quote
    carried, out = end_of_day(book, quotes, T0 + 2 * MINUTE_MS, EXEC)
    assert (carried, out) == (book, PaperOutputs())
    flat = changed(EXEC, end_of_day={"close_at_daily_rollover": True})
    book, out = end_of_day(book, quotes, T0 + 2 * MINUTE_MS, flat)
    assert [(c.trade.trade_id, c.reason) for c in out.closed] == [("d:1", "eod")]
    assert out.closed[0].exit_price == pytest.approx(99.9 * (1 - 2 * BPS))
    assert [t.trade_id for t in book.trades] == ["d:2", "d:3"]


def test_mark_to_market_sums_longs_and_shorts_at_the_mid() -> None:
    book, long_trade = opened()
    short: dict[str, Any] = {
        "trade_id": "d:2",
        "asset_uid": 2,
        "side": "short",
        "stop": 102.0,
        "take_profit": 96,
    }
    book, short_trade = opened(book=book, **short)
    marks = [quote(2, bid=100.9, ask=101.1), quote(2, asset_uid=2, bid=98.9, ask=99.1)]
    expected = 2.0 * (101.0 - long_trade.entry_price) - 2.0 * (99.0 - short_trade.entry_price)
    assert mark_to_market(book, marks) == pytest.approx(expected)
    assert mark_to_market(book, marks[:1]) == pytest.approx(2.0 * (101.0 - long_trade.entry_price))


# ---------------------------------------------------------------- realised edge (spec 004 P1-2)

EDGE = EXEC.realised_edge  # span 30 min, floor 6 bps, sustain 30 min, widen 1.5


def test_edge_ewma_weights_by_elapsed_stream_minutes() -> None:
    s = update_edge(None, -10.0, T0, EDGE)
    assert (s.ewma_bps, s.n_fills, s.below_since_ms) == (-10.0, 1, T0)
    alpha = 2 / 31
    s2 = update_edge(s, 2.0, T0 + 3 * MINUTE_MS, EDGE)
    keep = (1 - alpha) ** 3
    assert s2.ewma_bps == pytest.approx(keep * -10.0 + (1 - keep) * 2.0)
    assert s2.below_since_ms == T0  # still below -6: the clock keeps running
    same_minute = update_edge(s2, 2.0, T0 + 3 * MINUTE_MS, EDGE)
    assert same_minute.ewma_bps == pytest.approx((1 - alpha) * s2.ewma_bps + alpha * 2.0)
    recovered = update_edge(s2, 50.0, T0 + 4 * MINUTE_MS, EDGE)
    assert recovered.ewma_bps >= -6.0
    assert recovered.below_since_ms is None


def test_widened_after_sustain_minutes_until_recovery() -> None:
    s = update_edge(None, -20.0, T0, EDGE)
    assert not is_widened(s, T0 + 29 * MINUTE_MS, EDGE)
    assert is_widened(s, T0 + 30 * MINUTE_MS, EDGE)
    assert not is_widened(
        update_edge(s, 500.0, T0 + 31 * MINUTE_MS, EDGE), T0 + 31 * MINUTE_MS, EDGE
    )
    assert not is_widened(None, T0, EDGE)


def bad_fill_book(params: Execution) -> PaperBook:
    """A book whose ``1m`` regime has had one -50 bps fill at T0 (widened from T0 + 30 min)."""
    return replace(PaperBook.new(10_000.0), edges=(("1m", update_edge(None, -50.0, T0, EDGE)),))


def test_widened_regime_moves_maker_quotes_further_from_the_mid() -> None:
    book = bad_fill_book(MAKER)
    late = T0 + 30 * MINUTE_MS
    assert widened(book, "1m", late, EDGE)
    assert not widened(book, "15m", late, EDGE)
    _, normal = submit_entry(book, req(minute_ms=T0 + MINUTE_MS), MAKER)
    book2, wide = submit_entry(book, req(minute_ms=late), MAKER)
    assert normal.price == 99.9
    assert wide.price == pytest.approx(100.0 - 1.5 * 0.1)  # 1.5 x the half spread from the mid
    assert book2.counter("entries_widened_total", regime="1m") == 1
    _, other = submit_entry(book, req(minute_ms=late, regime="15m"), MAKER)
    assert other.price == 99.9


def test_widened_regime_makes_taker_limits_less_aggressive() -> None:
    book = bad_fill_book(EXEC)
    _, normal = submit_entry(book, req(), EXEC)
    _, wide = submit_entry(book, req(minute_ms=T0 + 30 * MINUTE_MS), EXEC)
    assert normal.price is not None
    assert wide.price is not None
    concession = normal.price - 100.0
    assert wide.price - 100.0 == pytest.approx(0.5 * concession)


def test_entry_fills_feed_the_regime_ewma() -> None:
    book, _ = submit_entry(PaperBook.new(10_000.0), req(regime="vol_hi"), MAKER)
    book, out = on_quote(book, quote(1, low=99.0, close=99.2, bid=99.1, ask=99.3), MAKER)
    edge = book.edge("vol_hi")
    assert edge is not None
    assert edge.ewma_bps == pytest.approx(out.fills[0].pnl_vs_mid_bps)
    assert edge.ewma_bps == pytest.approx((99.2 - 99.9) / 99.2 / BPS)  # adverse selection
    assert edge.below_since_ms == T0 + MINUTE_MS
    book, _ = on_quote(book, quote(2, low=97.0, close=97.5), MAKER)  # the stop: not an entry
    assert book.edge("vol_hi") == edge


# ---------------------------------------------------------------- state, determinism


def test_records_and_book_round_trip_through_json() -> None:
    book, _ = opened()
    book, _ = submit_entry(book, req(trade_id="d:2", asset_uid=2), EXEC)
    book, _ = cancel_all(book, T0 + 2 * MINUTE_MS)
    book = replace(book, edges=(("1m", EdgeState(-7.0, T0, 3, T0)),))
    data = json.loads(json.dumps(book.to_json()))
    assert PaperBook.from_json(data) == book
    order = book.positions[0]
    assert order.trade == Trade.from_json(json.loads(json.dumps(order.trade.to_json())))
    o = Order("o:x", "x", 1, "BTC", "buy", "entry", "limit", 1.0, 1.0, True, False, True,
              "canary", T0, T0 + 1, "rejected", "stopped", "1m")  # fmt: skip
    assert Order.from_json(json.loads(json.dumps(o.to_json()))) == o
    f = Fill("f:o:x", "o:x", "x", 1, "BTC", "sell", 1.0, 2.0, 0.1, "maker", 0.0, T0, -1.5)
    assert Fill.from_json(json.loads(json.dumps(f.to_json()))) == f
    with pytest.raises(ValueError, match="version"):
        PaperBook.from_json({**data, "v": 99})


def test_invalid_bars_are_skipped_and_crossed_books_ignored() -> None:
    book, _ = opened()
    same, out = on_quote(book, quote(2, high=99.0, low=97.0, close=100.0), EXEC)  # high < close
    assert out == PaperOutputs()
    assert same.counter("quotes_invalid_total") == 1
    assert same.positions == book.positions
    _, out = on_quote(book, quote(2, bid=101.0, ask=100.0, high=104.0), EXEC)
    assert out.closed[0].reason == "take_profit"  # the bar still counts


def script(book: PaperBook, path: list[Any], start: int = 0) -> list[Any]:
    """From minute ``start``: run each bar, then submit an entry (long on even minutes, short on
    odd); return every step's outputs, order and book JSON."""
    seen: list[Any] = []
    for m in range(start, len(path)):
        o, h, lo, c = path[m]
        minute = T0 + m * MINUTE_MS
        q = Quote(1, "BTC", minute, o, h, lo, c, c - 0.05, c + 0.05)
        book, out = on_minute(book, [q], minute, EXEC)
        side = "long" if m % 2 == 0 else "short"
        stop, tp = (c * 0.99, c * 1.02) if side == "long" else (c * 1.01, c * 0.98)
        r = req(trade_id=f"d:{m}", side=side, price=c, bid=c - 0.05, ask=c + 0.05,
                stop=stop, take_profit=tp, minute_ms=minute)  # fmt: skip
        book, order = submit_entry(book, r, EXEC)
        seen.append([out, order, book.to_json()])
    return seen


bars = st.lists(
    st.tuples(st.floats(95, 105), st.floats(0, 2), st.floats(0, 2), st.floats(0, 1)).map(
        lambda t: (t[0], t[0] + t[1], t[0] - t[2], t[0] - t[2] + t[3] * (t[1] + t[2]))
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(bars)
def test_replays_are_identical_and_money_adds_up(path: list[Any]) -> None:
    first = script(PaperBook.new(10_000.0), path)
    assert first == script(PaperBook.new(10_000.0), path)
    book = PaperBook.from_json(first[-1][2])
    open_fees = math.fsum(p.entry_fee_usd for p in book.positions)
    assert book.cash_usd == pytest.approx(10_000.0 + book.realised_pnl_usd - open_fees)
    for out, _, _ in first:
        for f in out.fills:
            assert f.fee_usd >= 0
        for t in out.opened:
            assert t.opened_ms > int(t.trade_id[2:]) * MINUTE_MS + T0  # a later minute


@settings(max_examples=30, deadline=None)
@given(bars, st.integers(1, 29))
def test_restart_from_stored_book_gives_the_same_outputs(path: list[Any], cut: int) -> None:
    cut = min(cut, len(path))
    full = script(PaperBook.new(10_000.0), path)
    stored = PaperBook.from_json(json.loads(json.dumps(full[cut - 1][2])))
    assert script(stored, path, cut) == full[cut:]
