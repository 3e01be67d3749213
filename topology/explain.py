"""Why an event fired, and whether the topology reproduces it (spec 002 §13.5): the pure core.

:func:`explain` re-runs the whole topology -- lattice, market, detect -- in-process with the
:class:`topology.pipeline_driver.PipelineDriver` (fresh memory state) over the raw ``md.raw.v0``
values from the first one, until the event's minute is decided on every partition, and keeps only
what concerns the event: the trigger the detector produced (its inputs, thresholds and detail),
the scoring of that step (the scorer's state before it, the severity term by term, novelty,
cooldown, outcome), the asset's feature row of the minute, the partition's market frame, and the
re-run's event with the same ``event_id``. The re-run stamps the live event's provenance
(producer, detector pack version, git commit) so the two payloads can be compared field by field.

No Kafka here: ``topology.explain_cli`` finds the event and reads ``md.raw.v0``.

Choices:

- **Where it stops.** Every event's ``exchange_ts`` is a 1m bar label (funding and rotation
  events too: their ``tf`` is a debounce timeframe, detectors evaluate 1m rows only), and the
  minute is decided once the lattice made it final (``label + grace``) on every partition: the
  market frame needs every partition's close seal, a revision-1 event the final seal. So a
  partition's values are piped up to and including the first one whose ``exchange_ts`` is past
  ``label + grace + margin``; the rest of that partition is skipped.
- **The scoring breakdown** is recomputed from the scorer's state *before* the step, recorded by
  a :class:`Scorer` subclass put in the detect stage: novelty with the same rule as
  :meth:`Scorer._score`, the severity with :func:`processors.detect.scoring.severity` itself.
- **Packs first.** The event's ``config_hash`` (feature pack x detector pack x universe policy
  revision) is checked against the loaded packs before anything runs: with other packs the ids
  cannot match, so :func:`explain` raises :class:`PackMismatchError` unless told not to.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packs.canonical import config_hash
from packs.detector import SUBTYPE_FAMILY, DetectorPack, Resolved
from packs.feature import FeaturePack
from packs.universe import UniversePolicy
from processors.detect.events import Provenance
from processors.detect.processor import EVENTS_TOPIC, kind_of
from processors.detect.scoring import (
    KeyState,
    Scorer,
    ScoreResult,
    ScorerState,
    clamp,
    novelty_boost,
    severity,
)
from processors.detect.types import Trigger
from schemas.errors import AlphaError
from schemas.ids import partition_for
from topology.driver import Sent
from topology.pipeline_driver import PipelineDriver

#: Stream time piped past the minute's final seal, so every partition's seals are surely in.
MARGIN_MS = 60_000
#: The re-run's state flush interval (outputs do not depend on it; fewer flushes are faster).
FLUSH_EVERY = 10_000


class ExplainError(AlphaError):
    """An event cannot be explained as asked (malformed event, nothing to re-run)."""


class PackMismatchError(ExplainError):
    """The event was made with other packs than the loaded ones (its config_hash differs)."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What a re-run runs with: the packs, the partitions of ``md.raw.v0`` and ``lattice.v0``."""

    feature_pack: FeaturePack
    detector_pack: DetectorPack
    policy: UniversePolicy
    partitions: int


@dataclass(frozen=True, slots=True)
class Target:
    """The event's coordinates in the topology: asset, minute, subtype, revision, debounce key."""

    event_id: str
    asset_uid: int
    symbol: str
    subtype: str
    exchange_ts: int
    revision: int
    debounce_key: str

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> Target:
        """Return the target of a decoded ``alpha.events.v0`` value.

        Raises:
            ExplainError: The value lacks an event field.
        """
        try:
            return cls(
                str(event["event_id"]),
                int(event["asset_uid"]),
                str(event["symbol"]),
                str(event["subtype"]),
                int(event["exchange_ts"]),
                int(event["revision"]),
                str(event["debounce_key"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ExplainError(f"not an alpha.events.v0 value: {exc!r}") from None

    def same_step(self, t: Trigger) -> bool:
        """True when ``t`` was scored in the event's step (same asset, minute, revision)."""
        return (t.asset_uid, t.exchange_ts, t.revision) == (
            self.asset_uid,
            self.exchange_ts,
            self.revision,
        )


@dataclass(frozen=True, slots=True)
class PackCheck:
    """The event's pack provenance beside the loaded packs'; ``mismatches`` lists differences."""

    event: dict[str, Any]
    loaded: dict[str, Any]
    mismatches: tuple[str, ...]


def check_packs(event: Mapping[str, Any], setup: Setup) -> PackCheck:
    """Compare the event's provenance with the loaded packs (versions, policy rev, config_hash)."""
    prov = event["provenance"]
    fp, dp, policy = setup.feature_pack, setup.detector_pack, setup.policy
    loaded = {
        "feature_pack": fp.feature_pack,
        "feature_hash": fp.hash(),
        "detector_pack": dp.version,
        "detector_hash": dp.hash(),
        "universe_policy_rev": policy.universe_policy_rev,
        # processors.detect.events.event_config_hash, from the packs instead of row and frame
        "config_hash": config_hash(
            {
                "feature": fp.hash(),
                "detector": dp.hash(),
                "universe_policy_rev": policy.universe_policy_rev,
            }
        ),
    }
    seen = {k: prov.get(k) for k in ("feature_pack", "detector_pack", "universe_policy_rev")}
    seen |= {k: prov.get(k) for k in ("config_hash", "producer", "git_commit")}
    mismatches = tuple(
        f"{k}: event {seen[k]}, loaded {loaded[k]}"
        for k in ("feature_pack", "detector_pack", "universe_policy_rev", "config_hash")
        if seen[k] != loaded[k]
    )
    return PackCheck(seen, loaded, mismatches)


@dataclass(frozen=True, slots=True)
class ScorerStep:
    """One :meth:`Scorer.step` of the detect stage: the state before, the triggers, the result."""

    before: ScorerState
    triggers: tuple[Trigger, ...]
    result: ScoreResult


class _RecordingScorer(Scorer):
    """The detect stage's scorer, keeping the steps that score the target's asset-minute."""

    def __init__(self, pack: DetectorPack, target: Target) -> None:
        super().__init__(pack)
        self.target = target
        self.steps: list[ScorerStep] = []

    def step(
        self, state: ScorerState, triggers: Sequence[Trigger]
    ) -> tuple[ScorerState, ScoreResult]:
        new_state, result = super().step(state, triggers)
        if any(self.target.same_step(t) for t in triggers):
            self.steps.append(ScorerStep(state, tuple(triggers), result))
        return new_state, result


@dataclass(slots=True)
class Rerun:
    """What a re-run kept of the target's asset-minute (everything else is dropped as it goes).

    Attributes:
        target: The event re-run for.
        records: Raw values piped.
        cutoff_ts: A partition stops after its first value past this stream time.
        unfinished: Partitions whose values ended before the cutoff (the minute may be undecided).
        events: The re-run's events of the asset at the minute, every subtype and revision.
        rows: The asset's 1m rows of the minute, every revision, in order.
        tf_row: For a 15m/1h event, the asset's latest row of that timeframe at the minute.
        frame: The partition's market frame of the minute.
        step: The scorer step of the target's asset-minute and revision, if any triggered.
        dead_letters: Values the lattice or the stages rejected.
    """

    target: Target
    records: int = 0
    cutoff_ts: int = 0
    unfinished: tuple[int, ...] = ()
    events: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    tf_row: dict[str, Any] | None = None
    frame: dict[str, Any] | None = None
    step: ScorerStep | None = None
    dead_letters: int = 0

    def keep(self, sent: Sent, partition: int, tf: str) -> None:
        """Keep ``sent`` if it concerns the target (its lattice ``partition``, event ``tf``)."""
        value, t = sent.value, self.target
        if sent.topic == EVENTS_TOPIC:
            if (value["asset_uid"], value["exchange_ts"]) == (t.asset_uid, t.exchange_ts):
                self.events.append(value)
            return
        if sent.topic != "lattice.v0":
            return
        kind = kind_of(value)
        if kind == "frame":
            if (sent.partition, value["exchange_ts"]) == (partition, t.exchange_ts):
                self.frame = value
        elif kind == "row" and value["asset_uid"] == t.asset_uid:
            ts = value["exchange_ts"]
            if value["tf"] == "m1" and ts == t.exchange_ts:
                self.rows.append(value)
            elif value["tf"] == tf != "m1" and ts <= t.exchange_ts:
                self.tf_row = value


def rerun_provenance(event: Mapping[str, Any], setup: Setup) -> Provenance:
    """Return the live event's provenance with the loaded detector pack's hash."""
    prov = event["provenance"]
    return Provenance(
        producer=str(prov["producer"]),
        detector_pack=str(prov["detector_pack"]),
        detector_hash=setup.detector_pack.hash(),
        git_commit=str(prov["git_commit"]),
    )


def cutoff_ts(event: Mapping[str, Any], pack: FeaturePack, margin_ms: int = MARGIN_MS) -> int:
    """Return the stream time past which the event's minute is decided (module docstring)."""
    return int(event["exchange_ts"]) + pack.lattice.grace_ms + margin_ms


def rerun(
    event: Mapping[str, Any],
    raw: Iterable[Mapping[str, Any]],
    setup: Setup,
    *,
    margin_ms: int = MARGIN_MS,
    provenance: Provenance | None = None,
) -> Rerun:
    """Re-run the topology from the first raw value until the event's minute is decided.

    Args:
        event: The decoded ``alpha.events.v0`` value.
        raw: ``md.raw.v0`` values from the first offset, in offset order per partition (any
            interleaving of partitions); each goes to the partition the sink's partitioner picks.
        setup: Packs and partitions.
        margin_ms: Stream time piped past the minute's final seal.
        provenance: Stamped on the re-run's events (default :func:`rerun_provenance`).
    """
    target = Target.of(event)
    out = Rerun(target, cutoff_ts=cutoff_ts(event, setup.feature_pack, margin_ms))
    driver = PipelineDriver(
        setup.feature_pack,
        setup.detector_pack,
        setup.policy,
        provenance=provenance or rerun_provenance(event, setup),
        partitions=setup.partitions,
        flush_every=FLUSH_EVERY,
    )
    scorer = _RecordingScorer(setup.detector_pack, target)
    driver.detector.scorer = scorer
    home = partition_for(str(target.asset_uid).encode(), setup.partitions)
    tf = str(event["tf"])
    done: set[int] = set()
    for value in raw:
        p = driver.partition_of(value)
        if p in done:
            continue
        for sent in driver.pipe(value, p):
            out.keep(sent, home, tf)
        driver.outputs.clear()  # a long topic must not pile up in memory
        driver.reports.clear()
        out.records += 1
        if int(value["exchange_ts"]) > out.cutoff_ts:
            done.add(p)
            if len(done) == setup.partitions:
                break
    out.unfinished = tuple(p for p in range(setup.partitions) if p not in done)
    out.step = scorer.steps[0] if scorer.steps else None
    out.dead_letters = len(driver.dead_letters) + len(driver.stage_dead_letters)
    return out


# ------------------------------------------------------------------------------ the explanation
@dataclass(frozen=True, slots=True)
class Score:
    """The §10 scoring of one trigger in its step, term by term (spec 002 §10.2-§10.5).

    ``raw = w1 primary + w2 max(0, secondary) + w3 breadth + novelty - penalty`` and
    ``severity = floor(100 sigmoid(a (raw - sigmoid_center)) + 0.5)``.
    """

    policy: Resolved
    sigmoid_center: float
    primary: float
    secondary: float
    breadth: float
    core: float
    novelty: float
    penalty: float
    raw: float
    severity: int
    outcome: str
    novelty_rule: str = ""
    cause: str | None = None
    first_seen_at: int | None = None
    coalesced: tuple[str, ...] = ()
    previous: KeyState | None = None


def score(trigger: Trigger, step: ScorerStep, scorer: Scorer) -> Score:
    """Return the scoring of ``trigger`` in ``step``, as :meth:`Scorer.step` did it."""
    pack, sc = scorer.pack, scorer.pack.scoring
    policy = scorer.policy(trigger)
    last = dict(step.before.keys).get(trigger.debounce_key)
    dt = None if last is None else trigger.exchange_ts - last.last_emit_ts
    reset_ms = sc.novelty_reset_half_lives * policy.half_life_s * 1000
    if last is None or dt is None:
        rule = "full boost: no emission of this key in memory"
    elif dt > reset_ms:
        rule = f"full boost: the key was silent {dt // 1000} s > {reset_ms / 1000:g} s (reset)"
    elif trigger.subtype != last.last_subtype:
        rule = f"full boost: the subtype changed from {last.last_subtype}"
    else:
        rule = f"decayed: {dt // 1000} s after the key's last emission"
    fresh = rule.startswith("full")
    novelty = novelty_boost(
        sc.novelty_boost, None if fresh else dt, policy.half_life_s, sc.novelty_cap
    )
    primary = clamp(trigger.primary_z, trigger.primary_bounds)
    bounds = trigger.secondary_bounds or (None,) * len(trigger.secondary_z)
    secondary = max(
        (clamp(v, b) for v, b in zip(trigger.secondary_z, bounds, strict=True)), default=0.0
    )
    core = policy.w1 * primary + policy.w2 * max(0.0, secondary) + policy.w3 * trigger.breadth
    penalty = sc.w_dq * trigger.dq_penalty + sc.w_liq * trigger.illiquidity_penalty
    emission = next((e for e in step.result.emissions if e.trigger == trigger), None)
    reason = next((s.reason for s in step.result.suppressions if s.trigger == trigger), None)
    return Score(
        policy=policy,
        sigmoid_center=sc.sigmoid_center,
        primary=primary,
        secondary=secondary,
        breadth=trigger.breadth,
        core=core,
        novelty=novelty,
        penalty=penalty,
        raw=core + novelty - penalty,
        severity=severity(trigger, novelty, policy, pack),
        outcome="emitted" if emission else reason or "unknown",
        novelty_rule=rule,
        cause=emission.cause if emission else None,
        first_seen_at=emission.first_seen_at if emission else None,
        coalesced=emission.coalesced if emission else (),
        previous=last,
    )


@dataclass(frozen=True, slots=True)
class Difference:
    """The first field where the live and the re-run payloads differ."""

    path: str
    live: Any
    rerun: Any


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the re-run reproduced the event (same id, same payload but ``replay_of``)."""

    reproduced: bool
    produced: bool
    severity_live: int
    severity_rerun: int | None
    difference: Difference | None
    closest: dict[str, Any] | None
    note: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything :func:`render` shows about one event (see the module docstring)."""

    event: dict[str, Any]
    packs: PackCheck
    trigger: Trigger | None
    threshold: float | None
    params: dict[str, Any]
    score: Score | None
    siblings: tuple[tuple[Trigger, Score], ...]
    feature_row: dict[str, Any] | None
    revisions: tuple[int, ...]
    tf_row: dict[str, Any] | None
    market_frame: dict[str, Any] | None
    verdict: Verdict
    rerun: dict[str, Any]

    @property
    def event_id(self) -> str:
        """Return the event's id."""
        return str(self.event["event_id"])


def explain(
    event: Mapping[str, Any],
    raw: Iterable[Mapping[str, Any]],
    setup: Setup,
    *,
    margin_ms: int = MARGIN_MS,
    provenance: Provenance | None = None,
    allow_mismatch: bool = False,
) -> Explanation:
    """Re-run the topology for ``event`` and explain it (see :func:`rerun` for the arguments).

    Raises:
        PackMismatchError: The loaded packs are not the event's (unless ``allow_mismatch``);
            checked before anything runs.
    """
    packs = check_packs(event, setup)
    if packs.mismatches and not allow_mismatch:
        raise PackMismatchError(
            f"event {event['event_id']} was not made with the loaded packs: "
            + "; ".join(packs.mismatches)
        )
    run = rerun(event, raw, setup, margin_ms=margin_ms, provenance=provenance)
    return build(event, run, setup)


def build(event: Mapping[str, Any], run: Rerun, setup: Setup) -> Explanation:
    """Return the explanation of ``event`` from a re-run made for its asset-minute (pure)."""
    target = Target.of(event)
    scorer = Scorer(setup.detector_pack)
    trigger: Trigger | None = None
    siblings: list[tuple[Trigger, Score]] = []
    if run.step is not None:
        mine = [t for t in run.step.triggers if target.same_step(t)]
        trigger = next((t for t in mine if t.subtype == target.subtype), None)
        siblings = [(t, score(t, run.step, scorer)) for t in mine if t != trigger]
    family = SUBTYPE_FAMILY.get(target.subtype)
    pack = setup.detector_pack
    rows = [r for r in run.rows if r["revision"] == target.revision]
    return Explanation(
        event=dict(event),
        packs=check_packs(event, setup),
        trigger=trigger,
        threshold=pack.threshold(family, trigger.tier) if trigger and family else None,
        params=pack.params(family).model_dump(mode="json") if family else {},
        score=score(trigger, run.step, scorer) if trigger and run.step else None,
        siblings=tuple(siblings),
        feature_row=rows[-1] if rows else None,
        revisions=tuple(r["revision"] for r in run.rows),
        tf_row=run.tf_row,
        market_frame=run.frame,
        verdict=verdict(event, run),
        rerun={
            "records": run.records,
            "cutoff_ts": run.cutoff_ts,
            "unfinished_partitions": list(run.unfinished),
            "dead_letters": run.dead_letters,
        },
    )


def verdict(event: Mapping[str, Any], run: Rerun) -> Verdict:
    """Compare the live event with the re-run's event of the same id (``replay_of`` ignored)."""
    target = Target.of(event)
    live_sev = int(event["severity"])
    again = next((e for e in run.events if str(e["event_id"]) == target.event_id), None)
    if again is None:
        closest = _closest(target, run.events)
        note = "the re-run never produced this event id"
        if closest is not None:
            note += f"; closest: {closest['subtype']} rev {closest['revision']}"
            note += f" severity {closest['severity']} ({closest['event_id']})"
        if run.unfinished:
            note += f"; md.raw.v0 partitions {list(run.unfinished)} ended before the minute"
        return Verdict(False, False, live_sev, None, None, closest, note)
    diff = first_difference(_normal(event), _normal(again))
    sev = int(again["severity"])
    note = "same id, same payload (replay_of aside)" if diff is None else f"differs at {diff.path}"
    return Verdict(diff is None, True, live_sev, sev, diff, None, note)


def _closest(target: Target, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    ranked = sorted(
        events,
        key=lambda e: (
            e["subtype"] != target.subtype,
            e["debounce_key"] != target.debounce_key,  # the same class: it may have coalesced
            e["revision"] != target.revision,
        ),
    )
    if not ranked:
        return None
    best = ranked[0]
    keys = ("event_id", "symbol", "subtype", "revision", "severity", "exchange_ts")
    return {k: str(best[k]) if k == "event_id" else best[k] for k in keys}


def _normal(event: Mapping[str, Any]) -> dict[str, Any]:
    prov = dict(event["provenance"])
    prov["replay_of"] = False  # a replay re-emits the same event flagged: not a difference
    return {**event, "provenance": prov}


def first_difference(live: Any, again: Any, path: str = "") -> Difference | None:
    """Return the first differing field path of two decoded values (depth first, live's order)."""
    if isinstance(live, Mapping) and isinstance(again, Mapping):
        for key in [*live, *(k for k in again if k not in live)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in live or key not in again:
                return Difference(where, live.get(key, "<absent>"), again.get(key, "<absent>"))
            diff = first_difference(live[key], again[key], where)
            if diff is not None:
                return diff
        return None
    if isinstance(live, list | tuple) and isinstance(again, list | tuple):
        for i, (a, b) in enumerate(zip(live, again, strict=False)):
            diff = first_difference(a, b, f"{path}[{i}]")
            if diff is not None:
                return diff
        if len(live) != len(again):
            return Difference(f"{path}[{min(len(live), len(again))}]", len(live), len(again))
        return None
    return None if _same(live, again) else Difference(path, live, again)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, uuid.UUID) or isinstance(b, uuid.UUID):
        return str(a) == str(b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)


# ------------------------------------------------------------------------------------- JSON
def to_json(x: Explanation) -> dict[str, Any]:
    """Return the explanation as one JSON object (``json.dumps(..., sort_keys=True)`` is stable).

    Values stay as decoded (epoch ms, Avro enum symbols); UUIDs become strings and non-finite
    floats their text, so the object is plain JSON.
    """
    t = x.trigger
    detector = None
    if t is not None:
        detector = {
            "detector_id": t.detector_id,
            "class": t.event_class,
            "subtype": t.subtype,
            "tf": t.tf,
            "window_sec": t.window_sec,
            "tier": t.tier,
            "threshold": x.threshold,
            "params": x.params,
            "primary_z": t.primary_z,
            "primary_bounds": t.primary_bounds,
            "secondary_z": t.secondary_z,
            "secondary_bounds": t.secondary_bounds,
            "breadth": t.breadth,
            "dq_penalty": t.dq_penalty,
            "illiquidity_penalty": t.illiquidity_penalty,
            "features": dict(t.features),
            "flags": t.flags,
            "detail": dict(t.detail),
        }
    out: dict[str, Any] = _plain(
        {
            "event_id": x.event_id,
            "event": x.event,
            "packs": dataclasses.asdict(x.packs),
            "detector": detector,
            "scoring": None if x.score is None else dataclasses.asdict(x.score),
            "siblings": [{"detector_id": s.detector_id, **_brief(sc)} for s, sc in x.siblings],
            "feature_row": x.feature_row,
            "revisions": x.revisions,
            "tf_row": x.tf_row,
            "market_frame": x.market_frame,
            "verdict": dataclasses.asdict(x.verdict),
            "rerun": x.rerun,
        }
    )
    return out


def _brief(s: Score) -> dict[str, Any]:
    return {"severity": s.severity, "outcome": s.outcome, "cause": s.cause}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
