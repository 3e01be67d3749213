"""The named scenarios of the synthetic generator (spec 002 §18.6, golden windows of §16.3).

A scenario is data: a tuple of :class:`Effect` (one channel of one group of assets changed for a
few minutes around the injection minute) plus the detectors of spec 002 §9 / Appendix B that the
injected pattern must trigger, and when. ``calm`` injects nothing and is the baseline every other
scenario equals before its first injected minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.errors import AlphaError

Channel = Literal[
    "ret",
    "oi",
    "basis_bps",
    "funding",
    "volume",
    "trades",
    "buy_share",
    "spread",
    "depth",
    "silence",
    "noise",
]
#: Who an effect changes; an int is one asset by index (clipped to the universe).
Target = Literal["leader", "follower", "thin", "followers", "all"] | int

#: Detector ids of spec 002 Appendix B that the scenarios name.
VOL_SPIKE = "spike.vol_spike_m_1"
PRICE_SPIKE_UP = "spike.price_spike_up_m_1"
PRICE_SPIKE_DOWN = "spike.price_spike_down_m_1"
OI_SPIKE_UP = "spike.oi_spike_up_m_5"
OI_SPIKE_DOWN = "spike.oi_spike_down_m_5"
SPREAD_STRESS = "shift.spread_stress_m_1"
BASIS_JOLT = "shift.basis_jolt_m_5"
FUNDING_JOLT = "shift.funding_jolt_h_1"
PRICE_UP_OI_UP = "quadrant.price_up_oi_up_m_5"
PRICE_UP_OI_DOWN = "quadrant.price_up_oi_down_m_5"
PRICE_DOWN_OI_UP = "quadrant.price_down_oi_up_m_5"
PRICE_DOWN_OI_DOWN = "quadrant.price_down_oi_down_m_5"
PRICE_UP_CVD_DOWN = "div.price_up_cvd_down_m_5"
PREMIUM_NO_OI = "div.premium_no_oi_m_5"
# The spec writes ``sync.basket_shock_Δt_5s``; ids stay ASCII for topics, metrics and SQL.
BASKET_SHOCK = "sync.basket_shock_dt_5s"
PRICE_FLAT_CVD_TREND = "div.price_flat_cvd_trend_m_5"
LEADER_COOLING = "rot.leader_cooling_followers_hot_m_15"
SECTOR_FLIP = "rot.rs_flip_sector_m_15"
#: The sector tags the rotation scenarios assume (spec 002 §9.7 "if sectors tagged"): asset 0 and
#: 1 are ``major``, asset 2 ``defi``, asset 3 ``meme``; the detector pack's ``sectors`` must say so.
SYNTHETIC_SECTORS = {"SYN00": "major", "SYN01": "major", "SYN02": "defi", "SYN03": "meme"}


class SyntheticError(AlphaError, ValueError):
    """The synthetic generator was asked for something it cannot produce."""


class UnknownScenarioError(SyntheticError):
    """No scenario has that name."""


@dataclass(frozen=True, slots=True)
class Effect:
    """One injected change to one channel of a group of assets.

    Attributes:
        channel: What changes. ``ret``: total log return over the effect, a linear ramp that
            stays (the price does not revert by itself). ``oi``: total log change of open
            interest, a ramp that stays. ``basis_bps``: added to the mark-vs-oracle basis while
            active. ``funding``: added to the hourly funding rate while active. ``volume``:
            multiplier of traded notional. ``trades``: multiplier of prints per minute.
            ``buy_share``: taker-buy share of the prints (otherwise about 0.5). ``spread``,
            ``depth``: multipliers of the quoted spread and of resting size. ``silence`` (1.0):
            no trades, BBO or book updates (one last BBO and book at the start of the silence
            show the collapsed depth); the context poll goes on. ``noise``: multiplier of the
            asset's own second-by-second price moves (market factor and idiosyncratic), applied
            before any ``ret`` ramp (0.05 pins the price).
        value: The amount, in the channel's unit above.
        target: ``leader`` (asset 0), ``follower`` (asset 1), ``thin`` (the last asset, the
            smallest by traded notional), ``followers`` (every asset but 0), ``all``, or an
            asset index.
        start_min: First affected minute, relative to the injection minute (may be negative).
        minutes: How many minutes it lasts.
    """

    channel: Channel
    value: float
    target: Target = "follower"
    start_min: int = 0
    minutes: int = 1


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, injected market pattern.

    Attributes:
        name: The key in :data:`SCENARIOS`.
        doc: One paragraph: what is injected, into which assets.
        detectors: Detector ids (spec 002 Appendix B) the pattern must trigger.
        when: On which bars, relative to the injection minute ``m`` (the 1m bar labelled
            ``t`` covers ``[t-60s, t)``, so minute ``m`` is the bar closing at ``m+1``).
        effects: What is injected.
        suppressed: Detectors whose raw trigger may look met but which the data-quality or
            illiquidity guards (spec 002 §8.3, §8.7) must hold back.
        min_assets: The smallest universe the scenario makes sense for.
    """

    name: str
    doc: str
    detectors: tuple[str, ...]
    when: str
    effects: tuple[Effect, ...] = ()
    suppressed: tuple[str, ...] = ()
    min_assets: int = 2

    def span(self) -> tuple[int, int]:
        """Return ``(first, end)``: the injected minutes relative to the injection minute."""
        if not self.effects:
            return (0, 0)
        first = min(e.start_min for e in self.effects)
        return (first, max(e.start_min + e.minutes for e in self.effects))


def target_indices(target: Target, assets: int) -> tuple[int, ...]:
    """Return the asset indices a target names in a universe of ``assets`` assets."""
    if isinstance(target, int):
        return (min(target, assets - 1),)
    if target == "leader":
        return (0,)
    if target == "follower":
        return (min(1, assets - 1),)
    if target == "thin":
        return (assets - 1,)
    if target == "followers":
        return tuple(range(1, assets))
    return tuple(range(assets))


def _s(
    name: str,
    doc: str,
    detectors: tuple[str, ...],
    when: str,
    *effects: Effect,
    suppressed: tuple[str, ...] = (),
    min_assets: int = 2,
) -> Scenario:
    return Scenario(name, doc, detectors, when, effects, suppressed, min_assets)


_M5 = "5m windows ending at about m+2..m+6 (while the 5-minute ramp is inside the window)"

_ALL: tuple[Scenario, ...] = (
    _s(
        "calm",
        "No injection: regime-switching baseline for every asset.",
        (),
        "never",
        min_assets=1,
    ),
    _s(
        "volume_spike",
        "SYN01 trades 12x its notional (more and larger prints) for 2 minutes; price unchanged.",
        (VOL_SPIKE,),
        "1m bars of minutes m and m+1",
        Effect("volume", 12.0, minutes=2),
    ),
    _s(
        "price_spike_up",
        "SYN01 mid ramps +3% within one minute on 3x volume, and stays there.",
        (PRICE_SPIKE_UP,),
        "1m bar of minute m",
        Effect("ret", 0.03),
        Effect("volume", 3.0),
    ),
    _s(
        "price_spike_down",
        "SYN01 mid ramps -3% within one minute on 3x volume, and stays there.",
        (PRICE_SPIKE_DOWN,),
        "1m bar of minute m",
        Effect("ret", -0.03),
        Effect("volume", 3.0),
    ),
    _s(
        "oi_build_long",
        "SYN01 trend build: price +1.5% and open interest +3.5% over 5 minutes, 2x volume.",
        (PRICE_UP_OI_UP, OI_SPIKE_UP),
        _M5,
        Effect("ret", 0.015, minutes=5),
        Effect("oi", 0.035, minutes=5),
        Effect("volume", 2.0, minutes=5),
        Effect("buy_share", 0.6, minutes=5),
    ),
    _s(
        "oi_build_short",
        "SYN01 trend-down build: price -1.5% and open interest +3.5% over 5 minutes.",
        (PRICE_DOWN_OI_UP, OI_SPIKE_UP),
        _M5,
        Effect("ret", -0.015, minutes=5),
        Effect("oi", 0.035, minutes=5),
        Effect("volume", 2.0, minutes=5),
        Effect("buy_share", 0.4, minutes=5),
    ),
    _s(
        "short_squeeze",
        "SYN01 short squeeze: price +2% while open interest falls 4% over 4 minutes, taker buys"
        " dominate, 3x volume.",
        (PRICE_UP_OI_DOWN, OI_SPIKE_DOWN),
        _M5,
        Effect("ret", 0.02, minutes=4),
        Effect("oi", -0.04, minutes=4),
        Effect("volume", 3.0, minutes=4),
        Effect("buy_share", 0.72, minutes=4),
    ),
    _s(
        "long_liquidation",
        "SYN01 long cascade: price -2.5% while open interest falls 5% over 4 minutes, taker sells"
        " dominate, 4x volume, spread 2x, depth halves (the liquidation-cluster proxy may fire).",
        (PRICE_DOWN_OI_DOWN, OI_SPIKE_DOWN),
        _M5,
        Effect("ret", -0.025, minutes=4),
        Effect("oi", -0.05, minutes=4),
        Effect("volume", 4.0, minutes=4),
        Effect("buy_share", 0.25, minutes=4),
        Effect("spread", 2.0, minutes=4),
        Effect("depth", 0.5, minutes=4),
    ),
    _s(
        "spread_blowout",
        "SYN01 quoted spread widens 6x (below the 15x illiquidity cap) and depth drops to 30%"
        " for 3 minutes.",
        (SPREAD_STRESS,),
        "1m bars of minutes m..m+2",
        Effect("spread", 6.0, minutes=3),
        Effect("depth", 0.3, minutes=3),
    ),
    _s(
        "basis_jolt",
        "SYN01 mark (and mid) run 40 bps over the oracle for 6 minutes while open interest eases"
        " 0.3%: a premium without OI confirmation.",
        (BASIS_JOLT, PREMIUM_NO_OI),
        "5m basis windows ending at about m+2..m+8",
        Effect("basis_bps", 40.0, minutes=6),
        Effect("oi", -0.003, minutes=6),
    ),
    _s(
        "funding_jolt",
        "SYN01 hourly funding rate jumps by +15 bps (0.0015/h) for 60 minutes.",
        (FUNDING_JOLT,),
        "1m bars from minute m while the rate is >= 10 bps/h above its value an hour earlier",
        Effect("funding", 0.0015, minutes=60),
    ),
    _s(
        "absorption",
        "SYN01 price lifts +1% over 5 minutes while taker sells dominate (buy share 0.25) on"
        " 3x volume: CVD falls as price rises.",
        (PRICE_UP_CVD_DOWN,),
        _M5,
        Effect("ret", 0.01, minutes=5),
        Effect("buy_share", 0.25, minutes=5),
        Effect("volume", 3.0, minutes=5),
    ),
    _s(
        "dead_book",
        "SYN01 book dies for 5 minutes: one last BBO and book at the start of minute m with 3x"
        " spread and 5% depth, then no BBO, book or trades; the context poll continues.",
        (),
        "never: minutes m..m+4 are stale (book_staleness_ms > 3000, no trades, no BBO)",
        Effect("silence", 1.0, minutes=5),
        Effect("depth", 0.05, minutes=5),
        Effect("spread", 3.0, minutes=5),
        suppressed=(SPREAD_STRESS, PRICE_SPIKE_UP, PRICE_SPIKE_DOWN),
    ),
    _s(
        "low_liquidity_false_spike",
        "The thin asset (last) jumps +4% in one minute, trades there for a minute on a few tiny"
        " prints (quote volume far under the 1e4 v_min floor), then gives it back.",
        (),
        "never: the illiquidity guard (v_total_m_1 < v_min) holds the spikes of minutes m..m+2",
        Effect("ret", 0.04, "thin"),
        Effect("ret", -0.04, "thin", start_min=2),
        Effect("volume", 0.01, "thin", minutes=3),
        Effect("trades", 0.1, "thin", minutes=3),
        Effect("depth", 0.3, "thin", minutes=3),
        suppressed=(PRICE_SPIKE_UP, PRICE_SPIKE_DOWN),
    ),
    _s(
        "basket_shock",
        "Every asset drops 3% in the same minute on 8x volume with taker sells dominating.",
        (PRICE_SPIKE_DOWN, VOL_SPIKE, BASKET_SHOCK),
        "1m bar of minute m (all spikes close together, inside the 5 s shock window)",
        Effect("ret", -0.03, "all"),
        Effect("volume", 8.0, "all"),
        Effect("buy_share", 0.3, "all"),
        Effect("spread", 1.5, "all"),
        min_assets=4,
    ),
    _s(
        "accumulation",
        "SYN01 is absorbed: its price is pinned (5% of its usual moves) for 8 minutes while taker"
        " buys dominate (buy share 0.8) on 2x volume: CVD climbs, price does not.",
        (PRICE_FLAT_CVD_TREND,),
        "5m windows ending at about m+4..m+8 (flat price, CVD slope over the window)",
        Effect("noise", 0.05, minutes=8),
        Effect("buy_share", 0.8, minutes=8),
        Effect("volume", 2.0, minutes=8),
    ),
    _s(
        "leader_cooling",
        "The leader runs hot for 15 minutes (+1.5%, 2.5x volume), then cools in two steps: flat"
        " on its usual volume for 15 minutes, then -1% on 0.4x volume for 15 more; meanwhile every"
        " follower climbs +1% and then +2% (1.5x, then 2.5x volume). Two falling 15m bars of the"
        " leader against two rising bars of the followers' RS.",
        (LEADER_COOLING,),
        "the 15m bar closing at m+30 (buckets m-15..m-1, m..m+14, m+15..m+29)",
        Effect("ret", 0.015, "leader", start_min=-15, minutes=15),
        Effect("volume", 2.5, "leader", start_min=-15, minutes=15),
        Effect("ret", -0.01, "leader", start_min=15, minutes=15),
        Effect("volume", 0.4, "leader", start_min=15, minutes=15),
        Effect("ret", 0.01, "followers", minutes=15),
        Effect("volume", 1.5, "followers", minutes=15),
        Effect("ret", 0.02, "followers", start_min=15, minutes=15),
        Effect("volume", 2.5, "followers", start_min=15, minutes=15),
        Effect("buy_share", 0.58, "followers", minutes=30),
    ),
    _s(
        "sector_rotation",
        "Sectors as in SYNTHETIC_SECTORS. The major sector (assets 0 and 1) leads for 15 minutes"
        " (+1.2% each, 2x volume); then it falls -1.2% over 15 minutes while defi and meme (assets"
        " 2 and 3) climb +1.5% on 2x volume: the former top sector drops to the bottom.",
        (SECTOR_FLIP,),
        "the 15m bar closing at m+15 (buckets m-15..m-1 and m..m+14)",
        Effect("ret", 0.012, "leader", start_min=-15, minutes=15),
        Effect("ret", 0.012, "follower", start_min=-15, minutes=15),
        Effect("volume", 2.0, "leader", start_min=-15, minutes=15),
        Effect("volume", 2.0, "follower", start_min=-15, minutes=15),
        Effect("ret", -0.012, "leader", minutes=15),
        Effect("ret", 0.015, "followers", minutes=15),
        Effect("ret", -0.027, "follower", minutes=15),
        Effect("volume", 2.0, "followers", minutes=15),
        min_assets=4,
    ),
)


def _shifted(name: str, shift: int, target: Target | None = None) -> tuple[Effect, ...]:
    """Return a scenario's effects moved ``shift`` minutes later (and onto ``target``)."""
    base = next(s for s in _ALL if s.name == name)
    return tuple(
        Effect(
            e.channel,
            e.value,
            e.target if target is None else target,
            e.start_min + shift,
            e.minutes,
        )
        for e in base.effects
    )


#: One run in which every detector of Appendix B fires, for the end-to-end test on the real
#: broker (one pipeline run instead of one per scenario). Timeline relative to the injection
#: minute m: the rotation of ``leader_cooling`` and ``sector_rotation`` together over m-15..m+29;
#: then three slots of single-asset patterns, each on a different asset so no minute has every
#: asset spiking; the basket shock last.
#: Minutes a catalogue run needs with m = 45 (the basket shock at m + 67 and its 5m windows).
CATALOGUE_MINUTES = 120
CATALOGUE_SLOTS: tuple[tuple[int, tuple[tuple[str, Target], ...]], ...] = (
    (31, (("oi_build_long", 1), ("volume_spike", 2), ("spread_blowout", 0))),
    (43, (("short_squeeze", 1), ("basis_jolt", 2), ("absorption", 3), ("funding_jolt", 0))),
    (55, (("long_liquidation", 1), ("oi_build_short", 2), ("accumulation", 3))),
    (67, (("basket_shock", "all"),)),
)
_ALL = (
    *_ALL,
    Scenario(
        "catalogue",
        "Every detector in one run (4 assets, about 120 minutes with m = 45): the rotation of"
        " leader_cooling and sector_rotation, then volume_spike, oi_build_long, spread_blowout,"
        " short_squeeze, basis_jolt, absorption, funding_jolt, long_liquidation, oi_build_short,"
        " accumulation on single assets (CATALOGUE_SLOTS), then a basket_shock.",
        tuple(sorted({d for s in _ALL for d in s.detectors})),
        "rotation at m+14 and m+29; each slot's pattern within about 15 minutes of its start",
        (
            *_shifted("leader_cooling", 0),
            # The sector flip's moves of assets 1..3 only: the leader cools as in leader_cooling.
            *(e for e in _shifted("sector_rotation", 0) if e.target != "leader"),
            # The flip lifts defi and meme in m..m+14: the followers must climb harder after.
            Effect("ret", 0.02, "followers", start_min=15, minutes=15),
            *(
                e
                for shift, slot in CATALOGUE_SLOTS
                for name, target in slot
                for e in _shifted(name, shift, target)
            ),
        ),
        min_assets=4,
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _ALL}

#: Short names used by spec 002 §16.3 and the command line, mapped to scenario keys.
ALIASES: dict[str, str] = {
    "squeeze": "short_squeeze",
    "cascade": "long_liquidation",
    "spread_stress": "spread_blowout",
    "false_spike": "low_liquidity_false_spike",
    "rotation": "leader_cooling",
    "sector_flip": "sector_rotation",
}


def get(name: str) -> Scenario:
    """Return the scenario called ``name`` (a key of :data:`SCENARIOS` or of :data:`ALIASES`).

    Raises:
        UnknownScenarioError: No scenario or alias has that name.
    """
    key = ALIASES.get(name, name)
    if key not in SCENARIOS:
        known, aliases = ", ".join(sorted(SCENARIOS)), ", ".join(sorted(ALIASES))
        raise UnknownScenarioError(
            f"unknown scenario {name!r}; known: {known} (aliases: {aliases})"
        )
    return SCENARIOS[key]
