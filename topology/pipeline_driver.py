"""The whole topology run synchronously: lattice -> market -> detect, without a broker (STYLE.md).

:class:`PipelineDriver` is the :class:`topology.driver.TopologyTestDriver` of the lattice with the
market and detect stages behind it, in one valid interleaving of what Kafka would do: every
``market.in.v0`` record goes to the market processor as it is produced, every ``lattice.v0``
record of partition p (rows and seals from the lattice, frames from the market stage) goes to the
detector as it is produced. Every record passes through its topic's real Avro codec, as a
consumer would read it. Because each stage's output depends only on the order of its own input
partitions (processors.market.snapshot, processors.detect.processor), any other interleaving --
the brokers', one worker or two -- gives the same records; the integration tests check that.

Product code: the golden windows and ``alpha explain`` use it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from packs.detector import DetectorPack, load_detector_pack
from packs.feature import FeaturePack
from packs.universe import UniversePolicy, load_universe_policy
from processors.detect import processor as detect
from processors.detect.events import Provenance
from processors.detect.feed import TRADE_IN_TOPIC as TRADE_IN
from processors.market import stage as market_stage
from processors.market.snapshot import MarketInError
from schemas import catalog
from schemas.wire import AvroCodec
from state.memory import MemoryStore
from state.store import KeyValueStore
from topology.driver import LATTICE_STORES, Sent, TopologyTestDriver
from topology.spec import TOPICS

STAGE_STORES = (market_stage.STORE, detect.STORE)
#: Provenance of events made by the driver when none is given (goldens must not embed a commit).
DRIVER_PROVENANCE = Provenance(
    producer="alpha-detector@driver",
    detector_pack="",
    detector_hash="",
    git_commit="driver",
)


def _partitions(topic: str) -> int:
    return next(t.partitions for t in TOPICS if t.name == topic)


class PipelineDriver(TopologyTestDriver):
    """Run lattice, market and detect in-process (see module docstring).

    Args:
        pack: The feature pack (default: the shipped one).
        detector_pack: The detector pack (default: the shipped one).
        policy: The universe policy (default: the shipped one).
        stores: State stores by name (default: fresh memory stores for every stage).
        provenance: Stamped on events (default: :data:`DRIVER_PROVENANCE` with the pack's
            version and hash).
        partitions: Partitions of ``md.raw.v0`` and ``lattice.v0``.
        flush_every: Flush state after this many raw records (1 = strictest round-trips).
        trade_feed: The detector also reports each minute step to ``trade.in.v0``.
    """

    def __init__(
        self,
        pack: FeaturePack | None = None,
        detector_pack: DetectorPack | None = None,
        policy: UniversePolicy | None = None,
        stores: Mapping[str, KeyValueStore] | None = None,
        *,
        provenance: Provenance | None = None,
        partitions: int | None = None,
        flush_every: int = 1,
        trade_feed: bool = False,
    ) -> None:
        self.trade_feed = trade_feed
        names = (*LATTICE_STORES, *STAGE_STORES)
        all_stores = dict(stores or {n: MemoryStore(n) for n in names})
        super().__init__(pack, all_stores, partitions=partitions, flush_every=flush_every)
        self.detector_pack = detector_pack or load_detector_pack()
        self.policy = policy or load_universe_policy()
        self.provenance = provenance or Provenance(
            producer=DRIVER_PROVENANCE.producer,
            detector_pack=self.detector_pack.version,
            detector_hash=self.detector_pack.hash(),
            git_commit=DRIVER_PROVENANCE.git_commit,
        )
        self.stage_codecs = {
            t: AvroCodec(catalog.load(t).parsed, 100 + i)
            for i, t in enumerate(
                ("lattice.v0", "market.snapshot.v0", "universe.v0", detect.EVENTS_TOPIC, TRADE_IN)
            )
        }
        self._wrapped = {t: catalog.body_wrapped(t) for t in self.stage_codecs}
        self.stage_dead_letters: list[tuple[str, dict[str, Any], str]] = []
        #: Every detector step that triggered something: triggers, emissions, suppressions.
        self.reports: list[detect.StepReport] = []
        self._build_stages()

    def _build_stages(self) -> None:
        self.market = market_stage.load_market(
            self.policy, self.partitions, self.stores[market_stage.STORE]
        )
        self.detector = detect.DetectorProcessor(
            self.detector_pack,
            self.pack,
            self.stores,
            self.provenance,
            event_partitions=_partitions(detect.EVENTS_TOPIC),
            policy=self.policy,
            trade_partitions=self.partitions if self.trade_feed else None,
        )

    def pipe(self, value: Mapping[str, Any], partition: int | None = None) -> list[Sent]:
        """Process one raw value through every stage; return all records produced."""
        out: list[Sent] = []
        for sent in super().pipe(value, partition):
            out.append(sent)
            if sent.topic == "market.in.v0":
                out += self._market(sent)
            elif sent.topic == "lattice.v0":
                out += self._detect(sent)
        if self._since_flush == 0:  # the lattice just flushed: flush the stages with it
            self._flush_stages()
        return out

    def _market(self, sent: Sent) -> list[Sent]:
        try:
            outs = self.market.step(sent.value)
        except MarketInError as exc:
            self.stage_dead_letters.append(("market.in.v0", sent.value, str(exc)))
            return []
        produced: list[Sent] = []
        for o in outs:
            record = self._encode(o.topic, o.key, o.partition, o.value)
            produced.append(record)
            if o.topic == "lattice.v0":
                produced += self._detect(record)
        return produced

    def _detect(self, sent: Sent) -> list[Sent]:
        try:
            outs = self.detector.step(sent.partition, {"body": sent.value})
        except detect.BadLatticeRecord as exc:
            self.stage_dead_letters.append(("lattice.v0", sent.value, str(exc)))
            return []
        report = self.detector.report
        if report.triggers or report.suppressions:
            self.reports.append(report)
        return [self._encode(o.topic, o.key, o.partition, o.value) for o in outs]

    def _encode(self, topic: str, key: bytes | None, partition: int, value: dict[str, Any]) -> Sent:
        codec = self.stage_codecs[topic]
        wrapped = self._wrapped[topic]
        data = codec.encode({"body": value} if wrapped else value)
        decoded = codec.decode(data)
        sent = Sent(topic, partition, key, data, decoded["body"] if wrapped else decoded)
        self.outputs.append(sent)
        return sent

    def _flush_stages(self) -> None:
        market_stage.save_market(self.market, self.stores[market_stage.STORE])
        self.detector.flush()

    def flush(self) -> None:
        """Write every stage's cached state to the stores."""
        super().flush()
        self._flush_stages()

    def restart(self) -> None:
        """Flush, then rebuild every stage from the stores (what worker restarts do)."""
        super().restart()
        self._build_stages()

    def events(self) -> list[dict[str, Any]]:
        """Return the decoded ``alpha.events.v0`` values produced so far, in order."""
        return [s.value for s in self.outputs if s.topic == detect.EVENTS_TOPIC]
