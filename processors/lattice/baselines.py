"""Robust baselines, z-scores, quantile sketches and the IQR clamp (spec 002 §4.2-§4.8).

One ``BaselineState`` and one quantile sketch exist per asset x tf x feature (§4.8: timeframes
never share state). The caller feeds only observations that pass DQ and are not NULL (§4.7); the
kernels here reject non-finite values instead of guessing.

Baseline: a warm-up buffer of ``min_samples`` observations initialises the location to their
median and the scale to ``1.4826 * MAD``; after that an exponentially weighted update with a
winsorised residual tracks both (§4.2). The z-score is NULL until warm (§4.3).

Quantile sketch: a t-digest (``fastdigest``) whose state is always its ``to_bytes()`` image.
Every add is ``from_bytes -> update -> to_bytes``, so the live path and the restored-after-restart
path are the same code path. This matters because a live ``TDigest`` buffers single updates and
compresses lazily: a digest fed 5,000 values without queries ends with different centroids (and
different ``cdf`` answers) from one serialised after every add, and even querying a live digest
flushes its buffer and changes how it evolves. Through bytes the result depends on the values
alone: ``from_bytes(b).to_bytes() == b`` (lossless), the same sequence gives the same bytes, and
resuming from any intermediate bytes gives the same final bytes. The byte format (magic
``FASTDIG~``, format version 1) belongs to fastdigest 0.12.0; the pinned hash in the tests catches
an upgrade that would change it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fastdigest import TDigest

MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): MAD -> standard deviation under normality
ABS_DEV_TO_SIGMA = 1.2533141373155003  # sqrt(pi / 2): E|X - mu| -> standard deviation

QConfidence = Literal["low", "ok"]
BaselineJson = dict[str, int | float | list[float] | None]


@dataclass(frozen=True, slots=True)
class BaselineState:
    """Robust EW baseline of one feature for one asset x tf (spec 002 §4.2, §4.6).

    Attributes:
        n: Observations absorbed (DQ-ok, non-NULL), warm-up included.
        warm: The warm-up buffer; empty once warm.
        mu: Robust location; None during warm-up.
        sigma: Robust scale, at least ``epsilon``; None during warm-up.
        last_ts: ``exchange_ts`` label of the bar of the last update (§4.6 "last updated ts").
    """

    n: int = 0
    warm: tuple[float, ...] = ()
    mu: float | None = None
    sigma: float | None = None
    last_ts: int | None = None


def alpha_of(half_life_bars: float) -> float:
    """Return the EW weight whose decay halves after ``half_life_bars`` bars.

    Args:
        half_life_bars: Half-life in bars of the timeframe (e.g. 1440 for 1m, §4.2).

    Returns:
        ``1 - 2 ** (-1 / half_life_bars)``, in ``(0, 1]``.

    Raises:
        ValueError: If ``half_life_bars`` is not a finite positive number.
    """
    if not (math.isfinite(half_life_bars) and half_life_bars > 0):
        raise ValueError(f"half_life_bars must be finite and > 0, got {half_life_bars!r}")
    return 1 - 2 ** (-1 / half_life_bars)


def is_warm(state: BaselineState, min_samples: int) -> bool:
    """Return True once ``min_samples`` observations have initialised the baseline (§4.2)."""
    return state.n >= min_samples and state.mu is not None and state.sigma is not None


def update(
    state: BaselineState,
    x: float,
    ts: int,
    *,
    min_samples: int,
    half_life_bars: float,
    winsor_k: float,
    epsilon: float,
) -> BaselineState:
    """Absorb one observation into the baseline (spec 002 §4.2).

    Warm-up: the first ``min_samples`` values are buffered; the one that fills the buffer sets
    ``mu = median(warm)``, ``sigma = max(1.4826 * median(|w - mu|), epsilon)`` and clears it.

    Warm: with ``alpha = alpha_of(half_life_bars)``, ``r = x - mu`` and ``c = winsor_k * sigma``,
    ``mu += alpha * clip(r, -c, c)`` and ``sigma = max((1 - alpha) * sigma + alpha * s_hat,
    epsilon)`` where ``s_hat = sqrt(pi / 2) * min(|r|, c)`` (unbiased for sigma under normality
    before winsorising). Deterministic: the same states and inputs give bit-identical results.

    Args:
        state: The baseline before this bar.
        x: The feature value of the bar; the caller skips NULLs and DQ-failed bars (§4.7).
        ts: The bar's ``exchange_ts`` label, kept as ``last_ts``.
        min_samples: Observations needed before the baseline is warm (e.g. 200).
        half_life_bars: EW half-life in bars of this timeframe.
        winsor_k: Residuals are clipped at ``+-winsor_k * sigma``.
        epsilon: Floor of ``sigma`` (§4.3).

    Returns:
        The new state.

    Raises:
        ValueError: If ``x`` is not finite, ``min_samples < 1`` or ``half_life_bars`` is invalid.
    """
    x = float(x)  # an int would survive to_json/from_json as a float: keep the state uniform
    if not math.isfinite(x):
        raise ValueError(f"baseline observation must be finite, got {x!r}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    n = state.n + 1
    if state.mu is None or state.sigma is None:
        warm = (*state.warm, x)
        if n < min_samples:
            return BaselineState(n=n, warm=warm, last_ts=ts)
        mu = statistics.median(warm)
        mad = statistics.median(abs(w - mu) for w in warm)
        return BaselineState(n=n, mu=mu, sigma=max(MAD_TO_SIGMA * mad, epsilon), last_ts=ts)
    alpha = alpha_of(half_life_bars)
    r = x - state.mu
    c = winsor_k * state.sigma
    rc = min(max(r, -c), c)
    s_hat = ABS_DEV_TO_SIGMA * min(abs(r), c)
    sigma = max((1 - alpha) * state.sigma + alpha * s_hat, epsilon)
    return BaselineState(n=n, mu=state.mu + alpha * rc, sigma=sigma, last_ts=ts)


def zscore(state: BaselineState, x: float, *, min_samples: int, epsilon: float) -> float | None:
    """Return the raw robust z-score ``(x - mu) / max(sigma, epsilon)`` (spec 002 §4.3).

    Call it with the state *after* ``update`` absorbed ``x`` (§2.3: update baselines, then compute
    normalised features), so the bar that completes warm-up already has a z-score. This is the
    stored z; severity scoring clamps a copy of it (``clamp``), never the stored value (§4.4).

    Args:
        state: The baseline, already updated with this bar.
        x: The feature value of the bar.
        min_samples: Observations needed before the baseline is warm.
        epsilon: Floor of the scale (§4.3).

    Returns:
        The z-score, or None while warming up (the caller marks ``warmup=true`` in DQ).
    """
    if not is_warm(state, min_samples) or state.mu is None or state.sigma is None:
        return None
    return (x - state.mu) / max(state.sigma, epsilon)


def to_json(state: BaselineState) -> BaselineJson:
    """Return ``state`` as plain JSON types (floats round-trip exactly through ``json``)."""
    return {
        "n": state.n,
        "warm": list(state.warm),
        "mu": state.mu,
        "sigma": state.sigma,
        "last_ts": state.last_ts,
    }


def from_json(data: Mapping[str, object]) -> BaselineState:
    """Rebuild a state written by ``to_json`` (after ``json.dumps``/``json.loads``).

    A restored state continues bit-identically to one never serialised (§4.6: the first bar after
    a restart uses the reloaded baseline, no re-warm-up).

    Args:
        data: The decoded JSON object.

    Returns:
        The state.

    Raises:
        ValueError: If a field is missing or has the wrong type (corrupt state: drop the key to
            re-warm that feature, or restore the store from its changelog).
    """
    n, warm = data.get("n"), data.get("warm")
    mu, sigma, last_ts = data.get("mu"), data.get("sigma"), data.get("last_ts")
    if (
        type(n) is int
        and n >= 0
        and type(warm) is list
        and not warm
        and type(mu) is float
        and type(sigma) is float
        and type(last_ts) is int
    ):
        # A warm state (the usual case) whose fields already have their types: what the checks
        # below would build, without them.
        return BaselineState(n=n, mu=mu, sigma=sigma, last_ts=last_ts)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"baseline state: bad n {n!r}")
    if not isinstance(warm, list):
        raise ValueError(f"baseline state: bad warm {warm!r}")
    return BaselineState(
        n=n,
        warm=tuple(_number(w, "warm") for w in warm),
        mu=_optional_number(mu, "mu"),
        sigma=_optional_number(sigma, "sigma"),
        last_ts=_optional_int(last_ts, "last_ts"),
    )


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"baseline state: bad {name} {value!r}")
    return float(value)


def _optional_number(value: object, name: str) -> float | None:
    return None if value is None else _number(value, name)


def _optional_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"baseline state: bad {name} {value!r}")
    return value


def _load(state: bytes) -> TDigest:
    return TDigest.from_bytes(state)


def sketch_add(state: bytes | None, x: float, *, max_centroids: int) -> bytes:
    """Add one observation to a quantile sketch (spec 002 §4.3).

    Args:
        state: The sketch bytes, or None for an empty sketch.
        x: The feature value (the caller skips NULLs and DQ-failed bars, §4.7).
        max_centroids: t-digest compression of a new sketch; must match an existing one.

    Returns:
        The new sketch bytes.

    Raises:
        ValueError: If ``x`` is not finite, ``state`` is not a fastdigest image, or it was built
            with another ``max_centroids`` (a pack change needs a new store, not a silent mix).
    """
    if not math.isfinite(x):
        raise ValueError(f"sketch observation must be finite, got {x!r}")
    digest = TDigest(max_centroids=max_centroids) if state is None else _load(state)
    if digest.max_centroids != max_centroids:
        raise ValueError(
            f"sketch has max_centroids={digest.max_centroids}, pack says {max_centroids}"
        )
    digest.update(float(x))
    return digest.to_bytes()


def sketch_count(state: bytes | None) -> int:
    """Return the number of observations in the sketch (0 for None)."""
    return 0 if state is None else _load(state).n_values


def sketch_cdf(state: bytes | None, x: float) -> float | None:
    """Return the sketch's estimate of ``P(X <= x)``, clamped into ``[0, 1]``.

    fastdigest answers 0.0 at the value of a sketch whose values are all equal (but 0.5 for a
    single value); a constant sketch answers 0.5 at its value here, the mid-rank, so a flat
    feature does not read as an extreme low.

    Args:
        state: The sketch bytes, or None.
        x: The value to rank.

    Returns:
        The estimated CDF, or None for an empty sketch.

    Raises:
        ValueError: If ``x`` is not finite or ``state`` is not a fastdigest image.
    """
    if not math.isfinite(x):
        raise ValueError(f"cdf argument must be finite, got {x!r}")
    if state is None:
        return None
    return _cdf(_load(state), x)


def _cdf(digest: TDigest, x: float) -> float | None:
    """:func:`sketch_cdf` of a freshly loaded digest."""
    if digest.is_empty():
        return None
    low, high = digest.min(), digest.max()
    if low == high:
        return 0.0 if x < low else 1.0 if x > high else 0.5
    return min(max(digest.cdf(x), 0.0), 1.0)


def sketch_quantile(state: bytes | None, q: float) -> float | None:
    """Return the sketch's estimate of the ``q``-quantile; None for an empty sketch.

    Raises:
        ValueError: If ``q`` is not in ``[0, 1]`` or ``state`` is not a fastdigest image.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    if state is None:
        return None
    digest = _load(state)
    return None if digest.is_empty() else digest.quantile(q)


def sketch_merge(a: bytes | None, b: bytes | None) -> bytes | None:
    """Merge two sketches, e.g. minute sketches into a rollup (spec 002 §4.6, §15.2).

    The result keeps the larger ``max_centroids``. A None side returns the other unchanged.

    Raises:
        ValueError: If a side is not a fastdigest image.
    """
    if a is None or b is None:
        return b if a is None else a
    return _load(a).merge(_load(b)).to_bytes()


def quantile_of(
    state_after_add: bytes | None, x: float, *, min_samples: int
) -> tuple[float | None, QConfidence | None]:
    """Return ``(q, q_confidence)`` of ``x`` for the ``q_*`` columns (spec 002 §4.2-§4.3).

    Call it with the sketch that already holds ``x``. Quantiles are emitted during warm-up too,
    flagged ``"low"`` while the sketch holds fewer than ``min_samples`` observations.

    Args:
        state_after_add: The sketch bytes after ``sketch_add(..., x)``.
        x: The feature value of the bar.
        min_samples: Observations below which the confidence is ``"low"``.

    Returns:
        ``(q, "low" | "ok")``, or ``(None, None)`` for an empty sketch.
    """
    if not math.isfinite(x):
        raise ValueError(f"cdf argument must be finite, got {x!r}")
    if state_after_add is None:
        return None, None
    # One load for both answers: sketch_cdf and sketch_count would each load the bytes.
    digest = _load(state_after_add)
    count = digest.n_values  # read before the query, as from a fresh load
    q = _cdf(digest, x)
    if q is None:
        return None, None
    return q, "low" if count < min_samples else "ok"


def iqr_bounds(z_sketch: bytes | None, k: float) -> tuple[float, float] | None:
    """Return the scoring clamp ``(Q1 - k * IQR, Q3 + k * IQR)`` of the z values (spec 002 §4.4).

    The caller refreshes the bounds daily from the sketch of the feature's z-scores and keeps them
    between refreshes; they feed severity inputs only (``clamp``).

    Args:
        z_sketch: Sketch bytes of the stored (unclamped) z-scores, or None.
        k: IQR multiplier (start with 3).

    Returns:
        The bounds, or None for an empty sketch.
    """
    q1, q3 = sketch_quantile(z_sketch, 0.25), sketch_quantile(z_sketch, 0.75)
    if q1 is None or q3 is None:
        return None
    iqr = q3 - q1
    return q1 - k * iqr, q3 + k * iqr


def clamp(z: float | None, bounds: tuple[float, float] | None) -> float | None:
    """Clamp ``z`` into ``bounds`` for severity scoring (spec 002 §4.4).

    The stored ``z_*`` stays unclamped (truthful for analysis); only the copy handed to scoring
    is clamped. None passes through; without bounds (empty sketch) ``z`` is returned unchanged.
    """
    if z is None or bounds is None:
        return z
    low, high = bounds
    return min(max(z, low), high)
