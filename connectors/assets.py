"""Stable asset identity and the alias map (spec 002 §3.2, §21.1).

Ids come from :func:`schemas.ids.asset_uid`, so they are the same in every process and replay;
this registry adds what a hash cannot know: which generation of a symbol is current, which
markets are delisted (they keep their id), and aliases. It is persisted in the compacted topic
``asset.registry.v0`` (see :mod:`connectors.asset_store`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from schemas.errors import AlphaError
from schemas.ids import asset_uid


class AssetRegistryError(AlphaError):
    """Two markets would share an id, or an entry contradicts the registry."""


@dataclass(frozen=True, slots=True)
class AssetEntry:
    """One market identity (one generation of one symbol)."""

    venue: str
    kind: str
    symbol: str
    generation: int
    asset_uid: int
    status: str = "active"
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Compacted-topic key: ``venue:kind:symbol:generation``."""
        return f"{self.venue}:{self.kind}:{self.symbol}:{self.generation}"


class AssetRegistry:
    """The alias map: resolve symbols to ids, record listings, delistings and remaps.

    Args:
        entries: Previously persisted entries (any order).
    """

    def __init__(self, entries: Iterable[AssetEntry] = ()) -> None:
        self._current: dict[tuple[str, str, str], AssetEntry] = {}
        self._by_uid: dict[int, AssetEntry] = {}
        self._pending: dict[str, AssetEntry] = {}
        for entry in sorted(entries, key=lambda e: (e.venue, e.kind, e.symbol, e.generation)):
            self._remember(entry)

    def resolve(self, venue: str, kind: str, symbol: str) -> int:
        """Return the current id of a market, registering it on first sight."""
        entry = self._current.get((venue, kind, symbol))
        if entry is None:
            entry = AssetEntry(venue, kind, symbol, 0, asset_uid(venue, kind, symbol, 0))
            self._store(entry)
        return entry.asset_uid

    def lookup(self, venue: str, kind: str, symbol: str) -> AssetEntry | None:
        """Return the current entry of a market, or None."""
        return self._current.get((venue, kind, symbol))

    def by_uid(self, uid: int) -> AssetEntry | None:
        """Return the entry that owns ``uid`` (any generation), or None."""
        return self._by_uid.get(uid)

    def sync_listing(
        self, venue: str, kind: str, listed: Iterable[str], delisted: Iterable[str] = ()
    ) -> list[AssetEntry]:
        """Apply a discovery snapshot (e.g. Hyperliquid ``meta``); return what changed.

        Listed symbols are registered (or re-activated); symbols in ``delisted`` keep their id
        with status ``delisted``. Symbols absent from both are left as they are.
        """
        changed = []
        for symbol in listed:
            self.resolve(venue, kind, symbol)
            entry = self._current[(venue, kind, symbol)]
            if entry.status != "active":
                changed.append(self._store(replace(entry, status="active")))
        for symbol in delisted:
            self.resolve(venue, kind, symbol)
            entry = self._current[(venue, kind, symbol)]
            if entry.status != "delisted":
                changed.append(self._store(replace(entry, status="delisted")))
        return changed

    def remap(self, venue: str, kind: str, symbol: str) -> AssetEntry:
        """Freeze the current id of ``symbol`` and give the symbol a new one."""
        self.resolve(venue, kind, symbol)
        old = self._current[(venue, kind, symbol)]
        self._store(replace(old, status="remapped"))
        generation = old.generation + 1
        new = AssetEntry(
            venue, kind, symbol, generation, asset_uid(venue, kind, symbol, generation)
        )
        return self._store(new)

    def entries(self) -> list[AssetEntry]:
        """Return every entry, all generations, in key order."""
        return sorted(self._by_uid.values(), key=lambda e: e.key)

    def drain(self) -> list[AssetEntry]:
        """Return the entries changed since the last drain (to persist), in key order."""
        out = sorted(self._pending.values(), key=lambda e: e.key)
        self._pending.clear()
        return out

    def _store(self, entry: AssetEntry) -> AssetEntry:
        self._remember(entry)
        self._pending[entry.key] = entry
        return entry

    def _remember(self, entry: AssetEntry) -> None:
        owner = self._by_uid.get(entry.asset_uid)
        if owner is not None and owner.key != entry.key:
            raise AssetRegistryError(
                f"asset_uid {entry.asset_uid} of {entry.key} is already {owner.key}"
            )
        self._by_uid[entry.asset_uid] = entry
        ident = (entry.venue, entry.kind, entry.symbol)
        current = self._current.get(ident)
        if current is None or entry.generation >= current.generation:
            self._current[ident] = entry
