"""The BBO accumulator of one asset-minute (spec 002 §5.1, §5.5, Appendix A.2/A.6, §8.1).

Time-weighting needs the quote that was live when the minute began: ``reset(carry)`` starts a
minute with the previous minute's last quote. Choices this module makes (to confirm with the
feature pack): spreads are absolute (quote currency, per Appendix A's unit rule); ``spread_p95``
is over the minute's quote samples (the carried one included) and NULL below ``min_samples``;
``rv_m_1`` sums squared log-mid changes between consecutive quotes of the minute, starting from
the carried quote; a quote with an empty side contributes nothing and leaves ``mid_close`` NULL
if it is the last one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from processors.lattice.kernels import percentile_linear, time_weighted_mean

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Quote:
    """One best bid/offer state; a side is None when empty."""

    exchange_ts: int
    bid: float | None
    ask: float | None

    @property
    def two_sided(self) -> bool:
        """Whether both sides are present and not crossed."""
        return self.bid is not None and self.ask is not None and self.ask >= self.bid

    @property
    def mid(self) -> float | None:
        """(bid + ask) / 2, or None unless two-sided."""
        if self.bid is None or self.ask is None or self.ask < self.bid:
            return None
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> float | None:
        """Ask - bid, or None unless two-sided."""
        if self.bid is None or self.ask is None or self.ask < self.bid:
            return None
        return self.ask - self.bid


@dataclass(frozen=True, slots=True)
class QuoteBar:
    """BBO-built fields of one minute (labelled ``label_ts``)."""

    mid_close: float | None
    spread_mean_m_1: float | None
    spread_p95_m_1: float | None
    rv_m_1: float | None
    quote_updates: int
    book_staleness_ms: int | None
    last_quote: Quote | None


class QuoteAccumulator:
    """Accumulate BBO updates of the minute ``[label - 60 s, label)``.

    Args:
        label_ts: The minute's label (its end), epoch ms.
        carry: The last quote before the minute, if any.
        min_samples: Quote samples needed for ``spread_p95_m_1``.
    """

    def __init__(self, label_ts: int, carry: Quote | None = None, min_samples: int = 5) -> None:
        self.label_ts = label_ts
        self.min_samples = min_samples
        self._quotes: list[Quote] = [] if carry is None else [carry]
        self._updates = 0

    def update(self, quote: Quote) -> None:
        """Add a quote of this minute (exchange time in ``[label - 60 s, label)``)."""
        self._quotes.append(quote)
        self._updates += 1

    def build(self) -> QuoteBar:
        """Return the minute's quote fields."""
        start = self.label_ts - MINUTE_MS
        quotes = sorted(self._quotes, key=lambda q: q.exchange_ts)  # stable: ties keep arrival
        last = quotes[-1] if quotes else None
        return QuoteBar(
            mid_close=last.mid if last else None,
            spread_mean_m_1=time_weighted_mean(
                [(q.exchange_ts, q.spread) for q in quotes], start, self.label_ts
            ),
            spread_p95_m_1=self._p95([q.spread for q in quotes if q.spread is not None]),
            rv_m_1=_realized_vol([q.mid for q in quotes if q.mid is not None]),
            quote_updates=self._updates,
            book_staleness_ms=self.label_ts - last.exchange_ts if last else None,
            last_quote=last,
        )

    def _p95(self, spreads: list[float]) -> float | None:
        if len(spreads) < self.min_samples:
            return None
        return percentile_linear(spreads, 0.95)


def _realized_vol(mids: list[float]) -> float | None:
    if len(mids) < 2:
        return None
    total = 0.0
    for a, b in itertools.pairwise(mids):
        total += (math.log(b) - math.log(a)) ** 2
    return math.sqrt(total)
