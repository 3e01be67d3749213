"""Every synthetic scenario through the lattice: its feature signature on the injected minutes.

A small universe (4 assets, 77 minutes, seed 7: a calm regime throughout, so the baselines see
only the injection) runs through the :class:`TopologyTestDriver` with a pack whose baselines warm
up after 30 samples; the injection is at minute 45. Every scenario equals ``calm`` before its
first injected minute (the earliest is minute 30), so ``calm``'s first 30 minutes run once and
each scenario continues from a copy of the stores (a restart, which must not change anything).
Minute ``k`` below is the 1m bar labelled ``start + (k + 1) min``; SYN00 is the leader, SYN01 the
default target, SYN03 the thinnest asset.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from connectors.synthetic.generator import DEFAULT_START_TS, generate
from connectors.synthetic.scenarios import SCENARIOS
from schemas.raw import RawValue
from state.memory import MemoryStore
from state.store import KeyValueStore
from tests.kit.lattice import small_pack
from topology.driver import TopologyTestDriver

ASSETS, MINUTES, SEED, M = 4, 77, 7, 45
PACK = small_pack(min_samples=30)
FORK_TS = DEFAULT_START_TS + (M - 15) * 60_000  # before any scenario's first injected minute
LEADER, TARGET, THIN = "SYN00", "SYN01", "SYN03"
SYMBOLS = ("SYN00", "SYN01", "SYN02", "SYN03")

Row = dict[str, Any]


def label(minute: int) -> int:
    """Return the label of the bar of ``minute`` of the run."""
    return DEFAULT_START_TS + (minute + 1) * 60_000


def _copy(stores: dict[str, KeyValueStore]) -> dict[str, KeyValueStore]:
    out: dict[str, KeyValueStore] = {}
    for name, store in stores.items():
        copy = MemoryStore(name)
        copy.apply(dict(store.scan()))
        out[name] = copy
    return out


def _driver(stores: dict[str, KeyValueStore] | None = None) -> TopologyTestDriver:
    return TopologyTestDriver(PACK, stores, partitions=2, flush_every=10_000)


def _values(name: str) -> list[RawValue]:
    return list(generate(name, assets=ASSETS, minutes=MINUTES, seed=SEED, inject_at_minute=M))


@dataclass
class Run:
    """The lattice rows of one scenario run (the shared calm prefix included)."""

    rows: list[Row]

    def row(self, symbol: str, minute: int, tf: str = "m1") -> Row:
        found = [
            r
            for r in self.rows
            if r["symbol"] == symbol and r["tf"] == tf and r["exchange_ts"] == label(minute)
        ]
        assert found, (symbol, minute, tf)
        return max(found, key=lambda r: int(r["revision"]))

    def col(self, symbol: str, column: str, minutes: range) -> list[Any]:
        return [self.row(symbol, k)[column] for k in minutes]


class Runs:
    """Scenario runs, computed on first use and kept for the module."""

    def __init__(self) -> None:
        self.calm = _values("calm")
        self.cut = bisect.bisect_left([v["ingest_ts"] for v in self.calm], FORK_TS)
        base = _driver()
        base.pipe_stream(self.calm[: self.cut])
        base.flush()
        self.prefix_rows = [s.value for s in base.read("lattice.v0", rows_only=True)]
        self.stores = base.stores
        self._runs: dict[str, Run] = {}

    def __getitem__(self, name: str) -> Run:
        if name not in self._runs:
            values = _values(name)
            assert values[: self.cut] == self.calm[: self.cut], "the prefix must be calm's"
            d = _driver(_copy(self.stores))
            d.pipe_stream(values[self.cut :])
            assert d.dead_letters == []
            rows = [s.value for s in d.read("lattice.v0", rows_only=True)]
            self._runs[name] = Run(self.prefix_rows + rows)
        return self._runs[name]


@pytest.fixture(scope="module")
def runs() -> Runs:
    return Runs()


# --------------------------------------------------------------------------- the signatures


def calm(run: Run) -> None:
    m1 = [r for r in run.rows if r["tf"] == "m1"]
    for sym in SYMBOLS:
        assert sorted(r["exchange_ts"] for r in m1 if r["symbol"] == sym) == [
            label(k) for k in range(MINUTES - 1)
        ]
    assert {r["dq_status"] for r in m1} == {"ok"}
    assert not any(r["illiquidity_hit"] for r in m1)
    assert not any(r["is_oi_spike_up_m_5"] or r["is_oi_spike_down_m_5"] for r in m1)
    warm = [r for r in m1 if not r["warmup"]]
    assert len(warm) > 100
    for col in ("z_vol_m_1", "z_ret_abs_m_1", "z_oi_roc_m_5", "z_spread_m_1", "z_basis_m_5"):
        assert max(abs(r[col]) for r in warm) < 8, col
    # §15.5 on realistic data: the 15m bar is the exact fold of its minutes, the hour of its
    # quarters
    for sym in SYMBOLS:
        for end in (14, 29, 44, 59, 74):
            parts = [run.row(sym, k) for k in range(end - 14, end + 1)]
            total = 0.0
            for p in parts:
                total += p["v_total_m_1"]
            bar = run.row(sym, end, "m15")
            assert bar["v_total_m_1"] == total
            assert bar["trade_count_m_1"] == sum(p["trade_count_m_1"] for p in parts)
            assert bar["dq_status"] == "ok"
        quarters = [run.row(sym, end, "m15")["v_total_m_1"] for end in (14, 29, 44, 59)]
        hour = 0.0
        for q in quarters:
            hour += q
        assert run.row(sym, 59, "h1")["v_total_m_1"] == hour


def volume_spike(run: Run) -> None:
    for k in (M, M + 1):
        r = run.row(TARGET, k)
        assert r["is_vol_spike_m_1"] is True
        assert r["z_vol_m_1"] >= 10
        assert abs(r["z_ret_abs_m_1"]) < 2.5  # the price did not move
        assert (r["is_price_spike_up_m_1"], r["is_price_spike_down_m_1"]) == (False, False)
        for other in set(SYMBOLS) - {TARGET}:
            assert run.row(other, k)["is_vol_spike_m_1"] is False
    assert run.col(TARGET, "is_vol_spike_m_1", range(M - 3, M)) == [False] * 3


def _price_spike(run: Run, sign: int) -> None:
    hit, miss = ("is_price_spike_up_m_1", "is_price_spike_down_m_1")[::sign]
    r = run.row(TARGET, M)
    assert 0.02 < sign * r["ret_m_1"] < 0.04
    assert r["z_ret_abs_m_1"] >= 2.5
    assert (r[hit], r[miss]) == (True, False)
    after = run.row(TARGET, M + 1)  # the price stays: no second spike
    assert abs(after["ret_m_1"]) < 0.005
    assert (after[hit], after[miss]) == (False, False)
    assert run.row(TARGET, M - 1)[hit] is False


def price_spike_up(run: Run) -> None:
    _price_spike(run, 1)


def price_spike_down(run: Run) -> None:
    _price_spike(run, -1)


def _oi_move(run: Run, *, oi_sign: int, price_sign: int, roc: float, ret: float) -> None:
    flag, other = ("is_oi_spike_up_m_5", "is_oi_spike_down_m_5")[::oi_sign]
    assert run.col(TARGET, flag, range(M + 2, M + 7)) == [True] * 5  # windows ending m+2..m+6
    assert not any(run.col(TARGET, other, range(M - 5, MINUTES - 1)))
    before = run.row(TARGET, M - 1)
    assert before[flag] is False
    assert abs(before["oi_roc_m_5"]) < 0.002
    peak = run.row(TARGET, M + 4)  # the five minutes of the ramp
    assert oi_sign * peak["oi_roc_m_5"] > roc
    assert oi_sign * peak["z_oi_roc_m_5"] >= 2
    assert price_sign * peak["ret_m_5"] > ret
    assert peak["oi_staleness_ms"] <= 20_000


def oi_build_long(run: Run) -> None:
    _oi_move(run, oi_sign=1, price_sign=1, roc=0.03, ret=0.01)


def oi_build_short(run: Run) -> None:
    _oi_move(run, oi_sign=1, price_sign=-1, roc=0.03, ret=0.01)


def short_squeeze(run: Run) -> None:
    _oi_move(run, oi_sign=-1, price_sign=1, roc=0.035, ret=0.015)
    assert all(d > 0 for d in run.col(TARGET, "cvd_delta_m_1", range(M, M + 4)))


def long_liquidation(run: Run) -> None:
    _oi_move(run, oi_sign=-1, price_sign=-1, roc=0.045, ret=0.02)
    assert all(d < 0 for d in run.col(TARGET, "cvd_delta_m_1", range(M, M + 4)))
    assert all(z >= 2 for z in run.col(TARGET, "z_spread_m_1", range(M, M + 4)))
    depth = run.col(TARGET, "depth_top5_quote_median_m_1", range(M - 1, M + 4))
    assert all(d < 0.75 * depth[0] for d in depth[1:])


def spread_blowout(run: Run) -> None:
    before = run.row(TARGET, M - 1)
    for k in range(M, M + 3):
        r = run.row(TARGET, k)
        assert r["is_spread_stress_m_1"] is True
        assert r["z_spread_m_1"] >= 2
        assert r["spread_mean_m_1"] > 4 * before["spread_mean_m_1"]
        assert r["depth_top5_quote_median_m_1"] < 0.5 * before["depth_top5_quote_median_m_1"]
        assert r["illiquidity_hit"] is False  # 6x is under the 15x cap
        for other in set(SYMBOLS) - {TARGET}:
            assert run.row(other, k)["is_spread_stress_m_1"] is False
    assert run.row(TARGET, M + 3)["is_spread_stress_m_1"] is False


def basis_jolt(run: Run) -> None:
    assert abs(run.row(TARGET, M - 1)["z_basis_m_5"]) < 2.5
    for k in range(M + 2, M + 9):  # 5m basis windows ending m+2..m+8
        r = run.row(TARGET, k)
        assert abs(r["z_basis_m_5"]) >= 2.5
        assert abs(r["oi_roc_m_5"]) < 0.005  # a premium without OI confirmation
    full = run.row(TARGET, M + 4)  # all five minutes of the window carry the jolt
    assert 30 < full["basis_bp_m_5"] - run.row(TARGET, M - 1)["basis_bp_m_5"] < 50


def funding_jolt(run: Run) -> None:
    before = run.row(TARGET, M - 1)["funding_h_1"]
    assert before < 1e-4
    for f in run.col(TARGET, "funding_h_1", range(M, MINUTES - 1)):
        assert f - before > 0.0014  # 15 bp per hour, read as an hourly rate
    for other in set(SYMBOLS) - {TARGET}:
        assert run.row(other, M + 5)["funding_h_1"] < 1e-4


def absorption(run: Run) -> None:
    assert all(d < 0 for d in run.col(TARGET, "cvd_delta_m_1", range(M, M + 5)))
    for k in range(M + 2, M + 6):
        r = run.row(TARGET, k)
        assert r["ret_m_5"] > 0.005  # price up ...
        assert r["cvd_slope_m_5"] < 0  # ... while CVD falls


def dead_book(run: Run) -> None:
    learned = run.row(TARGET, M - 1)["b_mean_spread"]
    for k in range(M, M + 5):
        r = run.row(TARGET, k)
        assert r["dq_status"] == "stale"
        assert "book_stale" in r["dq_reasons"]
        assert r["book_staleness_ms"] > 3_000
        assert r["trade_count_m_1"] == 0
        # the raw triggers look met, the DQ gate holds the flags
        assert r["z_spread_m_1"] >= 2
        assert r["is_spread_stress_m_1"] is False
        assert (r["is_price_spike_up_m_1"], r["is_price_spike_down_m_1"]) == (False, False)
        assert r["b_mean_spread"] == learned  # stale minutes do not move baselines
    for k in range(M + 1, M + 5):  # no BBO, book or trade at all
        r = run.row(TARGET, k)
        assert {"no_data", "l2_missing"} <= set(r["dq_reasons"])
        assert (r["obi_top5_mean_m_1"], r["depth_top5_quote_median_m_1"]) == (None, None)
    assert run.row(TARGET, M + 5)["dq_status"] == "ok"


def low_liquidity_false_spike(run: Run) -> None:
    for k, sign, flag in ((M, 1, "is_price_spike_up_m_1"), (M + 2, -1, "is_price_spike_down_m_1")):
        r = run.row(THIN, k)
        assert sign * r["ret_m_1"] > 0.03
        assert r["z_ret_abs_m_1"] >= 2.5
        assert r["v_total_m_1"] < 1e4
        assert r["dq_status"] == "ok"
        assert r["illiquidity_hit"] is True
        assert r[flag] is False


def basket_shock(run: Run) -> None:
    for sym in SYMBOLS:
        r = run.row(sym, M)
        assert r["ret_m_1"] < -0.02
        assert r["is_price_spike_down_m_1"] is True
        assert r["is_vol_spike_m_1"] is True
        assert r["cvd_delta_m_1"] < 0


def _ret15(run: Run, sym: str, end: int) -> float:
    value: float = run.row(sym, end, "m15")["ret_m_1"]
    return value


def _vol15(run: Run, sym: str, end: int) -> float:
    value: float = run.row(sym, end, "m15")["v_total_m_1"]
    return value


def leader_cooling(run: Run) -> None:
    followers = [s for s in SYMBOLS if s != LEADER]
    hot, flat, cold = M - 1, M + 14, M + 29  # the 15m bars of m-15.., m.., m+15..
    assert _ret15(run, LEADER, hot) > 0.01
    assert all(_ret15(run, f, hot) < _ret15(run, LEADER, hot) for f in followers)
    assert _ret15(run, LEADER, cold) < -0.005
    # The leader cools in two steps: its volume falls bar after bar.
    assert _vol15(run, LEADER, hot) > 1.5 * _vol15(run, LEADER, flat)
    assert _vol15(run, LEADER, flat) > 1.5 * _vol15(run, LEADER, cold)
    for end in (flat, cold):  # followers climb while the leader rests, then falls
        assert all(_ret15(run, f, end) > _ret15(run, LEADER, end) for f in followers)
        assert sum(_ret15(run, f, end) for f in followers) / len(followers) > 0.005
    assert sum(_ret15(run, f, cold) for f in followers) > sum(
        _ret15(run, f, flat) for f in followers
    )


def sector_rotation(run: Run) -> None:
    major, others = ("SYN00", "SYN01"), ("SYN02", "SYN03")
    lead, after = M - 1, M + 14
    assert min(_ret15(run, s, lead) for s in major) > max(_ret15(run, s, lead) for s in others)
    assert max(_ret15(run, s, after) for s in major) < -0.005
    assert min(_ret15(run, s, after) for s in others) > 0.01


def catalogue(run: Run) -> None:
    # The rotation of leader_cooling, with the sector flip: major (SYN00, SYN01) tops the
    # 15m bar before m and is the bottom sector of the next one; defi and meme climb.
    hot, flat, cold = M - 1, M + 14, M + 29
    assert _ret15(run, LEADER, hot) > 0.01 > 0 > _ret15(run, LEADER, cold)
    assert (
        _vol15(run, LEADER, hot) > 1.5 * _vol15(run, LEADER, flat) > 2.2 * _vol15(run, LEADER, cold)
    )
    assert _ret15(run, "SYN01", flat) < min(_ret15(run, s, flat) for s in ("SYN02", "SYN03"))
    assert all(_ret15(run, s, cold) > 0.02 for s in ("SYN01", "SYN02", "SYN03"))
    # The single-asset slots start at m+31, past this run: tests/golden checks what they fire.


def accumulation(run: Run) -> None:
    for k in range(M + 4, M + 8):
        r = run.row(TARGET, k)
        assert abs(r["ret_m_5"]) < 0.001  # the price is pinned ...
        assert r["cvd_slope_m_5"] > 0.2 * r["v_total_m_1"]  # ... while taker buys pile up
        assert r["cvd_delta_m_1"] > 0


SIGNATURES: dict[str, Callable[[Run], None]] = {
    "calm": calm,
    "volume_spike": volume_spike,
    "price_spike_up": price_spike_up,
    "price_spike_down": price_spike_down,
    "oi_build_long": oi_build_long,
    "oi_build_short": oi_build_short,
    "short_squeeze": short_squeeze,
    "long_liquidation": long_liquidation,
    "spread_blowout": spread_blowout,
    "basis_jolt": basis_jolt,
    "funding_jolt": funding_jolt,
    "absorption": absorption,
    "dead_book": dead_book,
    "low_liquidity_false_spike": low_liquidity_false_spike,
    "basket_shock": basket_shock,
    "leader_cooling": leader_cooling,
    "sector_rotation": sector_rotation,
    "accumulation": accumulation,
    "catalogue": catalogue,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_signature(runs: Runs, name: str) -> None:
    assert name in SIGNATURES, f"scenario {name!r} has no feature signature here"
    SIGNATURES[name](runs[name])


def test_signatures_cover_exactly_the_scenarios() -> None:
    assert set(SIGNATURES) == set(SCENARIOS)


def test_forked_run_equals_a_whole_run(runs: Runs) -> None:
    whole = _driver()
    whole.pipe_stream(runs.calm)
    rows = [s.value for s in whole.read("lattice.v0", rows_only=True)]
    key = ("asset_uid", "tf", "exchange_ts", "revision")
    forked = {tuple(r[k] for k in key): r for r in runs["calm"].rows}
    assert len(forked) == len(rows)
    # the row that crossed the fork may be sealed by another record (its ingest_ts differs)
    drop = ("ingest_ts", "ingest_lag_ms")
    for r in rows:
        other = forked[tuple(r[k] for k in key)]
        assert {k: v for k, v in r.items() if k not in drop} == {
            k: v for k, v in other.items() if k not in drop
        }
