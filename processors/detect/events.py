"""From an emission to an ``alpha.events.v0`` value (spec 002 §11.1, C.3): pure, deterministic.

Every field comes from the emission, the feature row it fired on, the market frame of the
minute and the stage's provenance; nothing reads a clock. ``emitted_at`` is stream time: the
watermark at which the lattice sealed the minute in this partition (the bar close when the seal
was not seen).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packs.canonical import config_hash
from processors.detect.scoring import Emission
from schemas.events import CONTRACT_VERSION, MAX_ARRAY, event_id

TF_AVRO = {"1m": "m1", "15m": "m15", "1h": "h1"}


@dataclass(frozen=True, slots=True)
class Provenance:
    """What the stage stamps on every event besides the row's own pack fields.

    Attributes:
        producer: ``alpha-detector@<version>``.
        detector_pack: The detector pack's version, e.g. ``v0.1``.
        detector_hash: The detector pack's own hash (mixed into ``config_hash``).
        git_commit: The code's commit (``ALPHA_GIT_COMMIT`` or ``git rev-parse HEAD``).
        replay_of: True for events re-emitted by an offset replay.
    """

    producer: str
    detector_pack: str
    detector_hash: str
    git_commit: str
    replay_of: bool = False


def event_config_hash(row: Mapping[str, Any], frame: Mapping[str, Any], prov: Provenance) -> str:
    """Return the event's ``config_hash``: feature x detector pack x universe policy (§13.2)."""
    return _config_hash(
        str(row.get("config_hash") or ""),
        prov.detector_hash,
        int(frame.get("universe_policy_rev") or 0),
    )


@functools.lru_cache(maxsize=64)
def _config_hash(feature: str, detector: str, universe_policy_rev: int) -> str:
    # A handful of distinct inputs per stage: hash each once, not once per event.
    return config_hash(
        {"feature": feature, "detector": detector, "universe_policy_rev": universe_policy_rev}
    )


def build_event(
    emission: Emission,
    row: Mapping[str, Any],
    frame: Mapping[str, Any],
    prov: Provenance,
    emitted_at: int,
    is_hot: bool | None = None,
) -> dict[str, Any]:
    """Return the Avro value of one event.

    Args:
        emission: What the scorer emitted.
        row: The decoded FeatureRow the trigger fired on.
        frame: The decoded MarketFrame of the minute (``assets`` holds this asset's membership).
        prov: The stage's provenance.
        emitted_at: Stream time of the emission, epoch ms.
        is_hot: The asset's hotlist membership as the detect stage gated it (None: the frame's).
    """
    t = emission.trigger
    chash = event_config_hash(row, frame, prov)
    subtype = t.subtype
    assets = frame.get("assets") or ()
    asset: Mapping[str, Any] = next((a for a in assets if a["asset_uid"] == t.asset_uid), {})
    return {
        "v": CONTRACT_VERSION,
        "event_id": event_id(t.exchange_ts, emission.debounce_key, subtype, t.revision, chash),
        "emitted_at": int(emitted_at),
        "exchange_ts": t.exchange_ts,
        "ingest_ts": row.get("ingest_ts"),
        "symbol": t.symbol,
        "asset_uid": t.asset_uid,
        "tf": TF_AVRO[t.tf],
        "class": t.event_class,
        "subtype": subtype,
        "window_sec": t.window_sec,
        "severity": emission.severity,
        "revision": t.revision,
        "novelty": {"first_seen_at": emission.first_seen_at},
        "debounce_key": emission.debounce_key,
        "coalesced": list(emission.coalesced)[:MAX_ARRAY],
        "local_state": {
            "features": {k: _finite(v) for k, v in t.features},
            "flags": dict.fromkeys(t.flags, True),
            "dq": {
                "status": row["dq_status"],
                "ingest_lag_ms": row.get("ingest_lag_ms"),
                "book_staleness_ms": row.get("book_staleness_ms"),
                "oi_staleness_ms": row.get("oi_staleness_ms"),
            },
            "detail": {k: _finite(v) if isinstance(v, float) else v for k, v in t.detail},
        },
        "market_frame": {
            "leader": str(frame.get("leader") or ""),
            "dominance_share": _finite(frame.get("dominance_share")),
            "shock_count_5s": frame.get("shock_count_5s"),
            "shock_count_approx": bool(frame.get("shock_count_approx")),
            "rs_top": list(frame.get("rs_top") or ())[:MAX_ARRAY],
            "rs_bottom": list(frame.get("rs_bottom") or ())[:MAX_ARRAY],
            "return_dispersion_m_5": _finite(frame.get("return_dispersion_m_5")),
            "vol_dispersion_m_5": _finite(frame.get("vol_dispersion_m_5")),
            "time_to_next_funding_sec": frame.get("time_to_next_funding_sec"),
        },
        "membership": {
            "is_in_universe": bool(asset.get("is_in_universe", row.get("is_in_universe"))),
            "is_hot": bool(asset.get("is_hot", row.get("is_hot")) if is_hot is None else is_hot),
            "universe_rev": int(frame.get("universe_rev") or 0),
        },
        "provenance": {
            "producer": prov.producer,
            "feature_pack": str(row.get("feature_pack") or ""),
            "detector_pack": prov.detector_pack,
            "config_hash": chash,
            "git_commit": prov.git_commit,
            "universe_policy_rev": int(frame.get("universe_policy_rev") or 0),
            "source_lag_ms": row.get("ingest_lag_ms"),
            "clock_skew_ms": row.get("clock_skew_ms"),
            "replay_of": prov.replay_of,
        },
        "attachments": None,
    }


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
