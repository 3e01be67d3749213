"""Pure market-context kernels (spec 002 §6.3-§6.6): numbers in, numbers out.

Sums go through :func:`math.fsum` (exactly rounded), so every result is independent of the
order its inputs arrive in -- the market agent sees partitions interleaved differently on every
run, and its output must not notice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packs.universe import LeaderLogic, RelativeStrength

#: Cheap flags that count as a spike for the fallback shock count (§6.5); the OI ones are read
#: when the lattice sends them.
SPIKE_FLAGS = (
    "is_vol_spike_m_1",
    "is_price_spike_up_m_1",
    "is_price_spike_down_m_1",
    "is_oi_spike_up_m_5",
    "is_oi_spike_down_m_5",
)


def sign(x: float | None) -> int:
    """Return -1, 0 or 1 (0 for None and 0.0)."""
    if x is None:
        return 0
    return (x > 0) - (x < 0)


def rs_score(
    *,
    z_ret_abs_m_1: float | None,
    ret_m_5: float | None,
    z_vol_m_1: float | None,
    oi_roc_m_5: float | None,
    z_oi_roc_m_5: float | None,
    rs: RelativeStrength,
) -> tuple[float, bool]:
    """Return ``(rs_score_m_5, rs_incomplete)`` (§6.3).

    A missing ``oi_roc_m_5`` zeroes the OI term (not incomplete); any other missing input (a z
    in warm-up, or ``ret_m_5``) counts as 0 and marks the score incomplete.
    """
    incomplete = z_ret_abs_m_1 is None or ret_m_5 is None or z_vol_m_1 is None
    score = rs.w1 * (z_ret_abs_m_1 or 0.0) * sign(ret_m_5) + rs.w2 * (z_vol_m_1 or 0.0)
    if oi_roc_m_5 is not None:
        if z_oi_roc_m_5 is None:
            incomplete = True
        else:
            score += rs.w3 * sign(oi_roc_m_5) * min(abs(z_oi_roc_m_5), rs.z_cap)
    return score, incomplete


def lead_index(
    ret_m_5: float | None, z_vol_m_1: float | None, oi_roc_m_5: float | None, oi_bonus: float
) -> float:
    """Return |ret_m_5| * max(z_vol_m_1, 0) * (1 + oi_bonus * max(0, agreement)) (§6.4).

    Missing return or volume z gives 0 (no evidence of leadership); missing OI gives no bonus.
    """
    if ret_m_5 is None or z_vol_m_1 is None:
        return 0.0
    agree = max(0, sign(ret_m_5) * sign(oi_roc_m_5))
    return abs(ret_m_5) * max(z_vol_m_1, 0.0) * (1.0 + oi_bonus * agree)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A leader candidate: asset, symbol and lead index."""

    asset_uid: int
    symbol: str
    lead: float


def pick_leader(
    candidates: Sequence[Candidate],
    *,
    default_uid: int | None,
    previous_uid: int | None,
    logic: LeaderLogic,
) -> int | None:
    """Return the leader's asset_uid, or None when there is no candidate (§6.4).

    Order of rules: (1) no candidate -> None; (2) the best lead below ``epsilon`` (low activity)
    -> the default (BTC) if present, else None; (3) several candidates share the best lead ->
    the default if it is among them, else the lowest asset_uid; (4) hysteresis: the previous
    leader, if still a candidate, keeps the role unless the winner's lead exceeds its own by
    the factor ``1 + switch_margin``.

    Args:
        candidates: Majors, the top RS share, and the previous leader, all eligible this minute.
        default_uid: The eligible asset whose symbol is ``logic.default_symbol``, if any.
        previous_uid: Last minute's leader.
        logic: The policy's leader section.
    """
    if not candidates:
        return None
    best_lead = max(c.lead for c in candidates)
    if best_lead < logic.epsilon:
        return default_uid
    tied = sorted(c.asset_uid for c in candidates if c.lead == best_lead)
    best = default_uid if default_uid in tied else tied[0]
    previous = next((c for c in candidates if c.asset_uid == previous_uid), None)
    if (
        previous is not None
        and best != previous.asset_uid
        and best_lead <= previous.lead * (1.0 + logic.switch_margin)
    ):
        return previous.asset_uid
    return best


def rank_order(scores: Mapping[int, float]) -> list[int]:
    """Return asset_uids strongest first: by score descending, then asset_uid ascending."""
    return sorted(scores, key=lambda uid: (-scores[uid], uid))


def top_bottom(scores: Mapping[int, float], n: int) -> tuple[list[int], list[int]]:
    """Return ``(top, bottom)``: the n strongest (strongest first), the n weakest (weakest first).

    Both come from one total order (:func:`rank_order`), so they are disjoint: with fewer than
    2n assets the top takes its n first and the bottom gets the rest.
    """
    order = rank_order(scores)
    top = order[:n]
    bottom = order[max(n, len(order) - n) :][::-1]
    return top, bottom


def dispersion(values: Iterable[float], min_count: int) -> float | None:
    """Return the population standard deviation of ``values``, None below ``min_count``."""
    xs = list(values)
    if len(xs) < max(min_count, 1):
        return None
    mean = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / len(xs))


def shock_count_from_flags(rows: Iterable[Mapping[str, object]]) -> int:
    """Count rows with any spike flag set: the 1-minute fallback of §6.5 (approx=true)."""
    return sum(1 for row in rows if any(row.get(f) is True for f in SPIKE_FLAGS))


def shock_count_from_events(events: Iterable[tuple[int, int]], at_ts: int, window_ms: int) -> int:
    """Count distinct assets with a spike event in ``(at_ts - window_ms, at_ts]`` (§6.5).

    Args:
        events: ``(asset_uid, exchange_ts)`` of spike-class events.
        at_ts: The instant the count is for (epoch ms).
        window_ms: The window (5 s).
    """
    return len({uid for uid, ts in events if at_ts - window_ms < ts <= at_ts})


def oi_roc(oi_now: float | None, oi_then: float | None, eps: float = 1e-12) -> float | None:
    """Return ``(oi_now - oi_then) / max(oi_then, eps)``, the lattice's ``oi_roc_m_5`` formula."""
    if oi_now is None or oi_then is None:
        return None
    return (oi_now - oi_then) / max(oi_then, eps)
