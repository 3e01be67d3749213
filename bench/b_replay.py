"""Replay speed of a synthetic day through the whole topology, and a worker's restore time.

Issue 7 item 4: "a full synthetic day of 35 assets through the whole topology; target >= 500x
real time. And restore time of a worker's state after a crash."

1. **Fill.** ``md.raw.v0`` of a private stack gets 1440 minutes x 35 assets of the synthetic
   ``catalogue`` scenario (injected at minute 300, after the shipped pack's 200-sample warm-up),
   with heartbeats, exactly as ``alpha ingest synthetic`` writes it
   (:func:`topology.ingest.run_synthetic`, in process). Timed on its own.
2. **Replay.** Then the lattice, market and detector workers and ``alpha sink`` start (shipped
   feature pack v1.0, commit interval 1 s) and the clock runs from their start until each
   stage's consumer group has committed past the last record of its input, stage by stage
   (:func:`bench.pipeline.wait_drained`, polled every 0.2 s), then the sink past every record.
   Speed = stream time replayed / elapsed: ``86,400 s / elapsed`` for the day. Per stage too.
3. **Restore.** With everything drained, the lattice worker is killed with SIGKILL, one round of
   heartbeats 61.5 s of stream time past the end is appended to ``md.raw.v0`` (it seals a
   minute: new work), and the worker is restarted at once. **Restore time** = from the restart
   (``Popen``) until its consumer group has committed that new record: process start, group
   join (the dead member's session timeout, 10 s, may still hold its partitions), changelog
   restore into RocksDB, the record's processing and one transaction commit. Then the same for
   the detector: killed, the new minute's frame made to reach ``lattice.v0`` while it is down,
   restarted, timed until it committed that frame. State size = records and bytes (key + value)
   of the stage's changelog topics, which a restart reads in full (the worker wipes its local
   tables at every start), and the live keys they come down to. The start-up phases (process
   up, group joined, restore started, recovery complete, ready) are read off the worker's log
   (``--log-level info``). Before each kill the stage's backlog is checked to be 0.

What bounds it (2026-11-24, 2-core machine shared with other jobs): the lattice worker, one
Python process at ~1.9k records/s (py-spy: Faust's per-record path -- fetcher, conductor,
stream iterator, the stage lock -- takes more of its time than decoding and the processor's
``step``); the market and detector finish seconds after it. A quarter of the records are
heartbeats (one per partition per second of stream time). Restore: ~3-6 s process start,
a few seconds of group join (the dead member's session), ~2 s of producer start-up, then
Faust's recovery, which reads the whole changelog (compacted topics, but the broker compacts
only closed segments: 256 MiB or 7 days) and always waits 2 x 5 s of silence before it calls a
transactional changelog done (``faust/tables/recovery.py``), then one commit interval.

Quick mode: 120 minutes x 8 assets, the 30-sample pack, injected at minute 45.

Run alone: ``PYTHONPATH=. .venv/bin/python bench/b_replay.py [--quick] [--keep]``.
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.common import Context, private_stack, rss_mib, workdir
from bench.pipeline import (
    MIN_SAMPLES,
    SCENARIO,
    SEED,
    Topology,
    committed_offsets,
    last_records,
    wait_drained,
)
from schemas import raw
from tests.kit.kafka import end_offsets
from topology.admin import admin_client
from topology.ingest import ingest_context, run_synthetic
from topology.settings import StackSettings

TARGET_X = 500.0
DAY_S = 86_400
MINUTE_MS = 60_000
START_TS = 1_756_900_800_000  # connectors.synthetic.generator.DEFAULT_START_TS
DRAIN_TIMEOUT_S = 3600.0
READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Size:
    """A scenario size."""

    assets: int
    minutes: int
    inject: int
    min_samples: int | None  # None: the shipped pack


FULL = Size(35, 1440, 300, None)
QUICK = Size(8, 120, 45, MIN_SAMPLES)


def run(ctx: Context) -> None:
    """Fill, replay, restore (module docstring); record the figures."""
    size = QUICK if ctx.quick else FULL
    tag = f"{size.assets}x{size.minutes}"
    stream_s = size.minutes * 60
    with private_stack(ctx.work / "replay-stack") as settings:
        print(
            f"  replay: filling md.raw.v0 with {size.minutes} min x {size.assets} assets",
            flush=True,
        )
        t0 = time.monotonic()
        with ingest_context(settings) as ingest:
            counts = run_synthetic(
                ingest, scenario=SCENARIO, assets=size.assets, minutes=size.minutes, seed=SEED,
                inject_at_minute=size.inject,
            )  # fmt: skip
        del ingest  # its producer would outlive the stack and log connection errors
        fill_s = time.monotonic() - t0
        produced = sum(counts.values()) + counts.get("heartbeat", 0) * 7  # 8 records per round
        ctx.extra[f"replay.records.{tag}"] = counts
        ctx.figure(
            f"replay.fill.records_per_s.{tag}", produced / fill_s, "rec/s",
            note=f"{produced:,} records (heartbeats x8) in {fill_s:.1f} s: generator+Avro+producer",
        )  # fmt: skip
        ctx.figure(
            f"replay.fill.speed.{tag}", stream_s / fill_s, "x", note="stream time / fill time"
        )

        topo = Topology(
            settings, ctx.work / "replay", min_samples=size.min_samples,
            worker_args=("--log-level", "info"),
        )  # fmt: skip
        started = time.monotonic()
        topo.start()
        peak: dict[str, float] = {}
        try:
            done = wait_drained(settings, topo, started, timeout_s=DRAIN_TIMEOUT_S)
            for role, proc in topo.procs.items():
                peak[role] = rss_mib(proc.proc.pid)[1]
            for role in ("lattice", "market", "detector"):
                ctx.figure(
                    f"replay.stage.{role}.speed.{tag}", stream_s / done[role], "x",
                    note=f"drained {done[role]:.1f} s after the workers started",
                )  # fmt: skip
            ctx.figure(
                f"replay.speed.{tag}", stream_s / done["detector"], "x", target=TARGET_X,
                note=f"every stage drained in {done['detector']:.1f} s (3 workers + sink, 2 cores);"
                f" records/s through the lattice {produced / done['lattice']:,.0f}",
            )  # fmt: skip
            ctx.figure(
                f"replay.speed_with_sink.{tag}", stream_s / done["sink"], "x",
                note=f"the sink past every record {done['sink']:.1f} s after the start",
            )  # fmt: skip
            ctx.extra[f"replay.peak_rss_mib.{tag}"] = peak
            print("  replay: peak RSS MiB " + ", ".join(f"{r} {v:.0f}" for r, v in peak.items()))
            end_ts = START_TS + size.minutes * MINUTE_MS
            _restore_lattice(ctx, settings, topo, tag, end_ts + MINUTE_MS + 1_500)
            _restore_detector(ctx, settings, topo, tag, end_ts + 2 * MINUTE_MS + 1_500)
        finally:
            codes = topo.stop()
        print(f"  replay: exit codes {codes}", flush=True)


def _probe(settings: StackSettings, stream_ts: int) -> None:
    """Append a heartbeat round at ``stream_ts``: seals the minutes before it on every partition."""
    with ingest_context(settings) as ingest:
        ingest.sink.heartbeat(stream_ts, stream_ts + 200, "synthetic")
    del ingest


def _wait_committed(
    settings: StackSettings, topo: Topology, group: str, topic: str, want: dict[int, int]
) -> float:
    """Poll (0.1 s) until ``group`` committed ``want``; return ``time.monotonic()`` then."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        topo.check()
        have = committed_offsets(settings, group, topic)
        if all(have.get(p, 0) >= o for p, o in want.items()):
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} did not commit {want} on {topic}")
        time.sleep(0.1)


def _restore_lattice(
    ctx: Context, settings: StackSettings, topo: Topology, tag: str, probe_ts: int
) -> None:
    state = _state_size(settings, "alpha-lattice")
    backlog = _backlog(settings, "alpha-lattice", raw.TOPIC)
    topo.kill9("lattice")
    killed = time.monotonic()
    _probe(settings, probe_ts)
    want = end_offsets(settings, raw.TOPIC)  # md.raw.v0 has no transactions: contiguous
    restarted, wall = time.monotonic(), time.time()
    topo.restart("lattice")
    ready = _wait_committed(settings, topo, "alpha-lattice", raw.TOPIC, want) - restarted
    _restore_figure(ctx, topo, "lattice", tag, ready, state, restarted - killed, wall, backlog)
    wait_drained(settings, topo, time.monotonic(), timeout_s=READY_TIMEOUT_S, sink=False)


def _restore_detector(
    ctx: Context, settings: StackSettings, topo: Topology, tag: str, probe_ts: int
) -> None:
    state = _state_size(settings, "alpha-detector")
    backlog = _backlog(settings, "alpha-detector", "lattice.v0")
    topo.kill9("detector")
    killed = time.monotonic()
    _probe(settings, probe_ts)
    # The new minute's rows and frame reach lattice.v0 while the detector is down.
    for group, topic in (("alpha-lattice", raw.TOPIC), ("alpha-market", "market.in.v0")):
        _wait_committed(settings, topo, group, topic, last_records(settings, topic))
    want = last_records(settings, "lattice.v0")
    restarted, wall = time.monotonic(), time.time()
    topo.restart("detector")
    ready = _wait_committed(settings, topo, "alpha-detector", "lattice.v0", want) - restarted
    _restore_figure(ctx, topo, "detector", tag, ready, state, restarted - killed, wall, backlog)


def _backlog(settings: StackSettings, group: str, topic: str) -> int:
    """Records of ``topic`` the group has not committed yet (0 when the stage is drained)."""
    last = last_records(settings, topic)
    done = committed_offsets(settings, group, topic)
    return sum(max(0, o - done.get(p, 0)) for p, o in last.items())


def _restore_figure(
    ctx: Context,
    topo: Topology,
    role: str,
    tag: str,
    ready: float,
    state: tuple[int, int, int],
    down: float,
    wall: float,
    backlog: int,
) -> None:
    phases = _phases(topo.procs[role].log, wall)
    ctx.figure(
        f"replay.restore.{role}.{tag}", ready, "s", better="lower",
        note=f"restart -> a record appended after the crash committed; changelogs"
        f" {state[0]:,} records, {state[1] / 2**20:.2f} MiB, {state[2]:,} live keys; down"
        f" {down:.1f} s before the restart; backlog at the kill {backlog} records",
    )  # fmt: skip
    print(
        f"  replay: {role} restart phases (s after the restart, from its log): "
        + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
        + f", committed {ready:.1f}",
        flush=True,
    )
    ctx.extra[f"replay.restore.{role}.{tag}"] = {
        "seconds": ready, "records": state[0], "bytes": state[1], "live_keys": state[2],
        "down_s": down,
        "phases": phases, "backlog": backlog,
    }  # fmt: skip


#: Faust's log lines that mark a worker's start-up phases (``--log-level info``).
PHASES = (
    ("started", "[^Worker]: Starting..."),
    ("joined", "Joined group"),
    ("restoring", "Restoring state from changelog topics"),
    ("recovered", "[^---Recovery]: Recovery complete"),
    ("ready", "[^Worker]: Ready"),
)
_STAMP = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")


def _phases(log: Path, since: float) -> dict[str, float]:
    """Seconds from ``since`` (wall clock) to the first log line of each phase after it."""
    out: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        stamp = _STAMP.search(line)
        if stamp is None:
            continue
        local = datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S").astimezone()  # the log is local
        at = local.timestamp() + int(stamp[2]) / 1e3
        if at < since - 1:
            continue
        for name, marker in PHASES:
            if name not in out and marker in line:
                out[name] = round(at - since, 2)
    return out


def _state_size(settings: StackSettings, app_id: str) -> tuple[int, int, int]:
    """Records, key + value bytes and live keys of the app's changelog topics (read_committed).

    A worker restores by reading every record (it wipes its local tables at every start), so
    records and bytes are what a restart reads; live keys is the state that remains of them.
    """
    admin = admin_client(settings.bootstrap_servers)
    topics = sorted(
        t
        for t in admin.list_topics(timeout=10).topics
        if t.startswith(app_id + "-") and t.endswith("-changelog")
    )
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"bench-state-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    records = size = 0
    live: dict[tuple[str, int, bytes], bool] = {}
    try:
        for topic in topics:
            ends = {p: e for p, e in end_offsets(settings, topic).items() if e > 0}
            tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends]
            consumer.assign(tps)
            deadline = time.monotonic() + READY_TIMEOUT_S
            # Transaction markers are never delivered: done when every position reached its end.
            while any(tp.offset < ends[tp.partition] for tp in consumer.position(tps)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {topic} took over {READY_TIMEOUT_S:.0f} s")
                for msg in consumer.consume(5000, 0.5):
                    if msg.error() is None:
                        records += 1
                        size += len(msg.key() or b"") + len(msg.value() or b"")
                        live[(topic, msg.partition() or 0, msg.key() or b"")] = bool(msg.value())
            consumer.unassign()
    finally:
        consumer.close()
    return records, size, sum(live.values())


def main() -> None:
    """Run this benchmark alone and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="120 minutes x 8 assets")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    with workdir(keep=args.keep) as work:
        ctx = Context(work, quick=args.quick)
        run(ctx)
        if args.keep:
            print(f"scratch kept in {work}")


if __name__ == "__main__":
    main()
