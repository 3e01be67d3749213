"""Confluent wire format: magic byte ``0``, a 4-byte big-endian schema id, then Avro binary.

This is what every topic carries (DESIGN.md §2), so any Confluent-compatible consumer can read it.
Encoding is pure: the schema id comes from the registry once, at start-up, not per record.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro

from schemas.errors import WireFormatError

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size


def frame(schema_id: int, payload: bytes) -> bytes:
    """Prefix an Avro binary ``payload`` with the wire-format header for ``schema_id``."""
    return _HEADER.pack(MAGIC_BYTE, schema_id) + payload


def unframe(data: bytes) -> tuple[int, bytes]:
    """Split a wire-format frame into ``(schema_id, avro_payload)``.

    Raises:
        WireFormatError: The bytes are too short or do not start with the magic byte.
    """
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"frame of {len(data)} bytes is shorter than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise WireFormatError(f"magic byte is {magic}, expected {MAGIC_BYTE}")
    return schema_id, data[HEADER_SIZE:]


class AvroCodec:
    """Encode and decode one topic's values in the wire format, for one registered schema id.

    Args:
        parsed_schema: The fastavro-parsed writer schema.
        schema_id: The id the registry gave that schema.
    """

    def __init__(self, parsed_schema: Any, schema_id: int) -> None:
        self._schema = parsed_schema
        self.schema_id = schema_id
        self._header = _HEADER.pack(MAGIC_BYTE, schema_id)

    def encode(self, record: dict[str, Any]) -> bytes:
        """Serialize ``record`` to a wire-format frame."""
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self._schema, record)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Deserialize a frame written with this codec's schema.

        Raises:
            WireFormatError: The frame is malformed, carries another schema id, or the payload
                does not decode against the schema.
        """
        schema_id, payload = unframe(data)
        if schema_id != self.schema_id:
            raise WireFormatError(
                f"frame has schema id {schema_id}, codec expects {self.schema_id}"
            )
        try:
            record = fastavro.schemaless_reader(io.BytesIO(payload), self._schema, None)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise WireFormatError(f"payload does not decode: {exc!r}") from exc
        if not isinstance(record, dict):
            raise WireFormatError(f"payload decoded to {type(record).__name__}, expected a record")
        return record
