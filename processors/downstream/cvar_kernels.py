"""CVaR guard kernels (spec 000 §18): tail estimators, shrinkage and the max-size calculator.

Pure functions on numbers: no state, no clock, no randomness. Samples are realised trade
outcomes in R units (multiples of a trade's initial risk, wins and losses alike); a CVaR is the
mean outcome of the worst ``1 - alpha`` share of them, so it is negative for any book that
loses in its tail. Sums go through :func:`math.fsum`, so an estimate does not depend on the
order its samples are summed in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.stats import genpareto  # type: ignore[import-untyped]  # scipy ships no py.typed

from schemas.errors import AlphaError

Mode = Literal["empirical", "evt"]

#: Fewest losses beyond the EVT threshold that a generalized Pareto fit is tried on.
EVT_MIN_EXCEEDANCES = 10
#: Below this |xi| the GPD is treated as its exponential limit (xi -> 0).
_XI_ZERO = 1e-9
#: ``(1 - alpha) * n`` is computed in binary floating point: 0.05 * 100 is 5.000000000000004,
#: whose ceiling would be 6. Products within this distance of an integer count as that integer.
_TAIL_EPS = 1e-9


class CvarError(AlphaError):
    """A CVaR estimate, cap or sizing input is out of range (a bug or a bad request)."""


def tail_count(n: int, alpha: float) -> int:
    """Return how many of ``n`` samples form the worst ``1 - alpha`` tail.

    ``max(1, ceil((1 - alpha) * n))``: the tail always holds at least one sample, and a share
    that falls between two counts rounds up, so the tail never holds fewer samples than its
    share (19 samples at alpha 0.95: 0.95 rounds up to 1). The product is taken with a 1e-9
    tolerance so that 5 % of 100 samples is 5, not 6.

    Raises:
        CvarError: ``n < 1`` or ``alpha`` outside (0, 1).
    """
    if n < 1:
        raise CvarError(f"tail_count needs at least one sample, got n={n}")
    if not 0.0 < alpha < 1.0:
        raise CvarError(f"alpha must be in (0, 1), got {alpha}")
    return max(1, math.ceil((1.0 - alpha) * n - _TAIL_EPS))


def empirical_cvar(samples: Sequence[float], alpha: float) -> float:
    """Return the empirical CVaR_alpha of ``samples`` (R units; negative for a losing tail).

    The mean of the ``tail_count(len(samples), alpha)`` smallest samples (spec 000 §18 step 3:
    "mean of worst alpha-tail of the empirical distribution"). Ties at the tail's edge do not
    matter: equal values give the same mean whichever of them is taken.

    Raises:
        CvarError: No samples, or ``alpha`` outside (0, 1).
    """
    k = tail_count(len(samples), alpha)
    worst = sorted(samples)[:k]
    return math.fsum(worst) / k


def gpd_cvar(
    samples: Sequence[float],
    alpha: float,
    threshold_quantile: float,
    *,
    min_exceedances: int = EVT_MIN_EXCEEDANCES,
) -> float | None:
    """Return the peaks-over-threshold (EVT) CVaR_alpha of ``samples``, or None to fall back.

    Losses are ``L = -r``. The threshold ``u`` is the ``threshold_quantile`` quantile of the
    losses (numpy's default linear interpolation); the ``N_u`` excesses ``L - u`` of the losses
    strictly above it are fitted by maximum likelihood with a generalized Pareto distribution
    (``scipy.stats.genpareto``, location fixed at 0: shape xi, scale beta). With ``n`` samples,
    the tail estimator of McNeil, Frey & Embrechts, *Quantitative Risk Management* (2005),
    §7.2.3, eqs. (7.18)-(7.19) (also McNeil & Frey 2000, J. Empirical Finance 7, eq. 9-10)::

        VaR_alpha = u + beta / xi * (((n / N_u) * (1 - alpha)) ** -xi - 1)
        ES_alpha  = (VaR_alpha + beta - xi * u) / (1 - xi)          for xi < 1

    and, for xi -> 0 (exponential tail), ``VaR = u - beta * ln((n / N_u) * (1 - alpha))``,
    ``ES = VaR + beta``. The CVaR returned is ``-ES_alpha`` (R units, negative for a loss).

    The fit is deterministic: the optimizer (scipy's Nelder-Mead) starts from the method-of-
    moments estimates of the excesses, ``xi0 = (1 - m^2 / s^2) / 2`` and
    ``beta0 = m (m^2 / s^2 + 1) / 2``, with the location pinned by ``floc=0``.

    Returns None (the caller falls back to :func:`empirical_cvar`) when ``alpha`` does not lie
    beyond the threshold (``(n / N_u) (1 - alpha) >= 1``), there are fewer than
    ``min_exceedances`` excesses, the excesses have no spread, the fit fails or gives
    non-finite parameters, ``beta <= 0``, or ``xi >= 1`` (the tail has no finite mean).

    Raises:
        CvarError: No samples, or ``alpha`` / ``threshold_quantile`` outside (0, 1).
    """
    n = len(samples)
    if n < 1:
        raise CvarError("gpd_cvar needs at least one sample")
    if not (0.0 < alpha < 1.0 and 0.0 < threshold_quantile < 1.0):
        raise CvarError(
            f"alpha and threshold_quantile must be in (0, 1): {alpha}, {threshold_quantile}"
        )
    losses = np.sort(-np.asarray(samples, dtype=np.float64))  # sorted: order-independent fit
    u = float(np.quantile(losses, threshold_quantile))
    excess = losses[losses > u] - u
    n_u = int(excess.size)
    if n_u < max(min_exceedances, 2):
        return None
    tail_share = n / n_u * (1.0 - alpha)
    if tail_share >= 1.0:
        return None
    fitted = _fit_gpd(excess)
    if fitted is None:
        return None
    xi, beta = fitted
    if abs(xi) < _XI_ZERO:
        var = u - beta * math.log(tail_share)
        es = var + beta
    else:
        var = u + beta / xi * (tail_share**-xi - 1.0)
        es = (var + beta - xi * u) / (1.0 - xi)
    return -es if math.isfinite(es) else None


def _fit_gpd(excess: np.ndarray) -> tuple[float, float] | None:
    mean = float(np.mean(excess))
    var = float(np.var(excess))
    if not (var > 0.0 and mean > 0.0):
        return None
    ratio = mean * mean / var
    xi0, beta0 = 0.5 * (1.0 - ratio), 0.5 * mean * (ratio + 1.0)
    try:
        # The likelihood is evaluated outside the support while the simplex searches: those
        # steps warn (log of a negative), which is expected, not a failure of the fit.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            xi, _loc, beta = genpareto.fit(excess, xi0, floc=0.0, scale=beta0)
    except (ValueError, RuntimeError, ArithmeticError):
        return None
    xi, beta = float(xi), float(beta)
    if not (math.isfinite(xi) and math.isfinite(beta)) or beta <= 0.0 or xi >= 1.0:
        return None
    return xi, beta


def estimate_cvar(
    samples: Sequence[float],
    alpha: float,
    mode: Mode,
    threshold_quantile: float,
    *,
    min_exceedances: int = EVT_MIN_EXCEEDANCES,
) -> tuple[float, Mode]:
    """Return ``(cvar_r, mode used)``: EVT when asked and it fits, else empirical.

    Raises:
        CvarError: No samples, or a level outside (0, 1).
    """
    if mode == "evt":
        evt = gpd_cvar(samples, alpha, threshold_quantile, min_exceedances=min_exceedances)
        if evt is not None:
            return evt, "evt"
    return empirical_cvar(samples, alpha), "empirical"


def shrink(own: float, n: int, prior: float, strength: float) -> float:
    """Return the Bayesian-shrinkage blend ``(n * own + k * prior) / (n + k)``, k = ``strength``.

    The prior counts as ``strength`` pseudo-samples (spec 000 §18 step 2). With ``n + k == 0``
    there is nothing to blend and the prior is returned.
    """
    weight = n + strength
    if weight <= 0:
        return prior
    return (n * own + strength * prior) / weight


def max_size(
    equity: float,
    price: float,
    sl_k_atr: float,
    atr: float,
    cvar_r: float,
    risk_budget_per_trade_pct: float,
    leverage_cap: float,
) -> tuple[float, float]:
    """Return ``(max_qty, max_lev)`` so that the expected tail loss at the stop fits the budget.

    Spec 000 §18 step 4: a trade stopped at ``stop_distance = sl_k_atr * atr`` (price units)
    loses 1 R by design and ``|cvar_r|`` R in the tail (stops slip), so
    ``qty * stop_distance * |cvar_r| <= equity * risk_budget_per_trade_pct``. The leverage
    ``qty * price / equity`` is then capped by ``leverage_cap`` (and the quantity with it). The
    cap falls as ``|cvar_r|`` or the ATR grows: a volatile regime lowers ``max_lev``.

    An account with no equity (``equity <= 0``) may hold nothing: ``(0.0, 0.0)``.

    Raises:
        CvarError: A non-finite input (``leverage_cap`` may be ``inf``: no cap), ``price``,
            ``sl_k_atr`` or ``atr`` not positive, ``cvar_r >= 0``, a budget outside (0, 1], or
            a negative or NaN ``leverage_cap``.
    """
    values = (equity, price, sl_k_atr, atr, cvar_r, risk_budget_per_trade_pct)
    if not all(math.isfinite(v) for v in values):
        raise CvarError(f"max_size: inputs must be finite, got {values}")
    if price <= 0 or sl_k_atr <= 0 or atr <= 0:
        raise CvarError(f"max_size: price, sl_k_atr, atr must be > 0: {price}, {sl_k_atr}, {atr}")
    if cvar_r >= 0:
        raise CvarError(f"max_size: cvar_r must be negative (a tail loss in R), got {cvar_r}")
    if not (0 < risk_budget_per_trade_pct <= 1 and leverage_cap >= 0):  # NaN cap fails too
        raise CvarError(
            f"max_size: budget must be in (0, 1] and leverage_cap >= 0: "
            f"{risk_budget_per_trade_pct}, {leverage_cap}"
        )
    if equity <= 0:
        return 0.0, 0.0
    tail_loss_per_unit = sl_k_atr * atr * -cvar_r
    budget_qty = equity * risk_budget_per_trade_pct / tail_loss_per_unit
    max_lev = min(budget_qty * price / equity, leverage_cap)
    return max_lev * equity / price, max_lev
