"""Hyperliquid: WebSocket and REST market data -> ``md.raw.v0`` (see docs/ingest.md)."""
