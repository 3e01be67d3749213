"""The one key-value store protocol every backend implements (STYLE.md: State).

Keys and values are bytes: typed state goes through a :mod:`state.codec` codec. ``apply`` writes
a batch atomically, so a processor's whole state change for one input lands or does not.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable
class KeyValueStore(Protocol):
    """A bytes -> bytes store."""

    name: str

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key``, or None."""
        ...

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""
        ...

    def delete(self, key: bytes) -> None:
        """Remove ``key`` (no error if absent)."""
        ...

    def apply(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Write every pair atomically; a None value deletes the key."""
        ...

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` pairs whose key starts with ``prefix``, in key order."""
        ...

    def close(self) -> None:
        """Release the store (a closed store is not used again)."""
        ...
