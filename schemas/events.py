"""The event contract's pure helpers (spec 002 §11, DESIGN.md §5): ids, bounds, JSON rendering.

The Avro schema ``schemas/avro/alpha.events.v0.avsc`` is the contract on the wire. This module
gives every producer the same deterministic ``event_id``, the same bound checks (a violation goes
to ``alpha.events.dlq``, never to users), and the JSON rendering of spec 002 §11.1 for consumers
that want JSON (``alpha events tail --json``).
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

CONTRACT_VERSION = "0.1"
MAX_ARRAY = 16  # §11.2
MAX_EVENT_BYTES = 16_384  # an encoded event above this is a size violation (DLQ)
TF_JSON = {"m1": "1m", "m15": "15m", "h1": "1h"}
TF_WINDOW_SEC = {"m1": 60, "m15": 900, "h1": 3600}
_MS_MAX = (1 << 48) - 1


def event_id(
    exchange_ts: int, debounce_key: str, subtype: str, revision: int, config_hash: str
) -> str:
    """Return the deterministic UUIDv7 of an event (RFC 9562 layout).

    The 48-bit time field is ``exchange_ts`` (ms), so ids sort by bar time; the 74 other free
    bits come from sha256 over (debounce_key, subtype, exchange_ts, revision, config_hash), so
    the same event re-processed, re-delivered or replayed has the same id. ``revision`` is
    part of the hash (DESIGN.md §5 lists the other four) so that a re-emission on an amended
    bar is a distinct event.

    Raises:
        ValueError: ``exchange_ts`` does not fit UUIDv7's 48-bit millisecond field.
    """
    if not 0 <= exchange_ts <= _MS_MAX:
        raise ValueError(f"exchange_ts {exchange_ts} is outside UUIDv7's 48-bit ms range")
    seed = "\x1f".join((debounce_key, subtype, str(exchange_ts), str(revision), config_hash))
    digest = hashlib.sha256(seed.encode()).digest()
    rand_a = int.from_bytes(digest[:2]) & 0x0FFF
    rand_b = int.from_bytes(digest[2:10]) & ((1 << 62) - 1)
    value = (exchange_ts << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def uuid7_ms(value: str) -> int:
    """Return the millisecond time field of a UUIDv7 string."""
    return uuid.UUID(value).int >> 80


def iso_ms(epoch_ms: int) -> str:
    """Render epoch ms as the spec's ISO-8601 UTC text (``...:00Z``, or ``...:00.142Z``)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = epoch_ms % 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_EPOCH_MS = 10**11  # 1973-03-03: fewer digits are seconds or a date, not milliseconds


def parse_epoch_ms(text: str) -> int:
    """Parse ISO-8601 (UTC unless it names an offset) or epoch milliseconds into epoch ms.

    Raises:
        ValueError: Neither, or digits too few to be epoch milliseconds (seconds, ``20250721``);
            the message says what to give instead.
    """
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        if int(text) < _MIN_EPOCH_MS:
            raise ValueError(
                "give epoch milliseconds (13 digits) or an ISO-8601 time like 2025-07-21T00:00Z"
            )
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("use ISO-8601 (2025-07-21, 2025-07-21T00:00Z) or epoch ms") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def violations(event: Mapping[str, Any], encoded_size: int | None = None) -> list[str]:
    """Return every way ``event`` breaks §11.2's bounds (empty when it may be published)."""
    problems: list[str] = []
    if not 0 <= int(event["severity"]) <= 100:
        problems.append(f"severity {event['severity']} outside 0..100")
    frame = event["market_frame"]
    arrays = [(f"market_frame.{k}", frame[k]) for k in ("rs_top", "rs_bottom")]
    arrays.append(("coalesced", event["coalesced"]))
    problems += [f"{w} has {len(a)} > {MAX_ARRAY} items" for w, a in arrays if len(a) > MAX_ARRAY]
    local = event["local_state"]
    values = [(f"local_state.features.{k}", v) for k, v in local["features"].items()]
    values += [(f"local_state.detail.{k}", v) for k, v in local["detail"].items()]
    values += [(f"market_frame.{k}", v) for k, v in frame.items()]
    problems += [f"{where} is {v!r}, not finite" for where, v in values if _not_finite(v)]
    if encoded_size is not None and encoded_size > MAX_EVENT_BYTES:
        problems.append(f"encoded size {encoded_size} B > {MAX_EVENT_BYTES} B")
    return problems


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _present(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The entries of ``keys`` that are set (not None, not empty, not False), in that order."""
    return {k: _plain(mapping[k]) for k in keys if not _unset(mapping.get(k))}


def _unset(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, list | dict) and not value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(event: Mapping[str, Any]) -> dict[str, Any]:
    """Render a decoded ``alpha.events.v0`` value as the spec's JSON object (§11.1).

    Times become ISO-8601 UTC strings, ``tf`` becomes ``1m``/``15m``/``1h``, optional parts
    that are empty or unset (``coalesced``, ``attachments``, ``detail``, null frame values,
    ``replay_of`` false) are left out, and key order follows the spec's example. Pure: the
    same event always renders to the same object.
    """
    local = event["local_state"]
    times = {k: iso_ms(event[k]) for k in ("emitted_at", "exchange_ts")}
    if event.get("ingest_ts") is not None:
        times["ingest_ts"] = iso_ms(event["ingest_ts"])
    return {
        "v": event["v"],
        "event_id": str(event["event_id"]),
        **times,
        **_present(event, ("symbol", "asset_uid")),
        "tf": TF_JSON[event["tf"]],
        **_present(event, ("class", "subtype", "window_sec", "severity")),
        "novelty": {"first_seen_at": iso_ms(event["novelty"]["first_seen_at"])},
        **_present(event, ("debounce_key",)),
        **({"revision": event["revision"]} if event.get("revision") else {}),
        **_present(event, ("coalesced",)),
        "local_state": {
            "features": dict(local["features"]),
            "flags": dict(local["flags"]),
            "dq": _present(
                local["dq"], ("status", "ingest_lag_ms", "book_staleness_ms", "oi_staleness_ms")
            ),
            **_present(local, ("detail",)),
        },
        "market_frame": _present(event["market_frame"], _FRAME_KEYS),
        "membership": dict(event["membership"]),
        "provenance": _present(event["provenance"], _PROVENANCE_KEYS),
        **_present(event, ("attachments",)),
    }


_FRAME_KEYS = (
    "leader", "dominance_share", "shock_count_5s", "shock_count_approx", "rs_top", "rs_bottom",
    "return_dispersion_m_5", "vol_dispersion_m_5", "time_to_next_funding_sec",
)  # fmt: skip
_PROVENANCE_KEYS = (
    "producer", "feature_pack", "detector_pack", "config_hash", "git_commit",
    "universe_policy_rev", "source_lag_ms", "clock_skew_ms", "replay_of",
)  # fmt: skip
