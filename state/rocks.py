"""A RocksDB :class:`state.store.KeyValueStore` through rocksdict (raw bytes mode)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import AccessType, Options, Rdict, WriteBatch

from state.errors import StateError


class RocksStore:
    """One RocksDB database per store, in ``directory / name``.

    Args:
        directory: Parent directory of the store's database.
        name: Store name, ``<stage>.<what>.v<N>``.
    """

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.path = directory / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        try:
            self._db = Rdict(str(self.path), options=options, access_type=AccessType.read_write())
        except Exception as exc:  # rocksdict raises plain Exception subclasses
            raise StateError(f"cannot open state store {self.path}: {exc}") from exc

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key``, or None."""
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""
        self._db[key] = value

    def delete(self, key: bytes) -> None:
        """Remove ``key``."""
        del self._db[key]

    def apply(self, batch: Mapping[bytes, bytes | None]) -> None:
        """Write every pair in one RocksDB WriteBatch (atomic)."""
        wb = WriteBatch(raw_mode=True)
        for key, value in batch.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        self._db.write(wb)

    def scan(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Yield pairs under ``prefix`` in key order."""
        it = self._db.iter()
        it.seek(prefix)
        while it.valid():
            key = bytes(it.key())
            if not key.startswith(prefix):
                break
            yield key, bytes(it.value())
            it.next()

    def close(self) -> None:
        """Flush and close the database."""
        self._db.close()
