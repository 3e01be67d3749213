"""Offset replays and their verification: the core, without Kafka (spec 002 §16, §18.5).

``alpha replay run`` re-runs the whole topology from ``md.raw.v0`` offsets with fresh state and
publishes the events it makes on ``alpha.events.replay.v0``; ``alpha replay verify`` compares
those with the live ``alpha.events.v0``. The Kafka plumbing is in :mod:`topology.replay_cli`;
this module holds what can be tested without a broker:

- the offset range of each partition from ``--from-offset``/``--from-time`` and
  ``--to-offset``/``--to-time`` (:func:`resolve_ranges`, :func:`parse_time`);
- :class:`Replayer`: raw wire-format values in, the events to publish out, through
  :class:`topology.pipeline_driver.PipelineDriver` with fresh memory stores, counting what did
  not decode;
- the comparison of two event lists (:func:`compare`): ``provenance.replay_of`` normalised and
  nothing else, duplicates of ``(event_id, revision)`` dropped (the last copy kept), a sha256
  digest of each side over its canonical bytes in ``(exchange_ts, event_id, revision)`` order,
  and the first difference: an event missing on one side, or the first differing field path.

Canonical bytes of an event are its JSON with sorted keys, no whitespace and floats in Python's
shortest round-trip form (``repr``), so equal bytes mean equal doubles, bit for bit (``-0.0``
and ``0.0`` differ; NaN equals NaN). Independent of the Avro writer schema, map order or the
framing's schema id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.detect.processor import EVENTS_TOPIC
from schemas.errors import AlphaError, WireFormatError
from schemas.events import parse_epoch_ms, violations
from schemas.wire import AvroCodec
from topology.driver import Sent
from topology.pipeline_driver import PipelineDriver

REPLAY_TOPIC = "alpha.events.replay.v0"
#: Header naming the replay run (its transactional id) on every record it publishes.
RUN_HEADER = "alpha-replay-run"

EventKey = tuple[str, int]  # (event_id, revision)


class ReplayError(AlphaError):
    """An offset replay or its verification cannot run (bad bounds, unreadable topic)."""


# ---------------------------------------------------------------------------- offsets and time
def parse_time(text: str, option: str = "--from-time") -> int:
    """Parse ISO-8601 (UTC unless it names an offset) or epoch milliseconds into epoch ms.

    Raises:
        ReplayError: Neither, or digits too few to be epoch milliseconds.
    """
    try:
        return parse_epoch_ms(text)
    except ValueError as exc:
        raise ReplayError(f"{option} {text!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Bounds:
    """Where a replay starts and stops: one kind of bound per end, None = open.

    Attributes:
        from_offset: The same start offset on every partition.
        from_offsets: Per-partition start offsets found for ``--from-time`` (``-1``: no record
            at or after the time, i.e. the end).
        to_offset: The same end offset (exclusive) on every partition.
        to_offsets: Per-partition offsets found for ``--to-time`` (the first record at or after
            it, excluded; ``-1``: none, i.e. the end).
    """

    from_offset: int | None = None
    from_offsets: Mapping[int, int] | None = None
    to_offset: int | None = None
    to_offsets: Mapping[int, int] | None = None


def resolve_ranges(
    watermarks: Mapping[int, tuple[int, int]], bounds: Bounds
) -> dict[int, tuple[int, int]]:
    """Return each partition's ``[start, end)`` offsets, clamped to its ``(low, high)``.

    ``high`` is the end at the replay's start (the last stable offset under read_committed), so
    records written during the replay are left out. Open bounds are ``low`` and ``high``.
    """
    ranges: dict[int, tuple[int, int]] = {}
    for p, (low, high) in sorted(watermarks.items()):
        start = _pick(bounds.from_offset, bounds.from_offsets, p, low, high, default=low)
        end = _pick(bounds.to_offset, bounds.to_offsets, p, low, high, default=high)
        ranges[p] = (start, max(start, end))
    return ranges


def _pick(
    same: int | None, found: Mapping[int, int] | None, p: int, low: int, high: int, default: int
) -> int:
    if same is not None:
        offset = same
    elif found is not None:
        offset = found.get(p, -1)
        offset = high if offset < 0 else offset  # no record at or after the time
    else:
        offset = default
    return min(max(offset, low), high)


# ---------------------------------------------------------------------------- the replay itself
@dataclass(slots=True)
class ReplayStats:
    """What a replay read and produced.

    Attributes:
        records: Raw records read, by partition.
        first_offset: First offset read, by partition.
        last_offset: Last offset read, by partition.
        pipe_errors: Raw records that did not decode, by reason (the lattice worker dead-letters
            them; the replay counts them and goes on).
        dead_letters: Records a stage rejected (lattice ``BadRecord``, market, detector), by
            stage topic.
        contract_dropped: Events breaking §11.2's bounds (the live detector sends them to
            ``alpha.events.dlq``; the replay publishes neither).
        events: Events produced, by class.
    """

    records: Counter[int] = field(default_factory=Counter)
    first_offset: dict[int, int] = field(default_factory=dict)
    last_offset: dict[int, int] = field(default_factory=dict)
    pipe_errors: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    contract_dropped: int = 0
    events: Counter[str] = field(default_factory=Counter)

    @property
    def total_records(self) -> int:
        """Return the raw records read on every partition."""
        return sum(self.records.values())


class Replayer:
    """Feed raw wire-format values through a fresh :class:`PipelineDriver`; return its events.

    Args:
        driver: A driver with fresh state and a provenance with ``replay_of=True``.
        raw_codec: The ``md.raw.v0`` codec the lattice worker decodes with (the registered id of
            the shipped schema: a value framed with another id is a pipe error, as it is a dead
            letter live).
    """

    def __init__(self, driver: PipelineDriver, raw_codec: AvroCodec) -> None:
        self.driver = driver
        self.raw_codec = raw_codec
        self.stats = ReplayStats()

    def feed(self, partition: int, offset: int, data: bytes) -> list[Sent]:
        """Process one ``md.raw.v0`` record; return the events to publish, in order."""
        stats = self.stats
        stats.records[partition] += 1
        stats.first_offset.setdefault(partition, offset)
        stats.last_offset[partition] = offset
        try:
            value = self.raw_codec.decode(data)
        except WireFormatError as exc:
            stats.pipe_errors[_reason(exc)] += 1
            return []
        driver = self.driver
        driver.pipe(value, partition=partition)
        events: list[Sent] = []
        for sent in driver.outputs:
            if sent.topic != EVENTS_TOPIC:
                continue
            if violations(sent.value, len(sent.data)):
                stats.contract_dropped += 1
                continue
            stats.events[str(sent.value["class"])] += 1
            events.append(sent)
        # The driver keeps everything for tests; a replay of 100k+ records must not.
        driver.outputs.clear()
        driver.reports.clear()
        if driver.dead_letters:
            stats.dead_letters["md.raw.v0"] += len(driver.dead_letters)
            driver.dead_letters.clear()
        for topic, _value, _reason_text in driver.stage_dead_letters:
            stats.dead_letters[topic] += 1
        driver.stage_dead_letters.clear()
        return events

    def finish(self) -> None:
        """Flush the driver's state (nothing more is emitted: the stages wait for more input)."""
        self.driver.flush()


def _reason(exc: Exception) -> str:
    # "frame has schema id 7, codec expects 3" -> one bucket per kind, not per id
    text = re.sub(r"\d+", "N", str(exc))[:80]
    return f"{type(exc).__name__}: {text}"


# ---------------------------------------------------------------------------- verification
def normalise(event: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``event`` with ``provenance.replay_of`` set to False (the only field ignored)."""
    return {**event, "provenance": {**event["provenance"], "replay_of": False}}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)  # uuid.UUID (event_id's logical type), enums


def canonical(value: Any) -> bytes:
    """Return the canonical bytes of a decoded value (see the module docstring)."""
    return json.dumps(
        _plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode()


def order_key(event: Mapping[str, Any]) -> tuple[int, str, int]:
    """Return the digest order of an event: ``(exchange_ts, event_id, revision)``."""
    return int(event["exchange_ts"]), str(event["event_id"]), int(event["revision"])


def identity(event: Mapping[str, Any]) -> EventKey:
    """Return ``(event_id, revision)``: one event, however often it was published."""
    return str(event["event_id"]), int(event["revision"])


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a comparison, deduplicated and in digest order.

    Attributes:
        events: Normalised events by identity, in ``(exchange_ts, event_id, revision)`` order.
        read: Events given (before deduplication).
        duplicates: Copies dropped because a later one had the same identity.
        digest: ``sha256:`` over the canonical bytes of every event, one per line, in order.
    """

    events: dict[EventKey, dict[str, Any]]
    read: int
    duplicates: int
    digest: str

    def by_class(self) -> Counter[str]:
        """Return the count of events by class."""
        return Counter(str(e["class"]) for e in self.events.values())


def side(events: Iterable[Mapping[str, Any]]) -> Side:
    """Normalise, deduplicate (the last copy of an identity wins) and digest ``events``."""
    latest: dict[EventKey, dict[str, Any]] = {}
    read = 0
    for event in events:
        read += 1
        latest[identity(event)] = normalise(event)
    ordered = dict(sorted(latest.items(), key=lambda kv: order_key(kv[1])))
    h = hashlib.sha256()
    for event in ordered.values():
        h.update(canonical(event))
        h.update(b"\n")
    return Side(ordered, read, read - len(ordered), "sha256:" + h.hexdigest())


@dataclass(frozen=True, slots=True)
class Difference:
    """The first difference between the two sides.

    Attributes:
        event_id: The event concerned.
        revision: Its revision.
        exchange_ts: Its bar label.
        missing_on: ``"live"`` or ``"replay"`` when only the other side has it, else None.
        path: The first differing field path (``local_state.features.z_vol_m_1``), when both
            sides have the event.
        live: The live value at ``path``.
        replay: The replayed value at ``path``.
    """

    event_id: str
    revision: int
    exchange_ts: int
    missing_on: str | None = None
    path: str | None = None
    live: Any = None
    replay: Any = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict of :func:`compare`."""

    live: Side
    replay: Side
    first: Difference | None

    @property
    def identical(self) -> bool:
        """True when both sides hold the same events, byte for byte (``replay_of`` aside)."""
        return self.first is None


def compare(live: Iterable[Mapping[str, Any]], replay: Iterable[Mapping[str, Any]]) -> Comparison:
    """Compare live and replayed events (see the module docstring)."""
    a, b = side(live), side(replay)
    return Comparison(a, b, None if a.digest == b.digest else first_difference(a, b))


def first_difference(live: Side, replay: Side) -> Difference | None:
    """Return the first event, in digest order, missing on one side or differing; else None."""
    merged = {**live.events, **replay.events}
    for key in sorted(merged, key=lambda k: order_key(merged[k])):
        ts = int(merged[key]["exchange_ts"])
        a, b = live.events.get(key), replay.events.get(key)
        if a is None or b is None:
            return Difference(key[0], key[1], ts, missing_on="live" if a is None else "replay")
        if canonical(a) == canonical(b):
            continue
        path = field_difference(a, b)
        where, va, vb = path if path is not None else ("", a, b)
        return Difference(key[0], key[1], ts, path=where or "<event>", live=va, replay=vb)
    return None


def field_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """Return ``(path, a_value, b_value)`` of the first differing leaf, depth first; else None.

    Leaves compare by their canonical bytes (the digest's notion of equal). Mapping keys are
    visited in sorted order; a key on one side only reports ``<absent>`` for the other.
    """
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted({*map(str, a), *map(str, b)}):
            where = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                return where, a.get(key, "<absent>"), b.get(key, "<absent>")
            found = field_difference(a[key], b[key], where)
            if found is not None:
                return found
        return None
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = field_difference(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        if len(a) != len(b):
            return f"{path}.length", len(a), len(b)
        return None
    return None if canonical(a) == canonical(b) else (path, a, b)


def in_window(event: Mapping[str, Any], from_ts: int | None, to_ts: int | None) -> bool:
    """True when ``from_ts <= exchange_ts < to_ts`` (None: open)."""
    ts = int(event["exchange_ts"])
    return (from_ts is None or ts >= from_ts) and (to_ts is None or ts < to_ts)
