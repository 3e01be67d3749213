"""The detector's report to the downstream stage: one ``trade.in.v0`` record per minute step.

The downstream stage (sizing, paper execution, exit advice) keeps one portfolio, so it must read
every partition's events and prices in one ordered stream (DESIGN.md §3: one input topic per
stage; the producer of a stream writes it into its consumer's input topic). So each detector
partition, in the same transaction as its events, writes to ``trade.in.v0``:

- on the market frame of minute t: the quotes of its assets at t (from their revision-0 1m rows)
  and the events that step emitted; ``final`` when the minute's final seal already came;
- on the final seal of t, if it came after the frame: the events of the revised rows (no
  quotes), ``final`` true.

A partition has nothing more to say about t once it sent a ``final`` record for t or any record
for a later minute: the downstream stage waits for that from every partition before it acts on
t, so its decisions depend only on the records, not on how the partitions interleave.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

TRADE_IN_TOPIC = "trade.in.v0"

_TF = {"m1": "1m", "m15": "15m", "h1": "1h"}


def _num(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def quote_of(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the ``Quote`` of a 1m feature row, or None when it has no prices (no trades).

    Bid and ask are the close mid -/+ half the minute's time-weighted mean spread (absolute,
    quote currency): the lattice keeps no closing BBO of its own.
    """
    o, h, lo, c = (_num(row, k) for k in ("open", "high", "low", "close"))
    if o is None or h is None or lo is None or c is None:
        return None
    mid, spread = _num(row, "mid_close"), _num(row, "spread_mean_m_1")
    bid = ask = None
    if mid is not None and spread is not None and mid > 0:
        bid, ask = mid - spread / 2, mid + spread / 2
    return {
        "asset_uid": int(row["asset_uid"]),
        "symbol": str(row["symbol"]),
        "open": o,
        "high": h,
        "low": lo,
        "close": c,
        "bid": bid,
        "ask": ask,
        "atr": _num(row, "atr_proxy_m_1"),
        "funding_rate": _num(row, "funding_h_1"),
        "cvd_slope_z": _num(row, "z_cvd_slope_m_5"),
        "absorp_score": _num(row, "absorp_score"),
        "dq_status": str(row["dq_status"]),
    }


def signal_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``Signal`` of an ``alpha.events.v0`` value (what sizing needs of it)."""
    tf = str(event["tf"])
    return {
        "event_id": str(event["event_id"]),
        "asset_uid": int(event["asset_uid"]),
        "symbol": str(event["symbol"]),
        "tf": _TF.get(tf, tf),
        "event_class": str(event["class"]),
        "subtype": str(event["subtype"]),
        "severity": int(event["severity"]),
        "revision": int(event["revision"]),
        "exchange_ts": int(event["exchange_ts"]),
    }


def trade_in(
    partition: int,
    partitions: int,
    minute_ms: int,
    rows: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    *,
    final: bool,
) -> dict[str, Any]:
    """Return the ``trade.in.v0`` value of one detector step (rows in asset order)."""
    quotes = [q for q in (quote_of(r) for r in rows) if q is not None]
    return {
        "partition": partition,
        "partitions": partitions,
        "minute_ms": minute_ms,
        "final": final,
        "quotes": quotes,
        "signals": [signal_of(e) for e in events],
        "alerts": [],
    }
