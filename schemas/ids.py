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


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's ``Utils.murmur2``), as an unsigned 32-bit int."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    whole = len(data) & ~3
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = len(data) & 3
    if extra == 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """Return the partition Kafka's default partitioner (librdkafka ``murmur2_random``) picks."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
