"""``alpha demo``: the main job -- the whole topology on the bundled real data, then a summary.

Steps: start the local stack; start from empty topics, tables and state (the demo wipes the local
stack's data first unless ``--no-reset``); create the topics; run the lattice, market and
detector workers and the ClickHouse sink as child processes; replay the bundled real recordings
into ``md.raw.v0`` -- 4.7 days of Hyperliquid 1-minute candles with hourly funding for 12 perps
(the candle bootstrap of spec 002 §16.1, rows marked ``source = candle_snapshot``), then the
real trade/BBO/book captures of BTC, ETH and SOL; wait until every stage and the sink are past
every record; print the summary from ClickHouse (rows per tf, DQ split, events
by class with the strongest, latency percentiles); draw the picture (PNG + self-contained
HTML); stop the workers and the sink cleanly. The stack keeps running so that ``alpha explain``
can read the topics; ``alpha sql`` opens the store directly once the sink has stopped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.errors import AlphaError
from topology import spec
from topology.settings import REPO_ROOT, StackSettings

SAMPLES = REPO_ROOT / "data" / "samples"
CANDLES = SAMPLES / "hyperliquid-perps-candles-funding-freqtrade-2025-07"
#: Real trade/BBO/book captures, 39 days after the candles (the lattice fills the first hour of
#: a jump with stale minutes and skips the rest: processors/lattice/clock.py).
CAPTURES = (
    SAMPLES / "hyperliquid-ws-collector-2025-09-03",
    SAMPLES / "hyperliquid-ws-calibration-2025-09-04",
)
ROLES = ("lattice", "market", "detector", "trader", "sink")
#: Spec 002 §16.1: a candle bootstrap normalises only what candles carry (volume, |return|);
#: with v1.0 (spread, OI and basis baselines too) the candle minutes would never leave warm-up.
FEATURE_PACK = REPO_ROOT / "packs" / "feature" / "v1.0-bootstrap.yaml"
#: (consumer group, input topic) of each stage, in pipeline order.
STAGES = (
    ("alpha-lattice", "md.raw.v0"),
    ("alpha-market", "market.in.v0"),
    ("alpha-detector", "lattice.v0"),
    ("alpha-trader", "trade.in.v0"),
)
SUNK = (
    "lattice.v0",
    "market.snapshot.v0",
    "alpha.events.v0",
    "universe.v0",
    "sizing.decisions.v0",
    "orders.v0",
    "fills.v0",
)
WAIT_TIMEOUT_S = 3600.0


class DemoError(AlphaError):
    """The demo could not finish (a worker died, a stage stalled)."""


@dataclass
class Children:
    """The worker and sink processes of the demo, with their logs."""

    settings: StackSettings
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        """Start every role as ``alpha worker <role>`` / ``alpha sink``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        alpha = Path(sys.executable).with_name("alpha")
        exe = [str(alpha)] if alpha.exists() else [sys.executable, "-m", "topology.cli"]
        for role in ROLES:
            command = ["sink", "--query-port", "0"] if role == "sink" else ["worker", role]
            if role in ("lattice", "detector"):
                command += ["--feature-pack", str(FEATURE_PACK)]
            with (self.logs / f"{role}.log").open("ab") as out:
                self.procs[role] = subprocess.Popen(
                    [*exe, *command], stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT
                )

    def check(self) -> None:
        """Raise if a child exited."""
        for role, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                tail = (self.logs / f"{role}.log").read_text(errors="replace").splitlines()[-15:]
                raise DemoError(f"the {role} exited with code {code}:\n" + "\n".join(tail))

    def stop(self, timeout_s: float = 60) -> dict[str, int]:
        """SIGTERM every child (the sink last, after the detector's final commit); wait."""
        codes: dict[str, int] = {}
        for role in ROLES:
            proc = self.procs.get(role)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
            try:
                codes[role] = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[role] = proc.wait(timeout=30)
        return codes


def _consumer(settings: StackSettings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "alpha-demo-watch",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )


TAIL = 500  # offsets read back from a partition's end to find its last record


def last_records(consumer: Consumer, topic: str, *, timeout_s: float = 60) -> dict[int, int]:
    """The offset after the last record of each partition of ``topic`` (markers excluded).

    Reads each partition's tail with ``consumer`` (read_committed) until its position reaches
    the high watermark: a transactional topic ends in commit markers, which are never delivered,
    and an empty poll only means the fetch has not answered yet (stopping there once made a
    stage look drained long before it was). Raises :class:`TimeoutError` when a tail cannot be
    read in ``timeout_s``, :class:`RuntimeError` when the last ``TAIL`` offsets hold no record.
    """
    out: dict[int, int] = {}
    try:
        for p in range(spec.topic(topic).partitions):
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = 0
            if hi <= lo:
                continue
            tp = TopicPartition(topic, p, max(lo, hi - TAIL))
            consumer.assign([tp])
            deadline = time.monotonic() + timeout_s
            while consumer.position([tp])[0].offset < hi:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}/{p}: the tail was not read in {timeout_s:.0f} s")
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    out[p] = (msg.offset() or 0) + 1
            if out[p] == 0 and hi - TAIL > lo:
                raise RuntimeError(f"{topic}/{p}: no record in the last {TAIL} offsets")
    finally:
        consumer.unassign()
    return out


def _committed(settings: StackSettings, group: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(spec.topic(topic).partitions)]
        return {tp.partition: max(0, tp.offset) for tp in c.committed(tps, timeout=10)}
    finally:
        c.close()


def sink_status(settings: StackSettings) -> dict[str, Any] | None:
    """The running sink's status, or None while it starts."""
    try:
        info = json.loads((settings.runtime / "sink.json").read_text(encoding="utf-8"))
        url = str(info["url"])
        if not url.startswith("http://"):
            return None
        with urllib.request.urlopen(url + "/status", timeout=5) as reply:  # noqa: S310
            status: dict[str, Any] = json.loads(reply.read())
    except (OSError, ValueError, KeyError):
        return None
    return status


def wait_drained(
    settings: StackSettings, children: Children, console: Console, timeout_s: float
) -> float:
    """Show each stage's progress until every stage and the sink are past every record.

    Returns:
        Seconds waited.
    """
    started = time.monotonic()
    consumer = _consumer(settings)
    try:
        with Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.completed:>9,.0f} / {task.total:,.0f}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            tasks = {
                topic: progress.add_task(f"{group.removeprefix('alpha-')} <- {topic}", total=1)
                for group, topic in STAGES
            }
            tasks["sink"] = progress.add_task("sink -> ClickHouse", total=1)
            for group, topic in STAGES:
                want = last_records(consumer, topic)  # upstream stages are done by now
                total = sum(want.values())
                while True:
                    children.check()
                    done = _committed(settings, group, topic)
                    progress.update(
                        tasks[topic],
                        total=max(total, 1),
                        completed=sum(min(done.get(p, 0), w) for p, w in want.items()),
                    )
                    if all(done.get(p, 0) >= w for p, w in want.items()):
                        break
                    if time.monotonic() - started > timeout_s:
                        raise DemoError(f"{group} did not finish {topic} in {timeout_s:.0f} s")
                    time.sleep(0.5)
            targets = {
                f"{t}/{p}": o for t in SUNK for p, o in last_records(consumer, t).items() if o > 0
            }
            total = sum(targets.values())
            while True:
                children.check()
                status = sink_status(settings) or {"positions": {}}
                pos = status["positions"]
                done_n = sum(min(pos.get(k, 0), o) for k, o in targets.items())
                progress.update(tasks["sink"], total=max(total, 1), completed=done_n)
                if done_n >= total:
                    break
                if time.monotonic() - started > timeout_s:
                    raise DemoError(f"the sink did not catch up in {timeout_s:.0f} s")
                time.sleep(0.5)
    finally:
        consumer.close()
    return time.monotonic() - started


# ----------------------------------------------------------------------------- summary


def _query(settings: StackSettings, sql: str, fmt: str = "PrettyCompactMonoBlock") -> str:
    from topology.sql_cli import run_query

    return run_query(settings, sql, fmt)


def _rows(settings: StackSettings, sql: str) -> list[dict[str, Any]]:
    text = _query(
        settings, sql + " SETTINGS output_format_json_quote_64bit_integers = 0", "JSONEachRow"
    )
    return [json.loads(line) for line in text.splitlines() if line.strip()]


SUMMARY_QUERIES: tuple[tuple[str, str], ...] = (
    (
        "feature rows per timeframe and source",
        "SELECT tf, source, count() AS rows, uniqExact(symbol) AS assets, min(time) AS first,"
        " max(time) AS last FROM alpha.features_snapshot FINAL GROUP BY tf, source"
        " ORDER BY tf, source",
    ),
    (
        "data quality of the 1m rows",
        "SELECT source, dq_status, count() AS rows, round(count() / sum(count()) OVER"
        " (PARTITION BY source), 3) AS share FROM alpha.features_snapshot FINAL WHERE tf = 'm1'"
        " GROUP BY source, dq_status ORDER BY source, dq_status",
    ),
    (
        "events by class",
        "SELECT class, count() AS events, uniqExact(symbol) AS assets, round(avg(severity), 1)"
        " AS mean_severity, max(severity) AS max_severity FROM alpha.anomaly_event_dedup"
        " GROUP BY class ORDER BY events DESC, class",
    ),
    (
        "the strongest events",
        "SELECT time, symbol, class, subtype, severity, event_id FROM alpha.anomaly_event_dedup"
        " ORDER BY severity DESC, time, event_id LIMIT 8",
    ),
    (
        "paper trading: sizing decisions (the shipped risk pack, packs/risk/v1.yaml)",
        "SELECT action, ifNull(drop_reason, '') AS reason, count() AS decisions,"
        " uniqExact(symbol) AS assets, round(avg(hrp_scale), 3) AS mean_hrp_scale,"
        " countIf(has(pills, 'Tail-risk cap applied')) AS cvar_capped FROM alpha.decisions FINAL"
        " GROUP BY action, reason ORDER BY decisions DESC, reason",
    ),
    (
        "paper trading: orders and fills",
        "SELECT kind, status, ifNull(reason, '') AS reason, count() AS orders,"
        " round(sum(qty * ifNull(price, 0)), 2) AS notional_usd FROM alpha.orders FINAL"
        " GROUP BY kind, status, reason ORDER BY kind, status, reason",
    ),
    (
        "latency, ms (full-speed replay: includes queueing behind the backlog)",
        "SELECT 'row -> event (detector)' AS hop,"
        " arrayMap(x -> round(x), quantiles(0.5, 0.95, 0.99)(dateDiff('millisecond',"
        " f._kafka_ts, e._kafka_ts))) AS p50_p95_p99, count() AS n"
        " FROM alpha.anomaly_event_dedup AS e"
        " INNER JOIN alpha.features_snapshot_dedup AS f USING (asset_uid, tf, exchange_ts)"
        " UNION ALL SELECT 'event -> ClickHouse (sink)', arrayMap(x -> round(x),"
        " quantiles(0.5, 0.95, 0.99)(dateDiff('millisecond', _kafka_ts, _inserted_at))), count()"
        " FROM alpha.anomaly_event_dedup",
    ),
)


def print_summary(settings: StackSettings, console: Console) -> None:
    """Print the summary tables from ClickHouse."""
    for title, sql in SUMMARY_QUERIES:
        console.print(f"[bold]{title}[/bold]")
        console.print(_query(settings, sql), markup=False, highlight=False, end="")


def draw(settings: StackSettings, out_dir: Path) -> tuple[Path, Path, int, int]:
    """Render the picture from ClickHouse; return (png, html, points, events)."""
    from topology.picture import EventMark, PricePoint, render

    series: dict[str, list[PricePoint]] = {}
    for r in _rows(
        settings,
        "SELECT symbol, exchange_ts, close FROM alpha.features_snapshot FINAL"
        " WHERE tf = 'm1' AND close IS NOT NULL ORDER BY symbol, exchange_ts",
    ):
        series.setdefault(r["symbol"], []).append(PricePoint(r["exchange_ts"], float(r["close"])))
    events = [
        EventMark(
            r["exchange_ts"], r["symbol"], r["class"], r["subtype"], r["severity"], r["event_id"]
        )
        for r in _rows(
            settings,
            "SELECT exchange_ts, symbol, class, subtype, severity, event_id"
            " FROM alpha.anomaly_event_dedup ORDER BY exchange_ts, event_id",
        )
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    png, html = out_dir / "alpha-demo.png", out_dir / "alpha-demo.html"
    render(
        series,
        events,
        png,
        html,
        title="Alpha Data Detector on bundled real Hyperliquid data"
        " (1m candles Jul 2025, ticks Sep 2025)",
    )
    return png, html, sum(map(len, series.values())), len(events)


# ----------------------------------------------------------------------------- the job


def reset(settings: StackSettings, say: Callable[[str], None]) -> None:
    """Stop the stack and delete its data, the ClickHouse store and the worker tables."""
    from topology.localstack.stack import LocalStack
    from topology.warehouse import chdb_path

    LocalStack(settings).down(say)
    shutil.rmtree(settings.runtime, ignore_errors=True)
    shutil.rmtree(settings.home / "workers", ignore_errors=True)
    path = chdb_path(settings.clickhouse_dsn)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
    say("reset: topics, offsets, schemas, worker tables and the ClickHouse store are empty")


def run_demo(settings: StackSettings, console: Console, *, fresh: bool = True) -> int:
    """Run the demo (module docstring); return the exit code."""
    from topology.admin import admin_client, create_topics
    from topology.ingest import ingest_context, run_replay
    from topology.localstack.stack import LocalStack

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    started = time.monotonic()
    console.rule("1/6  local stack (Kafka + schema registry on 127.0.0.1)")
    if fresh:
        reset(settings, say)
    LocalStack(settings).up(say)
    states = create_topics(
        admin_client(settings.bootstrap_servers), replication=settings.topic_replication
    )
    say(f"{len(states)} declared topics ready")
    console.rule("2/6  workers: lattice, market, detector, trader (exactly-once), sink")
    children = Children(settings, settings.runtime / "demo")
    children.start()
    say(f"logs in {children.logs}")
    try:
        console.rule("3/6  replay the bundled real recordings into md.raw.v0")
        t0 = time.monotonic()
        with ingest_context(settings) as ctx:
            stats = run_replay(ctx, [CANDLES], auto_window=True)
            say(
                f"{CANDLES.name}: {stats.inputs} inputs (12 perps, 1m candles + funding,"
                f" auto window) -> {sum(stats.records.values())} records"
            )
            for folder in CAPTURES:
                stats = run_replay(ctx, [folder])
                say(
                    f"{folder.name}: {stats.inputs} inputs -> {sum(stats.records.values())}"
                    f" records, {stats.gaps} outage gap markers, {stats.dead_letters} dead letters"
                )
        say(f"replayed in {time.monotonic() - t0:.0f} s")
        console.rule("4/6  processing (every stage past every record, the sink too)")
        waited = wait_drained(settings, children, console, WAIT_TIMEOUT_S)
        say(f"caught up {waited:.0f} s after the replay ended")
        console.rule("5/6  summary (from ClickHouse)")
        print_summary(settings, console)
        png, html, points, n_events = draw(settings, REPO_ROOT / "demo-output")
        say(f"picture: {png} and {html} ({points} price points, {n_events} events)")
        top = _rows(
            settings,
            "SELECT event_id FROM alpha.anomaly_event_dedup ORDER BY severity DESC, time,"
            " event_id LIMIT 1",
        )
    finally:
        console.rule("6/6  clean shutdown of the workers and the sink")
        codes = children.stop()
        say("exit codes: " + ", ".join(f"{r} {c}" for r, c in codes.items()))
    event_id = top[0]["event_id"] if top else "<event_id>"
    console.rule()
    say(f"done in {time.monotonic() - started:.0f} s. Try next:")
    say("  .venv/bin/alpha sql --example event-rates        # events by class per hour")
    say("  .venv/bin/alpha sql --list                       # more example queries")
    say(
        '  .venv/bin/alpha sql "SELECT symbol, count() AS events'
        ' FROM alpha.anomaly_event_dedup GROUP BY symbol ORDER BY events DESC"'
    )
    say(
        f"  .venv/bin/alpha explain {event_id} --feature-pack {FEATURE_PACK.relative_to(REPO_ROOT)}"
    )
    say("  .venv/bin/alpha stack down                       # stop Kafka and the registry")
    return 0 if all(c == 0 for c in codes.values()) else 1
