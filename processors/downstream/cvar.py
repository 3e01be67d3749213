"""The CVaR guard (spec 000 §18): loss samples per key, tail-risk caps per (symbol, tf).

State is a :class:`CvarBook`: per own key ``"<symbol>|<tf>"`` and per class key
``"<cluster>|<side>"`` (the class of a trade is ``(trade.cluster, trade.side)``), the realised
outcomes ``ClosedTrade.r`` of the most recent ``max_samples`` closed trades, in order of arrival.
The book is immutable: :func:`add` returns a new book (only the two touched entries are new
objects), so a step is a pure ``(book, closed trade) -> (book, caps)`` function (:func:`step`)
and a replay of the same closed trades gives the same book, byte for byte (:meth:`to_bytes`).

A cap (:func:`cap_for`) is estimated at query time from the samples (estimators in
:mod:`processors.downstream.cvar_kernels`):

- ``n >= min_samples`` own samples: the key's own CVaR (source ``own``);
- fewer: the own CVaR is blended toward the class prior by Bayesian shrinkage
  ``(n * own + k * prior) / (n + k)``, ``k = prior_strength`` (``shrunk``), but sparse data may
  only make a cap *more* conservative than the fallback, never less: the cap is the more
  negative of the blend and the prior (spec 000 §18 acceptance: "with sparse data, guard falls
  back to cluster-level CVaR (still conservative)"). The blend is a convex combination, so it
  is below the prior exactly when the own estimate is; otherwise the cap *is* the prior;
- the class prior follows the same rule one level up: the class CVaR when the class holds
  ``min_samples`` samples (``class``); fewer are shrunk toward the pack's ``prior_cvar_r`` and
  kept (``class``) only when more conservative than it, else the pack prior (``prior``): a few
  bad class trades tighten a cap at once, a few lucky ones never loosen it;
- last, no cap is looser than ``max_cvar_r`` (-1 R by default: a trade that reaches its stop
  loses at least 1 R, so a tail better than that is an artefact of few stop-outs).

The class samples include the key's own trades, so a key's trades move its class too, and a
sparse key's trades count twice (in the class prior and in the blend): that errs conservative.

A cap for a side (``side="long"``) uses that side's class; a side-agnostic cap (``side=None``,
the ``cvar:<SYM>:<TF>`` record) takes the more conservative of the two sides' priors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from packs.risk import CvarGuard
from processors.downstream.cvar_kernels import (
    EVT_MIN_EXCEEDANCES,
    CvarError,
    Mode,
    estimate_cvar,
    max_size,
    shrink,
)
from processors.downstream.types import ClosedTrade, Side

#: Version of the :class:`CvarBook` JSON layout; a change bumps it and ships a migration.
STATE_VERSION = 1
#: The least negative cvar_r a cap reports (R): a stopped trade loses at least 1 R.
MAX_CVAR_R = -1.0

Source = Literal["own", "shrunk", "class", "prior"]
SIDES: tuple[Side, Side] = ("long", "short")


def own_key(symbol: str, tf: str) -> str:
    """Return the book key of a (symbol, tf): ``"BTC|15m"``."""
    return f"{symbol}|{tf}"


def class_key(cluster: str, side: str) -> str:
    """Return the book key of a trade class (cluster, side): ``"l1|long"``."""
    return f"{cluster}|{side}"


def _dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class Tail:
    """One key's samples: outcomes in R, oldest first, and the newest ``closed_ms`` seen."""

    r: tuple[float, ...]
    last_ms: int

    def to_json(self) -> dict[str, Any]:
        """Return the tail as JSON data."""
        return {"last_ms": self.last_ms, "r": list(self.r)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tail:
        """Read :meth:`to_json`'s data."""
        return cls(r=tuple(float(x) for x in data["r"]), last_ms=int(data["last_ms"]))


@dataclass(frozen=True, slots=True)
class CvarBook:
    """The guard's state: bounded outcome samples per own key and per class key.

    Never mutated in place: :func:`add` returns a new book. ``to_bytes`` is canonical JSON
    (sorted keys, no spaces, floats in their shortest round-trip form), so equal books have
    equal bytes and ``from_bytes(b).to_bytes() == b``.

    Attributes:
        own: ``"<symbol>|<tf>"`` -> samples.
        classes: ``"<cluster>|<side>"`` -> samples.
        version: :data:`STATE_VERSION` of the layout.
    """

    own: Mapping[str, Tail] = field(default_factory=dict)
    classes: Mapping[str, Tail] = field(default_factory=dict)
    version: int = STATE_VERSION

    def n_own(self, symbol: str, tf: str) -> int:
        """Return how many samples the (symbol, tf) key holds."""
        tail = self.own.get(own_key(symbol, tf))
        return len(tail.r) if tail else 0

    def to_json(self) -> dict[str, Any]:
        """Return the book as JSON data, keys in sorted order."""
        return {
            "classes": {k: self.classes[k].to_json() for k in sorted(self.classes)},
            "own": {k: self.own[k].to_json() for k in sorted(self.own)},
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CvarBook:
        """Read :meth:`to_json`'s data.

        Raises:
            CvarError: Another layout version.
        """
        if data.get("version") != STATE_VERSION:
            raise CvarError(
                f"CvarBook version {data.get('version')!r} is not {STATE_VERSION}: "
                "migrate the store or rebuild it by replaying the closed trades"
            )
        return cls(
            own={k: Tail.from_json(v) for k, v in sorted(data["own"].items())},
            classes={k: Tail.from_json(v) for k, v in sorted(data["classes"].items())},
        )

    def to_bytes(self) -> bytes:
        """Return the canonical JSON bytes of the book."""
        return _dumps(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> CvarBook:
        """Read a book written by :meth:`to_bytes`."""
        return cls.from_json(json.loads(data))


def _append(tails: Mapping[str, Tail], key: str, r: float, ms: int, cap: int) -> dict[str, Tail]:
    old = tails.get(key)
    values = (*old.r, r)[-cap:] if old else (r,)
    out = dict(tails)
    out[key] = Tail(r=values, last_ms=max(old.last_ms, ms) if old else ms)
    return out


def add(
    book: CvarBook, closed: ClosedTrade, *, max_samples: int
) -> tuple[CvarBook, tuple[str, ...]]:
    """Append a closed trade's outcome to its own and class keys; return the new book and keys.

    Each key keeps its newest ``max_samples`` outcomes in order of arrival (a smaller
    ``max_samples`` than before trims a key on its next sample). ``last_ms`` is the largest
    ``closed_ms`` seen, so a late trade does not move it back. A non-finite ``r`` is bad data:
    the book is returned unchanged with no changed keys.

    Returns:
        ``(book, (own key, class key))``, or ``(book, ())`` when the sample was rejected.

    Raises:
        CvarError: ``max_samples < 1``.
    """
    if max_samples < 1:
        raise CvarError(f"max_samples must be >= 1, got {max_samples}")
    if not math.isfinite(closed.r):
        return book, ()
    t = closed.trade
    keys = (own_key(t.symbol, t.tf), class_key(t.cluster, t.side))
    r, ms = float(closed.r), closed.closed_ms
    new = CvarBook(
        own=_append(book.own, keys[0], r, ms, max_samples),
        classes=_append(book.classes, keys[1], r, ms, max_samples),
    )
    return new, keys


@dataclass(frozen=True, slots=True)
class CvarCap:
    """The tail-risk cap of a (symbol, tf), the payload of ``cvar:<SYM>:<TF>`` (spec 000 §18).

    Attributes:
        symbol: Exchange symbol (``BTC``).
        tf: Timeframe of the trades (``15m``).
        cluster: The class's cluster.
        side: The class's side; None: both sides, the more conservative prior.
        alpha: Confidence level; the tail is the worst ``1 - alpha`` share.
        mode: Estimator behind ``cvar_r`` (``evt`` fell back to ``empirical`` if it did not
            fit); None when only the pack's prior was used.
        cvar_r: Expected outcome in the tail, R units, negative.
        n_samples: The key's own samples.
        n_class_samples: The samples of the class the prior came from.
        source: ``own`` | ``shrunk`` | ``class`` | ``prior`` (see the module docstring).
        stop_fraction: Stop distance / price that ``max_leverage`` assumes (None: not given).
        max_leverage: :func:`max_size`'s leverage at ``stop_fraction`` (None without it).
        as_of_ms: Newest ``closed_ms`` among the samples that fed the estimate (None: none).
    """

    symbol: str
    tf: str
    cluster: str
    side: Side | None
    alpha: float
    mode: Mode | None
    cvar_r: float
    n_samples: int
    n_class_samples: int
    source: Source
    stop_fraction: float | None
    max_leverage: float | None
    as_of_ms: int | None

    def to_json(self) -> dict[str, Any]:
        """Return the cap as JSON data, keys in sorted order."""
        return {f.name: getattr(self, f.name) for f in sorted(fields(self), key=lambda f: f.name)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CvarCap:
        """Read :meth:`to_json`'s data."""
        return cls(**data)

    def to_bytes(self) -> bytes:
        """Return the canonical JSON bytes of the cap."""
        return _dumps(self.to_json())


@dataclass(frozen=True, slots=True)
class _Estimate:
    cvar_r: float
    source: Source
    mode: Mode | None
    last_ms: int | None  # newest sample behind the estimate


def _level(
    tail: Tail | None,
    fallback: _Estimate,
    cfg: CvarGuard,
    alpha: float,
    min_exc: int,
    sources: tuple[Source, Source],
) -> _Estimate:
    # One level of the hierarchy: enough samples stand alone (sources[0]); fewer are shrunk
    # toward the level above and kept (sources[1]) only if that is more conservative.
    if tail is None:
        return fallback
    est, mode = estimate_cvar(
        tail.r, alpha, cfg.mode, cfg.evt_threshold_quantile, min_exceedances=min_exc
    )
    n = len(tail.r)
    if n >= cfg.min_samples:
        return _Estimate(est, sources[0], mode, tail.last_ms)
    blend = shrink(est, n, fallback.cvar_r, cfg.prior_strength)
    if blend < fallback.cvar_r:
        stamp = max(tail.last_ms, fallback.last_ms or tail.last_ms)
        return _Estimate(blend, sources[1], mode, stamp)
    return fallback


def cap_for(
    book: CvarBook,
    *,
    symbol: str,
    tf: str,
    cluster: str,
    side: Side | None,
    cfg: CvarGuard,
    alpha: float | None = None,
    stop_fraction: float | None = None,
    leverage_cap: float = math.inf,
    max_cvar_r: float = MAX_CVAR_R,
    evt_min_exceedances: int = EVT_MIN_EXCEEDANCES,
) -> CvarCap:
    """Return the cap of (symbol, tf) for a trade class (spec 000 §18 steps 1-4).

    Args:
        book: The samples.
        symbol: Exchange symbol.
        tf: Timeframe.
        cluster: The symbol's cluster (HRP ``cluster_map``).
        side: The class side, or None for the more conservative of both sides' priors.
        cfg: The risk pack's ``cvar`` section.
        alpha: Confidence level (default ``cfg.alpha``; ``POST /sizing`` may ask another).
        stop_fraction: Stop distance / price for ``max_leverage`` (None: no leverage figure).
        leverage_cap: The leverage ``max_leverage`` may not exceed (``sizing.leverage``).
        max_cvar_r: The least negative cvar_r reported (< 0).
        evt_min_exceedances: Fewest excesses an EVT fit is tried on.

    Raises:
        CvarError: ``max_cvar_r >= 0``, or a leverage input :func:`max_size` rejects.
    """
    if not max_cvar_r < 0:
        raise CvarError(f"max_cvar_r must be negative, got {max_cvar_r}")
    a = cfg.alpha if alpha is None else alpha
    pack_prior = _Estimate(cfg.prior_cvar_r, "prior", None, None)
    classes = []
    for class_side in SIDES if side is None else (side,):
        klass = book.classes.get(class_key(cluster, class_side))
        est = _level(klass, pack_prior, cfg, a, evt_min_exceedances, ("class", "class"))
        classes.append((est.cvar_r, len(klass.r) if klass else 0, est))
    _, n_class, prior = min(classes, key=lambda c: c[0])  # ties: the first side (long)
    tail = book.own.get(own_key(symbol, tf))
    est = _level(tail, prior, cfg, a, evt_min_exceedances, ("own", "shrunk"))
    cvar = min(est.cvar_r, max_cvar_r)
    max_lev = None
    if stop_fraction is not None:
        max_lev = max_size(
            1.0, 1.0, 1.0, stop_fraction, cvar, cfg.risk_budget_per_trade_pct, leverage_cap
        )[1]
    return CvarCap(
        symbol=symbol,
        tf=tf,
        cluster=cluster,
        side=side,
        alpha=a,
        mode=est.mode,
        cvar_r=cvar,
        n_samples=len(tail.r) if tail else 0,
        n_class_samples=n_class,
        source=est.source,
        stop_fraction=stop_fraction,
        max_leverage=max_lev,
        as_of_ms=est.last_ms,
    )


def step(
    book: CvarBook,
    closed: ClosedTrade,
    cfg: CvarGuard,
    *,
    leverage_cap: float = math.inf,
    max_cvar_r: float = MAX_CVAR_R,
    evt_min_exceedances: int = EVT_MIN_EXCEEDANCES,
) -> tuple[CvarBook, tuple[CvarCap, ...]]:
    """Add a closed trade; return the new book and the trade's (symbol, tf) cap.

    The cap is side-agnostic (the ``cvar:<SYM>:<TF>`` record) and its ``max_leverage`` is taken
    at the closed trade's own stop distance, ``|entry_price - initial_stop| / entry_price``
    (the regime at its entry); the sizing stage re-sizes with the current ATR via
    :func:`~processors.downstream.cvar_kernels.max_size`. A rejected sample (non-finite ``r``)
    changes nothing and emits no cap.
    """
    new, keys = add(book, closed, max_samples=cfg.max_samples)
    if not keys:
        return book, ()
    t = closed.trade
    stop = abs(t.entry_price - t.initial_stop) / t.entry_price if t.entry_price > 0 else 0.0
    cap = cap_for(
        new,
        symbol=t.symbol,
        tf=t.tf,
        cluster=t.cluster,
        side=None,
        cfg=cfg,
        stop_fraction=stop if stop > 0 else None,
        leverage_cap=leverage_cap,
        max_cvar_r=max_cvar_r,
        evt_min_exceedances=evt_min_exceedances,
    )
    return new, (cap,)
