"""The perp-context accumulator of one asset-minute: OI, funding, basis (spec 002 §5.3-5.4).

Context samples are sparse (REST every ~5 s, WS when it changes), so the last known values carry
across minutes (:class:`ContextCarry`) and staleness is measured at the bar close. Choices this
module makes (to confirm with the feature pack): ``oi_*`` are NULL when the freshest OI sample is
older than ``oi_stale_ms`` (20 s, §8.4) at the close; funding is normalized to an hourly rate from
its ``funding_interval_ms``; the minute keeps the sum and count of basis samples (bp) so a 5-minute
mean is an exact fold of five minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HOUR_MS = 3_600_000
OI_STALE_MS = 20_000


@dataclass(frozen=True, slots=True)
class ContextCarry:
    """The last known context values of an asset, carried into the next minute."""

    oi: float | None = None
    oi_ts: int | None = None
    funding_h: float | None = None
    next_funding_ts: int | None = None


@dataclass(frozen=True, slots=True)
class ContextBar:
    """Context fields of one minute."""

    oi_open: float | None
    oi_close: float | None
    oi_min: float | None
    oi_max: float | None
    oi_staleness_ms: int | None
    funding_h_1: float | None
    time_to_next_funding_sec: int | None
    basis_bp_sum: float
    basis_bp_count: int
    carry: ContextCarry


class ContextAccumulator:
    """Accumulate ``AssetCtx`` bodies of the minute ending at ``label_ts``.

    Args:
        label_ts: The minute's label, epoch ms.
        carry: Last known values from earlier minutes.
        oi_stale_ms: OI older than this at the close makes the ``oi_*`` fields NULL.
    """

    def __init__(
        self, label_ts: int, carry: ContextCarry | None = None, oi_stale_ms: int = OI_STALE_MS
    ) -> None:
        self.label_ts = label_ts
        self.oi_stale_ms = oi_stale_ms
        self._carry = carry or ContextCarry()
        self._oi: list[tuple[int, float]] = []
        self._basis_sum = 0.0
        self._basis_n = 0

    def update(self, exchange_ts: int, ctx: Mapping[str, Any]) -> None:
        """Add one context sample (an ``md.raw.v0`` AssetCtx body) taken at ``exchange_ts``."""
        if ctx.get("open_interest") is not None:
            self._oi.append((exchange_ts, float(ctx["open_interest"])))
        if ctx.get("funding") is not None:
            interval = ctx.get("funding_interval_ms") or HOUR_MS
            hourly = float(ctx["funding"]) * HOUR_MS / int(interval)
            c = self._carry  # (a constructor call: dataclasses.replace is slow per sample)
            self._carry = ContextCarry(c.oi, c.oi_ts, hourly, c.next_funding_ts)
        if ctx.get("next_funding_ts") is not None:
            c = self._carry
            self._carry = ContextCarry(c.oi, c.oi_ts, c.funding_h, int(ctx["next_funding_ts"]))
        mark, index = ctx.get("mark_px"), ctx.get("oracle_px")
        if mark is not None and index is not None and float(index) > 0:
            self._basis_sum += (float(mark) - float(index)) / float(index) * 10_000
            self._basis_n += 1

    def build(self) -> ContextBar:
        """Return the minute's context fields and the carry for the next minute."""
        samples = sorted(self._oi, key=lambda s: s[0])  # stable: ties keep arrival order
        carry = self._carry
        if samples:
            carry = ContextCarry(
                samples[-1][1], samples[-1][0], carry.funding_h, carry.next_funding_ts
            )
        staleness = None if carry.oi_ts is None else self.label_ts - carry.oi_ts
        fresh = staleness is not None and staleness <= self.oi_stale_ms
        values = [v for _ts, v in samples] or ([carry.oi] if carry.oi is not None else [])
        to_funding = None
        if carry.next_funding_ts is not None and carry.next_funding_ts >= self.label_ts:
            to_funding = (carry.next_funding_ts - self.label_ts) // 1000
        return ContextBar(
            oi_open=values[0] if fresh and values else None,
            oi_close=values[-1] if fresh and values else None,
            oi_min=min(values) if fresh and values else None,
            oi_max=max(values) if fresh and values else None,
            oi_staleness_ms=staleness,
            funding_h_1=carry.funding_h,
            time_to_next_funding_sec=to_funding,
            basis_bp_sum=self._basis_sum,
            basis_bp_count=self._basis_n,
            carry=carry,
        )
