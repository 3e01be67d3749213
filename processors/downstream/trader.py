"""The downstream stage: ``trade.in.v0`` in; decisions, orders, fills, adjustments and risk out.

``TraderProcessor.step(value)`` is the whole stage (STYLE.md: processor tier). Its input holds,
per detector partition and minute, the minute's quotes and events (:mod:`processors.detect.feed`).
It buffers them until **every** partition is done with a minute (sent that minute's ``final``
report or any report of a later minute), then acts on the minute, in this order:

1. Alerts that arrived since the last minute (a ``CRIT`` starts the fail-safe).
2. Day rollover at the first minute of a new UTC day (stream time): the end-of-day policy
   (flatten or carry, spec 004 P1-3), then a new HRP budget (spec 000 §17) from the hourly closes
   the stage has kept (``hrp.budget.v0``); the risk state rolls its day.
3. The paper book against the minute's quotes: entries fill, stops and targets close trades,
   stale entries expire (``orders.v0``, ``fills.v0``). Every closed trade goes to the risk state
   (PnL, streak, daily cap, hard stops) and the CVaR book (``cvar.caps.v0``).
4. Exit advice for the open trades (spec 003 §13, ``trade.adjust.v0``).
5. A hard stop's kill switch (``control.v0``, once, on the transition) cancels every open
   order and stops the executor (spec 004 P0-2).
6. The minute's events: the traded subtypes get a side from the pack, backpressure caps them,
   and each becomes a sizing decision (``sizing.decisions.v0``) with the HRP scale and CVaR
   cap it used; an ``open`` decision submits a paper entry order.
7. The risk state when it changed (``risk.state.v0``, compacted).

Everything depends only on the order of ``trade.in.v0`` and the pack: no wall clock, sorted
iteration, so a replay from offsets gives byte-identical outputs. State lives in one store
(``trade.state.v1``): the core value (risk state, paper book, budget, buffered minutes) under
``core``, the CVaR book under ``cvar`` and each symbol's hourly closes under ``h:<symbol>``,
each written only when it changed (:mod:`processors.downstream.trader_state`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from packs.risk import RiskPolicy
from processors.downstream import cvar, hrp, paper, risk, sizing
from processors.downstream.exit_advisor import advise
from processors.downstream.paper_state import EntryRequest
from processors.downstream.trader_state import (
    HOUR_MS,
    Output,
    TraderState,
    hourly_window,
    outputs_of_paper,
)
from processors.downstream.types import DAY_MS, ClosedTrade, Quote, Signal
from schemas.errors import AlphaError
from state.store import KeyValueStore

TOPIC_DECISIONS = "sizing.decisions.v0"
TOPIC_ADJUST = "trade.adjust.v0"
TOPIC_CONTROL = "control.v0"
TOPIC_RISK = "risk.state.v0"
TOPIC_HRP = "hrp.budget.v0"
TOPIC_CVAR = "cvar.caps.v0"


class BadTradeIn(AlphaError):
    """A ``trade.in.v0`` record the stage cannot use (dead-lettered with this message)."""


def _quote(data: Mapping[str, Any], minute_ms: int) -> Quote:
    fields = {f.name for f in dataclasses.fields(Quote)}
    return Quote(minute_ms=minute_ms, **{k: v for k, v in data.items() if k in fields})


def _parse(
    value: Mapping[str, Any], partitions: int
) -> tuple[int, int, bool, list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Check a record: partition, minute, final, quotes, signals, alerts (or BadTradeIn)."""
    try:
        partition, minute = int(value["partition"]), int(value["minute_ms"])
        reported, final = int(value["partitions"]), bool(value["final"])
        quotes = [dict(q) for q in value["quotes"]]
        signals = [dict(s) for s in value["signals"]]
        alerts = [dict(a) for a in value.get("alerts") or ()]
        for q in quotes:
            int(q["asset_uid"]), float(q["close"]), str(q["symbol"])
        for s in signals:
            int(s["asset_uid"]), str(s["event_id"]), int(s["severity"]), str(s["subtype"])
        for a in alerts:
            str(a["level"]), str(a["reason"]), int(a["at_ms"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadTradeIn(f"malformed trade.in.v0 record: {exc!r}") from None
    if not -1 <= partition < partitions:
        raise BadTradeIn(f"partition {partition} outside -1..{partitions - 1}")
    if reported != partitions:
        raise BadTradeIn(
            f"the record reports {reported} lattice partitions, the stage waits for {partitions}"
        )
    return partition, minute, final, quotes, signals, alerts


class TraderProcessor:
    """The downstream stage's processor (see module docstring).

    Args:
        policy: The risk pack.
        store: ``trade.state.v1``.
        partitions: ``lattice.v0`` partitions: a minute waits for reports from all of them.
    """

    def __init__(self, policy: RiskPolicy, store: KeyValueStore, partitions: int) -> None:
        self.policy = policy
        self.state = TraderState.load(store, policy, partitions)
        #: Outcome and metric counts since the caller last cleared them (not state).
        self.counters: dict[str, int] = {}

    def flush(self) -> int:
        """Write the changed state values to the store; return how many were written."""
        return self.state.flush()

    # ----------------------------------------------------------------- input
    def step(self, value: Mapping[str, Any]) -> list[Output]:
        """Apply one decoded ``trade.in.v0`` value; return the records to send.

        Raises:
            BadTradeIn: The record is malformed; no state changed.
        """
        st = self.state
        partition, minute, final, quotes, signals, alerts = _parse(value, st.partitions)
        if alerts:
            st.core["alerts"] = [*st.core["alerts"], *alerts]
            st.touch()
        if partition < 0:  # an alert-only record
            return []
        if minute <= st.core["last_minute"]:
            self._count("late_reports")
            return []
        st.add_report(partition, minute, final, quotes, signals)
        out: list[Output] = []
        for ready in st.ready_minutes():
            out += self._minute(ready, st.pop_minute(ready))
        return out

    # ----------------------------------------------------------------- a minute
    def _minute(self, t: int, entry: Mapping[str, Any]) -> list[Output]:
        st, policy = self.state, self.policy
        out: list[Output] = []
        quotes = sorted(
            (_quote(q, t) for q in entry["quotes"]), key=lambda q: (q.asset_uid, q.symbol)
        )
        by_uid = {q.asset_uid: q for q in quotes}
        risk_before = _risk_view(st.risk)
        for alert in st.core["alerts"]:
            if str(alert["level"]).upper() == "RESUME":
                out += self._resume(alert, t)
                continue
            st.risk, ro = risk.on_control(st.risk, alert, policy)
            out += self._risk_outputs(ro, t)
        st.core["alerts"] = []
        previous = st.core["last_minute"]
        if previous > 0 and t // DAY_MS != previous // DAY_MS:
            out += self._rollover(t)
        st.risk, ro = risk.on_minute(st.risk, t, policy)
        out += self._risk_outputs(ro, t)
        st.book, po = paper.on_minute(st.book, quotes, t, policy.execution)
        out += self._paper(po, t)
        out += self._advise(t, by_uid)
        if t % HOUR_MS == 0:
            st.add_hour(t, quotes)
        st.remember_quotes(quotes)
        out += self._signals(t, entry["signals"], by_uid)
        st.core["last_minute"] = t
        st.touch()
        if _risk_view(st.risk) != risk_before:
            out.append(Output(TOPIC_RISK, b"portfolio", 0, self._risk_value(t)))
        self._count("minutes")
        return out

    def _resume(self, alert: Mapping[str, Any], t: int) -> list[Output]:
        """An operator's ``RESUME``: lift a hard stop and restart the executor (else nothing)."""
        st = self.state
        if not st.risk.hard_stopped and not st.book.stopped:
            self._count("resume_ignored")
            return []
        st.risk = risk.clear_hard_stop(st.risk)
        st.book = dataclasses.replace(st.book, stopped=False, stopped_reason=None, stopped_ms=None)
        labels = {"from": "hard_stop", "to": st.risk.mode}
        self._count(risk.metric_key("mode_switch_total", **labels))
        return [_control(risk.ModeSwitch("hard_stop", st.risk.mode, str(alert["reason"]), t))]

    def _rollover(self, t: int) -> list[Output]:
        """The end-of-day policy, then the new day's HRP budget."""
        st, policy = self.state, self.policy
        last = [_quote(q, t) for q in st.last_quotes()]
        st.book, po = paper.end_of_day(st.book, last, t, policy.execution)
        out = self._paper(po, t)
        return out + self._budget(t)

    def _budget(self, t: int) -> list[Output]:
        """Compute and publish the HRP budget of the UTC day that starts at or before ``t``."""
        st, params = self.state, self.policy.hrp
        date = risk.utc_day(t)
        closes = hourly_window(st.hours(), params.lookback_d * 24 + 1)
        open_risk = st.open_risk_by_cluster(params)
        budget = hrp.compute_budget(date, closes, open_risk, params)
        if not budget.clusters:  # no symbol has min_history_h hours yet
            symbols = sorted({str(q["symbol"]) for q in st.last_quotes()})
            budget = hrp.bootstrap_budget(date, symbols, open_risk, params)
        st.set_budget(budget)
        self._count("hrp_budgets")
        return [
            Output(
                TOPIC_HRP,
                f"{date}:{line.cluster}".encode(),
                0,
                {
                    "date": date,
                    "version": budget.version,
                    "n_returns": budget.n_returns,
                    **line.to_json(),
                    "min_scale": budget.min_scale,
                    "risk_policy_rev": self.policy.risk_policy_rev,
                },
            )
            for line in budget.clusters
        ]

    def _paper(self, po: paper.PaperOutputs, t: int) -> list[Output]:
        """Publish orders and fills; book every closed trade; count expiry cancels."""
        out = outputs_of_paper(po)
        expired = sum(1 for o in po.cancelled if o.reason == "expired")
        if expired:
            self.state.risk, ro = risk.on_cancel(self.state.risk, expired, self.policy, at_ms=t)
            out += self._risk_outputs(ro, t)
        for closed in po.closed:
            out += self._closed(closed, t)
        return out

    def _closed(self, closed: ClosedTrade, t: int) -> list[Output]:
        st, policy = self.state, self.policy
        st.risk, ro = risk.on_close(st.risk, closed, policy)
        out = self._risk_outputs(ro, t)
        book, caps = cvar.step(st.cvar, closed, policy.cvar, leverage_cap=policy.sizing.leverage)
        st.set_cvar(book, closed)
        out += [
            Output(TOPIC_CVAR, str(closed.trade.asset_uid).encode(), -1, c.to_json()) for c in caps
        ]
        out.append(
            Output(
                TOPIC_ADJUST,
                str(closed.trade.asset_uid).encode(),
                -1,
                {"kind": "closed", "adjustment": None, "closed": closed.to_json()},
            )
        )
        self._count("trades_closed")
        return out

    def _advise(self, t: int, by_uid: Mapping[int, Quote]) -> list[Output]:
        st, policy = self.state, self.policy
        out: list[Output] = []
        for trade in sorted(st.book.trades, key=lambda x: x.trade_id):
            quote = by_uid.get(trade.asset_uid)
            if quote is None:
                continue
            adj = advise(trade, quote, t, policy.exit)
            if adj is None:
                continue
            key = str(trade.asset_uid).encode()
            value = {"kind": "adjustment", "adjustment": adj.to_json(), "closed": None}
            out.append(Output(TOPIC_ADJUST, key, -1, value))
            st.book, po = paper.apply_adjustment(st.book, adj, quote, policy.execution)
            out += self._paper(po, t)
        return out

    def _risk_outputs(self, ro: risk.RiskOutputs, t: int) -> list[Output]:
        """Control records (a kill switch cancels every open order and stops the executor)."""
        st = self.state
        out: list[Output] = []
        for name, n in ro.metrics:
            self._count(name, n)
        for record in ro.records:
            out.append(_control(record))
            if isinstance(record, risk.KillSwitch):
                st.book, cancelled = paper.cancel_all(st.book, t, reason="kill_switch")
                out += outputs_of_paper(paper.PaperOutputs(orders=cancelled))
        return out

    def _signals(
        self, t: int, raw: list[dict[str, Any]], by_uid: Mapping[int, Quote]
    ) -> list[Output]:
        st, policy = self.state, self.policy
        signals: list[Signal] = []
        for s in sorted(raw, key=lambda s: str(s["event_id"])):
            side = policy.entry.sides.get(str(s["subtype"]))
            if side is None:
                self._count("signals_not_traded")
                continue
            signals.append(
                Signal(
                    event_id=str(s["event_id"]),
                    asset_uid=int(s["asset_uid"]),
                    symbol=str(s["symbol"]),
                    tf=str(s["tf"]),
                    subtype=str(s["subtype"]),
                    severity=int(s["severity"]),
                    exchange_ts=int(s["exchange_ts"]),
                    side=side,
                )
            )
        if not signals:
            return []
        out = self._budget(t) if st.budget is None else []
        kept, dropped = risk.apply_backpressure(signals, policy)
        for signal, reason in [*((s, None) for s in kept), *dropped]:
            out += self._decide(t, signal, reason, by_uid.get(signal.asset_uid))
        return out

    def _decide(
        self, t: int, signal: Signal, forced_drop: str | None, quote: Quote | None
    ) -> list[Output]:
        st, policy = self.state, self.policy
        budget = st.budget
        cluster = hrp.cluster_of(signal.symbol, policy.hrp)
        line = budget.cluster(cluster) if budget is not None else None
        open_risk = st.open_risk_by_cluster(policy.hrp).get(cluster, 0.0)
        scale = (
            policy.hrp.min_scale
            if line is None
            else hrp.cluster_scale(open_risk, line.max_equity_risk_pct, policy.hrp.min_scale)
        )
        stop_fraction = None
        if quote is not None and quote.close > 0:
            atr = quote.atr
            dist = (
                policy.sizing.sl_k_atr * atr if atr else policy.sizing.assumed_sl_pct * quote.close
            )
            stop_fraction = dist / quote.close
        cap = cvar.cap_for(
            st.cvar,
            symbol=signal.symbol,
            tf=signal.tf,
            cluster=cluster,
            side=signal.side,
            cfg=policy.cvar,
            stop_fraction=stop_fraction,
            leverage_cap=policy.sizing.leverage,
        )
        decision = sizing.size(
            signal,
            quote,
            st.risk,
            equity=st.risk.equity_usd,
            free_balance=st.free_balance(),
            hrp_scale=scale,
            hrp_budget_date=budget.date if budget is not None else None,
            hrp_budget_version=budget.version if budget is not None else None,
            cvar_max_lev=cap.max_leverage,
            cvar_samples=cap.n_samples,
            cvar_source=cap.source,
            open_symbols=st.open_symbols(),
            params=policy,
            minute_ms=t,
        )
        if forced_drop is not None:
            decision = dataclasses.replace(
                decision, action="drop", drop_reason=forced_drop, qty=0.0, risk_usd=0.0
            )
        for name, n in (
            risk.drop_metrics(decision.drop_reason, signal.symbol, policy)
            if (decision.drop_reason)
            else ()
        ):
            self._count(name, n)
        key = str(signal.asset_uid).encode()
        out = [Output(TOPIC_DECISIONS, key, -1, decision.to_json())]
        price, stop, target = decision.price, decision.stop, decision.take_profit
        if decision.action != "open" or quote is None:
            return out
        if price is None or stop is None or target is None:  # an open decision has its levels
            return out
        request = EntryRequest(
            trade_id=decision.decision_id.removeprefix("d:"),
            asset_uid=signal.asset_uid,
            symbol=signal.symbol,
            cluster=cluster,
            tf=signal.tf,
            side=signal.side,
            qty=decision.qty,
            price=price,
            stop=stop,
            take_profit=target,
            risk_usd=decision.risk_usd,
            risk_pct=decision.risk_pct,
            leverage=decision.leverage,
            minute_ms=t,
            bid=quote.bid,
            ask=quote.ask,
        )
        st.book, order = paper.submit_entry(st.book, request, policy.execution)
        out += outputs_of_paper(paper.PaperOutputs(orders=(order,)))
        return out

    # ----------------------------------------------------------------- helpers
    def _risk_value(self, t: int) -> dict[str, Any]:
        data = self.state.risk.to_json()
        data["counters"] = {k: int(v) for k, v in self.state.risk.counters}
        return {"as_of_ms": t, "risk_policy_rev": self.policy.risk_policy_rev, **data}

    def _count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n


def _control(record: risk.ControlRecord) -> Output:
    """The ``control.v0`` record of a kill switch or mode switch (keyed by its kind)."""
    data = record.to_json()
    kind = data.pop("kind")
    value = {"kind": kind, "kill_switch": None, "mode_switch": None, kind: data}
    return Output(TOPIC_CONTROL, kind.encode(), 0, value)


def _risk_view(state: risk.RiskState) -> dict[str, Any]:
    """The risk state without the minute clock: what makes a ``risk.state.v0`` record news."""
    data = state.to_json()
    data.pop("last_minute_ms")
    return data
