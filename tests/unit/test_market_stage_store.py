"""The market stage's store layout: a core value plus one value per pending minute."""

from __future__ import annotations

from packs.universe import load_universe_policy
from processors.market import stage
from processors.market.snapshot import MarketProcessor
from state.memory import MemoryStore

POLICY = load_universe_policy()


def _proc_with_pending(labels: range) -> MarketProcessor:
    proc = MarketProcessor(POLICY, 8)
    proc.pending = {
        label: {"r0": {101: {"close": 1.0 + label}, 102: {"close": 2.0}}, "r1": {}}
        for label in labels
    }
    return proc


def test_pending_minutes_are_separate_values_and_round_trip() -> None:
    store = MemoryStore(stage.STORE)
    proc = _proc_with_pending(range(0, 600_000, 60_000))
    stage.save_market(proc, store)
    keys = [k for k, _ in store.scan(stage.PENDING_PREFIX)]
    assert len(keys) == 10
    data = store.get(stage.KEY)
    assert data is not None
    core = stage._CODEC.decode(data)
    assert core["pending"] == {}
    again = stage.load_market(POLICY, 8, store)
    assert again.to_state() == proc.to_state()


def test_only_changed_minutes_are_written_and_released_ones_deleted() -> None:
    store = MemoryStore(stage.STORE)
    proc = _proc_with_pending(range(0, 300_000, 60_000))
    stage.save_market(proc, store)
    writes: list[bytes] = []
    original = store.apply

    def spy(batch: dict[bytes, bytes | None]) -> None:
        writes.extend(batch)
        original(batch)

    store.apply = spy  # type: ignore[method-assign,assignment]
    del proc.pending[0]  # released
    proc.pending[60_000]["r0"][103] = {"close": 3.0}  # changed
    stage.save_market(proc, store)
    assert sorted(writes) == sorted([stage.KEY, b"p:0", b"p:60000"])
    assert store.get(b"p:0") is None
    assert stage.load_market(POLICY, 8, store).to_state() == proc.to_state()


def test_a_core_value_with_pending_inside_still_loads() -> None:
    store = MemoryStore(stage.STORE)
    proc = _proc_with_pending(range(0, 180_000, 60_000))
    store.put(stage.KEY, stage._CODEC.encode(proc.to_state()))  # the layout before the split
    assert stage.load_market(POLICY, 8, store).to_state() == proc.to_state()
