"""The ClickHouse sink on the real broker and the real engine (chDB), under crashes.

A private stack holds the synthetic ``catalogue`` (4 assets, 120 minutes, seed 7; every detector
fires). The lattice, market and detector workers and ``alpha sink`` run as real processes while
the test plays the supervisor: it kills the sink with SIGKILL five times at different points of
its progress, kills the detector worker twice, restarts the broker once, and restarts whatever
died. At the end:

1. ``alpha.events.v0`` equals, byte for byte per partition, what the in-process driver computes
   from the same ``md.raw.v0`` (a clean run);
2. the ClickHouse tables seen through ``FINAL`` hold exactly the clean run's records: every event
   payload, every feature row's final revision, every market snapshot -- no duplicate, no loss;
3. ``alpha sql`` answered while the pipeline ran (through the sink's query endpoint) and answers
   after it stopped (opening the store itself);
4. a record the sink cannot decode went to ``alpha.sink.dlq`` with the reason, and the sink went on.
"""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer

from connectors.registry import SchemaRegistry
from connectors.synthetic.scenarios import CATALOGUE_MINUTES as MINUTES
from packs.feature import load_feature_pack
from processors.detect.events import Provenance
from schemas import raw
from schemas.errors import WireFormatError
from schemas.events import to_json
from tests.conftest import require_stack
from tests.kit.kafka import end_offsets, read_between
from tests.kit.lattice import pack_file as write_pack
from tests.kit.lattice import synthetic_detector_pack, synthetic_detector_pack_file
from tests.kit.stack import alpha, running_stack
from tests.kit.workers import WorkerProcess, committed, wait_until
from topology.localstack.stack import LocalStack
from topology.pipeline_driver import PipelineDriver
from topology.settings import StackSettings
from topology.sink import rows_of

ASSETS, MIN_SAMPLES, INJECT = 4, 30, 45
EVENTS = "alpha.events.v0"
TIMEOUT_S = 600
SINK_KILLS, DETECTOR_KILL_AT = 5, (2, 4)
DETECTOR_PACK = synthetic_detector_pack()
_SEQ = itertools.count()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    require_stack()
    with running_stack(tmp_path_factory.mktemp("sink-stack")) as settings:
        yield settings


def _status(settings: StackSettings) -> dict[str, Any] | None:
    """The running sink's ``GET /status``, or None while it (re)starts."""
    try:
        info = json.loads((settings.runtime / "sink.json").read_text())
        with urllib.request.urlopen(info["url"] + "/status", timeout=5) as reply:  # noqa: S310
            status: dict[str, Any] = json.loads(reply.read())
    except (OSError, ValueError, KeyError):
        return None
    return status


def _sql(settings: StackSettings, query: str) -> list[dict[str, Any]]:
    result = alpha(
        settings, "sql", query + " SETTINGS output_format_json_quote_64bit_integers = 0",
        "--format", "JSONEachRow", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _last_records(settings: StackSettings, topic: str) -> dict[int, int]:
    """The offset after the last record of each partition (transactional topics end in a marker)."""
    want = dict.fromkeys(range(len(end_offsets(settings, topic))), 0)
    for m in read_between(settings, topic, {}, end_offsets(settings, topic)):
        want[m.partition() or 0] = (m.offset() or 0) + 1
    return want


def _serving(stack: StackSettings) -> bool:
    """True once every topic this test reads answers for its watermarks (leaders elected)."""
    try:
        for topic in (raw.TOPIC, "market.in.v0", "lattice.v0", "market.snapshot.v0", EVENTS):
            end_offsets(stack, topic)
    except KafkaException:
        return False
    return True


class Supervisor:
    """Restart any process that died (a crash, a kill -9, a broker restart it did not survive)."""

    def __init__(self, procs: dict[str, WorkerProcess]) -> None:
        self.procs = procs

    def tick(self) -> None:
        for proc in self.procs.values():
            if proc.proc.poll() is not None:
                proc.restart()

    def tails(self) -> str:
        return "\n".join(f"--- {n}\n{p.tail(30)}" for n, p in self.procs.items())


def _faults(stack: StackSettings, procs: dict[str, WorkerProcess], sup: Supervisor) -> str:
    """Kill the sink and the detector, restart the broker; return alpha sql's mid-run answer."""
    sql_while_running = ""
    # Faults, spread over the run: each sink kill waits until the sink stored 100 more
    # records than at the last kill (or has caught up with everything there is so far).
    at_kill = 0
    for k in range(SINK_KILLS):

        def progressed(floor: int = at_kill) -> bool:
            sup.tick()
            status = _status(stack)
            if status is None:
                return False
            done = sum(status["positions"].values())
            return done >= floor + 100 or bool(status["ends"] and status["lag"] == 0)

        wait_until(progressed, TIMEOUT_S, f"sink progress before kill {k + 1}", sup.tails)
        status = _status(stack)
        assert status is not None
        at_kill = sum(status["positions"].values())
        if k == 1:
            answer = alpha(
                stack, "sql", "SELECT count() AS stored FROM alpha.features_snapshot", timeout=120
            )
            assert answer.returncode == 0, answer.stderr
            sql_while_running = answer.stdout
        procs["sink"].kill9()
        procs["sink"].restart()
        if k in DETECTOR_KILL_AT:  # once it has published something, kill the detector too

            def published() -> bool:
                sup.tick()
                return sum(end_offsets(stack, EVENTS).values()) > 0

            wait_until(published, TIMEOUT_S, "the first events", sup.tails)
            procs["detector"].kill9()
            procs["detector"].restart()
        if k == 3:  # the broker goes away under everyone's feet and comes back
            kafka = LocalStack(stack).service("kafka")
            assert kafka.process.stop(30)
            LocalStack(stack).up(lambda _line: None)
            # "Ready" is the listener; partition leaders come a moment later.
            wait_until(lambda: _serving(stack), TIMEOUT_S, "partition leaders back", sup.tails)
    return sql_while_running


def _finish(stack: StackSettings, sup: Supervisor) -> None:
    """Wait until every stage is past its input and the sink past every record."""
    for group, topic in (
        ("it-sink-lattice", raw.TOPIC),
        ("it-sink-market", "market.in.v0"),
        ("it-sink-detector", "lattice.v0"),
    ):
        want = _last_records(stack, topic)

        def drained(g: str = group, t: str = topic, w: dict[int, int] = want) -> bool:
            sup.tick()
            return committed(stack, g, t, len(w)) == w

        wait_until(drained, TIMEOUT_S, f"{group} past every {topic} record", sup.tails)
    targets = {
        f"{t}/{p}": o
        for t in ("lattice.v0", "market.snapshot.v0", EVENTS, "universe.v0")
        for p, o in _last_records(stack, t).items()
        if o > 0
    }

    def sunk() -> bool:
        sup.tick()
        status = _status(stack)
        return status is not None and all(
            status["positions"].get(k, 0) >= o for k, o in targets.items()
        )

    wait_until(sunk, TIMEOUT_S, "the sink past every record", sup.tails)


@pytest.fixture(scope="module")
def run(stack: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("sink-run")
    pack = write_pack(tmp_path_factory.mktemp("pack"), MIN_SAMPLES)
    detector_pack = synthetic_detector_pack_file(tmp_path_factory.mktemp("detector-pack"))
    result = alpha(
        stack, "ingest", "synthetic", "--scenario", "catalogue", "--assets", str(ASSETS),
        "--minutes", str(MINUTES), "--seed", "7", "--inject-at", str(INJECT), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    bad = Producer({"bootstrap.servers": stack.bootstrap_servers})
    bad.produce("market.snapshot.v0", b"not avro", partition=0)
    assert bad.flush(30) == 0

    def worker(role: str, *extra: str) -> WorkerProcess:
        n = next(_SEQ)
        return WorkerProcess(
            stack, role, tmp / f"{role}-{n}.log", "--app-id", f"it-sink-{role}", "--data-dir",
            str(tmp / f"{role}-{n}"), "--commit-interval", "0.5", "--session-timeout", "6",
            *extra,
        )  # fmt: skip

    procs = {
        "sink": WorkerProcess(
            stack,
            "sink",
            tmp / "sink.log",
            "--query-port",
            "0",
            "--batch-max",
            "300",
            "--batch-ms",
            "200",
        ),
        "lattice": worker("lattice", "--feature-pack", str(pack)),
        "market": worker("market"),
        "detector": worker(
            "detector", "--feature-pack", str(pack), "--detector-pack", str(detector_pack)
        ),
    }
    sup = Supervisor(procs)
    try:
        sql_while_running = _faults(stack, procs, sup)
        _finish(stack, sup)
    finally:
        codes = {n: p.stop() for n, p in procs.items() if p.proc.poll() is None}
    assert all(c == 0 for c in codes.values()), (codes, sup.tails())
    return {
        "restarts": {n: p.restarts for n, p in procs.items()},
        "sql_while_running": sql_while_running,
        "pack": pack,
    }


@pytest.fixture(scope="module")
def clean(stack: StackSettings, run: dict[str, Any]) -> PipelineDriver:
    """The clean run: the driver over the same md.raw.v0, with the worker's provenance."""
    with SchemaRegistry(stack.registry_url) as registry:
        raw_codec = registry.codec(raw.TOPIC)
        event_codec = registry.codec(EVENTS)
    first = read_between(stack, EVENTS, {}, end_offsets(stack, EVENTS))
    assert first, "no event was published"
    p = event_codec.decode(first[0].value() or b"")["provenance"]
    provenance = Provenance(
        p["producer"], p["detector_pack"], DETECTOR_PACK.hash(), p["git_commit"]
    )
    driver = PipelineDriver(
        load_feature_pack(path=run["pack"]),
        detector_pack=DETECTOR_PACK,
        provenance=provenance,
        flush_every=1000,
    )
    for msg in read_between(stack, raw.TOPIC, {}, end_offsets(stack, raw.TOPIC)):
        try:
            value = raw_codec.decode(msg.value() or b"")
        except WireFormatError:
            continue
        driver.pipe(value, partition=msg.partition())
    driver.flush()
    return driver


def test_faults_happened(run: dict[str, Any]) -> None:
    assert run["restarts"]["sink"] >= SINK_KILLS
    assert run["restarts"]["detector"] >= len(DETECTOR_KILL_AT)


def test_events_topic_equals_the_clean_run(stack: StackSettings, clean: PipelineDriver) -> None:
    want: dict[int, list[bytes]] = {}
    for s in clean.outputs:
        if s.topic == EVENTS:
            want.setdefault(s.partition, []).append(s.data[5:])
    got: dict[int, list[bytes]] = {}
    for m in read_between(stack, EVENTS, {}, end_offsets(stack, EVENTS)):
        got.setdefault(m.partition() or 0, []).append((m.value() or b"")[5:])
    assert sum(map(len, want.values())) > 0
    assert got == want


def test_event_table_holds_each_clean_event_once(
    stack: StackSettings, clean: PipelineDriver
) -> None:
    want = sorted(
        (
            str(e["event_id"]),
            e["revision"],
            json.dumps(to_json(e), ensure_ascii=False, separators=(",", ":")),
        )
        for e in clean.events()
    )
    rows = _sql(
        stack, "SELECT event_id, revision, payload FROM alpha.anomaly_event FINAL"
        " ORDER BY event_id, revision",
    )  # fmt: skip
    assert [(r["event_id"], r["revision"], r["payload"]) for r in rows] == want
    dedup = _sql(stack, "SELECT count() AS n FROM alpha.anomaly_event_dedup")
    assert dedup[0]["n"] == len({w[0] for w in want})


def test_feature_table_holds_each_final_row_once(
    stack: StackSettings, clean: PipelineDriver
) -> None:
    want: dict[tuple[int, str, int], dict[str, Any]] = {}
    for s in clean.read("lattice.v0", rows_only=True):
        row = rows_of("lattice.v0", {"body": s.value})
        assert row is not None
        key = (row["asset_uid"], row["tf"], row["exchange_ts"])
        if key not in want or row["revision"] >= want[key]["revision"]:
            want[key] = row
    cols = ("revision", "close", "rv_m_1", "z_vol_m_1", "cvd_level", "b_mean_vol", "dq_status")
    rows = _sql(
        stack,
        f"SELECT asset_uid, tf, exchange_ts, {', '.join(cols)}"  # noqa: S608 (names above)
        " FROM alpha.features_snapshot FINAL",
    )
    got = {(r["asset_uid"], r["tf"], r["exchange_ts"]): r for r in rows}
    assert len(rows) == len(got)  # FINAL shows no key twice
    assert set(got) == set(want)
    for key, row in want.items():
        assert {c: got[key][c] for c in cols} == {c: row[c] for c in cols}, key
    counts = _sql(
        stack, "SELECT count() AS n, uniqExact(asset_uid, tf, exchange_ts) AS keys"
        " FROM alpha.features_snapshot_dedup",
    )  # fmt: skip
    assert counts[0]["n"] == counts[0]["keys"] == len(want)


def test_market_snapshots_stored_once(stack: StackSettings, clean: PipelineDriver) -> None:
    want = {
        (s.value["tf"], s.value["exchange_ts"]): s.value["leader"]
        for s in clean.outputs
        if s.topic == "market.snapshot.v0"
    }
    rows = _sql(stack, "SELECT tf, exchange_ts, leader FROM alpha.market_snapshot FINAL")
    assert len(rows) == len(want)
    assert {(r["tf"], r["exchange_ts"]): r["leader"] for r in rows} == want


def test_sql_answered_while_running_and_after(stack: StackSettings, run: dict[str, Any]) -> None:
    assert "stored" in run["sql_while_running"]
    after = alpha(stack, "sql", "--example", "dq-ok-rate", timeout=120)
    assert after.returncode == 0, after.stderr
    assert all(f"SYN0{i}" in after.stdout for i in range(ASSETS))
    bad = alpha(stack, "sql", "SELECT nope FROM alpha.features_snapshot", timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.startswith("alpha: error:")
    assert "nope" in bad.stderr
    write = alpha(stack, "sql", "DROP TABLE alpha.features_snapshot", timeout=120)
    assert write.returncode == 1
    assert "readonly" in write.stderr.lower()


def test_undecodable_record_is_dead_lettered(stack: StackSettings, run: dict[str, Any]) -> None:
    dlq = read_between(stack, "alpha.sink.dlq", {}, end_offsets(stack, "alpha.sink.dlq"))
    assert dlq, "the bad market.snapshot.v0 record did not reach alpha.sink.dlq"
    for m in dlq:  # a kill -9 may repeat a dead letter; each names the same source record
        headers: dict[str, str] = {}
        for header in m.headers() or []:
            text = header[1]
            headers[str(header[0])] = text.decode() if isinstance(text, bytes) else str(text)
        assert headers["alpha.source"] == "market.snapshot.v0/0@0"
        assert headers["alpha.reason"]
        assert m.value() == b"not avro"
