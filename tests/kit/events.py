"""A complete ``alpha.events.v0`` value, as the spec's §11.1 example, for contract tests."""

from __future__ import annotations

from typing import Any

from schemas.events import event_id

EXCHANGE_TS = 1_756_891_800_000  # 2025-09-03T09:30:00Z
CONFIG_HASH = "sha256:" + "ab" * 32


def sample_event(**changes: Any) -> dict[str, Any]:
    """Return the spec's example event (§11.1) in the Avro shape; ``changes`` override fields."""
    event: dict[str, Any] = {
        "v": "0.1",
        "event_id": event_id(EXCHANGE_TS, "BTC:spike:1m", "vol_spike_m_1", 0, CONFIG_HASH),
        "emitted_at": EXCHANGE_TS + 1_500,
        "exchange_ts": EXCHANGE_TS,
        "ingest_ts": EXCHANGE_TS + 142,
        "symbol": "BTC",
        "asset_uid": 101,
        "tf": "m1",
        "class": "spike",
        "subtype": "vol_spike_m_1",
        "window_sec": 60,
        "severity": 74,
        "revision": 0,
        "novelty": {"first_seen_at": EXCHANGE_TS - 60_000},
        "debounce_key": "BTC:spike:1m",
        "coalesced": ["price_spike_up_m_1"],
        "local_state": {
            "features": {
                "basis_bp_m_5": 18.4,
                "cvd_slope_m_5": 0.7,
                "oi_roc_m_5": 0.012,
                "ret_m_1": 0.0031,
                "ret_s_30": 0.0042,
                "spread_mean_m_1": 0.75,
                "v_total_m_1": 18_000_000.0,
                "z_basis_m_5": 1.3,
                "z_oi_roc_m_5": 2.1,
                "z_ret_abs_m_1": 2.9,
                "z_spread_m_1": 0.9,
                "z_vol_m_1": 3.6,
            },
            "flags": {"is_oi_spike_up_m_5": True, "is_price_spike_up_m_1": True},
            "dq": {
                "status": "ok",
                "ingest_lag_ms": 142,
                "book_staleness_ms": 41,
                "oi_staleness_ms": 1800,
            },
            "detail": {},
        },
        "market_frame": {
            "leader": "BTC",
            "dominance_share": 0.42,
            "shock_count_5s": 4,
            "shock_count_approx": False,
            "rs_top": ["SOL", "HYPE", "APT", "SEI", "ENA"],
            "rs_bottom": ["XRP", "ADA", "ARB", "DOGE", "DOT"],
            "return_dispersion_m_5": 0.006,
            "vol_dispersion_m_5": 0.92,
            "time_to_next_funding_sec": 2143,
        },
        "membership": {"is_in_universe": True, "is_hot": True, "universe_rev": 3127},
        "provenance": {
            "producer": "alpha-detector@v1.0.0",
            "feature_pack": "v1.0",
            "detector_pack": "v0.1",
            "config_hash": CONFIG_HASH,
            "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "universe_policy_rev": 17,
            "source_lag_ms": 128,
            "clock_skew_ms": 73,
            "replay_of": False,
        },
        "attachments": {"bar_refs": {"1m": ["BTC/1m/2025-09-03T09:26:00Z"]}},
    }
    event.update(changes)
    return event
