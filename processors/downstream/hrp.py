"""The HRP overlay (spec 000 §17): a daily cluster risk budget and the scale of new trades.

Once a day (the budget is named by its UTC date) :func:`compute_budget` turns the last
``lookback_d`` days of 1h closes into HRP weights (:mod:`processors.downstream.hrp_kernels`),
sums them per cluster (``CLUSTER_MAP``), gives each cluster ``weight x target_risk_budget_pct``
of equity as its maximum risk, and compares that with the risk already open in the cluster::

    overage = max(0, open_risk_pct - max_equity_risk_pct) / max_equity_risk_pct
    scale   = max(min_scale, 1 - overage)          # no open risk: 1.0

The Reco-Orchestrator multiplies a new trade's ``risk_pct`` by :func:`scale_of` its cluster
("Wiring to Core Pipeline"). Everything is a pure function of its arguments: the same closes,
open risk and pack give the same budget, byte for byte, and the same ``version``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date as Date
from typing import Any

import numpy as np

from packs.canonical import canonical_json
from packs.risk import HrpOverlay
from processors.downstream import hrp_kernels as kernels
from processors.downstream.hrp_kernels import Array

HOURS_PER_DAY = 24


@dataclass(frozen=True, slots=True)
class ClusterBudget:
    """One cluster's line of the budget.

    Attributes:
        cluster: The cluster's name (a value of ``CLUSTER_MAP`` or the default cluster).
        symbols: Its symbols that had data, sorted.
        weight: Sum of their HRP weights (0..1; all lines sum to 1).
        max_equity_risk_pct: ``weight x target_risk_budget_pct``: equity the cluster may risk.
        open_risk_pct: Sum of ``risk_pct`` of the cluster's open positions (the input).
        scale: Multiplier for a new trade's ``risk_pct``, in ``[min_scale, 1]``.
    """

    cluster: str
    symbols: tuple[str, ...]
    weight: float
    max_equity_risk_pct: float
    open_risk_pct: float
    scale: float

    def to_json(self) -> dict[str, Any]:
        """Return the line as plain JSON data."""
        return {
            "cluster": self.cluster,
            "symbols": list(self.symbols),
            "weight": self.weight,
            "max_equity_risk_pct": self.max_equity_risk_pct,
            "open_risk_pct": self.open_risk_pct,
            "scale": self.scale,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterBudget:
        """Rebuild a line from :meth:`to_json` data."""
        return cls(**{**data, "symbols": tuple(data["symbols"])})


@dataclass(frozen=True, slots=True)
class HrpBudget:
    """The day's HRP budget (spec 000 §17 outputs).

    Attributes:
        date: The UTC day it is for, ``YYYY-MM-DD``.
        version: ``sha256:`` + 16 hex digits of the inputs (closes used, open risk, date) and
            the pack section: equal versions, equal budgets.
        n_returns: Hourly returns every symbol was measured over (the common tail).
        symbols: Symbols with weights, sorted.
        weights: Symbol -> HRP weight (sums to 1 up to rounding; empty without symbols).
        clusters: One line per cluster with at least one symbol, sorted by name. A cluster of
            ``CLUSTER_MAP`` without any symbol in the data gets no line.
        dropped: Symbol -> why it was left out (short history, bad close, flat series).
        min_scale: The pack's ``min_scale``: what :func:`scale_of` gives a cluster without a line.
    """

    date: str
    version: str
    n_returns: int
    symbols: tuple[str, ...]
    weights: dict[str, float]
    clusters: tuple[ClusterBudget, ...]
    dropped: dict[str, str]
    min_scale: float

    def cluster(self, name: str) -> ClusterBudget | None:
        """Return the line of cluster ``name`` (None: no symbol of it had data)."""
        return next((c for c in self.clusters if c.cluster == name), None)

    def payload(self) -> dict[str, dict[str, float]]:
        """Return the spec's published shape: ``cluster -> {max_equity_risk, scale}``."""
        return {
            c.cluster: {"max_equity_risk": c.max_equity_risk_pct, "scale": c.scale}
            for c in self.clusters
        }

    def to_json(self) -> dict[str, Any]:
        """Return the budget as plain JSON data (floats unrounded: it round-trips exactly)."""
        return {
            "date": self.date,
            "version": self.version,
            "n_returns": self.n_returns,
            "symbols": list(self.symbols),
            "weights": dict(self.weights),
            "clusters": [c.to_json() for c in self.clusters],
            "dropped": dict(self.dropped),
            "min_scale": self.min_scale,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HrpBudget:
        """Rebuild a budget from :meth:`to_json` data."""
        return cls(
            date=data["date"],
            version=data["version"],
            n_returns=data["n_returns"],
            symbols=tuple(data["symbols"]),
            weights=dict(data["weights"]),
            clusters=tuple(ClusterBudget.from_json(c) for c in data["clusters"]),
            dropped=dict(data["dropped"]),
            min_scale=data["min_scale"],
        )


def cluster_of(symbol: str, params: HrpOverlay) -> str:
    """Return the cluster of a base symbol (``BTC``, ``kPEPE``): the map's, else the default."""
    return params.cluster_map.get(symbol, params.default_cluster)


def cluster_scale(open_risk_pct: float, max_equity_risk_pct: float, min_scale: float) -> float:
    """Return ``max(min_scale, 1 - overage)``, ``overage`` relative to the budget (§17 step 7).

    ``overage = max(0, open - budget) / budget``; no open risk gives 1.0 whatever the budget,
    open risk against a zero budget gives ``min_scale``.
    """
    if open_risk_pct <= 0.0:
        return 1.0
    if max_equity_risk_pct <= 0.0:
        return min_scale
    overage = max(0.0, open_risk_pct - max_equity_risk_pct) / max_equity_risk_pct
    return max(min_scale, 1.0 - overage)


def scale_of(budget: HrpBudget, cluster: str) -> float:
    """Return the scale a new trade in ``cluster`` gets (``risk_pct *= scale``).

    A cluster without a budget line (none of its symbols had enough clean history, or the map
    does not know it) gets ``budget.min_scale``: there is no budget to measure it against, so
    it is sized as the most crowded cluster would be, never above.
    """
    line = budget.cluster(cluster)
    return budget.min_scale if line is None else line.scale


def _clean_tails(
    closes: Mapping[str, Sequence[float]], max_closes: int, min_closes: int
) -> tuple[dict[str, Array], dict[str, str]]:
    kept: dict[str, Array] = {}
    dropped: dict[str, str] = {}
    for symbol in sorted(closes):
        tail = np.asarray(closes[symbol], dtype=np.float64)[-max_closes:]
        if not (np.isfinite(tail).all() and (tail > 0).all()):
            dropped[symbol] = "missing, non-positive or infinite close in the lookback"
        elif len(tail) < min_closes:
            dropped[symbol] = f"{max(len(tail) - 1, 0)} 1h returns < min_history_h"
        else:
            kept[symbol] = tail
    return kept, dropped


def _aligned_returns(
    kept: dict[str, Array], dropped: dict[str, str]
) -> tuple[list[str], Array, Array]:
    # The common tail of every kept series, its log returns, and flat symbols moved to dropped.
    if not kept:
        return [], np.empty((0, 0)), np.empty((0, 0))
    length = min(len(t) for t in kept.values())
    symbols = list(kept)
    matrix = np.column_stack([kept[s][-length:] for s in symbols])
    returns = kernels.log_returns(matrix)
    live = [i for i in range(len(symbols)) if np.ptp(returns[:, i]) > 0.0]
    for i in sorted(set(range(len(symbols))) - set(live)):
        dropped[symbols[i]] = "flat: 1h returns without variance over the lookback"
    return [symbols[i] for i in live], matrix[:, live], returns[:, live]


def _version(
    date: str, symbols: list[str], matrix: Array, open_risk: dict[str, float], p: HrpOverlay
) -> str:
    digest = hashlib.sha256()
    head = {"date": date, "symbols": symbols, "open_risk_pct": open_risk, "hrp": p.canonical()}
    digest.update(canonical_json(head).encode())
    # Closes enter bit-exact (little-endian float64), not through canonical rounding.
    digest.update(np.ascontiguousarray(matrix, dtype="<f8").tobytes())
    return "sha256:" + digest.hexdigest()[:16]


def _check_inputs(date: str, open_risk_pct: Mapping[str, float]) -> dict[str, float]:
    try:
        if len(date) != 10:
            raise ValueError
        Date.fromisoformat(date)
    except ValueError:
        raise ValueError(f"date {date!r} is not YYYY-MM-DD") from None
    risk = {k: float(open_risk_pct[k]) for k in sorted(open_risk_pct)}
    bad = [k for k, v in risk.items() if not (math.isfinite(v) and v >= 0.0)]
    if bad:
        raise ValueError(f"open_risk_pct must be finite and >= 0: {', '.join(bad)}")
    return risk


def compute_budget(
    date: str,
    closes: Mapping[str, Sequence[float]],
    open_risk_pct: Mapping[str, float],
    params: HrpOverlay,
) -> HrpBudget:
    """Compute the day's HRP budget and scales (spec 000 §17, core logic 1-7).

    Window and alignment: ``closes`` maps a base symbol to its 1h closes, oldest first, every
    series ending at the same hour (the last close before the budget's cut-off). Each series is
    cut to its last ``lookback_d x 24 + 1`` closes; a symbol is left out (``dropped``) when that
    tail holds a NaN, infinite or non-positive close, when it has fewer than ``min_history_h``
    returns, or when its returns are flat (zero variance: no correlation to cluster on). The
    others are aligned on their **common tail**: all are cut to the shortest kept length, so one
    young listing (>= ``min_history_h``) shortens the window of every symbol. Inputs are taken
    in symbol order, whatever the mapping's order, so ties in the linkage go to symbol order.

    Then: log returns, winsorized per symbol at ``+/- winsor_sigma`` sd, HRP weights (single
    linkage), cluster sums, ``max_equity_risk_pct = weight x target_risk_budget_pct``, and
    :func:`cluster_scale` against ``open_risk_pct``. Open risk of a cluster without a line is
    not in the budget (see :func:`scale_of`).

    Args:
        date: The UTC day the budget is for, ``YYYY-MM-DD`` (a label; closes are not read by it).
        closes: Symbol -> 1h closes in time order, aligned on the same hours.
        open_risk_pct: Cluster -> sum of ``risk_pct`` of its open positions (missing: 0).
        params: The risk pack's ``hrp`` section.

    Returns:
        The budget; without any usable symbol, one with no weights and no cluster lines.

    Raises:
        ValueError: ``date`` is not ``YYYY-MM-DD``, or an open risk is negative or not finite
            (caller bugs, not market data).
    """
    risk = _check_inputs(date, open_risk_pct)
    kept, dropped = _clean_tails(
        closes, params.lookback_d * HOURS_PER_DAY + 1, params.min_history_h + 1
    )
    symbols, matrix, returns = _aligned_returns(kept, dropped)
    values = (
        kernels.hrp_weights(kernels.winsorize(returns, params.winsor_sigma))
        if symbols
        else np.empty(0)
    )
    weights = {s: float(w) for s, w in zip(symbols, values, strict=True)}
    members: dict[str, list[str]] = {}
    for symbol in symbols:
        members.setdefault(cluster_of(symbol, params), []).append(symbol)
    lines = []
    for name in sorted(members):
        weight = math.fsum(weights[s] for s in members[name])
        budget = weight * params.target_risk_budget_pct
        open_risk = risk.get(name, 0.0)
        scale = cluster_scale(open_risk, budget, params.min_scale)
        lines.append(ClusterBudget(name, tuple(members[name]), weight, budget, open_risk, scale))
    return HrpBudget(
        date=date,
        version=_version(date, symbols, matrix, risk, params),
        n_returns=returns.shape[0] if symbols else 0,
        symbols=tuple(symbols),
        weights=weights,
        clusters=tuple(lines),
        dropped=dict(sorted(dropped.items())),
        min_scale=params.min_scale,
    )


def budget_json(budget: HrpBudget) -> str:
    """Return the budget as JSON text with sorted keys (the bytes the determinism test pins)."""
    return json.dumps(budget.to_json(), sort_keys=True, indent=2)


def bootstrap_budget(
    date: str, symbols: list[str], open_risk: Mapping[str, float], params: HrpOverlay
) -> HrpBudget:
    """The budget before any symbol has ``min_history_h`` hourly closes: equal symbol weights.

    Without a return history HRP has nothing to cluster on; equal weights give each cluster a
    share of ``TARGET_RISK_BUDGET`` in proportion to its symbols, so crowding still scales new
    trades down. ``n_returns`` is 0 and the version starts ``bootstrap:``.
    """
    weights = {s: 1.0 / len(symbols) for s in symbols} if symbols else {}
    members: dict[str, list[str]] = {}
    for s in symbols:
        members.setdefault(cluster_of(s, params), []).append(s)
    lines = []
    for cluster in sorted(members):
        weight = math.fsum(weights[s] for s in members[cluster])
        budget = weight * params.target_risk_budget_pct
        held = float(open_risk.get(cluster, 0.0))
        lines.append(
            ClusterBudget(
                cluster=cluster,
                symbols=tuple(members[cluster]),
                weight=weight,
                max_equity_risk_pct=budget,
                open_risk_pct=held,
                scale=cluster_scale(held, budget, params.min_scale),
            )
        )
    head = canonical_json({"date": date, "symbols": symbols, "hrp": params.canonical()})
    return HrpBudget(
        date=date,
        version="bootstrap:" + hashlib.sha256(head.encode()).hexdigest()[:16],
        n_returns=0,
        symbols=tuple(symbols),
        weights=weights,
        clusters=tuple(lines),
        dropped={},
        min_scale=params.min_scale,
    )
