"""Run time of the downstream overlays (spec 000 §17-18) on their full-size daily inputs.

**HRP** (spec 000 §17 acceptance: "run-time < 2 s for <= 200 symbols"; our target 0.1 s):
200 symbols x 2,160 hourly returns (90 days), synthetic: a seeded numpy factor model -- one
market factor, 10 themes of 20 symbols with their own factor (within-theme correlation about
0.3-0.8), fat-tailed (Student t, 4 dof) idiosyncratic noise, per-symbol volatility 0.4-3 %/h --
winsorized at 3 sd once, untimed. Figures:

- ``hrp.weights_ms``: :func:`processors.downstream.hrp_kernels.hrp_weights` (covariance,
  correlation distance, single linkage, quasi-diagonal order, recursive bisection), median of
  the repeats, against PyPortfolioOpt 1.6.0 ``HRPOpt(returns).optimize("single")`` on the same
  DataFrame (its median too; the ratio is ours / theirs);
- ``hrp.budget_ms``: :func:`processors.downstream.hrp.compute_budget` from the 2,161 closes per
  symbol: alignment, log returns, winsorizing, weights, clusters, scales and the version hash;
- ``hrp.max_abs_weight_diff``: the largest difference between our weights and PyPortfolioOpt's
  (they implement the same algorithm: it should be float rounding, far below 1e-9).

Timing: ``time.perf_counter`` around each call (wall time: the spec's target is a run time;
numpy's BLAS may use both cores for the covariance), after one untimed warm-up call. Quick mode
keeps the size (a run is cheap) and takes fewer repeats.

Run alone: ``PYTHONPATH=. .venv/bin/python -m bench.b_overlays [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pypfopt.hierarchical_portfolio import HRPOpt  # type: ignore[import-untyped]  # no hints

from bench.common import Context, Figure, workdir
from packs.risk import HrpOverlay, load_risk_policy
from processors.downstream.hrp import compute_budget
from processors.downstream.hrp_kernels import hrp_weights, winsorize

HRP_TARGET_MS = 100.0
HRP_SPEC = "spec 000 §17: < 2 s for <= 200 symbols"


@dataclass(frozen=True, slots=True)
class HrpSetup:
    """The size of the HRP run."""

    symbols: int = 200
    returns: int = 2_160
    themes: int = 10
    repeats: int = 15
    peer_repeats: int = 5
    seed: int = 20250701


HRP_FULL = HrpSetup()
HRP_QUICK = HrpSetup(repeats=5, peer_repeats=1)


def factor_closes(setup: HrpSetup) -> dict[str, list[float]]:
    """Return ``setup.symbols`` synthetic 1h close series (``returns + 1`` closes each)."""
    rng = np.random.default_rng(setup.seed)
    t, n = setup.returns, setup.symbols
    market = rng.standard_normal(t)
    themes = rng.standard_normal((t, setup.themes))
    theme_of = np.arange(n) % setup.themes
    beta = rng.uniform(0.3, 1.0, n)
    gamma = rng.uniform(0.5, 1.5, n)
    noise = rng.standard_t(4, (t, n)) / np.sqrt(2.0)  # unit variance, fat tails
    raw = market[:, None] * beta + themes[:, theme_of] * gamma + noise
    vol = rng.uniform(0.004, 0.03, n)
    returns = raw / raw.std(axis=0) * vol
    closes = 100.0 * np.exp(np.vstack([np.zeros(n), np.cumsum(returns, axis=0)]))
    return {f"S{i:03d}": closes[:, i].tolist() for i in range(n)}


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: imports, first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def bench_hrp(ctx: Context) -> list[Figure]:
    """Time HRP weights and the whole budget on 200 x 2,160; compare with PyPortfolioOpt."""
    setup = HRP_QUICK if ctx.quick else HRP_FULL
    params: HrpOverlay = load_risk_policy().hrp
    params = HrpOverlay.model_validate({**params.model_dump(), "lookback_d": setup.returns // 24})
    closes = factor_closes(setup)
    names = sorted(closes)
    matrix = np.column_stack([closes[s] for s in names])
    returns = winsorize(np.diff(np.log(matrix), axis=0), params.winsor_sigma)
    frame = pd.DataFrame(returns, columns=names)
    size = f"{setup.symbols}x{setup.returns}"

    ours = _median_ms(lambda: hrp_weights(returns), setup.repeats)
    theirs = _median_ms(lambda: HRPOpt(frame).optimize("single"), setup.peer_repeats)
    budget_ms = _median_ms(lambda: compute_budget("2025-07-01", closes, {}, params), setup.repeats)
    peer = dict(HRPOpt(frame).optimize("single"))
    diff = float(np.max(np.abs(hrp_weights(returns) - np.array([peer[s] for s in names]))))
    ctx.extra["hrp"] = {"setup": asdict(setup), "max_abs_weight_diff": diff}
    return [
        ctx.figure(
            f"hrp.weights_ms.{size}",
            ours,
            "ms",
            target=HRP_TARGET_MS,
            better="lower",
            peer="PyPortfolioOpt HRPOpt",
            peer_value=theirs,
            note=f"median of {setup.repeats}; {HRP_SPEC}",
        ),
        ctx.figure(
            f"hrp.pypfopt_ms.{size}",
            theirs,
            "ms",
            better="lower",
            note=f"HRPOpt.optimize('single'), median of {setup.peer_repeats}",
        ),
        ctx.figure(
            f"hrp.budget_ms.{size}",
            budget_ms,
            "ms",
            target=HRP_TARGET_MS,
            better="lower",
            note="compute_budget from closes: returns, winsorizing, weights, clusters, hash",
        ),
        ctx.figure(
            "hrp.max_abs_weight_diff",
            diff,
            "",
            target=1e-9,
            better="lower",
            note="ours vs PyPortfolioOpt, same returns, single linkage",
        ),
    ]


# ----------------------------------------------------------------------------- the overlays
#: Every overlay's benchmark, run in this order by :func:`run`. ADD THE CVaR GUARD'S HERE
#: (spec 000 §18): a ``bench_cvar(ctx) -> list[Figure]`` function in this module (or imported),
#: appended to this tuple. Nothing else needs to change.
OVERLAYS: tuple[Callable[[Context], list[Figure]], ...] = (bench_hrp,)


def run(ctx: Context) -> list[Figure]:
    """Run every overlay's benchmark; return the figures they recorded (also in ``ctx``)."""
    figures: list[Figure] = []
    for bench in OVERLAYS:
        figures += bench(ctx)
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run this benchmark alone and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.b_overlays", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="fewer repeats, same size")
    args = parser.parse_args(argv)
    with workdir() as work:
        run(Context(work=work, quick=args.quick))


if __name__ == "__main__":
    main()
