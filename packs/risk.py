"""The risk pack (spec 000 §17-18, spec 001, spec 003 §13, spec 004 P0-2/P1-1..3): one YAML per rev.

Everything the downstream agents decide by a number lives here: which events open trades, the
HRP overlay, the CVaR guard, the risk controls (daily loss cap, loss streak, near-liquidation
guard, warm-up, backpressure, fail-safe, hard stops), order sizing, paper execution (fees,
slippage, flags, canary routing, realised edge, end of day) and the exit advisor. One integer,
``risk_policy_rev``, names the pack in every decision; changing a value means a new file with a
higher rev. The shipped pack is ``packs/risk/v1.yaml``.

Units are in the field names: ``_usd`` quote currency, ``_pct`` fractions of equity (0.01 = 1 %),
``_bps`` basis points, ``_r`` multiples of a trade's initial risk R (entry to stop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from packs.base import Pack, load_pack

PACK_DIR = Path(__file__).resolve().parent / "risk"
DEFAULT_REV = 1

Side = Literal["long", "short"]


class EntryPolicy(Pack):
    """Which events open trades, and on which side (events carry no side of their own)."""

    sides: dict[str, Side] = Field(
        min_length=1, description="Event subtype -> side of the trade it opens."
    )
    min_severity: int = Field(ge=0, le=100, description="Weaker events are not traded.")
    timeframes: tuple[Literal["1m", "15m", "1h"], ...] = Field(
        min_length=1, description="Event timeframes that are traded."
    )


class HrpOverlay(Pack):
    """HRP cluster budgets (spec 000 §17)."""

    lookback_d: int = Field(ge=2, description="HRP_LOOKBACK_D: days of 1h closes.")
    min_history_h: int = Field(ge=2, description="Symbols with fewer 1h returns are left out.")
    winsor_sigma: float = Field(gt=0, description="Log-returns are winsorized at +/- this many sd.")
    target_risk_budget_pct: float = Field(
        gt=0, le=1, description="TARGET_RISK_BUDGET: equity risk shared by all clusters."
    )
    min_scale: float = Field(ge=0, le=1, description="Lowest scale a crowded cluster gets.")
    cluster_map: dict[str, str] = Field(
        min_length=1, description="CLUSTER_MAP: base symbol (BTC) -> cluster (majors, l1, ...)."
    )
    default_cluster: str = Field(description="Cluster of a symbol the map does not name.")


class CvarGuard(Pack):
    """Tail-risk caps per (symbol, tf) from closed trades in R units (spec 000 §18)."""

    alpha: float = Field(gt=0.5, lt=1, description="Confidence level: the worst 1-alpha tail.")
    mode: Literal["empirical", "evt"] = Field(description="Tail estimator.")
    min_samples: int = Field(ge=1, description="Fewer own samples: shrink toward the class.")
    prior_strength: float = Field(ge=0, description="Pseudo-samples of the class prior.")
    prior_cvar_r: float = Field(lt=0, description="Prior when even the class has no samples.")
    max_samples: int = Field(ge=10, description="Most recent loss samples kept per key.")
    evt_threshold_quantile: float = Field(
        gt=0, lt=1, description="EVT: losses beyond this quantile are fitted (GPD)."
    )
    risk_budget_per_trade_pct: float = Field(
        gt=0, le=1, description="RISK_BUDGET_PER_TRADE: tail loss at the stop may not exceed it."
    )


class NearLiquidation(Pack):
    """Block entries whose liquidation price is too close to the stop (spec 001)."""

    enabled: bool
    sl_buffer_multiplier: float = Field(gt=0, description="Liq distance >= this x stop distance.")
    maintenance_margin_pct: float = Field(ge=0, lt=1, description="Maintenance margin rate.")


class Backpressure(Pack):
    """Too many signals in one minute (spec 001 'backpressure')."""

    enabled: bool
    max_queue_len: int = Field(ge=1, description="Signals of one minute beyond this are excess.")
    drop_mode: Literal["halt", "degrade"] = Field(
        description="halt: drop the excess; degrade: keep only severity >= degrade_min_severity."
    )
    degrade_min_severity: int = Field(ge=0, le=100)


class FailSafe(Pack):
    """Switch to paper on a CRIT control event (spec 001 'fail-safe')."""

    switch_to_paper_on_crit: bool
    cooldown_minutes: int = Field(ge=0)


class RiskControls(Pack):
    """Daily loss cap, loss streak, hard stops and the gates before sizing (spec 001, 004)."""

    daily_loss_cap_usd: float = Field(gt=0, description="Halt for the day at realised PnL <= -cap.")
    loss_streak_max: int = Field(ge=1, description="Consecutive losing trades that halt trading.")
    session_cooldown_minutes: int = Field(ge=0, description="Halt length after a loss streak.")
    hard_stop_loss_usd: float = Field(
        gt=0, description="Realised day PnL <= -this is a hard stop (kill switch)."
    )
    max_drawdown_pct: float = Field(
        gt=0, le=1, description="Equity below peak by this share is a hard stop."
    )
    cancel_budget_per_day: int = Field(ge=1, description="More cancels in a day: hard stop.")
    warmup_minutes: int = Field(ge=0, description="No entries for this long after a start.")
    near_liquidation: NearLiquidation
    backpressure: Backpressure
    fail_safe: FailSafe


class Sizing(Pack):
    """Risk per trade and order quantity (spec 001 'Sizing & Near-Liq Guard')."""

    starting_equity_usd: float = Field(gt=0)
    risk_pct: float = Field(gt=0, le=1, description="Equity risked per trade before overlays.")
    leverage: float = Field(ge=1, description="max_lev before the CVaR cap.")
    notional_cap_usd: float = Field(gt=0, description="cap in qty = floor(min(cap, ...)).")
    min_free_balance_usd: float = Field(ge=0, description="Below this free balance: no entry.")
    sl_k_atr: float = Field(gt=0, description="Stop distance in ATRs.")
    tp_r: float = Field(gt=0, description="Take profit distance in R.")
    assumed_sl_pct: float = Field(
        gt=0, lt=1, description="Stop distance as a share of price when ATR is unknown."
    )
    lot_step: float = Field(gt=0, description="Default quantity step.")
    min_qty: float = Field(ge=0, description="Default exchange minimum quantity.")
    min_notional_usd: float = Field(ge=0, description="Exchange minimum order value.")
    lot_steps: dict[str, float] = Field(default_factory=dict, description="Per base symbol.")
    funding_periods_per_day: float = Field(gt=0, description="Funding settlements a day.")
    expected_hold_minutes: int = Field(ge=1, description="Hold used to price funding cost.")
    min_edge_bps: float = Field(description="Expected edge after costs below this: no entry.")
    edge_per_severity_bps: float = Field(
        ge=0, description="Gross expected edge of an event: severity x this."
    )


class Rollout(Pack):
    """Canary routing by deterministic hashing (spec 001 'Canary & Rollback')."""

    mode: Literal["disabled", "canary", "full"]
    canary_fraction: float = Field(ge=0, le=1)
    rng_seed: int


class EndOfDay(Pack):
    """Daily rollover at 00:00 UTC stream time (spec 004 P1-3)."""

    close_at_daily_rollover: bool = Field(description="Flatten open positions (else carry).")
    min_close_notional_usd: float = Field(ge=0, description="Smaller positions are carried.")


class RealisedEdge(Pack):
    """Realised-edge EWMA per regime (spec 004 P1-2)."""

    ewma_minutes: float = Field(gt=0, description="Half-life-free EWMA span in minutes (30).")
    cost_floor_bps: float = Field(ge=0, description="EWMA below -this for `sustain_minutes` ...")
    sustain_minutes: int = Field(ge=1, description="... widens that regime's entries.")
    widen_factor: float = Field(ge=1, description="Entry offset multiplier while widened (1.5).")


class Execution(Pack):
    """The paper executor (spec 001 'Exchange modes', fills against recorded BBO)."""

    mode: Literal["paper"] = Field(description="Only paper: real venues are out of scope.")
    maker_fee_bps: float
    taker_fee_bps: float
    slippage_bps: float = Field(ge=0, description="Taker fills cross the spread plus this.")
    maker_only: bool
    post_only: bool
    reduce_only_exits: bool = Field(description="Stops, targets and closes are reduce-only.")
    order_ttl_minutes: int = Field(ge=1, description="Unfilled entries are cancelled after this.")
    rollout: Rollout
    end_of_day: EndOfDay
    realised_edge: RealisedEdge


class ExitAdvisor(Pack):
    """Trade management (spec 003 §13)."""

    trail_trigger_r: float = Field(gt=0, description="Unrealised >= this: trail TP (+1 R).")
    trail_step_r: float = Field(gt=0, description="TP moves out by this (+0.5 R).")
    breakeven_trigger_r: float = Field(gt=0, description="Unrealised >= this: SL to entry (0.7).")
    hostile_cvd_slope_z: float = Field(gt=0, description="cvd_slope_z against the trade by this.")
    hostile_absorp_score: float = Field(ge=0, le=1, description="... and absorption above this.")
    max_hold_minutes: int = Field(ge=1, description="Close at this age.")
    rr_decay_start_share: float = Field(
        gt=0, le=1, description="From this share of max hold, TP decays linearly toward entry."
    )
    min_interval_minutes: int = Field(ge=0, description="At most one adjustment per this (5).")


class RiskPolicy(Pack):
    """The whole downstream configuration."""

    risk_policy_rev: int = Field(ge=1)
    entry: EntryPolicy
    hrp: HrpOverlay
    cvar: CvarGuard
    controls: RiskControls
    sizing: Sizing
    execution: Execution
    exit: ExitAdvisor

    @model_validator(mode="after")
    def _consistent(self) -> RiskPolicy:
        if self.controls.hard_stop_loss_usd < self.controls.daily_loss_cap_usd:
            raise ValueError("controls.hard_stop_loss_usd must be >= daily_loss_cap_usd")
        if self.exit.breakeven_trigger_r > self.exit.trail_trigger_r:
            raise ValueError("exit.breakeven_trigger_r must be <= trail_trigger_r")
        return self


def load_risk_policy(rev: int = DEFAULT_REV, path: Path | None = None) -> RiskPolicy:
    """Load ``packs/risk/v<rev>.yaml`` (or ``path``) and check its rev matches its name."""
    file = path or PACK_DIR / f"v{rev}.yaml"
    pack = load_pack(file, RiskPolicy)
    if path is None and pack.risk_policy_rev != rev:
        from packs.base import PackError

        raise PackError(f"{file}: risk_policy_rev is {pack.risk_policy_rev}, the name says {rev}")
    return pack
