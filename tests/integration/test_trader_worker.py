"""The downstream stage on the real broker: the golden path, kill -9 mid-run, byte-for-byte.

The scripted trading day of ``tests/kit/trading.py`` (the spec 000 golden path: L1 crowding ->
HRP scale, loss streak -> halt, gapped stops -> CVaR cap, hard stop -> kill switch) goes into
``trade.in.v0`` in chunks; a real ``alpha worker trader`` processes it and is killed with
SIGKILL twice: once after the first chunk was committed, once right after a slice of the
second was written (so that slice was in flight: processed in an open transaction, or not yet
read). Everything it committed (read_committed) on its eight output topics equals, partition
by partition and byte for byte, what :class:`topology.trader_driver.TraderDriver` computes from
the same input: no decision, order or fill is lost or doubled by the crashes, and a replay
gives the same bytes. A malformed record in between goes to ``trade.in.dlq`` with its reason
and loses nothing.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Message, Producer

from connectors.registry import SchemaRegistry
from tests.conftest import require_stack
from tests.kit.kafka import end_offsets, read_between
from tests.kit.stack import alpha, alpha_executable, free_port, running_stack, stack_env
from tests.kit.trading import PARTITIONS, story, story_policy
from tests.kit.workers import WorkerProcess, committed, wait_until
from topology.settings import StackSettings
from topology.trader_driver import OUTPUT_TOPICS, TraderDriver

pytestmark = pytest.mark.integration
TRADE_IN = "trade.in.v0"
GROUP = "it-trader"
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    require_stack()
    with running_stack(tmp_path_factory.mktemp("trader-stack")) as settings:
        yield settings


def _produce(stack: StackSettings, records: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap_servers, "linger.ms": 5})
    for data in records:
        producer.produce(TRADE_IN, data, key=b"0", partition=0)
    assert producer.flush(30) == 0


def _last_record(stack: StackSettings) -> int:
    """The offset after the last record of trade.in.v0 (the producer is not transactional)."""
    return end_offsets(stack, TRADE_IN)[0]


def _wait_committed(stack: StackSettings, worker: WorkerProcess, offset: int) -> None:
    wait_until(
        lambda: worker.alive() and committed(stack, GROUP, TRADE_IN, 1)[0] >= offset,
        TIMEOUT_S,
        f"{GROUP} to commit {TRADE_IN} up to {offset}",
        worker.tail,
    )


@pytest.fixture(scope="module")
def run(stack: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("trader")
    policy = story_policy()
    policy_file = tmp / "risk-story.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=True))
    with SchemaRegistry(stack.registry_url) as registry:
        codec = registry.codec(TRADE_IN)
    values = list(story())
    encoded = [codec.encode(v) for v in values]
    start = {t: end_offsets(stack, t) for t in (*OUTPUT_TOPICS, "trade.in.dlq")}
    third = len(encoded) // 3
    worker = WorkerProcess(
        stack, "trader", tmp / "trader.log", "--app-id", GROUP, "--data-dir",
        str(tmp / "tables"), "--commit-interval", "0.5", "--session-timeout", "6",
        "--log-level", "info", "--risk-policy", str(policy_file),
    )  # fmt: skip
    try:
        _produce(stack, encoded[:third])
        _produce(stack, [b"not avro"])  # between two minutes: dead-lettered, nothing lost
        _wait_committed(stack, worker, _last_record(stack))
        worker.kill9()  # crash 1: after a commit, state must come back from the changelog
        worker.restart()
        half = (third + 2 * third) // 2
        _produce(stack, encoded[third:half])
        _wait_committed(stack, worker, _last_record(stack))
        _produce(stack, encoded[half : 2 * third])
        worker.kill9()  # crash 2: right after the write, with the slice in flight
        worker.restart()
        _produce(stack, encoded[2 * third :])
        _wait_committed(stack, worker, _last_record(stack))
    finally:
        assert worker.stop() == 0, worker.tail()
    got = {t: read_between(stack, t, start[t], end_offsets(stack, t)) for t in start}
    driver = TraderDriver(policy, PARTITIONS, flush_every=1)
    driver.pipe_all(values)
    in_flight = max(int(v["minute_ms"]) for v in values[half : 2 * third])
    return {
        "policy_file": policy_file,
        "got": got,
        "driver": driver,
        "log": Path(worker.log).read_text(errors="replace"),
        "in_flight_last_minute": in_flight,
    }


def _by_partition(msgs: list[Message]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for m in msgs:
        out.setdefault(m.partition() or 0, []).append((m.value() or b"")[5:])
    return out


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_the_worker_commits_what_the_driver_computes_despite_two_kill9s(run, topic):
    want: dict[int, list[bytes]] = {}
    for s in run["driver"].outputs:
        if s.topic == topic:
            want.setdefault(s.partition, []).append(s.data[5:])
    assert want, f"the story writes {topic}"
    got = _by_partition(run["got"][topic])
    assert sorted(got) == sorted(want)
    for p in want:
        assert got[p] == want[p], f"{topic}[{p}] differs from the driver"


def test_no_duplicate_order_and_no_lost_fill(run):
    driver = run["driver"]
    fills = [m.key() for m in run["got"]["fills.v0"]]
    assert len(fills) == len(driver.values("fills.v0")) > 0
    orders = driver.values("orders.v0")
    assert len({(o["order_id"], o["status"]) for o in orders}) == len(orders)
    assert len(run["got"]["orders.v0"]) == len(orders)
    kills = [v for v in driver.values("control.v0") if v["kind"] == "kill_switch"]
    assert len(kills) == 1
    assert len(run["got"]["control.v0"]) == len(driver.values("control.v0"))


def test_the_malformed_record_is_dead_lettered_with_its_reason(run):
    dlq = run["got"]["trade.in.dlq"]
    assert len(dlq) == 1
    assert dlq[0].value() == b"not avro"
    headers = {k: (v or b"").decode() for k, v in dlq[0].headers() or []}
    assert headers["source"].startswith("trade.in.v0/0@")
    assert "WireFormatError" in headers["error"]


def test_each_restart_restored_the_committed_state(run):
    restored = [
        int(line.split("restored state at minute ")[1].split(",")[0])
        for line in run["log"].splitlines()
        if "trader: restored state at minute" in line
    ]
    assert len(restored) == 3  # the start and two restarts
    assert restored[0] == 0
    assert 0 < restored[1] <= restored[2]
    # the second crash came before the in-flight slice was committed: work was redone
    assert restored[2] < run["in_flight_last_minute"]


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_sizing_api_serves_the_traders_latest_cap(stack, run, tmp_path):
    last = [v for v in run["driver"].values("cvar.caps.v0") if v["symbol"] == "BTC"][-1]
    port = free_port()
    log = (tmp_path / "sizing-api.log").open("wb")
    proc = subprocess.Popen(
        [*alpha_executable(), "trader", "sizing-api", "--port", str(port),
         "--risk-policy", str(run["policy_file"])],
        env=stack_env(stack), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def has_btc_cap() -> bool:
        assert proc.poll() is None, (tmp_path / "sizing-api.log").read_text()
        try:
            caps = _http(f"{base}/caps")[1]
            return bool(caps.get("BTC|1m", {}).get("n_samples") == last["n_samples"])
        except OSError:
            return False

    try:
        wait_until(has_btc_cap, 60, "the sizing api to read BTC's last cap")
        body = {"equity": 10_000, "price": 60_000, "sl_kATR": 1.5, "atr": 600, "alpha": 0.95}
        status, got = _http(f"{base}/sizing", {**body, "symbol": "BTC", "tf": "1m"})
        assert status == 200
        assert got["source"] == "cvar.caps.v0"
        assert got["cvar_r"] == last["cvar_r"]
        status, error = _http(f"{base}/sizing", {"equity": 1})
        assert status == 400
        assert "price" in error["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_alpha_trader_tail_prints_the_committed_records(stack, run):
    result = alpha(
        stack, "trader", "tail", "--topic", "control.v0", "--from-beginning", "--max", "1",
        "--idle-timeout", "30", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    want = run["driver"].values("control.v0")[0]
    assert lines == [{"topic": "control.v0", "value": want}]
