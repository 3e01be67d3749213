"""State codecs: every stored value starts with a version byte (STYLE.md: State).

Changing a state type bumps the version and registers a migration from the previous one; a
value of a version with no migration stops the worker with instructions, never a misread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from state.errors import StateVersionError

T = TypeVar("T")


class VersionedCodec(Generic[T]):
    """Encode ``T`` as ``version byte + payload``.

    Args:
        name: The store it serves (for messages).
        version: Current version, 1..255.
        to_payload: ``T`` -> bytes.
        from_payload: bytes -> ``T`` (current version).
        migrations: ``old version -> (bytes of old version -> bytes of the next version)``.
    """

    def __init__(
        self,
        name: str,
        version: int,
        to_payload: Callable[[T], bytes],
        from_payload: Callable[[bytes], T],
        migrations: Mapping[int, Callable[[bytes], bytes]] | None = None,
    ) -> None:
        if not 1 <= version <= 255:
            raise ValueError(f"state version must be 1..255, not {version}")
        self.name = name
        self.version = version
        self._to = to_payload
        self._from = from_payload
        self._migrations = dict(migrations or {})

    def encode(self, value: T) -> bytes:
        """Return the stored form of ``value``."""
        return bytes([self.version]) + self._to(value)

    def decode(self, data: bytes) -> T:
        """Read a stored value, migrating older versions forward.

        Raises:
            StateVersionError: Empty data, a newer version, or a gap in the migrations.
        """
        if not data:
            raise StateVersionError(f"{self.name}: empty state value")
        version, payload = data[0], data[1:]
        if version > self.version:
            raise StateVersionError(
                f"{self.name}: state version {version} is newer than this code ({self.version});"
                " run the newer release or restore the store from its changelog"
            )
        while version < self.version:
            migrate = self._migrations.get(version)
            if migrate is None:
                raise StateVersionError(
                    f"{self.name}: no migration from state version {version};"
                    f" wipe the store and rebuild it from the changelog or a replay"
                )
            payload, version = migrate(payload), version + 1
        return self._from(payload)


def json_codec(name: str, version: int = 1) -> VersionedCodec[Any]:
    """Return a codec for JSON-able state: canonical JSON (sorted keys, no spaces)."""

    def to_payload(value: Any) -> bytes:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    def from_payload(payload: bytes) -> Any:
        return json.loads(payload)

    return VersionedCodec(name, version, to_payload, from_payload)
