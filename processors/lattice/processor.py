"""The lattice processor: ``md.raw.v0`` records of one partition in, ``lattice.v0`` rows out.

``LatticeProcessor.step(partition, record)`` is the whole stage (STYLE.md: processor tier): it
routes each piece of the record to its asset-minute (open, amend or late by the partition's
stream-time clock), advances the clock, and on every seal builds the rows of every asset of the
partition. Every record but a gap marker advances the clock; a gap marker marks the minutes it
overlaps that are not final yet ``stale`` (§8.5). Late ticks are reported on the asset's next
1m row (its close row, or the revision of the minute closed last). An asset joins the
partition's seals at the first close after its first record.

State lives in four stores (``state.names``) behind a write-back cache: ``flush()`` encodes what
changed since the last flush, so a Faust worker writes once per commit and the test driver once
per record — the same bytes either way, and a processor rebuilt from the stores continues
identically.

A record that is not valid raises :class:`BadRecord` before anything changes (the agent sends
it to ``lattice.dlq``); anything else that raises is a bug and must stop the worker, whose state
is then restored from the committed changelog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packs.feature import FeaturePack
from processors.lattice import book as book_mod
from processors.lattice.clock import ClockState, Seal, TickFate, advance, fate, label_of
from processors.lattice.features import TF_MS, TF_SYMBOL, finish, fold, summarize_minute
from processors.lattice.minute import Carry, MinuteAcc, TradeColumns, build_bar, trade_columns
from schemas.errors import AlphaError
from state.codec import json_codec
from state.store import KeyValueStore

LATTICE_TOPIC = "lattice.v0"
MARKET_IN_TOPIC = "market.in.v0"
HISTORY = {"1m": 15, "15m": 5, "1h": 5}
KINDS = ("trades", "bbo", "book", "ctx", "candle", "heartbeat", "gap")
SUMMARY_FIELDS = (
    "mid_close", "ret_m_1", "ret_m_5", "v_total_m_1", "z_vol_m_1", "z_ret_abs_m_1",
    "is_vol_spike_m_1", "is_price_spike_up_m_1", "is_price_spike_down_m_1", "oi_close",
    "funding_h_1", "time_to_next_funding_sec", "basis_bp_m_5",
)  # fmt: skip


class BadRecord(AlphaError):
    """A raw record the lattice cannot use (it goes to ``lattice.dlq`` with this message)."""


@dataclass(frozen=True, slots=True)
class Output:
    """One record to send: topic, key (None for markers), partition, Avro value."""

    topic: str
    key: bytes | None
    partition: int
    value: dict[str, Any]


def kind_of(record: Mapping[str, Any]) -> str:
    """Return the body kind of a decoded ``md.raw.v0`` value."""
    body = record["body"]
    for field, kind in (
        ("trades", "trades"), ("bid_px", "bbo"), ("bids", "book"), ("open_interest", "ctx"),
        ("interval", "candle"), ("partition", "heartbeat"), ("since_ts", "gap"),
    ):  # fmt: skip
        if field in body:
            return kind
    raise BadRecord("record body is none of trades, bbo, book, ctx, candle, heartbeat, gap")


def validate(record: Mapping[str, Any]) -> str:
    """Check a decoded raw record enough that applying it cannot fail; return its kind.

    Raises:
        BadRecord: With the reason.
    """
    return _validate(record)[0]


def _validate(record: Mapping[str, Any]) -> tuple[str, TradeColumns | None]:
    """:func:`validate`, and a trade batch's columns when it is shaped as decoded."""
    try:
        kind = kind_of(record)
        ts, uid = int(record["exchange_ts"]), int(record["asset_uid"])
        int(record["ingest_ts"])
        str(record["source"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(f"malformed envelope: {exc!r}") from None
    if ts <= 0:
        raise BadRecord(f"exchange_ts {ts} is not a positive epoch ms")
    if kind != "heartbeat" and uid <= 0:
        raise BadRecord(f"{kind} record without an asset_uid")
    try:
        columns = _check_body(kind, record["body"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(f"malformed {kind} body: {exc!r}") from None
    return kind, columns


def _check_body(kind: str, body: Mapping[str, Any]) -> TradeColumns | None:  # noqa: C901
    """Raise KeyError/TypeError/ValueError if a body of ``kind`` cannot be applied.

    One branch per kind. Returns a trade batch's columns when it is shaped as decoded (its
    checks then run on the columns: ids and times are ints, prices and sizes strings).
    """
    if kind == "trades":
        trades = body["trades"]
        cols = trade_columns(trades)
        if cols is not None and set(cols.side) <= {"buy", "sell"} and min(cols.ts, default=1) > 0:
            return cols
        # Trade by trade, as before: raises for the first bad trade (or passes a batch that
        # is valid but not shaped as decoded, e.g. a tid given as a numeric string).
        for t in trades:
            int(t["tid"]), str(t["px"]), str(t["sz"])
            if t["side"] not in ("buy", "sell") or int(t["exchange_ts"]) <= 0:
                raise ValueError(f"trade side/time {t['side']!r}/{t['exchange_ts']}")
    elif kind == "book":
        for lv in [*body["bids"], *body["asks"]]:
            float(lv["px"]), float(lv["sz"])
    elif kind == "ctx":
        for f in ("open_interest", "mark_px", "oracle_px", "funding"):
            if body.get(f) is not None:
                float(body[f])
        interval = body.get("funding_interval_ms")
        if interval is not None and int(interval) <= 0:
            raise ValueError("funding_interval_ms must be positive")
    elif kind == "candle":
        for f in ("o", "h", "l", "c", "v"):
            float(body[f])
    elif kind == "gap":
        int(body["since_ts"])
    return None


def _by_minute(
    trades: list[Mapping[str, Any]], cols: TradeColumns | None
) -> list[tuple[list[Mapping[str, Any]], TradeColumns | None]]:
    """Split a batch by the minute of each trade, minutes in order, trades in arrival order.

    Each part comes with its columns when the batch had them and is all one minute.
    """
    times = cols.ts if cols is not None else [int(t["exchange_ts"]) for t in trades]
    if not times:
        return []
    if label_of(min(times)) == label_of(max(times)):
        return [(trades, cols)]  # the usual case: one message, one minute
    by_label: dict[int, list[Mapping[str, Any]]] = {}
    for t, ts in zip(trades, times, strict=True):
        by_label.setdefault(label_of(ts), []).append(t)
    return [(by_label[label], None) for label in sorted(by_label)]


def _minute(asset: dict[str, Any], clock: ClockState, at: int, pieces: int) -> MinuteAcc | None:
    """Return the accumulator for ``pieces`` at time ``at``, or None (counted) if they are late."""
    verdict = fate(clock, at)
    if verdict is TickFate.LATE:
        asset["late"] += pieces
        return None
    label = label_of(at)
    if verdict is TickFate.AMEND and label not in asset["amended"]:
        asset["amended"].append(label)
    data = asset["minutes"].get(str(label))
    # No copy: _keep replaces the minute's data with the accumulator's right after.
    return MinuteAcc(label) if data is None else MinuteAcc.from_json(data, copy=False)


def _keep(asset: dict[str, Any], acc: MinuteAcc) -> None:
    asset["minutes"][str(acc.label_ts)] = acc.to_json()


def _add(acc: MinuteAcc, kind: str, ts: int, body: Mapping[str, Any]) -> None:
    """Add a non-trade body to its minute."""
    if kind == "bbo":
        acc.add_quote(ts, body)
    elif kind == "book":
        acc.add_book(ts, book_mod.sample(ts, body["bids"], body["asks"]))
    elif kind == "ctx":
        acc.add_ctx(ts, body)
    elif kind == "candle" and body["interval"] == "1m":
        acc.add_candle(body)


_STATE = json_codec("lattice state")


def _loads(data: bytes | None) -> Any:
    return None if data is None else _STATE.decode(data)


class LatticeProcessor:
    """The lattice stage over four stores (see module docstring).

    Args:
        pack: The feature pack.
        stores: ``lattice.accumulators.v1``, ``lattice.baselines.v1``, ``lattice.sketches.v1``,
            ``lattice.watermarks.v1`` by name.
    """

    def __init__(self, pack: FeaturePack, stores: Mapping[str, KeyValueStore]) -> None:
        self.pack = pack
        self.config_hash = pack.hash()
        self._acc = stores["lattice.accumulators.v1"]
        self._base = stores["lattice.baselines.v1"]
        self._sketch = stores["lattice.sketches.v1"]
        self._wm = stores["lattice.watermarks.v1"]
        self._cache: dict[tuple[str, bytes], Any] = {}
        self._dirty: set[tuple[str, bytes]] = set()
        #: Baseline updates by (feature, tf) since the caller last cleared it (metrics only).
        self.baseline_updates: dict[tuple[str, str], int] = {}

    # ----------------------------------------------------------------- state cache
    def _store(self, name: str) -> KeyValueStore:
        return {"acc": self._acc, "base": self._base, "sketch": self._sketch, "wm": self._wm}[name]

    def _get(self, name: str, key: bytes) -> Any:
        ck = (name, key)
        if ck not in self._cache:
            raw = self._store(name).get(key)
            self._cache[ck] = raw if name == "sketch" else _loads(raw)
        return self._cache[ck]

    def _put(self, name: str, key: bytes, value: Any) -> None:
        self._cache[(name, key)] = value
        self._dirty.add((name, key))

    def flush(self) -> int:
        """Write every changed state value to its store; return how many were written."""
        by_store: dict[str, dict[bytes, bytes | None]] = {}
        for name, key in sorted(self._dirty):
            value = self._cache[(name, key)]
            data = value if name == "sketch" else (None if value is None else _STATE.encode(value))
            by_store.setdefault(name, {})[key] = data
        for name, batch in by_store.items():
            self._store(name).apply(batch)
        n = len(self._dirty)
        self._dirty.clear()
        return n

    def drop_cache(self) -> None:
        """Forget cached state (after a flush, or to re-read the stores)."""
        self._dirty.clear()
        self._cache.clear()

    # ----------------------------------------------------------------- the step
    def step(self, partition: int, record: Mapping[str, Any]) -> list[Output]:
        """Apply one raw record of ``partition``; return the records to send, in order.

        Raises:
            BadRecord: The record is malformed; no state changed.
        """
        kind, columns = _validate(record)
        pkey = b"p:%d" % partition
        part = self._get("wm", pkey) or {"clock": [-1, 0, 0], "assets": []}
        clock = ClockState(*part["clock"])
        if kind != "heartbeat":
            self._apply(partition, part, clock, kind, record, columns)
        stream_ts = int(record["exchange_ts"])
        if kind == "gap" and clock.watermark >= 0:
            # A gap marker reports the past (its exchange_ts is the resume time): moving stream
            # time with it would seal the outage minutes of the partition's other assets before
            # their own markers, queued right behind it, could mark them.
            stream_ts = clock.watermark
        new_clock, seals = advance(
            clock,
            stream_ts,
            lateness_ms=self.pack.lattice.lateness_ms,
            grace_ms=self.pack.lattice.grace_ms,
        )
        part = dict(part, clock=[new_clock.watermark, new_clock.next_close, new_clock.next_final])
        self._put("wm", pkey, part)
        out: list[Output] = []
        for seal, label in seals:
            out += self._seal(
                partition, part, seal, label, new_clock.watermark, int(record["ingest_ts"])
            )
        return out

    def _asset(self, uid: int) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._get("acc", b"a:%d" % uid)
        return value

    def _apply(
        self,
        partition: int,
        part: dict[str, Any],
        clock: ClockState,
        kind: str,
        record: Mapping[str, Any],
        columns: TradeColumns | None,
    ) -> None:
        uid = int(record["asset_uid"])
        asset = self._asset(uid)
        if asset is None:
            asset = {
                "uid": uid, "venue": str(record["venue"]), "symbol": str(record["symbol"]),
                "minutes": {}, "carry": Carry().to_json(), "hist": {"1m": [], "15m": [], "1h": []},
                "amended": [], "late": 0, "late_close": 0, "gaps": [], "last_close": 0,
            }  # fmt: skip
            part["assets"] = sorted({*part["assets"], uid})
        ts = int(record["exchange_ts"])
        body = record["body"]
        if kind == "trades":
            for trades, cols in _by_minute(body["trades"], columns):
                acc = _minute(asset, clock, int(trades[0]["exchange_ts"]), len(trades))
                if acc is not None:
                    acc.add_trades(trades, cols)
                    _keep(asset, acc)
            acc = _minute(asset, clock, ts, 0)
            if acc is not None:
                acc.note(record)
                _keep(asset, acc)
        elif kind == "gap":
            asset["gaps"].append([int(body["since_ts"]), ts])
        else:
            acc = _minute(asset, clock, ts, 1)
            if acc is not None:
                acc.note(record)
                _add(acc, kind, ts, body)
                _keep(asset, acc)
        self._put("acc", b"a:%d" % uid, asset)

    # ----------------------------------------------------------------- seals
    def _seal(
        self,
        partition: int,
        part: dict[str, Any],
        seal: Seal,
        label: int,
        watermark: int,
        ingest_ts: int,
    ) -> list[Output]:
        out: list[Output] = []
        for uid in part["assets"]:
            asset = self._asset(uid)
            if asset is None:  # pragma: no cover - assets are written with the partition
                raise RuntimeError(f"asset {uid} of partition {partition} has no state")
            out += [
                Output(o.topic, o.key, partition, o.value)
                for o in self._seal_asset(partition, asset, seal, label, ingest_ts)
            ]
            self._put("acc", b"a:%d" % uid, asset)
        rows = len(out)
        marker = {
            "partition": partition, "seal": seal.value, "exchange_ts": label,
            "watermark": watermark, "ingest_ts": ingest_ts,
        }  # fmt: skip
        out.append(
            Output(
                LATTICE_TOPIC,
                None,
                partition,
                dict(marker, rows=rows, config_hash=self.config_hash),
            )
        )
        summaries = [self._summary(o, partition) for o in out if o.key is not None]
        out += [Output(MARKET_IN_TOPIC, None, 0, s) for s in summaries]
        out.append(Output(MARKET_IN_TOPIC, None, 0, dict(marker, rows=len(summaries))))
        return out

    def _summary(self, row_out: Output, partition: int) -> dict[str, Any]:
        row = row_out.value
        return {
            "asset_uid": row["asset_uid"], "symbol": row["symbol"], "tf": row["tf"],
            "exchange_ts": row["exchange_ts"], "revision": row["revision"], "partition": partition,
            "dq_status": row["dq_status"], "warmup": row["warmup"],
            **{f: row[f] for f in SUMMARY_FIELDS},
        }  # fmt: skip

    def _build_1m(
        self, asset: dict[str, Any], label: int
    ) -> tuple[dict[str, Any], Any, Any, Any, Carry]:
        acc_json = asset["minutes"].get(str(label))
        # build_bar only reads the minute: no copy of its samples.
        acc = MinuteAcc.from_json(acc_json, copy=False) if acc_json else MinuteAcc(label)
        bar = build_bar(
            acc, Carry.from_json(asset["carry"]),
            spread_min_samples=self.pack.micro.spread_p95_min_samples,
            oi_stale_ms=self.pack.dq.oi_stale_ms,
        )  # fmt: skip
        hist = asset["hist"]["1m"]
        summary = summarize_minute(bar, hist[-1] if hist else None, self.pack)
        gap = any(since < label and until > label - TF_MS["1m"] for since, until in asset["gaps"])
        base = self._baselines(asset["uid"])
        row, new_base, new_sketch, finished = finish(
            "1m", summary, hist, base.get("1m", {}), self._sketches(asset["uid"], "1m"),
            gap=gap, pack=self.pack,
        )  # fmt: skip
        return row, new_base, new_sketch, finished, bar.carry

    def _seal_asset(
        self, partition: int, asset: dict[str, Any], seal: Seal, label: int, ingest_ts: int
    ) -> list[Output]:
        uid = asset["uid"]
        fresh = asset.get("last_close", label) < label and str(label) not in asset["minutes"]
        if seal is Seal.FINAL and fresh:
            # The asset appeared after this minute closed and brought no data for it: it has no
            # row for the minute, so the minute is not part of its history either.
            return []
        if seal is Seal.CLOSE:
            asset["last_close"] = label
            # Late ticks counted since the last close are reported on this row; a revision of
            # it at final reports them again, with those counted since (one count per tick in
            # the upserted table).
            row = self._build_1m(asset, label)[0]
            late, asset["late_close"], asset["late"] = asset["late"], asset["late"], 0
            return [
                self._row(asset, "1m", label, row, 0, final=False, ingest_ts=ingest_ts, late=late)
            ]
        row, new_base, new_sketch, finished, carry = self._build_1m(asset, label)
        out: list[Output] = []
        if label in asset["amended"]:
            late = asset.get("late_close", 0) + asset["late"]
            asset["late"] = 0
            out.append(
                self._row(asset, "1m", label, row, 1, final=True, ingest_ts=ingest_ts, late=late)
            )
        self._keep_baselines(uid, "1m", new_base, new_sketch)
        asset["minutes"].pop(str(label), None)
        asset["amended"] = [a for a in asset["amended"] if a != label]
        asset["carry"] = carry.to_json()
        asset["gaps"] = [g for g in asset["gaps"] if g[1] > label - TF_MS["1m"]]
        self._push(asset, "1m", finished)
        for tf, parts_tf, n in (("15m", "1m", 15), ("1h", "15m", 4)):
            if label % TF_MS[tf]:
                break
            parts = [h for h in asset["hist"][parts_tf] if h["label"] > label - TF_MS[tf]]
            if len(parts) != n:
                break  # no partial rollups (§2.1): the asset has not been here a whole window
            summary = fold(tf, parts)
            base = self._baselines(uid)
            trow, tbase, tsketch, tfinished = finish(
                tf, summary, asset["hist"][tf], base.get(tf, {}), self._sketches(uid, tf),
                gap=False, pack=self.pack,
            )  # fmt: skip
            self._keep_baselines(uid, tf, tbase, tsketch)
            self._push(asset, tf, tfinished)
            out.append(
                self._row(asset, tf, label, trow, 0, final=True, ingest_ts=ingest_ts, late=0)
            )
        return out

    def _push(self, asset: dict[str, Any], tf: str, summary: dict[str, Any]) -> None:
        hist = asset["hist"][tf]
        hist.append(summary)
        p = self.pack  # keep every lookback the pack's windows need (ret_m_15 at least)
        windows = (p.oi_window_m, p.basis_window_m) if tf == "1m" else ()
        keep = max(HISTORY[tf], p.cvd_slope_bars, *windows)
        del hist[: max(0, len(hist) - keep)]

    def _baselines(self, uid: int) -> dict[str, Any]:
        value: dict[str, Any] = self._get("base", b"b:%d" % uid) or {}
        return value

    def _sketches(self, uid: int, tf: str) -> dict[str, bytes | None]:
        return {
            f: self._get("sketch", b"s:%d:%s:%s" % (uid, tf.encode(), f.encode()))
            for f in self.pack.quantiles.features
        }

    def _keep_baselines(
        self, uid: int, tf: str, base: dict[str, Any], sketches: Mapping[str, bytes | None]
    ) -> None:
        current = self._baselines(uid)
        if current.get(tf) != base:
            before = current.get(tf, {})
            for feature in sorted(base):
                if base[feature] != before.get(feature):
                    self.baseline_updates[(feature, tf)] = (
                        self.baseline_updates.get((feature, tf), 0) + 1
                    )
            self._put("base", b"b:%d" % uid, dict(current, **{tf: base}))
        for feature, data in sketches.items():
            key = b"s:%d:%s:%s" % (uid, tf.encode(), feature.encode())
            if data is not None and data != self._get("sketch", key):
                self._put("sketch", key, data)

    def _row(
        self,
        asset: dict[str, Any],
        tf: str,
        label: int,
        cols: dict[str, Any],
        revision: int,
        *,
        final: bool,
        ingest_ts: int,
        late: int,
    ) -> Output:
        value = {
            "asset_uid": asset["uid"], "venue": asset["venue"], "symbol": asset["symbol"],
            "tf": TF_SYMBOL[tf], "exchange_ts": label, "revision": revision, "final": final,
            "ingest_ts": ingest_ts, "feature_pack": self.pack.feature_pack,
            "pack_rev": self.pack.pack_rev, "config_hash": self.config_hash,
            "is_in_universe": None, "is_hot": None, "universe_rev": None,
            "ingest_lag_ms": ingest_ts - label, "late_ticks": late, "rs_score_m_5": None,
            "extras": {}, **cols,
        }  # fmt: skip
        return Output(LATTICE_TOPIC, str(asset["uid"]).encode(), -1, value)
