"""The 1-minute lattice: stream-time watermarks, minute sealing, accumulators (spec 002 §2-3)."""
