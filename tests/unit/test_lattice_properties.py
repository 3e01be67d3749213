"""Lattice invariants under generated streams (hypothesis; kept to a few dozen examples each).

OHLC enclosure, exact rollup sums (spec 002 §15.5), returns recomputed from the rows' own mids,
z of a constant series, warm-up NULLs (§8.2), and independence from how ticks are batched and
from restarts (STYLE.md: ``restart()`` must yield identical outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import raw
from tests.kit.lattice import (
    LAG_MS,
    MINUTE_MS,
    START_TS,
    Row,
    all_rows,
    batch,
    book,
    ctx,
    driver,
    healthy_minute,
    heartbeat,
    label,
    pipe_minutes,
    quote,
    rows,
    small_pack,
    tr,
)
from topology.driver import TopologyTestDriver

FAST = settings(max_examples=30, deadline=None)


@dataclass(frozen=True)
class Minute:
    """The ticks of one generated asset-minute.

    ``cuts`` split its trades into batches; ``lag_ms`` is each quote's receive delay (trade
    batches arrive ``LAG_MS`` after their last trade).
    """

    index: int
    quotes: tuple[tuple[int, float | None, float], ...]
    trades: tuple[dict[str, Any], ...]
    cuts: tuple[int, ...]
    oi: float
    lag_ms: tuple[int, ...] = ()

    def values(self, *, one_batch: bool = False, lags: bool = True) -> list[raw.RawValue]:
        """Return the minute's raw values in exchange-time order (``lags=False``: all LAG_MS)."""
        start = START_TS + self.index * MINUTE_MS
        lag = self.lag_ms if lags and self.lag_ms else (LAG_MS,) * len(self.quotes)
        out = [
            (ts, 0, quote(ts, bid, ask, lag_ms=ms))
            for (ts, bid, ask), ms in zip(self.quotes, lag, strict=True)
        ]
        out.append((start + 30_000, 1, book(start + 30_000, [(90.0, 1.0)], [(110.0, 1.0)])))
        out.append((start + 40_000, 2, ctx(start + 40_000, open_interest=self.oi)))
        bounds = [0, len(self.trades)] if one_batch else [0, *self.cuts, len(self.trades)]
        for a, b in pairwise(bounds):
            chunk = list(self.trades[a:b])
            if chunk:
                out.append((max(t["exchange_ts"] for t in chunk), 3, batch(chunk)))
        return [v for _ts, _k, v in sorted(out, key=lambda x: (x[0], x[1]))]


@st.composite
def streams(draw: st.DrawFn, n: int) -> list[Minute]:
    """Draw ``n`` minutes of one asset: a random-walk mid, quotes, trades around the mid."""
    mid = draw(st.integers(5_000, 20_000))  # cents
    tid = 1
    out = []
    for k in range(n):
        start = START_TS + k * MINUTE_MS
        quotes = []
        for off in sorted(draw(st.lists(st.integers(0, 59_999), min_size=1, max_size=4))):
            mid = max(500, mid + draw(st.integers(-200, 200)))
            half = draw(st.integers(1, 30))
            bid = None if draw(st.integers(0, 11)) == 0 else (mid - half) / 100
            quotes.append((start + off, bid, (mid + half) / 100))
        trades = []
        for off in sorted(draw(st.lists(st.integers(0, 59_999), max_size=5))):
            px = draw(st.integers(mid - 100, mid + 100)) / 100
            sz = draw(st.integers(1, 5_000)) / 1_000
            side: raw.Side = draw(st.sampled_from(["buy", "sell"]))
            trades.append(tr(tid, px, sz, side, start + off))
            tid += 1
        cuts = sorted(set(draw(st.lists(st.integers(1, max(len(trades) - 1, 1)), max_size=3))))
        oi = draw(st.integers(100_000, 110_000)) / 100
        lags = tuple(draw(st.integers(0, 1_200)) for _ in quotes)
        out.append(Minute(k, tuple(quotes), tuple(trades), tuple(cuts), oi, lags))
    return out


def _run(
    minutes: list[Minute], *, one_batch: bool = False, lags: bool = True
) -> TopologyTestDriver:
    d = driver(flush_every=1_000)
    pipe_minutes(d, ((m.index, m.values(one_batch=one_batch, lags=lags)) for m in minutes))
    return d


def _outputs(d: TopologyTestDriver) -> list[bytes]:
    return [s.data for s in d.outputs]


# --------------------------------------------------------------------------- bars and rollups


@FAST
@given(streams(16))
def test_ohlc_encloses_open_and_close(minutes: list[Minute]) -> None:
    d = _run(minutes)
    m1, (bar,) = all_rows(d), rows(d, "m15").values()
    for r in [*m1, bar]:
        o, h, lo, c = r["open"], r["high"], r["low"], r["close"]
        assert (o is None) == (h is None) == (lo is None) == (c is None)
        if o is not None:
            assert lo <= o <= h
            assert lo <= c <= h
    priced = [r for r in m1 if r["open"] is not None and r["exchange_ts"] <= label(14)]
    assert (bar["open"] is not None) == bool(priced)


@FAST
@given(streams(16))
def test_fifteen_minute_bar_is_the_exact_fold_of_its_minutes(minutes: list[Minute]) -> None:
    d = _run(minutes)
    (bar,) = rows(d, "m15").values()
    parts = [rows(d)[label(k)] for k in range(15)]
    sums = dict.fromkeys(("v_total_m_1", "v_buy_m_1", "v_sell_m_1", "cvd_delta_m_1"), 0.0)
    for p in parts:  # minute order, from 0.0: the order the spec's validation sums in
        for col in sums:
            sums[col] += p[col]
    for col, total in sums.items():
        assert bar[col] == total, col
    assert bar["trade_count_m_1"] == sum(p["trade_count_m_1"] for p in parts)
    assert bar["trade_count_m_1"] == sum(len(m.trades) for m in minutes[:15])
    priced = [p for p in parts if p["open"] is not None]
    assert bar["open"] == (priced[0]["open"] if priced else None)
    assert bar["close"] == (priced[-1]["close"] if priced else None)
    assert bar["high"] == (max(p["high"] for p in priced) if priced else None)
    assert bar["low"] == (min(p["low"] for p in priced) if priced else None)
    assert bar["mid_close"] == parts[-1]["mid_close"]
    assert bar["cvd_level"] == parts[-1]["cvd_level"]


@FAST
@given(streams(17))
def test_returns_recompute_from_the_rows_mids(minutes: list[Minute]) -> None:
    m1 = rows(_run(minutes))
    assert len(m1) == 17
    for ts, r in m1.items():
        for col, back in (("ret_m_1", 1), ("ret_m_5", 5), ("ret_m_15", 15)):
            before = m1.get(ts - back * MINUTE_MS)
            now, then = r["mid_close"], None if before is None else before["mid_close"]
            expected = None if now is None or then is None else (now - then) / then
            assert r[col] == expected, col
        assert r["ret_abs_m_1"] == (None if r["ret_m_1"] is None else abs(r["ret_m_1"]))
        if None not in (r["high"], r["low"], r["mid_close"]):
            assert r["atr_proxy_m_1"] == (r["high"] - r["low"]) / r["mid_close"]


# --------------------------------------------------------------------------- baselines and warm-up


def _healthy(n: int, mids: list[float] | None = None) -> list[tuple[int, list[raw.RawValue]]]:
    return [
        (
            k,
            healthy_minute(
                k,
                mid=100.0 if mids is None else mids[k],
                mark=102.0,  # 200 bp exactly: a 5-minute mean of equal samples stays equal
                oracle=100.0,
                oi=1000.0 if mids is None else 1000.0 + mids[k],
            ),
        )
        for k in range(n)
    ]


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4))
def test_z_of_a_constant_series_is_zero_after_warm_up(min_samples: int, extra: int) -> None:
    d = driver(small_pack(min_samples))
    n = 5 + min_samples + extra  # oi_roc_m_5 has its first value at minute 5
    pipe_minutes(d, _healthy(n))
    m1 = all_rows(d)
    assert {r["dq_status"] for r in m1} == {"ok"}
    z_cols = [c for c in m1[0] if c.startswith("z_")]
    assert len(z_cols) == 5
    assert m1[-1]["warmup"] is False
    for r in m1:
        assert {r[c] for c in z_cols} <= {None, 0.0}
    assert {m1[-1][c] for c in z_cols} == {0.0}


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 6), st.lists(st.integers(9_500, 11_000), min_size=13, max_size=13))
def test_warm_up_nulls_until_min_samples_ok_rows(min_samples: int, cents: list[int]) -> None:
    d = driver(small_pack(min_samples))
    pipe_minutes(d, _healthy(13, [c / 100 for c in cents]))
    m1 = all_rows(d)
    assert {r["dq_status"] for r in m1} == {"ok"}
    # the first observation of each feature: v_total, spread, basis at minute 0, ret_abs at 1,
    # oi_roc at 5; a z exists from the bar that brings the min_samples-th observation
    first = {"z_vol_m_1": 0, "z_spread_m_1": 0, "z_basis_m_5": 0, "z_ret_abs_m_1": 1}
    first["z_oi_roc_m_5"] = 5
    for k, r in enumerate(m1):
        for col, start in first.items():
            assert (r[col] is None) is (k < start + min_samples - 1), (k, col)
        assert r["warmup"] is (k < 5 + min_samples - 1)
        assert (r["is_vol_spike_m_1"] is None) is (r["z_vol_m_1"] is None)
        assert (r["is_oi_spike_up_m_5"] is None) is (r["z_oi_roc_m_5"] is None)
        assert (r["is_spread_stress_m_1"] is None) is (r["z_spread_m_1"] is None)
        assert (r["is_price_spike_down_m_1"] is None) is (r["z_ret_abs_m_1"] is None)


# --------------------------------------------------------------------------- independence


@FAST
@given(streams(4))
def test_batching_does_not_change_the_rows(minutes: list[Minute]) -> None:
    # clock_skew_ms is the median over records (a batch is one receive), so every record here
    # arrives LAG_MS after its exchange time: the batching alone differs
    one, many = _run(minutes, one_batch=True, lags=False), _run(minutes, lags=False)
    assert _outputs(one) == _outputs(many)
    assert len(all_rows(one)) == 4


def _with_late_and_amended(minutes: list[Minute]) -> list[raw.RawValue]:
    values: list[raw.RawValue] = []
    for m in minutes:
        values += m.values()
        if m.index == 1:  # a tick for minute 1 within grace, one for minute 0 after final
            values.append(heartbeat(label(1) + 2_000))
            values.append(batch([tr(10**9, 100.0, 1.0, "buy", label(1) - 10)]))
            values.append(batch([tr(10**9 + 1, 100.0, 1.0, "buy", label(0) - 10)]))
        values.append(heartbeat(label(m.index) + 3_000))
    return values


@FAST
@given(streams(4), st.integers(1, 9))
def test_restarts_do_not_change_the_outputs(minutes: list[Minute], every: int) -> None:
    values = _with_late_and_amended(minutes)
    ref = driver(flush_every=1_000)
    interrupted = driver(flush_every=1)
    for i, v in enumerate(values, 1):
        ref.pipe(v, partition=0)
        interrupted.pipe(v, partition=0)
        if i % every == 0:
            interrupted.restart()
    assert _outputs(interrupted) == _outputs(ref)
    ref.flush()
    for name, store in ref.stores.items():
        assert list(interrupted.store(name).scan()) == list(store.scan()), name
    revised = [r for r in all_rows(ref) if r["revision"] == 1]
    assert [r["exchange_ts"] for r in revised] == [label(1)]
    # the late tick came between minute 1's close and final: its revision reports it
    assert [r["late_ticks"] for r in rows(ref).values()] == [0, 1, 0, 0]


def test_streams_cover_what_the_properties_need() -> None:
    # a fixed draw: the strategy yields one-sided quotes, no-trade minutes and split batches
    example = Minute(
        0,
        ((START_TS, None, 100.0), (START_TS + 1, 99.0, 100.0)),
        (tr(1, 99.5, 1.0, "buy", START_TS + 5), tr(2, 99.5, 1.0, "sell", START_TS + 6)),
        (1,),
        1000.0,
    )
    kinds = [raw.kind_of(v) for v in example.values()]
    assert kinds.count("trades") == 2
    assert [raw.kind_of(v) for v in example.values(one_batch=True)].count("trades") == 1
    row: Row = rows(_run([example]))[label(0)]
    assert row["trade_count_m_1"] == 2
