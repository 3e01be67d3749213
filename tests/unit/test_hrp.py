"""The HRP overlay (spec 000 §17): kernels, budget, scales; a cross-check with PyPortfolioOpt."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypfopt.hierarchical_portfolio import HRPOpt  # type: ignore[import-untyped]  # no hints
from scipy.linalg import hadamard  # type: ignore[import-untyped]  # scipy has no hints

from packs.risk import HrpOverlay, load_risk_policy
from processors.downstream import hrp_kernels as k
from processors.downstream.hrp import (
    HrpBudget,
    budget_json,
    cluster_of,
    cluster_scale,
    compute_budget,
    scale_of,
)
from topology.hrp_cli import DEFAULT_DATA, closes_until, read_candles

DAY = "2025-07-01"
CUTOFF_MS = 1_751_328_000_000  # 2025-07-01T00:00Z
GROUPS = {
    "majors": ("BTC", "ETH", "BNB"),
    "l1": ("SOL", "ADA", "APT", "SUI", "SEI", "NEAR"),
    "defi": ("AAVE", "UNI", "CRV"),
    "memes": ("DOGE", "kPEPE", "kSHIB"),
}


@pytest.fixture(scope="module")
def params() -> HrpOverlay:
    return load_risk_policy().hrp


def with_(params: HrpOverlay, **changes: object) -> HrpOverlay:
    return HrpOverlay.model_validate({**params.model_dump(), **changes})


def factor_closes(
    seed: int, hours: int = 24 * 90 + 1, rho: dict[str, float] | None = None
) -> dict[str, list[float]]:
    """Closes from a market factor plus one factor per cluster (within-cluster share ``rho``)."""
    rng = np.random.default_rng(seed)
    market = rng.standard_normal(hours - 1)
    out: dict[str, list[float]] = {}
    for cluster, symbols in GROUPS.items():
        theme = rng.standard_normal(hours - 1)
        share = (rho or {}).get(cluster, 0.3)
        for symbol in symbols:
            own = rng.standard_normal(hours - 1)
            mix = math.sqrt(share) * theme + math.sqrt(1 - share) * own
            ret = 0.01 * (0.4 * market + math.sqrt(0.84) * mix)
            out[symbol] = list(100.0 * np.exp(np.concatenate([[0.0], np.cumsum(ret)])))
    return out


@pytest.fixture(scope="module")
def real_closes(params: HrpOverlay) -> dict[str, list[float]]:
    closes, skipped = closes_until(
        read_candles(DEFAULT_DATA), CUTOFF_MS, params.lookback_d * 24 + 1
    )
    assert skipped == {}
    return closes


def pypfopt_weights(returns: np.ndarray, names: list[str]) -> np.ndarray:
    weights = HRPOpt(pd.DataFrame(returns, columns=names)).optimize(linkage_method="single")
    return np.array([weights[n] for n in names])


# ----------------------------------------------------------------------------- kernels


def test_log_returns_of_closes():
    closes = np.array([[100.0, 1.0], [110.0, 2.0], [99.0, 2.0]])
    np.testing.assert_allclose(
        k.log_returns(closes), [[math.log(1.1), math.log(2.0)], [math.log(0.9), 0.0]]
    )


def test_winsorize_clips_each_column_at_its_own_sigma():
    rng = np.random.default_rng(3)
    returns = rng.standard_normal((500, 2)) * [0.01, 0.05]
    returns[10, 0] = 0.5  # a 50-sigma print in the first column only
    clipped = k.winsorize(returns, 3.0)
    mean, sd = returns.mean(axis=0), returns.std(axis=0, ddof=1)
    assert clipped[10, 0] == pytest.approx(mean[0] + 3 * sd[0])
    assert (np.abs(clipped - mean) <= 3 * sd + 1e-15).all()
    inside = np.abs(returns - mean) <= 3 * sd
    np.testing.assert_array_equal(clipped[inside], returns[inside])
    assert (clipped != returns).sum() == (~inside).sum() > 0


def test_distance_is_zero_for_identical_and_one_for_opposite_series():
    dist = k.correlation_distance(np.array([[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1, -1, 1.0]]))
    np.testing.assert_allclose(dist, [[0, 0, 1], [0, 0, 1], [1, 1, 0]])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 14),
    rows=st.integers(5, 120),
)
def test_hrp_weights_are_positive_and_sum_to_one(seed, n, rows):
    rng = np.random.default_rng(seed)
    returns = rng.standard_normal((rows, n)) @ rng.standard_normal((n, n)) * 0.01
    weights = k.hrp_weights(returns)
    assert weights.shape == (n,)
    assert (weights > 0).all()
    assert math.fsum(weights) == pytest.approx(1.0, abs=1e-12)


def test_two_assets_get_inverse_variance_weights():
    rng = np.random.default_rng(5)
    returns = rng.standard_normal((300, 2)) * [0.01, 0.03]
    var = returns.var(axis=0, ddof=1)
    expected = (1 / var) / (1 / var).sum()
    np.testing.assert_allclose(k.hrp_weights(returns), expected, rtol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_uncorrelated_equal_variance_assets_share_equally(n):
    # Hadamard columns are exactly orthogonal: zero sample correlation, equal variance. Every
    # distance ties; whatever the leaf order, each half gets weight in proportion to its size.
    returns = hadamard(8)[:, 1 : n + 1].astype(float) * 0.01
    np.testing.assert_allclose(k.hrp_weights(returns), np.full(n, 1 / n), rtol=1e-12)


def test_correlated_pair_is_grouped_in_the_quasi_diagonal_order():
    rng = np.random.default_rng(11)
    base = rng.standard_normal((400, 4))
    base[:, 3] = base[:, 0] + 0.05 * rng.standard_normal(400)  # 0 and 3 nearly the same
    corr = k.correlation(k.covariance(base))
    order = k.quasi_diagonal_order(k.correlation_distance(corr))
    assert sorted(order) == [0, 1, 2, 3]
    assert abs(order.index(0) - order.index(3)) == 1


# ----------------------------------------------------------------------------- PyPortfolioOpt


def test_weights_match_pypfopt_on_real_hyperliquid_closes(real_closes, params):
    names = sorted(real_closes)
    returns = k.winsorize(
        k.log_returns(np.column_stack([real_closes[s] for s in names])), params.winsor_sigma
    )
    ours = k.hrp_weights(returns)
    theirs = pypfopt_weights(returns, names)
    assert len(names) == 30
    assert np.abs(ours - theirs).max() < 1e-9
    budget = compute_budget(DAY, real_closes, {}, params)
    assert np.abs(np.array([budget.weights[s] for s in names]) - theirs).max() < 1e-9


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weights_match_pypfopt_on_a_factor_model(seed):
    rng = np.random.default_rng(seed)
    n = 60
    loadings = rng.uniform(0.2, 1.0, (n, 6)) * (rng.random((n, 6)) < 0.4)
    returns = (rng.standard_normal((1000, 6)) @ loadings.T + rng.standard_normal((1000, n))) * 0.01
    returns = k.winsorize(returns, 3.0)
    names = [f"S{i:02d}" for i in range(n)]
    assert np.abs(k.hrp_weights(returns) - pypfopt_weights(returns, names)).max() < 1e-9


# ----------------------------------------------------------------------------- the budget


def test_budget_weights_clusters_and_limits(params):
    budget = compute_budget(DAY, factor_closes(7), {}, params)
    assert budget.symbols == tuple(sorted(s for g in GROUPS.values() for s in g))
    assert math.fsum(budget.weights.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(w > 0 for w in budget.weights.values())
    assert [c.cluster for c in budget.clusters] == sorted(GROUPS)
    for line in budget.clusters:
        assert line.symbols == tuple(sorted(GROUPS[line.cluster]))
        assert line.weight == pytest.approx(sum(budget.weights[s] for s in line.symbols))
        assert line.max_equity_risk_pct == line.weight * params.target_risk_budget_pct
        assert (line.open_risk_pct, line.scale) == (0.0, 1.0)  # no open risk: no penalty
    total = math.fsum(c.max_equity_risk_pct for c in budget.clusters)
    assert total == pytest.approx(params.target_risk_budget_pct, abs=1e-12)
    assert budget.n_returns == params.lookback_d * 24
    assert budget.payload()["l1"] == {
        "max_equity_risk": budget.clusters[1].max_equity_risk_pct,
        "scale": 1.0,
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_correlated_l1_coins_shrink_the_l1_budget_and_its_scale(params, seed):
    # Acceptance: "if L1 coins become highly correlated, the L1 cluster budget reduces and
    # scale < 1". The same open L1 risk fits the calm budget exactly and overflows the crowded.
    calm = compute_budget(DAY, factor_closes(seed), {}, params).cluster("l1")
    assert calm is not None
    open_risk = {"l1": calm.max_equity_risk_pct, "majors": 0.01}
    again = compute_budget(DAY, factor_closes(seed), open_risk, params).cluster("l1")
    crowded = compute_budget(DAY, factor_closes(seed, rho={"l1": 0.9}), open_risk, params)
    l1 = crowded.cluster("l1")
    assert again is not None
    assert again.scale == 1.0
    assert l1 is not None
    assert l1.max_equity_risk_pct < calm.max_equity_risk_pct
    assert params.min_scale <= l1.scale < 1.0
    assert scale_of(crowded, "defi") == 1.0  # no open risk in a cluster: scale 1


def test_scale_formula_and_its_clamp():
    # Golden path 1: open risk 30 % over the cluster's budget -> new trades at 70 % of risk.
    assert cluster_scale(0.013, 0.010, 0.5) == pytest.approx(0.7)
    assert cluster_scale(0.010, 0.010, 0.5) == 1.0
    assert cluster_scale(0.004, 0.010, 0.5) == 1.0
    assert cluster_scale(0.030, 0.010, 0.5) == 0.5
    assert cluster_scale(0.0, 0.0, 0.5) == 1.0
    assert cluster_scale(0.001, 0.0, 0.5) == 0.5


def test_input_order_does_not_matter(params):
    closes = factor_closes(9)
    risk = {"l1": 0.03, "memes": 0.002, "majors": 0.01}
    shuffled = list(closes.items())
    random.Random(1).shuffle(shuffled)
    other = compute_budget(DAY, dict(shuffled), dict(reversed(list(risk.items()))), params)
    assert budget_json(other) == budget_json(compute_budget(DAY, closes, risk, params))


def test_same_inputs_same_bytes_and_version(params):
    closes = factor_closes(4)
    first = compute_budget(DAY, closes, {"l1": 0.02}, params)
    assert budget_json(compute_budget(DAY, closes, {"l1": 0.02}, params)) == budget_json(first)
    assert first.version.startswith("sha256:")
    assert len(first.version) == 23
    nudged = {**closes, "BTC": [*closes["BTC"][:-1], closes["BTC"][-1] * (1 + 1e-12)]}
    versions = {
        first.version,
        compute_budget(DAY, nudged, {"l1": 0.02}, params).version,
        compute_budget(DAY, closes, {"l1": 0.021}, params).version,
        compute_budget("2025-07-02", closes, {"l1": 0.02}, params).version,
        compute_budget(DAY, closes, {"l1": 0.02}, with_(params, min_scale=0.4)).version,
    }
    assert len(versions) == 5


def test_json_round_trip(params):
    budget = compute_budget(DAY, factor_closes(2), {"memes": 0.004}, params)
    text = json.dumps(budget.to_json())
    again = HrpBudget.from_json(json.loads(text))
    assert again == budget
    assert budget_json(again) == budget_json(budget)


def test_unequal_lengths_align_on_the_common_tail(params):
    closes = factor_closes(5)
    closes["SOL"] = closes["SOL"][-501:]  # a young listing: 500 returns
    closes["ADA"] = closes["ADA"][-100:]  # too young: 99 < min_history_h
    budget = compute_budget(DAY, closes, {}, params)
    assert budget.n_returns == 500
    assert "SOL" in budget.weights
    assert budget.dropped == {"ADA": "99 1h returns < min_history_h"}
    # The result is the one of every series cut to the same 501 closes.
    cut = {s: c[-501:] for s, c in closes.items() if s != "ADA"}
    assert compute_budget(DAY, cut, {}, params).weights == budget.weights


def test_history_beyond_the_lookback_is_ignored(params):
    short = with_(params, lookback_d=10)
    closes = factor_closes(6)
    budget = compute_budget(DAY, closes, {}, short)
    tail = {s: c[-(10 * 24 + 1) :] for s, c in closes.items()}
    assert budget.n_returns == 240
    assert budget.weights == compute_budget(DAY, tail, {}, short).weights


def test_bad_and_flat_series_are_left_out_with_their_reason(params):
    closes = factor_closes(8)
    closes["BTC"][-5] = math.nan
    closes["ETH"][100] = 0.0
    closes["UNI"] = [2.0] * len(closes["UNI"])
    budget = compute_budget(DAY, closes, {}, params)
    assert set(budget.dropped) == {"BTC", "ETH", "UNI"}
    assert "flat" in budget.dropped["UNI"]
    assert "non-positive" in budget.dropped["BTC"]
    assert set(budget.symbols).isdisjoint(budget.dropped)
    assert math.fsum(budget.weights.values()) == pytest.approx(1.0, abs=1e-12)
    majors = budget.cluster("majors")
    assert majors is not None
    assert majors.symbols == ("BNB",)  # BNB is left


def test_unmapped_symbols_go_to_the_default_cluster_and_empty_clusters_get_no_line(params):
    assert cluster_of("BTC", params) == "majors"
    assert cluster_of("XYZ", params) == params.default_cluster
    closes = factor_closes(10)
    closes["XYZ"] = closes.pop("kSHIB")
    budget = compute_budget(DAY, closes, {"ai": 0.01}, params)
    alts = budget.cluster(params.default_cluster)
    assert alts is not None
    assert alts.symbols == ("XYZ",)
    assert budget.cluster("ai") is None  # in the map, no symbol in the data
    assert scale_of(budget, "ai") == params.min_scale  # no budget to measure against
    assert scale_of(budget, "nonexistent") == params.min_scale


def test_no_usable_symbol_gives_an_empty_budget(params):
    budget = compute_budget(DAY, {"BTC": [1.0, 2.0, 3.0]}, {"majors": 0.01}, params)
    assert budget.symbols == ()
    assert budget.clusters == ()
    assert budget.weights == {}
    assert budget.n_returns == 0
    assert scale_of(budget, "majors") == params.min_scale
    assert compute_budget(DAY, {}, {}, params).dropped == {}


def test_one_symbol_gets_the_whole_budget(params):
    budget = compute_budget(DAY, {"BTC": factor_closes(1)["BTC"]}, {"majors": 0.24}, params)
    assert budget.weights == {"BTC": 1.0}
    line = budget.cluster("majors")
    assert line is not None
    assert line.max_equity_risk_pct == params.target_risk_budget_pct
    assert line.scale == params.min_scale  # twice the budget open


@pytest.mark.parametrize(
    ("date", "risk"),
    [
        ("2025-7-1", {}),
        ("20250701", {}),
        ("2025-02-30", {}),
        (DAY, {"l1": -0.01}),
        (DAY, {"l1": math.nan}),
    ],
)
def test_caller_bugs_raise(params, date, risk):
    with pytest.raises(ValueError, match=r"YYYY-MM-DD|finite"):
        compute_budget(date, factor_closes(1, hours=200), risk, params)


# ----------------------------------------------------------------------------- real data


def test_budget_on_real_hyperliquid_closes_is_sane(real_closes, params):
    budget = compute_budget(DAY, real_closes, {"l1": 0.08, "memes": 0.001}, params)
    assert len(budget.symbols) == 30
    assert budget.dropped == {}
    assert budget.n_returns == params.lookback_d * 24
    assert {c.cluster for c in budget.clusters} == set(params.cluster_map.values())
    assert math.fsum(budget.weights.values()) == pytest.approx(1.0, abs=1e-12)
    for name in ("majors", "l1"):
        line = budget.cluster(name)
        assert line is not None
        assert line.max_equity_risk_pct > 0.005
    l1 = budget.cluster("l1")
    assert l1 is not None
    assert l1.open_risk_pct == 0.08
    assert params.min_scale <= l1.scale < 1.0
    assert scale_of(budget, "memes") == 1.0  # open 0.1 % < its budget


def test_the_bootstrap_budget_weighs_symbols_equally_and_still_scales_crowding(params):
    from processors.downstream.hrp import bootstrap_budget

    symbols = ["ADA", "BTC", "DOGE", "ETH", "SOL"]  # l1 x2, majors x2, memes x1
    budget = bootstrap_budget("2025-07-02", symbols, {"l1": 0.06}, params)
    assert budget.n_returns == 0
    assert budget.version.startswith("bootstrap:")
    lines = {c.cluster: c for c in budget.clusters}
    assert sorted(lines) == ["l1", "majors", "memes"]
    assert lines["l1"].weight == pytest.approx(0.4)
    assert lines["memes"].max_equity_risk_pct == pytest.approx(0.2 * params.target_risk_budget_pct)
    # 6 % open against a 4.8 % budget: 25 % over -> scale 0.75; no open risk -> 1
    assert lines["l1"].scale == pytest.approx(0.75)
    assert lines["majors"].scale == 1.0
    again = bootstrap_budget("2025-07-02", symbols, {"l1": 0.06}, params)
    assert again.to_json() == budget.to_json()
