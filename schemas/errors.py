"""The root error of the project and the contract layer's own errors.

Every error the project raises on purpose derives from :class:`AlphaError`, so entry points can
print it as one line and exit, while anything else is a bug and keeps its traceback.
"""


class AlphaError(Exception):
    """Root of every error the project raises on purpose; its message is one actionable line."""


class SchemaError(AlphaError):
    """An Avro schema file is missing, unparsable, or does not match its declared name."""


class WireFormatError(AlphaError):
    """Bytes are not a Confluent wire-format frame (magic byte 0 + 4-byte schema id + payload)."""
