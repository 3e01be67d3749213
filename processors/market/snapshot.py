"""The market processor: ``market.in.v0`` in; snapshots, market frames and universe revisions out.

``MarketProcessor.step(record)`` takes the decoded bodies of ``market.in.v0`` (one partition fed
by every lattice partition: ``AssetSummary`` and ``PartitionSeal``) in order. When every lattice
partition has sealed (``close``) minute t, it updates the universe with the minute, computes the
market context (spec 002 §6) and returns, in this order: the universe audit record if membership
changed (``universe.v0``), the snapshot (``market.snapshot.v0``), and one market frame per
lattice partition (``lattice.v0``, after that partition's rows of t, which preceded its seal).

Determinism. The lattice partitions interleave differently on every run; only each partition's
own order is fixed. The output depends on per-partition sequences alone because:

- minute t is emitted only when every partition's close seal for t (or a later one) has arrived,
  and each partition writes its revision-0 summaries of t before that seal;
- the snapshot of t uses revision-0 summaries only; revised summaries (revision 1, written at the
  ``final`` seal) of t-1 replace its values in the history and the universe windows when t is
  emitted -- every partition's final seal of t-1 precedes its close seal of t, so all of them
  are in by then; revised summaries of t itself wait for t+1;
- everything is computed from rows sorted by asset_uid, with exactly rounded sums.

Defined behaviour for the odd cases (all counted in :attr:`MarketProcessor.counters`):

- duplicate or out-of-order seal (label at or below the partition's last close): ignored;
- a partition that starts late: minutes before its first seal are emitted without it once it
  seals (it had no rows there); minutes before *any* partition's first seal are never emitted;
- a partition sealing late: every later minute waits for it, then all ready minutes are emitted
  in order; with ``market.max_partition_lag_min`` set, a minute a partition lags that far
  behind the newest seal is emitted without it (``dq_status`` partial, ``partitions_missing``),
  and its later rows for that minute are dropped -- the one setting that is not replay-exact;
- a summary for a minute already emitted (revision 0) or older than the last emitted minute
  (any revision): dropped; a repeated summary for a pending minute: the last one wins;
- an asset missing from a minute: absent from that minute's aggregates and frames; the universe
  counts the minute as stale for it (§7.6 hard exit);
- 15m/1h summaries and ``final`` seals: ignored (the snapshot is 1m; ordering makes final seals
  redundant, see above).

State is JSON data (:meth:`MarketProcessor.to_state`); a processor rebuilt with
:meth:`MarketProcessor.from_state` continues bit-identically.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packs.universe import UniversePolicy
from processors.lattice.clock import MAX_FILL_MINUTES
from processors.market.context import build_context
from processors.market.universe import Universe, UniverseInput
from schemas.errors import AlphaError

MINUTE_MS = 60_000
STATE_VERSION = 1
LATTICE_TOPIC = "lattice.v0"
SNAPSHOT_TOPIC = "market.snapshot.v0"
UNIVERSE_TOPIC = "universe.v0"
TF = "m1"
UNIVERSE_KEY = b"universe"
DQ = ("ok", "partial", "stale")
#: Summary fields kept in state: the AssetSummary fields, plus fields the lattice may send later
#: (read when present, see processors.market.context).
ROW_FIELDS = (
    "asset_uid", "symbol", "partition", "dq_status", "warmup", "mid_close", "ret_m_1", "ret_m_5",
    "v_total_m_1", "z_vol_m_1", "z_ret_abs_m_1", "is_vol_spike_m_1", "is_price_spike_up_m_1",
    "is_price_spike_down_m_1", "oi_close", "funding_h_1", "time_to_next_funding_sec",
    "basis_bp_m_5", "oi_roc_m_5", "z_oi_roc_m_5", "is_oi_spike_up_m_5", "is_oi_spike_down_m_5",
)  # fmt: skip
#: Keys of the snapshot value, in order.
SNAPSHOT_KEYS = (
    "tf", "exchange_ts", "leader", "leader_uid", "leader_prev", "leader_prev_uid",
    "dominance_share", "shock_count_5s", "shock_count_approx", "rs_top", "rs_top_uids",
    "rs_bottom", "rs_bottom_uids", "rs_scores", "rs_dispersion_m_5", "return_dispersion_m_5",
    "vol_dispersion_m_5", "time_to_next_funding_sec", "eligible_count", "excluded_count",
    "rs_incomplete_count", "rs_approx", "context_scope", "universe_size", "hot_count",
    "universe_rev", "universe_policy_rev", "partitions_missing", "dq_status",
)  # fmt: skip
#: Keys of a market frame (what the detectors of one lattice partition read), in order. ``assets``
#: are the partition's own; ``rs_scores`` covers every asset (rotation detectors need them all).
FRAME_KEYS = (
    "tf", "exchange_ts", "partition", "leader", "leader_uid", "leader_prev", "leader_prev_uid",
    "dominance_share", "shock_count_5s", "shock_count_approx", "rs_top", "rs_top_uids",
    "rs_bottom", "rs_bottom_uids", "return_dispersion_m_5", "vol_dispersion_m_5",
    "time_to_next_funding_sec", "universe_size", "universe_rev", "universe_policy_rev",
    "dq_status", "assets", "rs_scores",
)  # fmt: skip


class MarketInError(AlphaError):
    """A ``market.in.v0`` record the market agent cannot use (it goes to the dead-letter topic)."""


@dataclass(frozen=True, slots=True)
class Output:
    """One record to send: topic, key (None for frames), partition, value."""

    topic: str
    key: bytes | None
    partition: int
    value: dict[str, Any]


def _parse_summary(
    body: Mapping[str, Any], partitions: int
) -> tuple[str, int, int, dict[str, Any]]:
    """Return ``(tf, label, revision, row)`` of an AssetSummary body."""
    try:
        tf, label, rev = str(body["tf"]), int(body["exchange_ts"]), int(body["revision"])
        row = {f: body[f] for f in ROW_FIELDS if f in body}
        row["asset_uid"], row["symbol"] = int(body["asset_uid"]), str(body["symbol"])
        row["partition"], row["v_total_m_1"] = int(body["partition"]), float(body["v_total_m_1"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MarketInError(f"malformed AssetSummary: {exc!r}") from None
    if row.get("dq_status") not in DQ:
        raise MarketInError(f"AssetSummary dq_status {row.get('dq_status')!r} unknown")
    if not 0 <= row["partition"] < partitions:
        raise MarketInError(f"AssetSummary partition {row['partition']} not in 0..{partitions - 1}")
    return tf, label, rev, row


def _universe_input(row: Mapping[str, Any]) -> UniverseInput:
    oi, mid = row.get("oi_close"), row.get("mid_close")
    return UniverseInput(
        asset_uid=int(row["asset_uid"]),
        symbol=str(row["symbol"]),
        dq_status=str(row["dq_status"]),
        dollar_volume=float(row["v_total_m_1"]),
        oi_notional=None if oi is None or mid is None else float(oi) * float(mid),
    )


class MarketProcessor:
    """The market stage (see module docstring).

    Args:
        policy: The universe policy (with its ``market`` section).
        partitions: The number of ``lattice.v0`` partitions (every one must seal a minute).
        spike_events: True when spike events reach the agent through :meth:`note_spike`: the
            shock count is then event-driven and exact; False: from the minute's flags, approx.
    """

    def __init__(
        self, policy: UniversePolicy, partitions: int, *, spike_events: bool = False
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.policy = policy
        self.partitions = partitions
        self.universe = Universe(policy)
        self.last_close: list[int | None] = [None] * partitions
        self.first_close: int | None = None
        self.last_emitted: int | None = None
        #: label -> {"r0": {uid: row}, "r1": {uid: row}}
        self.pending: dict[int, dict[str, dict[int, dict[str, Any]]]] = {}
        #: uid -> [[label, dollar_volume, oi_close], ...] of finalised minutes
        self.history: dict[int, list[list[Any]]] = {}
        self.leader: tuple[int, str] | None = None
        self.spikes: list[list[int]] | None = [] if spike_events else None
        #: Outcome counts since the caller last cleared them (metrics only; not state).
        self.counters: dict[str, int] = {}

    def _count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    # ----------------------------------------------------------------- inputs
    def step(self, record: Mapping[str, Any]) -> list[Output]:
        """Apply one decoded ``market.in.v0`` value (or its body); return the records to send.

        Raises:
            MarketInError: The record is malformed; no state changed.
        """
        body = record.get("body", record)
        if not isinstance(body, Mapping):
            raise MarketInError("market.in.v0 body is not a record")
        if "seal" in body:
            return self._seal(body)
        if "asset_uid" in body:
            self._summary(body)
            return []
        raise MarketInError("market.in.v0 body is neither an AssetSummary nor a PartitionSeal")

    def _summary(self, body: Mapping[str, Any]) -> None:
        tf, label, rev, row = _parse_summary(body, self.partitions)
        if tf != TF:
            self._count("ignored_tf")
            return
        last = self.last_emitted
        if last is not None and (label < last or (label == last and rev == 0)):
            self._count("late_summary")
            return
        minute = self.pending.setdefault(label, {"r0": {}, "r1": {}})
        minute["r0" if rev == 0 else "r1"][row["asset_uid"]] = row
        self._count("summaries")

    def _seal(self, body: Mapping[str, Any]) -> list[Output]:
        try:
            p, label, seal = int(body["partition"]), int(body["exchange_ts"]), str(body["seal"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MarketInError(f"malformed PartitionSeal: {exc!r}") from None
        if not 0 <= p < self.partitions:
            raise MarketInError(f"PartitionSeal partition {p} not in 0..{self.partitions - 1}")
        if seal != "close":
            self._count("final_seals")
            return []
        last = self.last_close[p]
        if last is not None and label <= last:
            self._count("duplicate_seal")
            return []
        self.last_close[p] = label
        if self.last_emitted is None:
            self.first_close = label if self.first_close is None else min(self.first_close, label)
        return self._emit_ready()

    def note_spike(self, asset_uid: int, exchange_ts: int) -> None:
        """Record a spike-class event for the event-driven shock count (§6.5)."""
        if self.spikes is not None:
            self.spikes.append([asset_uid, exchange_ts])

    def hot(
        self,
        asset_uid: int,
        severity: float,
        reason: str,
        exchange_ts: int,
        *,
        symbol: str | None = None,
    ) -> list[Output]:
        """Feed a detector event to the hotlist (:meth:`Universe.hot`); return audit records."""
        audits = self.universe.hot(asset_uid, severity, reason, exchange_ts, symbol=symbol)
        return [Output(UNIVERSE_TOPIC, UNIVERSE_KEY, 0, a) for a in audits]

    @property
    def pending_minutes(self) -> int:
        """Minutes buffered, waiting for a partition (a gauge for the agent)."""
        return len(self.pending)

    # ----------------------------------------------------------------- emission
    def _ready_upto(self) -> int | None:
        known = [c for c in self.last_close if c is not None]
        if not known:
            return None
        upto = min(known) if len(known) == self.partitions else None
        lag = self.policy.market.max_partition_lag_min
        if lag is not None:
            forced = max(known) - lag * MINUTE_MS
            upto = forced if upto is None else max(upto, forced)
        return upto

    def _emit_ready(self) -> list[Output]:
        upto = self._ready_upto()
        start = self.first_close if self.last_emitted is None else self.last_emitted + MINUTE_MS
        out: list[Output] = []
        if upto is None or start is None:
            return out
        for label in self._labels(start, upto):
            missing = [p for p, c in enumerate(self.last_close) if c is None or c < label]
            if missing:
                self._count("forced_minutes")
            out += self._emit(label, missing)
        return out

    def _labels(self, start: int, upto: int) -> list[int]:
        """Return the minutes to emit, oldest first.

        Every minute of ``[start, upto]`` -- unless that spans more than ``MAX_FILL_MINUTES``:
        then only the minutes some partition sent rows for, as the lattice skips the rest of a
        long jump (processors/lattice/clock.py) and nobody will ever send them.
        """
        if upto - start < MAX_FILL_MINUTES * MINUTE_MS:
            return list(range(start, upto + 1, MINUTE_MS))
        return sorted(m for m in self.pending if start <= m <= upto)

    def _emit(self, label: int, missing: list[int]) -> list[Output]:
        market = self.policy.market
        for old in sorted(m for m in self.pending if m < label):
            revised = self.pending.pop(old)["r1"]
            if old == self.last_emitted and revised:
                self._revise(old, revised)
            elif revised:
                self._count("late_summary", len(revised))
        minute = self.pending.pop(label, {"r0": {}, "r1": {}})
        rows = [minute["r0"][u] for u in sorted(minute["r0"])]
        self.pending[label] = {"r0": {}, "r1": minute["r1"]}
        audits = self.universe.update(label, [_universe_input(r) for r in rows])
        if self.spikes is not None:
            self.spikes = [e for e in self.spikes if e[1] > label - market.shock_window_ms]
        ctx, rs = build_context(
            label,
            rows,
            self.history,
            covered=self.universe.covered(),
            previous_leader=None if self.leader is None else self.leader[0],
            spike_events=None if self.spikes is None else [(u, t) for u, t in self.spikes],
            market=market,
        )
        previous = self.leader
        self._remember(label, rows)
        self.leader = None if ctx["leader_uid"] is None else (ctx["leader_uid"], ctx["leader"])
        self.last_emitted = label
        u = self.universe
        common = {
            "tf": TF,
            "exchange_ts": label,
            **ctx,
            "leader_prev": None if previous is None else previous[1],
            "leader_prev_uid": None if previous is None else previous[0],
            "universe_size": u.size,
            "hot_count": len(u.hotlist),
            "universe_rev": u.rev,
            "universe_policy_rev": self.policy.universe_policy_rev,
            "partitions_missing": missing,
            "rs_scores": [
                {"asset_uid": uid, "symbol": str(r["symbol"]), "rs_score_m_5": rs[uid][0],
                 "rs_incomplete": rs[uid][1]}
                for r in rows if (uid := int(r["asset_uid"])) in rs
            ],
        }  # fmt: skip
        if missing and common["dq_status"] == "ok":
            common["dq_status"] = "partial"
        out = [Output(UNIVERSE_TOPIC, UNIVERSE_KEY, 0, a) for a in audits]
        out.append(Output(SNAPSHOT_TOPIC, TF.encode(), 0, {k: common[k] for k in SNAPSHOT_KEYS}))
        tiers = self.universe.tiers()
        for p in range(self.partitions):
            frame = dict(common, partition=p, assets=self._frame_assets(rows, rs, tiers, p))
            out.append(Output(LATTICE_TOPIC, None, p, {k: frame[k] for k in FRAME_KEYS}))
        return out

    def _frame_assets(
        self,
        rows: list[dict[str, Any]],
        rs: Mapping[int, tuple[float, bool, bool]],
        tiers: Mapping[int, str],
        p: int,
    ) -> list[dict[str, Any]]:
        assets = []
        for r in rows:
            if r["partition"] != p:
                continue
            uid = int(r["asset_uid"])
            in_universe, is_hot, _ = self.universe.membership(uid)
            score = rs.get(uid)
            assets.append(
                {
                    "asset_uid": uid,
                    "symbol": str(r["symbol"]),
                    "rs_score_m_5": None if score is None else score[0],
                    "rs_incomplete": None if score is None else score[1],
                    "is_in_universe": in_universe,
                    "is_hot": is_hot,
                    "tier": tiers.get(uid, "mid"),
                }
            )
        return assets

    def _remember(self, label: int, rows: list[dict[str, Any]]) -> None:
        m = self.policy.market
        since = label - max(m.dominance_window_min, m.oi_roc_window_min) * MINUTE_MS
        for r in rows:
            self.history.setdefault(int(r["asset_uid"]), []).append(
                [label, float(r["v_total_m_1"]), r.get("oi_close")]
            )
        for uid in list(self.history):
            kept = [h for h in self.history[uid] if h[0] > since]
            if kept:
                self.history[uid] = kept
            else:
                del self.history[uid]

    def _revise(self, label: int, revised: Mapping[int, dict[str, Any]]) -> None:
        for uid, r in sorted(revised.items()):
            for h in self.history.get(uid, []):
                if h[0] == label:
                    h[1], h[2] = float(r["v_total_m_1"]), r.get("oi_close")
        self.universe.revise(label, [_universe_input(revised[u]) for u in sorted(revised)])
        self._count("revised_rows", len(revised))

    # ----------------------------------------------------------------- state
    def to_state(self, *, shared: bool = False) -> dict[str, Any]:
        """Return the whole state as JSON data (uids and labels as string keys).

        Args:
            shared: False (default): a deep copy, the caller's to keep. True: the same data
                without the copy (a deep copy of the universe's windows dominated the market
                stage's CPU): it shares the processor's lists and dicts, so the caller must
                encode it at once and neither keep nor change it (what ``save_market`` does).
        """
        state = {
            "v": STATE_VERSION,
            "partitions": self.partitions,
            "last_close": self.last_close,
            "first_close": self.first_close,
            "last_emitted": self.last_emitted,
            "pending": {
                str(label): {
                    rev: {str(u): rows[u] for u in sorted(rows)} for rev, rows in m.items()
                }
                for label, m in sorted(self.pending.items())
            },
            "history": {str(u): self.history[u] for u in sorted(self.history)},
            "leader": None if self.leader is None else list(self.leader),
            "spikes": self.spikes,
            "universe": self.universe.to_state(shared=True),
        }
        return state if shared else copy.deepcopy(state)

    @classmethod
    def from_state(cls, policy: UniversePolicy, state: Mapping[str, Any]) -> MarketProcessor:
        """Rebuild a processor from :meth:`to_state` data.

        Raises:
            MarketInError: The state has an unknown version.
        """
        s = copy.deepcopy(dict(state))
        if s.get("v") != STATE_VERSION:
            raise MarketInError(f"market state version {s.get('v')!r} unknown to this code")
        proc = cls(policy, int(s["partitions"]), spike_events=s["spikes"] is not None)
        proc.last_close = list(s["last_close"])
        proc.first_close = s["first_close"]
        proc.last_emitted = s["last_emitted"]
        proc.pending = {
            int(label): {rev: {int(u): row for u, row in rows.items()} for rev, rows in m.items()}
            for label, m in s["pending"].items()
        }
        proc.history = {int(u): h for u, h in s["history"].items()}
        proc.leader = None if s["leader"] is None else (int(s["leader"][0]), str(s["leader"][1]))
        proc.spikes = s["spikes"]
        proc.universe = Universe.from_state(policy, s["universe"])
        return proc
