"""CPU per CVaR guard update: add one closed trade and recompute its cap (spec 000 §18).

One *update* is :func:`processors.downstream.cvar.step`: the outcome goes into the key's and
the class's bounded windows (a new immutable book) and the (symbol, tf) cap is estimated again
from the samples: own estimate, both sides' class priors, shrinkage, ``max_size`` at the trade's
stop. Each case (mode x window) starts from a book whose key and class windows are already full
(``max_samples`` = the window: 50, 200, 500 outcomes), so every update is a steady-state one:
the oldest sample drops out as the newest comes in. Outcomes are drawn once, before timing,
from a seeded generator: 85 % ordinary trades (normal around +0.3 R), 15 % stop-outs with a
generalized-Pareto gap beyond -1 R (xi 0.2), so the EVT fit has a real tail to fit.

Per case, ``updates`` updates are timed one by one with ``time.process_time_ns`` (this
process's CPU); the figure is the median in microseconds, the p95 goes to ``ctx.extra``. In EVT
mode an update fits a generalized Pareto distribution to the losses beyond the 0.90 quantile
(``scipy.stats.genpareto.fit``, Nelder-Mead) for the key and for each side's class; at 50
samples there are only 5 excesses (< 10), so EVT falls back to the empirical estimate, which
the ``evt_fitted`` share in ``ctx.extra`` shows.

Run alone: ``.venv/bin/python -m bench.b_cvar [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import numpy as np

from bench.common import Context, quantiles, workdir
from packs.risk import CvarGuard, load_risk_policy
from processors.downstream.cvar import CvarBook, add, step
from processors.downstream.types import ClosedTrade
from tests.kit.trading import btc_trade, closed_trade

WINDOWS = (50, 200, 500)
MODES = ("empirical", "evt")
T0 = 1_756_944_000_000
LEVERAGE_CAP = 10.0


def outcomes(n: int, seed: int = 7) -> list[float]:
    """``n`` realised R outcomes: mostly ordinary trades, some stop-outs that gap."""
    rng = np.random.default_rng(seed)
    ordinary = rng.normal(0.3, 0.8, size=n)
    gap = 0.3 / 0.2 * ((1 - rng.uniform(size=n)) ** -0.2 - 1)  # GPD(xi 0.2, beta 0.3)
    stopped = rng.uniform(size=n) < 0.15
    return [float(-1.0 - g if s else o) for o, g, s in zip(ordinary, gap, stopped, strict=True)]


def closed(r: float, i: int) -> ClosedTrade:
    """A closed BTC 15m long with outcome ``r``, closed at minute ``i``."""
    trade = btc_trade(
        T0 + i * 60_000 - 900_000,
        trade_id=f"bench-{i}",
        asset_uid=1,
        tf="15m",
        stop=59_820.0,
        take_profit=60_360.0,
        risk_usd=18.0,
        leverage=1.0,
        initial_stop=59_820.0,
    )
    return closed_trade(
        trade, r, T0 + i * 60_000, exit_price=60_000.0, fees_usd=0.0, reason="bench"
    )


def time_case(cfg: CvarGuard, window: int, updates: int) -> tuple[list[float], float]:
    """Time ``updates`` steps on a full book; return us per update and the EVT-fitted share."""
    rs = outcomes(window + updates)
    book = CvarBook()
    for i, r in enumerate(rs[:window]):
        book, _ = add(book, closed(r, i), max_samples=window)
    trades = [closed(r, window + i) for i, r in enumerate(rs[window:])]
    us: list[float] = []
    fitted = 0
    gc.collect()
    for trade in trades:
        t0 = time.process_time_ns()
        book, caps = step(book, trade, cfg, leverage_cap=LEVERAGE_CAP)
        us.append((time.process_time_ns() - t0) / 1000)
        fitted += caps[0].mode == "evt"
    return us, fitted / len(trades)


def run(ctx: Context) -> None:
    """Time the update for each mode and window; record the medians."""
    updates = 40 if ctx.quick else 300
    base = load_risk_policy().cvar
    extra: dict[str, Any] = {"updates": updates, "cases": {}}
    for mode in MODES:
        for window in WINDOWS:
            cfg = base.model_copy(update={"mode": mode, "max_samples": window})
            us, fitted = time_case(cfg, window, updates)
            name = f"cvar.update.{mode}.{window}"
            note = f"step(): add + cap, {window} samples/key"
            if mode == "evt":
                note += f", EVT fitted {fitted:.0%} (else empirical fallback)"
            ctx.figure(f"{name}.us", statistics.median(us), "us", better="lower", note=note)
            extra["cases"][name] = {
                "median_us": statistics.median(us),
                "p95_us": quantiles(us, (0.95,))[0],
                "evt_fitted": fitted,
            }
    ctx.extra["cvar"] = extra


def main(argv: list[str] | None = None) -> None:
    """Run standalone and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.b_cvar", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="40 updates per case, not 300")
    args = parser.parse_args(argv)
    with workdir() as work:
        run(Context(work=work, quick=args.quick))


if __name__ == "__main__":
    main()
