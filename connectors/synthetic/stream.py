"""One synthetic asset's ``md.raw.v0`` records, sampled from the latent market.

Event times and values are drawn up front as numpy arrays (from the asset's quote stream, and for
trades from one stream per asset-minute), then the dicts are built lazily, in the asset's ingest
order, with the builders of :mod:`schemas.raw` only. Prices and sizes are integers of ticks and
lots until they are formatted as fixed-point strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from connectors.synthetic import market as mk
from schemas import raw

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Builder = Callable[[int, int], raw.RawValue]
Part = tuple[Ints, Ints, Builder]
Item = tuple[int, int, int, raw.RawValue]

SOURCE: raw.Source = "synthetic"
MINUTE_MS = 60_000
FUNDING_INTERVAL_MS = 3_600_000
BBO_GAP_MS = (2_000, 2_900)  # always under the 3 s book-staleness limit of spec 002 §8.1
SNAPSHOT_EVERY_MS = 10_000  # book and asset-context cadence
BOOK_LEVELS = 10
LATENCY_MS = (150, 400)
BATCHES_PER_MINUTE = 10.0
EXTRA_TRADES_PER_BATCH = 2.5
_DEPTH_PER_LEVEL = 3.0  # resting notional of a level, in median prints


def fixed(values: Ints, places: int) -> list[str]:
    """Format integers scaled by ``10**-places`` as fixed-point decimal strings.

    Exact: ``n / 10**places`` is the double nearest the decimal, and every value here has far
    fewer than 15 significant digits, so formatting it to ``places`` decimals gives the decimal.
    """
    if places == 0:
        return [str(v) for v in values.tolist()]
    spec = f".{places}f"
    return [format(v, spec) for v in (values / 10**places).tolist()]


class AssetStream:
    """The records of asset ``index`` of a latent market.

    Args:
        market: The latent market (after injection).
        index: The asset's index; 0 is the leader.
        symbol: Its symbol.
        uid: Its ``asset_uid``.
        venue: Venue written in every record.
        seed: The run's seed.
        start_ts: Exchange time of the run's first minute, epoch ms.
        density: Multiplier of the extra prints per trade batch (1.0: the documented profile
            of about 3.5 prints per batch; larger values make exchange messages that carry
            many prints, as the throughput benchmark needs).
    """

    def __init__(
        self,
        market: mk.Market,
        index: int,
        *,
        symbol: str,
        uid: int,
        venue: str,
        seed: int,
        start_ts: int,
        density: float = 1.0,
    ) -> None:
        self.m, self.i, self.seed, self.start_ts = market, index, seed, start_ts
        self.extra_trades = EXTRA_TRADES_PER_BATCH * density
        self.p = market.params[index]
        self.head = (uid, venue, symbol, SOURCE)
        self.tick = 10.0**-self.p.px_decimals
        self.lot = 10.0**-self.p.sz_decimals
        self.end_ms = market.silent.shape[1] * MINUTE_MS
        silent = market.silent[index]
        self.silent = silent
        self.silence_starts = silent & ~np.concatenate(([False], silent[:-1]))
        self.g = np.random.default_rng((seed, mk.STREAM_QUOTES, index))

    def items(self) -> Iterator[Item]:
        """Yield ``(ingest_ts, asset index, seq, value)`` in ingest order (= exchange order)."""
        bbo_part, bbo_t, bbo_mid2 = self._bbo()
        parts = (self._trades(), bbo_part, self._book(), self._ctx(bbo_t, bbo_mid2))
        ts = np.concatenate([p[0] for p in parts])
        kind = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
        idx = np.concatenate([np.arange(len(p[0])) for p in parts])
        order = np.lexsort((idx, kind, ts))
        lat = np.concatenate([p[1] for p in parts])[order]
        # One connection delivers in order: ingest time never goes back for an asset.
        ingest = np.maximum.accumulate(ts[order] + lat) + self.start_ts
        rows = zip(ingest.tolist(), kind[order].tolist(), idx[order].tolist(), strict=True)
        for seq, (ing, k, j) in enumerate(rows):
            yield ing, self.i, seq, parts[k][2](j, ing)

    # ---------------------------------------------------------------- sampling helpers

    def _mid(self, t_ms: Ints) -> Floats:
        mid: Floats = np.exp(self.m.log_mid[self.i, t_ms // 1000])
        return mid

    def _quote(self, t_ms: Ints, noise: Floats) -> tuple[Ints, Ints]:
        """Return best bid and ask in ticks around the latent mid, ask at least one tick up."""
        mid = self._mid(t_ms)
        half = self.p.spread_bps * 0.5e-4 * self.m.spread_x[self.i, t_ms // MINUTE_MS] * noise
        bid = np.floor(mid * (1 - half) / self.tick).astype(np.int64)
        ask = np.maximum(np.ceil(mid * (1 + half) / self.tick).astype(np.int64), bid + 1)
        return bid, ask

    def _lots(self, notional: Floats, price_ticks: Ints) -> Ints:
        lots = np.rint(notional / (price_ticks * self.tick * self.lot))
        return np.maximum(lots, 1).astype(np.int64)

    def _depth(self, t_ms: Ints) -> Floats:
        depth_x = self.m.depth_x[self.i, t_ms // MINUTE_MS]
        return np.asarray(_DEPTH_PER_LEVEL * self.p.trade_notional * depth_x)

    def _keep(self, t_ms: Ints) -> npt.NDArray[np.bool_]:
        """Mask of sorted book/BBO times outside silence; a silent run keeps its first update."""
        minute = t_ms // MINUTE_MS
        first = np.concatenate(([True], minute[1:] != minute[:-1]))
        return np.asarray(~self.silent[minute] | (self.silence_starts[minute] & first))

    def _latency(self, n: int) -> Ints:
        return self.g.integers(LATENCY_MS[0], LATENCY_MS[1] + 1, n)

    # ---------------------------------------------------------------- the four record kinds

    def _bbo(self) -> tuple[Part, Ints, Ints]:
        n = self.end_ms // BBO_GAP_MS[0] + 1
        t = self.g.integers(0, BBO_GAP_MS[0]) + np.cumsum(self.g.integers(*BBO_GAP_MS, n))
        noise = np.exp(0.15 * self.g.standard_normal(n))
        sizes = np.exp(0.6 * self.g.standard_normal((2, n)))
        counts = 1 + self.g.poisson(3.0, (2, n))
        lat = self._latency(n)
        inside = t < self.end_ms
        keep = np.flatnonzero(inside)[self._keep(t[inside])]
        t, lat, noise = t[keep], lat[keep], noise[keep]
        sizes, counts = sizes[:, keep], counts[:, keep]
        bid, ask = self._quote(t, noise)
        depth = self._depth(t)
        lots = (self._lots(depth * sizes[0], bid), self._lots(depth * sizes[1], ask))
        pd, sd = self.p.px_decimals, self.p.sz_decimals
        cols = (fixed(bid, pd), fixed(lots[0], sd), fixed(ask, pd), fixed(lots[1], sd))
        ns, stamps = counts.tolist(), (t + self.start_ts).tolist()

        def build(j: int, ing: int) -> raw.RawValue:
            b, bl, a, al = (c[j] for c in cols)
            return raw.bbo(*self.head, stamps[j], ing, (b, bl, ns[0][j]), (a, al, ns[1][j]))

        return (t, lat, build), t, bid + ask

    def _snapshot_times(self) -> Ints:
        k = np.arange(self.end_ms // SNAPSHOT_EVERY_MS)
        phase = self.g.integers(0, SNAPSHOT_EVERY_MS - 500)
        return np.asarray(phase + k * SNAPSHOT_EVERY_MS + self.g.integers(0, 500, k.size))

    def _book(self) -> Part:
        t = self._snapshot_times()
        shape = (t.size, 2, BOOK_LEVELS)
        steps = np.exp(0.4 * self.g.standard_normal(shape))
        sizes = np.exp(0.5 * self.g.standard_normal(shape))
        counts = 1 + self.g.poisson(3.0, shape)
        lat = self._latency(t.size)
        keep = self._keep(t)
        t, lat, steps, sizes, counts = t[keep], lat[keep], steps[keep], sizes[keep], counts[keep]
        bid, ask = self._quote(t, np.ones(t.size))
        gaps = np.maximum(np.rint((ask - bid)[:, None, None] * 0.5 * steps), 1).astype(np.int64)
        gaps[:, :, 0] = 0
        px = np.stack(
            (bid[:, None] - np.cumsum(gaps[:, 0], 1), ask[:, None] + np.cumsum(gaps[:, 1], 1)), 1
        )
        level_x = 0.7 + 0.3 * np.arange(1, BOOK_LEVELS + 1)
        lots = self._lots(self._depth(t)[:, None, None] * sizes * level_x, px)
        pxs, szs = fixed(px.ravel(), self.p.px_decimals), fixed(lots.ravel(), self.p.sz_decimals)
        ns, stamps = counts.ravel().tolist(), (t + self.start_ts).tolist()

        def build(j: int, ing: int) -> raw.RawValue:
            bids, asks = (
                [raw.level(pxs[x], szs[x], ns[x]) for x in range(base, base + BOOK_LEVELS)]
                for base in (2 * j * BOOK_LEVELS, (2 * j + 1) * BOOK_LEVELS)
            )
            return raw.book(*self.head, stamps[j], ing, bids, asks)

        return t, lat, build

    def _ctx(self, bbo_t: Ints, bbo_mid2: Ints) -> Part:
        t = self._snapshot_times()
        basis_noise = 0.3 * self.g.standard_normal(t.size)
        mark_noise = 0.2e-4 * self.g.standard_normal(t.size)
        lat = self._latency(t.size)
        minute = t // MINUTE_MS
        mid = self._mid(t)
        mark = np.rint(mid * (1 + mark_noise) / self.tick).astype(np.int64)
        basis = (self.m.basis_bps[self.i, minute] + basis_noise) * 1e-4
        oracle = np.rint(mid / (1 + basis) / self.tick).astype(np.int64)
        # mid_px is the book's: the last BBO at or before the poll (frozen when the book dies).
        last = np.maximum(np.searchsorted(bbo_t, t, side="right") - 1, 0)
        mid2 = bbo_mid2[last] if bbo_t.size else 2 * mark
        oi = np.rint(np.exp(self.m.log_oi[self.i, t // 1000]) / self.lot).astype(np.int64)
        funding = np.rint(self.m.funding[self.i, minute] * 1e8).astype(np.int64)
        premium = np.rint(basis * 1e8).astype(np.int64)
        pd, sd = self.p.px_decimals, self.p.sz_decimals
        stamps = (t + self.start_ts).tolist()
        cols = (
            fixed(oi, sd),
            fixed(mark, pd),
            fixed(oracle, pd),
            fixed(mid2 * 5, pd + 1),
            fixed(funding, 8),
            fixed(premium, 8),
        )

        def build(j: int, ing: int) -> raw.RawValue:
            o, mk_, orc, mid, f, pr = (c[j] for c in cols)
            ex = stamps[j]
            return raw.asset_ctx(
                *self.head,
                ex,
                ing,
                open_interest=o,
                mark_px=mk_,
                oracle_px=orc,
                mid_px=mid,
                funding=f,
                funding_interval_ms=FUNDING_INTERVAL_MS,
                next_funding_ts=(ex // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS,
                premium=pr,
            )

        return t, lat, build

    def _trades(self) -> Part:
        drawn = [self._trade_minute(m) for m in np.flatnonzero(~self.silent).tolist()]
        if not drawn:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), _no_records
        t, lat, per_batch, tids, px, lots, buys = (
            np.concatenate(c) for c in zip(*drawn, strict=True)
        )
        bounds = np.concatenate(([0], np.cumsum(per_batch))).tolist()
        pxs, szs = fixed(px, self.p.px_decimals), fixed(lots, self.p.sz_decimals)
        tid_l, stamps = tids.tolist(), (t + self.start_ts).tolist()
        sides: list[raw.Side] = ["buy" if b else "sell" for b in buys.tolist()]

        def build(j: int, ing: int) -> raw.RawValue:
            ex = stamps[j]
            trades = [
                raw.trade(tid_l[k], pxs[k], szs[k], sides[k], ex)
                for k in range(bounds[j], bounds[j + 1])
            ]
            return raw.trade_batch(*self.head, ing, trades)

        return t, lat, build

    def _trade_minute(self, minute: int) -> tuple[Ints, ...]:
        """Draw one minute's batches from the asset-minute's own random stream."""
        g = np.random.default_rng((self.seed, mk.STREAM_TRADES, self.i, minute))
        volume_x = float(self.m.volume_x[self.i, minute])
        rate = BATCHES_PER_MINUTE * self.m.trades_x[self.i, minute] * volume_x**0.5
        n = min(max(int(g.poisson(rate)), 1), 120)
        t = minute * MINUTE_MS + np.sort(g.integers(0, MINUTE_MS, n))
        per_batch = 1 + g.poisson(self.extra_trades, n)
        total = int(per_batch.sum())
        notional = self.p.trade_notional * volume_x**0.5 * np.exp(0.75 * g.standard_normal(total))
        buys = g.random(total) < self.m.buy_share[self.i, minute]
        tids = g.integers(1, 2**50, total)
        lat = g.integers(LATENCY_MS[0], LATENCY_MS[1] + 1, n)
        bid, ask = self._quote(np.repeat(t, per_batch), np.ones(total))
        px = np.where(buys, ask, bid)  # takers lift the ask or hit the bid
        return t, lat, per_batch, tids, px, self._lots(notional, px), buys


def _no_records(j: int, ing: int) -> raw.RawValue:
    raise IndexError(j)
