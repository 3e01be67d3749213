"""The detector pack (spec 002 §9, §10, §13.1, §19.3, §19.5, Appendix B, D): a frozen model.

Everything the detectors and the scorer decide by a number lives here: the class policy of D.1-D.3
and D.5 (publish threshold, cooldown, novelty half-life, severity weights, per-symbol budget), every
trigger threshold of Appendix B / D.4 with optional per-detector overrides of the class policy, the
D.6 freshness gates detectors apply, the D.7 liquidity-tier overrides and the §10 scoring
constants. A change of behaviour is a change of pack and of ``config_hash``. The shipped pack is
``packs/detector/v0.1.yaml``; its hash is pinned in ``tests/unit/test_detector_pack.py``.

Detectors are grouped in *families*: one pack entry per family, one or more subtypes per family
(``price_spike_m_1`` fires ``price_spike_up_m_1`` or ``price_spike_down_m_1``). A detector id is
``<class prefix>.<subtype>`` (``spike.vol_spike_m_1``, ``div.premium_no_oi_m_5``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from packs.base import Pack, load_pack

PACK_DIR = Path(__file__).resolve().parent / "detector"
DEFAULT_VERSION = "v0.1"

EventClass = Literal["spike", "shift", "quadrant", "divergence", "synchrony", "rotation"]
Tier = Literal["top", "mid", "tail"]
EVENT_CLASSES: tuple[EventClass, ...] = get_args(EventClass)
#: Prefix of detector ids per class (spec 002 §9: ``div.``, ``sync.``, ``rot.``).
CLASS_PREFIX: dict[EventClass, str] = {
    "spike": "spike",
    "shift": "shift",
    "quadrant": "quadrant",
    "divergence": "div",
    "synchrony": "sync",
    "rotation": "rot",
}
#: Minutes of per-asset and market history the detectors may look back (funding: 60).
HISTORY_MINUTES = 60


class SeverityWeights(Pack):
    """Severity weights of §10.3 / D.3: primary, secondary, breadth, sigmoid steepness."""

    w1: float = Field(ge=0, description="Weight of the clamped primary z.")
    w2: float = Field(ge=0, description="Weight of max(0, secondary).")
    w3: float = Field(ge=0, description="Weight of breadth in [0, 1].")
    a: float = Field(gt=0, description="Sigmoid steepness.")


class ClassPolicy(SeverityWeights):
    """Class defaults: D.1 threshold, D.2 cooldown and half-life, D.3 weights, D.5 budget."""

    publish_threshold: int = Field(ge=0, le=100, description="Emit when severity >= this (D.1).")
    cooldown_s: int = Field(ge=0, description="Debounce cooldown in seconds (D.2).")
    half_life_s: float = Field(gt=0, description="Novelty decay constant in seconds (D.2).")
    budget_per_symbol_min: int = Field(ge=0, description="Events per symbol per minute (D.5).")


class DetectorParams(Pack):
    """What every detector family has: a switch, its main threshold and class overrides (§19.3)."""

    enabled: bool
    threshold: float = Field(gt=0, description="The main trigger threshold (units per family).")
    cooldown_s: int | None = Field(default=None, ge=0, description="Overrides the class.")
    half_life_s: float | None = Field(default=None, gt=0, description="Overrides the class.")
    weights: SeverityWeights | None = Field(default=None, description="Overrides the class.")


class VolSpike(DetectorParams):
    """spike.vol_spike_m_1: ``z_vol_m_1 >= threshold`` with ``trade_count_m_1 >= 5`` (B.1)."""

    min_trade_count: int = Field(ge=0)
    confirm_z_ret_abs: float = Field(description="z_ret_abs_m_1 above this confirms (§9.2a).")


class PriceSpike(DetectorParams):
    """spike.price_spike_up/down_m_1: ``z_ret_abs_m_1 >= threshold``, sign of ret_m_1 (B.1)."""


class OiSpike(DetectorParams):
    """spike.oi_spike_up/down_m_5: ``|z_oi_roc_m_5| >= threshold`` and ``|oi_roc_m_5|`` (B.1)."""

    min_abs_oi_roc: float = Field(ge=0, description="Fraction, 0.015 = 1.5 %.")


class LiqCluster(DetectorParams):
    """spike.liq_cluster_m_5: ``liq_count_m_5 >= threshold``; inferred proxy without a feed."""

    proxy_enabled: bool
    proxy_threshold: float = Field(
        gt=0, description="z_ret_abs + max(0, z_spread) + max(0, -z_oi_roc) >= this."
    )


class SpreadStress(DetectorParams):
    """shift.spread_stress_m_1: ``z_spread_m_1 >= threshold`` (B.2)."""


class BasisJolt(DetectorParams):
    """shift.basis_jolt_m_5: ``|z_basis_m_5| >= threshold`` (B.2)."""


class FundingJolt(DetectorParams):
    """shift.funding_jolt_h_1: ``|Δ funding_h_1| >= threshold`` (a rate per hour) or a flip."""

    lookback_min: int = Field(ge=1, le=HISTORY_MINUTES, description="Δ against this many min.")
    flip_within_s: int = Field(ge=0, description="A sign flip counts if funding is this near.")
    flip_min_abs: float = Field(ge=0, description="Both sides of a flip at least this large.")


class Quadrant(DetectorParams):
    """quadrant.price_*_oi_*_m_5: ``|ret_m_5| >= threshold`` and ``|oi_roc_m_5|`` (B.3)."""

    min_abs_oi_roc: float = Field(gt=0)


class PriceUpCvdDown(DetectorParams):
    """div.price_up_cvd_down_m_5: ``ret_m_5 >= threshold`` and net taker selling over 5 bars."""

    cvd_share: float = Field(
        gt=0, le=1, description="q: Σ5 cvd_delta <= -q * Σ5 v_total (a share of volume)."
    )
    bars: int = Field(ge=1, le=HISTORY_MINUTES)


class PriceFlatCvdTrend(DetectorParams):
    """div.price_flat_cvd_trend_m_5: ``|cvd_slope_m_5| / mean5(v_total) >= threshold``."""

    max_abs_ret: float = Field(ge=0, description="|ret_m_5| at most this (0.001).")
    bars: int = Field(ge=1, le=HISTORY_MINUTES)


class PremiumNoOi(DetectorParams):
    """div.premium_no_oi_m_5: ``z_basis_m_5 >= threshold`` and ``oi_roc_m_5 <= max_oi_roc``."""

    max_oi_roc: float


class BasketShock(DetectorParams):
    """sync.basket_shock_dt_5s: ``shock_count_5s >= max(threshold, ceil(share * universe))``."""

    universe_share: float = Field(ge=0, le=1)


class LeaderCooling(DetectorParams):
    """rot.leader_cooling_followers_hot_m_15: 2-bar divergence of 15m means beyond threshold."""

    bucket_min: int = Field(ge=1)
    min_bucket_minutes: int = Field(ge=1)

    @model_validator(mode="after")
    def _fits_history(self) -> LeaderCooling:
        if 3 * self.bucket_min > HISTORY_MINUTES or self.min_bucket_minutes > self.bucket_min:
            raise ValueError(f"3 buckets must fit {HISTORY_MINUTES} min of history")
        return self


class SectorFlip(LeaderCooling):
    """rot.rs_flip_sector_m_15: the former top sector leaves the top-k and a new one leads."""

    top_k: int = Field(ge=1)
    min_sectors: int = Field(ge=2)


class Detectors(Pack):
    """One entry per detector family (Appendix B, D.4)."""

    vol_spike_m_1: VolSpike
    price_spike_m_1: PriceSpike
    oi_spike_m_5: OiSpike
    liq_cluster_m_5: LiqCluster
    spread_stress_m_1: SpreadStress
    basis_jolt_m_5: BasisJolt
    funding_jolt_h_1: FundingJolt
    quadrant_m_5: Quadrant
    price_up_cvd_down_m_5: PriceUpCvdDown
    price_flat_cvd_trend_m_5: PriceFlatCvdTrend
    premium_no_oi_m_5: PremiumNoOi
    basket_shock_dt_5s: BasketShock
    leader_cooling_followers_hot_m_15: LeaderCooling
    rs_flip_sector_m_15: SectorFlip


#: Family -> (class, subtypes it can fire).
FAMILIES: dict[str, tuple[EventClass, tuple[str, ...]]] = {
    "vol_spike_m_1": ("spike", ("vol_spike_m_1",)),
    "price_spike_m_1": ("spike", ("price_spike_up_m_1", "price_spike_down_m_1")),
    "oi_spike_m_5": ("spike", ("oi_spike_up_m_5", "oi_spike_down_m_5")),
    "liq_cluster_m_5": ("spike", ("liq_cluster_m_5",)),
    "spread_stress_m_1": ("shift", ("spread_stress_m_1",)),
    "basis_jolt_m_5": ("shift", ("basis_jolt_m_5",)),
    "funding_jolt_h_1": ("shift", ("funding_jolt_h_1",)),
    "quadrant_m_5": (
        "quadrant",
        (
            "price_up_oi_up_m_5",
            "price_up_oi_down_m_5",
            "price_down_oi_up_m_5",
            "price_down_oi_down_m_5",
        ),
    ),
    "price_up_cvd_down_m_5": ("divergence", ("price_up_cvd_down_m_5",)),
    "price_flat_cvd_trend_m_5": ("divergence", ("price_flat_cvd_trend_m_5",)),
    "premium_no_oi_m_5": ("divergence", ("premium_no_oi_m_5",)),
    "basket_shock_dt_5s": ("synchrony", ("basket_shock_dt_5s",)),
    "leader_cooling_followers_hot_m_15": ("rotation", ("leader_cooling_followers_hot_m_15",)),
    "rs_flip_sector_m_15": ("rotation", ("rs_flip_sector_m_15",)),
}
#: Subtype -> family.
SUBTYPE_FAMILY: dict[str, str] = {s: f for f, (_c, subs) in FAMILIES.items() for s in subs}


def detector_id(subtype: str) -> str:
    """Return the detector id of a subtype (``spike.vol_spike_m_1``)."""
    return f"{CLASS_PREFIX[FAMILIES[SUBTYPE_FAMILY[subtype]][0]]}.{subtype}"


class Gates(Pack):
    """D.6 gates detectors apply on top of ``dq_status == 'ok'`` (§8.4)."""

    oi_stale_ms: int = Field(gt=0, description="OI-dependent detectors need staleness <= this.")
    book_stale_ms: int = Field(gt=0, description="Micro-feature detectors need staleness <= this.")


class Scoring(Pack):
    """Constants of the §10 scoring and emission model."""

    sigmoid_center: float = Field(description="severity = 100 sigmoid(a (raw - center)).")
    w_dq: float = Field(ge=0, description="Weight of the dq penalty (§10.3).")
    w_liq: float = Field(ge=0, description="Weight of the illiquidity penalty (§10.3).")
    novelty_boost: float = Field(ge=0, description="β0, the first-time boost (§10.4).")
    novelty_cap: float = Field(ge=0, description="Novelty never adds more than this.")
    novelty_reset_half_lives: float = Field(
        gt=0, description="A key silent this many half-lives starts a new novelty episode."
    )
    reemit_gain: float = Field(ge=0, description="δ: re-emit in cooldown at +δ severity.")
    coalesce_window_ms: int = Field(ge=0, description="Same-key triggers this close coalesce.")
    breadth_full_count: int = Field(ge=1, description="breadth = min(1, shock_count_5s / this).")
    ratio_cap: float = Field(gt=1, description="Cap of threshold-ratio primaries/secondaries.")
    dq_penalty_book_staleness_ms: int = Field(
        ge=0, description="dq_penalty = 1 when book_staleness_ms is above this (§10.7)."
    )
    near_guard_margin: float = Field(
        ge=0, lt=1, description="illiquidity_penalty = 1 within this share of a guard (§10.7)."
    )


class TierOverride(Pack):
    """D.7 overrides for one liquidity tier."""

    thresholds: dict[str, float] = Field(default_factory=dict, description="Family -> threshold.")
    budgets: dict[EventClass, int] = Field(default_factory=dict, description="Class -> budget.")
    publish_thresholds: dict[EventClass, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_families(self) -> TierOverride:
        unknown = sorted(set(self.thresholds) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown detector family {', '.join(unknown)}")
        if any(t <= 0 for t in self.thresholds.values()):
            raise ValueError("thresholds must be > 0")
        if any(b < 0 for b in self.budgets.values()):
            raise ValueError("budgets must be >= 0")
        if any(not 0 <= t <= 100 for t in self.publish_thresholds.values()):
            raise ValueError("publish_thresholds must be in 0..100")
        return self


@dataclass(frozen=True, slots=True)
class Resolved:
    """The policy of one subtype for one tier: class defaults with every override applied."""

    w1: float
    w2: float
    w3: float
    a: float
    publish_threshold: int
    cooldown_ms: int
    half_life_s: float
    budget_per_symbol_min: int


class DetectorPack(Pack):
    """Detector pack v0.x (spec 002 §13.1: MINOR tunes numbers, MAJOR changes the taxonomy)."""

    version: str = Field(pattern=r"^v\d+\.\d+$")
    emit_events: bool = Field(description="Global kill switch (§19.3); snapshots still flow.")
    classes: dict[EventClass, ClassPolicy]
    global_cap_per_min: int = Field(ge=1, description="Events per minute, all symbols (D.5).")
    scoring: Scoring
    gates: Gates
    detectors: Detectors
    tiers: dict[Tier, TierOverride]
    sectors: dict[str, str] = Field(
        default_factory=dict,
        description="Symbol -> sector tag for rot.rs_flip_sector_m_15 (§9.7 'if sectors tagged');"
        " untagged symbols count in no sector.",
    )

    @model_validator(mode="after")
    def _complete(self) -> DetectorPack:
        missing = [c for c in EVENT_CLASSES if c not in self.classes]
        if missing:
            raise ValueError(f"classes lacks {', '.join(missing)}")
        return self

    def params(self, family: str) -> DetectorParams:
        """Return the parameters of a detector family."""
        params: DetectorParams = getattr(self.detectors, family)
        return params

    def threshold(self, family: str, tier: Tier) -> float:
        """Return a family's trigger threshold for a liquidity tier (D.7)."""
        override = self.tiers.get(tier)
        if override is not None and family in override.thresholds:
            return override.thresholds[family]
        return self.params(family).threshold

    def resolve(self, subtype: str, tier: Tier) -> Resolved:
        """Return the scoring policy of a subtype for a tier: class, detector, then tier."""
        family = SUBTYPE_FAMILY[subtype]
        cls = FAMILIES[family][0]
        base = self.classes[cls]
        det = self.params(family)
        weights = det.weights or base
        override = self.tiers.get(tier) or TierOverride()
        cooldown_s = base.cooldown_s if det.cooldown_s is None else det.cooldown_s
        return Resolved(
            w1=weights.w1,
            w2=weights.w2,
            w3=weights.w3,
            a=weights.a,
            publish_threshold=override.publish_thresholds.get(cls, base.publish_threshold),
            cooldown_ms=cooldown_s * 1000,
            half_life_s=det.half_life_s or base.half_life_s,
            budget_per_symbol_min=override.budgets.get(cls, base.budget_per_symbol_min),
        )

    def memory_ms(self) -> int:
        """Return how long a debounce key's state can still change a decision (for pruning)."""
        longest = 0.0
        for family in FAMILIES:
            for tier in get_args(Tier):
                r = self.resolve(FAMILIES[family][1][0], tier)
                reset_ms = self.scoring.novelty_reset_half_lives * r.half_life_s * 1000
                longest = max(longest, float(r.cooldown_ms), reset_ms)
        return int(longest) + 1


def load_detector_pack(version: str = DEFAULT_VERSION, path: Path | None = None) -> DetectorPack:
    """Load a shipped detector pack by version, or any pack file by path.

    Raises:
        PackError: Missing file or invalid pack (one line).
    """
    return load_pack(path or PACK_DIR / f"{version}.yaml", DetectorPack)
