"""Severity, novelty, debounce and budgets (spec 002 §10, Appendix D): triggers in, events out.

``Scorer(pack).step(state, triggers) -> (state, ScoreResult)`` is the whole stage: pure, with the
debounce/novelty/budget state an explicit, versioned, JSON-serialisable value. Stream time is the
triggers' ``exchange_ts``; nothing reads a clock. The caller passes the triggers of one sealed
minute (the rows of a partition-minute, or a revision of it); the result does not depend on
their order.

Per trigger (§10.2-§10.4, §10.7):

    p    = clamp(primary_z, primary_bounds)            # IQR clamp, scoring only
    s    = max(clamp(secondary_i, bounds_i)) or 0      # the strongest supporting value
    core = w1 p + w2 max(0, s) + w3 breadth
    raw  = core + novelty - (w_dq dq_penalty + w_liq illiquidity_penalty)
    severity = floor(100 sigmoid(a (raw - center)) + 0.5)   # half-up, 0..100

Novelty of a debounce key (``SYMBOL:class:tf``): ``β0`` at the first emission of an episode or
on a subtype change, else ``β0 exp(-dt / half_life)`` with ``dt`` the time since the key's last
emission (the formula of §10.4 as written), capped at ``novelty_cap``. An episode ends when the
key has not emitted for ``novelty_reset_half_lives`` half-lives; the next emission is then a
first one again (``first_seen_at`` restarts).

Then, per pass (all clusters starting at one ``exchange_ts``), in this order:

1. Coalesce (§10.5): same-key triggers within ``coalesce_window_ms`` of the earliest one are one
   cluster; the highest severity wins (ties: subtype name), the others are listed in
   ``coalesced`` and suppressed as ``coalesced``.
2. Debounce (§10.5): below the class publish threshold -> ``below_threshold``; outside cooldown ->
   emit; in cooldown, a different subtype than the last emission -> emit (novelty reset); same
   subtype at ``>= last_severity (1 + reemit_gain)`` -> emit; else ``cooldown``. Each emission
   restarts the cooldown of the emitting detector.
3. Class budget (§10.6, D.5, D.7): per symbol x class x minute, highest severity first ->
   ``budget_class``.
4. Global cap (§10.6, D.5): per minute across symbols; when over, one event per class not yet
   represented in the minute is kept first (class diversity), then the highest severities ->
   ``global_cap``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from packs.detector import DetectorPack, Resolved
from processors.detect.types import MINUTE_MS, Reason, Suppression, Trigger

STATE_VERSION = 1
Cause = Literal["first", "after_cooldown", "subtype_change", "reemit_gain"]
_EPS = 1e-9  # severity >= last * 1.3 is compared with this slack (50 * 1.3 = 65.00000000000001)


@dataclass(frozen=True, slots=True)
class Emission:
    """A trigger that becomes an event (spec 002 §11.1: severity, novelty, debounce_key...)."""

    trigger: Trigger
    severity: int
    first_seen_at: int
    debounce_key: str
    coalesced: tuple[str, ...] = ()
    cause: Cause = "first"


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """Emissions and suppressions of one step, both sorted by ``Trigger.sort_key``."""

    emissions: tuple[Emission, ...]
    suppressions: tuple[Suppression, ...]


@dataclass(frozen=True, slots=True)
class KeyState:
    """Debounce and novelty state of one ``SYMBOL:class:tf`` key."""

    last_emit_ts: int
    last_severity: int
    last_subtype: str
    cooldown_until_ts: int
    first_seen_at: int


@dataclass(frozen=True, slots=True)
class ScorerState:
    """The scorer's whole state: keys, and emission counts of recent minutes.

    ``class_counts`` holds ``(minute_ts, symbol, class) -> n`` and ``global_counts``
    ``(minute_ts, class) -> n``, both sorted; keys and counts that can no longer change a
    decision are pruned, so the state stays small and pruning never changes an output.
    """

    keys: tuple[tuple[str, KeyState], ...] = ()
    class_counts: tuple[tuple[int, str, str, int], ...] = ()
    global_counts: tuple[tuple[int, str, int], ...] = ()

    def to_state(self) -> dict[str, Any]:
        """Return the JSON-serialisable state (versioned)."""
        return {
            "v": STATE_VERSION,
            "keys": [
                [
                    k,
                    s.last_emit_ts,
                    s.last_severity,
                    s.last_subtype,
                    s.cooldown_until_ts,
                    s.first_seen_at,
                ]
                for k, s in self.keys
            ],
            "class_counts": [list(c) for c in self.class_counts],
            "global_counts": [list(c) for c in self.global_counts],
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> ScorerState:
        """Rebuild from :meth:`to_state` output.

        Raises:
            ValueError: Unknown state version.
        """
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"ScorerState version {data.get('v')!r} is not {STATE_VERSION}")
        return cls(
            keys=tuple(
                (str(k), KeyState(int(a), int(b), str(c), int(d), int(e)))
                for k, a, b, c, d, e in data["keys"]
            ),
            class_counts=tuple(
                (int(m), str(s), str(c), int(n)) for m, s, c, n in data["class_counts"]
            ),
            global_counts=tuple((int(m), str(c), int(n)) for m, c, n in data["global_counts"]),
        )


def sigmoid(x: float) -> float:
    """Return the logistic function, stable for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def clamp(value: float, bounds: tuple[float, float] | None) -> float:
    """Clamp ``value`` into ``bounds`` (§4.4, §10.2); None leaves it unchanged."""
    return value if bounds is None else min(max(value, bounds[0]), bounds[1])


def novelty_boost(beta0: float, dt_ms: int | None, half_life_s: float, cap: float) -> float:
    """Return §10.4's boost: ``β0`` first (``dt_ms`` None), else ``β0 exp(-dt / half_life)``."""
    boost = beta0 if dt_ms is None else beta0 * math.exp(-dt_ms / 1000.0 / half_life_s)
    return min(boost, cap)


def severity(trigger: Trigger, novelty: float, policy: Resolved, pack: DetectorPack) -> int:
    """Return the 0..100 severity of a trigger with a given novelty boost (§10.3, §10.7)."""
    sc = pack.scoring
    primary = clamp(trigger.primary_z, trigger.primary_bounds)
    bounds = trigger.secondary_bounds or (None,) * len(trigger.secondary_z)
    secondary = max(
        (clamp(v, b) for v, b in zip(trigger.secondary_z, bounds, strict=True)), default=0.0
    )
    core = policy.w1 * primary + policy.w2 * max(0.0, secondary) + policy.w3 * trigger.breadth
    penalty = sc.w_dq * trigger.dq_penalty + sc.w_liq * trigger.illiquidity_penalty
    raw = core + novelty - penalty
    return math.floor(100.0 * sigmoid(policy.a * (raw - sc.sigmoid_center)) + 0.5)


@dataclass(frozen=True, slots=True)
class _Scored:
    trigger: Trigger
    policy: Resolved
    severity: int
    expired: bool  # no emission of the key within the novelty episode: a first one again


@dataclass(frozen=True, slots=True)
class _Candidate:
    scored: _Scored
    coalesced: tuple[str, ...]
    cause: Cause
    first_seen_at: int


class Scorer:
    """The §10 scoring and emission model of one detector pack (pure; see the module doc)."""

    def __init__(self, pack: DetectorPack) -> None:
        self.pack = pack
        self._memory_ms = pack.memory_ms()
        self._policies: dict[tuple[str, str], Resolved] = {}

    def policy(self, trigger: Trigger) -> Resolved:
        """Return the resolved class/detector/tier policy of a trigger (cached)."""
        key = (trigger.subtype, trigger.tier)
        if key not in self._policies:
            self._policies[key] = self.pack.resolve(trigger.subtype, trigger.tier)
        return self._policies[key]

    def step(
        self, state: ScorerState, triggers: Sequence[Trigger]
    ) -> tuple[ScorerState, ScoreResult]:
        """Score, debounce and budget one batch of triggers.

        Args:
            state: The state after the previous step.
            triggers: Triggers of one stream minute (any order).

        Returns:
            The new state and the emissions and suppressions.
        """
        ordered = sorted(set(triggers), key=lambda t: t.sort_key)
        if not self.pack.emit_events:
            return state, ScoreResult((), tuple(Suppression(t, "emit_disabled") for t in ordered))
        keys = dict(state.keys)
        per_class = {(m, s, c): n for m, s, c, n in state.class_counts}
        per_global = {(m, c): n for m, c, n in state.global_counts}
        emitted: list[Emission] = []
        dropped: list[Suppression] = []
        for start, clusters in _passes(ordered, self.pack.scoring.coalesce_window_ms):
            candidates: list[_Candidate] = []
            for cluster in clusters:
                winner, losers = self._coalesce(cluster, keys)
                dropped += [Suppression(t, "coalesced") for t in losers]
                decision = self._debounce(winner, keys, tuple(sorted({t.subtype for t in losers})))
                if isinstance(decision, _Candidate):
                    candidates.append(decision)
                else:
                    dropped.append(Suppression(winner.trigger, decision))
            minute = start - start % MINUTE_MS
            kept, over = self._budget(candidates, minute, per_class)
            dropped += [Suppression(c.scored.trigger, "budget_class") for c in over]
            kept, over = self._cap(kept, minute, per_global)
            dropped += [Suppression(c.scored.trigger, "global_cap") for c in over]
            emitted += [self._emit(c, keys, per_class, per_global, minute) for c in kept]
        new_state = self._prune(keys, per_class, per_global, ordered)
        return new_state, ScoreResult(
            tuple(sorted(emitted, key=lambda e: e.trigger.sort_key)),
            tuple(sorted(dropped, key=lambda s: (s.trigger.sort_key, s.reason))),
        )

    def _score(self, trigger: Trigger, keys: Mapping[str, KeyState]) -> _Scored:
        policy = self.policy(trigger)
        sc = self.pack.scoring
        last = keys.get(trigger.debounce_key)
        reset_ms = sc.novelty_reset_half_lives * policy.half_life_s * 1000
        dt = None if last is None else trigger.exchange_ts - last.last_emit_ts
        expired = dt is None or dt > reset_ms
        fresh = expired or last is None or trigger.subtype != last.last_subtype
        boost = novelty_boost(
            sc.novelty_boost, None if fresh else dt, policy.half_life_s, sc.novelty_cap
        )
        return _Scored(trigger, policy, severity(trigger, boost, policy, self.pack), expired)

    def _coalesce(
        self, cluster: list[Trigger], keys: Mapping[str, KeyState]
    ) -> tuple[_Scored, list[Trigger]]:
        scored = sorted(
            (self._score(t, keys) for t in cluster),
            key=lambda s: (-s.severity, s.trigger.subtype, s.trigger.sort_key),
        )
        return scored[0], [s.trigger for s in scored[1:]]

    def _debounce(
        self, s: _Scored, keys: Mapping[str, KeyState], coalesced: tuple[str, ...]
    ) -> _Candidate | Reason:
        t = s.trigger
        coalesced = tuple(c for c in coalesced if c != t.subtype)
        if s.severity < s.policy.publish_threshold:
            return "below_threshold"
        last = keys.get(t.debounce_key)
        if last is None:
            return _Candidate(s, coalesced, "first", t.exchange_ts)
        changed = t.subtype != last.last_subtype
        first_seen = t.exchange_ts if s.expired or changed else last.first_seen_at
        if t.exchange_ts >= last.cooldown_until_ts:
            # an expired key is exactly a key never seen, so pruning it changes no output
            cause: Cause = (
                "first" if s.expired else "subtype_change" if changed else "after_cooldown"
            )
            return _Candidate(s, coalesced, cause, first_seen)
        if changed:
            return _Candidate(s, coalesced, "subtype_change", first_seen)
        if s.severity >= last.last_severity * (1 + self.pack.scoring.reemit_gain) - _EPS:
            return _Candidate(s, coalesced, "reemit_gain", first_seen)
        return "cooldown"

    def _budget(
        self,
        candidates: list[_Candidate],
        minute: int,
        per_class: Mapping[tuple[int, str, str], int],
    ) -> tuple[list[_Candidate], list[_Candidate]]:
        kept: list[_Candidate] = []
        over: list[_Candidate] = []
        used: dict[tuple[str, str], int] = {}
        for c in sorted(candidates, key=_by_severity):
            t = c.scored.trigger
            k = (t.symbol, t.event_class)
            n = per_class.get((minute, *k), 0) + used.get(k, 0)
            if n < c.scored.policy.budget_per_symbol_min:
                used[k] = used.get(k, 0) + 1
                kept.append(c)
            else:
                over.append(c)
        return kept, over

    def _cap(
        self, candidates: list[_Candidate], minute: int, per_global: Mapping[tuple[int, str], int]
    ) -> tuple[list[_Candidate], list[_Candidate]]:
        room = self.pack.global_cap_per_min - sum(
            n for (m, _c), n in per_global.items() if m == minute
        )
        ranked = sorted(candidates, key=_by_severity)
        if len(ranked) <= room:
            return ranked, []
        present = {c for (m, c), n in per_global.items() if m == minute and n > 0}
        reserved: set[int] = set()
        for i, c in enumerate(ranked):  # the best event of each class not yet in the minute
            cls = c.scored.trigger.event_class
            if cls not in present and len(reserved) < room:
                present.add(cls)
                reserved.add(i)
        rest = [i for i in range(len(ranked)) if i not in reserved][: max(0, room - len(reserved))]
        keep = reserved | set(rest)
        return (
            [c for i, c in enumerate(ranked) if i in keep],
            [c for i, c in enumerate(ranked) if i not in keep],
        )

    def _emit(
        self,
        c: _Candidate,
        keys: dict[str, KeyState],
        per_class: dict[tuple[int, str, str], int],
        per_global: dict[tuple[int, str], int],
        minute: int,
    ) -> Emission:
        t, sev = c.scored.trigger, c.scored.severity
        keys[t.debounce_key] = KeyState(
            last_emit_ts=t.exchange_ts,
            last_severity=sev,
            last_subtype=t.subtype,
            cooldown_until_ts=t.exchange_ts + c.scored.policy.cooldown_ms,
            first_seen_at=c.first_seen_at,
        )
        per_class[(minute, t.symbol, t.event_class)] = (
            per_class.get((minute, t.symbol, t.event_class), 0) + 1
        )
        per_global[(minute, t.event_class)] = per_global.get((minute, t.event_class), 0) + 1
        return Emission(t, sev, c.first_seen_at, t.debounce_key, c.coalesced, c.cause)

    def _prune(
        self,
        keys: Mapping[str, KeyState],
        per_class: Mapping[tuple[int, str, str], int],
        per_global: Mapping[tuple[int, str], int],
        ordered: Iterable[Trigger],
    ) -> ScorerState:
        latest = max(
            [t.exchange_ts for t in ordered]
            + [s.last_emit_ts for s in keys.values()]
            + [m for m, _c in per_global],
            default=0,
        )
        floor = latest - latest % MINUTE_MS - MINUTE_MS  # this minute and the one before
        return ScorerState(
            keys=tuple(
                sorted(
                    (k, s) for k, s in keys.items() if latest - s.last_emit_ts <= self._memory_ms
                )
            ),
            class_counts=tuple(sorted((*k, n) for k, n in per_class.items() if k[0] >= floor)),
            global_counts=tuple(sorted((*k, n) for k, n in per_global.items() if k[0] >= floor)),
        )


def _by_severity(c: _Candidate) -> tuple[int, tuple[int, int, str, str, str, int]]:
    return (-c.scored.severity, c.scored.trigger.sort_key)


def _passes(ordered: list[Trigger], window_ms: int) -> list[tuple[int, list[list[Trigger]]]]:
    """Group triggers into same-key clusters within the window, then by the cluster's start."""
    clusters: dict[str, list[list[Trigger]]] = {}
    for t in ordered:  # ordered by time, so a cluster's first trigger is its earliest
        runs = clusters.setdefault(t.debounce_key, [])
        if runs and t.exchange_ts - runs[-1][0].exchange_ts <= window_ms:
            runs[-1].append(t)
        else:
            runs.append([t])
    by_start: dict[int, list[list[Trigger]]] = {}
    for key in sorted(clusters):
        for run in clusters[key]:
            by_start.setdefault(run[0].exchange_ts, []).append(run)
    return sorted(by_start.items())
