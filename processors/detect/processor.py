"""The detector processor: ``lattice.v0`` records of one partition in, events out (spec 002 §9-§11).

``DetectorProcessor.step(partition, value)`` is the whole detect stage (STYLE.md: processor tier).
A partition of ``lattice.v0`` carries, in offset order, the lattice's feature rows and seal
markers of its assets and, appended by the market stage once *every* partition sealed minute t,
the market frame of t. So the processor:

- buffers the partition's 1m rows per bar label, revision 0 and revision 1 apart, and the close
  seal's watermark (the event's ``emitted_at``, stream time);
- on the frame of t: evaluates every revision-0 row of t in asset order with the asset's history,
  the partition's market history and the frame (:func:`processors.detect.catalogue.evaluate`),
  scores all of the minute's triggers in one :meth:`Scorer.step`, builds the events, then folds
  the rows and the frame into the histories; rows of labels before t that never got a frame are
  dropped (counted);
- the revised rows of t (the lattice amends within grace and writes them before t's ``final``
  seal) are evaluated against the frame of t in a step of their own once *both* the frame and
  the final seal of t arrived: both precede the frame of t+1, so the scorer sees the same steps
  in the same order however the market's frames interleave with the lattice's records. Their
  events carry ``revision`` 1 and distinct ids;
- rows or seals of a minute already framed, repeated frames and 15m/1h rows: ignored (counted
  in :attr:`counters`).

The outputs depend only on the partition's own record sequence, so 1 or N workers, a restart or
a replay give the same events. State lives in one store (``detect.state.v1``): the partition's
value under ``p:<partition>`` (scorer state, market history, last frame), its minutes buffered
until their market frame under ``m:<partition>:<label>`` (one value each, written when changed:
a full-speed replay can leave hundreds pending), one history per asset under ``a:<asset_uid>``
and its IQR digests and bounds (§4.4) under ``q:<asset_uid>``, behind a write-back cache that
:meth:`flush` writes (once per commit in the worker, per record in the test driver).

A record that is not usable raises :class:`BadLatticeRecord` before anything changes (the agent
sends it to ``alpha.events.dlq``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packs.detector import SUBTYPE_FAMILY, DetectorPack, Tier
from packs.feature import FeaturePack
from packs.universe import UniversePolicy, load_universe_policy
from processors.detect.catalogue import evaluate, guard_limits
from processors.detect.events import Provenance, build_event
from processors.detect.feed import TRADE_IN_TOPIC, trade_in
from processors.detect.scoring import Emission, Scorer, ScorerState
from processors.detect.types import (
    AssetHistory,
    DetectContext,
    MarketHistory,
    Suppression,
    Trigger,
    finite,
    update_history,
    update_market_history,
)
from processors.lattice.baselines import iqr_bounds, sketch_add, sketch_count
from schemas.errors import AlphaError
from schemas.ids import partition_for
from state.codec import json_codec
from state.store import KeyValueStore

EVENTS_TOPIC = "alpha.events.v0"
STORE = "detect.state.v1"
DAY_MS = 86_400_000
#: Detector family -> hot_reason (§7.4, D.8); other families make an asset hot by severity.
_HOT_REASON = {
    "vol_spike_m_1": "vol_spike",
    "price_spike_m_1": "price_spike",
    "oi_spike_m_5": "oi_spike",
    "liq_cluster_m_5": "liq_cluster",
    "basis_jolt_m_5": "basis_jolt",
}
#: The z columns detectors use as primaries or secondaries: their IQR bounds clamp the
#: severity inputs (§4.4, §10.2).
IQR_COLUMNS = ("z_basis_m_5", "z_oi_roc_m_5", "z_ret_abs_m_1", "z_spread_m_1", "z_vol_m_1")
_CODEC = json_codec(STORE)
_STATE_VERSION = 1


class BadLatticeRecord(AlphaError):
    """A ``lattice.v0`` record the detector cannot use (dead-lettered with this message)."""


@dataclass(frozen=True, slots=True)
class Output:
    """One record to send: topic, key, partition, Avro value."""

    topic: str
    key: bytes | None
    partition: int
    value: dict[str, Any]


@dataclass(slots=True)
class StepReport:
    """What one step decided (metrics only; not state)."""

    triggers: list[Trigger] = field(default_factory=list)
    emissions: list[Emission] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)


def kind_of(body: Mapping[str, Any]) -> str:
    """Return ``row``, ``seal`` or ``frame`` for a decoded ``lattice.v0`` body."""
    if "assets" in body:
        return "frame"
    if "seal" in body:
        return "seal"
    if "asset_uid" in body and "tf" in body:
        return "row"
    raise BadLatticeRecord("lattice.v0 body is none of FeatureRow, SealMarker, MarketFrame")


class DetectorProcessor:
    """The detect stage over one store (see module docstring).

    Args:
        pack: The detector pack.
        feature_pack: The feature pack (its §8.3 illiquidity guard, for the §10.7 penalties).
        stores: ``detect.state.v1``.
        provenance: Stamped on every event.
        event_partitions: Partitions of ``alpha.events.v0`` (events are keyed by asset_uid).
        policy: The universe policy whose ``hotlist`` section sets the hot rule and TTL
            (default: the shipped one).
        trade_partitions: The ``lattice.v0`` partition count, to report each minute step to
            ``trade.in.v0`` (:mod:`processors.detect.feed`); None: no such reports.
    """

    def __init__(
        self,
        pack: DetectorPack,
        feature_pack: FeaturePack,
        stores: Mapping[str, KeyValueStore],
        provenance: Provenance,
        event_partitions: int = 8,
        policy: UniversePolicy | None = None,
        trade_partitions: int | None = None,
    ) -> None:
        self.pack = pack
        self.trade_partitions = trade_partitions
        self.illiquidity = feature_pack.illiquidity
        self.hotlist = (policy or load_universe_policy()).hotlist
        self.iqr_k = feature_pack.quantiles.iqr_k
        self.iqr_centroids = feature_pack.quantiles.max_centroids
        self.iqr_min_samples = feature_pack.baselines.min_samples
        self.scorer = Scorer(pack)
        self.provenance = provenance
        #: Symbol -> sector tag, from the pack (so it is in config_hash).
        self.sectors = dict(pack.sectors)
        self.event_partitions = event_partitions
        self._store = stores[STORE]
        self._cache: dict[bytes, Any] = {}
        self._dirty: set[bytes] = set()
        #: Per ``p:<partition>`` key: its pending minutes as last written (``m:`` key -> bytes).
        self._minutes: dict[bytes, dict[bytes, bytes]] = {}
        self.report = StepReport()
        #: Outcome counts since the caller last cleared them (metrics only; not state).
        self.counters: dict[str, int] = {}

    # ----------------------------------------------------------------- state
    def _get(self, key: bytes) -> Any:
        if key not in self._cache:
            data = self._store.get(key)
            value = None if data is None else _CODEC.decode(data)
            if value is not None and key.startswith(b"q:"):
                value = _iqr_from_json(value)
            if value is not None and key.startswith(b"a:"):
                value = AssetHistory.from_state(value)
            if value is not None and key.startswith(b"p:"):
                value = self._load_minutes(key, value)
            self._cache[key] = value
        return self._cache[key]

    def _load_minutes(self, key: bytes, state: dict[str, Any]) -> dict[str, Any]:
        """Put the partition's pending minutes (``m:<partition>:<label>`` values) back."""
        prefix = b"m" + key[1:] + b":"
        pending = dict(state.get("pending") or {})  # a state written before the split
        saved: dict[bytes, bytes] = {}
        for k, data in self._store.scan(prefix):
            pending[k[len(prefix) :].decode()] = _CODEC.decode(data)
            saved[k] = data
        self._minutes[key] = saved
        return {**state, "pending": pending}

    def _split_minutes(
        self, key: bytes, state: Mapping[str, Any], batch: dict[bytes, bytes | None]
    ) -> dict[str, Any]:
        """Add the changed pending minutes of a partition state to ``batch``; return the core.

        Minutes wait in the partition state for their market frame; a full-speed replay can
        leave hundreds of them pending, which as one value outgrew Kafka's 1 MB record limit
        in the changelog. Each minute is its own value, written when it changed.
        """
        prefix = b"m" + key[1:] + b":"
        saved = self._minutes.get(key, {})
        now: dict[bytes, bytes] = {}
        for label, minute in state["pending"].items():
            k = prefix + str(label).encode()
            data = _CODEC.encode(minute)
            now[k] = data
            if saved.get(k) != data:
                batch[k] = data
        for k in saved:
            if k not in now:
                batch[k] = None
        self._minutes[key] = now
        return {**state, "pending": {}}

    def _put(self, key: bytes, value: Any) -> None:
        self._cache[key] = value
        self._dirty.add(key)

    def flush(self) -> int:
        """Write every changed state value to the store; return how many were written."""
        batch: dict[bytes, bytes | None] = {}
        for k in sorted(self._dirty):
            value = self._stored(k)
            if k.startswith(b"p:"):
                value = self._split_minutes(k, value, batch)
            batch[k] = _CODEC.encode(value)
        if batch:
            self._store.apply(batch)
        self._dirty.clear()
        return len(batch)

    def _stored(self, key: bytes) -> Any:
        value = self._cache[key]
        if key.startswith(b"q:"):
            return _iqr_to_json(value)
        return value.to_state() if key.startswith(b"a:") else value

    def _partition(self, partition: int) -> dict[str, Any]:
        state = self._get(b"p:%d" % partition)
        if state is None:
            return {
                "v": _STATE_VERSION,
                "scorer": ScorerState().to_state(),
                "market": MarketHistory().to_state(),
                "pending": {},
                "frame": None,
            }
        if state.get("v") != _STATE_VERSION:
            raise AlphaError(f"{STORE}: partition state version {state.get('v')!r} unknown")
        return dict(state)

    def _count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    # ----------------------------------------------------------------- inputs
    def step(self, partition: int, value: Mapping[str, Any]) -> list[Output]:
        """Apply one decoded ``lattice.v0`` value of ``partition``; return the events to send.

        Raises:
            BadLatticeRecord: The record is malformed; no state changed.
        """
        self.report = StepReport()
        body = value.get("body", value)
        if not isinstance(body, Mapping):
            raise BadLatticeRecord("lattice.v0 body is not a record")
        kind = kind_of(body)
        try:
            label = int(body["exchange_ts"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadLatticeRecord(f"malformed {kind}: {exc!r}") from None
        state = self._partition(partition)
        if kind == "seal":
            return self._seal(partition, state, body, label)
        if kind == "row":
            return self._row(partition, state, body, label)
        return self._frame(partition, state, body, label)

    def _minute(self, state: dict[str, Any], label: int) -> dict[str, Any]:
        minute = state["pending"].get(str(label))
        if minute is None:
            return {"r0": {}, "r1": {}, "final": False, "watermark": None}
        return dict(minute)

    def _keep(self, partition: int, state: dict[str, Any], label: int, minute: Any) -> None:
        pending = dict(state["pending"])
        if minute is None:
            pending.pop(str(label), None)
        else:
            pending[str(label)] = minute
        state["pending"] = pending
        self._put(b"p:%d" % partition, state)

    def _framed(self, state: dict[str, Any]) -> int | None:
        frame = state["frame"]
        return None if frame is None else int(frame["exchange_ts"])

    def _seal(
        self, partition: int, state: dict[str, Any], body: Mapping[str, Any], label: int
    ) -> list[Output]:
        framed = self._framed(state)
        if body.get("seal") == "close":
            if framed is not None and label <= framed:
                self._count("late_seals")
                return []
            minute = self._minute(state, label)
            minute["watermark"] = int(body["watermark"])
            self._keep(partition, state, label, minute)
            return []
        if body.get("seal") != "final":
            self._count("ignored_seals")
            return []
        if framed is not None and label < framed:
            self._count("late_seals")
            return []
        minute = self._minute(state, label)
        if framed == label:  # the frame came first: the revisions of the minute go now
            self._keep(partition, state, label, None)
            out = self._revisions(partition, state, minute, label)
            return out + self._feed(partition, label, (), out, final=True)
        minute["final"] = True
        self._keep(partition, state, label, minute)
        return []

    def _row(
        self, partition: int, state: dict[str, Any], body: Mapping[str, Any], label: int
    ) -> list[Output]:
        if body.get("tf") != "m1":
            self._count("ignored_tf")
            return []
        try:
            uid, revision = int(body["asset_uid"]), int(body["revision"])
            str(body["symbol"]), str(body["dq_status"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadLatticeRecord(f"malformed FeatureRow: {exc!r}") from None
        framed = self._framed(state)
        if framed is not None and (label < framed or (label == framed and revision == 0)):
            self._count("late_rows")
            return []
        minute = self._minute(state, label)
        side = "r0" if revision == 0 else "r1"
        minute[side] = {**minute[side], str(uid): dict(body)}
        self._keep(partition, state, label, minute)
        self._count("rows")
        return []

    def _frame(
        self, partition: int, state: dict[str, Any], body: Mapping[str, Any], label: int
    ) -> list[Output]:
        framed = self._framed(state)
        if framed is not None and label <= framed:
            self._count("repeated_frames")
            return []
        pending = dict(state["pending"])
        for old in sorted((k for k in pending if int(k) < label), key=int):
            dropped = pending.pop(old)
            self._count("rows_without_frame", len(dropped["r0"]) + len(dropped["r1"]))
        minute = pending.pop(str(label), None) or {
            "r0": {}, "r1": {}, "final": False, "watermark": None
        }  # fmt: skip
        state["pending"] = pending
        state["frame"] = dict(body)
        rows = [minute["r0"][k] for k in sorted(minute["r0"], key=int)]
        market = MarketHistory.from_state(state["market"])
        market_now = update_market_history(market, body, label, self.sectors)
        out = self._evaluate(
            partition, state, rows, label, minute["watermark"], (market, market_now)
        )
        state["market"] = market_now.to_state()
        self._count("frames")
        if minute["final"]:  # the final seal came first: the revisions go now, in their own step
            out += self._revisions(partition, state, minute, label)
        else:
            self._keep(partition, state, label, {**minute, "r0": {}})
        self._put(b"p:%d" % partition, state)
        return out + self._feed(partition, label, rows, out, final=bool(minute["final"]))

    def _feed(
        self,
        partition: int,
        label: int,
        rows: Sequence[Mapping[str, Any]],
        events: Sequence[Output],
        *,
        final: bool,
    ) -> list[Output]:
        """The step's ``trade.in.v0`` report (none when the processor was built without one)."""
        if self.trade_partitions is None:
            return []
        value = trade_in(
            partition,
            self.trade_partitions,
            label,
            rows,
            [o.value for o in events if o.topic == EVENTS_TOPIC],
            final=final,
        )
        return [Output(TRADE_IN_TOPIC, str(partition).encode(), 0, value)]

    def _revisions(
        self, partition: int, state: dict[str, Any], minute: Mapping[str, Any], label: int
    ) -> list[Output]:
        """Evaluate a minute's revised rows (revision 1) against its frame, as their own step.

        They go when both the frame and the final seal of the minute have arrived, whichever
        came second: both precede the next minute's frame, so the scorer sees the same steps in
        the same order however the market stage's frames interleave with the lattice's rows.
        """
        rows = [minute["r1"][k] for k in sorted(minute["r1"], key=int)]
        if not rows:
            return []
        self._count("revised_rows", len(rows))
        return self._evaluate(partition, state, rows, label, minute["watermark"])

    # ----------------------------------------------------------------- detection
    def _evaluate(
        self,
        partition: int,
        state: dict[str, Any],
        rows: list[dict[str, Any]],
        label: int,
        watermark: int | None,
        markets: tuple[MarketHistory, MarketHistory] | None = None,
    ) -> list[Output]:
        """Evaluate ``rows`` (all of minute ``label``) against the partition's frame of it.

        ``markets``: the partition's market history and the same with that frame folded in, if
        the caller has them (computed here otherwise, once for all the rows).
        """
        frame: Mapping[str, Any] = state["frame"]
        if markets is None:
            market = MarketHistory.from_state(state["market"])
            market_now = update_market_history(market, frame, label, self.sectors)
        else:
            market, market_now = markets
        members = {int(a["asset_uid"]): a for a in frame.get("assets") or ()}
        triggers: list[Trigger] = []
        suppressions: list[Suppression] = []
        by_uid: dict[int, dict[str, Any]] = {}
        hot: dict[int, bool] = {}
        for row in rows:
            uid = int(row["asset_uid"])
            by_uid[uid] = row
            history = self._history(uid)
            v_min, spread_cap = guard_limits(row, self.illiquidity)
            member = members.get(uid, {})
            bounds = self._iqr(uid, row)
            hot[uid] = bool(member.get("is_hot")) or self._is_hot(uid, label)
            ctx = DetectContext(
                history=history,
                market=market,
                is_in_universe=member.get("is_in_universe"),
                is_hot=hot[uid],
                tier=_tier(member.get("tier")),
                sectors=self.sectors,
                v_min=v_min,
                spread_cap=spread_cap,
                iqr_bounds=bounds,
                market_now=market_now if frame else None,
            )
            found = evaluate(row, frame, ctx, self.pack)
            triggers += found.triggers
            suppressions += found.suppressions
            self._put(b"a:%d" % uid, update_history(history, row))
        scorer_state, result = self.scorer.step(ScorerState.from_state(state["scorer"]), triggers)
        state["scorer"] = scorer_state.to_state()
        self._put(b"p:%d" % partition, state)
        for e in result.emissions:
            self._make_hot(e.trigger.asset_uid, e.trigger.subtype, e.severity, label)
        emitted_at = label if watermark is None else watermark
        self.report = StepReport(
            triggers, list(result.emissions), [*suppressions, *result.suppressions]
        )
        return [
            Output(
                EVENTS_TOPIC,
                str(e.trigger.asset_uid).encode(),
                partition_for(str(e.trigger.asset_uid).encode(), self.event_partitions),
                build_event(
                    e,
                    by_uid[e.trigger.asset_uid],
                    frame,
                    self.provenance,
                    emitted_at,
                    is_hot=hot[e.trigger.asset_uid],
                ),
            )
            for e in result.emissions
        ]

    def _is_hot(self, uid: int, label: int) -> bool:
        """Return True while the asset's own hotlist entry has not expired at ``label``."""
        entry = self._get(b"h:%d" % uid)
        return entry is not None and label < int(entry["expires_at"])

    def _make_hot(self, uid: int, subtype: str, severity: float, label: int) -> None:
        """Put the asset on the hotlist after an event (§7.4, D.8); a later expiry wins.

        Hot when ``severity >= s_hot`` or the subtype's reason is always hot (basis jolt,
        liquidation cluster); TTL = ttl_base + k * severity minutes from the minute's label.
        """
        reason = _HOT_REASON.get(SUBTYPE_FAMILY[subtype], "severity")
        if not self.hotlist.makes_hot(severity, reason):
            return
        expires = label + self.hotlist.ttl_ms(severity)
        key = b"h:%d" % uid
        entry = self._get(key)
        if entry is None or expires > int(entry["expires_at"]):
            self._put(
                key,
                {"started_at": label, "expires_at": expires, "reason": reason,
                 "severity": float(severity)},
            )  # fmt: skip

    def _iqr(self, uid: int, row: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
        """Return the asset's IQR clamp bounds (§4.4) as of before ``row``; fold ``row`` in.

        Per asset and z column of :data:`IQR_COLUMNS`, a t-digest of the day's z values (UTC
        days of bar labels; revision-0 rows with ``dq_status == 'ok'``). At the first row of a
        new day the bounds become ``[Q1 - k IQR, Q3 + k IQR]`` of the finished day (``k`` =
        the feature pack's ``quantiles.iqr_k``) if it held at least the pack's baseline
        ``min_samples`` values, and the day's digest restarts; before the first refresh, the
        bounds are set once, as soon as the digest reaches that count. State ``q:<uid>``.
        """
        key = b"q:%d" % uid
        state = self._get(key)
        if state is None:
            state = {"day": None, "sketches": {}, "bounds": {}}
        bounds: dict[str, tuple[float, float]] = dict(state["bounds"])
        if row.get("revision") != 0 or row.get("dq_status") != "ok":
            return bounds
        day = int(row["exchange_ts"]) // DAY_MS
        sketches: dict[str, bytes] = state["sketches"]
        if state["day"] is not None and day > state["day"]:
            for col, sketch in sketches.items():
                self._set_bounds(state["bounds"], col, sketch)
            sketches.clear()
        state["day"] = day
        for col in IQR_COLUMNS:
            z = finite(row.get(col))
            if z is None:
                continue
            sketch = sketches[col] = sketch_add(
                sketches.get(col), z, max_centroids=self.iqr_centroids
            )
            if col not in state["bounds"]:
                self._set_bounds(state["bounds"], col, sketch)
        self._put(key, state)
        return bounds

    def _set_bounds(self, bounds: dict[str, tuple[float, float]], col: str, sketch: bytes) -> None:
        """Set ``col``'s clamp bounds from ``sketch`` if it holds at least ``min_samples``."""
        if sketch_count(sketch) >= self.iqr_min_samples:
            got = iqr_bounds(sketch, self.iqr_k)
            if got is not None:
                bounds[col] = got

    def _history(self, uid: int) -> AssetHistory:
        history: AssetHistory | None = self._get(b"a:%d" % uid)  # kept as the value itself
        return AssetHistory() if history is None else history


def _tier(value: Any) -> Tier:
    """Return the frame's tier of an asset (``mid`` when absent or unknown)."""
    return value if value in ("top", "mid", "tail") else "mid"


def _iqr_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``q:`` state as the processor works on it: digests as bytes, bounds as tuples."""
    return {
        "day": data["day"],
        "sketches": {c: base64.b64decode(v) for c, v in data["sketches"].items()},
        "bounds": {c: (float(b[0]), float(b[1])) for c, b in data["bounds"].items()},
    }


def _iqr_to_json(state: Mapping[str, Any]) -> dict[str, Any]:
    """The ``q:`` state as stored (JSON: digests in base64), written only at :meth:`flush`."""
    return {
        "day": state["day"],
        "sketches": {c: base64.b64encode(v).decode() for c, v in state["sketches"].items()},
        "bounds": {c: list(b) for c, b in state["bounds"].items()},
    }
