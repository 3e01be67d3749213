"""Feature rows of every timeframe: raw features, DQ, baselines, z, quantiles, flags.

A bar of any timeframe is first reduced to a *summary* (JSON data: OHLC, flow, mid, spreads,
context, DQ) — for 1m from a :class:`MinuteBar`, for 15m/1h by folding the constituent summaries
(spec 002 §15.2: recomputation, never averaging). :func:`finish` turns a summary and the tf's
history into the Appendix A row (§4 baselines and normalisation, §5.6 flags, §8 DQ), returning
the baseline and sketch states the row implies; the caller decides whether to keep them (only a
final row moves baselines, and only when its ``dq_status`` is ok).

Choices where the spec leaves room (spec 002 §5, §8, Appendix A):

- A minute without trades takes open/high/low/close from the BBO mids stamped in it (§5.1) and is
  ``partial`` (``no_trades``); without trades and BBO updates it is ``stale`` (``no_data``).
- L2 is *stale* for a minute with no book snapshot stamped in it: ``obi_top5_mean_m_1`` and
  ``depth_top5_quote_median_m_1`` are NULL and the row is ``partial`` (``l2_missing``, §5.5, §8.1).
- Price sanity (§8.6): open or close outside ``[low, high]`` makes a row ``stale``
  (``integrity``); trade-built bars pass by construction, a bad candle does not.
- A candle bootstrap minute (§16.1) has the candle's OHLC, ``mid_close = close``, quote volume
  ``v * (h + l + c) / 3`` split evenly between buys and sells (so ``cvd_delta`` is 0), and its DQ
  judged on the candle alone.
- Cheap flags (§5.6, A.7) are NULL while their z is NULL (warm-up) and False when a gate holds
  them: ``dq_status != ok`` for every flag, the illiquidity guard (§8.3) for the spike flags, and
  ``trade_count < flags.min_trade_count`` for the volume spike (B.1). OI spikes take their
  direction from ``oi_roc_m_5``: up needs ``z >= z_oi_roc``, down ``z <= -z_oi_roc``, both
  ``|oi_roc_m_5| >= min_abs_oi_roc`` (B.1 writes one threshold for both subtypes).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from packs.feature import FeaturePack
from processors.lattice import baselines as bl
from processors.lattice.kernels import atr_proxy, cvd_level, ols_slope, percentile_linear, ret
from processors.lattice.minute import MinuteBar
from processors.lattice.rollup import fold_dq

TF_MS = {"1m": 60_000, "15m": 900_000, "1h": 3_600_000}
TF_SYMBOL = {"1m": "m1", "15m": "m15", "1h": "h1"}
#: Normalised feature -> (value column, z column, q column or None).
NORMALIZED = {
    "vol": ("v_total_m_1", "z_vol_m_1", "q_vol_m_1"),
    "ret_abs": ("ret_abs_m_1", "z_ret_abs_m_1", "q_ret_abs_m_1"),
    "oi_roc": ("oi_roc_m_5", "z_oi_roc_m_5", "q_oi_roc_m_5"),
    "spread": ("spread_mean_m_1", "z_spread_m_1", None),
    "basis": ("basis_bp_m_5", "z_basis_m_5", None),
}
#: Normalised feature -> (baseline location column, baseline scale column).
_BASELINE_COLS = {f: (f"b_mean_{f}", f"b_scale_{f}") for f in NORMALIZED}
OI_EPS = 1e-12
Summary = dict[str, Any]


def summarize_minute(bar: MinuteBar, previous: Summary | None, pack: FeaturePack) -> Summary:
    """Reduce a built minute to its summary; ``previous`` is the asset's summary of minute t-1."""
    t, q, b, c = bar.trades, bar.quotes, bar.book, bar.ctx
    o, h, lo, cl = t.open, t.high, t.low, t.close
    mid = q.mid_close
    spread_mean, spread_p95, rv = q.spread_mean_m_1, q.spread_p95_m_1, q.rv_m_1
    candle_only = bar.candle is not None and t.trade_count_m_1 == 0 and q.quote_updates == 0
    v_buy, v_sell, v_base, count = t.v_buy_m_1, t.v_sell_m_1, t.v_base_m_1, t.trade_count_m_1
    if candle_only and bar.candle is not None:
        # Candle bootstrap (§3.6): raw OHLCV only, close as the mid, quote volume by typical price.
        cd = bar.candle
        o, h, lo, cl = float(cd["o"]), float(cd["h"]), float(cd["l"]), float(cd["c"])
        mid = cl
        v_base = float(cd["v"])
        typical = (h + lo + cl) / 3
        v_buy = v_sell = v_base * typical / 2
        count = int(cd["n"]) if cd.get("n") is not None else 0
    prev_mid = (
        previous["mid_close"] if previous and previous["label"] == bar.label_ts - 60_000 else None
    )
    dlog = None
    if mid is not None and prev_mid is not None and mid > 0 and prev_mid > 0:
        dlog = math.log(mid / prev_mid)
    if o is None and bar.mid_ohlc is not None:
        o, h, lo, cl = bar.mid_ohlc  # §5.1: no trades -> mids of the minute's BBO updates
    l2_fresh = pack.micro.l2_enabled and b.book_updates > 0
    return {
        "label": bar.label_ts,
        "open": o,
        "high": h,
        "low": lo,
        "close": cl,
        "v_buy": v_buy,
        "v_sell": v_sell,
        "v_total": v_buy + v_sell,
        "v_base": v_base,
        "count": count,
        "cvd_delta": v_buy - v_sell,
        "mid_close": mid,
        "mid_s_30": bar.mid_s_30,
        "dlog_sq": None if dlog is None else dlog * dlog,
        "rv": rv,
        "spread_mean": spread_mean,
        "spread_p95": spread_p95,
        "spreads": [] if spread_mean is None else [spread_mean],
        "obi": b.obi_top5_mean_m_1 if l2_fresh else None,
        "depth": b.depth_top5_quote_median_m_1 if l2_fresh else None,
        "l2_seen": b.book_updates > 0,
        "oi_open": c.oi_open,
        "oi_close": c.oi_close,
        "oi_min": c.oi_min,
        "oi_max": c.oi_max,
        "oi_staleness_ms": c.oi_staleness_ms,
        "funding_h_1": c.funding_h_1,
        "ttf_sec": c.time_to_next_funding_sec,
        "basis_sum": c.basis_bp_sum,
        "basis_n": c.basis_bp_count,
        "book_staleness_ms": q.book_staleness_ms,
        "quote_updates": q.quote_updates,
        "dropped": bar.dropped,
        "records": bar.records,
        "skew": bar.clock_skew_ms,
        "source": "candle_snapshot" if candle_only else bar.source,
        "candle_only": candle_only,
        "dq": None,  # set by finish()
        "cvd_level": None,  # set by finish()
    }


def fold(tf: str, parts: Sequence[Summary]) -> Summary:
    """Fold contiguous constituent summaries (oldest first) into one ``tf`` summary (§15.2)."""
    traded = [p for p in parts if p["open"] is not None]
    highs = [p["high"] for p in traded if p["high"] is not None]
    lows = [p["low"] for p in traded if p["low"] is not None]
    sums = dict.fromkeys(("v_buy", "v_sell", "v_total", "v_base", "cvd_delta", "basis_sum"), 0.0)
    count = basis_n = dropped = records = 0
    dlog_sq: float | None = 0.0
    for p in parts:
        for k in sums:
            sums[k] += p[k]
        count += p["count"]
        basis_n += p["basis_n"]
        dropped += p["dropped"]
        records += p["records"]
    for p in parts:
        # rv_T: every minute's log-mid increment in the window (the first one from the minute
        # before the window), so the hour is exactly the sum of its four quarters
        dlog_sq = None if p["dlog_sq"] is None or dlog_sq is None else dlog_sq + p["dlog_sq"]
    oi = [p for p in parts if p["oi_close"] is not None]
    spreads = [s for p in parts for s in p["spreads"]]
    obis = [p["obi"] for p in parts if p["obi"] is not None]
    depths = [p["depth"] for p in parts if p["depth"] is not None]
    weights = [(p["spread_mean"], p["v_total"]) for p in parts if p["spread_mean"] is not None]
    total_w = sum(w for _s, w in weights)
    spread_mean = (
        sum(s * w for s, w in weights) / total_w
        if total_w > 0
        else (sum(s for s, _w in weights) / len(weights) if weights else None)
    )
    skews = [p["skew"] for p in parts if p["skew"] is not None]
    sources = sorted({p["source"] for p in parts} - {"none"})
    last = parts[-1]
    return {
        "label": last["label"],
        "open": traded[0]["open"] if traded else None,
        "high": max(highs) if highs else None,
        "low": min(lows) if lows else None,
        "close": traded[-1]["close"] if traded else None,
        **sums,
        "count": count,
        "mid_close": last["mid_close"],
        "mid_s_30": None,
        "dlog_sq": dlog_sq,
        "rv": None if dlog_sq is None else math.sqrt(dlog_sq),
        "spread_mean": spread_mean,
        "spread_p95": percentile_linear(spreads, 0.95),
        "spreads": spreads,
        "obi": sum(obis) / len(obis) if len(obis) == len(parts) else None,
        "depth": statistics.median(depths) if len(depths) == len(parts) else None,
        "l2_seen": all(p["l2_seen"] for p in parts),
        "oi_open": oi[0]["oi_open"] if oi else None,
        "oi_close": oi[-1]["oi_close"] if oi else None,
        "oi_min": min(p["oi_min"] for p in oi) if oi else None,
        "oi_max": max(p["oi_max"] for p in oi) if oi else None,
        "oi_staleness_ms": last["oi_staleness_ms"],
        "funding_h_1": last["funding_h_1"],
        "ttf_sec": last["ttf_sec"],
        "basis_n": basis_n,
        "book_staleness_ms": last["book_staleness_ms"],
        "quote_updates": sum(p["quote_updates"] for p in parts),
        "dropped": dropped,
        "records": records,
        "skew": max(skews, key=abs) if skews else None,
        "source": sources[0] if len(sources) == 1 else ("mixed" if sources else "none"),
        "candle_only": all(p["candle_only"] for p in parts),
        "dq": fold_dq([p["dq"] for p in parts]),
        "constituent_dq": [p["dq"] for p in parts],
        "cvd_level": last["cvd_level"],
    }


def _dq_minute(s: Summary, pack: FeaturePack) -> tuple[list[str], list[str]]:
    """Return the (stale, partial) reasons of a tick-built 1m bar (§8.1, §8.4, §8.6)."""
    dq = pack.dq
    stale: list[str] = []
    partial: list[str] = []
    if s["count"] == 0 and s["quote_updates"] == 0:
        stale.append("no_data")
    elif s["count"] == 0:
        partial.append("no_trades")
    if s["mid_close"] is None:
        stale.append("no_bbo")
    bs = s["book_staleness_ms"]
    if bs is not None and bs > dq.book_stale_ms:
        stale.append("book_stale")
    ois = s["oi_staleness_ms"]
    if ois is None or ois > dq.oi_stale_ms:
        partial.append("oi_stale")
    if pack.micro.l2_enabled and not s["l2_seen"]:  # no snapshot stamped in the minute
        partial.append("l2_missing")
    skew = abs(s["skew"]) if s["skew"] is not None else 0
    if skew > dq.clock_skew_stale_ms:
        stale.append("clock_skew")
    elif skew > dq.clock_skew_partial_ms:
        partial.append("clock_skew")
    return stale, partial


def _dq(
    tf: str, s: Summary, r: Mapping[str, Any], gap: bool, pack: FeaturePack
) -> tuple[str, list[str]]:
    """Return ``(dq_status, reasons)`` for a row (§8.1, §8.4, §8.6, §15.3).

    A 15m/1h row takes the §15.3 fold of its minutes; a candle bootstrap minute is judged on
    the candle alone; a reported gap or a return beyond the §8.6 bound makes any row stale.
    """
    stale: list[str] = []
    partial: list[str] = []
    if tf != "1m":
        folded = fold_dq(s["constituent_dq"])
        if folded != "ok":
            (stale if folded == "stale" else partial).append("constituents")
    elif not s["candle_only"]:
        stale, partial = _dq_minute(s, pack)
    o, h, lo, c = s["open"], s["high"], s["low"], s["close"]
    if None not in (o, h, lo, c) and not (lo <= o <= h and lo <= c <= h):
        stale.append("integrity")
    if gap:
        stale.append("gap")
    r1 = r.get("ret_m_1")
    if r1 is not None and abs(r1) > pack.dq.max_abs_ret_m_1:
        stale.append("ret_bound")
    if stale:
        return "stale", sorted(set(stale + partial))
    if partial:
        return "partial", sorted(set(partial))
    return "ok", []


def raw_features(
    tf: str,
    s: Summary,
    history: Sequence[Summary],
    *,
    oi_window_m: int = 5,
    basis_window_m: int = 5,
) -> dict[str, Any]:
    """Appendix A raw columns of a bar from its summary and the tf's earlier summaries.

    ``history`` holds the asset's previous summaries of this tf, oldest first; a lookback uses
    the summary whose label is exactly the required distance back, else NULL. At 1m,
    ``oi_delta_m_5`` looks ``oi_window_m`` bars back and ``basis_bp_m_5`` pools the samples of the
    last ``basis_window_m`` bars; at 15m/1h they use one bar back and the bar's own samples.
    """
    step = TF_MS[tf]
    by_label = {h["label"]: h for h in history}
    label = s["label"]

    def back(n: int, field: str) -> Any:
        h = by_label.get(label - n * step)
        return None if h is None else h[field]

    r1 = ret(s["mid_close"], back(1, "mid_close"))
    oi_lag = oi_window_m if tf == "1m" else 1
    oi_then = back(oi_lag, "oi_close")
    oi_delta = None if s["oi_close"] is None or oi_then is None else s["oi_close"] - oi_then
    if tf == "1m":
        window = [by_label.get(label - i * step) for i in range(basis_window_m - 1, 0, -1)] + [s]
        known = [w for w in window if w is not None]
        b_sum = sum(w["basis_sum"] for w in known)
        b_n = sum(w["basis_n"] for w in known)
    else:
        b_sum, b_n = s["basis_sum"], s["basis_n"]
    return {
        "open": s["open"],
        "high": s["high"],
        "low": s["low"],
        "close": s["close"],
        "mid_close": s["mid_close"],
        "ret_s_30": ret(s["mid_close"], s["mid_s_30"]) if tf == "1m" else None,
        "ret_m_1": r1,
        "ret_m_5": ret(s["mid_close"], back(5, "mid_close")) if tf == "1m" else None,
        "ret_m_15": ret(s["mid_close"], back(15, "mid_close")) if tf == "1m" else None,
        "ret_abs_m_1": None if r1 is None else abs(r1),
        "rv_m_1": s["rv"],
        "atr_proxy_m_1": atr_proxy(s["high"], s["low"], s["mid_close"]),
        "v_buy_m_1": s["v_buy"],
        "v_sell_m_1": s["v_sell"],
        "v_total_m_1": s["v_total"],
        "trade_count_m_1": s["count"],
        "cvd_delta_m_1": s["cvd_delta"],
        "oi_open": s["oi_open"],
        "oi_close": s["oi_close"],
        "oi_min": s["oi_min"],
        "oi_max": s["oi_max"],
        "oi_delta_m_5": oi_delta,
        "oi_roc_m_5": None
        if oi_delta is None or oi_then is None
        else oi_delta / max(oi_then, OI_EPS),
        "liq_count_m_5": None,
        "liq_notional_m_5": None,
        "funding_h_1": s["funding_h_1"],
        "basis_bp_m_5": b_sum / b_n if b_n else None,
        "time_to_next_funding_sec": s["ttf_sec"],
        "spread_mean_m_1": s["spread_mean"],
        "spread_p95_m_1": s["spread_p95"],
        "obi_top5_mean_m_1": s["obi"],
        "depth_top5_quote_median_m_1": s["depth"],
    }


def cvd_of(
    tf: str, s: Summary, history: Sequence[Summary], slope_bars: int
) -> tuple[float, float | None]:
    """Return ``(cvd_level, cvd_slope)`` of a bar: the daily-anchored level and its OLS slope."""
    prev = history[-1] if history else None
    if tf == "1m":
        level = cvd_level(
            None if prev is None else prev["cvd_level"],
            None if prev is None else prev["label"],
            s["cvd_delta"],
            s["label"],
        )
    else:
        level = s["cvd_level"]
    step = TF_MS[tf]
    by_label = {h["label"]: h["cvd_level"] for h in history}
    values = [by_label.get(s["label"] - i * step) for i in range(slope_bars - 1, 0, -1)] + [level]
    return level, ols_slope(values)


def finish(
    tf: str,
    s: Summary,
    history: Sequence[Summary],
    base: Mapping[str, Any],
    sketches: Mapping[str, bytes | None],
    *,
    gap: bool,
    pack: FeaturePack,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, bytes | None], Summary]:
    """Complete a bar: raw features, DQ, baselines, z, q, flags.

    Args:
        tf: Timeframe.
        s: The bar's summary.
        history: Earlier summaries of this asset and tf, oldest first (finished ones).
        base: Baseline states of this asset and tf by feature (JSON data, absent = new).
        sketches: Quantile sketch bytes of this asset and tf by feature.
        gap: The connector reported lost data overlapping the bar.
        pack: The feature pack.

    Returns:
        ``(columns, baselines after, sketches after, finished summary)``; the summary carries
        ``dq`` and ``cvd_level`` for the next bars and rollups.
    """
    raw = raw_features(
        tf, s, history, oi_window_m=pack.oi_window_m, basis_window_m=pack.basis_window_m
    )
    level, slope = cvd_of(tf, s, history, pack.cvd_slope_bars)
    raw["cvd_level"], raw["cvd_slope_m_5"] = level, slope
    status, reasons = _dq(tf, s, raw, gap, pack)
    b = pack.baselines
    half_life = b.half_life_bars[tf]  # type: ignore[index]
    min_samples, epsilon = b.min_samples, b.epsilon
    q_features = pack.quantiles.features
    new_base: dict[str, Any] = dict(base)
    new_sketch: dict[str, bytes | None] = dict(sketches)
    cols: dict[str, Any] = {}
    warm_all = True
    for feature in b.features:
        value_col, z_col, q_col = NORMALIZED[feature]
        mean_col, scale_col = _BASELINE_COLS[feature]
        x = raw[value_col]
        state = bl.from_json(base[feature]) if feature in base else bl.BaselineState()
        if x is not None and status == "ok":
            state = bl.update(
                state,
                x,
                s["label"],
                min_samples=min_samples,
                half_life_bars=half_life,
                winsor_k=b.winsor_k,
                epsilon=epsilon,
            )
            new_base[feature] = bl.to_json(state)
            if q_col is not None and feature in q_features:
                new_sketch[feature] = bl.sketch_add(
                    sketches.get(feature), x, max_centroids=pack.quantiles.max_centroids
                )
        warm_all = warm_all and bl.is_warm(state, min_samples)
        cols[z_col] = (
            None if x is None else bl.zscore(state, x, min_samples=min_samples, epsilon=epsilon)
        )
        cols[mean_col] = state.mu
        cols[scale_col] = state.sigma
        if q_col is not None:
            q, conf = (None, None)
            if x is not None and feature in q_features:
                q, conf = bl.quantile_of(new_sketch.get(feature), x, min_samples=min_samples)
            cols[q_col] = q
            if conf is not None and cols.get("q_confidence") != "low":
                cols["q_confidence"] = conf
    cols.setdefault("q_confidence", None)
    flags, illiquid = _flags(raw, cols, pack, ok=status == "ok")
    finished = dict(s, dq=status, cvd_level=level)
    row = {
        **raw,
        **cols,
        **flags,
        "dq_status": status,
        "dq_reasons": reasons,
        "dropped_ticks": s["dropped"],
        "book_staleness_ms": s["book_staleness_ms"],
        "oi_staleness_ms": s["oi_staleness_ms"],
        "clock_skew_ms": s["skew"],
        "warmup": not warm_all,
        "illiquidity_hit": illiquid,
        "source": s["source"],
    }
    return row, new_base, new_sketch, finished


def _flags(
    raw: Mapping[str, Any], z: Mapping[str, Any], pack: FeaturePack, *, ok: bool
) -> tuple[dict[str, bool | None], bool]:
    """Cheap flags (§5.6, A.7) behind the DQ gate and the illiquidity guard (§8.3, D.6).

    NULL where the flag's z is NULL; False where a gate holds it (see the module docstring).
    """
    f, ill = pack.flags, pack.illiquidity
    v_mu, s_mu = z.get("b_mean_vol"), z.get("b_mean_spread")
    v_min = (
        max(ill.v_min_floor, ill.v_min_share_of_median * v_mu)
        if v_mu is not None
        else ill.v_min_floor
    )
    spread = raw["spread_mean_m_1"]
    illiquid = raw["v_total_m_1"] < v_min or (
        spread is not None and s_mu is not None and spread > ill.spread_cap_mult * s_mu
    )
    r1, roc = raw["ret_m_1"], raw["oi_roc_m_5"]
    z_vol, z_ret, z_oi, z_spread = (
        z.get(c) for c in ("z_vol_m_1", "z_ret_abs_m_1", "z_oi_roc_m_5", "z_spread_m_1")
    )
    oi_big = roc is not None and abs(roc) >= f.min_abs_oi_roc

    def flag(value: float | None, test: bool, *, spike: bool = True) -> bool | None:
        if value is None:
            return None
        return test and ok and not (spike and illiquid)

    return {
        "is_vol_spike_m_1": flag(
            z_vol,
            z_vol is not None and z_vol >= f.z_vol and raw["trade_count_m_1"] >= f.min_trade_count,
        ),
        "is_price_spike_up_m_1": flag(
            z_ret, z_ret is not None and z_ret >= f.z_ret_abs and r1 is not None and r1 > 0
        ),
        "is_price_spike_down_m_1": flag(
            z_ret, z_ret is not None and z_ret >= f.z_ret_abs and r1 is not None and r1 < 0
        ),
        "is_oi_spike_up_m_5": flag(
            z_oi, z_oi is not None and z_oi >= f.z_oi_roc and oi_big and roc is not None and roc > 0
        ),
        "is_oi_spike_down_m_5": flag(
            z_oi,
            z_oi is not None and z_oi <= -f.z_oi_roc and oi_big and roc is not None and roc < 0,
        ),
        "is_spread_stress_m_1": flag(
            z_spread, z_spread is not None and z_spread >= f.z_spread, spike=False
        ),
        "is_liq_cluster_m_5": None,  # no liquidation feed: liq_count_m_5 is NULL
    }, illiquid
