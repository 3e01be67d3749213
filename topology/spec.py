"""The one declaration of every topic the topology owns (DESIGN.md §3).

``alpha topics create`` creates exactly these, idempotently; the Faust app, the sinks and the
replay tools read names, keys and partition counts from here and nowhere else. Faust's own internal
topics (table changelogs) are created by Faust and are not declared here.

Rules the declaration enforces (and ``tests/unit/test_spec.py`` pins):

* names follow ``<domain>.<entity>.v<major>``; dead-letter topics are ``<domain>.<entity>.dlq``;
* every topic keyed by ``asset_uid`` has the same partition count, so stages stay co-partitioned;
* compacted topics carry latest-value state (budgets, caps, universe revisions), never a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from schemas.errors import AlphaError

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

#: Partitions of every per-asset topic. Changing it re-hashes keys: a new deployment, not an edit.
ASSET_PARTITIONS = 8

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.(v\d+|dlq)$")


class TopologySpecError(AlphaError):
    """The topic declaration breaks one of its own rules (name, key, partitions, cleanup)."""


class Cleanup(StrEnum):
    """Kafka ``cleanup.policy``."""

    DELETE = "delete"
    COMPACT = "compact"


class Key(StrEnum):
    """What a topic's record key holds."""

    ASSET_UID = "asset_uid"
    TF = "tf"
    CONSTANT = "constant"
    SCOPE = "scope"
    ALIAS = "alias"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic.

    Attributes:
        name: ``<domain>.<entity>.v<major>`` (or ``.dlq``).
        key: What the record key holds.
        partitions: Partition count.
        cleanup: ``delete`` (a log with retention) or ``compact`` (latest value per key).
        retention_ms: Time retention for ``delete`` topics; ``-1`` keeps forever.
        doc: One line on what the topic carries, producer and consumers.
        dlq: Whether a dead-letter topic ``<domain>.<entity>.dlq`` exists for this input.
    """

    name: str
    key: Key
    partitions: int
    cleanup: Cleanup
    retention_ms: int
    doc: str
    dlq: bool = False

    def configs(self) -> dict[str, str]:
        """Return the Kafka topic configs this spec implies."""
        out = {"cleanup.policy": str(self.cleanup)}
        if self.cleanup is Cleanup.DELETE:
            out["retention.ms"] = str(self.retention_ms)
        else:
            out["min.compaction.lag.ms"] = "0"
        return out


def dlq_name(topic: str) -> str:
    """Return the dead-letter topic of ``topic``: ``md.raw.v0`` -> ``md.raw.dlq``."""
    return re.sub(r"\.v\d+$", ".dlq", topic)


def _asset(name: str, doc: str, *, retention_days: int, dlq: bool = False) -> TopicSpec:
    return TopicSpec(
        name, Key.ASSET_UID, ASSET_PARTITIONS, Cleanup.DELETE, retention_days * DAY_MS, doc, dlq
    )


def _compacted(name: str, key: Key, partitions: int, doc: str) -> TopicSpec:
    return TopicSpec(name, key, partitions, Cleanup.COMPACT, -1, doc)


_DECLARED: tuple[TopicSpec, ...] = (
    _asset(
        "md.raw.v0",
        "raw trade batches, BBO, top-N book, asset contexts, heartbeats: connectors -> lattice",
        retention_days=7,
        dlq=True,
    ),
    _asset(
        "lattice.v0",
        "1m/15m/1h feature rows, close/amend/final seals, market frames: lattice -> detector, sink",
        retention_days=30,
        dlq=True,
    ),
    TopicSpec(
        "market.in.v0",
        Key.CONSTANT,
        1,
        Cleanup.DELETE,
        7 * DAY_MS,
        "feature summaries and seal markers repartitioned to one partition: lattice -> market",
        dlq=True,
    ),
    TopicSpec(
        "market.snapshot.v0",
        Key.TF,
        1,
        Cleanup.DELETE,
        30 * DAY_MS,
        "cross-asset market snapshot per minute (spec 002 §6): market -> ClickHouse, detector",
    ),
    _compacted(
        "asset.registry.v0",
        Key.ALIAS,
        1,
        "asset identities and aliases, key venue:kind:symbol:generation (spec 002 §3.2)",
    ),
    _compacted("universe.v0", Key.CONSTANT, 1, "universe and hotlist revisions (spec 002 §7)"),
    _asset(
        "alpha.events.v0",
        "the event contract (spec 002 §11): detector -> users, sizing, ClickHouse",
        retention_days=90,
        dlq=True,
    ),
    _asset(
        "alpha.events.replay.v0",
        "events re-emitted by offset replays, compared with alpha.events.v0",
        retention_days=30,
    ),
    TopicSpec(
        "alpha.sink.dlq",
        Key.ASSET_UID,
        1,
        Cleanup.DELETE,
        30 * DAY_MS,
        "records the ClickHouse sink could not decode or map, with the reason in a header",
    ),
    TopicSpec(
        "trade.in.v0",
        Key.CONSTANT,
        1,
        Cleanup.DELETE,
        7 * DAY_MS,
        "each detector partition's quotes and events per minute in one stream: detector -> trader",
        dlq=True,
    ),
    _compacted("hrp.budget.v0", Key.SCOPE, 1, "HRP cluster budgets, latest per scope (spec 000)"),
    _compacted("cvar.caps.v0", Key.ASSET_UID, ASSET_PARTITIONS, "CVaR leverage caps (spec 000)"),
    _asset(
        "sizing.decisions.v0",
        "risk-sized decisions with their overlay inputs",
        retention_days=90,
        dlq=True,
    ),
    _asset("orders.v0", "paper orders from sizing decisions", retention_days=90, dlq=True),
    _asset("fills.v0", "paper fills against recorded BBO/book", retention_days=90),
    _asset("trade.adjust.v0", "exit advice and trade adjustments (spec 003)", retention_days=90),
    _compacted("risk.state.v0", Key.SCOPE, 1, "risk-control state: loss caps, streaks, cooldowns"),
    TopicSpec(
        "control.v0",
        Key.SCOPE,
        1,
        Cleanup.DELETE,
        90 * DAY_MS,
        "kill switch, mode switch, subscribe/unsubscribe commands (spec 004 P0-2)",
    ),
    _asset(
        "retention.events.v0", "retention and gating decisions (spec 000 §20)", retention_days=90
    ),
    TopicSpec(
        "ops.smoke.v0",
        Key.CONSTANT,
        1,
        Cleanup.DELETE,
        DAY_MS,
        "stack self-test records written and read back by `alpha smoke`",
    ),
)


def _with_dlqs(specs: tuple[TopicSpec, ...]) -> tuple[TopicSpec, ...]:
    out = list(specs)
    for spec in specs:
        if spec.dlq:
            doc = f"dead letters of {spec.name}: original bytes, error, stage, offset in headers"
            out.append(
                TopicSpec(dlq_name(spec.name), spec.key, 1, Cleanup.DELETE, 30 * DAY_MS, doc)
            )
    return tuple(out)


def validate(specs: tuple[TopicSpec, ...]) -> None:
    """Check the declaration's rules.

    Raises:
        TopologySpecError: A name is malformed or repeated, a partition count is not positive,
            an ``asset_uid`` topic is not co-partitioned, or a retention contradicts the cleanup
            policy.
    """
    seen: set[str] = set()
    for spec in specs:
        if not _NAME.match(spec.name):
            raise TopologySpecError(f"topic {spec.name!r}: not <domain>.<entity>.v<major>|dlq")
        if spec.name in seen:
            raise TopologySpecError(f"topic {spec.name!r} is declared twice")
        seen.add(spec.name)
        if spec.partitions < 1:
            raise TopologySpecError(f"topic {spec.name!r}: partitions must be >= 1")
        is_dlq = spec.name.endswith(".dlq")
        if spec.key is Key.ASSET_UID and not is_dlq and spec.partitions != ASSET_PARTITIONS:
            raise TopologySpecError(
                f"topic {spec.name!r} is keyed by asset_uid with {spec.partitions} partitions;"
                f" every per-asset topic has {ASSET_PARTITIONS} (co-partitioning)"
            )
        if spec.cleanup is Cleanup.COMPACT and spec.retention_ms != -1:
            raise TopologySpecError(f"compacted topic {spec.name!r} must not set a time retention")
        if spec.cleanup is Cleanup.DELETE and spec.retention_ms == 0:
            raise TopologySpecError(f"topic {spec.name!r}: retention_ms 0 would drop everything")


TOPICS: tuple[TopicSpec, ...] = _with_dlqs(_DECLARED)
validate(TOPICS)
BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def topic(name: str) -> TopicSpec:
    """Return the declared topic ``name``.

    Raises:
        TopologySpecError: ``name`` is not declared.
    """
    try:
        return BY_NAME[name]
    except KeyError:
        raise TopologySpecError(f"topic {name!r} is not declared in topology/spec.py") from None


def _retention_text(spec: TopicSpec) -> str:
    if spec.cleanup is Cleanup.COMPACT:
        return "compact"
    if spec.retention_ms < 0:
        return "forever"
    days, rem = divmod(spec.retention_ms, DAY_MS)
    return f"{days}d" if rem == 0 else f"{spec.retention_ms // HOUR_MS}h"


def describe(specs: tuple[TopicSpec, ...] = TOPICS) -> str:
    """Render the declaration as a fixed-width text table (snapshot-tested)."""
    width = max(len(s.name) for s in specs)
    lines = [f"{'topic':<{width}}  {'key':<9}  {'parts':>5}  {'keep':<7}  what"]
    lines += [
        f"{s.name:<{width}}  {s.key!s:<9}  {s.partitions:>5}  {_retention_text(s):<7}  {s.doc}"
        for s in specs
    ]
    return "\n".join(lines)
