"""Acceptance: the real Hyperliquid capture, replayed through the lattice, matches pandas.

``data/samples/hyperliquid-ws-collector-2025-09-03`` (9 minutes of BTC/ETH/SOL trades, BBO and
L2 with two recorded outages and 32 re-sent trades) goes through the replay connector into the
:class:`TopologyTestDriver` exactly as ``alpha ingest replay`` writes it to Kafka (records keyed
by asset, a heartbeat to every partition per second of stream time). Every 1m row the lattice
seals is compared with a recomputation that reads the same CSV files with pandas and applies the
documented conventions on its own (spec 002 Appendix A.2/A.3/A.6, §2.2, §8.1, §8.5):

* the bar labelled ``t`` covers exchange times ``[t - 60 s, t)``;
* a trade id seen twice is one trade (PROVENANCE.md: the re-sent trades after a reconnect);
* open/close = earliest/latest trade by exchange time (ties: file order), high/low, count;
* ``v_buy``/``v_sell`` = sum of price x size by aggressor side (quote currency);
  ``cvd_delta = v_buy - v_sell``; ``cvd_level`` = running sum of the day's bars (00:00 UTC);
* ``spread_mean_m_1`` = mean of ask - bid weighted by how long each BBO was live inside
  ``[t - 60 s, t)``, the BBO live when the minute began covering its start.

The outages (a silence of more than 10 s in the recording's receive times, docs/ingest.md) must
leave every minute they touch ``stale``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from connectors.assets import AssetRegistry
from connectors.replay.source import Replay, ReplayStats
from schemas import raw
from schemas.raw import RawValue, Source
from topology.driver import TopologyTestDriver
from topology.settings import REPO_ROOT

COLLECTOR = REPO_ROOT / "data" / "samples" / "hyperliquid-ws-collector-2025-09-03"
COINS = ("BTC", "ETH", "SOL")
MINUTE = pd.Timedelta(minutes=1)
EPOCH = pd.Timestamp(0, tz="UTC")
REL = 1e-9  # sums: relative to the sum of the magnitudes added (float64 order-of-summation)
OUTAGE_SILENCE = pd.Timedelta(seconds=10)  # docs/ingest.md: a longer silence is an outage
AWAY_FROM_OUTAGE = pd.Timedelta(seconds=10)
#: DQ reasons that say data was missing (spec 002 §8.1, §8.5): none may appear away from outages.
MISSING_DATA_REASONS = {"no_data", "no_bbo", "book_stale", "gap"}


# ----------------------------------------------------------------------------- the replay


@dataclass
class DriverSink:
    """The replay's output, written into the driver the way ``RawSink`` writes to Kafka.

    ``send`` is keyed by ``asset_uid`` (the driver picks Kafka's partition); ``heartbeat`` writes
    one heartbeat to every partition; dead letters are kept.
    """

    driver: TopologyTestDriver
    sent: list[RawValue] = field(default_factory=list)
    dead: list[tuple[bytes, str, str]] = field(default_factory=list)

    def send(self, value: RawValue) -> None:
        self.sent.append(value)
        self.driver.pipe(value)

    def heartbeat(self, stream_ts: int, ingest_ts: int, source: Source) -> None:
        for partition in range(self.driver.partitions):
            self.driver.pipe(
                raw.heartbeat(partition, stream_ts, ingest_ts, source), partition=partition
            )

    def dead_letter(
        self, original: bytes, reason: str, stage: str, key: bytes | None = None
    ) -> None:
        self.dead.append((original, reason, stage))


@dataclass(frozen=True)
class Replayed:
    """The replay's outcome: final 1m rows by ``(symbol, label)``, the sink, the stats."""

    rows: dict[tuple[str, int], dict[str, Any]]
    sink: DriverSink
    stats: ReplayStats


@pytest.fixture(scope="module")
def replayed() -> Replayed:
    driver = TopologyTestDriver()
    sink = DriverSink(driver)
    stats = Replay(AssetRegistry()).run([COLLECTOR], sink)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for sent in driver.read("lattice.v0", rows_only=True):
        row = sent.value
        if row["tf"] != "m1":
            continue
        key = (row["symbol"], row["exchange_ts"])
        if key in rows:  # an amendment (revision 1) replaces the close-time row
            assert row["revision"] > rows[key]["revision"], key
        rows[key] = row
    assert driver.dead_letters == []
    return Replayed(rows, sink, stats)


# ----------------------------------------------------------------------------- pandas side


def _label_ms(exchange_ms: pd.Series) -> pd.Series:
    """Label (end, epoch ms) of the minute ``[t - 60 s, t)`` holding each exchange time."""
    start = pd.to_datetime(exchange_ms, unit="ms", utc=True).dt.floor("min")
    return (start + MINUTE - EPOCH) // pd.Timedelta(milliseconds=1)


def trades_of(coin: str) -> pd.DataFrame:
    """The coin's trades, each trade id once, in file (receive) order, with its minute label."""
    df = pd.read_csv(COLLECTOR / f"trades_{coin}.csv")
    df = df.drop_duplicates("trade_id", keep="first").copy()
    df["notional"] = df["price"] * df["size"]
    df["label"] = _label_ms(df["exchange_timestamp"])
    return df


def minute_trades(coin: str) -> pd.DataFrame:
    """Per minute label: open, high, low, close, trade_count, v_buy, v_sell, v_total, cvd_delta."""
    df = trades_of(coin).sort_values("exchange_timestamp", kind="stable")
    by = df.groupby("label", sort=True)
    out = pd.DataFrame(
        {
            "open": by["price"].first(),
            "high": by["price"].max(),
            "low": by["price"].min(),
            "close": by["price"].last(),
            "trade_count": by.size(),
            "v_buy": df["notional"].where(df["side"] == "buy", 0.0).groupby(df["label"]).sum(),
            "v_sell": df["notional"].where(df["side"] == "sell", 0.0).groupby(df["label"]).sum(),
        }
    )
    out["v_total"] = out["v_buy"] + out["v_sell"]
    out["cvd_delta"] = out["v_buy"] - out["v_sell"]
    return out


def quotes_of(coin: str) -> pd.DataFrame:
    """The coin's BBO updates (a bid row then an ask row each), in exchange-time order."""
    df = pd.read_csv(COLLECTOR / f"prices_{coin}.csv")
    bids = df[df["side"] == "bid"].reset_index(drop=True)
    asks = df[df["side"] == "ask"].reset_index(drop=True)
    assert len(bids) == len(asks)
    assert (bids["exchange_timestamp"] == asks["exchange_timestamp"]).all()
    quotes = pd.DataFrame(
        {"ts": bids["exchange_timestamp"], "bid": bids["price"], "ask": asks["price"]}
    )
    return quotes.sort_values("ts", kind="stable").reset_index(drop=True)


def spread_mean(quotes: pd.DataFrame, label: int) -> float | None:
    """Time-weighted mean of ask - bid over ``[label - 60 s, label)`` (crossed quotes: no weight).

    Each quote holds from its exchange time until the next one; the one live at the minute's
    start covers the start. None if no quote was live in the minute.
    """
    start, end = label - 60_000, label
    ts = quotes["ts"].to_numpy(np.int64)
    spread = (quotes["ask"] - quotes["bid"]).to_numpy(np.float64)
    until = np.append(ts[1:], np.iinfo(np.int64).max)
    live = np.clip(np.minimum(until, end) - np.maximum(ts, start), 0, None).astype(np.float64)
    live[spread < 0] = 0.0
    weight = float(live.sum())
    return float((spread * live).sum() / weight) if weight > 0 else None


def cvd_levels(labels: list[int], deltas: list[float]) -> list[float]:
    """Running sum of ``deltas`` within each UTC day (a bar belongs to the day of ``t - 1 ms``)."""
    day = pd.to_datetime(pd.Series(labels) - 1, unit="ms", utc=True).dt.date
    return [float(v) for v in pd.Series(deltas).groupby(day).cumsum()]


def outages() -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Silences of more than 10 s across all the recording's receive times: (last, resume)."""
    received = pd.concat(
        pd.read_csv(path, usecols=["timestamp"])["timestamp"]
        for path in sorted(COLLECTOR.glob("*.csv"))
    ).sort_values(ignore_index=True)
    at = pd.to_datetime(received * 1e9, unit="ns", utc=True)
    silent = at.diff() > OUTAGE_SILENCE
    return [(at[i - 1], at[i]) for i in silent[silent].index]


# ----------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Expected:
    """The recomputed fields of one asset-minute."""

    open: float | None
    high: float | None
    low: float | None
    close: float | None
    trade_count: int
    v_buy: float
    v_sell: float
    v_total: float
    cvd_delta: float
    cvd_level: float
    cvd_scale: float  # sum of |flows| behind cvd_level: its summation error scale
    spread_mean: float | None


def expected_rows(replayed: Replayed) -> dict[tuple[str, int], Expected]:
    """Recompute every asset-minute the lattice sealed (no trades: OHLC from BBO mids, §5.1)."""
    out: dict[tuple[str, int], Expected] = {}
    quiet: dict[str, Any] = dict.fromkeys(("v_buy", "v_sell", "v_total", "cvd_delta"), 0.0) | {
        "trade_count": 0
    }
    for coin in COINS:
        frame = minute_trades(coin)
        bars: dict[int, dict[str, Any]] = {
            int(label): {str(c): frame.at[label, c] for c in frame.columns}
            for label in frame.index.to_list()
        }
        quotes = quotes_of(coin)
        labels = sorted(label for symbol, label in replayed.rows if symbol == coin)
        traded = [bars.get(label, quiet) for label in labels]
        levels = cvd_levels(labels, [float(b["cvd_delta"]) for b in traded])
        scales = cvd_levels(labels, [float(b["v_total"]) for b in traded])
        for label, bar, level, scale in zip(labels, traded, levels, scales, strict=True):
            out[(coin, label)] = Expected(
                open=bar.get("open"),
                high=bar.get("high"),
                low=bar.get("low"),
                close=bar.get("close"),
                trade_count=int(bar["trade_count"]),
                v_buy=float(bar["v_buy"]),
                v_sell=float(bar["v_sell"]),
                v_total=float(bar["v_total"]),
                cvd_delta=float(bar["cvd_delta"]),
                cvd_level=level,
                cvd_scale=scale,
                spread_mean=spread_mean(quotes, label),
            )
    return out


def _exact(got: Any, want: Any, _e: Expected) -> bool:
    return bool(got == want)


def _rel(got: Any, want: Any, _e: Expected) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return math.isclose(got, want, rel_tol=REL, abs_tol=0.0)


def _cvd_delta(got: Any, want: Any, e: Expected) -> bool:
    # A difference of two sums: its rounding scales with the gross flow, not with the net.
    return bool(abs(got - want) <= REL * e.v_total)


def _cvd_level(got: Any, want: Any, e: Expected) -> bool:
    return bool(abs(got - want) <= REL * e.cvd_scale)


Check = Callable[[Any, Any, Expected], bool]
#: Row column -> (recomputed attribute, comparison).
FIELDS: dict[str, tuple[str, Check]] = {
    "open": ("open", _exact),
    "high": ("high", _exact),
    "low": ("low", _exact),
    "close": ("close", _exact),
    "trade_count_m_1": ("trade_count", _exact),
    "v_buy_m_1": ("v_buy", _rel),
    "v_sell_m_1": ("v_sell", _rel),
    "v_total_m_1": ("v_total", _rel),
    "cvd_delta_m_1": ("cvd_delta", _cvd_delta),
    "cvd_level": ("cvd_level", _cvd_level),
    "spread_mean_m_1": ("spread_mean", _rel),
}


def _minute(label: int) -> str:
    return pd.Timestamp(label, unit="ms", tz="UTC").strftime("%H:%M")


def _overlaps(label: int, since: pd.Timestamp, until: pd.Timestamp, margin: pd.Timedelta) -> bool:
    end = pd.Timestamp(label, unit="ms", tz="UTC")
    return bool(since - margin < end and until + margin > end - MINUTE)


def _rows_of(replayed: Replayed, coin: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for (symbol, label), row in sorted(replayed.rows.items()):
        if symbol == coin:
            yield label, row


# ----------------------------------------------------------------------------- tests


def test_the_replay_delivers_the_capture_cleanly(replayed: Replayed) -> None:
    assert replayed.sink.dead == []
    assert replayed.stats.parser["duplicate_trades"] == 32
    assert replayed.stats.gaps == 6  # two outages x three assets
    rows = replayed.rows
    # Every asset has a row for every minute from the lattice's first to the last sealed one.
    for coin in COINS:
        labels = [label for label, _row in _rows_of(replayed, coin)]
        assert labels == list(range(labels[0], labels[-1] + 60_000, 60_000)), coin
    assert len(rows) == 27  # 12:56 .. 13:04 for BTC, ETH, SOL


@pytest.fixture(scope="module")
def expected(replayed: Replayed) -> dict[tuple[str, int], Expected]:
    return expected_rows(replayed)


@pytest.mark.parametrize("column", list(FIELDS))
def test_one_minute_rows_match_the_pandas_recomputation(
    replayed: Replayed, expected: dict[tuple[str, int], Expected], column: str
) -> None:
    assert expected.keys() == replayed.rows.keys()
    attr, check = FIELDS[column]
    wrong = []
    for key, want in sorted(expected.items()):
        got = replayed.rows[key][column]
        if not check(got, getattr(want, attr), want):
            wrong.append(
                f"{key[0]} {_minute(key[1])}: lattice {got!r}, pandas {getattr(want, attr)!r}"
            )
    assert wrong == [], f"{column}: {len(wrong)}/{len(expected)} asset-minutes differ"


def test_trades_before_the_first_sealed_minute_are_counted_late(replayed: Replayed) -> None:
    # The lattice starts at the first minute of its partition's stream time (clock.py): the
    # recording's older trades (SOL's trades snapshot reaches back to 12:54:48) precede it and
    # are counted as late on the asset's first row; every other trade is in a compared minute.
    for coin in COINS:
        trades = trades_of(coin)
        rows = dict(_rows_of(replayed, coin))
        first, last = min(rows), max(rows)
        before = int((trades["label"] < first).sum())
        assert rows[first]["late_ticks"] == before, coin
        in_rows = int(trades["label"].between(first, last).sum())
        assert sum(r["trade_count_m_1"] for r in rows.values()) == in_rows, coin
    sol = trades_of("SOL")
    assert int((sol["label"] < min(dict(_rows_of(replayed, "SOL")))).sum()) == 15


def test_the_recorded_outages_make_their_minutes_stale(replayed: Replayed) -> None:
    gaps = outages()
    assert [(_minute(a.value // 10**6), _minute(b.value // 10**6)) for a, b in gaps] == [
        ("12:57", "13:01"),
        ("13:01", "13:02"),
    ]
    touched = {}
    for coin in COINS:
        for label, row in _rows_of(replayed, coin):
            if any(_overlaps(label, a, b, pd.Timedelta(0)) for a, b in gaps):
                touched[(coin, _minute(label))] = row["dq_status"]
    minutes = ["12:58", "12:59", "13:00", "13:01", "13:02", "13:03"]
    assert touched == {(c, m): "stale" for c in COINS for m in minutes}


@pytest.mark.parametrize(
    "coin",
    [
        "BTC",
        "ETH",
        "SOL",
    ],
)
def test_outage_minutes_are_stale_because_of_the_gap(replayed: Replayed, coin: str) -> None:
    gaps = outages()
    missing = [
        _minute(label)
        for label, row in _rows_of(replayed, coin)
        if any(_overlaps(label, a, b, pd.Timedelta(0)) for a, b in gaps)
        and "gap" not in row["dq_reasons"]
    ]
    assert missing == []


def test_minutes_away_from_the_outages_are_not_stale_for_missing_data(
    replayed: Replayed,
) -> None:
    gaps = outages()
    checked = []
    for coin in COINS:
        for label, row in _rows_of(replayed, coin):
            if any(_overlaps(label, a, b, AWAY_FROM_OUTAGE) for a, b in gaps):
                continue
            checked.append((coin, _minute(label)))
            assert row["dq_status"] != "stale", (coin, _minute(label), row["dq_reasons"])
            assert not MISSING_DATA_REASONS & set(row["dq_reasons"]), (coin, _minute(label))
            # The capture has no asset contexts: OI is unknown, so "partial" for oi_stale only.
            assert set(row["dq_reasons"]) <= {"oi_stale"}, (coin, _minute(label))
    assert sorted({m for _c, m in checked}) == ["12:56", "12:57", "13:04"]
    assert len(checked) == 9
