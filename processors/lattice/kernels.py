"""Pure kernels of the 1m feature pack (spec 002 §5.1-5.2, Appendix A.2-A.3).

Each takes numbers (None = unknown) and returns a number or None by the Appendix A NULL rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DAY_MS = 86_400_000


def ret(now: float | None, before: float | None) -> float | None:
    """Return ``(now - before) / before``; None if either is unknown or ``before <= 0``.

    Used for ``ret_m_1/5/15`` and ``ret_s_30`` on mid prices (§5.1: mid_close, not trades).
    """
    if now is None or before is None or before <= 0:
        return None
    return (now - before) / before


def atr_proxy(high: float | None, low: float | None, mid_close: float | None) -> float | None:
    """Return ``(high - low) / mid_close``; None if a component is unknown or mid is not > 0."""
    if high is None or low is None or mid_close is None or mid_close <= 0:
        return None
    return (high - low) / mid_close


def cvd_level(
    previous: float | None, previous_label_ts: int | None, delta: float, label_ts: int
) -> float:
    """Return the running CVD after the minute labelled ``label_ts`` (anchored at 00:00 UTC).

    The bar labelled ``t`` covers ``[t - 60 s, t)``, so it belongs to the UTC day of ``t - 1``:
    the first bar of a day (label 00:01) starts from zero.
    """
    day = (label_ts - 1) // DAY_MS
    if previous is None or previous_label_ts is None or (previous_label_ts - 1) // DAY_MS != day:
        return delta
    return previous + delta


def ols_slope(values: Sequence[float | None]) -> float | None:
    """Return the least-squares slope of ``values`` against 0, 1, 2, ... (units per step).

    None if any value is unknown or fewer than two are given (``cvd_slope_m_5`` over 5 bars).
    """
    if len(values) < 2 or any(v is None for v in values):
        return None
    ys = [float(v) for v in values if v is not None]
    n = len(ys)
    mean_x = (n - 1) / 2
    mean_y = sum(ys) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(ys))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den


def time_weighted_mean(
    samples: Sequence[tuple[int, float | None]], start_ts: int, end_ts: int
) -> float | None:
    """Mean of step values over ``[start_ts, end_ts)``, each live until the next sample.

    ``samples`` are ``(exchange_ts, value)`` in time order; a sample before ``start_ts`` (the
    carried state) covers the window's beginning. Unknown values (None) carry no weight. None if
    nothing known was live in the window.
    """
    weighted = weight = 0.0
    ends = [s[0] for s in samples[1:]]
    ends.append(end_ts)  # one too many when there are no samples: zip stops at the shorter
    for (ts, value), end in zip(samples, ends, strict=False):
        if value is None:
            continue
        # live = min(end, end_ts) - max(ts, start_ts), counted when positive
        live = (end if end < end_ts else end_ts) - (ts if ts > start_ts else start_ts)
        if live > 0:
            weighted += value * live
            weight += live
    return weighted / weight if weight > 0 else None


def percentile_linear(values: Sequence[float], q: float) -> float | None:
    """Return the ``q`` quantile (0..1) with linear interpolation between closest ranks.

    numpy's default ``"linear"`` method; None for no values.
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
