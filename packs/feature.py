"""The feature pack (spec 002 §2.4, §4, §8, §15, Appendix A, D.6): a frozen model, YAML per version.

Everything the lattice decides by a number lives here, so a change of behaviour is a change of
pack and of ``config_hash``. The shipped pack is ``packs/feature/v1.0.yaml``; its hash is pinned
in ``tests/unit/test_feature_pack.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from packs.base import Pack, load_pack

PACK_DIR = Path(__file__).resolve().parent / "feature"
DEFAULT_VERSION = "v1.0"

Timeframe = Literal["1m", "15m", "1h"]
#: Features normalised per asset x tf (spec 002 §4.1): the names of their z_/q_ columns' bases.
Normalized = Literal["vol", "ret_abs", "oi_roc", "spread", "basis"]


class LatticeClock(Pack):
    """Stream-time sealing (§2.2, DESIGN.md §4)."""

    lateness_ms: int = Field(ge=0)
    grace_ms: int = Field(gt=0)

    @model_validator(mode="after")
    def _grace_after_lateness(self) -> LatticeClock:
        if self.grace_ms <= self.lateness_ms:
            raise ValueError("grace_ms must exceed lateness_ms")
        return self


class Microstructure(Pack):
    """BBO and L2 choices (§5.5)."""

    spread_unit: Literal["absolute"]
    spread_p95_min_samples: int = Field(ge=1)
    l2_enabled: bool
    book_top_n: int = Field(ge=1)


class DataQuality(Pack):
    """DQ thresholds (§8.1, §8.4, §8.6, D.6)."""

    oi_stale_ms: int = Field(gt=0)
    book_stale_ms: int = Field(gt=0)
    clock_skew_partial_ms: int = Field(gt=0)
    clock_skew_stale_ms: int = Field(gt=0)
    max_abs_ret_m_1: float = Field(gt=0)
    rollup_partial_share: float = Field(gt=0, le=1)
    rollup_stale_share: float = Field(gt=0, le=1)


class Baselines(Pack):
    """Robust EW baselines (§4.2, §4.3, §4.8): separate state per asset x tf x feature."""

    features: tuple[Normalized, ...]
    min_samples: int = Field(ge=2)
    half_life_bars: dict[Timeframe, float]
    winsor_k: float = Field(gt=0)
    epsilon: float = Field(gt=0)


class Quantiles(Pack):
    """t-digest quantiles (§4.3) and the IQR clamp for scoring (§4.4)."""

    features: tuple[Normalized, ...]
    max_centroids: int = Field(ge=10)
    iqr_k: float = Field(gt=0)


class Flags(Pack):
    """Cheap-flag thresholds (§5.6; defaults from Appendix B triggers)."""

    z_vol: float
    z_ret_abs: float
    z_oi_roc: float
    min_abs_oi_roc: float = Field(ge=0)
    z_spread: float
    liq_count: int = Field(ge=1)
    min_trade_count: int = Field(ge=0)


class Illiquidity(Pack):
    """Illiquidity and dead-book guards (§8.3, D.6)."""

    v_min_floor: float = Field(ge=0)
    v_min_share_of_median: float = Field(ge=0)
    spread_cap_mult: float = Field(gt=0)


class FeaturePack(Pack):
    """Feature pack v1.x."""

    feature_pack: str
    pack_rev: int = Field(ge=1)
    timeframes: tuple[Timeframe, ...]
    lattice: LatticeClock
    micro: Microstructure
    dq: DataQuality
    baselines: Baselines
    quantiles: Quantiles
    flags: Flags
    illiquidity: Illiquidity
    cvd_slope_bars: int = Field(ge=2)
    basis_window_m: int = Field(ge=1)
    oi_window_m: int = Field(ge=1)

    @model_validator(mode="after")
    def _every_tf_has_a_half_life(self) -> FeaturePack:
        missing = [tf for tf in self.timeframes if tf not in self.baselines.half_life_bars]
        if missing:
            raise ValueError(f"baselines.half_life_bars lacks {', '.join(missing)}")
        return self


def load_feature_pack(version: str = DEFAULT_VERSION, path: Path | None = None) -> FeaturePack:
    """Load a shipped feature pack by version, or any pack file by path.

    Raises:
        PackError: Missing file or invalid pack (one line).
    """
    return load_pack(path or PACK_DIR / f"{version}.yaml", FeaturePack)
