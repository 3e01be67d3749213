"""The synthetic generator: determinism, ordering, the Avro contract, and every scenario's pattern.

Each scenario test rebuilds per-asset, per-minute aggregates from the raw stream (what the lattice
will compute, roughly) and checks the injected pattern against the asset's own pre-injection
baseline with clear margins; ``calm`` must show none of the patterns anywhere.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from typing import Any

import pytest

from connectors.synthetic import generator
from connectors.synthetic.generator import VENUE, generate, symbols
from connectors.synthetic.scenarios import (
    ALIASES,
    SCENARIOS,
    SyntheticError,
    UnknownScenarioError,
    get,
    target_indices,
)
from schemas import catalog, raw, wire
from schemas.errors import AlphaError
from schemas.ids import asset_uid

ASSETS, MINUTES, SEED = 6, 120, 7
INJECT = generator.default_inject_minute(MINUTES)  # 84
START = generator.DEFAULT_START_TS
LEADER, FOLLOWER, THIN = "SYN00", "SYN01", f"SYN{ASSETS - 1:02d}"


def run(scenario: str, seed: int | None = None) -> Iterator[raw.RawValue]:
    seed = SEED if seed is None else seed
    return generate(scenario, assets=ASSETS, minutes=MINUTES, seed=seed)


# ------------------------------------------------------------------ per-minute aggregates


@dataclass
class Minute:
    """What one asset did in one minute of exchange time."""

    volume: float = 0.0  # quote
    buy: float = 0.0
    sell: float = 0.0
    prints: int = 0
    first_px: float | None = None
    last_px: float | None = None
    high: float = -math.inf
    low: float = math.inf
    spreads_bps: list[float] = field(default_factory=list)
    mid: float | None = None  # last BBO mid
    oi: float | None = None
    funding: float | None = None
    mark: float | None = None
    oracle: float | None = None
    depth: float | None = None  # last book, top-10 both sides, quote
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    digest: Any = field(default_factory=hashlib.sha256)  # of the minute's records, in order

    @property
    def spread_bps(self) -> float:
        return statistics.fmean(self.spreads_bps) if self.spreads_bps else math.nan

    @property
    def basis_bps(self) -> float:
        assert self.mark is not None
        assert self.oracle is not None
        return (self.mark / self.oracle - 1) * 1e4


Table = dict[str, list[Minute]]


def _fold(m: Minute, kind: str, body: dict[str, Any]) -> None:
    if kind == "trades":
        for t in body["trades"]:
            px, notional = float(t["px"]), float(t["px"]) * float(t["sz"])
            m.volume += notional
            if t["side"] == "buy":
                m.buy += notional
            else:
                m.sell += notional
            m.prints += 1
            m.first_px = px if m.first_px is None else m.first_px
            m.last_px, m.high, m.low = px, max(m.high, px), min(m.low, px)
    elif kind == "bbo":
        bid, ask = float(body["bid_px"]), float(body["ask_px"])
        m.mid = (bid + ask) / 2
        m.spreads_bps.append((ask - bid) / m.mid * 1e4)
    elif kind == "book":
        levels = body["bids"] + body["asks"]
        m.depth = sum(float(lv["px"]) * float(lv["sz"]) for lv in levels)
    elif kind == "ctx":
        m.oi, m.funding = float(body["open_interest"]), float(body["funding"])
        m.mark, m.oracle = float(body["mark_px"]), float(body["oracle_px"])


@dataclass
class Observed:
    """One pass over a scenario's stream: the table, ordering checks, and Avro samples."""

    table: Table
    digest: str  # of every record, in order
    ingest_sorted: bool
    exchange_sorted_per_asset: bool
    samples: list[raw.RawValue]  # the six minutes from the first injected one


def _observe(scenario: str, seed: int | None = None) -> Observed:
    out: Table = {s: [Minute() for _ in range(MINUTES)] for s in symbols(ASSETS)}
    first = INJECT + get(scenario).span()[0]
    samples: list[raw.RawValue] = []
    last_ingest, last_exchange = 0, dict.fromkeys(out, 0)
    ingest_sorted = exchange_sorted = True
    digest = hashlib.sha256()
    for value in run(scenario, seed):
        minute = (value["exchange_ts"] - START) // 60_000
        m = out[value["symbol"]][minute]
        kind = raw.kind_of(value)
        m.counts[kind] += 1
        text = repr(value).encode()
        m.digest.update(text)
        digest.update(text)
        _fold(m, kind, value["body"])
        if first <= minute < first + 6:
            samples.append(value)
        ingest_sorted &= value["ingest_ts"] >= last_ingest
        exchange_sorted &= value["exchange_ts"] >= last_exchange[value["symbol"]]
        last_ingest, last_exchange[value["symbol"]] = value["ingest_ts"], value["exchange_ts"]
    return Observed(out, digest.hexdigest(), ingest_sorted, exchange_sorted, samples)


observe = cache(_observe)


def table(scenario: str) -> Table:
    return observe(scenario).table


def changed(scenario: str) -> dict[str, list[int]]:
    """The minutes, per asset, whose records differ from calm's."""
    mine, calm = table(scenario), table("calm")
    out = {
        s: [m for m in range(MINUTES) if rows[m].digest.digest() != calm[s][m].digest.digest()]
        for s, rows in mine.items()
    }
    return {s: minutes for s, minutes in out.items() if minutes}


def carry(rows: list[Minute], attr: str) -> list[float]:
    """The last known value of ``attr`` at each minute's close (carried over empty minutes)."""
    out, last = [], math.nan
    for row in rows:
        value = getattr(row, attr)
        last = last if value is None else value
        out.append(last)
    return out


def ret(rows: list[Minute], a: int, b: int) -> float:
    """Mid return from the close of minute ``a - 1`` to the close of minute ``b - 1``."""
    mids = carry(rows, "mid")
    return mids[b - 1] / mids[a - 1] - 1


def oi_roc(rows: list[Minute], a: int, b: int) -> float:
    ois = carry(rows, "oi")
    return ois[b - 1] / ois[a - 1] - 1


def baseline(values: list[float], end: int | None = None, n: int = 60) -> float:
    """The median over the ``n`` minutes before ``end`` (default: the injection minute)."""
    end = INJECT if end is None else end
    return statistics.median(values[end - n : end])


def volumes(rows: list[Minute]) -> list[float]:
    return [r.volume for r in rows]


def abs_returns(rows: list[Minute], width: int = 1) -> list[float]:
    return [abs(ret(rows, m - width + 1, m + 1)) if m >= width else 0.0 for m in range(MINUTES)]


# ------------------------------------------------------------------ contract and determinism


def test_records_are_md_raw_values_of_the_synthetic_venue():
    uids = {s: asset_uid(VENUE, "perp", s) for s in symbols(ASSETS)}
    kinds = set()
    for value in observe("calm").samples:
        assert value["source"] == "synthetic"
        assert value["venue"] == VENUE == "synthetic"
        assert value["asset_uid"] == uids[value["symbol"]]
        assert START <= value["exchange_ts"] < START + MINUTES * 60_000
        assert 150 <= value["ingest_ts"] - value["exchange_ts"] < 2_000
        kinds.add(raw.kind_of(value))
    assert kinds == {"trades", "bbo", "book", "ctx"}


def test_symbols_and_the_default_injection_minute():
    assert symbols(3) == ("SYN00", "SYN01", "SYN02")
    assert generator.default_inject_minute(300) == 240
    assert INJECT == 84


def test_same_arguments_give_the_same_records_and_another_seed_differs():
    assert _observe("basket_shock").digest == observe("basket_shock").digest
    first = list(islice(run("calm"), 2_000))
    assert first == list(islice(run("calm"), 2_000))
    assert first != list(islice(run("calm", SEED + 1), 2_000))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ingest_ts_never_goes_back_and_each_asset_keeps_exchange_order(scenario):
    assert observe(scenario).ingest_sorted
    assert observe(scenario).exchange_sorted_per_asset


@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - {"calm"}))
def test_a_scenario_changes_only_its_targets_from_its_first_injected_minute(scenario):
    sc = get(scenario)
    diff = changed(scenario)
    assert min(m for minutes in diff.values() for m in minutes) == INJECT + sc.span()[0]
    names = symbols(ASSETS)
    assert set(diff) == {names[i] for e in sc.effects for i in target_indices(e.target, ASSETS)}


def test_every_record_round_trips_through_the_avro_codec():
    codec = wire.AvroCodec(catalog.load("md.raw.v0").parsed, 1)
    samples = [v for name in SCENARIOS for v in observe(name).samples]
    assert {raw.kind_of(v) for v in samples} == {"trades", "bbo", "book", "ctx"}
    for value in samples:
        assert codec.decode(codec.encode(value)) == value


def test_prices_and_sizes_are_fixed_point_decimal_strings():
    places: dict[tuple[str, str], set[int]] = defaultdict(set)
    for value in observe("calm").samples:
        body = value["body"]
        pairs = [("px", t["px"]) for t in body.get("trades", [])]
        pairs += [(k, body[k]) for k in ("bid_px", "ask_px", "mark_px", "oracle_px") if k in body]
        pairs += [("sz", t["sz"]) for t in body.get("trades", [])]
        for kind, text in pairs:
            assert text.replace(".", "", 1).isdigit(), text
            places[value["symbol"], kind].add(len(text.partition(".")[2]))
    assert all(len(found) == 1 for found in places.values())
    ctx = next(v["body"] for v in observe("calm").samples if raw.kind_of(v) == "ctx")
    assert ctx["funding_interval_ms"] == 3_600_000
    assert ctx["next_funding_ts"] % 3_600_000 == 0
    assert len(ctx["funding"].partition(".")[2]) == 8


def test_unknown_scenario_is_a_clear_error_listing_the_known_names():
    with pytest.raises(
        UnknownScenarioError, match="known: absorption, accumulation, basis_jolt"
    ) as info:
        generate("nope", assets=2, minutes=5, seed=1)
    assert isinstance(info.value, AlphaError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_ts": START + 1}, "not aligned to a minute"),
        ({"inject_at_minute": 5}, "outside the run"),
        ({"seed": -1}, "seed must be"),
        ({"assets": 0}, "needs assets >= 1"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    args: dict[str, Any] = {"assets": 2, "minutes": 5, "seed": 1} | kwargs
    with pytest.raises(SyntheticError, match=message):
        generate("calm", **args)


def test_aliases_resolve_to_scenarios():
    assert get("squeeze") is SCENARIOS["short_squeeze"]
    assert all(target in SCENARIOS for target in ALIASES.values())


def test_every_scenario_names_its_detectors_and_when():
    for name, sc in SCENARIOS.items():
        assert sc.name == name
        assert sc.doc
        assert sc.when
        quiet = {"calm", "dead_book", "low_liquidity_false_spike"}
        assert bool(sc.detectors) == (name not in quiet)
        classes = {"spike", "shift", "quadrant", "div", "sync", "rot"}
        assert all(d.split(".")[0] in classes for d in sc.detectors + sc.suppressed)


# ------------------------------------------------------------------ the scenarios


def window_sum(rows: list[Minute], attr: Callable[[Minute], float], a: int, b: int) -> float:
    return sum(attr(r) for r in rows[a:b])


def cvd(row: Minute) -> float:
    return row.buy - row.sell


def test_calm_shows_none_of_the_patterns():
    for rows in table("calm").values():
        vol, r1 = volumes(rows), abs_returns(rows)
        spread = [r.spread_bps for r in rows]
        basis = [r.basis_bps for r in rows]
        funding, depth = carry(rows, "funding"), carry(rows, "depth")
        for m in range(60, MINUTES):
            assert vol[m] < 5 * baseline(vol, m)
            assert vol[m] > 1e4
            assert r1[m] < 0.01
            assert spread[m] < 2 * baseline(spread, m)
            assert abs(oi_roc(rows, m - 4, m + 1)) < 0.003
            assert abs(basis[m] - baseline(basis, m)) < 8
            assert abs(funding[m] - funding[m - 60]) < 0.0001
            assert rows[m].counts["bbo"] >= 20
            assert rows[m].counts["book"] >= 5
            assert rows[m].counts["ctx"] >= 5
            assert rows[m].prints >= 1
            assert depth[m] > 0.3 * baseline(depth, m)


def test_volume_spike():
    rows = table("volume_spike")[FOLLOWER]
    vol = volumes(rows)
    for m in (INJECT, INJECT + 1):
        assert vol[m] >= 6 * baseline(vol)
        assert rows[m].prints >= 5
    assert vol[INJECT + 3] < 3 * baseline(vol)
    assert abs(ret(rows, INJECT, INJECT + 2)) < 0.006


@pytest.mark.parametrize(("scenario", "sign"), [("price_spike_up", 1), ("price_spike_down", -1)])
def test_price_spike(scenario, sign):
    rows = table(scenario)[FOLLOWER]
    move = sign * ret(rows, INJECT, INJECT + 1)
    assert move >= 0.02
    usual = abs_returns(rows)[INJECT - 60 : INJECT]
    assert move >= 3 * max(usual)
    assert move >= 10 * statistics.median(usual)
    assert rows[INJECT].volume >= 1.5 * baseline(volumes(rows))
    assert sign * (rows[INJECT].last_px or 0) > sign * (rows[INJECT - 1].last_px or 0)


@pytest.mark.parametrize(
    ("scenario", "price_sign", "oi_sign", "minutes"),
    [
        ("oi_build_long", 1, 1, 5),
        ("oi_build_short", -1, 1, 5),
        ("short_squeeze", 1, -1, 4),
        ("long_liquidation", -1, -1, 4),
    ],
)
def test_price_and_open_interest_quadrants(scenario, price_sign, oi_sign, minutes):
    rows = table(scenario)[FOLLOWER]
    end = INJECT + minutes
    assert price_sign * ret(rows, INJECT, end) >= 0.006  # 2x the 0.3% quadrant threshold
    assert oi_sign * oi_roc(rows, INJECT, end) >= 0.025  # over the 1.5% OI-spike threshold
    before = [abs(oi_roc(rows, m - 4, m + 1)) for m in range(INJECT - 60, INJECT)]
    assert max(before) < 0.005
    flow = window_sum(rows, cvd, INJECT, end) / window_sum(rows, lambda r: r.volume, INJECT, end)
    assert price_sign * flow > 0.05  # takers push the way price goes
    traded = window_sum(rows, lambda r: r.volume, INJECT, end)
    assert traded >= 1.4 * minutes * baseline(volumes(rows))


def test_short_squeeze_and_cascade_are_one_sided():
    squeeze = table("short_squeeze")[FOLLOWER][INJECT : INJECT + 4]
    assert sum(r.buy for r in squeeze) >= 1.5 * sum(r.sell for r in squeeze)
    cascade = table("long_liquidation")[FOLLOWER]
    assert sum(r.sell for r in cascade[INJECT : INJECT + 4]) >= 1.5 * sum(
        r.buy for r in cascade[INJECT : INJECT + 4]
    )
    spread = [r.spread_bps for r in cascade]
    assert statistics.fmean(spread[INJECT : INJECT + 4]) >= 1.5 * baseline(spread)


def test_spread_blowout():
    rows = table("spread_blowout")[FOLLOWER]
    spread = [r.spread_bps for r in rows]
    depth = carry(rows, "depth")
    for m in range(INJECT, INJECT + 3):
        assert spread[m] >= 4 * baseline(spread)
        assert spread[m] < 15 * baseline(spread)  # under the illiquidity spread cap
        assert depth[m] <= 0.5 * baseline(depth)
    assert spread[INJECT + 4] < 2 * baseline(spread)


def test_basis_jolt():
    rows = table("basis_jolt")[FOLLOWER]
    basis = [r.basis_bps for r in rows]
    calm_range = max(abs(b - baseline(basis)) for b in basis[INJECT - 60 : INJECT])
    assert calm_range < 10
    jolt = statistics.fmean(basis[INJECT : INJECT + 6]) - baseline(basis)
    assert jolt >= 30
    assert jolt >= 5 * calm_range
    assert oi_roc(rows, INJECT, INJECT + 6) <= 0  # no OI confirmation
    assert abs(basis[INJECT + 8] - baseline(basis)) < 10


def test_funding_jolt():
    funding = carry(table("funding_jolt")[FOLLOWER], "funding")
    for m in range(INJECT, min(INJECT + 60, MINUTES)):
        assert funding[m] - funding[m - 60] >= 0.001  # 10 bps per hour
    assert max(abs(funding[m] - funding[m - 60]) for m in range(60, INJECT)) < 0.0001


def test_absorption():
    rows = table("absorption")[FOLLOWER]
    assert ret(rows, INJECT, INJECT + 5) >= 0.005
    flow = window_sum(rows, cvd, INJECT, INJECT + 5)
    usual = [abs(window_sum(rows, cvd, m - 5, m)) for m in range(INJECT - 55, INJECT)]
    assert flow < 0
    assert -flow >= 3 * max(usual)


def test_dead_book():
    rows = table("dead_book")[FOLLOWER]
    first = rows[INJECT]
    assert first.counts["bbo"] == 1
    assert first.counts["book"] == 1
    assert first.prints == 0
    assert first.depth is not None
    assert first.depth <= 0.1 * baseline([r.depth or 0.0 for r in rows])
    for row in rows[INJECT + 1 : INJECT + 5]:
        assert row.counts["bbo"] == row.counts["book"] == row.prints == 0
        assert row.counts["ctx"] >= 5  # the REST poll goes on
    assert rows[INJECT + 5].counts["bbo"] >= 20
    assert rows[INJECT + 5].prints >= 1
    # The context's mid is the book's: frozen while the book is dead.
    samples = observe("dead_book").samples
    mids = {v["body"]["mid_px"] for v in samples if _in(v, FOLLOWER, "ctx", 1, 5)}
    assert len(mids) == 1


def _in(value: raw.RawValue, symbol: str, kind: str, a: int, b: int) -> bool:
    minute = (value["exchange_ts"] - START) // 60_000 - INJECT
    return value["symbol"] == symbol and raw.kind_of(value) == kind and a <= minute < b


def test_low_liquidity_false_spike():
    rows = table("low_liquidity_false_spike")[THIN]
    assert ret(rows, INJECT, INJECT + 1) >= 0.03
    assert ret(rows, INJECT, INJECT + 3) < 0.01  # given back
    assert rows[INJECT + 1].low >= 1.03 * (rows[INJECT - 1].last_px or math.inf)
    for m in range(INJECT, INJECT + 3):
        assert rows[m].prints >= 1
        assert rows[m].volume < 1e4  # under the v_min floor of spec 002 §8.3
        assert rows[m].volume < 0.1 * baseline(volumes(rows))


def test_basket_shock():
    rows_by_symbol = table("basket_shock")
    shocked = [
        s
        for s, rows in rows_by_symbol.items()
        if ret(rows, INJECT, INJECT + 1) <= -0.015
        and rows[INJECT].volume >= 3 * baseline(volumes(rows))
    ]
    assert len(shocked) >= max(4, math.ceil(0.15 * ASSETS), 0.8 * ASSETS)
    calm = [abs(ret(rows, INJECT, INJECT + 1)) for rows in table("calm").values()]
    assert max(calm) < 0.006


def test_leader_cooling():
    tab = table("leader_cooling")
    leader = tab[LEADER]
    hot, cool = slice(INJECT - 15, INJECT), slice(INJECT, INJECT + 30)
    assert ret(leader, INJECT - 15, INJECT) >= 0.006
    lead_vol = volumes(leader)
    assert statistics.fmean(lead_vol[cool]) <= 0.4 * statistics.fmean(lead_vol[hot])
    follower_rets = [ret(tab[s], INJECT, INJECT + 30) for s in symbols(ASSETS)[1:]]
    leader_ret = ret(leader, INJECT, INJECT + 30)
    assert statistics.median(follower_rets) - leader_ret >= 0.015
    assert sum(r > leader_ret for r in follower_rets) >= 0.8 * len(follower_rets)
    heat = []
    for s in symbols(ASSETS)[1:]:
        vol = volumes(tab[s])
        heat.append(statistics.fmean(vol[cool]) / baseline(vol, INJECT - 15))
    assert min(heat) >= 1.2
    assert statistics.median(heat) >= 1.8
