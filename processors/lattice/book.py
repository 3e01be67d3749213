"""The L2 book accumulator of one asset-minute (spec 002 §5.5, Appendix A.6).

``obi_top5_mean_m_1``: time-weighted mean of ``bid_depth / (bid_depth + ask_depth)`` over the
top 5 levels, each snapshot live until the next (the carried snapshot covers the minute's start).
``depth_top5_quote_median_m_1``: median over the minute's snapshots of the top-5 bid + ask depth
in quote (px x sz). Both NULL without a snapshot; a snapshot with no depth on either side is
skipped. Depth sizes are base units; quote depth is Σ px x sz.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from processors.lattice.kernels import time_weighted_mean

MINUTE_MS = 60_000
TOP_N = 5


@dataclass(frozen=True, slots=True)
class BookSample:
    """What the minute needs of one snapshot."""

    exchange_ts: int
    bid_depth: float
    ask_depth: float
    quote_depth: float

    @property
    def obi(self) -> float | None:
        """Bid share of the top-N depth, or None without depth."""
        total = self.bid_depth + self.ask_depth
        return self.bid_depth / total if total > 0 else None


def sample(
    exchange_ts: int, bids: Sequence[Mapping[str, Any]], asks: Sequence[Mapping[str, Any]]
) -> BookSample:
    """Reduce an ``md.raw.v0`` Book body to its top-N depths."""
    bid = [(float(lv["px"]), float(lv["sz"])) for lv in bids[:TOP_N]]
    ask = [(float(lv["px"]), float(lv["sz"])) for lv in asks[:TOP_N]]
    return BookSample(
        exchange_ts,
        sum(sz for _px, sz in bid),
        sum(sz for _px, sz in ask),
        sum(px * sz for px, sz in bid) + sum(px * sz for px, sz in ask),
    )


@dataclass(frozen=True, slots=True)
class BookBar:
    """L2 fields of one minute."""

    obi_top5_mean_m_1: float | None
    depth_top5_quote_median_m_1: float | None
    book_updates: int
    last_sample: BookSample | None


class BookAccumulator:
    """Accumulate book snapshots of the minute ending at ``label_ts``.

    Args:
        label_ts: The minute's label, epoch ms.
        carry: The last snapshot before the minute, if any.
    """

    def __init__(self, label_ts: int, carry: BookSample | None = None) -> None:
        self.label_ts = label_ts
        self._samples: list[BookSample] = [] if carry is None else [carry]
        self._updates = 0

    def update(self, snapshot: BookSample) -> None:
        """Add a snapshot of this minute."""
        self._samples.append(snapshot)
        self._updates += 1

    def build(self) -> BookBar:
        """Return the minute's L2 fields."""
        start = self.label_ts - MINUTE_MS
        samples = sorted(self._samples, key=lambda s: s.exchange_ts)
        obi = time_weighted_mean([(s.exchange_ts, s.obi) for s in samples], start, self.label_ts)
        depths = [s.quote_depth for s in samples if s.exchange_ts >= start and s.quote_depth > 0]
        return BookBar(
            obi_top5_mean_m_1=obi,
            depth_top5_quote_median_m_1=statistics.median(depths) if depths else None,
            book_updates=self._updates,
            last_sample=samples[-1] if samples else None,
        )
