"""Risk-based sizing: one :class:`Decision` per signal (DESIGN §9, spec 000 "Wiring", spec 001).

:func:`size` applies, in order: the risk gate (:func:`~.risk.gate`), one position per symbol,
a usable price, ``min_free_balance_usd``, the HRP cluster scale (``risk_pct *= hrp_scale``), the
CVaR leverage cap (``max_lev = min(leverage, cvar_cap)``), the quantity (the smaller of the risk
quantity ``equity * risk_pct / stop_distance`` and spec 001's :func:`compute_order_qty`, floored
to the lot step), the exchange minimums (a signal is dropped, never inflated), the
near-liquidation guard for longs and shorts, and the expected edge after costs and funding
(spec 004 P1-1). A denial is a ``Decision`` with ``action="drop"`` and its reason.

Every decision records the overlay inputs it used (HRP budget date, version and scale, CVaR cap,
sample count and source, funding cost), so a replay reproduces it.

Costs are in basis points of notional: the round trip is the entry (maker fee when
``maker_only``, else taker fee + slippage) plus a taker exit with slippage (stops are market
orders). Funding is priced over ``expected_hold_minutes``; a position only ever *pays* in this
estimate: funding it would receive (a short under positive funding, a long under negative) is
not counted as edge, so the holding cost is never underestimated and no trade passes the edge
filter on funding it merely hopes to collect. Edge and cost share the notional as base, so the
leverage of spec 004's ``funding_rate * leverage * periods`` (a cost per unit of margin) cancels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from packs.risk import Execution, RiskPolicy
from processors.downstream.risk import RiskState, gate
from processors.downstream.types import Quote, Side, Signal, sign

PILL_HRP = "Cluster budget tight"
PILL_CVAR = "Tail-risk cap applied"
_SNAP = 1e-9  # relative slack: 332.99999999999994 steps are 333 steps, 332.9 are 332


def floor_to_step(value: float, step: float) -> float:
    """Return ``value`` floored to a whole number of ``step`` (0.0 for non-positive input).

    Float division leaves noise (``0.3 / 0.1 = 2.9999999999999996``): a count within a relative
    1e-9 of a whole number snaps to it, otherwise it is floored, so the result never exceeds
    ``value`` by more than that noise. The product goes through the step's decimal text, so
    ``333 * 0.001`` is ``0.333``, not ``0.33300000000000002``.
    """
    if not (math.isfinite(value) and value > 0 and math.isfinite(step) and step > 0):
        return 0.0
    count = value / step
    whole = round(count)
    steps = whole if abs(count - whole) <= _SNAP * max(1.0, count) else math.floor(count)
    return float(steps * Decimal(repr(step)))


def compute_order_qty(
    price: float, free_balance: float, leverage: float, notional_cap: float, lot_step: float
) -> float:
    """Return ``floor((min(cap, free_balance * leverage) / price) / lot_step) * lot_step``.

    Spec 001 "Sizing & Near-Liq Guard": BTC at 60k with a large free balance, leverage 10, cap
    20k and lot step 0.001 gives 0.333. Non-positive price or leverage gives 0.0.
    """
    if not (price > 0 and leverage > 0):
        return 0.0
    return floor_to_step(min(notional_cap, free_balance * leverage) / price, lot_step)


def liquidation_price(
    entry: float, side: Side, leverage: float, maintenance_margin: float
) -> float:
    """Return the isolated-margin liquidation estimate at ``leverage``.

    Long: ``entry * (1 - 1/L + mm)``; short: ``entry * (1 + 1/L - mm)``.
    """
    return entry * (1.0 - sign(side) * (1.0 / leverage - maintenance_margin))


def funding_cost_bps(
    funding_rate: float, side: Side, *, hold_minutes: float, periods_per_day: float
) -> float:
    """Return the funding a position pays over ``hold_minutes``, in bps of notional (>= 0).

    ``funding_rate`` is per funding interval (longs pay when > 0). Funding the position would
    receive counts as 0, not as a credit (see the module docstring).
    """
    periods = hold_minutes * periods_per_day / 1440.0
    return max(0.0, sign(side) * funding_rate * 1e4 * periods)


def round_trip_cost_bps(execution: Execution) -> float:
    """Return entry plus exit fees and slippage in bps (exit: taker with slippage)."""
    exit_bps = execution.taker_fee_bps + execution.slippage_bps
    entry_bps = execution.maker_fee_bps if execution.maker_only else exit_bps
    return entry_bps + exit_bps


@dataclass(frozen=True, slots=True)
class Decision:
    """The sizing outcome of one signal, with every input a replay needs.

    ``action="drop"`` carries its ``drop_reason`` and ``qty = risk_usd = 0``; price, stop and
    edge fields are None when the drop came before they were computed. ``risk_pct`` is after the
    HRP scale, ``leverage`` after the CVaR cap, ``risk_usd`` is 1 R of the order
    (``qty * |price - stop|``).
    """

    decision_id: str
    event_id: str
    asset_uid: int
    symbol: str
    cluster: str
    tf: str
    side: Side
    minute_ms: int
    action: Literal["open", "drop"]
    drop_reason: str | None
    qty: float
    price: float | None
    stop: float | None
    take_profit: float | None
    leverage: float
    risk_pct: float
    risk_usd: float
    hrp_budget_date: str | None
    hrp_budget_version: str | None
    hrp_scale: float
    cvar_cap_max_lev: float | None
    cvar_samples: int
    cvar_source: str | None
    funding_cost_bps: float | None
    expected_edge_bps: float | None
    pills: tuple[str, ...]
    risk_policy_rev: int

    def to_json(self) -> dict[str, Any]:
        """Return the decision as JSON data (``pills`` as a list)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["pills"] = list(self.pills)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild from :meth:`to_json` output."""
        return cls(**{**data, "pills": tuple(data["pills"])})


def decision_id(event_id: str) -> str:
    """Return the decision's id, deterministic from the event's (it is also the trade id)."""
    return f"d:{event_id}"


def _drop(decision: Decision, reason: str) -> Decision:
    return dataclasses.replace(decision, action="drop", drop_reason=reason, qty=0.0, risk_usd=0.0)


def _entry_price(quote: Quote | None, side: Side) -> float | None:
    if quote is None:
        return None
    book = quote.ask if side == "long" else quote.bid
    price = book if book is not None and book > 0 else quote.close
    return price if math.isfinite(price) and price > 0 else None


def _stop_distance(quote: Quote, price: float, params: RiskPolicy) -> float:
    atr = quote.atr
    if atr is not None and math.isfinite(atr) and atr > 0:
        return params.sizing.sl_k_atr * atr
    return params.sizing.assumed_sl_pct * price


def _quantity(
    d: Decision,
    price: float,
    stop_dist: float,
    equity: float,
    free_balance: float,
    params: RiskPolicy,
) -> Decision:
    sizing = params.sizing
    step = sizing.lot_steps.get(d.symbol, sizing.lot_step)
    qty_risk = equity * d.risk_pct / stop_dist
    qty_cap = compute_order_qty(price, free_balance, d.leverage, sizing.notional_cap_usd, step)
    if d.leverage < sizing.leverage and qty_cap < qty_risk:
        uncapped = compute_order_qty(
            price, free_balance, sizing.leverage, sizing.notional_cap_usd, step
        )
        if qty_cap < uncapped:  # the CVaR cap, not the notional cap, cut the quantity
            d = dataclasses.replace(d, pills=(*d.pills, PILL_CVAR))
    qty = floor_to_step(min(qty_risk, qty_cap), step)
    if qty <= 0 or qty < sizing.min_qty:
        return _drop(d, "below_min_qty")
    if qty * price < sizing.min_notional_usd:
        return _drop(d, "below_min_notional")
    return dataclasses.replace(d, qty=qty, risk_usd=qty * stop_dist)


def _near_liquidation(
    d: Decision, price: float, stop_dist: float, params: RiskPolicy
) -> str | None:
    guard = params.controls.near_liquidation
    if not guard.enabled:
        return None
    liq = liquidation_price(price, d.side, d.leverage, guard.maintenance_margin_pct)
    if abs(price - liq) < guard.sl_buffer_multiplier * stop_dist:
        return f"near_liquidation_{d.side}"
    return None


def _edge(d: Decision, signal: Signal, quote: Quote, params: RiskPolicy) -> Decision:
    sizing = params.sizing
    rate = quote.funding_rate
    funding = None
    if rate is not None and math.isfinite(rate):
        funding = funding_cost_bps(
            rate,
            d.side,
            hold_minutes=sizing.expected_hold_minutes,
            periods_per_day=sizing.funding_periods_per_day,
        )
    gross = signal.severity * sizing.edge_per_severity_bps
    edge = gross - round_trip_cost_bps(params.execution) - (funding or 0.0)
    d = dataclasses.replace(d, funding_cost_bps=funding, expected_edge_bps=edge)
    return _drop(d, "edge_below_min") if edge < sizing.min_edge_bps else d


def _pills(hrp_scale: float) -> tuple[str, ...]:
    """The HRP pill; the CVaR pill is added by :func:`_quantity` when the cap cut the size."""
    return (PILL_HRP,) if hrp_scale < 1.0 else ()


def size(
    signal: Signal,
    quote: Quote | None,
    risk_state: RiskState,
    *,
    equity: float,
    free_balance: float,
    hrp_scale: float,
    hrp_budget_date: str | None,
    hrp_budget_version: str | None,
    cvar_max_lev: float | None,
    cvar_samples: int,
    cvar_source: str | None,
    open_symbols: Collection[str],
    params: RiskPolicy,
    minute_ms: int | None = None,
) -> Decision:
    """Decide whether and how much to trade on ``signal`` (see the module docstring for order).

    Args:
        signal: The event to trade, with its side.
        quote: The asset's sealed minute (ask for longs / bid for shorts, else close; ATR for the
            stop, funding rate for the cost). None: dropped as ``no_price``.
        risk_state: The portfolio state the gate reads.
        equity: Equity in USD that ``risk_pct`` applies to.
        free_balance: Free balance in USD (spec 001's ``free_balance``).
        hrp_scale: The cluster's HRP scale; clamped into [0, 1], NaN taken as ``hrp.min_scale``.
        hrp_budget_date: Date of the HRP budget used (recorded only).
        hrp_budget_version: Version of the HRP budget used (recorded only).
        cvar_max_lev: The CVaR leverage cap of (symbol, tf), None when there is none.
        cvar_samples: Loss samples behind the cap (recorded only).
        cvar_source: Where the cap came from, e.g. own samples or the class prior (recorded).
        open_symbols: Symbols with an open or pending position: a second one is ``already_open``.
        params: The risk pack.
        minute_ms: Stream time of the decision; default the signal's ``exchange_ts``.

    Returns:
        One decision; ``decision_id`` is ``"d:" + event_id``.
    """
    sizing = params.sizing
    scale = params.hrp.min_scale if math.isnan(hrp_scale) else min(1.0, max(0.0, hrp_scale))
    leverage = sizing.leverage if cvar_max_lev is None else min(sizing.leverage, cvar_max_lev)
    d = Decision(
        decision_id=decision_id(signal.event_id),
        event_id=signal.event_id,
        asset_uid=signal.asset_uid,
        symbol=signal.symbol,
        cluster=params.hrp.cluster_map.get(signal.symbol, params.hrp.default_cluster),
        tf=signal.tf,
        side=signal.side,
        minute_ms=signal.exchange_ts if minute_ms is None else minute_ms,
        action="open",
        drop_reason=None,
        qty=0.0,
        price=None,
        stop=None,
        take_profit=None,
        leverage=leverage,
        risk_pct=sizing.risk_pct * scale,
        risk_usd=0.0,
        hrp_budget_date=hrp_budget_date,
        hrp_budget_version=hrp_budget_version,
        hrp_scale=scale,
        cvar_cap_max_lev=cvar_max_lev,
        cvar_samples=cvar_samples,
        cvar_source=cvar_source,
        funding_cost_bps=None,
        expected_edge_bps=None,
        pills=_pills(scale),
        risk_policy_rev=params.risk_policy_rev,
    )
    reason = gate(risk_state, signal, d.minute_ms, params)
    if reason is None and signal.symbol in open_symbols:
        reason = "already_open"
    price = _entry_price(quote, signal.side)
    if reason is None and (quote is None or price is None):
        reason = "no_price"
    if reason is None and free_balance < sizing.min_free_balance_usd:
        reason = "min_free_balance"
    if reason is None and cvar_max_lev is not None and not cvar_max_lev > 0:
        reason = "cvar_cap_zero"  # a zero (or NaN) cap: the tail budget allows no position
    if reason is not None or quote is None or price is None:
        return _drop(d, reason or "no_price")
    stop_dist = _stop_distance(quote, price, params)
    offset = sign(signal.side) * stop_dist
    d = dataclasses.replace(
        d, price=price, stop=price - offset, take_profit=price + sizing.tp_r * offset
    )
    d = _quantity(d, price, stop_dist, equity, free_balance, params)
    if d.action == "drop":
        return d
    reason = _near_liquidation(d, price, stop_dist, params)
    return _drop(d, reason) if reason else _edge(d, signal, quote, params)
