"""Values of the detect stage (spec 002 §9, §10): triggers, suppressions, context and history.

Every value here is frozen, hashable where it travels (tuples of sorted pairs, never dicts whose
order could leak into output), and the two history values a caller keeps in state are
JSON-serialisable with ``to_state``/``from_state`` and a version.

History convention: the caller keeps one :class:`AssetHistory` per asset and one
:class:`MarketHistory` per partition. ``DetectContext`` carries them as they were *before* the
row (and market frame) being evaluated; the detectors fold the current minute in themselves with
the same pure :func:`update_history` / :func:`update_market_history` the caller applies afterwards
to store the new state. Both updates are keyed by the bar label, so folding a minute twice (a
revised row, or a caller that stored first) gives the same history.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from packs.detector import HISTORY_MINUTES, EventClass, Tier

Tf = Literal["1m", "15m", "1h"]
Scalar = str | int | float | bool | None
#: The fixed vocabulary of reasons a trigger did not become an event (metrics label values).
Reason = Literal[
    "gated_dq",  # dq_status != 'ok' (§8.7)
    "gated_warmup",  # warmup is true (§8.2)
    "gated_membership",  # neither in the universe nor hot (§9.1)
    "gated_illiquid",  # the §8.3 illiquidity / dead-book guard tripped
    "gated_oi_stale",  # an OI-dependent detector on OI older than the D.6 gate
    "gated_book_stale",  # a micro-feature detector on a book older than the D.6 gate
    "gated_precondition",  # a detector precondition (e.g. trade_count_m_1 >= 5)
    "emit_disabled",  # the pack's global kill switch (§19.3)
    "below_threshold",  # severity below the class publish threshold (D.1)
    "cooldown",  # within cooldown and not +30 % nor a subtype change (§10.5)
    "coalesced",  # folded into a same-key event within the coalescing window (§10.5)
    "budget_class",  # per-class per-symbol per-minute budget spent (§10.6, D.5)
    "global_cap",  # the global per-minute cap (§10.6, D.5)
]
REASONS: tuple[Reason, ...] = get_args(Reason)
MINUTE_MS = 60_000
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Trigger:
    """A detector candidate for the scorer (spec 002 §9.8, §10.1).

    Attributes:
        detector_id: ``<class prefix>.<subtype>``, e.g. ``spike.vol_spike_m_1``.
        event_class: The §9 class.
        subtype: e.g. ``price_spike_up_m_1``.
        tf: Debounce timeframe: ``1m``, except ``15m`` for rotation and ``1h`` for funding.
        window_sec: Horizon of the subtype (m_1 60, m_5 300, m_15 900, h_1 3600, 5s 5).
        asset_uid: Canonical asset id.
        symbol: Display symbol.
        exchange_ts: Bar label, epoch ms (stream time; the scorer's only clock).
        revision: Lattice revision of the row (0 at close, 1 when amended).
        primary_z: A z-score, or for non-z primaries the trigger ratio ``|x| / threshold``
            (1.0 at the threshold, capped at the pack's ``ratio_cap``).
        primary_bounds: IQR clamp bounds (§4.4, §10.2) of the primary, or None.
        secondary_z: Supporting z's or ratios (§10.1); the scorer uses the largest.
        secondary_bounds: IQR bounds aligned with ``secondary_z`` (None: no clamp).
        breadth: ``min(1, shock_count_5s / breadth_full_count)`` in [0, 1].
        dq_penalty: 1.0 when DQ is ok but near its limits (§10.7), else 0.0.
        illiquidity_penalty: 1.0 near the §8.3 guard (§10.7), else 0.0.
        tier: Liquidity tier of the asset (D.7).
        features: The §9.8 panel plus the detector's inputs, sorted by name.
        flags: Names of the cheap flags that are TRUE, sorted.
        detail: Detector-specific payload (Appendix B local state), sorted by name.
    """

    detector_id: str
    event_class: EventClass
    subtype: str
    tf: Tf
    window_sec: int
    asset_uid: int
    symbol: str
    exchange_ts: int
    primary_z: float
    revision: int = 0
    primary_bounds: tuple[float, float] | None = None
    secondary_z: tuple[float, ...] = ()
    secondary_bounds: tuple[tuple[float, float] | None, ...] = ()
    breadth: float = 0.0
    dq_penalty: float = 0.0
    illiquidity_penalty: float = 0.0
    tier: Tier = "mid"
    features: tuple[tuple[str, float | None], ...] = ()
    flags: tuple[str, ...] = ()
    detail: tuple[tuple[str, Scalar], ...] = ()

    @property
    def debounce_key(self) -> str:
        """Return ``SYMBOL:class:tf`` (§10.5)."""
        return f"{self.symbol}:{self.event_class}:{self.tf}"

    @property
    def sort_key(self) -> tuple[int, int, str, str, str, int]:
        """Return the deterministic order of triggers (time, asset, class, tf, subtype, rev)."""
        return (
            self.exchange_ts,
            self.asset_uid,
            self.event_class,
            self.tf,
            self.subtype,
            self.revision,
        )


@dataclass(frozen=True, slots=True)
class Suppression:
    """A trigger that did not become an event, with the reason (counted by metrics, §8.9)."""

    trigger: Trigger
    reason: Reason


@dataclass(frozen=True, slots=True)
class MinuteSample:
    """What the look-back detectors keep of one 1m row of an asset."""

    ts: int
    funding_h_1: float | None = None
    cvd_delta_m_1: float | None = None
    v_total_m_1: float | None = None
    z_vol_m_1: float | None = None
    ret_m_5: float | None = None


_SAMPLE_FIELDS = ("funding_h_1", "cvd_delta_m_1", "v_total_m_1", "z_vol_m_1", "ret_m_5")


@dataclass(frozen=True, slots=True)
class AssetHistory:
    """The last ``HISTORY_MINUTES`` minutes of one asset, oldest first (funding Δ, Σ5 cvd...)."""

    minutes: tuple[MinuteSample, ...] = ()

    def at(self, ts: int) -> MinuteSample | None:
        """Return the sample of bar label ``ts``, or None."""
        # minutes are sorted by ts, one sample per ts (update_history): a binary search
        i = bisect.bisect_left(self.minutes, ts, key=_ts_of)
        if i < len(self.minutes) and self.minutes[i].ts == ts:
            return self.minutes[i]
        return None

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-serialisable state (versioned)."""
        rows = [
            [m.ts, m.funding_h_1, m.cvd_delta_m_1, m.v_total_m_1, m.z_vol_m_1, m.ret_m_5]
            for m in self.minutes
        ]  # the order of _SAMPLE_FIELDS
        return {"v": _STATE_VERSION, "minutes": rows}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> AssetHistory:
        """Rebuild from :meth:`to_state` output.

        Raises:
            ValueError: Unknown state version.
        """
        _check_version(data, "AssetHistory")
        width = len(_SAMPLE_FIELDS) + 1
        minutes = []
        for r in data["minutes"]:
            if len(r) != width:
                raise ValueError(f"AssetHistory sample {r!r} does not have {width} values")
            minutes.append(MinuteSample(int(r[0]), *r[1:]))  # fields in _SAMPLE_FIELDS order
        return cls(tuple(sorted(minutes, key=_ts_of)))  # stored sorted: unchanged


def _ts_of(sample: MinuteSample) -> int:
    return sample.ts


def _sample_ts(sample: MinuteSample | MarketSample) -> int:
    return sample.ts


@dataclass(frozen=True, slots=True)
class MarketSample:
    """What the rotation detectors keep of one market frame."""

    ts: int
    leader: str | None = None
    follower_rs_median: float | None = None
    sector_rs: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class MarketHistory:
    """The last ``HISTORY_MINUTES`` market frames of a partition, oldest first."""

    minutes: tuple[MarketSample, ...] = ()

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-serialisable state (versioned)."""
        rows = [
            [m.ts, m.leader, m.follower_rs_median, [list(p) for p in m.sector_rs]]
            for m in self.minutes
        ]
        return {"v": _STATE_VERSION, "minutes": rows}

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> MarketHistory:
        """Rebuild from :meth:`to_state` output.

        Raises:
            ValueError: Unknown state version.
        """
        _check_version(data, "MarketHistory")
        minutes = (
            MarketSample(int(ts), leader, med, tuple((str(s), float(v)) for s, v in sectors))
            for ts, leader, med, sectors in data["minutes"]
        )
        return cls(tuple(sorted(minutes, key=_sample_ts)))  # stored sorted: unchanged


@dataclass(frozen=True, slots=True)
class DetectContext:
    """Everything a detector needs beyond the row and the market frame.

    Attributes:
        history: The asset's history before this row.
        market: The partition's market history before this minute's frame.
        is_in_universe: Membership from the universe stage; None falls back to the row's field.
        is_hot: Hotlist membership; None falls back to the row's field.
        tier: Liquidity tier for the D.7 overrides.
        sectors: Symbol -> sector tag, for the sector RS of ``rs_flip_sector_m_15``.
        v_min: The §8.3 volume floor of the asset (for the §10.7 near-guard penalty), or None.
        spread_cap: The §8.3 spread cap of the asset, or None.
        iqr_bounds: z column -> IQR clamp bounds of the asset x tf (§4.4), refreshed daily.
        market_now: ``update_market_history(market, frame, ts, sectors)`` for this row's frame
            and bar label ``ts``, when the caller has it (it is the same for every row of the
            minute); None: the detectors fold the frame in themselves.
    """

    history: AssetHistory = AssetHistory()
    market: MarketHistory = MarketHistory()
    is_in_universe: bool | None = None
    is_hot: bool | None = None
    tier: Tier = "mid"
    sectors: Mapping[str, str] = field(default_factory=dict)
    v_min: float | None = None
    spread_cap: float | None = None
    iqr_bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    market_now: MarketHistory | None = None


_NUMBER = (int, float)


def finite(value: Any) -> float | None:
    """Return ``value`` as a float, or None when it is NULL, not a number or not finite."""
    if type(value) is float:  # the common case, first
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool) or not isinstance(value, _NUMBER):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def row_tf(row: Mapping[str, Any]) -> Tf | None:
    """Return the row's timeframe as ``1m``/``15m``/``1h`` (the Avro enum says ``m1``...)."""
    return _TF.get(str(row.get("tf")))


_TF: dict[str, Tf] = {"m1": "1m", "1m": "1m", "m15": "15m", "15m": "15m", "h1": "1h", "1h": "1h"}


def update_history(history: AssetHistory, row: Mapping[str, Any]) -> AssetHistory:
    """Return ``history`` with this 1m row folded in (other timeframes leave it unchanged).

    A row replaces any sample with the same label (a revision); samples older than
    ``HISTORY_MINUTES`` before the newest label are dropped.
    """
    if row_tf(row) != "1m":
        return history
    ts = int(row["exchange_ts"])
    sample = MinuteSample(ts, *(finite(row.get(f)) for f in _SAMPLE_FIELDS))
    return AssetHistory(_fold(history.minutes, sample))


def update_market_history(
    history: MarketHistory,
    frame: Mapping[str, Any],
    exchange_ts: int,
    sectors: Mapping[str, str] | None = None,
) -> MarketHistory:
    """Return ``history`` with the market frame of minute ``exchange_ts`` folded in.

    Reads ``frame["leader"]`` and ``frame["rs_scores"]``, the RS of every covered asset: either a
    mapping symbol -> rs_score_m_5 or the market snapshot's list of records with ``symbol`` and
    ``rs_score_m_5``. The follower median is the median RS of every symbol but the leader; a
    sector's RS is the mean RS of its tagged symbols (sums in symbol order, so input order
    cannot leak).
    """
    leader = frame.get("leader")
    scores = _rs_scores(frame.get("rs_scores"))
    followers = [v for s, v in scores if s != leader]
    by_sector: dict[str, list[float]] = {}
    for symbol, value in scores:
        tag = (sectors or {}).get(symbol)
        if tag is not None:
            by_sector.setdefault(tag, []).append(value)
    sample = MarketSample(
        ts=exchange_ts,
        leader=None if leader is None else str(leader),
        follower_rs_median=statistics.median(followers) if followers else None,
        sector_rs=tuple((tag, math.fsum(v) / len(v)) for tag, v in sorted(by_sector.items())),
    )
    return MarketHistory(_fold(history.minutes, sample))


def _rs_scores(raw: Any) -> list[tuple[str, float]]:
    if isinstance(raw, Mapping):
        pairs = [(s, r) for s, r in raw.items()]
    else:
        pairs = [
            (r.get("symbol"), r.get("rs_score_m_5")) for r in raw or () if isinstance(r, Mapping)
        ]
    return sorted((str(s), v) for s, r in pairs if s is not None and (v := finite(r)) is not None)


_S = TypeVar("_S", MinuteSample, MarketSample)


def _fold(samples: tuple[_S, ...], sample: _S) -> tuple[_S, ...]:
    # ``samples`` are sorted by ts, one per ts (made here, or read back by from_state, which
    # sorts). The usual case appends a newer minute: keep the tail within the horizon.
    if not samples or samples[-1].ts < sample.ts:
        horizon = sample.ts - HISTORY_MINUTES * MINUTE_MS
        first = 0
        while first < len(samples) and samples[first].ts < horizon:
            first += 1  # usually one minute falls out, or none
        kept = list(samples[first:])
        kept.append(sample)
        return tuple(kept)
    newest = max([sample.ts, *(m.ts for m in samples)])
    horizon = newest - HISTORY_MINUTES * MINUTE_MS
    kept = [m for m in samples if m.ts != sample.ts and m.ts >= horizon]
    if sample.ts >= horizon:
        kept.append(sample)
    return tuple(sorted(kept, key=lambda m: m.ts))


def _check_version(data: Mapping[str, Any], what: str) -> None:
    if data.get("v") != _STATE_VERSION:
        raise ValueError(f"{what} state version {data.get('v')!r} is not {_STATE_VERSION}")
