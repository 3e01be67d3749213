"""An in-memory :class:`state.store.KeyValueStore` (tests, the topology test driver)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class MemoryStore:
    """Dict-backed store; ``scan`` sorts keys so iteration order never depends on insertion.

    Args:
        name: Store name, ``<stage>.<what>.v<N>``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key``, or None."""
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""
        self._data[bytes(key)] = bytes(value)

    def delete(self, key: bytes) -> None:
        """Remove ``key``."""
        self._data.pop(key, None)

    def apply(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Write every pair (a dict update cannot half-fail)."""
        for key, value in batch.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[bytes(key)] = bytes(value)

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Yield pairs under ``prefix`` in key order."""
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            yield key, self._data[key]

    def close(self) -> None:
        """Nothing to release."""
