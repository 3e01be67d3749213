"""The downstream stage run synchronously on ``trade.in.v0`` values, without a broker.

:class:`TraderDriver` is to the trader what :class:`topology.pipeline_driver.PipelineDriver` is
to the upstream stages: every output goes through its topic's real Avro codec (as a consumer
reads it) and lands on the partition the worker would send it to, so tests see exactly what the
topics would hold. ``restart()`` flushes and rebuilds the processor from its store, as a worker
restart does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from packs.risk import RiskPolicy
from processors.downstream.trader import TraderProcessor
from processors.downstream.trader_state import STORE, Output
from schemas import catalog
from schemas.ids import partition_for
from schemas.wire import AvroCodec
from state.memory import MemoryStore
from state.store import KeyValueStore
from topology import spec
from topology.driver import Sent

#: The topics the trader writes.
OUTPUT_TOPICS = (
    "sizing.decisions.v0",
    "orders.v0",
    "fills.v0",
    "trade.adjust.v0",
    "cvar.caps.v0",
    "hrp.budget.v0",
    "risk.state.v0",
    "control.v0",
)


def resolve_partition(o: Output) -> int:
    """Return the partition of an output: its own, or by key like the per-asset topics."""
    if o.partition >= 0:
        return o.partition
    return partition_for(o.key or b"", spec.topic(o.topic).partitions)


class TraderDriver:
    """Run :class:`TraderProcessor` in-process (see module docstring).

    Args:
        policy: The risk pack.
        partitions: ``lattice.v0`` partitions the input reports.
        store: ``trade.state.v1`` (default: a fresh memory store).
        flush_every: Flush state after this many input records (1 = strictest round-trips).
    """

    def __init__(
        self,
        policy: RiskPolicy,
        partitions: int,
        store: KeyValueStore | None = None,
        *,
        flush_every: int = 1,
    ) -> None:
        self.policy = policy
        self.partitions = partitions
        self.store = store or MemoryStore(STORE)
        self.flush_every = flush_every
        self.codecs = {
            t: AvroCodec(catalog.load(t).parsed, 200 + i) for i, t in enumerate(OUTPUT_TOPICS)
        }
        self.input_codec = AvroCodec(catalog.load("trade.in.v0").parsed, 199)
        self.outputs: list[Sent] = []
        self._since_flush = 0
        self.proc = TraderProcessor(policy, self.store, partitions)

    def pipe(self, value: Mapping[str, Any]) -> list[Sent]:
        """Process one ``trade.in.v0`` value (after an Avro round trip); return its outputs."""
        decoded = self.input_codec.decode(self.input_codec.encode(dict(value)))
        sent = []
        for o in self.proc.step(decoded):
            codec = self.codecs[o.topic]
            data = codec.encode(o.value)
            sent.append(Sent(o.topic, resolve_partition(o), o.key, data, codec.decode(data)))
        self.outputs += sent
        self._since_flush += 1
        if self._since_flush >= self.flush_every:
            self.flush()
        return sent

    def pipe_all(self, values: Iterable[Mapping[str, Any]]) -> list[Sent]:
        """Process every value in order."""
        out: list[Sent] = []
        for v in values:
            out += self.pipe(v)
        return out

    def flush(self) -> None:
        """Write the processor's changed state."""
        self.proc.flush()
        self._since_flush = 0

    def restart(self) -> None:
        """Flush, then rebuild the processor from the store (what a worker restart does)."""
        self.flush()
        self.proc = TraderProcessor(self.policy, self.store, self.partitions)

    def values(self, topic: str) -> list[dict[str, Any]]:
        """The decoded values produced on ``topic`` so far, in order."""
        return [s.value for s in self.outputs if s.topic == topic]
