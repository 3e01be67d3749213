"""What ``b_latency`` and ``b_replay`` share: the whole topology on a private stack, fed synthetic.

The workers are the real ``alpha worker lattice|market|detector`` and ``alpha sink`` processes
(:class:`tests.kit.workers.WorkerProcess`), with the default app ids (``alpha-<role>``, the
consumer groups of :data:`topology.demo.STAGES`). ``md.raw.v0`` gets the synthetic generator's
values plus heartbeats from :class:`connectors.heartbeats.HeartbeatClock`, exactly what
``alpha ingest synthetic`` writes (:func:`topology.ingest.run_synthetic`), but as a stream of
:class:`Item` that a benchmark can cut and pace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.heartbeats import HeartbeatClock
from connectors.synthetic.generator import VENUE, generate, symbols
from schemas.raw import RawValue
from tests.kit.lattice import pack_file, synthetic_detector_pack_file
from tests.kit.workers import WorkerProcess, committed
from topology import spec
from topology.demo import SUNK, _consumer, sink_status
from topology.demo import last_records as demo_last_records
from topology.ingest import IngestContext
from topology.settings import StackSettings

#: (role, consumer group, input topic) of each stage, in pipeline order (topology/demo.py).
STAGES = (
    ("lattice", "alpha-lattice", "md.raw.v0"),
    ("market", "alpha-market", "market.in.v0"),
    ("detector", "alpha-detector", "lattice.v0"),
)
SCENARIO, SEED, INJECT = "catalogue", 7, 45
#: Baseline warm-up of the benchmark's feature pack (the shipped 200 would need 200 minutes of
#: warm-up before anything can fire; the detection tests use 30 too).
MIN_SAMPLES = 30


@dataclass(frozen=True, slots=True)
class Item:
    """One ``md.raw.v0`` write: a synthetic value, or (``value`` None) a heartbeat round."""

    exchange_ts: int
    ingest_ts: int
    value: RawValue | None


def items(
    assets: int, minutes: int, *, scenario: str = SCENARIO, inject: int = INJECT
) -> Iterator[Item]:
    """The values of a synthetic run with their heartbeats, as ``alpha ingest synthetic`` writes."""
    clock = HeartbeatClock()
    for value in generate(
        scenario, assets=assets, minutes=minutes, seed=SEED, inject_at_minute=inject
    ):
        yield Item(value["exchange_ts"], value["ingest_ts"], value)
        due = clock.advance(value["exchange_ts"])
        if due is not None:
            yield Item(due, value["ingest_ts"], None)


def register_assets(ctx: IngestContext, assets: int) -> None:
    """Resolve the synthetic symbols in the asset registry (saved when ``ctx`` closes)."""
    for symbol in symbols(assets):
        ctx.assets.resolve(VENUE, "perp", symbol)


def send(ctx: IngestContext, item: Item) -> None:
    """Write one item (a heartbeat round goes to every partition)."""
    if item.value is None:
        ctx.sink.heartbeat(item.exchange_ts, item.ingest_ts, "synthetic")
    else:
        ctx.sink.send(item.value)


@dataclass
class Topology:
    """The lattice, market and detector workers and the sink, as real processes.

    Args:
        settings: The private stack.
        work: Scratch directory (logs, packs).
        commit_interval_s: ``--commit-interval`` of the three workers (their default is 1.0).
        min_samples: Baseline warm-up of the feature pack (None: the shipped v1.0 as it is).
        sink_args: Extra ``alpha sink`` arguments.
        worker_args: Extra arguments of every worker (``--log-level info``...).
    """

    settings: StackSettings
    work: Path
    commit_interval_s: float = 1.0
    min_samples: int | None = MIN_SAMPLES
    sink_args: tuple[str, ...] = ()
    worker_args: tuple[str, ...] = ()
    procs: dict[str, WorkerProcess] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # roles killed on purpose, not yet restarted

    def __post_init__(self) -> None:
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.feature_pack = (
            None if self.min_samples is None else pack_file(self.work, self.min_samples)
        )
        self.detector_pack = synthetic_detector_pack_file(self.work)

    def args(self, role: str) -> list[str]:
        """The command-line arguments of ``role``."""
        if role == "sink":
            return ["--query-port", "0", *self.sink_args]
        out = ["--commit-interval", str(self.commit_interval_s), *self.worker_args]
        if role in ("lattice", "detector") and self.feature_pack is not None:
            out += ["--feature-pack", str(self.feature_pack)]
        if role == "detector":
            out += ["--detector-pack", str(self.detector_pack)]
        return out

    def start(self, roles: tuple[str, ...] = ("lattice", "market", "detector", "sink")) -> None:
        """Start ``roles`` (logs in ``<work>/logs/<role>.log``)."""
        for role in roles:
            self.procs[role] = WorkerProcess(
                self.settings, role, self.logs / f"{role}.log", *self.args(role)
            )

    def check(self) -> None:
        """Raise (with the log's tail) if a process exited (other than one killed on purpose)."""
        for role, proc in self.procs.items():
            if role not in self.down:
                proc.alive()

    def kill9(self, role: str) -> None:
        """SIGKILL ``role`` (its whole process group), as a crash would."""
        self.down.add(role)
        self.procs[role].kill9()

    def restart(self, role: str) -> None:
        """Start ``role`` again with the same arguments, as a supervisor does."""
        self.procs[role].restart()
        self.down.discard(role)

    def stop(self) -> dict[str, int]:
        """SIGTERM every process (the sink last); return the exit codes."""
        codes: dict[str, int] = {}
        for role in ("lattice", "market", "detector", "sink"):
            proc = self.procs.get(role)
            if proc is None:
                continue
            try:
                codes[role] = proc.stop()
            except Exception:  # a stuck worker must not keep the benchmark running
                proc.kill9()
                codes[role] = -9
        return codes


def committed_offsets(settings: StackSettings, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets of ``topic`` (0 where none)."""
    return committed(settings, group, topic, spec.topic(topic).partitions)


def last_records(settings: StackSettings, topic: str, timeout_s: float = 60) -> dict[int, int]:
    """The offset after the last record of each partition of ``topic`` (markers excluded)."""
    consumer = _consumer(settings)
    try:
        return demo_last_records(consumer, topic, timeout_s=timeout_s)
    finally:
        consumer.close()


def wait_drained(
    settings: StackSettings,
    topo: Topology,
    started: float,
    *,
    timeout_s: float,
    poll_s: float = 0.2,
    sink: bool = True,
) -> dict[str, float]:
    """Wait until each stage (then the sink) is past every record of its input.

    Stage by stage in pipeline order, as :func:`topology.demo.wait_drained` does: a stage's
    input is complete once the stages before it are drained.

    Returns:
        Seconds from ``started`` (``time.monotonic()``) until each stage was seen drained
        (polled every ``poll_s``): ``lattice``, ``market``, ``detector`` and ``sink``.
    """
    done: dict[str, float] = {}
    for role, group, topic in STAGES:
        want = last_records(settings, topic)
        while True:
            topo.check()
            have = committed_offsets(settings, group, topic)
            if all(have.get(p, 0) >= w for p, w in want.items()):
                done[role] = time.monotonic() - started
                break
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{group} did not finish {topic} in {timeout_s:.0f} s")
            time.sleep(poll_s)
    if sink:
        targets = {
            f"{t}/{p}": o for t in SUNK for p, o in last_records(settings, t).items() if o > 0
        }
        while True:
            topo.check()
            status: dict[str, Any] = sink_status(settings) or {"positions": {}}
            pos = status["positions"]
            if all(pos.get(k, 0) >= o for k, o in targets.items()):
                done["sink"] = time.monotonic() - started
                break
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"the sink did not catch up in {timeout_s:.0f} s")
            time.sleep(poll_s)
    return done
