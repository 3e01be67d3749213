"""lattice -> market -> detector on the real broker: the events equal the PipelineDriver's.

A private stack holds the synthetic ``catalogue`` (4 assets, 120 minutes, seed 7: a calm regime,
patterns injected from minute 30 on, after the 30-sample warm-up of the test pack): one run in
which every detector of Appendix B fires. Real workers run every stage: ``alpha worker
lattice``, ``alpha worker market`` and ``alpha worker detector`` (with the detector pack plus the
synthetic sector tags, from a file).

1. One detector worker: its committed ``alpha.events.v0`` equals, byte for byte and partition by
   partition, what :class:`topology.pipeline_driver.PipelineDriver` computes from the same
   ``md.raw.v0`` records (so a second run, or a replay, gives the same bytes too), and all 19
   subtypes are among the events. A malformed ``lattice.v0`` record is in ``alpha.events.dlq``
   with its reason.
2. Two detector workers in one group split the partitions and commit the same events.
3. The market stage's snapshots are on ``market.snapshot.v0``, one per minute.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from connectors.registry import SchemaRegistry
from connectors.synthetic.scenarios import CATALOGUE_MINUTES as MINUTES
from packs.detector import SUBTYPE_FAMILY, DetectorPack, load_detector_pack
from packs.feature import load_feature_pack
from processors.detect.events import Provenance
from schemas import raw
from schemas.errors import WireFormatError
from schemas.events import to_json
from schemas.wire import AvroCodec
from tests.conftest import require_stack
from tests.kit.kafka import end_offsets, read_between
from tests.kit.lattice import pack_file as write_pack
from tests.kit.lattice import synthetic_detector_pack, synthetic_detector_pack_file
from tests.kit.stack import alpha, running_stack
from tests.kit.workers import WorkerProcess, committed, wait_until
from topology.pipeline_driver import PipelineDriver
from topology.settings import StackSettings

pytestmark = pytest.mark.integration
ASSETS, MIN_SAMPLES, INJECT = 4, 30, 45
EVENTS = "alpha.events.v0"
DONE_TIMEOUT_S = 600
_SEQ = itertools.count()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    require_stack()
    with running_stack(tmp_path_factory.mktemp("detect-stack")) as settings:
        yield settings


@pytest.fixture(scope="module")
def pack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1.0 with a short warm-up, so baselines are warm long before the run ends."""
    return write_pack(tmp_path_factory.mktemp("pack"), MIN_SAMPLES)


DETECTOR_PACK = synthetic_detector_pack()


@pytest.fixture(scope="module")
def detector_pack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped detector pack with the synthetic assets' sector tags."""
    path = synthetic_detector_pack_file(tmp_path_factory.mktemp("detector-pack"))
    assert load_detector_pack(path=path).hash() == DETECTOR_PACK.hash()
    return path


def _worker(stack: StackSettings, tmp: Path, role: str, group: str, *extra: str) -> WorkerProcess:
    n = next(_SEQ)  # each process its own log and table directory
    return WorkerProcess(
        stack, role, tmp / f"{group}-{n}.log", "--app-id", group, "--data-dir",
        str(tmp / f"{group}-{n}"), "--commit-interval", "0.5", "--session-timeout", "6",
        "--log-level", "info", *extra,
    )  # fmt: skip


def _drain(stack: StackSettings, workers: list[WorkerProcess], group: str, topic: str) -> None:
    """Wait until ``group`` committed past the last record of ``topic`` (as of now).

    A transactional topic ends with a commit marker the consumer never receives, so its end
    offset is one past what a group that processed everything commits: wait on the offset
    after the last record instead.
    """
    records = read_between(stack, topic, {}, end_offsets(stack, topic))
    want: dict[int, int] = dict.fromkeys(range(len(end_offsets(stack, topic))), 0)
    for m in records:
        want[m.partition() or 0] = (m.offset() or 0) + 1
    wait_until(
        lambda: (
            all(w.alive() for w in workers) and committed(stack, group, topic, len(want)) == want
        ),
        DONE_TIMEOUT_S,
        f"{group} to commit past every {topic} record",
        lambda: "\n".join(w.tail() for w in workers),
    )


@pytest.fixture(scope="module")
def pipeline(
    stack: StackSettings,
    pack_file: Path,
    detector_pack_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Ingest, run lattice and market to the end, plant a bad lattice.v0 record."""
    tmp = tmp_path_factory.mktemp("detect-workers")
    result = alpha(
        stack, "ingest", "synthetic", "--scenario", "catalogue", "--assets", str(ASSETS),
        "--minutes", str(MINUTES), "--seed", "7", "--inject-at", str(INJECT), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    raw_end = end_offsets(stack, raw.TOPIC)
    pack = ("--feature-pack", str(pack_file))
    lattice = _worker(stack, tmp, "lattice", "it-det-lattice", *pack)
    market = _worker(stack, tmp, "market", "it-det-market")
    try:
        _drain(stack, [lattice, market], "it-det-lattice", raw.TOPIC)
        _drain(stack, [lattice, market], "it-det-market", "market.in.v0")
    finally:
        assert lattice.stop() == 0, lattice.tail()
        assert market.stop() == 0, market.tail()
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers})
    producer.produce("lattice.v0", b"not avro", partition=3)
    assert producer.flush(30) == 0
    detector = (*pack, "--detector-pack", str(detector_pack_file))
    return {"raw_end": raw_end, "tmp": tmp, "pack": detector}


def _run_detectors(stack: StackSettings, pipeline: dict[str, Any], group: str, n: int) -> None:
    workers = [
        _worker(stack, pipeline["tmp"], "detector", group, *pipeline["pack"]) for _ in range(n)
    ]
    try:
        _drain(stack, workers, group, "lattice.v0")
    finally:
        for w in workers:
            assert w.stop() == 0, w.tail()


@pytest.fixture(scope="module")
def one_worker(stack: StackSettings, pipeline: dict[str, Any]) -> dict[str, list[Message]]:
    start = {t: end_offsets(stack, t) for t in (EVENTS, "alpha.events.dlq")}
    _run_detectors(stack, pipeline, "it-det-a", 1)
    return {t: read_between(stack, t, start[t], end_offsets(stack, t)) for t in start}


def _payloads(msgs: list[Message]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for m in msgs:
        out.setdefault(m.partition() or 0, []).append((m.value() or b"")[5:])
    return out


def test_detector_worker_commits_what_the_driver_computes(
    stack: StackSettings,
    pipeline: dict[str, Any],
    pack_file: Path,
    one_worker: dict[str, list[Message]],
) -> None:
    with SchemaRegistry(stack.registry_url) as registry:
        raw_codec = registry.codec(raw.TOPIC)
        event_codec = registry.codec(EVENTS)
    provenance = _worker_provenance(one_worker[EVENTS], event_codec)
    driver = PipelineDriver(
        load_feature_pack(path=pack_file),
        detector_pack=DETECTOR_PACK,
        provenance=provenance,
        flush_every=1000,
    )
    for msg in read_between(stack, raw.TOPIC, {}, pipeline["raw_end"]):
        try:
            value = raw_codec.decode(msg.value() or b"")
        except WireFormatError:
            continue
        driver.pipe(value, partition=msg.partition())
    want: dict[int, list[bytes]] = {}
    for s in driver.outputs:
        if s.topic == EVENTS:
            want.setdefault(s.partition, []).append(s.data[5:])
    got = _payloads(one_worker[EVENTS])
    assert sum(map(len, want.values())) > 0
    assert sorted(got) == sorted(want)
    for p in want:
        assert got[p] == want[p], f"{EVENTS}[{p}] differs from the driver ({provenance})"
    events = [event_codec.decode(m.value() or b"") for m in one_worker[EVENTS]]
    assert {e["subtype"] for e in events} == set(SUBTYPE_FAMILY)  # every detector fired
    assert all(e["provenance"]["replay_of"] is False for e in events)
    dlq = one_worker["alpha.events.dlq"]
    assert len(dlq) == 1
    headers: dict[str, str] = {}
    for header in dlq[0].headers() or []:
        text = header[1]
        headers[str(header[0])] = text.decode() if isinstance(text, bytes) else str(text)
    assert headers["error"].startswith("WireFormatError"), headers
    assert headers["source"].startswith("lattice.v0/3@"), headers


def _worker_provenance(msgs: list[Message], codec: AvroCodec) -> Provenance:
    """The worker's provenance (its git commit and package version are the machine's)."""
    assert msgs, "the detector worker published no event"
    p = codec.decode(msgs[0].value() or b"")["provenance"]
    pack: DetectorPack = DETECTOR_PACK
    return Provenance(p["producer"], p["detector_pack"], pack.hash(), p["git_commit"])


def test_two_detector_workers_commit_the_same_events(
    stack: StackSettings, pipeline: dict[str, Any], one_worker: dict[str, list[Message]]
) -> None:
    start = end_offsets(stack, EVENTS)
    _run_detectors(stack, pipeline, "it-det-b", 2)
    two = read_between(stack, EVENTS, start, end_offsets(stack, EVENTS))
    assert _payloads(two) == _payloads(one_worker[EVENTS])


def test_market_snapshots_one_per_minute(stack: StackSettings, pipeline: dict[str, Any]) -> None:
    with SchemaRegistry(stack.registry_url) as registry:
        codec = registry.codec("market.snapshot.v0")
    msgs = read_between(stack, "market.snapshot.v0", {}, end_offsets(stack, "market.snapshot.v0"))
    labels = [codec.decode(m.value() or b"")["exchange_ts"] for m in msgs]
    assert len(labels) >= MINUTES - 3
    assert labels == sorted(set(labels))
    assert all(b - a == 60_000 for a, b in itertools.pairwise(labels))


def test_events_tail_prints_the_spec_json_decoded_through_the_registry(
    stack: StackSettings, one_worker: dict[str, list[Message]]
) -> None:
    with SchemaRegistry(stack.registry_url) as registry:
        codec = registry.codec(EVENTS)
    result = alpha(
        stack, "events", "tail", "--json", "--from-beginning", "--max", "3",
        "--idle-timeout", "30", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    printed = [json.loads(line) for line in lines]
    ids = {str(codec.decode(m.value() or b"")["event_id"]) for m in one_worker[EVENTS]}
    for p in printed:
        assert p["event_id"] in ids
        assert p["tf"] in ("1m", "15m", "1h")
        assert p["provenance"]["config_hash"].startswith("sha256:")
    # every printed object is exactly the JSON rendering of an event the worker committed
    rendered = {json.dumps(to_json(codec.decode(m.value() or b""))) for m in one_worker[EVENTS]}
    assert {json.dumps(p) for p in printed} <= rendered
