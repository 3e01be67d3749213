"""One minute's market context from its asset summaries (spec 002 §6.2-§6.6, §6.8).

:func:`build_context` is the arithmetic of the market snapshot, separate from the buffering of
:mod:`processors.market.snapshot`: the summaries of minute t, the finalised history of the
minutes before it, the set of covered assets, last minute's leader, and (when the agent has an
event feed) the spike events of the window. Its result does not depend on the order of
``rows``.

Choices where §6 leaves room:

- Scope (§6.1): aggregates cover assets in the universe or hot; while both are empty (cold
  start, before the universe has its first members) they cover every asset, and the snapshot
  says ``context_scope = "all"``. Within the scope, ``dq_status != ok`` rows are excluded
  (``excluded_count``). RS is computed for every ``ok`` row, in scope or not (the per-row
  ``rs_score_m_5``), but rs_top/rs_bottom, the leader, dominance, dispersions, shocks and the
  funding clock use the scope only.
- RS: the lattice does not send ``z_oi_roc_m_5`` yet; while a summary lacks that key the OI term
  is 0 for it and the snapshot says ``rs_approx = true``. A key present with a null value is a
  warm-up z (``rs_incomplete``). ``oi_roc_m_5`` is read from the summary when sent, else derived
  from ``oi_close`` five minutes back with the lattice's own formula.
- Dominance uses quote volume (``v_total_m_1``) over the current minute and the finalised
  minutes of the window; an asset's missing minutes count 0.
- Dispersions are population standard deviations (ddof 0), null below
  ``dispersion_min_assets`` values; ``rs_dispersion_m_5`` (§6.6 optional) is included.
- Funding clock (§6.2): the default leader's (BTC) when it is in scope and has one, else the
  minimum over the scope.
- DQ (§6.8): no eligible asset -> ``stale``; fewer than ``min_assets_for_context`` ->
  ``partial``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from packs.universe import MarketContext
from processors.market.kernels import (
    Candidate,
    dispersion,
    lead_index,
    oi_roc,
    pick_leader,
    rank_order,
    rs_score,
    shock_count_from_events,
    shock_count_from_flags,
    top_bottom,
)

MINUTE_MS = 60_000

Row = Mapping[str, Any]
#: uid -> [[label, dollar_volume, oi_close], ...] for finalised minutes, oldest first.
History = Mapping[int, Sequence[Sequence[Any]]]


def _oi_roc(row: Row, history: History, label: int, window_min: int) -> float | None:
    if "oi_roc_m_5" in row:
        value: float | None = row["oi_roc_m_5"]
        return value
    then = label - window_min * MINUTE_MS
    past = next((h[2] for h in history.get(row["asset_uid"], ()) if h[0] == then), None)
    return oi_roc(row.get("oi_close"), past)


def asset_rs(
    rows: Iterable[Row], history: History, label: int, market: MarketContext
) -> dict[int, tuple[float, bool, bool]]:
    """Return ``uid -> (rs_score_m_5, rs_incomplete, oi_term_missing)`` for every ``ok`` row."""
    out: dict[int, tuple[float, bool, bool]] = {}
    for row in rows:
        if row["dq_status"] != "ok":
            continue
        oi_known = "z_oi_roc_m_5" in row
        roc = _oi_roc(row, history, label, market.oi_roc_window_min)
        score, incomplete = rs_score(
            z_ret_abs_m_1=row.get("z_ret_abs_m_1"),
            ret_m_5=row.get("ret_m_5"),
            z_vol_m_1=row.get("z_vol_m_1"),
            oi_roc_m_5=roc if oi_known else None,
            z_oi_roc_m_5=row.get("z_oi_roc_m_5"),
            rs=market.rs,
        )
        out[int(row["asset_uid"])] = (score, incomplete, not oi_known)
    return out


def _dominance_volumes(
    scope: Sequence[Row], history: History, label: int, window_min: int
) -> dict[int, float]:
    since = label - window_min * MINUTE_MS
    return {
        int(r["asset_uid"]): math.fsum(
            [
                float(r["v_total_m_1"]),
                *(h[1] for h in history.get(int(r["asset_uid"]), ()) if since < h[0] < label),
            ]
        )
        for r in scope
    }


def _leader(
    scope: Sequence[Row],
    order: Sequence[int],
    history: History,
    label: int,
    previous_uid: int | None,
    market: MarketContext,
) -> int | None:
    logic = market.leader
    n_top = max(1, math.ceil(logic.top_share * len(order)))
    chosen = set(order[:n_top])
    by_uid = {int(r["asset_uid"]): r for r in scope}
    for uid, r in by_uid.items():
        if r["symbol"] in logic.majors or uid == previous_uid:
            chosen.add(uid)
    candidates = []
    for uid in sorted(chosen):
        r = by_uid[uid]
        roc = _oi_roc(r, history, label, market.oi_roc_window_min)
        lead = lead_index(r.get("ret_m_5"), r.get("z_vol_m_1"), roc, logic.oi_bonus)
        candidates.append(Candidate(uid, str(r["symbol"]), lead))
    defaults = sorted(u for u, r in by_uid.items() if r["symbol"] == logic.default_symbol)
    return pick_leader(
        candidates,
        default_uid=defaults[0] if defaults else None,
        previous_uid=previous_uid,
        logic=logic,
    )


def _funding(scope: Sequence[Row], default_symbol: str) -> int | None:
    ttfs = [r for r in scope if r.get("time_to_next_funding_sec") is not None]
    preferred = sorted(
        (r for r in ttfs if r["symbol"] == default_symbol), key=lambda r: int(r["asset_uid"])
    )
    if preferred:
        return int(preferred[0]["time_to_next_funding_sec"])
    return min((int(r["time_to_next_funding_sec"]) for r in ttfs), default=None)


def build_context(
    label: int,
    rows: Iterable[Row],
    history: History,
    *,
    covered: Collection[int],
    previous_leader: int | None,
    spike_events: Sequence[tuple[int, int]] | None,
    market: MarketContext,
) -> tuple[dict[str, Any], dict[int, tuple[float, bool, bool]]]:
    """Return the market context of minute ``label`` and every ``ok`` asset's RS.

    Args:
        label: The minute (bar label, epoch ms).
        rows: The minute's summaries (revision 0), one per asset.
        history: Finalised earlier minutes per asset (see :data:`History`).
        covered: Assets in the universe or hot; empty means "not decided yet": all assets.
        previous_leader: Last minute's leader asset_uid.
        spike_events: ``(asset_uid, exchange_ts)`` spike events when the agent has an event
            feed (exact shock count); None: fall back to the minute's flags (approx).
        market: The policy's market section.

    Returns:
        The context fields (a subset of ``snapshot.SNAPSHOT_KEYS``) and
        ``uid -> (rs_score_m_5, rs_incomplete, oi_term_missing)``.
    """
    all_rows = sorted(rows, key=lambda r: int(r["asset_uid"]))
    scoped = [r for r in all_rows if not covered or int(r["asset_uid"]) in covered]
    scope = [r for r in scoped if r["dq_status"] == "ok"]
    rs = asset_rs(all_rows, history, label, market)
    scores = {int(r["asset_uid"]): rs[int(r["asset_uid"])][0] for r in scope}
    symbol = {int(r["asset_uid"]): str(r["symbol"]) for r in all_rows}
    top, bottom = top_bottom(scores, market.rs.top_n)
    leader = _leader(scope, rank_order(scores), history, label, previous_leader, market)
    dv5 = _dominance_volumes(scope, history, label, market.dominance_window_min)
    total = math.fsum(dv5.values())
    dominance = None if leader is None else (dv5[leader] / total if total > 0 else 0.0)
    if spike_events is None:
        shocks, approx = shock_count_from_flags(scope), True
    else:
        shocks = shock_count_from_events(spike_events, label, market.shock_window_ms)
        approx = False
    n_min = market.dispersion_min_assets
    n_ok = len(scope)
    return {
        "leader": None if leader is None else symbol[leader],
        "leader_uid": leader,
        "dominance_share": dominance,
        "shock_count_5s": shocks,
        "shock_count_approx": approx,
        "rs_top": [symbol[u] for u in top],
        "rs_top_uids": top,
        "rs_bottom": [symbol[u] for u in bottom],
        "rs_bottom_uids": bottom,
        "rs_dispersion_m_5": dispersion(scores.values(), n_min),
        "return_dispersion_m_5": dispersion(
            (r["ret_m_5"] for r in scope if r.get("ret_m_5") is not None), n_min
        ),
        "vol_dispersion_m_5": dispersion(
            (r["z_vol_m_1"] for r in scope if r.get("z_vol_m_1") is not None), n_min
        ),
        "time_to_next_funding_sec": _funding(scope, market.leader.default_symbol),
        "eligible_count": n_ok,
        "excluded_count": len(scoped) - n_ok,
        "rs_incomplete_count": sum(1 for u in scores if rs[u][1]),
        "rs_approx": any(rs[u][2] for u in scores),
        "context_scope": "universe" if covered else "all",
        "dq_status": _dq(n_ok, market.min_assets_for_context),
    }, rs


def _dq(eligible: int, min_assets: int) -> str:
    if eligible == 0:
        return "stale"
    return "partial" if eligible < min_assets else "ok"
