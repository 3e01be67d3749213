"""Seeded, deterministic synthetic perp market data as ``md.raw.v0`` values (spec 002 §18.6).

Per asset the stream holds trade batches (a few prints every ~6 s), BBO updates every 2.0-2.9 s,
top-10 book snapshots and asset contexts (OI, mark, oracle, book mid, hourly funding, premium)
every ~10 s, sampled from the latent market of :mod:`connectors.synthetic.market` (regime
switches, a common factor the leader leads, the scenario's injected effects). ``ingest_ts`` is
``exchange_ts`` plus 150-400 ms of drawn latency and never goes back within an asset (one
connection delivers in order); the assets are merged by ``(ingest_ts, asset index, seq)``.
Heartbeats are the caller's. The same arguments give the same sequence of dicts: no wall clock,
no ``random``, only ``np.random.default_rng`` seeded from ``seed``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from connectors.synthetic import market
from connectors.synthetic.scenarios import SyntheticError, get
from connectors.synthetic.stream import MINUTE_MS, AssetStream
from schemas.ids import asset_uid
from schemas.raw import RawValue

VENUE = "synthetic"
DEFAULT_START_TS = 1_756_900_800_000  # 2025-09-03T12:00:00Z


def symbols(assets: int) -> tuple[str, ...]:
    """Return the symbols of a universe: ``SYN00`` (the leader), ``SYN01``, ..."""
    return tuple(f"SYN{i:02d}" for i in range(assets))


def default_inject_minute(minutes: int) -> int:
    """Return the default injection minute, ``max(minutes - 60, int(minutes * 0.7))``.

    With 300 minutes that is minute 240: past the 200-sample baseline warm-up of spec 002 §8.2,
    with an hour left for the effects and what follows them.
    """
    return max(minutes - 60, int(minutes * 0.7))


def generate(
    scenario: str,
    *,
    assets: int,
    minutes: int,
    seed: int,
    start_ts: int = DEFAULT_START_TS,
    inject_at_minute: int | None = None,
    density: float = 1.0,
) -> Iterator[RawValue]:
    """Return the ``md.raw.v0`` values of a synthetic run, ``ingest_ts`` non-decreasing.

    Args:
        scenario: A key of :data:`connectors.synthetic.scenarios.SCENARIOS` (or an alias).
        assets: Universe size; asset 0 (``SYN00``) is the leader.
        minutes: Length of the run: exchange times fall in
            ``[start_ts, start_ts + minutes * 60_000)``.
        seed: Non-negative seed of every random stream.
        start_ts: Exchange time the run starts at, epoch ms, aligned to a minute.
        inject_at_minute: Minute of the run the scenario is injected at; default
            :func:`default_inject_minute`.
        density: Multiplier of the extra prints per trade batch; 1.0 (the default) is the
            documented profile, larger values give dense trade batches (``bench/b_throughput``).

    Returns:
        An iterator of trade batch, BBO, book and asset-context values (``source`` and ``venue``
        ``"synthetic"``), about 46 per asset and minute. Arguments are checked at the call,
        before the first value.

    Raises:
        UnknownScenarioError: ``scenario`` is not known; the message lists the known names.
        SyntheticError: An argument is out of range.
    """
    sc = get(scenario)
    inject = default_inject_minute(minutes) if inject_at_minute is None else inject_at_minute
    if assets < max(sc.min_assets, 1) or minutes < 1:
        raise SyntheticError(
            f"scenario {sc.name!r} needs assets >= {max(sc.min_assets, 1)} and minutes >= 1,"
            f" got {assets} and {minutes}"
        )
    if not density > 0:
        raise SyntheticError(f"density must be > 0, got {density}")
    if seed < 0:
        raise SyntheticError(f"seed must be >= 0, got {seed}")
    if start_ts % MINUTE_MS:
        raise SyntheticError(f"start_ts {start_ts} is not aligned to a minute")
    if not 0 <= inject < minutes:
        raise SyntheticError(f"inject_at_minute {inject} is outside the run [0, {minutes})")
    latent = market.build(sc, assets=assets, minutes=minutes, seed=seed, inject=inject)
    streams = [
        AssetStream(
            latent,
            i,
            symbol=symbol,
            uid=asset_uid(VENUE, "perp", symbol),
            venue=VENUE,
            seed=seed,
            start_ts=start_ts,
            density=density,
        ).items()
        for i, symbol in enumerate(symbols(assets))
    ]
    # (ingest_ts, asset index, seq) is unique, so the merge never compares two values.
    return (item[3] for item in heapq.merge(*streams))
