"""The portfolio risk state machine (spec 001 "Risk controls", "Resilience"; spec 004 P0-2).

One portfolio-wide :class:`RiskState` moves on stream time only: every step is a pure
``(state, input, params) -> (state, RiskOutputs)`` function, and :func:`gate` reads the state to
say why a signal may not open a trade (a drop reason, never an exception).

Rules, in the words of the pack (``controls``):

- Day: the UTC date of stream time. A minute is named by its end, so the minute ending at 00:00
  is the first instant of the new day. Rollover resets the day's realised PnL, the day halt and
  the cancel count; it keeps the loss streak, the streak cooldown and the hard stop.
- Daily cap: realised day PnL <= ``-daily_loss_cap_usd`` halts entries until the rollover.
- Loss streak: a closed trade with ``pnl_usd < 0`` (after fees) extends the streak, any other
  resets it. Reaching ``loss_streak_max`` halts entries for ``session_cooldown_minutes`` from the
  close's time and restarts the count at 0, so trading resumes with a fresh streak.
- Hard stop: realised day PnL <= ``-hard_stop_loss_usd``, equity <= peak * (1 - max drawdown),
  or more than ``cancel_budget_per_day`` cancels. It survives rollovers (only
  :func:`clear_hard_stop`, an operator action, lifts it) and its transition emits exactly one
  :class:`KillSwitch` record for ``control.v0`` that cancels open orders (spec 004 P0-2).
- Fail-safe: a ``CRIT`` control record with ``switch_to_paper_on_crit``. Execution is paper only,
  so switching to paper cannot lower venue risk further; the fail-safe instead pauses new entries
  for ``cooldown_minutes`` and records the switch ``paper -> fail_safe`` and, at the first minute
  after the cooldown, the restoration ``fail_safe -> paper`` (both as :class:`ModeSwitch`).

Metric increments come back in :attr:`RiskOutputs.metrics` (and accumulate in
:attr:`RiskState.counters`) keyed by :func:`metric_key`, e.g. ``mode_switch_total{from="paper",
to="fail_safe"}``; per-drop counters come from :func:`drop_metrics`. Processors import no
Prometheus: the agent exports them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from packs.risk import RiskPolicy
from processors.downstream.types import MINUTE_MS, ClosedTrade, Signal

STATE_VERSION = 1
PAPER = "paper"
FAIL_SAFE = "fail_safe"
BACKPRESSURE = "backpressure"

Metrics = tuple[tuple[str, int], ...]
_LABEL = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*")')


def metric_key(name: str, **labels: str) -> str:
    """Return ``name{k="v",...}`` with sorted labels (Prometheus text escaping), or ``name``."""
    if not labels:
        return name
    body = ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
    return f"{name}{{{body}}}"


def parse_metric_key(key: str) -> tuple[str, dict[str, str]]:
    """Split a :func:`metric_key` back into the metric name and its labels."""
    name, _, rest = key.partition("{")
    return name, {k: json.loads(v) for k, v in _LABEL.findall(rest)}


def utc_day(ts_ms: int) -> str:
    """Return the ``YYYY-MM-DD`` UTC date of an epoch-millisecond instant."""
    return datetime.fromtimestamp(ts_ms // 1000, tz=UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """Cancel every open order and stop trading: the hard-stop record for ``control.v0``."""

    reason: str  # "max_loss" | "max_drawdown" | "cancel_budget"
    at_ms: int
    detail: Mapping[str, float | int | str]

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON data (``kind`` tells it apart on the control topic)."""
        detail = dict(sorted(self.detail.items()))
        return {"kind": "kill_switch", "reason": self.reason, "at_ms": self.at_ms, "detail": detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KillSwitch:
        """Rebuild from :meth:`to_json` output."""
        return cls(str(data["reason"]), int(data["at_ms"]), dict(data["detail"]))


@dataclass(frozen=True, slots=True)
class ModeSwitch:
    """The risk mode changed (fail-safe on or off): a record for ``control.v0``."""

    from_mode: str
    to_mode: str
    reason: str
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON data."""
        return {"kind": "mode_switch", **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModeSwitch:
        """Rebuild from :meth:`to_json` output."""
        return cls(
            str(data["from_mode"]), str(data["to_mode"]), str(data["reason"]), int(data["at_ms"])
        )


ControlRecord = KillSwitch | ModeSwitch


@dataclass(frozen=True, slots=True)
class RiskOutputs:
    """What one step emits: control records and metric increments (sorted by key)."""

    records: tuple[ControlRecord, ...] = ()
    metrics: Metrics = ()


@dataclass(frozen=True, slots=True)
class RiskState:
    """The portfolio's risk state (stream time only; see the module docstring for the rules).

    ``*_until_ms`` are exclusive ends: a minute at or after them is free again. ``counters`` holds
    cumulative metric counts, sorted by :func:`metric_key`.
    """

    equity_usd: float
    peak_equity_usd: float
    day: str | None = None
    realised_pnl_day_usd: float = 0.0
    loss_streak: int = 0
    halted_until_ms: int | None = None
    day_halted: bool = False
    hard_stopped: bool = False
    hard_stop_reason: str | None = None
    kill_switch_emitted: bool = False
    cancels_day: int = 0
    started_ms: int | None = None
    last_minute_ms: int | None = None
    mode: str = PAPER
    fail_safe_until_ms: int | None = None
    counters: Metrics = ()
    version: int = STATE_VERSION

    @classmethod
    def initial(cls, params: RiskPolicy) -> RiskState:
        """Return the state before any input: equity and peak at ``starting_equity_usd``."""
        equity = params.sizing.starting_equity_usd
        return cls(equity_usd=equity, peak_equity_usd=equity, mode=params.execution.mode)

    def counter(self, key: str) -> int:
        """Return the cumulative count of one :func:`metric_key` (0 if never counted)."""
        return dict(self.counters).get(key, 0)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-serialisable state (versioned; equal states give equal data)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["counters"] = [list(pair) for pair in self.counters]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RiskState:
        """Rebuild from :meth:`to_json` output.

        Raises:
            ValueError: Unknown state version (migrate it, or start from a new store name).
        """
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"RiskState version {data.get('version')!r} is not {STATE_VERSION}")
        values = {f.name: data[f.name] for f in dataclasses.fields(cls)}
        values["counters"] = tuple((str(k), int(n)) for k, n in data["counters"])
        return cls(**values)


@dataclass(slots=True)
class _Step:
    # Mutable scratch for one step: the changes, the records and the metric increments.
    state: RiskState
    records: list[ControlRecord] = field(default_factory=list)
    metrics: dict[str, int] = field(default_factory=dict)

    def set(self, **changes: Any) -> None:
        self.state = dataclasses.replace(self.state, **changes)

    def count(self, key: str, n: int = 1) -> None:
        self.metrics[key] = self.metrics.get(key, 0) + n

    def done(self) -> tuple[RiskState, RiskOutputs]:
        if self.metrics:
            totals = dict(self.state.counters)
            for key, n in self.metrics.items():
                totals[key] = totals.get(key, 0) + n
            self.set(counters=tuple(sorted(totals.items())))
        return self.state, RiskOutputs(tuple(self.records), tuple(sorted(self.metrics.items())))


def _roll_day(step: _Step, ts_ms: int) -> None:
    day = utc_day(ts_ms)
    if step.state.day is None or day > step.state.day:
        step.set(day=day, realised_pnl_day_usd=0.0, day_halted=False, cancels_day=0)


def _hard_stop(step: _Step, reason: str, at_ms: int, **detail: float | int | str) -> None:
    if step.state.hard_stopped:
        return  # already stopped: the kill switch went out once
    step.set(hard_stopped=True, hard_stop_reason=reason, kill_switch_emitted=True)
    step.records.append(KillSwitch(reason, at_ms, detail))
    step.count(metric_key("kill_switch_total", reason=reason))


def _switch_mode(step: _Step, to_mode: str, reason: str, at_ms: int) -> None:
    from_mode = step.state.mode
    step.set(mode=to_mode)
    step.records.append(ModeSwitch(from_mode, to_mode, reason, at_ms))
    step.count(metric_key("mode_switch_total", **{"from": from_mode, "to": to_mode}))


def on_minute(
    state: RiskState, minute_ms: int, params: RiskPolicy
) -> tuple[RiskState, RiskOutputs]:
    """Advance stream time to ``minute_ms`` (a minute's end).

    Sets ``started_ms`` on the first call (the warm-up start), rolls the day at 00:00 UTC, and
    ends an expired fail-safe (``fail_safe -> paper``). Earlier minutes never move the day back.
    """
    del params  # the pack has nothing minute-driven yet; kept for a uniform step signature
    step = _Step(state)
    if state.started_ms is None:
        step.set(started_ms=minute_ms)
    if state.last_minute_ms is None or minute_ms > state.last_minute_ms:
        step.set(last_minute_ms=minute_ms)
    _roll_day(step, minute_ms)
    until = state.fail_safe_until_ms
    if state.mode == FAIL_SAFE and until is not None and minute_ms >= until:
        _switch_mode(step, PAPER, "cooldown_over", minute_ms)
    return step.done()


def on_close(
    state: RiskState, closed: ClosedTrade, params: RiskPolicy
) -> tuple[RiskState, RiskOutputs]:
    """Book a closed trade: day PnL, equity and peak, loss streak, daily cap, hard stops.

    A close stamped in a later day than the state's rolls the day first; a late close of an
    earlier day counts toward the current day (the day the risk engine learns of it).
    """
    controls = params.controls
    step = _Step(state)
    _roll_day(step, closed.closed_ms)
    s = step.state
    equity = s.equity_usd + closed.pnl_usd
    day_pnl = s.realised_pnl_day_usd + closed.pnl_usd
    peak = max(s.peak_equity_usd, equity)
    streak = s.loss_streak + 1 if closed.pnl_usd < 0 else 0
    step.set(equity_usd=equity, peak_equity_usd=peak, realised_pnl_day_usd=day_pnl)
    if streak >= controls.loss_streak_max:
        until = closed.closed_ms + controls.session_cooldown_minutes * MINUTE_MS
        step.set(halted_until_ms=max(until, s.halted_until_ms or until))
        step.count("streak_halt_total")
        streak = 0
    step.set(loss_streak=streak)
    if not s.day_halted and day_pnl <= -controls.daily_loss_cap_usd:
        step.set(day_halted=True)
        step.count("daily_cap_trigger_total")
    detail = {"realised_pnl_day_usd": day_pnl, "equity_usd": equity, "peak_equity_usd": peak}
    if day_pnl <= -controls.hard_stop_loss_usd:
        _hard_stop(step, "max_loss", closed.closed_ms, **detail)
    elif equity <= peak * (1.0 - controls.max_drawdown_pct):
        _hard_stop(step, "max_drawdown", closed.closed_ms, **detail)
    return step.done()


def on_cancel(
    state: RiskState, n: int, params: RiskPolicy, *, at_ms: int | None = None
) -> tuple[RiskState, RiskOutputs]:
    """Count ``n`` order cancels of the current day; above the budget is a hard stop.

    ``at_ms`` stamps the kill switch (default: the last minute seen). ``n <= 0`` changes nothing.
    """
    step = _Step(state)
    if n <= 0:
        return step.done()
    cancels = state.cancels_day + n
    step.set(cancels_day=cancels)
    budget = params.controls.cancel_budget_per_day
    if cancels > budget:
        when = at_ms if at_ms is not None else (state.last_minute_ms or 0)
        _hard_stop(step, "cancel_budget", when, cancels_day=cancels, budget=budget)
    return step.done()


def on_control(
    state: RiskState, record: Mapping[str, Any], params: RiskPolicy
) -> tuple[RiskState, RiskOutputs]:
    """Handle a ``control.v0`` alert: ``{"level": "CRIT", "reason": str, "at_ms": int}``.

    A ``CRIT`` level with ``switch_to_paper_on_crit`` starts (or extends) the fail-safe until
    ``at_ms + cooldown_minutes``; other levels, other records (our own kill and mode switches
    read back) and a disabled fail-safe change nothing.
    """
    fail_safe = params.controls.fail_safe
    step = _Step(state)
    if str(record.get("level", "")).upper() != "CRIT" or not fail_safe.switch_to_paper_on_crit:
        return step.done()
    at_ms = int(record["at_ms"])
    reason = str(record.get("reason") or "crit")
    until = at_ms + fail_safe.cooldown_minutes * MINUTE_MS
    step.set(fail_safe_until_ms=max(until, state.fail_safe_until_ms or until))
    step.count(metric_key("fail_safe_trigger_total", reason=reason))
    if state.mode != FAIL_SAFE:
        _switch_mode(step, FAIL_SAFE, reason, at_ms)
    return step.done()


def clear_hard_stop(state: RiskState) -> RiskState:
    """Lift a hard stop (an operator action); the next hard stop emits a kill switch again."""
    return dataclasses.replace(
        state, hard_stopped=False, hard_stop_reason=None, kill_switch_emitted=False
    )


def gate(state: RiskState, signal: Signal, minute_ms: int, params: RiskPolicy) -> str | None:
    """Return why ``signal`` may not open a trade at ``minute_ms``, or None.

    Checked in order: ``hard_stop``, ``fail_safe``, ``daily_cap`` (of the state's day only),
    ``streak_halt``, ``warmup`` (no minute seen yet, or less than ``warmup_minutes`` since the
    first), then the entry policy: ``below_min_severity``, ``timeframe_not_traded``.
    """
    controls = params.controls
    if state.hard_stopped:
        return "hard_stop"
    if state.fail_safe_until_ms is not None and minute_ms < state.fail_safe_until_ms:
        return "fail_safe"
    if state.day_halted and state.day is not None and utc_day(minute_ms) <= state.day:
        return "daily_cap"
    if state.halted_until_ms is not None and minute_ms < state.halted_until_ms:
        return "streak_halt"
    if controls.warmup_minutes > 0 and (
        state.started_ms is None
        or minute_ms < state.started_ms + controls.warmup_minutes * MINUTE_MS
    ):
        return "warmup"
    if signal.severity < params.entry.min_severity:
        return "below_min_severity"
    if signal.tf not in params.entry.timeframes:
        return "timeframe_not_traded"
    return None


def drop_metrics(reason: str, symbol: str, params: RiskPolicy) -> Metrics:
    """Return the metric increments of one dropped signal.

    Always ``risk_drop_total{reason}``; plus ``warmup_drop_total{symbol}`` for ``warmup`` and
    ``backpressure_total{mode}`` for ``backpressure`` (spec 001 "Resilience").
    """
    out = {metric_key("risk_drop_total", reason=reason): 1}
    if reason == "warmup":
        out[metric_key("warmup_drop_total", symbol=symbol)] = 1
    elif reason == BACKPRESSURE:
        out[metric_key("backpressure_total", mode=params.controls.backpressure.drop_mode)] = 1
    return tuple(sorted(out.items()))


def apply_backpressure(
    signals: Sequence[Signal], params: RiskPolicy
) -> tuple[tuple[Signal, ...], tuple[tuple[Signal, str], ...]]:
    """Keep at most ``max_queue_len`` signals per minute (``exchange_ts``); drop the rest.

    A minute within the limit keeps all its signals. Above it, ``halt`` keeps the highest
    severity first (ties by ``event_id``) up to the limit; ``degrade`` first keeps only severity
    >= ``degrade_min_severity``, then applies the same cap. Both outputs are sorted by (minute,
    -severity, event_id), whatever the input order, and every drop has the reason
    ``backpressure``. A disabled backpressure keeps everything in that order.
    """
    bp = params.controls.backpressure
    ranked = sorted(signals, key=lambda s: (s.exchange_ts, -s.severity, s.event_id))
    if not bp.enabled:
        return tuple(ranked), ()
    kept: list[Signal] = []
    dropped: list[tuple[Signal, str]] = []
    for _, group in groupby(ranked, key=lambda s: s.exchange_ts):
        batch = list(group)
        if len(batch) <= bp.max_queue_len:
            kept.extend(batch)
            continue
        halt = bp.drop_mode == "halt"
        eligible = [i for i, s in enumerate(batch) if halt or s.severity >= bp.degrade_min_severity]
        keep = set(eligible[: bp.max_queue_len])
        for i, s in enumerate(batch):
            if i in keep:
                kept.append(s)
            else:
                dropped.append((s, BACKPRESSURE))
    return tuple(kept), tuple(dropped)
