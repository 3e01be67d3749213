"""The TopologyTestDriver: the lattice stage run synchronously, without a broker (STYLE.md).

``pipe()`` takes an ``md.raw.v0`` value, encodes and decodes it through the real Avro codec,
picks the partition Kafka's partitioner would, runs the same :class:`LatticeProcessor` the Faust
agent runs, and passes every output through the real ``lattice.v0`` / ``market.in.v0`` codecs.
``store(name)`` exposes the state stores to seed or inspect; ``restart()`` rebuilds the processor
from the stores, as a worker restart does. Product code: replays and golden checks use it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.heartbeats import HeartbeatClock
from packs.feature import FeaturePack, load_feature_pack
from processors.lattice.processor import BadRecord, LatticeProcessor, Output
from schemas import catalog, raw
from schemas.ids import partition_for
from schemas.wire import AvroCodec
from state.memory import MemoryStore
from state.names import STORES
from state.store import KeyValueStore
from topology.spec import TOPICS

LATTICE_STORES = tuple(s for s in STORES if s.startswith("lattice."))
RAW_TOPIC = "md.raw.v0"


@dataclass(frozen=True, slots=True)
class Sent:
    """One output as a consumer reads it: topic, partition, key, encoded and decoded value."""

    topic: str
    partition: int
    key: bytes | None
    data: bytes
    value: dict[str, Any]


class TopologyTestDriver:
    """Run the lattice stage in-process.

    Args:
        pack: The feature pack (default: the shipped v1.0).
        stores: State stores by name (default: fresh memory stores).
        partitions: Partitions of ``md.raw.v0`` (default: the topic spec's).
        flush_every: Flush state to the stores after this many records (1 = every record, the
            strictest test of state round-trips; the Faust worker flushes once per commit).
    """

    def __init__(
        self,
        pack: FeaturePack | None = None,
        stores: Mapping[str, KeyValueStore] | None = None,
        *,
        partitions: int | None = None,
        flush_every: int = 1,
    ) -> None:
        self.pack = pack or load_feature_pack()
        self.stores: dict[str, KeyValueStore] = dict(
            stores or {n: MemoryStore(n) for n in LATTICE_STORES}
        )
        self.partitions = partitions or next(t.partitions for t in TOPICS if t.name == RAW_TOPIC)
        self.flush_every = flush_every
        self._codecs = {
            t: AvroCodec(catalog.load(t).parsed, i + 1)
            for i, t in enumerate((RAW_TOPIC, "lattice.v0", "market.in.v0"))
        }
        self._since_flush = 0
        self.processor = LatticeProcessor(self.pack, self.stores)
        self.outputs: list[Sent] = []
        self.dead_letters: list[tuple[dict[str, Any], str]] = []

    def partition_of(self, value: Mapping[str, Any]) -> int:
        """Return the ``md.raw.v0`` partition of a raw value (heartbeats carry theirs)."""
        body = value["body"]
        if "partition" in body and int(value["asset_uid"]) == 0:
            return int(body["partition"])
        return partition_for(str(value["asset_uid"]).encode(), self.partitions)

    def pipe(self, value: Mapping[str, Any], partition: int | None = None) -> list[Sent]:
        """Process one raw value; return its outputs (also appended to :attr:`outputs`).

        A value the processor rejects lands in :attr:`dead_letters` with the reason.
        """
        raw = self._codecs[RAW_TOPIC]
        decoded = raw.decode(raw.encode(dict(value)))
        p = self.partition_of(decoded) if partition is None else partition
        try:
            outs = self.processor.step(p, decoded)
        except BadRecord as exc:
            self.dead_letters.append((decoded, str(exc)))
            return []
        self._since_flush += 1
        if self._since_flush >= self.flush_every:
            self.flush()
        sent = [self._send(o) for o in outs]
        self.outputs += sent
        return sent

    def pipe_all(self, values: Iterable[Mapping[str, Any]]) -> list[Sent]:
        """Process values in order; return all outputs."""
        out: list[Sent] = []
        for v in values:
            out += self.pipe(v)
        return out

    def pipe_stream(
        self, values: Iterable[Mapping[str, Any]], *, heartbeat_ms: int = 1000
    ) -> list[Sent]:
        """Process values as the ingest sink writes them.

        A heartbeat goes to every partition each time stream time crosses a ``heartbeat_ms``
        boundary (:class:`connectors.heartbeats.HeartbeatClock`).
        """
        clock = HeartbeatClock(heartbeat_ms)
        out: list[Sent] = []
        for v in values:
            out += self.pipe(v)
            due = clock.advance(int(v["exchange_ts"]))
            if due is not None:
                for p in range(self.partitions):
                    out += self.pipe(
                        raw.heartbeat(p, due, int(v["ingest_ts"]), v["source"]), partition=p
                    )
        return out

    def flush(self) -> None:
        """Write cached state to the stores."""
        self.processor.flush()
        self._since_flush = 0

    def restart(self) -> None:
        """Flush, then rebuild the processor from the stores (what a worker restart does)."""
        self.flush()
        self.processor = LatticeProcessor(self.pack, self.stores)

    def store(self, name: str) -> KeyValueStore:
        """Return a state store by name."""
        return self.stores[name]

    def read(self, topic: str, *, rows_only: bool = False) -> list[Sent]:
        """Return the outputs sent to ``topic`` so far (optionally only keyed feature rows)."""
        return [
            s for s in self.outputs if s.topic == topic and (s.key is not None or not rows_only)
        ]

    def _send(self, out: Output) -> Sent:
        codec = self._codecs[out.topic]
        data = codec.encode({"body": out.value})
        return Sent(out.topic, out.partition, out.key, data, codec.decode(data)["body"])
