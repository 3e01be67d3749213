"""Heartbeats: stream time written to every partition, so a quiet partition's watermark moves.

Replays and synthetic runs derive them from the data's own exchange times (deterministic); the
live connector also writes them from the wall clock when the exchange goes quiet.
"""

from __future__ import annotations


class HeartbeatClock:
    """Decide when stream time has crossed the next heartbeat boundary.

    Args:
        interval_ms: Heartbeat spacing in stream time.
    """

    def __init__(self, interval_ms: int = 1000) -> None:
        self.interval_ms = interval_ms
        self.stream_ts = -1
        self._next = -1

    def advance(self, exchange_ts: int) -> int | None:
        """Observe a record's exchange time; return the stream time to announce, if one is due.

        Stream time is the largest exchange time seen. A heartbeat is due when it reaches the
        next multiple of ``interval_ms``; it carries that boundary, never more than was seen.
        """
        if exchange_ts <= self.stream_ts:
            return None
        self.stream_ts = exchange_ts
        boundary = exchange_ts - exchange_ts % self.interval_ms
        if self._next < 0:
            self._next = boundary + self.interval_ms
            return None
        if exchange_ts < self._next:
            return None
        self._next = boundary + self.interval_ms
        return boundary
