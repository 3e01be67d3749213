"""Ingest metrics (spec 002 §18.1 names), on prometheus-client's default registry.

Workers expose them with ``prometheus_client.start_http_server``; tests read them with
``REGISTRY.get_sample_value``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WS_MESSAGES = Counter(
    "hl_ws_messages_total", "WebSocket frames received, by feed and channel.", ["feed", "type"]
)
WS_DISCONNECTS = Counter("hl_ws_disconnects_total", "WebSocket disconnects, by feed.", ["feed"])
WS_RECONNECT_SECONDS = Histogram(
    "hl_ws_reconnect_seconds",
    "Time from a disconnect to the resubscribed session, by feed.",
    ["feed"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
INGEST_TICKS = Counter(
    "alpha_ingest_ticks_total",
    "Ticks by outcome: delivered, duplicate, out_of_order, malformed, dropped.",
    ["venue", "outcome"],
)
INGEST_RECORDS = Counter(
    "alpha_ingest_records_total",
    "md.raw.v0 records produced, by source and kind.",
    ["source", "kind"],
)
INGEST_DLQ = Counter(
    "alpha_ingest_dlq_total", "Inputs sent to the dead-letter topic, by stage.", ["stage"]
)
PRODUCE_LATENCY_MS = Histogram(
    "alpha_ingest_produce_latency_ms",
    "Receive time to broker acknowledgement, ms.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
)
QUEUE_DEPTH = Gauge(
    "alpha_ingest_queue_depth", "Frames waiting between socket reader and producer."
)
REST_REQUESTS = Counter(
    "hl_rest_requests_total", "REST info requests, by type and outcome.", ["type", "outcome"]
)
