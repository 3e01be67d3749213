"""Appendix A features through the lattice: hand-computed values, DQ, late data, amendments.

Raw streams are built with ``schemas.raw`` (via ``tests.kit.lattice``) and piped through a
one-partition :class:`TopologyTestDriver` with explicit heartbeats, so every row below is what
the Faust agent would write. Flag and gate rules are checked on :func:`finish` directly.
"""

from __future__ import annotations

import json
import math
import statistics
from itertools import pairwise
from typing import Any

import pytest

from processors.lattice import baselines as bl
from processors.lattice.features import finish
from schemas import raw
from tests.kit.lattice import (
    LAG_MS,
    START_TS,
    UID,
    VENUE,
    Row,
    all_rows,
    batch,
    book,
    candle,
    ctx,
    driver,
    healthy_minute,
    heartbeat,
    label,
    pipe_minutes,
    quote,
    rows,
    small_pack,
    symbol,
    tr,
)
from topology.driver import TopologyTestDriver

L0 = label(0)


def _pipe(d: TopologyTestDriver, values: list[raw.RawValue]) -> None:
    for v in values:
        d.pipe(v, partition=0)


def _first_minute() -> list[raw.RawValue]:
    s = START_TS
    return [
        quote(s, 99.0, 101.0),
        batch([tr(1, 100.0, 2.0, "buy", s + 5_000)]),
        book(s + 10_000, [(100.0, 1.0), (99.0, 2.0)], [(101.0, 3.0)]),
        quote(s + 15_000, 100.0, 101.0),
        batch([tr(2, 102.0, 1.0, "sell", s + 25_000)]),
        quote(s + 30_000, 100.0, 102.0),
        ctx(
            s + 30_000,
            open_interest=1000.0,
            mark_px=100.1,
            oracle_px=100.0,
            funding=0.0008,
            funding_interval_ms=28_800_000,
            next_funding_ts=START_TS + 3_600_000,
        ),
        book(s + 40_000, [(101.0, 3.0)], [(103.0, 1.0)]),
        quote(s + 45_000, 101.0, 103.0),
        batch([tr(3, 99.0, 3.0, "buy", s + 45_000)]),
        ctx(s + 50_000, open_interest=1010.0, mark_px=99.9, oracle_px=100.0),
        batch([tr(4, 101.0, 0.5, "sell", s + 50_000)]),
        quote(s + 58_000, 101.0, 102.0),
    ]


# --------------------------------------------------------------------------- one minute by hand


@pytest.fixture(scope="module")
def first() -> Row:
    d = driver()
    _pipe(d, [*_first_minute(), heartbeat(L0 + 3_000)])
    (row,) = all_rows(d)
    return row


def test_first_minute_trade_fields(first: Row) -> None:
    assert (first["open"], first["high"], first["low"], first["close"]) == (100, 102, 99, 101)
    assert first["v_buy_m_1"] == 100 * 2 + 99 * 3
    assert first["v_sell_m_1"] == 102 * 1 + 101 * 0.5
    assert first["v_total_m_1"] == 497 + 152.5
    assert first["trade_count_m_1"] == 4
    assert first["cvd_delta_m_1"] == 497 - 152.5
    assert first["cvd_level"] == 497 - 152.5  # the first bar starts the running sum
    assert first["cvd_slope_m_5"] is None  # fewer than five bars


def test_first_minute_quote_fields(first: Row) -> None:
    mids = [100.0, 100.5, 101.0, 102.0, 101.5]
    assert first["mid_close"] == 101.5
    # spreads 2, 1, 2, 2, 1 live for 15, 15, 15, 13, 2 seconds of the minute
    assert first["spread_mean_m_1"] == pytest.approx((2 * 15 + 15 + 2 * 15 + 2 * 13 + 2) / 60)
    assert first["spread_p95_m_1"] == 2.0  # sorted 1, 1, 2, 2, 2: rank 3.8 lies between two 2s
    expected_rv = math.sqrt(sum(math.log(b / a) ** 2 for a, b in pairwise(mids)))
    assert first["rv_m_1"] == pytest.approx(expected_rv, rel=1e-12)
    # the quote live 30 s before the close is the one stamped exactly at close - 30 s (mid 101)
    assert first["ret_s_30"] == pytest.approx((101.5 - 101.0) / 101.0, rel=1e-12)
    assert first["atr_proxy_m_1"] == pytest.approx((102 - 99) / 101.5, rel=1e-12)
    assert first["book_staleness_ms"] == 2_000
    assert first["ret_m_1"] is None  # no earlier bar
    assert first["ret_m_5"] is None
    assert first["ret_m_15"] is None
    assert first["ret_abs_m_1"] is None


def test_first_minute_book_fields(first: Row) -> None:
    # OBI 0.5 live 30 s from the first snapshot, 0.75 live for the last 20 s
    assert first["obi_top5_mean_m_1"] == pytest.approx((0.5 * 30 + 0.75 * 20) / 50)
    depths = [100 * 1 + 99 * 2 + 101 * 3, 101 * 3 + 103 * 1]
    assert first["depth_top5_quote_median_m_1"] == statistics.median(depths)


def test_first_minute_context_fields(first: Row) -> None:
    assert (first["oi_open"], first["oi_close"]) == (1000.0, 1010.0)
    assert (first["oi_min"], first["oi_max"]) == (1000.0, 1010.0)
    assert first["oi_staleness_ms"] == 10_000
    assert first["oi_delta_m_5"] is None
    assert first["oi_roc_m_5"] is None
    # 0.0008 per 8 h is 0.0001 per hour
    assert first["funding_h_1"] == pytest.approx(0.0001, rel=1e-12)
    assert first["time_to_next_funding_sec"] == 3_540
    # +10 bp and -10 bp samples
    assert first["basis_bp_m_5"] == pytest.approx(0.0, abs=1e-9)
    assert first["liq_count_m_5"] is None
    assert first["liq_notional_m_5"] is None


def test_first_minute_provenance_and_dq(first: Row) -> None:
    assert first["exchange_ts"] == L0
    assert (first["revision"], first["final"]) == (0, False)
    assert (first["dq_status"], first["dq_reasons"]) == ("ok", [])
    assert first["clock_skew_ms"] == LAG_MS
    assert first["ingest_ts"] == L0 + 3_000  # the heartbeat's: it sealed the bar
    assert first["ingest_lag_ms"] == 3_000
    assert (first["dropped_ticks"], first["late_ticks"]) == (0, 0)
    assert first["source"] == "ws"
    assert (first["asset_uid"], first["venue"], first["symbol"]) == (UID, VENUE, symbol(UID))
    assert first["warmup"] is True
    assert all(first[c] is None for c in first if c.startswith(("z_", "is_")))


# --------------------------------------------------------------------------- a series of minutes


def _mid(k: int) -> float:
    return 100.0 + k


def _oi(k: int) -> float:
    return 1000.0 + 10.0 * k * k


def _mark(k: int) -> float:
    return _mid(k) + 0.01 * k


def _buy_size(k: int) -> float:
    return 1.0 + k % 3


SERIES = 31  # two whole 15m bars and one minute more


@pytest.fixture(scope="module")
def series() -> TopologyTestDriver:
    d = driver()
    pipe_minutes(
        d,
        (
            (
                k,
                healthy_minute(
                    k,
                    mid=_mid(k),
                    oi=_oi(k),
                    mark=_mark(k),
                    oracle=_mid(k),
                    trades=[(_mid(k) + 0.5, _buy_size(k), "buy"), (_mid(k) - 0.5, 1.0, "sell")],
                ),
            )
            for k in range(SERIES)
        ),
    )
    return d


def _delta(k: int) -> float:
    return (_mid(k) + 0.5) * _buy_size(k) - (_mid(k) - 0.5) * 1.0


def _basis(k: int) -> float:
    return (_mark(k) - _mid(k)) / _mid(k) * 10_000


def test_series_has_every_minute_ok(series: TopologyTestDriver) -> None:
    m1 = rows(series)
    assert sorted(m1) == [label(k) for k in range(SERIES)]
    assert {r["dq_status"] for r in m1.values()} == {"ok"}


@pytest.mark.parametrize("k", [1, 5, 15, 30])
def test_series_returns_from_mids(series: TopologyTestDriver, k: int) -> None:
    r = rows(series)[label(k)]
    assert r["ret_m_1"] == (_mid(k) - _mid(k - 1)) / _mid(k - 1)
    assert r["ret_abs_m_1"] == abs(r["ret_m_1"])
    assert r["ret_m_5"] == (None if k < 5 else (_mid(k) - _mid(k - 5)) / _mid(k - 5))
    assert r["ret_m_15"] == (None if k < 15 else (_mid(k) - _mid(k - 15)) / _mid(k - 15))
    assert r["ret_s_30"] == 0.0  # the mid did not move within the minute
    # the carried quote of the minute before is the first mid of the minute
    assert r["rv_m_1"] == pytest.approx(abs(math.log(_mid(k) / _mid(k - 1))), rel=1e-12)
    assert r["atr_proxy_m_1"] == pytest.approx(1.0 / _mid(k), rel=1e-12)
    assert r["spread_mean_m_1"] == 1.0


@pytest.mark.parametrize("k", [4, 5, 9, 30])
def test_series_oi_change_over_five_minutes(series: TopologyTestDriver, k: int) -> None:
    r = rows(series)[label(k)]
    assert r["oi_close"] == _oi(k)
    if k < 5:
        assert (r["oi_delta_m_5"], r["oi_roc_m_5"]) == (None, None)
    else:
        assert r["oi_delta_m_5"] == _oi(k) - _oi(k - 5)
        assert r["oi_roc_m_5"] == (_oi(k) - _oi(k - 5)) / _oi(k - 5)


@pytest.mark.parametrize("k", [0, 3, 4, 12])
def test_series_basis_is_the_mean_over_five_minutes(series: TopologyTestDriver, k: int) -> None:
    r = rows(series)[label(k)]
    window = [_basis(j) for j in range(max(0, k - 4), k + 1)]
    assert r["basis_bp_m_5"] == pytest.approx(sum(window) / len(window), rel=1e-9)


@pytest.mark.parametrize("k", [3, 4, 10])
def test_series_cvd_level_and_slope(series: TopologyTestDriver, k: int) -> None:
    r = rows(series)[label(k)]
    levels = [sum(_delta(j) for j in range(i + 1)) for i in range(k + 1)]
    assert r["cvd_delta_m_1"] == pytest.approx(_delta(k), rel=1e-12)
    assert r["cvd_level"] == pytest.approx(levels[-1], rel=1e-12)
    if k < 4:
        assert r["cvd_slope_m_5"] is None
    else:
        slope = statistics.linear_regression(range(5), levels[-5:]).slope
        assert r["cvd_slope_m_5"] == pytest.approx(slope, rel=1e-9)


def test_series_fifteen_minute_rollup(series: TopologyTestDriver) -> None:
    m1, m15 = rows(series), rows(series, "m15")
    assert sorted(m15) == [label(14), label(29)]
    for end in (14, 29):
        parts = [m1[label(k)] for k in range(end - 14, end + 1)]
        r = m15[label(end)]
        assert (r["open"], r["close"]) == (parts[0]["open"], parts[-1]["close"])
        assert r["high"] == max(p["high"] for p in parts)
        assert r["low"] == min(p["low"] for p in parts)
        assert r["mid_close"] == parts[-1]["mid_close"]
        assert r["trade_count_m_1"] == 30
        assert r["cvd_level"] == parts[-1]["cvd_level"]
        assert r["oi_open"] == parts[0]["oi_open"]
        assert r["oi_close"] == parts[-1]["oi_close"]
        assert r["spread_mean_m_1"] == pytest.approx(1.0)
        assert r["basis_bp_m_5"] == pytest.approx(
            statistics.fmean(_basis(k) for k in range(end - 14, end + 1)), rel=1e-9
        )
        assert (r["dq_status"], r["final"]) == ("ok", True)
    first, second = m15[label(14)], m15[label(29)]
    assert first["ret_m_1"] is None
    assert first["rv_m_1"] is None  # minute 0 has no log-mid increment
    assert second["ret_m_1"] == (_mid(29) - _mid(14)) / _mid(14)
    assert second["oi_delta_m_5"] == _oi(29) - _oi(14)  # one 15m bar back
    assert second["rv_m_1"] == pytest.approx(
        math.sqrt(sum(math.log(_mid(k) / _mid(k - 1)) ** 2 for k in range(15, 30))), rel=1e-12
    )


# --------------------------------------------------------------------------- DQ (§8.1, §8.4-8.6)


def _without(values: list[raw.RawValue], kind: str, after: int = 0) -> list[raw.RawValue]:
    return [v for v in values if not (raw.kind_of(v) == kind and v["exchange_ts"] >= after)]


def _second_minute(values: list[raw.RawValue], first: list[raw.RawValue] | None = None) -> Row:
    d = driver()
    pipe_minutes(d, [(0, healthy_minute(0, mid=100.0) if first is None else first), (1, values)])
    return rows(d)[label(1)]


def test_no_data_is_stale() -> None:
    r = _second_minute([])
    assert r["dq_status"] == "stale"
    assert "no_data" in r["dq_reasons"]
    assert (r["open"], r["trade_count_m_1"], r["v_total_m_1"]) == (None, 0, 0.0)


@pytest.mark.parametrize(("last_quote_ms", "status"), [(3_000, "ok"), (3_001, "stale")])
def test_book_staleness_above_3_s_is_stale(last_quote_ms: int, status: str) -> None:
    minute = _without(healthy_minute(1, mid=100.0), "bbo")
    start = START_TS + 60_000
    quotes = [quote(start, 99.5, 100.5), quote(label(1) - last_quote_ms, 99.5, 100.5)]
    r = _second_minute(sorted([*minute, *quotes], key=lambda v: v["exchange_ts"]))
    assert r["book_staleness_ms"] == last_quote_ms
    assert r["dq_status"] == status
    assert ("book_stale" in r["dq_reasons"]) is (status == "stale")


@pytest.mark.parametrize(("age_ms", "status"), [(20_000, "ok"), (20_001, "partial")])
def test_oi_older_than_20_s_is_partial_and_null(age_ms: int, status: str) -> None:
    minute = _without(healthy_minute(1, mid=100.0), "ctx")
    oi_at = label(1) - age_ms
    r = _second_minute(
        sorted([*minute, ctx(oi_at, open_interest=1234.0)], key=lambda v: v["exchange_ts"])
    )
    assert r["oi_staleness_ms"] == age_ms
    assert (r["dq_status"], r["dq_reasons"]) == (status, [] if status == "ok" else ["oi_stale"])
    expected = 1234.0 if status == "ok" else None
    assert (r["oi_open"], r["oi_close"], r["oi_min"], r["oi_max"]) == (expected,) * 4


def test_no_oi_ever_is_partial() -> None:
    r = _second_minute(
        healthy_minute(1, mid=100.0, oi=None), first=healthy_minute(0, mid=100.0, oi=None)
    )
    assert (r["dq_status"], r["dq_reasons"]) == ("partial", ["oi_stale"])
    assert r["oi_staleness_ms"] is None


def test_no_l2_is_partial_and_null() -> None:
    r = _second_minute(
        healthy_minute(1, mid=100.0, book_snapshot=False),
        first=healthy_minute(0, mid=100.0, book_snapshot=False),
    )
    assert (r["dq_status"], r["dq_reasons"]) == ("partial", ["l2_missing"])
    assert (r["obi_top5_mean_m_1"], r["depth_top5_quote_median_m_1"]) == (None, None)


def test_l2_without_a_snapshot_in_the_minute_is_stale_l2() -> None:
    # the book stopped after minute 0: minute 1 must not report the carried snapshot's OBI
    r = _second_minute(healthy_minute(1, mid=100.0, book_snapshot=False))
    assert (r["dq_status"], r["dq_reasons"]) == ("partial", ["l2_missing"])
    assert (r["obi_top5_mean_m_1"], r["depth_top5_quote_median_m_1"]) == (None, None)


def test_no_trades_is_partial_with_mid_ohlc() -> None:
    start = START_TS + 60_000
    minute = _without(healthy_minute(1, mid=100.0), "bbo")
    mids = [100.0, 103.0, 98.0, 101.0]
    quotes = [quote(start + i * 2_000, m - 0.5, m + 0.5) for i, m in enumerate(mids[:3])]
    quotes.append(quote(label(1) - 1_000, mids[3] - 0.5, mids[3] + 0.5))
    r = _second_minute(
        sorted(_without([*minute, *quotes], "trades"), key=lambda v: v["exchange_ts"])
    )
    assert (r["dq_status"], r["dq_reasons"]) == ("partial", ["no_trades"])
    assert r["trade_count_m_1"] == 0
    # §5.1: without trades OHLC falls back to the minute's BBO mids
    assert (r["open"], r["high"], r["low"], r["close"]) == (100.0, 103.0, 98.0, 101.0)
    assert r["atr_proxy_m_1"] == pytest.approx(5.0 / 101.0)


def test_trades_without_any_bbo_are_stale() -> None:
    d = driver()
    _pipe(d, [batch([tr(1, 100.0, 1.0, "buy", START_TS + 1_000)]), heartbeat(L0 + 3_000)])
    (r,) = all_rows(d)
    assert r["dq_status"] == "stale"
    assert "no_bbo" in r["dq_reasons"]
    assert r["mid_close"] is None
    assert r["atr_proxy_m_1"] is None


def test_gap_marks_the_open_minute_stale() -> None:
    d = driver()
    pipe_minutes(d, [(0, healthy_minute(0, mid=100.0))])
    gap = raw.gap(
        UID,
        VENUE,
        symbol(UID),
        "ws",
        since_ts=START_TS + 30_000,
        until_ts=START_TS + 70_000,
        ingest_ts=START_TS + 70_100,
        reason="reconnect",
    )
    d.pipe(gap, partition=0)
    pipe_minutes(d, [(1, healthy_minute(1, mid=100.0)), (2, healthy_minute(2, mid=100.0))])
    m1 = rows(d)
    assert m1[label(0)]["dq_status"] == "ok"  # final before the gap was reported
    assert (m1[label(1)]["dq_status"], m1[label(1)]["dq_reasons"]) == ("stale", ["gap"])
    assert m1[label(2)]["dq_status"] == "ok"


@pytest.mark.parametrize(("mid", "status"), [(120.0, "ok"), (125.0, "stale"), (79.0, "stale")])
def test_return_beyond_20_percent_is_stale_and_not_learned(mid: float, status: str) -> None:
    pack = small_pack(min_samples=50)
    d = driver(pack)
    pipe_minutes(d, [(0, healthy_minute(0, mid=100.0)), (1, healthy_minute(1, mid=mid))])
    r = rows(d)[label(1)]
    assert r["ret_m_1"] == (mid - 100.0) / 100.0
    assert r["dq_status"] == status
    assert (r["dq_reasons"] == ["ret_bound"]) is (status == "stale")
    state = d.store("lattice.baselines.v1").get(b"b:%d" % UID)
    assert state is not None
    assert state[:1] == b"\x01"
    ret_abs = json.loads(state[1:])["1m"].get("ret_abs")
    # minute 0 has no return; minute 1's is learned only when ok (§8.6: dropped from normalisation)
    assert (ret_abs is not None and ret_abs["n"] == 1) is (status == "ok")


@pytest.mark.parametrize(
    ("lag_ms", "status"), [(1_000, "ok"), (1_001, "partial"), (3_001, "stale")]
)
def test_clock_skew(lag_ms: int, status: str) -> None:
    values = healthy_minute(1, mid=100.0)
    lagged = [dict(v, ingest_ts=v["exchange_ts"] + lag_ms) for v in values]
    r = _second_minute(lagged)
    assert r["clock_skew_ms"] == lag_ms
    assert r["dq_status"] == status
    assert ("clock_skew" in r["dq_reasons"]) is (status != "ok")


# --------------------------------------------------------------------------- late data, amendments


def test_tick_after_final_is_counted_not_applied() -> None:
    d = driver()
    pipe_minutes(d, [(0, healthy_minute(0, mid=100.0))])  # final at label + 3 s
    d.pipe(batch([tr(9, 100.0, 50.0, "buy", START_TS + 30_000)]), partition=0)
    d.pipe(quote(START_TS + 59_000, 10.0, 11.0), partition=0)
    pipe_minutes(d, [(1, healthy_minute(1, mid=100.0))])
    m1 = all_rows(d)
    assert [(r["exchange_ts"], r["revision"]) for r in m1] == [(label(0), 0), (label(1), 0)]
    assert m1[0]["trade_count_m_1"] == 2
    assert m1[1]["late_ticks"] == 2  # reported on the asset's next row
    assert m1[1]["trade_count_m_1"] == 2
    assert m1[1]["ret_m_1"] == 0.0  # the late quote did not move minute 0's mid


def test_late_ticks_between_close_and_final_are_not_lost() -> None:
    d = driver()
    pipe_minutes(d, [(0, healthy_minute(0, mid=100.0))])
    _pipe(d, healthy_minute(1, mid=100.0))
    d.pipe(heartbeat(label(1) + 2_000), partition=0)  # minute 1 closed, not final
    d.pipe(batch([tr(9, 100.0, 5.0, "buy", START_TS + 30_000)]), partition=0)  # minute 0: late
    d.pipe(heartbeat(label(1) + 3_000), partition=0)  # minute 1 final
    pipe_minutes(d, [(2, healthy_minute(2, mid=100.0))])
    late = [(r["exchange_ts"], r["late_ticks"]) for r in all_rows(d)]
    assert late == [(label(0), 0), (label(1), 0), (label(2), 1)]


def test_tick_within_grace_amends_the_minute() -> None:
    d = driver()
    pipe_minutes(d, [(0, healthy_minute(0, mid=100.0))])
    _pipe(d, healthy_minute(1, mid=100.0))
    d.pipe(heartbeat(label(1) + 1_500), partition=0)  # closes minute 1: revision 0
    d.pipe(heartbeat(label(1) + 2_000), partition=0)
    d.pipe(batch([tr(9, 104.0, 5.0, "buy", label(1) - 1_000)]), partition=0)
    d.pipe(quote(label(1) - 500, 101.5, 102.5), partition=0)
    d.pipe(heartbeat(label(1) + 3_000), partition=0)  # final: revision 1
    pipe_minutes(d, [(2, healthy_minute(2, mid=102.0))])
    minute1 = [r for r in all_rows(d) if r["exchange_ts"] == label(1)]
    assert [(r["revision"], r["final"]) for r in minute1] == [(0, False), (1, True)]
    before, after = minute1
    assert after["trade_count_m_1"] == before["trade_count_m_1"] + 1
    assert after["v_buy_m_1"] == before["v_buy_m_1"] + 104.0 * 5.0
    assert (after["high"], after["close"]) == (104.0, 104.0)
    assert (before["mid_close"], after["mid_close"]) == (100.0, 102.0)
    assert after["ingest_ts"] == label(1) + 3_000
    assert after["late_ticks"] == 0
    # the next minute builds on the amended bar
    assert rows(d)[label(2)]["ret_m_1"] == 0.0


def test_duplicate_and_invalid_trades_are_dropped() -> None:
    s = START_TS
    minute = _without(healthy_minute(0, mid=100.0), "trades")
    trades = [
        batch([tr(1, 100.0, 1.0, "buy", s + 1_000), tr(2, 101.0, 2.0, "sell", s + 2_000)]),
        batch([tr(2, 101.0, 2.0, "sell", s + 2_000), tr(3, 99.0, 1.0, "buy", s + 3_000)]),
        batch([tr(4, 0.0, 1.0, "buy", s + 4_000), tr(5, 99.0, -1.0, "buy", s + 4_000)]),
    ]
    d = driver()
    _pipe(d, sorted([*minute, *trades], key=lambda v: v["exchange_ts"]))
    d.pipe(heartbeat(L0 + 3_000), partition=0)
    (r,) = all_rows(d)
    assert r["dropped_ticks"] == 3
    assert r["trade_count_m_1"] == 3
    assert r["v_buy_m_1"] == 100.0 + 99.0
    assert r["v_sell_m_1"] == 202.0
    assert (r["open"], r["high"], r["low"], r["close"]) == (100.0, 101.0, 99.0, 99.0)


def test_candle_bootstrap_minute() -> None:
    d = driver()
    _pipe(
        d,
        [
            candle(0, (100.0, 105.0, 99.0, 104.0, 10.0), 7),
            candle(1, (104.0, 104.5, 101.0, 102.0, 4.0), None),
            heartbeat(label(1) + 3_000),
        ],
    )
    first, second = all_rows(d)
    assert (first["open"], first["high"], first["low"], first["close"]) == (100, 105, 99, 104)
    assert first["mid_close"] == 104.0
    half = 10.0 * ((105.0 + 99.0 + 104.0) / 3) / 2  # quote volume by typical price, split evenly
    assert first["v_total_m_1"] == half + half
    assert (first["v_buy_m_1"], first["v_sell_m_1"]) == (half, half)
    assert (first["cvd_delta_m_1"], first["trade_count_m_1"]) == (0.0, 7)
    assert (first["source"], first["dq_status"], first["dq_reasons"]) == (
        "candle_snapshot",
        "ok",
        [],
    )
    assert first["spread_mean_m_1"] is None
    assert first["oi_close"] is None
    assert second["trade_count_m_1"] == 0  # n unknown
    assert second["ret_m_1"] == (102.0 - 104.0) / 104.0


def test_candle_that_breaks_its_own_range_is_stale() -> None:
    d = driver()
    _pipe(d, [candle(0, (100.0, 99.0, 98.0, 98.5, 1.0), 3), heartbeat(L0 + 3_000)])
    (r,) = all_rows(d)
    assert (r["dq_status"], r["dq_reasons"]) == ("stale", ["integrity"])


def test_cvd_level_restarts_with_the_utc_day() -> None:
    # minute 718 of the run is 23:58-23:59 UTC; the bar labelled 00:00 still belongs to the day
    first = 717
    d = driver()
    pipe_minutes(d, ((k, healthy_minute(k, mid=100.0)) for k in range(first, first + 6)))
    m1 = rows(d)
    delta = (100.5 - 99.5) * 1.0
    midnight = START_TS + 12 * 3_600_000
    levels = {ts - midnight: r["cvd_level"] for ts, r in m1.items()}
    assert levels == {
        -120_000: delta,
        -60_000: 2 * delta,
        0: 3 * delta,
        60_000: delta,
        120_000: 2 * delta,
        180_000: 3 * delta,
    }


# --------------------------------------------------------------------------- flags and gates


def _summary(k: int, **over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "label": label(k),
        "open": 100.0,
        "high": 101.0,
        "low": 99.0,
        "close": 100.0,
        "v_buy": 50_000.0,
        "v_sell": 50_000.0,
        "v_total": 100_000.0,
        "v_base": 1_000.0,
        "count": 20,
        "cvd_delta": 0.0,
        "mid_close": 100.0,
        "mid_s_30": 100.0,
        "dlog_sq": 0.0,
        "rv": 0.0,
        "spread_mean": 0.01,
        "spread_p95": 0.01,
        "spreads": [0.01],
        "obi": 0.5,
        "depth": 1e5,
        "l2_seen": True,
        "oi_open": 1000.0,
        "oi_close": 1000.0,
        "oi_min": 1000.0,
        "oi_max": 1000.0,
        "oi_staleness_ms": 1_000,
        "funding_h_1": 1e-5,
        "ttf_sec": 100,
        "basis_sum": 0.0,
        "basis_n": 1,
        "book_staleness_ms": 500,
        "quote_updates": 30,
        "dropped": 0,
        "records": 40,
        "skew": 100,
        "source": "ws",
        "candle_only": False,
        "dq": "ok",
        "cvd_level": 0.0,
    }
    s.update(over)
    return s


def _warm(mu: float, sigma: float) -> dict[str, Any]:
    return dict(bl.to_json(bl.BaselineState(n=500, mu=mu, sigma=sigma, last_ts=0)))


WARM = {
    "vol": _warm(100_000.0, 10_000.0),
    "ret_abs": _warm(0.001, 0.001),
    "oi_roc": _warm(0.0, 0.001),
    "spread": _warm(0.01, 0.001),
    "basis": _warm(0.0, 1.0),
}


def _finish(s: dict[str, Any], *, base: dict[str, Any] | None = None, gap: bool = False) -> Row:
    history = [_summary(k) for k in range(5)]
    row, _b, _s, _f = finish(
        "1m", s, history, WARM if base is None else base, {}, gap=gap, pack=small_pack()
    )
    return row


def test_quiet_warm_bar_raises_no_flag() -> None:
    r = _finish(_summary(5))
    assert r["warmup"] is False
    flags = {c: r[c] for c in r if c.startswith("is_")}
    assert flags == dict.fromkeys(flags, False) | {"is_liq_cluster_m_5": None}


def test_vol_spike_needs_the_minimum_trade_count() -> None:
    loud = {"v_buy": 200_000.0, "v_sell": 200_000.0, "v_total": 400_000.0}
    assert _finish(_summary(5, count=5, **loud))["is_vol_spike_m_1"] is True
    r = _finish(_summary(5, count=4, **loud))
    assert r["z_vol_m_1"] > 3
    assert r["is_vol_spike_m_1"] is False


@pytest.mark.parametrize(("oi", "up", "down"), [(1_030.0, True, False), (970.0, False, True)])
def test_oi_spike_flags_take_the_sign_of_the_change(oi: float, up: bool, down: bool) -> None:
    r = _finish(_summary(5, oi_open=oi, oi_close=oi, oi_min=oi, oi_max=oi))
    assert abs(r["z_oi_roc_m_5"]) >= 2
    assert (r["is_oi_spike_up_m_5"], r["is_oi_spike_down_m_5"]) == (up, down)


def test_small_oi_change_is_no_spike_even_with_a_large_z() -> None:
    r = _finish(_summary(5, oi_open=1010.0, oi_close=1010.0, oi_min=1010.0, oi_max=1010.0))
    assert r["z_oi_roc_m_5"] > 2  # 1 % against a 0.1 % scale
    assert (r["is_oi_spike_up_m_5"], r["is_oi_spike_down_m_5"]) == (False, False)


@pytest.mark.parametrize(("mid", "up", "down"), [(103.0, True, False), (97.0, False, True)])
def test_price_spike_flags(mid: float, up: bool, down: bool) -> None:
    r = _finish(_summary(5, mid_close=mid))
    assert r["z_ret_abs_m_1"] > 2.5
    assert (r["is_price_spike_up_m_1"], r["is_price_spike_down_m_1"]) == (up, down)


def test_illiquidity_blocks_spike_flags_not_spread_stress() -> None:
    thin = {"v_buy": 4_000.0, "v_sell": 4_000.0, "v_total": 8_000.0}  # under the 1e4 floor
    r = _finish(_summary(5, mid_close=103.0, spread_mean=0.02, **thin))
    assert r["illiquidity_hit"] is True
    assert r["z_ret_abs_m_1"] > 2.5
    assert r["is_price_spike_up_m_1"] is False
    assert r["is_spread_stress_m_1"] is True  # a shift, not a spike (§8.3)


def test_spread_beyond_the_cap_is_illiquid() -> None:
    r = _finish(_summary(5, mid_close=103.0, spread_mean=0.16))  # > 15 x 0.01
    assert r["illiquidity_hit"] is True
    assert r["is_price_spike_up_m_1"] is False


@pytest.mark.parametrize("reason", ["gap", "book_stale"])
def test_flags_obey_the_dq_gate(reason: str) -> None:
    s = _summary(5, mid_close=103.0, spread_mean=0.02, v_total=400_000.0, v_buy=400_000.0)
    if reason == "book_stale":
        s["book_staleness_ms"] = 60_000
    r = _finish(s, gap=reason == "gap")
    assert (r["dq_status"], r["dq_reasons"]) == ("stale", [reason])
    assert r["z_spread_m_1"] > 2
    assert r["z_vol_m_1"] > 3
    assert r["z_ret_abs_m_1"] > 2.5
    assert r["is_spread_stress_m_1"] is False
    assert r["is_vol_spike_m_1"] is False
    assert r["is_price_spike_up_m_1"] is False


def test_flags_are_null_in_warm_up() -> None:
    r = _finish(_summary(5, mid_close=103.0), base={})
    assert r["warmup"] is True
    assert all(r[c] is None for c in r if c.startswith("z_"))
    assert all(r[c] is None for c in r if c.startswith("is_"))


def test_gap_markers_of_one_outage_mark_every_asset_of_the_partition() -> None:
    # one connection drops for two assets of a partition; on resume the connector writes a gap
    # marker per asset: the first marker must not seal the other asset's outage minutes
    other = UID + 1
    d = driver()
    pipe_minutes(d, [(0, [*healthy_minute(0, mid=100.0), *healthy_minute(0, mid=50.0, uid=other)])])
    resume = label(3) + 10_000
    for uid in (UID, other):
        gap = raw.gap(
            uid,
            VENUE,
            symbol(uid),
            "ws",
            since_ts=label(0) + 5_000,
            until_ts=resume,
            ingest_ts=resume + 100,
            reason="reconnect",
        )
        d.pipe(gap, partition=0)
    pipe_minutes(d, [(4, healthy_minute(4, mid=100.0)), (5, healthy_minute(5, mid=100.0))])
    for uid in (UID, other):
        m1 = rows(d, uid=uid)
        assert m1[label(0)]["dq_status"] == "ok"
        for k in (1, 2, 3, 4):
            assert "gap" in m1[label(k)]["dq_reasons"], (uid, k)
    assert "gap" not in rows(d)[label(5)]["dq_reasons"]


def test_oi_and_basis_windows_come_from_the_pack() -> None:
    d = driver(small_pack(oi_window_m=17, basis_window_m=2))
    pipe_minutes(
        d,
        (
            (k, healthy_minute(k, mid=_mid(k), oi=_oi(k), mark=_mark(k), oracle=_mid(k)))
            for k in range(18)
        ),
    )
    m1 = rows(d)
    assert m1[label(16)]["oi_delta_m_5"] is None
    assert m1[label(17)]["oi_delta_m_5"] == _oi(17) - _oi(0)
    assert m1[label(17)]["basis_bp_m_5"] == pytest.approx((_basis(16) + _basis(17)) / 2)


def test_an_asset_first_seen_after_a_close_gets_no_phantom_minute() -> None:
    # B's first record arrives after minute 0 closed (without B) and before it is final: B has
    # no row for minute 0, so minute 0 must not count towards B's first 15m bar either
    b = UID + 1
    d = driver()
    _pipe(d, healthy_minute(0, mid=100.0))
    d.pipe(heartbeat(label(0) + 2_000), partition=0)
    pipe_minutes(
        d,
        (
            (
                k,
                sorted(
                    [*healthy_minute(k, mid=100.0), *healthy_minute(k, mid=50.0, uid=b)],
                    key=lambda v: v["exchange_ts"],
                ),
            )
            for k in range(1, 16)
        ),
    )
    assert min(rows(d, uid=b)) == label(1)
    assert sorted(rows(d, "m15")) == [label(14)]
    assert rows(d, "m15", uid=b) == {}  # B was there for 14 minutes of the first window
