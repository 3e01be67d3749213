"""Deterministic identities.

``asset_uid`` is derived from what identifies a market, so the same market has the same id in
every process, restart and replay without any coordination; a remap bumps ``generation`` and so
yields a new id, and an old id is never handed to another market (spec 002 §3.2, §21.1).
"""

from __future__ import annotations

import hashlib

#: Ids are positive int64 (63 bits): every Avro/ClickHouse/Java consumer reads them as signed.
_MASK = (1 << 63) - 1


def asset_uid(venue: str, kind: str, symbol: str, generation: int = 0) -> int:
    """Return the stable id of a market.

    Args:
        venue: Exchange, lower case (``hyperliquid``).
        kind: ``perp`` or ``spot``.
        symbol: The exchange's own, case-sensitive market name (``BTC``, ``kPEPE``, ``@107``).
        generation: 0 for the first listing; +1 for each remap of the same symbol.

    Returns:
        A positive 63-bit integer, never 0 (0 marks heartbeats).
    """
    text = f"{venue}\x1f{kind}\x1f{symbol}\x1f{generation}".encode()
    value = int.from_bytes(hashlib.sha256(text).digest()[:8], "big") & _MASK
    return value or 1


def asset_key(asset_uid_value: int) -> bytes:
    """Return the Kafka record key of an asset: its id as ASCII decimal."""
    return str(asset_uid_value).encode("ascii")
