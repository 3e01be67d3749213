"""The lattice worker on the real broker: equal to the test driver, and crash-proof under kill -9.

A private stack (its own md.raw.v0) holds a two-hour synthetic run plus two malformed records.
1. An uninterrupted worker's committed ``lattice.v0`` and ``market.in.v0`` equal, record for
   record, what the TopologyTestDriver produces from the same md.raw.v0 records; the malformed
   records are in ``lattice.dlq`` with their reasons.
2. A second worker (another app id, so fresh state and offsets), killed with SIGKILL at random
   points at least five times and restarted each time, commits exactly the same bytes as the
   uninterrupted one: no duplicates, no gaps, no drifted baselines (baselines are warm before the
   first kill, so a restart that lost or re-applied state would change every later row).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from connectors.registry import SchemaRegistry
from packs.feature import load_feature_pack
from schemas import raw
from schemas.errors import WireFormatError
from tests.conftest import require_stack
from tests.kit.kafka import end_offsets, read_between
from tests.kit.lattice import pack_file as write_pack
from tests.kit.stack import alpha, running_stack
from tests.kit.workers import WorkerProcess, committed, consumed_share, wait_until
from topology.driver import TopologyTestDriver
from topology.settings import StackSettings

pytestmark = pytest.mark.integration
OUT = ("lattice.v0", "market.in.v0")
MINUTES, ASSETS, MIN_SAMPLES = 120, 3, 30
DONE_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    require_stack()
    with running_stack(tmp_path_factory.mktemp("lattice-stack")) as settings:
        yield settings


@pytest.fixture(scope="module")
def pack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1.0 with a short warm-up, so baselines are warm long before the run ends."""
    return write_pack(tmp_path_factory.mktemp("pack"), MIN_SAMPLES)


@pytest.fixture(scope="module")
def raw_input(stack: StackSettings) -> dict[int, int]:
    """Write the input once: a malformed frame, a bad record, then the synthetic run."""
    with SchemaRegistry(stack.registry_url) as registry:
        codec = registry.codec(raw.TOPIC)
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers})
    producer.produce(raw.TOPIC, b"not avro", key=b"1", partition=1)
    bad = raw.bbo(7, "synthetic", "BAD", "synthetic", -5, 1, ("1.0", "1", None), None)
    producer.produce(raw.TOPIC, codec.encode(bad), key=b"7", partition=2)
    assert producer.flush(30) == 0
    result = alpha(
        stack, "ingest", "synthetic", "--scenario", "volume_spike", "--assets", str(ASSETS),
        "--minutes", str(MINUTES), "--seed", "11", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return end_offsets(stack, raw.TOPIC)


def _run_to_end(stack: StackSettings, worker: WorkerProcess, group: str) -> None:
    end = end_offsets(stack, raw.TOPIC)
    wait_until(
        lambda: worker.alive() and committed(stack, group, raw.TOPIC, len(end)) == end,
        DONE_TIMEOUT_S,
        f"{group} to commit every md.raw.v0 offset",
        worker.tail,
    )


def _outputs(stack: StackSettings, start: dict[str, dict[int, int]]) -> dict[str, list[Message]]:
    return {t: read_between(stack, t, start[t], end_offsets(stack, t)) for t in OUT}


def _starts(stack: StackSettings) -> dict[str, dict[int, int]]:
    return {t: end_offsets(stack, t) for t in (*OUT, "lattice.dlq")}


def _worker(stack: StackSettings, tmp: Path, group: str, pack: Path) -> WorkerProcess:
    return WorkerProcess(
        stack, "lattice", tmp / f"{group}.log", "--app-id", group, "--data-dir", str(tmp / group),
        "--commit-interval", "0.5", "--session-timeout", "6", "--feature-pack", str(pack),
        "--log-level", "info", "--stall-timeout", "45",
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(
    stack: StackSettings,
    raw_input: dict[int, int],
    pack_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("worker-a")
    start = _starts(stack)
    worker = _worker(stack, tmp, "it-lattice-a", pack_file)
    try:
        _run_to_end(stack, worker, "it-lattice-a")
    finally:
        assert worker.stop() == 0, worker.tail()
    dlq = read_between(
        stack, "lattice.dlq", start["lattice.dlq"], end_offsets(stack, "lattice.dlq")
    )
    return {"out": _outputs(stack, start), "dlq": dlq}


def test_worker_commits_what_the_driver_computes(
    stack: StackSettings, raw_input: dict[int, int], pack_file: Path, uninterrupted: dict[str, Any]
) -> None:
    with SchemaRegistry(stack.registry_url) as registry:
        codec = registry.codec(raw.TOPIC)
    records = read_between(stack, raw.TOPIC, {}, raw_input)
    driver = TopologyTestDriver(load_feature_pack(path=pack_file), flush_every=1000)
    rejected = 0
    for msg in records:
        try:
            value = codec.decode(msg.value() or b"")
        except WireFormatError:
            rejected += 1
            continue
        driver.pipe(value, partition=msg.partition())
    rejected += len(driver.dead_letters)
    out = uninterrupted["out"]
    for topic in OUT:
        # market.in.v0 is one partition fed by eight: compare per source partition
        by_source = topic == "market.in.v0"
        got: dict[int, list[bytes]] = {}
        if by_source:
            got = _by_source(stack, out[topic])
        else:
            for m in out[topic]:
                got.setdefault(m.partition() or 0, []).append((m.value() or b"")[5:])
        want: dict[int, list[bytes]] = {}
        for s in driver.read(topic):
            want.setdefault(s.value["partition"] if by_source else s.partition, []).append(
                s.data[5:]
            )
        assert sorted(got) == sorted(want)
        for p in want:
            assert len(got[p]) == len(want[p]), f"{topic}[{p}]"
            assert got[p] == want[p], f"{topic}[{p}] differs from the driver"
    rows = [s.value for s in driver.read("lattice.v0", rows_only=True)]
    assert {r["tf"] for r in rows} == {"m1", "m15", "h1"}
    assert sum(not r["warmup"] for r in rows if r["tf"] == "m1") > 100
    assert any(r["is_vol_spike_m_1"] for r in rows), "the volume_spike scenario shows in the rows"
    # the two bad inputs are kept, with why
    dlq = uninterrupted["dlq"]
    assert rejected == 2
    assert len(dlq) == 2
    reasons = sorted(dict(m.headers() or [])["error"].decode() for m in dlq)
    assert reasons[0].startswith("BadRecord: exchange_ts -5"), reasons
    assert reasons[1].startswith("WireFormatError"), reasons


def _by_source(stack: StackSettings, msgs: list[Message]) -> dict[int, list[bytes]]:
    """market.in.v0 payloads grouped by the lattice partition they came from, in order."""
    with SchemaRegistry(stack.registry_url) as registry:
        codec = registry.codec("market.in.v0")
    out: dict[int, list[bytes]] = {}
    for m in msgs:
        data = m.value() or b""
        out.setdefault(int(codec.decode(data)["body"]["partition"]), []).append(data[5:])
    return out


def _diff(stack: StackSettings, topic: str, got: Message, want: Message) -> str:
    with SchemaRegistry(stack.registry_url) as registry:
        codec = registry.codec(topic)
    g, w = (codec.decode(m.value() or b"")["body"] for m in (got, want))
    fields = {k: (g.get(k), w.get(k)) for k in sorted({*g, *w}) if g.get(k) != w.get(k)}
    where = {k: w.get(k) for k in ("asset_uid", "tf", "exchange_ts", "revision", "seal")}
    return f"partition {want.partition()} {where}: (got, want) {fields}"


def test_kill_9_at_random_points_commits_identical_bytes(
    stack: StackSettings,
    raw_input: dict[int, int],
    pack_file: Path,
    uninterrupted: dict[str, Any],
    tmp_path: Path,
) -> None:
    group = "it-lattice-b"
    start = _starts(stack)
    rng = random.Random(20261124)
    points = sorted(rng.uniform(0.08, 0.92) for _ in range(5))
    kills = 0
    for point in points:
        worker = _worker(stack, tmp_path, group, pack_file)
        wait_until(
            lambda p=point, w=worker: (  # type: ignore[misc]
                w.alive() and consumed_share(stack, group, raw.TOPIC) >= p
            ),
            DONE_TIMEOUT_S,
            f"{group} to pass {point:.0%} of the input",
            worker.tail,
        )
        worker.kill9()
        kills += 1
    worker = _worker(stack, tmp_path, group, pack_file)
    try:
        _run_to_end(stack, worker, group)
    finally:
        assert worker.stop() == 0, worker.tail()
    assert kills >= 5
    crashed = _outputs(stack, start)
    for topic in OUT:
        want = uninterrupted["out"][topic]
        got = crashed[topic]
        if topic == "market.in.v0":  # one partition fed by eight: order across sources may vary
            assert _by_source(stack, got) == _by_source(stack, want), "market.in.v0 differs"
            continue
        assert len(got) == len(want), f"{topic}: {len(got)} records vs {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same = (g.partition(), g.key(), g.value()) == (w.partition(), w.key(), w.value())
            assert same, f"{topic} record {i} differs after kill -9: {_diff(stack, topic, g, w)}"
