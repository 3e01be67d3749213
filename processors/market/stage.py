"""The market stage's state in its store (``market.state.v1``): a core value plus one per minute.

The market stage has one input partition, so its whole :class:`MarketProcessor` state lives in
one store: the core (universe, history, leader...) under ``market``, and each minute still
waiting for a lagging ``lattice.v0`` partition under ``p:<label>``. Minutes are separate values
because a full-speed replay can leave hundreds of them pending (one partition far behind the
others): as one value the state outgrew Kafka's 1 MB record limit in the changelog and stopped
the worker. :func:`save_market` writes only the minutes that changed since the last save and
deletes the released ones. A processor rebuilt by :func:`load_market` continues bit-identically.
A core value written before minutes were split out (with ``pending`` inside) still loads.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

from packs.universe import UniversePolicy
from processors.market.snapshot import MarketProcessor
from schemas.errors import AlphaError
from state.codec import json_codec
from state.store import KeyValueStore

STORE = "market.state.v1"
KEY = b"market"
PENDING_PREFIX = b"p:"
_CODEC = json_codec(STORE)
#: What each live processor's minutes looked like at its last save (label -> encoded value).
_SAVED: weakref.WeakKeyDictionary[MarketProcessor, dict[bytes, bytes]] = weakref.WeakKeyDictionary()


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
        proc = MarketProcessor(policy, partitions, spike_events=spike_events)
        _SAVED[proc] = {}
        return proc
    state: dict[str, Any] = _CODEC.decode(data)
    if int(state["partitions"]) != partitions:
        raise AlphaError(
            f"{STORE}: state was built for {state['partitions']} lattice partitions, not"
            f" {partitions}; reset the market stage (new app id) after repartitioning"
        )
    saved: dict[bytes, bytes] = {}
    pending = dict(state.get("pending") or {})
    for key, value in store.scan(PENDING_PREFIX):
        pending[key[len(PENDING_PREFIX) :].decode()] = json.loads(value)
        saved[key] = value
    state["pending"] = pending
    proc = MarketProcessor.from_state(policy, state)
    _SAVED[proc] = saved
    return proc


def save_market(proc: MarketProcessor, store: KeyValueStore) -> None:
    """Write the processor's state to ``store``: the core, and the minutes that changed."""
    state = proc.to_state(shared=True)  # encoded below and dropped: no copy needed
    pending: dict[str, Any] = state.pop("pending")
    state["pending"] = {}
    saved = _SAVED.setdefault(proc, {})
    batch: dict[bytes, bytes | None] = {}
    now: dict[bytes, bytes] = {}
    for label, minute in pending.items():
        key = PENDING_PREFIX + label.encode()
        value = json.dumps(minute, sort_keys=True, separators=(",", ":")).encode()
        now[key] = value
        if saved.get(key) != value:
            batch[key] = value
    for key in saved:
        if key not in now:
            batch[key] = None
    batch[KEY] = _CODEC.encode(state)
    store.apply(batch)
    _SAVED[proc] = now
