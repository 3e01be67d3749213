"""``alpha hrp backtest --date YYYY-MM-DD``: the HRP budget a day would have had (spec 000 §17).

Reads 1h candles (freqtrade Feather files ``<BASE>_<QUOTE>_<SETTLE>-1h-futures.feather``, open
times in ``date``) from a folder -- by default the bundled
``data/samples/hyperliquid-perps-1h-candles-freqtrade-2025-07`` (30 Hyperliquid perps) -- and
computes the budget of that UTC day with the shipped risk pack's ``hrp`` section
(:func:`processors.downstream.hrp.compute_budget`).

The day's budget sees what was known at 00:00 UTC: the closes of the candles that opened before
it, the last one the 23:00 candle of the day before. Each symbol contributes its last
``lookback_d x 24 + 1`` closes, contiguous up to that candle; a symbol whose data ends earlier,
or has no candle then, is left out with its reason. ``--open-risk l1=0.05`` says 5 % of equity is
already at risk in the l1 cluster (fractions, as in the pack).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.feather as feather
from rich.console import Console
from rich.table import Table

from packs.risk import HrpOverlay, load_risk_policy
from schemas.errors import AlphaError
from topology.settings import REPO_ROOT, StackSettings

if TYPE_CHECKING:  # the processor imports scipy: loaded when the command runs, not at start-up
    from processors.downstream.hrp import HrpBudget

DEFAULT_DATA = REPO_ROOT / "data" / "samples" / "hyperliquid-perps-1h-candles-freqtrade-2025-07"
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_FILE = re.compile(r"^(?P<base>[^_]+)_[^-]+-1h-futures\.feather$")

_out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


class HrpBacktestError(AlphaError):
    """The HRP backtest cannot run: no candle files, a bad argument, or a date outside the data."""


@dataclass(frozen=True, slots=True)
class Candles:
    """One symbol's 1h candles: open times (epoch ms, ascending) and closes."""

    symbol: str
    open_ms: npt.NDArray[np.int64]
    close: npt.NDArray[np.float64]


def read_candles(folder: Path) -> dict[str, Candles]:
    """Read every ``*-1h-futures.feather`` file of ``folder``, by base symbol.

    Raises:
        HrpBacktestError: The folder does not exist or holds no 1h candle file.
    """
    if not folder.is_dir():
        raise HrpBacktestError(f"{folder}: no such folder")
    out: dict[str, Candles] = {}
    for path in sorted(folder.glob("*-1h-futures.feather")):
        match = _FILE.match(path.name)
        if match is None:
            continue
        table = feather.read_table(path, columns=["date", "close"])
        opens = table.column("date").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        order = np.argsort(opens.to_numpy(), kind="stable")
        out[match["base"]] = Candles(
            match["base"],
            opens.to_numpy()[order].astype(np.int64),
            table.column("close").to_numpy().astype(np.float64)[order],
        )
    if not out:
        raise HrpBacktestError(f"{folder}: no *-1h-futures.feather files")
    return out


def closes_until(
    candles: dict[str, Candles], cutoff_ms: int, max_closes: int
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Return each symbol's closes known at ``cutoff_ms``, and why the others have none.

    A symbol's closes are those of its contiguous hourly candles ending with the one that opens
    at ``cutoff_ms - 1 h`` (at most ``max_closes``, the latest). A symbol without that candle
    (its data ends earlier or starts later) is skipped with its reason.
    """
    closes: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    last_open = cutoff_ms - HOUR_MS
    for symbol, c in sorted(candles.items()):
        end = int((c.open_ms <= last_open).sum())
        if end == 0 or int(c.open_ms[end - 1]) != last_open:
            skipped[symbol] = "no candle for the hour before the cut-off" + (
                f" (data from {_iso(int(c.open_ms[0]))} to {_iso(int(c.open_ms[-1]))})"
            )
            continue
        start = max(0, end - max_closes)
        steps = c.open_ms[start + 1 : end] - c.open_ms[start : end - 1]
        gaps = [i for i, step in enumerate(steps) if step != HOUR_MS]
        if gaps:  # keep the run after the last gap
            start += gaps[-1] + 1
        closes[symbol] = [float(x) for x in c.close[start:end]]
    return closes, skipped


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _day_ms(text: str) -> int:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise HrpBacktestError(f"--date {text!r}: expected YYYY-MM-DD") from None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _budget_days(candles: dict[str, Candles], min_history_h: int) -> tuple[str, str]:
    first = min(int(c.open_ms[0]) for c in candles.values())
    last = max(int(c.open_ms[-1]) for c in candles.values())
    # The first cut-off with min_history_h returns (min_history_h + 1 closes) for some symbol.
    earliest = first + (min_history_h + 1) * HOUR_MS
    earliest_day = -(-earliest // DAY_MS) * DAY_MS
    latest_day = (last + HOUR_MS) // DAY_MS * DAY_MS
    fmt = "%Y-%m-%d"
    return (
        datetime.fromtimestamp(earliest_day / 1000, tz=UTC).strftime(fmt),
        datetime.fromtimestamp(latest_day / 1000, tz=UTC).strftime(fmt),
    )


def _open_risk(items: list[str]) -> dict[str, float]:
    risk: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            pct = float(value)
        except ValueError:
            pct = math.nan
        if not sep or not name or not (math.isfinite(pct) and pct >= 0):
            raise HrpBacktestError(
                f"--open-risk {item!r}: expected CLUSTER=FRACTION, e.g. l1=0.05 (5 % of equity)"
            )
        risk[name] = risk.get(name, 0.0) + pct
    return risk


def _params(args: argparse.Namespace) -> tuple[HrpOverlay, int]:
    from pydantic import ValidationError

    policy = load_risk_policy(path=args.risk_policy) if args.risk_policy else load_risk_policy()
    params = policy.hrp
    if args.lookback_d is not None:
        try:
            params = HrpOverlay.model_validate(
                {**params.model_dump(), "lookback_d": args.lookback_d}
            )
        except ValidationError as exc:
            raise HrpBacktestError(f"--lookback-d: {exc.errors()[0]['msg']}") from None
    return params, policy.risk_policy_rev


def backtest(args: argparse.Namespace) -> tuple[HrpBudget, dict[str, str], HrpOverlay, int]:
    """Compute the budget the arguments ask for; return it, the skipped symbols, pack and rev.

    Raises:
        HrpBacktestError: Missing data, a bad argument, or a date outside the data's range.
    """
    from processors.downstream.hrp import HOURS_PER_DAY, compute_budget

    params, rev = _params(args)
    cutoff_ms = _day_ms(args.date)
    risk = _open_risk(args.open_risk or [])
    candles = read_candles(Path(args.data))
    first_day, last_day = _budget_days(candles, params.min_history_h)
    closes, skipped = closes_until(candles, cutoff_ms, params.lookback_d * HOURS_PER_DAY + 1)
    enough = [s for s, c in closes.items() if len(c) > params.min_history_h]
    if not enough:
        first = min(int(c.open_ms[0]) for c in candles.values())
        last = max(int(c.open_ms[-1]) for c in candles.values())
        raise HrpBacktestError(
            f"--date {args.date} is outside the data: {args.data} has 1h candles from"
            f" {_iso(first)} to {_iso(last)}, so budgets (min_history_h {params.min_history_h})"
            f" can be computed for {first_day} .. {last_day}"
        )
    return compute_budget(args.date, closes, risk, params), skipped, params, rev


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _print(
    budget: HrpBudget, skipped: dict[str, str], params: HrpOverlay, rev: int, top: int
) -> None:
    _out.print(
        f"HRP budget {budget.date} ({budget.version}): {len(budget.symbols)} symbols,"
        f" {budget.n_returns} 1h returns (lookback {params.lookback_d} d), target"
        f" {_pct(params.target_risk_budget_pct)} of equity, min scale {params.min_scale},"
        f" risk policy rev {rev}"
    )
    table = Table("cluster", "symbols", "weight", "max equity risk", "open risk", "scale", box=None)
    for c in budget.clusters:
        table.add_row(
            c.cluster,
            str(len(c.symbols)),
            _pct(c.weight),
            _pct(c.max_equity_risk_pct),
            _pct(c.open_risk_pct),
            f"{c.scale:.3f}",
        )
    _out.print(table)
    ranked = sorted(budget.weights.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    weights = Table("symbol", "cluster", "weight", box=None, title=f"top {len(ranked)} symbols")
    for symbol, weight in ranked:
        weights.add_row(
            symbol, params.cluster_map.get(symbol, params.default_cluster), _pct(weight)
        )
    _out.print(weights)
    for symbol, why in {**skipped, **budget.dropped}.items():
        _out.print(f"left out {symbol}: {why}", markup=False)


def _cmd_backtest(args: argparse.Namespace, settings: StackSettings) -> int:
    budget, skipped, params, rev = backtest(args)
    if args.json:
        doc: dict[str, Any] = budget.to_json()
        sys.stdout.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    else:
        _print(budget, skipped, params, rev, args.top)
    return 0


def add_hrp_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alpha hrp backtest`` to the CLI."""
    hrp = sub.add_parser("hrp", help="the HRP overlay's cluster budgets (spec 000 §17)")
    actions = hrp.add_subparsers(dest="action", metavar="<action>", required=True)
    cmd = actions.add_parser(
        "backtest",
        help="the budget and scales a day would have had, from 1h candle files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD")
    cmd.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder of *-1h-futures.feather files"
    )
    cmd.add_argument("--lookback-d", type=int, help="days of 1h closes (default: the pack's)")
    cmd.add_argument(
        "--open-risk",
        nargs="+",
        action="extend",
        metavar="CLUSTER=FRACTION",
        help="risk already open in a cluster, e.g. l1=0.05 (5 %% of equity); repeatable",
    )
    cmd.add_argument("--risk-policy", type=Path, help="a risk pack YAML (default: v1)")
    cmd.add_argument("--top", type=int, default=10, help="symbol weights to list (10)")
    cmd.add_argument("--json", action="store_true", help="print the budget as JSON")
    cmd.set_defaults(func=_cmd_backtest)
