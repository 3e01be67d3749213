"""The latent market behind the synthetic stream: regimes, prices, open interest, basis, funding.

Everything here is numpy arrays indexed by asset and by second or minute of the run; the records
are sampled from them in :mod:`connectors.synthetic.generator`. Randomness comes only from
``np.random.default_rng`` seeded with ``(seed, stream, ...)`` tuples, so each stream (the market
factor, each asset's path, each asset's quotes, each asset-minute's trades) is independent of the
others and of the scenario: a scenario changes the data only from its first injected minute on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from connectors.synthetic.scenarios import Scenario, target_indices

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: Random streams: the first element after the seed of every ``default_rng`` seed tuple.
STREAM_MARKET, STREAM_ASSET, STREAM_TRADES, STREAM_QUOTES = 0, 1, 2, 3

#: Regimes (calm, trending, volatile): market-factor sigma per second in bps, and multipliers of
#: idiosyncratic sigma, traded notional, spread and depth.
REGIMES = ("calm", "trending", "volatile")
_FACTOR_BPS = np.array([0.5, 0.7, 1.4])
_IDIO_X = np.array([0.8, 1.0, 1.6])
_VOLUME_X = np.array([0.8, 1.0, 1.3])
_SPREAD_X = np.array([0.9, 1.0, 1.3])
_DEPTH_X = np.array([1.1, 1.0, 0.75])
_TREND_BPS = 0.05  # drift per second of a trending regime
_STAY = 0.97  # per-minute probability of keeping the regime (episodes of ~30 minutes)
_OI_BPS = 0.12  # open-interest sigma per second, bps


@dataclass(frozen=True, slots=True)
class AssetParams:
    """The static character of one synthetic asset.

    Attributes:
        price0: Starting mid price (quote).
        px_decimals: Price decimals (tick = 10**-px_decimals, under 0.2 bps).
        sz_decimals: Size decimals (lot = 10**-sz_decimals).
        beta: Loading on the market factor (leader 1.0).
        lag_s: Seconds the asset lags the market factor (leader 0).
        idio_bps: Idiosyncratic return sigma per second, bps.
        spread_bps: Typical quoted spread, bps.
        trade_notional: Median notional of one print, quote.
        oi0: Starting open interest, base units.
        basis_bps: Mean mark-vs-oracle basis, bps.
        funding: Mean hourly funding rate.
    """

    price0: float
    px_decimals: int
    sz_decimals: int
    beta: float
    lag_s: int
    idio_bps: float
    spread_bps: float
    trade_notional: float
    oi0: float
    basis_bps: float
    funding: float


def asset_params(seed: int, index: int) -> AssetParams:
    """Draw asset ``index``'s parameters: asset 0 is a BTC-like leader near 60000."""
    g = np.random.default_rng((seed, STREAM_ASSET, index))
    u = g.random(8)
    if index == 0:
        price0 = 60_000.0 * math.exp(0.06 * (u[0] - 0.5))
        beta, lag_s, idio, spread = 1.0, 0, 0.5, 1.2
    else:
        price0 = 10 ** (-2.0 + u[0] * math.log10(3000 / 0.01))
        beta = 0.7 + 0.8 * float(u[1])
        lag_s = 1 + int(u[2] * 6)
        idio = 0.8 + float(u[3])
        spread = (2.0 + 2.0 * float(u[4])) * (1 + index / 40)
    digits = math.floor(math.log10(price0))
    notional = max(800.0, 6000.0 * 0.9**index) * (0.8 + 0.4 * float(u[5]))
    return AssetParams(
        price0=price0,
        px_decimals=min(max(5 - digits, 0), 8),
        sz_decimals=min(max(digits + 1, 0), 5),
        beta=beta,
        lag_s=lag_s,
        idio_bps=idio,
        spread_bps=spread,
        trade_notional=notional,
        oi0=notional * 6000.0 / price0,
        basis_bps=-2.0 + 8.0 * float(u[6]),
        funding=0.000005 + 0.000025 * float(u[7]),
    )


@dataclass(frozen=True, slots=True)
class Market:
    """The latent state of a run, after injection.

    Attributes:
        params: Per-asset parameters.
        regime: Regime index per minute, shape ``(minutes,)``.
        log_mid: Log mid price per asset and second, shape ``(assets, minutes*60)``.
        log_oi: Log open interest per asset and second.
        basis_bps: Mark-vs-oracle basis per asset and minute, bps.
        funding: Hourly funding rate per asset and minute.
        volume_x: Multiplier of traded notional per asset and minute.
        trades_x: Multiplier of prints per minute.
        buy_share: Taker-buy share of prints.
        spread_x: Multiplier of the asset's typical spread.
        depth_x: Multiplier of resting size.
        silent: True where trades, BBO and book stop.
    """

    params: tuple[AssetParams, ...]
    regime: Ints
    log_mid: Floats
    log_oi: Floats
    basis_bps: Floats
    funding: Floats
    volume_x: Floats
    trades_x: Floats
    buy_share: Floats
    spread_x: Floats
    depth_x: Floats
    silent: Bools


def regimes(seed: int, minutes: int) -> tuple[Ints, Floats]:
    """Return the regime per minute and the market-factor return per second (log units)."""
    g = np.random.default_rng((seed, STREAM_MARKET))
    draws = g.random((minutes, 3))
    regime = np.zeros(minutes, dtype=np.int64)
    drift = np.zeros(minutes)
    state, sign = 0, 1.0
    for m in range(minutes):
        if draws[m, 0] > _STAY:
            state = (state + 1 + int(draws[m, 1] * 2)) % 3
            sign = 1.0 if draws[m, 2] < 0.5 else -1.0
        regime[m] = state
        drift[m] = sign * _TREND_BPS if state == 1 else 0.0
    per_s = np.repeat(regime, 60)
    factor = (_FACTOR_BPS[per_s] * g.standard_normal(minutes * 60) + np.repeat(drift, 60)) * 1e-4
    return regime, factor


def build(scenario: Scenario, *, assets: int, minutes: int, seed: int, inject: int) -> Market:
    """Build the latent market of a run and inject ``scenario`` at minute ``inject``."""
    params = tuple(asset_params(seed, i) for i in range(assets))
    regime, factor = regimes(seed, minutes)
    seconds = minutes * 60
    shape = (assets, minutes)
    ret = np.empty((assets, seconds))
    oi_ret = np.empty((assets, seconds))
    basis, funding = np.empty(shape), np.empty(shape)
    volume_x, spread_x, buy_share = np.empty(shape), np.empty(shape), np.empty(shape)
    idio_x = np.repeat(_IDIO_X[regime], 60)
    for i, p in enumerate(params):
        g = np.random.default_rng((seed, STREAM_ASSET, i, 1))
        lagged = np.concatenate((np.zeros(p.lag_s), factor[: seconds - p.lag_s]))
        ret[i] = p.beta * lagged + p.idio_bps * 1e-4 * idio_x * g.standard_normal(seconds)
        oi_ret[i] = _OI_BPS * 1e-4 * g.standard_normal(seconds)
        basis[i] = p.basis_bps + _ar1(g.standard_normal(minutes), 0.9, 0.5)
        funding[i] = p.funding + _ar1(g.standard_normal(minutes), 0.98, 5e-7)
        volume_x[i] = _VOLUME_X[regime] * np.exp(0.12 * g.standard_normal(minutes))
        spread_x[i] = _SPREAD_X[regime] * np.exp(0.06 * g.standard_normal(minutes))
        buy_share[i] = np.clip(0.5 + 0.04 * g.standard_normal(minutes), 0.38, 0.62)
    market = Market(
        params=params,
        regime=regime,
        log_mid=ret,
        log_oi=oi_ret,
        basis_bps=basis,
        funding=funding,
        volume_x=volume_x,
        trades_x=np.ones(shape),
        buy_share=buy_share,
        spread_x=spread_x,
        depth_x=np.tile(_DEPTH_X[regime], (assets, 1)),
        silent=np.zeros(shape, dtype=np.bool_),
    )
    _inject(market, scenario, inject)
    # Increments were injected above; integrate them into levels in place.
    np.cumsum(ret, axis=1, out=ret)
    ret += np.log([p.price0 for p in params])[:, None]
    np.cumsum(oi_ret, axis=1, out=oi_ret)
    oi_ret += np.log([p.oi0 for p in params])[:, None]
    return market


def _ar1(shocks: Floats, phi: float, sigma: float) -> Floats:
    out = np.empty_like(shocks)
    level = 0.0
    for k, shock in enumerate(shocks.tolist()):
        level = phi * level + sigma * shock
        out[k] = level
    return out


def _inject(market: Market, scenario: Scenario, inject: int) -> None:
    assets, minutes = market.silent.shape
    per_minute = {
        "volume": market.volume_x,
        "trades": market.trades_x,
        "spread": market.spread_x,
        "depth": market.depth_x,
    }
    # Noise first: it scales the drawn moves, never an injected ramp.
    effects = sorted(scenario.effects, key=lambda e: e.channel != "noise")
    for e in effects:
        a = max(inject + e.start_min, 0)
        b = min(inject + e.start_min + e.minutes, minutes)
        if a >= b:
            continue
        rows = list(target_indices(e.target, assets))
        if e.channel in ("ret", "oi"):
            # A ramp over the effect's nominal length: a clipped effect is cut, not compressed.
            series = market.log_mid if e.channel == "ret" else market.log_oi
            series[rows, a * 60 : b * 60] += e.value / (e.minutes * 60)
        elif e.channel == "basis_bps":
            market.basis_bps[rows, a:b] += e.value
        elif e.channel == "funding":
            market.funding[rows, a:b] += e.value
        elif e.channel == "buy_share":
            market.buy_share[rows, a:b] = e.value
        elif e.channel == "noise":
            market.log_mid[rows, a * 60 : b * 60] *= e.value
        elif e.channel == "silence":
            market.silent[rows, a:b] = e.value > 0
        else:
            per_minute[e.channel][rows, a:b] *= e.value
