"""The detector catalogue (spec 002 §9, Appendix B, D.4, D.6, D.7): pure functions on one bar.

``evaluate(row, frame, ctx, pack)`` runs every enabled detector on one decoded ``lattice.v0``
FeatureRow and the market frame of the same minute and returns the triggers and, for triggers a
gate held back, the suppression reasons (§8.7: "suppressed emissions increment per-class
suppression counters"). ``detect`` returns the triggers alone. No I/O, no clock: the bar label is
the only time.

Rules every detector shares (§9.1, §8.7, Appendix B):

- Only 1m rows are evaluated (§9.1 "run on 1m lattice"); the _m_5 columns, the 60-minute funding
  look-back and the 15m rotation buckets are all read from 1m rows and the caller's history.
  15m/1h rows give nothing.
- A detector first evaluates its trigger on the values it has; NULL (or non-finite) inputs never
  fire and are not counted. A trigger that holds is then gated, first failure wins:
  ``dq_status == 'ok'`` -> ``warmup`` false -> in universe or hot -> ``illiquidity_hit`` false ->
  OI fresh (OI-dependent detectors, D.6) -> book fresh (spread-based detectors, D.6) -> the
  detector's own precondition. A gated trigger is returned as a :class:`Suppression`.
- ``primary_z`` is the detector's z where Appendix B names a z, with the asset's IQR bounds
  (§4.4) from ``ctx.iqr_bounds`` attached for the scorer's clamp; where the primary is not a z
  (counts, returns, shares, funding Δ) it is the trigger ratio ``|x| / threshold`` (1.0 at the
  threshold, capped at ``scoring.ratio_cap``) so every class feeds the §10.3 sigmoid on one scale.
- ``breadth = min(1, shock_count_5s / scoring.breadth_full_count)`` from the frame (§10.9).
- Market-wide detectors (basket shock, sector flip) fire on the row of the minute's leader, and
  leader cooling on the row of the leader of 30 minutes before, so one partition emits them once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from packs.detector import FAMILIES, DetectorPack, detector_id
from packs.feature import Illiquidity
from processors.detect.types import (
    MINUTE_MS,
    AssetHistory,
    DetectContext,
    MarketHistory,
    MarketSample,
    MinuteSample,
    Reason,
    Scalar,
    Suppression,
    Tf,
    Trigger,
    finite,
    row_tf,
    update_history,
    update_market_history,
)

#: The §9.8 feature panel every event carries (plus each detector's own inputs).
PANEL = (
    "basis_bp_m_5", "cvd_slope_m_5", "oi_roc_m_5", "ret_m_1", "ret_s_30", "spread_mean_m_1",
    "v_total_m_1", "z_basis_m_5", "z_oi_roc_m_5", "z_ret_abs_m_1", "z_spread_m_1", "z_vol_m_1",
)  # fmt: skip
#: Cheap flags (§5.6) echoed when TRUE.
FLAGS = (
    "is_liq_cluster_m_5", "is_oi_spike_down_m_5", "is_oi_spike_up_m_5", "is_price_spike_down_m_1",
    "is_price_spike_up_m_1", "is_spread_stress_m_1", "is_vol_spike_m_1",
)  # fmt: skip
#: Market frame keys the detectors read (§6.2 plus ``universe_size``, and ``rs_scores``: the RS of
#: every covered asset, as the snapshot's record list or a symbol mapping, for rotation).
FRAME_KEYS = (
    "dominance_share", "leader", "return_dispersion_m_5", "rs_scores", "shock_count_5s",
    "shock_count_approx", "universe_size",
)  # fmt: skip
Gate = Literal["oi", "book"]
_WINDOW_SEC = {"_m_1": 60, "_m_5": 300, "_m_15": 900, "_h_1": 3600, "_5s": 5}
_TF_OF: dict[str, Tf] = {
    "funding_jolt_h_1": "1h",
    "leader_cooling_followers_hot_m_15": "15m",
    "rs_flip_sector_m_15": "15m",
}
Secondary = tuple[tuple[str | None, float, float], ...]  # (z column or None, value, sign)


@dataclass(frozen=True, slots=True)
class Hit:
    """A trigger condition that held, before gating (internal to the catalogue and its tests)."""

    subtype: str
    primary: float
    primary_col: str | None = None  # z column whose IQR bounds clamp the primary
    primary_sign: float = 1.0  # -1: primary is -z, so the bounds are mirrored
    secondary: Secondary = ()
    inputs: tuple[str, ...] = ()
    detail: tuple[tuple[str, Scalar], ...] = ()
    gates: tuple[Gate, ...] = ()
    precondition: bool = True


@dataclass(frozen=True, slots=True)
class Detection:
    """What the detectors made of one row: triggers to score and gated triggers with reasons."""

    triggers: tuple[Trigger, ...]
    suppressions: tuple[Suppression, ...]


class Bar:
    """One 1m row in its context: numbers, thresholds and histories with this minute folded in."""

    __slots__ = ("ctx", "frame", "history", "market", "pack", "row", "symbol", "ts")

    def __init__(
        self,
        row: Mapping[str, Any],
        frame: Mapping[str, Any],
        ctx: DetectContext,
        pack: DetectorPack,
    ) -> None:
        self.row, self.frame, self.ctx, self.pack = row, frame, ctx, pack
        self.ts = int(row["exchange_ts"])
        self.symbol = str(row["symbol"])
        self.history: AssetHistory = update_history(ctx.history, row)
        self.market: MarketHistory = ctx.market
        if frame:
            self.market = (
                ctx.market_now
                if ctx.market_now is not None
                else update_market_history(ctx.market, frame, self.ts, ctx.sectors)
            )

    def num(self, name: str) -> float | None:
        """Return a row column as a finite float, or None."""
        return finite(self.row.get(name))

    def threshold(self, family: str) -> float:
        """Return the family's threshold for this asset's tier (D.7)."""
        return self.pack.threshold(family, self.ctx.tier)

    def ratio(self, value: float, threshold: float) -> float:
        """Return ``value / threshold`` capped at ``ratio_cap``."""
        return min(value / threshold, self.pack.scoring.ratio_cap)

    def is_leader(self, leader: object = None) -> bool:
        """Return True when this row's symbol is ``leader`` (default: the frame's leader)."""
        who = self.frame.get("leader") if leader is None else leader
        return who is not None and str(who) == self.symbol

    def window(self, name: str, bars: int) -> list[float] | None:
        """Return the last ``bars`` 1m values of a history field ending at this bar, or None."""
        values = []
        for k in range(bars - 1, -1, -1):
            sample = self.history.at(self.ts - k * MINUTE_MS)
            value = None if sample is None else getattr(sample, name)
            if value is None:
                return None
            values.append(value)
        return values

    def buckets(
        self,
        samples: tuple[MinuteSample, ...] | tuple[MarketSample, ...],
        value: Callable[[Any], float | None],
        bucket_min: int,
        min_count: int,
        n: int = 3,
    ) -> list[float | None]:
        """Return means of ``value`` over the ``n`` buckets of ``bucket_min`` ending here."""
        size = bucket_min * MINUTE_MS
        out: list[float | None] = []
        for k in range(n - 1, -1, -1):
            end = self.ts - k * size
            got = [v for s in samples if end - size < s.ts <= end if (v := value(s)) is not None]
            out.append(math.fsum(got) / len(got) if len(got) >= min_count else None)
        return out


def guard_limits(row: Mapping[str, Any], ill: Illiquidity) -> tuple[float, float | None]:
    """Return ``(v_min, spread_cap)`` of §8.3 as the lattice computes them (for ctx, §10.7).

    The baseline locations ``b_mean_vol``/``b_mean_spread`` stand in for the 7-day medians.
    """
    v_mu, s_mu = finite(row.get("b_mean_vol")), finite(row.get("b_mean_spread"))
    v_min = max(ill.v_min_floor, ill.v_min_share_of_median * v_mu) if v_mu else ill.v_min_floor
    return v_min, None if s_mu is None else ill.spread_cap_mult * s_mu


def evaluate(
    row: Mapping[str, Any], frame: Mapping[str, Any], ctx: DetectContext, pack: DetectorPack
) -> Detection:
    """Run every enabled detector on one row (spec 002 §9, Appendix B).

    Args:
        row: A decoded ``lattice.v0`` FeatureRow (only 1m rows are evaluated).
        frame: The market frame of the same minute (§6.2), or an empty mapping.
        ctx: Membership, tier, histories before this minute, guard limits, IQR bounds.
        pack: The detector pack.

    Returns:
        Triggers and suppressions, each sorted by ``Trigger.sort_key``.
    """
    if row_tf(row) != "1m":
        return Detection((), ())
    bar = Bar(row, frame, ctx, pack)
    row_gate = _row_gate(bar)
    triggers: list[Trigger] = []
    suppressed: list[Suppression] = []
    for family, run in DETECTORS:
        if not pack.params(family).enabled:
            continue
        for hit in run(bar):
            trigger = _trigger(bar, hit)
            reason = row_gate or _hit_gate(bar, hit)
            if reason is None:
                triggers.append(trigger)
            else:
                suppressed.append(Suppression(trigger, reason))
    return Detection(
        tuple(sorted(triggers, key=lambda t: t.sort_key)),
        tuple(sorted(suppressed, key=lambda s: s.trigger.sort_key)),
    )


def detect(
    row: Mapping[str, Any], frame: Mapping[str, Any], ctx: DetectContext, pack: DetectorPack
) -> list[Trigger]:
    """Return the triggers of one row that pass every gate, sorted (see :func:`evaluate`)."""
    return list(evaluate(row, frame, ctx, pack).triggers)


def _row_gate(bar: Bar) -> Reason | None:
    row, ctx = bar.row, bar.ctx
    if row.get("dq_status") != "ok":
        return "gated_dq"
    if row.get("warmup") is not False:
        return "gated_warmup"
    member = ctx.is_in_universe if ctx.is_in_universe is not None else row.get("is_in_universe")
    hot = ctx.is_hot if ctx.is_hot is not None else row.get("is_hot")
    if not (member is True or hot is True):
        return "gated_membership"
    if row.get("illiquidity_hit") is not False:
        return "gated_illiquid"
    return None


def _hit_gate(bar: Bar, hit: Hit) -> Reason | None:
    gates = bar.pack.gates
    if "oi" in hit.gates:
        oi = bar.num("oi_staleness_ms")
        if oi is None or oi > gates.oi_stale_ms:
            return "gated_oi_stale"
    if "book" in hit.gates:
        book = bar.num("book_staleness_ms")
        if book is None or book > gates.book_stale_ms:
            return "gated_book_stale"
    return None if hit.precondition else "gated_precondition"


def _bounds(bar: Bar, col: str | None, sign: float) -> tuple[float, float] | None:
    b = bar.ctx.iqr_bounds.get(col) if col is not None else None
    if b is None:
        return None
    return (b[0], b[1]) if sign > 0 else (-b[1], -b[0])


def _trigger(bar: Bar, hit: Hit) -> Trigger:
    pack, ctx, row = bar.pack, bar.ctx, bar.row
    family = _family_of(hit.subtype)
    shock = finite(bar.frame.get("shock_count_5s"))
    full = pack.scoring.breadth_full_count
    book, margin = bar.num("book_staleness_ms"), pack.scoring.near_guard_margin
    v, spread = bar.num("v_total_m_1"), bar.num("spread_mean_m_1")
    near_guard = (ctx.v_min is not None and v is not None and v < ctx.v_min * (1 + margin)) or (
        ctx.spread_cap is not None and spread is not None and spread > ctx.spread_cap * (1 - margin)
    )
    return Trigger(
        detector_id=detector_id(hit.subtype),
        event_class=FAMILIES[family][0],
        subtype=hit.subtype,
        tf=_TF_OF.get(family, "1m"),
        window_sec=next(s for suffix, s in _WINDOW_SEC.items() if hit.subtype.endswith(suffix)),
        asset_uid=int(row["asset_uid"]),
        symbol=bar.symbol,
        exchange_ts=bar.ts,
        revision=int(row.get("revision") or 0),
        primary_z=hit.primary,
        primary_bounds=_bounds(bar, hit.primary_col, hit.primary_sign),
        secondary_z=tuple(value for _c, value, _s in hit.secondary),
        secondary_bounds=tuple(_bounds(bar, col, sign) for col, _v, sign in hit.secondary),
        breadth=0.0 if shock is None else min(1.0, max(0.0, shock / full)),
        dq_penalty=1.0
        if book is not None and book > pack.scoring.dq_penalty_book_staleness_ms
        else 0.0,
        illiquidity_penalty=1.0 if near_guard else 0.0,
        tier=ctx.tier,
        features=tuple((n, bar.num(n)) for n in sorted(set(PANEL) | set(hit.inputs))),
        flags=tuple(f for f in FLAGS if row.get(f) is True),
        detail=tuple(sorted(hit.detail)),
    )


def _family_of(subtype: str) -> str:
    return next(f for f, (_c, subs) in FAMILIES.items() if subtype in subs)


def _zsec(bar: Bar, col: str, *, absolute: bool = False) -> Secondary:
    z = bar.num(col)
    if z is None:
        return ()
    sign = -1.0 if absolute and z < 0 else 1.0
    return ((col, sign * z, sign),)


# ---------------------------------------------------------------- spike (§9.2, B.1)


def _vol_spike(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.vol_spike_m_1
    z = bar.num("z_vol_m_1")
    if z is None or z < bar.threshold("vol_spike_m_1"):
        return []
    trades, z_ret = bar.num("trade_count_m_1"), bar.num("z_ret_abs_m_1")
    inputs = ("ret_m_1", "trade_count_m_1", "v_total_m_1", "z_ret_abs_m_1", "z_vol_m_1")
    return [
        Hit(
            "vol_spike_m_1",
            z,
            "z_vol_m_1",
            secondary=_zsec(bar, "z_ret_abs_m_1"),
            inputs=inputs,
            detail=(("confirmed", z_ret is not None and z_ret > p.confirm_z_ret_abs),),
            precondition=trades is not None and trades >= p.min_trade_count,
        )
    ]


def _price_spike(bar: Bar) -> list[Hit]:
    z, r1 = bar.num("z_ret_abs_m_1"), bar.num("ret_m_1")
    if z is None or r1 is None or r1 == 0 or z < bar.threshold("price_spike_m_1"):
        return []
    subtype = "price_spike_up_m_1" if r1 > 0 else "price_spike_down_m_1"
    inputs = ("ret_m_1", "rv_m_1", "spread_mean_m_1", "z_ret_abs_m_1")
    return [Hit(subtype, z, "z_ret_abs_m_1", secondary=_zsec(bar, "z_vol_m_1"), inputs=inputs)]


def _oi_spike(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.oi_spike_m_5
    z, roc = bar.num("z_oi_roc_m_5"), bar.num("oi_roc_m_5")
    if z is None or roc is None or abs(z) < bar.threshold("oi_spike_m_5"):
        return []
    if abs(roc) < p.min_abs_oi_roc or roc * z <= 0:  # a signed spike: z and roc agree
        return []
    sign = 1.0 if z > 0 else -1.0
    subtype = "oi_spike_up_m_5" if sign > 0 else "oi_spike_down_m_5"
    inputs = ("oi_roc_m_5", "ret_m_5", "z_oi_roc_m_5", "z_vol_m_1")
    secondary = _zsec(bar, "z_vol_m_1")
    return [Hit(subtype, abs(z), "z_oi_roc_m_5", sign, secondary, inputs, gates=("oi",))]


def _liq_cluster(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.liq_cluster_m_5
    inputs = ("liq_count_m_5", "liq_notional_m_5", "oi_roc_m_5", "ret_m_1", "z_ret_abs_m_1")
    secondary = _zsec(bar, "z_vol_m_1")
    count = bar.num("liq_count_m_5")
    if count is not None:  # a liquidation feed
        threshold = bar.threshold("liq_cluster_m_5")
        if count < threshold:
            return []
        detail: tuple[tuple[str, Scalar], ...] = (
            ("liq_count_m_5", int(count)),
            ("liq_notional_m_5", bar.num("liq_notional_m_5")),
            ("source", "feed"),
        )
        primary = bar.ratio(count, threshold)
        return [Hit("liq_cluster_m_5", primary, None, 1.0, secondary, inputs, detail)]
    if not p.proxy_enabled:
        return []
    z_ret, z_spread = bar.num("z_ret_abs_m_1"), bar.num("z_spread_m_1")
    z_oi, roc = bar.num("z_oi_roc_m_5"), bar.num("oi_roc_m_5")
    if z_ret is None or z_spread is None or z_oi is None or roc is None or roc >= 0:
        return []  # no OI drop, no liquidations
    score = z_ret + max(0.0, z_spread) + max(0.0, -z_oi)
    if score < p.proxy_threshold:
        return []
    detail = (("proxy_score", score), ("source", "proxy"))
    primary = bar.ratio(score, p.proxy_threshold)
    hit = Hit("liq_cluster_m_5", primary, None, 1.0, secondary, inputs, detail, ("oi", "book"))
    return [hit]


# ---------------------------------------------------------------- shift (§9.3, B.2)


def _spread_stress(bar: Bar) -> list[Hit]:
    z = bar.num("z_spread_m_1")
    if z is None or z < bar.threshold("spread_stress_m_1"):
        return []
    inputs = ("spread_mean_m_1", "spread_p95_m_1", "trade_count_m_1", "v_total_m_1")
    return [Hit("spread_stress_m_1", z, "z_spread_m_1", inputs=inputs, gates=("book",))]


def _basis_jolt(bar: Bar) -> list[Hit]:
    z = bar.num("z_basis_m_5")
    if z is None or abs(z) < bar.threshold("basis_jolt_m_5"):
        return []
    sign = 1.0 if z > 0 else -1.0
    detail = (("direction", "premium" if sign > 0 else "discount"),)
    secondary = _zsec(bar, "z_oi_roc_m_5", absolute=True)
    inputs = ("basis_bp_m_5", "oi_roc_m_5", "ret_m_5", "z_basis_m_5")
    return [Hit("basis_jolt_m_5", abs(z), "z_basis_m_5", sign, secondary, inputs, detail)]


def _funding_jolt(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.funding_jolt_h_1
    now = bar.num("funding_h_1")
    then = bar.history.at(bar.ts - p.lookback_min * MINUTE_MS)
    prev = None if then is None else then.funding_h_1
    if now is None or prev is None:
        return []
    delta, threshold = now - prev, bar.threshold("funding_jolt_h_1")
    to_funding = bar.num("time_to_next_funding_sec")
    flip = (
        now * prev < 0
        and min(abs(now), abs(prev)) >= p.flip_min_abs
        and to_funding is not None
        and to_funding <= p.flip_within_s
    )
    if abs(delta) < threshold and not flip:
        return []
    strength = max(abs(delta) / threshold, 1.0 if flip else 0.0)
    primary = min(strength, bar.pack.scoring.ratio_cap)
    detail: tuple[tuple[str, Scalar], ...] = (
        ("flip", flip),
        ("funding_delta", delta),
        ("funding_now", now),
        ("funding_prev", prev),
        ("time_to_next_funding_sec", None if to_funding is None else int(to_funding)),
    )
    inputs = ("funding_h_1", "time_to_next_funding_sec")
    return [Hit("funding_jolt_h_1", primary, inputs=inputs, detail=detail)]


# ---------------------------------------------------------------- quadrant (§9.4, B.3)

_REGIME = {
    "price_up_oi_up_m_5": "trend_build",
    "price_up_oi_down_m_5": "short_squeeze",
    "price_down_oi_up_m_5": "trend_down_build",
    "price_down_oi_down_m_5": "long_squeeze",
}


def _quadrant(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.quadrant_m_5
    ret5, roc = bar.num("ret_m_5"), bar.num("oi_roc_m_5")
    threshold = bar.threshold("quadrant_m_5")
    if ret5 is None or roc is None or ret5 == 0 or roc == 0:
        return []
    if abs(ret5) < threshold or abs(roc) < p.min_abs_oi_roc:
        return []
    price, oi = ("up" if ret5 > 0 else "down"), ("up" if roc > 0 else "down")
    subtype = f"price_{price}_oi_{oi}_m_5"
    secondary = ((None, bar.ratio(abs(roc), p.min_abs_oi_roc), 1.0),)
    return [
        Hit(
            subtype,
            bar.ratio(abs(ret5), threshold),
            secondary=secondary,
            inputs=("oi_roc_m_5", "ret_m_5", "z_vol_m_1"),
            detail=(("regime", _REGIME[subtype]),),
            gates=("oi",),
        )
    ]


# ---------------------------------------------------------------- divergence (§9.5, B.4)


def _price_up_cvd_down(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.price_up_cvd_down_m_5
    ret5, threshold = bar.num("ret_m_5"), bar.threshold("price_up_cvd_down_m_5")
    if ret5 is None or ret5 < threshold:
        return []
    cvd, vol = bar.window("cvd_delta_m_1", p.bars), bar.window("v_total_m_1", p.bars)
    if cvd is None or vol is None or math.fsum(vol) <= 0:
        return []
    cvd_sum, vol_sum = math.fsum(cvd), math.fsum(vol)
    share = cvd_sum / vol_sum
    if share > -p.cvd_share:
        return []
    detail = (("cvd_share_5", share), ("cvd_sum_5", cvd_sum), ("v_total_sum_5", vol_sum))
    return [
        Hit(
            "price_up_cvd_down_m_5",
            bar.ratio(ret5, threshold),
            secondary=((None, bar.ratio(-share, p.cvd_share), 1.0),),
            inputs=("cvd_delta_m_1", "ret_m_5", "z_spread_m_1", "z_vol_m_1"),
            detail=detail,
        )
    ]


def _price_flat_cvd_trend(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.price_flat_cvd_trend_m_5
    ret5, slope = bar.num("ret_m_5"), bar.num("cvd_slope_m_5")
    vol = bar.window("v_total_m_1", p.bars)
    if ret5 is None or slope is None or vol is None or abs(ret5) > p.max_abs_ret:
        return []
    mean_vol = math.fsum(vol) / len(vol)
    threshold = bar.threshold("price_flat_cvd_trend_m_5")
    if mean_vol <= 0 or abs(slope) / mean_vol < threshold:
        return []
    detail = (
        ("cvd_slope_share", slope / mean_vol),
        ("direction", "accumulation" if slope > 0 else "distribution"),
    )
    return [
        Hit(
            "price_flat_cvd_trend_m_5",
            bar.ratio(abs(slope) / mean_vol, threshold),
            inputs=("cvd_slope_m_5", "ret_m_5", "spread_mean_m_1"),
            detail=detail,
        )
    ]


def _premium_no_oi(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.premium_no_oi_m_5
    z, roc = bar.num("z_basis_m_5"), bar.num("oi_roc_m_5")
    if z is None or roc is None or z < bar.threshold("premium_no_oi_m_5") or roc > p.max_oi_roc:
        return []
    inputs = ("basis_bp_m_5", "oi_roc_m_5", "ret_m_5", "z_basis_m_5")
    return [Hit("premium_no_oi_m_5", z, "z_basis_m_5", inputs=inputs, gates=("oi",))]


# ---------------------------------------------------------------- synchrony (§9.6, B.5)


def _basket_shock(bar: Bar) -> list[Hit]:
    p = bar.pack.detectors.basket_shock_dt_5s
    count = finite(bar.frame.get("shock_count_5s"))
    size = finite(bar.frame.get("universe_size"))
    if not bar.is_leader() or count is None or size is None:
        return []
    # 1e-9: 0.15 * 20 is 3.0000000000000004 in floats, and ceil must say 3.
    required = max(bar.threshold("basket_shock_dt_5s"), math.ceil(p.universe_share * size - 1e-9))
    if count < required:
        return []
    frame = bar.frame
    detail: tuple[tuple[str, Scalar], ...] = (
        ("approx", frame.get("shock_count_approx") is True),
        ("dominance_share", finite(frame.get("dominance_share"))),
        ("leader", bar.symbol),
        ("required", int(required)),
        ("return_dispersion_m_5", finite(frame.get("return_dispersion_m_5"))),
        ("shock_count_5s", int(count)),
        ("universe_size", int(size)),
    )
    return [Hit("basket_shock_dt_5s", bar.ratio(count, required), detail=detail)]


# ---------------------------------------------------------------- rotation (§9.7, B.6)


def _leader_cooling(bar: Bar) -> list[Hit]:
    """Leader's 15m means of z_vol_m_1 and ret_m_5 fall twice while followers' RS rises twice.

    The leader is the market leader at the end of the first of the three 15m buckets, so a
    hand-over of leadership during the cooling does not hide it. Divergence =
    Δ2 follower RS median + Δ2 fall of the leader's z_vol (both z-like); fires at >= threshold.
    """
    p = bar.pack.detectors.leader_cooling_followers_hot_m_15
    size = p.bucket_min * MINUTE_MS
    then = next((m for m in bar.market.minutes if m.ts == bar.ts - 2 * size), None)
    if bar.ts % size or then is None or not bar.is_leader(then.leader):
        return []
    mins, mkt = bar.history.minutes, bar.market.minutes
    z_vol = bar.buckets(mins, lambda s: s.z_vol_m_1, p.bucket_min, p.min_bucket_minutes)
    ret5 = bar.buckets(mins, lambda s: s.ret_m_5, p.bucket_min, p.min_bucket_minutes)
    rs = bar.buckets(mkt, lambda s: s.follower_rs_median, p.bucket_min, p.min_bucket_minutes)
    zv, r5, fr = _all(z_vol), _all(ret5), _all(rs)
    if zv is None or r5 is None or fr is None:
        return []
    if not (zv[0] > zv[1] > zv[2] and r5[0] > r5[1] > r5[2] and fr[0] < fr[1] < fr[2]):
        return []
    divergence = (fr[2] - fr[0]) + (zv[0] - zv[2])
    threshold = bar.threshold("leader_cooling_followers_hot_m_15")
    if divergence < threshold:
        return []
    detail: tuple[tuple[str, Scalar], ...] = (
        ("divergence", divergence),
        ("follower_rs_median_delta", fr[2] - fr[0]),
        ("leader_ret_m_5_delta", r5[2] - r5[0]),
        ("leader_z_vol_m_1_delta", zv[2] - zv[0]),
    )
    return [
        Hit(
            "leader_cooling_followers_hot_m_15",
            bar.ratio(divergence, threshold),
            inputs=("ret_m_5", "z_vol_m_1"),
            detail=detail,
        )
    ]


def _sector_flip(bar: Bar) -> list[Hit]:
    """The former top sector (15m mean RS) leaves the top-k and the new top leads it by δ."""
    p = bar.pack.detectors.rs_flip_sector_m_15
    if bar.ts % (p.bucket_min * MINUTE_MS) or not bar.is_leader():
        return []
    before, now = (_sector_means(bar, k) for k in (1, 0))
    ranking = sorted(now, key=lambda s: (-now[s], s))
    if len(ranking) < p.min_sectors or not before:
        return []
    former = min(before, key=lambda s: (-before[s], s))
    new = ranking[0]
    if former in ranking[: p.top_k] or former not in now:
        return []
    delta, threshold = now[new] - now[former], bar.threshold("rs_flip_sector_m_15")
    if delta < threshold:
        return []
    detail: tuple[tuple[str, Scalar], ...] = (
        ("delta", delta),
        ("new_sector", new),
        ("new_sector_rs", now[new]),
        ("old_sector", former),
        ("old_sector_rs", now[former]),
    )
    return [Hit("rs_flip_sector_m_15", bar.ratio(delta, threshold), detail=detail)]


def _sector_means(bar: Bar, back: int) -> dict[str, float]:
    p = bar.pack.detectors.rs_flip_sector_m_15
    size = p.bucket_min * MINUTE_MS
    end = bar.ts - back * size
    values: dict[str, list[float]] = {}
    for m in bar.market.minutes:
        if end - size < m.ts <= end:
            for tag, value in m.sector_rs:
                values.setdefault(tag, []).append(value)
    return {
        tag: math.fsum(v) / len(v)
        for tag, v in sorted(values.items())
        if len(v) >= p.min_bucket_minutes
    }


def _all(values: list[float | None]) -> list[float] | None:
    known = [v for v in values if v is not None]
    return known if len(known) == len(values) else None


#: Every detector family, in pack order.
DETECTORS: tuple[tuple[str, Callable[[Bar], list[Hit]]], ...] = (
    ("vol_spike_m_1", _vol_spike),
    ("price_spike_m_1", _price_spike),
    ("oi_spike_m_5", _oi_spike),
    ("liq_cluster_m_5", _liq_cluster),
    ("spread_stress_m_1", _spread_stress),
    ("basis_jolt_m_5", _basis_jolt),
    ("funding_jolt_h_1", _funding_jolt),
    ("quadrant_m_5", _quadrant),
    ("price_up_cvd_down_m_5", _price_up_cvd_down),
    ("price_flat_cvd_trend_m_5", _price_flat_cvd_trend),
    ("premium_no_oi_m_5", _premium_no_oi),
    ("basket_shock_dt_5s", _basket_shock),
    ("leader_cooling_followers_hot_m_15", _leader_cooling),
    ("rs_flip_sector_m_15", _sector_flip),
)
