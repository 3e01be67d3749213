"""The universe and hotlist state machine (spec 002 §7; §7.9 is the outline followed).

Once per minute of stream time, :meth:`Universe.update` folds each asset's minute into its
rolling windows, ranks every tracked asset by the composite score, counts streaks, and decides
membership; :meth:`Universe.hot` adds assets to the hotlist overlay from detector events. Each
change of membership or of the hotlist bumps ``universe_rev`` and yields one audit record (the
value written to the compacted topic ``universe.v0``). Pure and deterministic: time is the
minute label the caller passes, and the whole state is JSON data (:meth:`to_state`).

Choices where §7 leaves room (documented here, listed in the issue report):

- Dollar volume is the sum of ``v_total_m_1`` (the lattice's volume is already in quote units,
  so §7.2's ``* mid_close`` is not applied again); OI is ranked as notional
  (``oi_close * mid_close``), because base-unit OI is not comparable across assets.
- Ranks are ordinal, ties broken by asset_uid; rank(U) breaks ties by the dollar-volume rank,
  then asset_uid. An asset without OI in its lookback uses U = rank_desc(dv_L1) (§7.2, not the
  pseudocode's ``rank_desc_or_zero``, which would favour assets without OI).
- The entry streak counts minutes with rank(U) <= n_entry in which the asset is present and not
  ``stale``; the exit streak counts minutes with rank(U) > n_exit; the stale streak counts
  ``stale`` or missing minutes. A gap between updates restarts the entry and exit streaks.
- Freeze is global: after any change at minute c, entries and exits wait until c + freeze.
  Hard exits ignore freeze and dwell (and start a freeze); the hotlist is never frozen.
- Churn is counted per clock hour of the minute label; exits and hard exits are never deferred,
  entries wait (best rank first) once the hour has C changes. The first batch of entries
  (bootstrap, reason ``bootstrap``) is exempt and does not count.
- Hotlist changes (reasons ``hotlist``, ``hot_expired``, ``hot_evicted``) bump the rev too. A
  repeated hot call only extends the TTL (the later expiry wins, with its reason); when the
  hotlist is full the entry expiring first is evicted if the newcomer outlives it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packs.universe import UniversePolicy
from schemas.errors import AlphaError

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
STATE_VERSION = 1
ENTRY_REASONS = ("entry", "bootstrap")


class UniverseError(AlphaError):
    """A universe call the state machine cannot take (time going back, unknown hot reason)."""


@dataclass(frozen=True, slots=True)
class UniverseInput:
    """One asset's minute as the universe needs it.

    Attributes:
        asset_uid: Asset id.
        symbol: Display symbol (for audit records).
        dq_status: ``ok``, ``partial`` or ``stale``.
        dollar_volume: Quote volume of the minute (``v_total_m_1``).
        oi_notional: ``oi_close * mid_close``, None when either is missing.
    """

    asset_uid: int
    symbol: str
    dq_status: str
    dollar_volume: float
    oi_notional: float | None


def _median(values: list[float]) -> float:
    xs = sorted(values)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _rank_desc(values: Mapping[int, float]) -> dict[int, int]:
    order = sorted(values, key=lambda uid: (-values[uid], uid))
    return {uid: i + 1 for i, uid in enumerate(order)}


class Universe:
    """The universe and hotlist of one market agent (see module docstring).

    Args:
        policy: The universe policy.
        state: A :meth:`to_state` value to continue from; None starts empty (rev 0).
    """

    def __init__(self, policy: UniversePolicy, state: Mapping[str, Any] | None = None) -> None:
        self.policy = policy
        s = copy.deepcopy(dict(state)) if state is not None else {}
        if s and s.get("v") != STATE_VERSION:
            raise UniverseError(f"universe state version {s.get('v')!r} unknown to this code")
        self.rev: int = s.get("rev", 0)
        self.now: int | None = s.get("now")
        self.frozen_until: int = s.get("frozen_until", 0)
        self.churn_hour: int = s.get("churn_hour", 0)
        self.churn_count: int = s.get("churn_count", 0)
        self.bootstrapped: bool = s.get("bootstrapped", False)
        #: uid -> {symbol, dv: [[label, v]], oi: [[label, v]], entry, exit, stale}
        self.assets: dict[int, dict[str, Any]] = {int(k): v for k, v in s.get("assets", {}).items()}
        #: member uid -> label it entered at
        self.members: dict[int, int] = {int(k): v for k, v in s.get("members", {}).items()}
        #: hot uid -> {started_at, expires_at, reason, severity}
        self.hotlist: dict[int, dict[str, Any]] = {
            int(k): v for k, v in s.get("hotlist", {}).items()
        }
        #: uid -> rank(U) of the last update (for inspection; not state).
        self.ranks: dict[int, int] = {}

    # ----------------------------------------------------------------- queries
    def membership(self, asset_uid: int) -> tuple[bool, bool, int]:
        """Return ``(is_in_universe, is_hot, universe_rev)`` of an asset (§7.5)."""
        return asset_uid in self.members, asset_uid in self.hotlist, self.rev

    @property
    def size(self) -> int:
        """Number of members (``is_in_universe``), hot-only assets excluded."""
        return len(self.members)

    def covered(self) -> set[int]:
        """Return the asset_uids detectors run for: members and hot assets."""
        return set(self.members) | set(self.hotlist)

    def tiers(self) -> dict[int, str]:
        """Return the D.7 liquidity tier of every tracked asset, by dollar volume over L1.

        decile = ceil(10 * rank / n) (rank 1 = most dollar volume, ties by asset_uid): ``top``
        for decile 1, ``tail`` for decile 10, else ``mid``. Fewer than 10 assets have no top
        decile; the least liquid asset is always in the tail.
        """
        ranks = _rank_desc({uid: self.dv_l1(uid) for uid in self.assets})
        n = len(ranks)
        out: dict[int, str] = {}
        for uid, rank in ranks.items():
            decile = -(-10 * rank // n)
            out[uid] = "top" if decile == 1 else "tail" if decile == 10 else "mid"
        return out

    def dv_l1(self, asset_uid: int) -> float:
        """Return the asset's dollar volume over the last L1 minutes (0 if untracked)."""
        asset = self.assets.get(asset_uid)
        return math.fsum(v for _, v in asset["dv"]) if asset else 0.0

    # ----------------------------------------------------------------- the minute
    def update(self, now_ts: int, inputs: Iterable[UniverseInput]) -> list[dict[str, Any]]:
        """Fold minute ``now_ts`` in and decide membership; return the audit records (0 or 1).

        Raises:
            UniverseError: ``now_ts`` is not after the last update.
        """
        if self.now is not None and now_ts <= self.now:
            raise UniverseError(f"universe update at {now_ts} is not after {self.now}")
        gap_min = 0 if self.now is None else (now_ts - self.now) // MINUTE_MS - 1
        seen = {i.asset_uid: i for i in sorted(inputs, key=lambda i: i.asset_uid)}
        self._fold(now_ts, seen)
        self.ranks = self._rank()
        self._streaks(seen, gap_min)
        changes = self._decide(now_ts)
        hot_removed = {
            uid: "hot_expired" for uid, h in self.hotlist.items() if now_ts >= h["expires_at"]
        }
        symbols = {uid: self._symbol(uid) for uid in [*changes, *hot_removed]}
        for uid in hot_removed:
            del self.hotlist[uid]
        self.now = now_ts
        self._prune()
        if not changes and not hot_removed:
            return []
        return [self._audit(now_ts, changes, {}, hot_removed, symbols)]

    def revise(self, label: int, inputs: Iterable[UniverseInput]) -> None:
        """Replace the window values of minute ``label`` with revised ones (amended rows)."""
        for i in inputs:
            asset = self.assets.get(i.asset_uid)
            if asset is None:
                continue
            asset["dv"] = [[t, i.dollar_volume if t == label else v] for t, v in asset["dv"]]
            oi = [[t, v] for t, v in asset["oi"] if t != label]
            if i.oi_notional is not None and any(t == label for t, _ in asset["dv"]):
                oi.append([label, i.oi_notional])
            asset["oi"] = sorted(oi)

    def _fold(self, now_ts: int, seen: Mapping[int, UniverseInput]) -> None:
        sc = self.policy.scores
        for uid, i in seen.items():
            asset = self.assets.setdefault(
                uid, {"symbol": i.symbol, "dv": [], "oi": [], "entry": 0, "exit": 0, "stale": 0}
            )
            asset["symbol"] = i.symbol
            asset["dv"].append([now_ts, i.dollar_volume])
            if i.oi_notional is not None:
                asset["oi"].append([now_ts, i.oi_notional])
        dv_from = now_ts - sc.dv_lookback_min * MINUTE_MS
        oi_from = now_ts - sc.oi_lookback_min * MINUTE_MS
        for asset in self.assets.values():
            asset["dv"] = [e for e in asset["dv"] if e[0] > dv_from]
            asset["oi"] = [e for e in asset["oi"] if e[0] > oi_from]

    def _rank(self) -> dict[int, int]:
        sc = self.policy.scores
        dv = {uid: math.fsum(v for _, v in a["dv"]) for uid, a in self.assets.items()}
        oi = {uid: _median([v for _, v in a["oi"]]) for uid, a in self.assets.items() if a["oi"]}
        r_dv, r_oi = _rank_desc(dv), _rank_desc(oi)
        u = {
            uid: sc.w_dv * r_dv[uid] + sc.w_oi * r_oi[uid] if uid in r_oi else float(r_dv[uid])
            for uid in dv
        }
        order = sorted(u, key=lambda uid: (u[uid], r_dv[uid], uid))
        return {uid: i + 1 for i, uid in enumerate(order)}

    def _streaks(self, seen: Mapping[int, UniverseInput], gap_min: int) -> None:
        n_entry, n_exit = self.policy.entry_band.n_entry, self.policy.exit_band.n_exit
        for uid, asset in self.assets.items():
            row = seen.get(uid)
            fresh = row is not None and row.dq_status != "stale"
            rank = self.ranks[uid]
            entry, exit_ = (0, 0) if gap_min else (asset["entry"], asset["exit"])
            asset["entry"] = entry + 1 if rank <= n_entry and fresh else 0
            asset["exit"] = exit_ + 1 if rank > n_exit else 0
            asset["stale"] = 0 if fresh else asset["stale"] + 1 + gap_min

    def _decide(self, now_ts: int) -> dict[int, str]:
        hour = now_ts // HOUR_MS
        if hour != self.churn_hour:
            self.churn_hour, self.churn_count = hour, 0
        changes = self._exits(now_ts)
        if now_ts >= self.frozen_until:
            changes.update(self._entries(len(changes)))
        for uid, reason in changes.items():
            if reason in ENTRY_REASONS:
                self.members[uid] = now_ts
            else:
                del self.members[uid]
        if changes:
            self.frozen_until = now_ts + self.policy.freeze_min * MINUTE_MS
            self.churn_count += sum(1 for r in changes.values() if r != "bootstrap")
        return changes

    def _exits(self, now_ts: int) -> dict[int, str]:
        p = self.policy
        frozen = now_ts < self.frozen_until
        dwell_ms = p.min_dwell_min * MINUTE_MS
        changes: dict[int, str] = {}
        for uid, entered in sorted(self.members.items()):
            asset = self.assets.get(uid)
            stale = asset["stale"] if asset else p.hard_exit.stale_min
            if stale >= p.hard_exit.stale_min and self.dv_l1(uid) < p.hard_exit.dead_dv_usd:
                changes[uid] = "hard_exit"
            elif (
                not frozen
                and asset is not None
                and asset["exit"] >= p.exit_band.k_exit
                and now_ts - entered >= dwell_ms
            ):
                changes[uid] = "exit"
        return changes

    def _entries(self, exits: int) -> dict[int, str]:
        band = self.policy.entry_band
        ready = sorted(
            (
                uid
                for uid, a in self.assets.items()
                if uid not in self.members
                and self.ranks[uid] <= band.n_entry
                and a["entry"] >= band.k_entry
            ),
            key=lambda uid: (self.ranks[uid], uid),
        )
        if not self.bootstrapped:
            self.bootstrapped = bool(ready)
            return dict.fromkeys(ready, "bootstrap")
        room = max(0, self.policy.churn.max_changes_per_hour - self.churn_count - exits)
        return dict.fromkeys(ready[:room], "entry")

    def _prune(self) -> None:
        for uid in [u for u, a in self.assets.items() if not a["dv"] and not a["oi"]]:
            if uid not in self.members and uid not in self.hotlist:
                del self.assets[uid]

    # ----------------------------------------------------------------- hotlist
    def hot(
        self,
        asset_uid: int,
        severity: float,
        reason: str,
        exchange_ts: int,
        *,
        symbol: str | None = None,
    ) -> list[dict[str, Any]]:
        """Make an asset hot for ttl = ttl_base + k * severity minutes (§7.4, D.8).

        Severity below ``s_hot`` is ignored unless the reason is always hot; so is an event whose
        TTL has already run out in stream time. An asset already hot only has its expiry
        extended (no rev bump). A full hotlist evicts the entry expiring first if the newcomer
        outlives it, else the newcomer is ignored. Returns the audit records (0 or 1).

        Args:
            asset_uid: The asset the event is about.
            severity: Event severity, 0-100.
            reason: One of the policy's hotlist reasons.
            exchange_ts: The event's exchange time (epoch ms); the TTL runs from it.
            symbol: Display symbol for the audit record, when the universe has not seen it.

        Raises:
            UniverseError: ``reason`` is not in the policy's hotlist reasons.
        """
        hl = self.policy.hotlist
        if reason not in hl.reasons:
            raise UniverseError(f"hot reason {reason!r} is not one of {', '.join(hl.reasons)}")
        if not hl.makes_hot(severity, reason):
            return []
        expires = exchange_ts + hl.ttl_ms(severity)
        if self.now is not None and expires <= self.now:
            return []
        current = self.hotlist.get(asset_uid)
        if current is not None:
            if expires > current["expires_at"]:
                current.update(expires_at=expires, reason=reason, severity=float(severity))
            return []
        removed: dict[int, str] = {}
        symbols = {asset_uid: symbol if symbol is not None else self._symbol(asset_uid)}
        if len(self.hotlist) >= hl.max_size:
            victim = min(
                self.hotlist,
                key=lambda u: (self.hotlist[u]["expires_at"], self.hotlist[u]["severity"], -u),
            )
            if self.hotlist[victim]["expires_at"] >= expires:
                return []
            symbols[victim] = self._symbol(victim)
            del self.hotlist[victim]
            removed[victim] = "hot_evicted"
        self.hotlist[asset_uid] = {
            "started_at": exchange_ts,
            "expires_at": expires,
            "reason": reason,
            "severity": float(severity),
            "symbol": symbols[asset_uid],
        }
        return [self._audit(exchange_ts, {}, {asset_uid: "hotlist"}, removed, symbols)]

    # ----------------------------------------------------------------- audit & state
    def _audit(
        self,
        exchange_ts: int,
        changes: Mapping[int, str],
        hot_added: Mapping[int, str],
        hot_removed: Mapping[int, str],
        symbols: Mapping[int, str],
    ) -> dict[str, Any]:
        self.rev += 1
        return {
            "rev": self.rev,
            "exchange_ts": exchange_ts,
            "universe_policy_rev": self.policy.universe_policy_rev,
            "added": sorted(u for u, r in changes.items() if r in ENTRY_REASONS),
            "removed": sorted(u for u, r in changes.items() if r not in ENTRY_REASONS),
            "reasons": {str(u): changes[u] for u in sorted(changes)},
            "hot_added": sorted(hot_added),
            "hot_removed": sorted(hot_removed),
            "hot_reasons": {str(u): r for u, r in sorted({**hot_added, **hot_removed}.items())},
            "symbols": {str(u): symbols[u] for u in sorted(symbols)},
            "members": sorted(self.members),
            "hot": sorted(self.hotlist),
            "universe_size": len(self.members),
        }

    def _symbol(self, uid: int) -> str:
        asset = self.assets.get(uid)
        if asset is not None:
            return str(asset["symbol"])
        return str(self.hotlist.get(uid, {}).get("symbol", ""))

    def to_state(self, *, shared: bool = False) -> dict[str, Any]:
        """Return the whole state as JSON data (keys sorted, uids as strings).

        Args:
            shared: False (default): a deep copy. True: no copy, the data shares this
                universe's lists and dicts (encode it at once; never keep or change it).
        """
        state = {
            "v": STATE_VERSION,
            "rev": self.rev,
            "now": self.now,
            "frozen_until": self.frozen_until,
            "churn_hour": self.churn_hour,
            "churn_count": self.churn_count,
            "bootstrapped": self.bootstrapped,
            "assets": {str(u): self.assets[u] for u in sorted(self.assets)},
            "members": {str(u): self.members[u] for u in sorted(self.members)},
            "hotlist": {str(u): self.hotlist[u] for u in sorted(self.hotlist)},
        }
        return state if shared else copy.deepcopy(state)

    @classmethod
    def from_state(cls, policy: UniversePolicy, state: Mapping[str, Any]) -> Universe:
        """Rebuild a universe from :meth:`to_state` data (continues bit-identically)."""
        return cls(policy, state)
