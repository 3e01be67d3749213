"""Factories for lattice tests: small packs, raw values of hand-built assets, row readers.

Every raw value gets ``ingest_ts = exchange_ts + LAG_MS`` unless told otherwise, so the clock skew
of a bar is ``LAG_MS``. Prices and sizes are written with ``str(float)``, which reads back as the
same double, so a hand computation in floats matches the lattice bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from connectors.synthetic.scenarios import SYNTHETIC_SECTORS
from packs.detector import DetectorPack, load_detector_pack
from packs.feature import PACK_DIR, FeaturePack, load_feature_pack
from schemas import raw
from topology.driver import TopologyTestDriver

START_TS = 1_756_900_800_000  # 2025-09-03T12:00:00Z: aligned to the minute, 15 min and hour
MINUTE_MS = 60_000
LAG_MS = 100
UID = 101
VENUE = "hl"

Row = dict[str, Any]


def symbol(uid: int) -> str:
    """Return the display symbol of a test asset."""
    return f"A{uid}"


def label(minute: int) -> int:
    """Return the label (close) of the bar of ``minute`` (0 = the minute starting at START_TS)."""
    return START_TS + (minute + 1) * MINUTE_MS


def small_pack(min_samples: int = 3, **changes: Any) -> FeaturePack:
    """Return the shipped pack with ``baselines.min_samples`` (and top-level ``changes``) set.

    The result is validated like a pack file, so an impossible change fails here.
    """
    data = load_feature_pack().model_dump()
    data["baselines"]["min_samples"] = min_samples
    data.update(changes)
    return FeaturePack.model_validate(data)


def pack_file(directory: Path, min_samples: int) -> Path:
    """Write the shipped feature pack with ``baselines.min_samples`` set; return its path.

    For workers, which load packs from files (``--feature-pack``).
    """
    data = yaml.safe_load((PACK_DIR / "v1.0.yaml").read_text())
    data["baselines"]["min_samples"] = min_samples
    path = directory / "feature-test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def synthetic_detector_pack() -> DetectorPack:
    """Return the shipped detector pack with the synthetic assets' sector tags added."""
    data = load_detector_pack().model_dump()
    data["sectors"] = {**data["sectors"], **SYNTHETIC_SECTORS}
    return DetectorPack.model_validate(data)


def synthetic_detector_pack_file(directory: Path) -> Path:
    """Write :func:`synthetic_detector_pack` as YAML (``--detector-pack``); return its path."""
    path = directory / "detector-test.yaml"
    path.write_text(yaml.safe_dump(synthetic_detector_pack().model_dump(mode="json")))
    return path


def driver(pack: FeaturePack | None = None, *, flush_every: int = 1) -> TopologyTestDriver:
    """Return a one-partition driver (every value goes to partition 0)."""
    return TopologyTestDriver(pack or small_pack(), partitions=1, flush_every=flush_every)


def tr(tid: int, px: float, sz: float, side: raw.Side, ts: int) -> dict[str, Any]:
    """Return one trade of a batch."""
    return raw.trade(tid, str(px), str(sz), side, ts)


def batch(
    trades: Sequence[dict[str, Any]],
    *,
    uid: int = UID,
    lag_ms: int = LAG_MS,
    source: raw.Source = "ws",
) -> raw.RawValue:
    """Return a trade batch received ``lag_ms`` after its latest trade."""
    ts = max(int(t["exchange_ts"]) for t in trades)
    return raw.trade_batch(uid, VENUE, symbol(uid), source, ts + lag_ms, trades)


def quote(
    ts: int, bid: float | None, ask: float | None, *, uid: int = UID, lag_ms: int = LAG_MS
) -> raw.RawValue:
    """Return a BBO update (a None side is empty)."""
    return raw.bbo(
        uid,
        VENUE,
        symbol(uid),
        "ws",
        ts,
        ts + lag_ms,
        None if bid is None else (str(bid), "1.0", 1),
        None if ask is None else (str(ask), "1.0", 1),
    )


def book(
    ts: int,
    bids: Sequence[tuple[float, float]],
    asks: Sequence[tuple[float, float]],
    *,
    uid: int = UID,
    lag_ms: int = LAG_MS,
) -> raw.RawValue:
    """Return a book snapshot from ``(px, sz)`` levels, best first."""
    return raw.book(
        uid,
        VENUE,
        symbol(uid),
        "ws",
        ts,
        ts + lag_ms,
        [raw.level(str(p), str(s)) for p, s in bids],
        [raw.level(str(p), str(s)) for p, s in asks],
    )


def ctx(ts: int, *, uid: int = UID, lag_ms: int = LAG_MS, **fields: float) -> raw.RawValue:
    """Return an asset context (see :func:`ctx_of`)."""
    return ctx_of(ts, fields, uid=uid, lag_ms=lag_ms)


def ctx_of(
    ts: int, fields: Mapping[str, float], *, uid: int = UID, lag_ms: int = LAG_MS
) -> raw.RawValue:
    """Return an asset context; ``*_ms``/``*_ts`` fields stay ints, the rest become decimals."""
    values: dict[str, str | int | None] = {
        k: int(v) if k.endswith(("_ms", "_ts")) else str(v) for k, v in fields.items()
    }
    return raw.asset_ctx(uid, VENUE, symbol(uid), "ws", ts, ts + lag_ms, **values)


def candle(
    minute: int, ohlcv: tuple[float, float, float, float, float], n: int | None, *, uid: int = UID
) -> raw.RawValue:
    """Return a 1m candle snapshot of ``minute`` (close_ts inclusive, as Hyperliquid sends it)."""
    open_ts = START_TS + minute * MINUTE_MS
    o, h, lo, c, v = (str(x) for x in ohlcv)
    return raw.candle(
        uid,
        VENUE,
        symbol(uid),
        "candle_snapshot",
        open_ts + MINUTE_MS - 1 + LAG_MS,
        interval="1m",
        open_ts=open_ts,
        close_ts=open_ts + MINUTE_MS - 1,
        ohlcv=(o, h, lo, c, v),
        n=n,
    )


def heartbeat(ts: int, partition: int = 0) -> raw.RawValue:
    """Return a heartbeat carrying stream time ``ts``."""
    return raw.heartbeat(partition, ts, ts, "ws")


def healthy_minute(
    minute: int,
    *,
    mid: float,
    uid: int = UID,
    half_spread: float = 0.5,
    oi: float | None = 1000.0,
    mark: float | None = None,
    oracle: float | None = None,
    trades: Sequence[tuple[float, float, raw.Side]] | None = None,
    tid0: int | None = None,
    book_snapshot: bool = True,
) -> list[raw.RawValue]:
    """Return one asset-minute that passes every DQ check, in exchange-time order.

    A BBO at ``mid +- half_spread`` every 2 s from the minute's start (the last 2 s before the
    close), one book snapshot at +30 s (bid 2 lots, ask 1 lot at the BBO), one context at +50 s,
    and ``trades`` as ``(px, sz, side)`` spread over +5 s .. +45 s in one batch each (default: a
    buy of 1 at the ask and a sell of 1 at the bid).
    """
    start = START_TS + minute * MINUTE_MS
    bid, ask = mid - half_spread, mid + half_spread
    out: list[tuple[int, int, raw.RawValue]] = [
        (start + k * 2_000, 0, quote(start + k * 2_000, bid, ask, uid=uid)) for k in range(30)
    ]
    if book_snapshot:
        out.append((start + 30_000, 1, book(start + 30_000, [(bid, 2.0)], [(ask, 1.0)], uid=uid)))
    fields: dict[str, float] = {}
    if oi is not None:
        fields["open_interest"] = oi
    if mark is not None:
        fields["mark_px"] = mark
    if oracle is not None:
        fields["oracle_px"] = oracle
    out.append((start + 50_000, 2, ctx_of(start + 50_000, fields, uid=uid)))
    prints: list[tuple[float, float, raw.Side]] = (
        [(ask, 1.0, "buy"), (bid, 1.0, "sell")] if trades is None else list(trades)
    )
    first_tid = (minute + 1) * 1_000 if tid0 is None else tid0
    for i, (px, sz, side) in enumerate(prints):
        ts = start + 5_000 + i * (40_000 // max(len(prints), 1))
        out.append((ts, 3, batch([tr(first_tid + i, px, sz, side, ts)], uid=uid)))
    return [v for _ts, _k, v in sorted(out, key=lambda x: (x[0], x[1]))]


def pipe_minutes(
    d: TopologyTestDriver, minutes: Iterable[tuple[int, Sequence[raw.RawValue]]]
) -> None:
    """Pipe each ``(minute, values)`` on partition 0, then a heartbeat that makes it final."""
    for minute, values in minutes:
        for v in values:
            d.pipe(v, partition=0)
        d.pipe(heartbeat(label(minute) + 3_000), partition=0)


def rows(d: TopologyTestDriver, tf: str = "m1", uid: int = UID) -> dict[int, Row]:
    """Return the asset's rows of ``tf`` by label, the highest revision of each."""
    out: dict[int, Row] = {}
    for s in d.read("lattice.v0", rows_only=True):
        v = s.value
        if v["asset_uid"] != uid or v["tf"] != tf:
            continue
        if v["exchange_ts"] not in out or v["revision"] >= out[v["exchange_ts"]]["revision"]:
            out[v["exchange_ts"]] = v
    return out


def all_rows(d: TopologyTestDriver, tf: str = "m1", uid: int = UID) -> list[Row]:
    """Return every row of ``tf`` of the asset as sent, revisions included, in order."""
    return [
        s.value
        for s in d.read("lattice.v0", rows_only=True)
        if s.value["asset_uid"] == uid and s.value["tf"] == tf
    ]
