"""The market stage's state in its store: one versioned JSON value (``market.state.v1``).

The market stage has one input partition, so its whole :class:`MarketProcessor` state is one
value, written once per commit (the Faust worker) or per record (the test driver) and read back
at a restart; a processor rebuilt from it continues bit-identically.
"""

from __future__ import annotations

from typing import Any

from packs.universe import UniversePolicy
from processors.market.snapshot import MarketProcessor
from schemas.errors import AlphaError
from state.codec import json_codec
from state.store import KeyValueStore

STORE = "market.state.v1"
KEY = b"market"
_CODEC = json_codec(STORE)


def load_market(
    policy: UniversePolicy, partitions: int, store: KeyValueStore, *, spike_events: bool = False
) -> MarketProcessor:
    """Return the processor saved in ``store``, or a fresh one.

    Raises:
        AlphaError: The stored value has an unknown version (``StateVersionError``), or was
            saved for another number of ``lattice.v0`` partitions (the stage would wait for
            partitions forever or ignore some).
    """
    data = store.get(KEY)
    if data is None:
        return MarketProcessor(policy, partitions, spike_events=spike_events)
    state: dict[str, Any] = _CODEC.decode(data)
    if int(state["partitions"]) != partitions:
        raise AlphaError(
            f"{STORE}: state was built for {state['partitions']} lattice partitions, not"
            f" {partitions}; reset the market stage (new app id) after repartitioning"
        )
    return MarketProcessor.from_state(policy, state)


def save_market(proc: MarketProcessor, store: KeyValueStore) -> None:
    """Write the processor's state to ``store``."""
    store.put(KEY, _CODEC.encode(proc.to_state()))
