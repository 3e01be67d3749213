"""Binance: recorded WebSocket captures -> ``md.raw.v0`` (replay only; no live connector yet)."""
