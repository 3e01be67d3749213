"""The schema registry, through its Confluent-compatible REST API (DESIGN.md §7).

Producers register each topic's value schema once at start-up (subject ``<topic>-value``) and
then encode with :class:`schemas.wire.AvroCodec` for that id: no registry call per record.
"""

from __future__ import annotations

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas import catalog
from schemas.errors import AlphaError
from schemas.wire import AvroCodec

HTTP_CONFLICT = 409
HTTP_NOT_FOUND = 404


class RegistryError(AlphaError):
    """The schema registry is unreachable or answered with an error."""


class IncompatibleSchemaError(RegistryError):
    """The registry refused a schema as incompatible with the subject's history (HTTP 409)."""


class SchemaRegistry:
    """Register and look up the project's topic schemas.

    Args:
        url: Base URL of the Confluent-compatible API, e.g.
            ``http://127.0.0.1:8081/apis/ccompat/v7``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = SchemaRegistryClient({"url": url})

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, topic: str) -> int:
        """Register the shipped value schema of ``topic``; return its id (idempotent).

        Raises:
            IncompatibleSchemaError: The subject's compatibility rule rejects it.
            RegistryError: The registry is unreachable or failed.
        """
        schema = catalog.load(topic)
        try:
            return int(self.client.register_schema(schema.subject, Schema(schema.text, "AVRO")))
        except SchemaRegistryError as exc:
            if exc.http_status_code == HTTP_CONFLICT:
                raise IncompatibleSchemaError(
                    f"{schema.subject}: schema incompatible with the registered versions:"
                    f" {exc.error_message}"
                ) from exc
            raise RegistryError(f"{schema.subject}: {exc}") from exc
        except Exception as exc:  # transport errors (connection refused, timeouts)
            raise RegistryError(f"schema registry at {self.url} unreachable: {exc}") from exc

    def check(self, schema: catalog.TopicSchema) -> tuple[str, str]:
        """Check ``schema`` against its subject without registering it.

        Returns:
            ``(verdict, detail)``: ``same`` (that exact schema is registered), ``ok`` (the
            subject's compatibility rule accepts it as the next version), ``new`` (the subject
            has no versions yet), or ``incompatible``.

        Raises:
            RegistryError: The registry is unreachable or failed.
        """
        candidate = Schema(schema.text, "AVRO")
        try:
            try:
                latest = self.client.get_latest_version(schema.subject)
            except SchemaRegistryError as exc:
                if exc.http_status_code == HTTP_NOT_FOUND:
                    return "new", f"{schema.subject} has no versions yet"
                raise
            try:
                found = self.client.lookup_schema(schema.subject, candidate)
                return "same", f"{schema.subject} version {found.version}"
            except SchemaRegistryError as exc:
                if exc.http_status_code != HTTP_NOT_FOUND:
                    raise
            if self.client.test_compatibility(schema.subject, candidate):
                return "ok", f"compatible with {schema.subject} version {latest.version}"
            return "incompatible", f"refused by {schema.subject} version {latest.version}"
        except SchemaRegistryError as exc:
            raise RegistryError(f"{schema.subject}: {exc}") from exc
        except Exception as exc:  # transport errors (connection refused, timeouts)
            raise RegistryError(f"schema registry at {self.url} unreachable: {exc}") from exc

    def codec(self, topic: str) -> AvroCodec:
        """Register ``topic``'s schema and return a wire-format codec bound to its id."""
        return AvroCodec(catalog.load(topic).parsed, self.register(topic))
