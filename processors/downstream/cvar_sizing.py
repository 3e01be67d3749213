"""The CVaR guard's ``POST /sizing`` (spec 000 §18 "API"): a pure request -> response function.

The HTTP layer (topology) decodes the JSON body, calls :func:`sizing_request` with the current
book and pack, and answers 200 with the result or 400 with the :class:`SizingRequestError`
message. Nothing here reads a clock or the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from packs.risk import CvarGuard
from processors.downstream.cvar import MAX_CVAR_R, CvarBook, cap_for
from processors.downstream.cvar_kernels import CvarError, max_size

#: The spec's request fields, each a positive number (alpha: in (0.5, 1), like the pack's).
REQUIRED = ("equity", "price", "sl_kATR", "atr", "alpha")
#: Optional fields: the key whose samples to use, or an explicit ``cvar_r``.
OPTIONAL = ("symbol", "tf", "cluster", "side", "cvar_r")


class SizingRequestError(CvarError):
    """A ``POST /sizing`` body is not an object, misses a field, or has a value out of range."""


#: Numeric fields -> (test, what the test says) applied to a finite number.
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "equity": (lambda v: v > 0, "> 0"),
    "price": (lambda v: v > 0, "> 0"),
    "sl_kATR": (lambda v: v > 0, "> 0"),
    "atr": (lambda v: v > 0, "> 0"),
    "alpha": (lambda v: 0.5 < v < 1, "in (0.5, 1)"),
    "cvar_r": (lambda v: v < 0, "negative"),
}


def _numbers(payload: Mapping[str, Any], problems: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, (ok, what) in _RANGES.items():
        if name not in payload:
            continue
        value = payload[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{name} must be a number (got {value!r})")
        elif not (math.isfinite(value) and ok(float(value))):
            problems.append(f"{name} must be finite and {what} (got {value!r})")
        else:
            out[name] = float(value)
    return out


def _strings(payload: Mapping[str, Any], problems: list[str]) -> dict[str, str]:
    out = {name: payload[name] for name in ("symbol", "tf", "cluster", "side") if name in payload}
    problems.extend(
        f"{name} must be a non-empty string (got {value!r})"
        for name, value in out.items()
        if not isinstance(value, str) or not value
    )
    if "side" in out and out["side"] not in ("long", "short"):
        problems.append(f"side must be 'long' or 'short' (got {out['side']!r})")
    if ("symbol" in out) != ("tf" in out):
        problems.append("symbol and tf go together")
    return out


def _validate(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise SizingRequestError(f"POST /sizing: the body must be a JSON object, not {payload!r}")
    problems = [f"missing field {name}" for name in REQUIRED if name not in payload]
    unknown = sorted(map(str, set(payload) - set(REQUIRED) - set(OPTIONAL)))
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)}")
    out: dict[str, Any] = {**_numbers(payload, problems), **_strings(payload, problems)}
    if problems:
        raise SizingRequestError("POST /sizing: " + "; ".join(problems))
    return out


def sizing_request(
    payload: Any,
    *,
    cfg: CvarGuard,
    leverage_cap: float,
    book: CvarBook | None = None,
    cluster_of: Callable[[str], str] | None = None,
    max_cvar_r: float = MAX_CVAR_R,
) -> dict[str, Any]:
    """Answer ``POST /sizing``: ``{equity, price, sl_kATR, atr, alpha}`` -> ``{max_size, max_lev}``.

    The tail loss comes from, in order: the body's ``cvar_r``; the book's cap of the body's
    ``symbol`` and ``tf`` at the body's ``alpha`` (class from ``cluster`` or ``cluster_of``,
    ``side`` optional: without it the more conservative side); else the pack's
    ``prior_cvar_r``. Sizing is :func:`~processors.downstream.cvar_kernels.max_size` with the
    pack's ``risk_budget_per_trade_pct``.

    Args:
        payload: The decoded JSON body.
        cfg: The risk pack's ``cvar`` section.
        leverage_cap: The leverage before the CVaR cap (``sizing.leverage``).
        book: The guard's samples (None: only ``cvar_r`` or the prior).
        cluster_of: Symbol -> cluster, when the body names no ``cluster``.
        max_cvar_r: The least negative cvar_r used (< 0).

    Returns:
        ``{"max_size": qty, "max_lev": x, "cvar_r": r, "alpha": a, "source": s, "n_samples": n}``
        with ``source`` one of ``request``, ``own``, ``shrunk``, ``class``, ``prior``.

    Raises:
        SizingRequestError: Every problem of the body, in one line.
    """
    req = _validate(payload)
    alpha = req["alpha"]
    source, n, cvar = "prior", 0, min(cfg.prior_cvar_r, max_cvar_r)
    if "cvar_r" in req:
        source, cvar = "request", min(req["cvar_r"], max_cvar_r)
    elif book is not None and "symbol" in req:
        cluster = req.get("cluster") or (cluster_of(req["symbol"]) if cluster_of else None)
        if cluster is None:
            raise SizingRequestError("POST /sizing: cluster is needed with symbol and tf")
        cap = cap_for(
            book,
            symbol=req["symbol"],
            tf=req["tf"],
            cluster=cluster,
            side=req.get("side"),
            cfg=cfg,
            alpha=alpha,
            max_cvar_r=max_cvar_r,
        )
        source, n, cvar = cap.source, cap.n_samples, cap.cvar_r
    qty, lev = max_size(
        req["equity"],
        req["price"],
        req["sl_kATR"],
        req["atr"],
        cvar,
        cfg.risk_budget_per_trade_pct,
        leverage_cap,
    )
    return {
        "alpha": alpha,
        "cvar_r": cvar,
        "max_lev": lev,
        "max_size": qty,
        "n_samples": n,
        "source": source,
    }
