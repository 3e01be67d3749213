"""``alpha events tail``: read the event topic as a user would (read_committed, registry-decoded).

Each value is decoded with the writer schema the registry holds for the id in its header, the way
a consumer in any language does (no project code needed but the registry). ``--json`` prints the
spec's JSON rendering (spec 002 §11.1, :func:`schemas.events.to_json`), one object per line; the
default prints one summary line per event. Reads from the end (new events only) unless
``--from-beginning``; stops after ``--max`` events or ``--idle-timeout`` seconds without one,
else follows until ^C. Joins no consumer group and commits nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from schemas.errors import AlphaError
from schemas.events import iso_ms, to_json
from schemas.wire import unframe
from topology import spec
from topology.settings import StackSettings


class RegistryDecoder:
    """Decode wire-format values with the writer schema fetched from the registry by id."""

    def __init__(self, registry_url: str) -> None:
        self.client = SchemaRegistryClient({"url": registry_url})
        self.schemas: dict[int, Any] = {}

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one Confluent-framed value (fetching its writer schema once per id)."""
        schema_id, payload = unframe(data)
        if schema_id not in self.schemas:
            text = self.client.get_schema(schema_id).schema_str or ""
            self.schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        record = fastavro.schemaless_reader(io.BytesIO(payload), self.schemas[schema_id], None)
        if not isinstance(record, dict):
            raise AlphaError(f"schema {schema_id} does not describe a record")
        return record


def summary(event: dict[str, Any]) -> str:
    """One line per event: time, symbol, class/subtype, severity, id."""
    return (
        f"{iso_ms(event['exchange_ts'])}  {event['symbol']:<10} {event['class']:<10}"
        f" {event['subtype']:<34} sev {event['severity']:>3}  rev {event['revision']}"
        f"  {event['event_id']}"
    )


def follow(
    settings: StackSettings,
    topics: Sequence[str],
    *,
    from_beginning: bool,
    max_records: int | None,
    idle_timeout: float | None,
    show: Callable[[str, dict[str, Any]], str],
) -> int:
    """Print ``show(topic, value)`` for each committed record of ``topics``; return the count.

    Values are decoded with their writer schema from the registry. Starts at the end (or the
    beginning), stops after ``max_records`` or ``idle_timeout`` seconds without a record, else
    follows until ^C. Joins no consumer group and commits nothing.
    """
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "alpha-tail",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    decoder = RegistryDecoder(settings.registry_url)
    shown, last = 0, time.monotonic()
    try:
        consumer.assign(
            [TopicPartition(t, p, start) for t in topics for p in range(spec.topic(t).partitions)]
        )
        while max_records is None or shown < max_records:
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                break
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise AlphaError(f"{msg.topic()}: {msg.error()}")
            value = decoder.decode(msg.value() or b"")
            sys.stdout.write(show(msg.topic() or "", value) + "\n")
            sys.stdout.flush()
            shown, last = shown + 1, time.monotonic()
    finally:
        consumer.close()
    return shown


def _cmd_tail(args: argparse.Namespace, settings: StackSettings) -> int:
    def show(_topic: str, event: dict[str, Any]) -> str:
        return json.dumps(to_json(event), ensure_ascii=False) if args.json else summary(event)

    follow(
        settings,
        [args.topic],
        from_beginning=args.from_beginning,
        max_records=args.max,
        idle_timeout=args.idle_timeout,
        show=show,
    )
    return 0


def add_events_parser(sub: Any) -> None:
    """Add ``alpha events``."""
    events = sub.add_parser("events", help="read the event topics (alpha.events.v0)")
    events_sub = events.add_subparsers(dest="action", metavar="<action>", required=True)
    tail = events_sub.add_parser(
        "tail",
        help="print events as they are committed (read_committed, decoded via the registry)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument(
        "--topic",
        default="alpha.events.v0",
        choices=("alpha.events.v0", "alpha.events.replay.v0"),
        help="alpha.events.v0 (default) or the replay topic",
    )
    tail.add_argument("--json", action="store_true", help="the spec's JSON, one per line")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    tail.add_argument("--max", type=int, help="stop after this many events")
    tail.add_argument(
        "--idle-timeout", type=float, help="stop after this many seconds without an event"
    )
    tail.set_defaults(func=_cmd_tail)
