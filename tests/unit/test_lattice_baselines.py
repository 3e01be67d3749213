"""Robust baselines, quantile sketches and the IQR clamp: hand-computed values and properties."""

from __future__ import annotations

import hashlib
import json
import math
import random
import statistics
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.lattice.baselines import (
    BaselineState,
    alpha_of,
    clamp,
    from_json,
    iqr_bounds,
    is_warm,
    quantile_of,
    sketch_add,
    sketch_cdf,
    sketch_count,
    sketch_merge,
    sketch_quantile,
    to_json,
    update,
    zscore,
)

EPS = 1e-9
T0 = 1_756_944_060_000  # a minute label (2025-09-04T00:01:00Z)
MINUTE_MS = 60_000


def run(
    values: Sequence[float],
    *,
    min_samples: int = 3,
    half_life_bars: float = 1.0,
    winsor_k: float = 3.0,
    epsilon: float = EPS,
    state: BaselineState | None = None,
) -> tuple[BaselineState, list[float | None]]:
    """Feed ``values`` one bar apart; return the final state and the z-score of every bar."""
    state = BaselineState() if state is None else state
    zs: list[float | None] = []
    for i, x in enumerate(values, start=state.n):
        ts = T0 + i * MINUTE_MS
        state = update(
            state,
            x,
            ts,
            min_samples=min_samples,
            half_life_bars=half_life_bars,
            winsor_k=winsor_k,
            epsilon=epsilon,
        )
        zs.append(zscore(state, x, min_samples=min_samples, epsilon=epsilon))
    return state, zs


def sketch_of(values: Sequence[float], *, max_centroids: int = 100) -> bytes | None:
    state: bytes | None = None
    for x in values:
        state = sketch_add(state, x, max_centroids=max_centroids)
    return state


def exact(state: BaselineState) -> str:
    """Bit-exact text of a state (repr of floats distinguishes every double, -0.0 included)."""
    return json.dumps(to_json(state))


# ------------------------------------------------------------------------- baseline: by hand


def test_alpha_of_half_life():
    assert alpha_of(1.0) == 0.5
    assert alpha_of(2.0) == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-15)
    # after one half-life of bars the old weight (1 - alpha) ** h is one half
    assert (1 - alpha_of(1440.0)) ** 1440 == pytest.approx(0.5, rel=1e-9)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="half_life_bars"):
            alpha_of(bad)


def test_warm_up_then_one_winsorised_update_by_hand():
    state, zs = run([1.0, 2.0, 10.0])
    # median(1, 2, 10) = 2; |w - 2| = 1, 0, 8 -> MAD = 1 -> sigma = 1.4826
    assert state == BaselineState(n=3, warm=(), mu=2.0, sigma=1.4826, last_ts=T0 + 2 * MINUTE_MS)
    assert zs[:2] == [None, None]
    assert zs[2] == (10.0 - 2.0) / 1.4826

    state, _ = run([20.0], state=state)  # half-life 1 bar -> alpha = 0.5; winsor_k = 3
    # r = 18 is clipped at c = 3 * 1.4826 = 4.4478
    assert state.mu == pytest.approx(2 + 0.5 * 4.4478, rel=1e-12)  # 4.2239
    assert state.sigma == pytest.approx(0.5 * 1.4826 + 0.5 * 1.2533141373155003 * 4.4478, rel=1e-12)
    assert state.sigma == pytest.approx(3.528545309975941, rel=1e-12)
    c = 3.0 * 1.4826
    assert state.mu == 2.0 + 0.5 * c
    assert state.sigma == (1 - 0.5) * 1.4826 + 0.5 * (1.2533141373155003 * c)
    assert (state.n, state.warm, state.last_ts) == (4, (), T0 + 3 * MINUTE_MS)


def test_warm_up_median_of_an_even_buffer():
    state, _ = run([4.0, 1.0, 3.0, 10.0], min_samples=4)
    # median = (3 + 4) / 2 = 3.5; |w - 3.5| = 0.5, 2.5, 0.5, 6.5 -> MAD = (0.5 + 2.5) / 2 = 1.5
    assert state.mu == 3.5
    assert state.sigma == 1.4826 * 1.5


def test_a_small_residual_is_not_clipped():
    state = BaselineState(n=10, mu=2.0, sigma=1.0, last_ts=T0)
    new, _ = run([3.0], state=state, half_life_bars=1.0, winsor_k=3.0)
    assert new.mu == 2.0 + 0.5 * 1.0
    assert new.sigma == 0.5 * 1.0 + 0.5 * (1.2533141373155003 * 1.0)


def test_constant_series_has_epsilon_scale_and_zero_z():
    state, zs = run([7.25] * 10, min_samples=5, half_life_bars=3.0)
    assert state.mu == 7.25
    assert state.sigma == EPS
    assert zs[:4] == [None] * 4
    assert zs[4:] == [0.0] * 6


def test_z_is_null_until_the_min_samples_th_update():
    values = [float(v) for v in (5, 3, 8, 1, 9, 2, 7, 4, 6, 0)]
    state = BaselineState()
    for i, x in enumerate(values, start=1):
        assert is_warm(state, 6) == (i > 6)
        state = update(state, x, T0, min_samples=6, half_life_bars=10.0, winsor_k=3.0, epsilon=EPS)
        z = zscore(state, x, min_samples=6, epsilon=EPS)
        assert (z is None) == (i < 6)
        assert is_warm(state, 6) == (i >= 6)
        assert len(state.warm) == (i if i < 6 else 0)


def test_non_finite_observations_are_rejected():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            update(BaselineState(), bad, T0, min_samples=3, half_life_bars=1, winsor_k=3, epsilon=1)
    with pytest.raises(ValueError, match="min_samples"):
        update(BaselineState(), 1.0, T0, min_samples=0, half_life_bars=1, winsor_k=3, epsilon=1)


def test_json_round_trip_and_corrupt_state():
    warm_up, _ = run([1.0, 2.0], min_samples=3)
    warm, _ = run([1.0, 2.0, 10.0, 20.0])
    for state in (BaselineState(), warm_up, warm):
        assert from_json(json.loads(json.dumps(to_json(state)))) == state
    assert to_json(warm_up) == {
        "n": 2,
        "warm": [1.0, 2.0],
        "mu": None,
        "sigma": None,
        "last_ts": T0 + MINUTE_MS,
    }
    for corrupt in (
        {},
        {"n": "3", "warm": []},
        {"n": 1, "warm": ["x"]},
        {"n": 1, "warm": [], "mu": True},
    ):
        with pytest.raises(ValueError, match="baseline state"):
            from_json(corrupt)


# ------------------------------------------------------------------------- baseline: properties

observations = st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60)
params = st.fixed_dictionaries(
    {
        "min_samples": st.integers(1, 12),
        "half_life_bars": st.floats(0.5, 1e4),
        "winsor_k": st.floats(0.5, 6.0),
    }
)


@settings(max_examples=150, deadline=None)
@given(observations, params)
def test_mu_stays_within_the_observed_range_and_sigma_above_epsilon(values, kw):
    state = BaselineState()
    for i, x in enumerate(values):
        state, _ = run([x], state=state, **kw)
        low, high = min(values[: i + 1]), max(values[: i + 1])
        if state.mu is not None:
            slack = 4 * math.ulp(max(abs(low), abs(high)))  # mu + alpha * r may round past x
            assert low - slack <= state.mu <= high + slack
            assert state.sigma is not None
            assert state.sigma >= EPS


@settings(max_examples=150, deadline=None)
@given(observations, params, st.integers(0, 60))
def test_a_state_restored_from_json_continues_bit_identically(values, kw, split):
    split = min(split, len(values))
    direct, direct_z = run(values, **kw)
    head, head_z = run(values[:split], **kw)
    restored = from_json(json.loads(json.dumps(to_json(head))))
    resumed, tail_z = run(values[split:], state=restored, **kw)
    assert exact(resumed) == exact(direct)
    assert resumed == direct
    assert [repr(z) for z in head_z + tail_z] == [repr(z) for z in direct_z]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-1000, 1000), min_size=3, max_size=40, unique=True),
    st.integers(2, 10),
    st.floats(10.0, 500.0),
    st.floats(0.1, 10.0),
    st.floats(-100.0, 100.0),
)
def test_zscore_is_invariant_under_a_positive_affine_map(ints, min_samples, half_life, a, b):
    # Distinct integers and >= 2 warm-up values keep the MAD >= 0.5; with alpha <= 0.067 sigma
    # decays by < 15x over 38 bars, so it stays far above epsilon (which breaks the invariance).
    min_samples = min(min_samples, len(ints))
    values = [float(v) for v in ints]
    kw = {"min_samples": min_samples, "half_life_bars": half_life, "winsor_k": 3.0}
    state, zs = run(values, **kw)
    mapped, mapped_zs = run([a * v + b for v in values], **kw)
    assert state.mu is not None
    assert state.sigma is not None
    assert state.sigma > 1e-3
    # location and scale are equivariant: mu -> a * mu + b, sigma -> a * sigma
    assert mapped.mu == pytest.approx(a * state.mu + b, rel=1e-9, abs=1e-9)
    assert mapped.sigma == pytest.approx(a * state.sigma, rel=1e-9)
    assert [z is None for z in zs] == [z is None for z in mapped_zs]
    for z, mz in zip(zs, mapped_zs, strict=True):
        if z is not None:
            assert mz == pytest.approx(z, rel=1e-6, abs=1e-6)


# ------------------------------------------------------------------------- quantile sketch

PINNED_VALUES = [((i * 7919) % 1000) / 8.0 for i in range(500)]  # exact doubles, no libm
# fastdigest 0.12.0 byte image of PINNED_VALUES at max_centroids=50 (compression exercised).
# A change means stored sketches would not continue identically: bump the store name.
PINNED_SHA256 = "20ea15b33ee90d6224bce46499c94557941a8a72c009288ee913b1b280a033a0"


def test_sketch_bytes_are_deterministic_and_pinned():
    first = sketch_of(PINNED_VALUES, max_centroids=50)
    assert first == sketch_of(PINNED_VALUES, max_centroids=50)
    assert first is not None
    assert first.startswith(b"FASTDIG~")
    assert hashlib.sha256(first).hexdigest() == PINNED_SHA256


def test_sketch_resumed_from_any_intermediate_bytes_ends_identically():
    values = [random.Random(7).lognormvariate(0, 2) for _ in range(400)]
    final = sketch_of(values, max_centroids=30)
    state = None
    for i, x in enumerate(values):
        state = sketch_add(state, x, max_centroids=30)
        if i % 50 == 0:
            resumed = bytes(bytearray(state))  # as if reloaded from the store
            for y in values[i + 1 :]:
                resumed = sketch_add(resumed, y, max_centroids=30)
            assert resumed == final


def test_interleaved_sketches_share_no_hidden_state():
    rng = random.Random(3)
    xs = [rng.gauss(0, 1) for _ in range(300)]
    ys = [rng.expovariate(1) for _ in range(300)]
    a = b = None
    for x, y in zip(xs, ys, strict=True):
        a = sketch_add(a, x, max_centroids=20)
        b = sketch_add(b, y, max_centroids=20)
    assert a == sketch_of(xs, max_centroids=20)
    assert b == sketch_of(ys, max_centroids=20)


def test_empty_sketch_answers():
    assert sketch_count(None) == 0
    assert sketch_cdf(None, 1.0) is None
    assert sketch_quantile(None, 0.5) is None
    assert quantile_of(None, 1.0, min_samples=5) == (None, None)
    assert iqr_bounds(None, 3.0) is None
    assert sketch_merge(None, None) is None


def test_small_sketch_values_by_hand():
    state = sketch_of([1.0, 2.0, 3.0])
    assert sketch_count(state) == 3
    assert sketch_cdf(state, 2.0) == 0.5
    assert sketch_cdf(state, 0.0) == 0.0
    assert sketch_cdf(state, 4.0) == 1.0
    assert sketch_quantile(state, 0.5) == 2.0


def test_constant_sketch_ranks_its_value_at_the_middle():
    state = sketch_of([5.0] * 4)
    assert sketch_cdf(state, 5.0) == 0.5
    assert sketch_cdf(state, 4.0) == 0.0
    assert sketch_cdf(state, 6.0) == 1.0
    assert quantile_of(state, 5.0, min_samples=3) == (0.5, "ok")


def test_quantile_confidence_is_low_below_min_samples():
    state = None
    for i, x in enumerate([3.0, 1.0, 2.0, 5.0, 4.0], start=1):
        state = sketch_add(state, x, max_centroids=100)
        q, confidence = quantile_of(state, x, min_samples=4)
        assert q is not None
        assert 0.0 <= q <= 1.0
        assert confidence == ("low" if i < 4 else "ok")


def test_sketch_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        sketch_add(None, math.nan, max_centroids=100)
    with pytest.raises(ValueError, match="finite"):
        sketch_cdf(sketch_of([1.0]), math.inf)
    with pytest.raises(ValueError, match="max_centroids"):
        sketch_add(sketch_of([1.0], max_centroids=100), 2.0, max_centroids=50)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sketch_quantile(sketch_of([1.0]), 1.5)
    with pytest.raises(ValueError, match="fastDigest"):
        sketch_count(b"not a digest")


def test_median_of_a_large_uniform_sample():
    rng = random.Random(11)
    values = [rng.uniform(0, 1000) for _ in range(5000)]
    state = sketch_of(values)
    median = sketch_quantile(state, 0.5)
    assert median == pytest.approx(statistics.median(values), abs=5.0)  # 0.5 % of the range
    q, confidence = quantile_of(state, values[-1], min_samples=200)
    assert confidence == "ok"
    assert q == pytest.approx(sum(v <= values[-1] for v in values) / 5000, abs=0.01)


def test_merge_counts_and_sides():
    a, b = sketch_of([1.0, 2.0, 3.0]), sketch_of([4.0, 5.0], max_centroids=200)
    merged = sketch_merge(a, b)
    assert sketch_count(merged) == 5
    assert sketch_quantile(merged, 0.5) == 3.0
    assert sketch_merge(a, None) == a
    assert sketch_merge(None, b) == b
    assert merged is not None
    # the larger compression wins, so later adds must use it
    assert sketch_count(sketch_add(merged, 6.0, max_centroids=200)) == 6


finite = st.floats(-1e9, 1e9)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=1, max_size=200), finite, finite)
def test_cdf_is_monotone_and_within_unit_interval(values, x1, x2):
    state = sketch_of(values, max_centroids=20)
    low, high = sorted((x1, x2))
    c_low, c_high = sketch_cdf(state, low), sketch_cdf(state, high)
    assert c_low is not None
    assert c_high is not None
    assert 0.0 <= c_low <= c_high <= 1.0
    for x in values:
        q, _ = quantile_of(state, x, min_samples=10)
        assert q is not None
        assert 0.0 <= q <= 1.0


# ------------------------------------------------------------------------- IQR clamp


def test_iqr_bounds_by_hand():
    state = sketch_of([float(v) for v in range(1, 10)])
    # Q1 = 3, Q3 = 7 -> IQR = 4 -> [3 - 3 * 4, 7 + 3 * 4]
    assert sketch_quantile(state, 0.25) == 3.0
    assert sketch_quantile(state, 0.75) == 7.0
    assert iqr_bounds(state, 3.0) == (-9.0, 19.0)
    assert iqr_bounds(sketch_of([2.5]), 3.0) == (2.5, 2.5)


def test_clamp_for_scoring_only():
    bounds = (-9.0, 19.0)
    assert clamp(25.0, bounds) == 19.0
    assert clamp(-12.5, bounds) == -9.0
    assert clamp(4.0, bounds) == 4.0
    assert clamp(None, bounds) is None
    assert clamp(42.0, None) == 42.0
