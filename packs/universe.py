"""The universe policy (spec 002 §6, §7, §13.1, §19.5, D.8): a frozen model, one YAML per rev.

One pack holds everything the market agent decides by a number: the universe policy proper
(ranking, hysteresis bands, freeze, dwell, hard exits, churn cap, hotlist) and, under ``market``,
the market-context parameters of §6 (RS weights, leader logic, dominance and shock windows,
dispersion and DQ minimums). They live together because one agent applies them and one integer,
``universe_policy_rev`` (§13.1: monotonically increasing), names them in every event's
provenance; changing any value here means a new file with a higher rev. The shipped policy is
``packs/universe/v1.yaml``; its hash is pinned in ``tests/unit/test_universe_pack.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from packs.base import Pack, load_pack

PACK_DIR = Path(__file__).resolve().parent / "universe"
DEFAULT_REV = 1
#: The most names an ``rs_top`` / ``rs_bottom`` array may hold (the event contract bounds it).
MAX_RS_NAMES = 16


class ScoreWeights(Pack):
    """Composite rank score U = w_dv * rank_desc(dv_L1) + w_oi * rank_desc(oi_L2) (§7.2).

    An asset without OI in its lookback ranks by dollar volume alone (w_dv=1, w_oi=0).
    """

    dv_lookback_min: int = Field(ge=1, description="L1: minutes summed for dollar volume.")
    oi_lookback_min: int = Field(ge=1, description="L2: minutes whose OI notional is medianed.")
    w_dv: float = Field(gt=0, description="Weight of the dollar-volume rank.")
    w_oi: float = Field(ge=0, description="Weight of the open-interest rank.")


class EntryBand(Pack):
    """Enter when rank(U) <= n_entry for k_entry consecutive minutes (§7.3)."""

    n_entry: int = Field(ge=1)
    k_entry: int = Field(ge=1, description="Consecutive minutes.")


class ExitBand(Pack):
    """Exit when rank(U) > n_exit for k_exit consecutive minutes (§7.3)."""

    n_exit: int = Field(ge=1)
    k_exit: int = Field(ge=1, description="Consecutive minutes.")


class HardExit(Pack):
    """Drop a member at once, despite dwell and freeze (§7.6)."""

    stale_min: int = Field(ge=1, description="T_stale: consecutive stale (or missing) minutes.")
    dead_dv_usd: float = Field(ge=0, description="dv_L1 below this (quote units) is dead.")


class Churn(Pack):
    """Churn cap (§7.6): entries beyond it wait for the next clock hour."""

    max_changes_per_hour: int = Field(ge=1, description="C: adds + removes per clock hour.")


class Hotlist(Pack):
    """Hotlist overlay (§7.4, D.8): ttl_min = ttl_base_min + ttl_k_min_per_point * severity."""

    s_hot: float = Field(ge=0, le=100, description="S_hot: severity that makes an asset hot.")
    ttl_base_min: float = Field(gt=0, description="Minutes.")
    ttl_k_min_per_point: float = Field(ge=0, description="Minutes per severity point.")
    reasons: tuple[str, ...] = Field(min_length=1, description="hot_reason enum (D.8, §7.4).")
    always_hot: tuple[str, ...] = Field(description="Reasons that are hot at any severity.")
    max_size: int = Field(ge=1, description="Most hot assets at once.")

    @model_validator(mode="after")
    def _known_reasons(self) -> Hotlist:
        if len(set(self.reasons)) != len(self.reasons):
            raise ValueError("hotlist.reasons has duplicates")
        unknown = sorted(set(self.always_hot) - set(self.reasons))
        if unknown:
            raise ValueError(f"hotlist.always_hot names unknown reasons: {', '.join(unknown)}")
        return self

    def makes_hot(self, severity: float, reason: str) -> bool:
        """Return True when an event of this severity and reason puts its asset on the list."""
        return severity >= self.s_hot or reason in self.always_hot

    def ttl_ms(self, severity: float) -> int:
        """Return the hot TTL of an event of this severity, in ms (D.8)."""
        return round((self.ttl_base_min + self.ttl_k_min_per_point * severity) * 60_000)


class RelativeStrength(Pack):
    """RS = w1 z_ret_abs_m_1 sign(ret_m_5) + w2 z_vol_m_1 + w3 sign(oi_roc) min(|z_oi|, z_cap)."""

    w1: float
    w2: float
    w3: float
    z_cap: float = Field(gt=0)
    top_n: int = Field(ge=1, le=MAX_RS_NAMES, description="Length of rs_top and rs_bottom.")


class LeaderLogic(Pack):
    """Leader selection (§6.4) and its hysteresis (our addition, see processors.market)."""

    majors: tuple[str, ...] = Field(description="Symbols always among the candidates.")
    default_symbol: str = Field(description="Leader on low activity or a tie (BTC).")
    top_share: float = Field(gt=0, le=1, description="Top RS share that joins the candidates.")
    epsilon: float = Field(ge=0, description="Lead below this is low activity.")
    oi_bonus: float = Field(ge=0, description="Lead multiplier 1 + oi_bonus when OI agrees.")
    switch_margin: float = Field(
        ge=0, description="A challenger must lead the current leader by this share to replace it."
    )


class MarketContext(Pack):
    """Market-context parameters (§6)."""

    rs: RelativeStrength
    leader: LeaderLogic
    dominance_window_min: int = Field(ge=1, description="Minutes of dollar volume (5m).")
    oi_roc_window_min: int = Field(
        ge=1, description="oi_roc_m_5 look-back when derived from oi_close (lattice oi_window_m)."
    )
    shock_window_ms: int = Field(gt=0, description="Event-driven shock count window (5 s).")
    min_assets_for_context: int = Field(ge=1, description="Fewer eligible assets: dq partial.")
    dispersion_min_assets: int = Field(ge=2, description="Fewer values: dispersion is null.")
    max_partition_lag_min: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Emit a minute without a partition that lags this many minutes behind the newest "
            "seal (dq partial). Null: always wait (the only setting that is replay-exact)."
        ),
    )


class UniversePolicy(Pack):
    """Universe policy (§7, §19.5) with the market-context section (§6)."""

    universe_policy_rev: int = Field(ge=1, description="§13.1: monotonically increasing.")
    n_base: int = Field(ge=1, description="Target universe size.")
    entry_band: EntryBand
    exit_band: ExitBand
    freeze_min: int = Field(ge=0, description="T_freeze: minutes without re-evaluation.")
    min_dwell_min: int = Field(ge=0, description="Minutes a member stays (unless hard exit).")
    scores: ScoreWeights
    hard_exit: HardExit
    churn: Churn
    hotlist: Hotlist
    market: MarketContext

    @model_validator(mode="after")
    def _bands_nest(self) -> UniversePolicy:
        n_entry, n_exit = self.entry_band.n_entry, self.exit_band.n_exit
        if not n_entry <= self.n_base <= n_exit:
            raise ValueError("bands must nest: n_entry <= n_base <= n_exit")
        if n_entry >= n_exit:
            raise ValueError("n_entry must be below n_exit (hysteresis)")
        return self


def load_universe_policy(path: Path | None = None, rev: int = DEFAULT_REV) -> UniversePolicy:
    """Load the shipped policy of ``rev``, or any policy file by path.

    Raises:
        PackError: Missing file or invalid policy (one line).
    """
    return load_pack(path or PACK_DIR / f"v{rev}.yaml", UniversePolicy)
