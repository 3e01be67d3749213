"""The Avro schemas shipped in ``schemas/avro``: one ``<topic>.avsc`` per topic value.

See DESIGN.md §7.

The file name is the topic name, and the registry subject is ``<topic>-value`` (Confluent's
TopicNameStrategy), so a consumer in any language finds the schema from the topic alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from schemas.errors import SchemaError

AVRO_DIR = Path(__file__).resolve().parent / "avro"


@dataclass(frozen=True, slots=True)
class TopicSchema:
    """The value schema of one topic.

    Attributes:
        topic: Topic name, e.g. ``ops.smoke.v0``.
        text: The schema as canonical JSON text (what is registered).
        parsed: The fastavro-parsed schema used by the codecs.
    """

    topic: str
    text: str
    parsed: Any

    @property
    def subject(self) -> str:
        """Registry subject under TopicNameStrategy: ``<topic>-value``."""
        return f"{self.topic}-value"


def body_wrapped(topic: str) -> bool:
    """True when ``topic``'s value is a record with one ``body`` union (``{"body": value}``)."""
    return [f["name"] for f in load(topic).parsed["fields"]] == ["body"]


def available_topics() -> tuple[str, ...]:
    """Return the topics that ship a value schema, sorted."""
    return tuple(sorted(p.name.removesuffix(".avsc") for p in AVRO_DIR.glob("*.avsc")))


@cache
def load(topic: str) -> TopicSchema:
    """Load and parse the shipped value schema of ``topic``.

    Raises:
        SchemaError: No ``<topic>.avsc`` exists, or it is not valid JSON or valid Avro.
    """
    path = AVRO_DIR / f"{topic}.avsc"
    if not path.is_file():
        known = ", ".join(available_topics()) or "none"
        raise SchemaError(f"no schema for topic {topic!r} in {AVRO_DIR} (known: {known})")
    return read(path)


def read(path: Path) -> TopicSchema:
    """Parse one ``<topic>.avsc`` file (any directory: a release, a branch, a test).

    Raises:
        SchemaError: The file is missing, or not valid JSON or valid Avro.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed = fastavro.parse_schema(raw)
    except FileNotFoundError as exc:
        raise SchemaError(f"{path}: no such schema file") from exc
    except (ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from exc
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return TopicSchema(topic=path.name.removesuffix(".avsc"), text=text, parsed=parsed)


def read_dir(directory: Path) -> dict[str, TopicSchema]:
    """Parse every ``*.avsc`` of ``directory``, by topic.

    Raises:
        SchemaError: The directory does not exist, or a file does not parse.
    """
    if not directory.is_dir():
        raise SchemaError(f"{directory}: not a directory of .avsc files")
    return {s.topic: s for s in map(read, sorted(directory.glob("*.avsc")))}
