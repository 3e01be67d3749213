"""Ingest -> lattice throughput and lattice worker memory (issue 7, items 1 and 6).

Per universe size (35 and 200 assets; ``--quick``: 35 only, a smaller stream), in one private
stack (``bench.common.private_stack``):

1. **Input.** A dense synthetic stream, ``connectors.synthetic.generate("calm", ...,
   density=40)``: trade batches of ``1 + Poisson(100)`` prints (an exchange message of a busy
   asset, or a 250 ms replay batch), BBO updates every 2-2.9 s, books and asset contexts every
   10 s, per asset. It is written to ``md.raw.v0`` as ``alpha ingest synthetic`` writes it (the
   same sink and a heartbeat per partition every second of stream time) *before* anything reads
   it. A second size appends to the topic; its worker's group starts at that size's offsets.
2. **Ticks.** One tick = one trade print, one BBO update, one book snapshot (its levels are not
   counted) or one asset context; heartbeats carry none. ``ticks/record`` is printed: every
   figure here depends on it (Faust pays per record, the Avro decode and the minute work per
   tick), so it is part of the figure's name in the notes.
3. **Worker.** The real ``alpha worker lattice`` (exactly-once, default options: commit every
   1 s) runs as a subprocess (``tests.kit.workers.WorkerProcess``). Its group's committed offsets
   are polled every ``POLL_S``: the clock starts at the **first commit** (start-up, assignment,
   table restore and the first second of work are left out, and so are the ticks of the records
   before those offsets) and stops when the committed offsets reach the end of the size's
   records. ``ticks/s = ticks in between / time in between``. RSS (median while consuming, and
   VmHWM) is sampled at the same polls.
4. **Raw limit.** Then, on the same records, a plain confluent-kafka loop (``consume(1000)``,
   manual assignment, no commits; ``md.raw.v0`` is not transactional) decodes every value with
   the worker's Avro codec (``schemas.wire.AvroCodec``, registered schema id) and folds every
   asset-minute with numpy: trade OHLC, base / quote / buy volume, trade count, quote count and
   last mid. Its clock starts at its first message.

Figures: worker ticks/s (target 250,000 per worker process) with the raw loop as peer, the
raw loop's ticks/s, the share worker / raw (target >= 50 %), both per CPU second of their
process (every thread; ``/proc/<pid>/task/*/schedstat``) - less sensitive to whatever else the
machine runs, whose pressure the notes show as ``starved`` (time runnable but waiting for a
CPU, per wall second) -, records/s, and worker RSS. Benchmarks measure and print; they never
assert.

Standalone: ``PYTHONPATH=. .venv/bin/python bench/b_throughput.py [--quick] [--assets 35,200]
[--density 40] [--ticks N] [--keep] [--save]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, TopicPartition

from bench.common import Context, private_stack, rss_mib, workdir
from schemas import raw
from schemas.wire import AvroCodec
from topology.settings import StackSettings

SCENARIO, SEED = "calm", 7
DENSITY = 40.0  # trade batches of 1 + Poisson(2.5 x DENSITY) prints: about 100
TICKS_FULL, TICKS_QUICK = 5_000_000, 600_000
MIN_MINUTES = 15
POLL_S = 0.2
TIMEOUT_S = 1800.0
TARGET_TICKS_PER_S = 250_000.0
TARGET_SHARE = 50.0  # % of the raw limit
PEER = "plain confluent-kafka loop"
MINUTE_MS = 60_000


@dataclass
class Stream:
    """One size's records on ``md.raw.v0``: where they start and end, and what they carry."""

    assets: int
    minutes: int
    start: dict[int, int]
    end: dict[int, int]
    ticks: int = 0
    records: int = 0
    heartbeats: int = 0
    write_s: float = 0.0
    #: per partition: cumulative ticks before each offset (index = offset - start)
    cum: dict[int, npt.NDArray[np.int64]] = field(default_factory=dict)

    def ticks_between(self, frm: dict[int, int], to: dict[int, int]) -> int:
        """Ticks of the records in ``[frm, to)`` per partition (offsets clamped to the stream)."""
        total = 0
        for p, cum in self.cum.items():
            lo = min(max(frm.get(p, 0), self.start[p]), self.end[p]) - self.start[p]
            hi = min(max(to.get(p, 0), self.start[p]), self.end[p]) - self.start[p]
            total += int(cum[hi] - cum[lo])
        return total

    def records_between(self, frm: dict[int, int], to: dict[int, int]) -> int:
        """Records in ``[frm, to)`` per partition (offsets clamped to the stream)."""
        return sum(
            min(max(to.get(p, 0), s), self.end[p]) - min(max(frm.get(p, 0), s), self.end[p])
            for p, s in self.start.items()
        )


def ticks_of(value: dict[str, Any]) -> int:
    """Ticks in one decoded ``md.raw.v0`` value (see the module docstring)."""
    body = value["body"]
    if "trades" in body:
        return len(body["trades"])
    if "partition" in body or "since_ts" in body:  # heartbeat, gap marker
        return 0
    return 1


# ----------------------------------------------------------------------------- input


def ticks_per_asset_minute(density: float) -> float:
    """About how many ticks one synthetic asset-minute holds at ``density``.

    ~9.2 trade batches of ``1 + 2.5 x density`` prints, ~24 BBO updates, 6 books, 6 contexts
    (measured: 966 at density 40, 67 at density 1).
    """
    return 9.2 * (1 + 2.5 * density) + 36


def minutes_for(assets: int, ticks: int, density: float) -> int:
    """Stream minutes that give about ``ticks`` ticks for ``assets`` assets at ``density``."""
    return max(MIN_MINUTES, math.ceil(ticks / (assets * ticks_per_asset_minute(density))))


def write_stream(settings: StackSettings, assets: int, minutes: int, density: float) -> Stream:
    """Write one synthetic run to ``md.raw.v0`` as ``alpha ingest synthetic`` does."""
    from connectors.heartbeats import HeartbeatClock
    from connectors.synthetic.generator import VENUE, generate, symbols
    from tests.kit.kafka import end_offsets
    from topology.ingest import ingest_context

    start = end_offsets(settings, raw.TOPIC)
    stream = Stream(assets, minutes, start, {})
    began = time.monotonic()
    with ingest_context(settings) as ctx:
        for symbol in symbols(assets):
            ctx.assets.resolve(VENUE, "perp", symbol)
        clock = HeartbeatClock()
        values = generate(SCENARIO, assets=assets, minutes=minutes, seed=SEED, density=density)
        for value in values:
            ctx.sink.send(value)
            stream.records += 1
            stream.ticks += ticks_of(value)
            due = clock.advance(value["exchange_ts"])
            if due is not None:
                ctx.sink.heartbeat(due, value["ingest_ts"], "synthetic")
                stream.heartbeats += ctx.sink.partitions
    stream.write_s = time.monotonic() - began
    stream.records += stream.heartbeats
    stream.end = end_offsets(settings, raw.TOPIC)
    return stream


def raw_codec(settings: StackSettings) -> AvroCodec:
    """The ``md.raw.v0`` codec the worker uses (registered schema id)."""
    from connectors.registry import SchemaRegistry

    with SchemaRegistry(settings.registry_url) as registry:
        return registry.codec(raw.TOPIC)


def set_group_offsets(settings: StackSettings, group: str, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` of ``md.raw.v0`` for ``group`` before its worker first starts."""
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": group, "log_level": 3}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(raw.TOPIC, p, o) for p, o in offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()


# ----------------------------------------------------------------------------- raw limit


class MinuteAgg:
    """Per asset-minute OHLCV and counts, folded from numpy batches (the raw limit's work).

    Each entry: ``[open, high, low, close, base volume, quote volume, buy quote volume,
    trades, first trade ts, last trade ts, quotes, last mid]``.
    """

    def __init__(self) -> None:
        self.bars: dict[tuple[int, int], list[Any]] = {}
        self._uid: list[int] = []
        self._ts: list[int] = []
        self._px: list[str] = []
        self._sz: list[str] = []
        self._buy: list[bool] = []
        self._q_uid: list[int] = []
        self._q_ts: list[int] = []
        self._q_bid: list[str | None] = []
        self._q_ask: list[str | None] = []

    def add(self, value: dict[str, Any]) -> None:
        """Queue one decoded record's ticks for the next :meth:`fold`."""
        body = value["body"]
        uid = value["asset_uid"]
        trades = body.get("trades")
        if trades is not None:
            n = len(trades)
            self._uid += [uid] * n
            self._ts += [t["exchange_ts"] for t in trades]
            self._px += [t["px"] for t in trades]
            self._sz += [t["sz"] for t in trades]
            self._buy += [t["side"] == "buy" for t in trades]
        elif "bid_px" in body:
            self._q_uid.append(uid)
            self._q_ts.append(value["exchange_ts"])
            self._q_bid.append(body["bid_px"])
            self._q_ask.append(body["ask_px"])

    def fold(self) -> None:
        """Aggregate the queued ticks with numpy and fold them into :attr:`bars`."""
        if self._uid:
            self._fold_trades()
        if self._q_uid:
            self._fold_quotes()

    def _fold_trades(self) -> None:
        uid = np.array(self._uid, dtype=np.int64)
        ts = np.array(self._ts, dtype=np.int64)
        px = np.array(self._px, dtype=np.float64)
        sz = np.array(self._sz, dtype=np.float64)
        buy = np.array(self._buy, dtype=np.bool_)
        self._uid, self._ts, self._px, self._sz, self._buy = [], [], [], [], []
        minute = ts // MINUTE_MS
        order = np.lexsort((ts, minute, uid))  # stable: ties keep arrival order
        uid, minute, ts = uid[order], minute[order], ts[order]
        px, sz, buy = px[order], sz[order], buy[order]
        new = np.flatnonzero(
            np.concatenate(([True], (uid[1:] != uid[:-1]) | (minute[1:] != minute[:-1])))
        )
        last = np.concatenate((new[1:], [uid.size])) - 1
        quote = px * sz
        high = np.maximum.reduceat(px, new)
        low = np.minimum.reduceat(px, new)
        base = np.add.reduceat(sz, new)
        notional = np.add.reduceat(quote, new)
        bought = np.add.reduceat(np.where(buy, quote, 0.0), new)
        count = np.diff(np.concatenate((new, [uid.size])))
        rows = zip(
            uid[new].tolist(), minute[new].tolist(), px[new].tolist(), high.tolist(),
            low.tolist(), px[last].tolist(), base.tolist(), notional.tolist(), bought.tolist(),
            count.tolist(), ts[new].tolist(), ts[last].tolist(), strict=True,
        )  # fmt: skip
        bars = self.bars
        for u, m, o, h, lo, c, b, q, qb, n, t0, t1 in rows:
            bar = bars.get((u, m))
            if bar is None:
                bars[(u, m)] = [o, h, lo, c, b, q, qb, n, t0, t1, 0, None]
                continue
            if bar[7] == 0 or t0 < bar[8]:
                bar[0], bar[8] = o, t0
            if bar[7] == 0 or t1 >= bar[9]:
                bar[3], bar[9] = c, t1
            bar[1] = h if bar[7] == 0 else max(bar[1], h)
            bar[2] = lo if bar[7] == 0 else min(bar[2], lo)
            bar[4] += b
            bar[5] += q
            bar[6] += qb
            bar[7] += n

    def _fold_quotes(self) -> None:
        uid = np.array(self._q_uid, dtype=np.int64)
        minute = np.array(self._q_ts, dtype=np.int64) // MINUTE_MS
        bid = np.array([math.nan if b is None else b for b in self._q_bid], dtype=np.float64)
        ask = np.array([math.nan if a is None else a for a in self._q_ask], dtype=np.float64)
        self._q_uid, self._q_ts, self._q_bid, self._q_ask = [], [], [], []
        order = np.lexsort((minute, uid))
        uid, minute, mid = uid[order], minute[order], ((bid + ask) / 2)[order]
        new = np.flatnonzero(
            np.concatenate(([True], (uid[1:] != uid[:-1]) | (minute[1:] != minute[:-1])))
        )
        last = np.concatenate((new[1:], [uid.size])) - 1
        count = np.diff(np.concatenate((new, [uid.size])))
        bars = self.bars
        for u, m, n, last_mid in zip(
            uid[new].tolist(), minute[new].tolist(), count.tolist(), mid[last].tolist(), strict=True
        ):
            bar = bars.get((u, m))
            if bar is None:
                bar = bars[(u, m)] = [None, None, None, None, 0.0, 0.0, 0.0, 0, 0, 0, 0, None]
            bar[10] += n
            bar[11] = last_mid


@dataclass
class Timed:
    """A timed pass: what it processed after its clock started, how long, on how much CPU."""

    ticks: int
    records: int
    seconds: float
    setup_s: float
    cpu_s: float = 0.0  # CPU seconds of the process (every thread) in the timed window
    starved_s: float = 0.0  # seconds its threads were runnable but waited for a CPU
    rss_mib: float = 0.0
    rss_peak_mib: float = 0.0

    @property
    def ticks_per_s(self) -> float:
        """Ticks per wall second."""
        return self.ticks / self.seconds if self.seconds > 0 else 0.0

    @property
    def records_per_s(self) -> float:
        """Records per wall second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def ticks_per_cpu_s(self) -> float:
        """Ticks per CPU second of the process: less sensitive to the machine's other load."""
        return self.ticks / self.cpu_s if self.cpu_s > 0 else 0.0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of ``pid``'s threads so far.

    The second says how much the machine's other load (broker, registry, other processes)
    took from the process (``/proc/<pid>/task/*/schedstat``; zeros when it is gone).
    """
    on = waiting = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0, 0.0
    for task in tasks:
        try:
            run_ns, wait_ns, _slices = (task / "schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        on, waiting = on + int(run_ns), waiting + int(wait_ns)
    return on / 1e9, waiting / 1e9


def raw_limit(settings: StackSettings, stream: Stream, codec: AvroCodec) -> Timed:
    """Read the stream with a plain consumer loop, decode and aggregate; fill ``stream.cum``."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    began = time.monotonic()
    wanted = {p: (s, stream.end[p]) for p, s in stream.start.items() if stream.end[p] > s}
    consumer.assign([TopicPartition(raw.TOPIC, p, s) for p, (s, _e) in wanted.items()])
    per_offset: dict[int, list[int]] = {p: [] for p in wanted}
    remaining = sum(e - s for s, e in wanted.values())
    agg = MinuteAgg()
    first: float | None = None
    cpu0 = (0.0, 0.0)
    ticks = records = 0
    decode = codec.decode
    try:
        while remaining > 0:
            # A short timeout: consume() waits for a full batch, so the last one would wait.
            msgs = consumer.consume(1000, timeout=0.05)
            if first is None and msgs:
                first, cpu0 = time.monotonic(), cpu_seconds(os.getpid())
            for msg in msgs:
                if msg.error() is not None:
                    raise RuntimeError(f"raw loop: {msg.error()}")
                p, offset = msg.partition() or 0, msg.offset() or 0
                if p not in wanted or not wanted[p][0] <= offset < wanted[p][1]:
                    continue
                value = decode(msg.value() or b"")
                n = ticks_of(value)
                agg.add(value)
                per_offset[p].append(n)
                ticks += n
                records += 1
                remaining -= 1
            agg.fold()
            if time.monotonic() - began > TIMEOUT_S:
                raise RuntimeError("raw loop: timed out")
        done, cpu1 = time.monotonic(), cpu_seconds(os.getpid())
    finally:
        consumer.close()
    for p, counts in per_offset.items():
        stream.cum[p] = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    for p in stream.start:
        stream.cum.setdefault(p, np.zeros(1, dtype=np.int64))
    if first is None:
        raise RuntimeError("raw loop: no records")
    return Timed(ticks, records, done - first, first - began, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1])


# ----------------------------------------------------------------------------- the worker


def run_worker(
    settings: StackSettings, stream: Stream, work: Path, *args: str
) -> tuple[Timed, dict[int, int]]:
    """Run ``alpha worker lattice [args]`` over the stream; return its timing and first commit.

    The timing's ticks and records are filled in by the caller from ``stream.cum`` (known
    after the raw loop); the second value is the group's committed offsets at its first commit.
    """
    from tests.kit.workers import WorkerProcess

    group = f"bench-lattice-{stream.assets}-{uuid.uuid4().hex[:6]}"
    set_group_offsets(settings, group, stream.start)
    watcher = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    tps = [TopicPartition(raw.TOPIC, p) for p in sorted(stream.start)]
    log = work / f"{group}.log"
    launched = time.monotonic()
    worker = WorkerProcess(
        settings, "lattice", log, "--app-id", group, "--data-dir", str(work / group), *args
    )
    pid = worker.proc.pid
    rss: list[float] = []
    peak = 0.0
    first: tuple[float, dict[int, int], tuple[float, float]] | None = None
    try:
        while True:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited: {worker.proc.returncode}\n{worker.tail()}")
            got = watcher.committed(tps, timeout=10)
            now = time.monotonic()
            offsets = {tp.partition: max(tp.offset, stream.start[tp.partition]) for tp in got}
            current, hwm = rss_mib(pid)
            peak = max(peak, hwm)
            if first is None and offsets != stream.start:
                first = (now, offsets, cpu_seconds(pid))
            if first is not None:
                rss.append(current)
            if all(offsets[p] >= e for p, e in stream.end.items()):
                cpu1 = cpu_seconds(pid)
                break
            if now - launched > TIMEOUT_S:
                raise RuntimeError(f"the worker did not finish in {TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)
        done = time.monotonic()
    finally:
        watcher.close()
        code = worker.stop()
        if code != 0:
            print(f"  (the worker exited with {code}; log {log})", flush=True)
    if first is None:  # pragma: no cover - the loop above only ends with a first commit
        raise RuntimeError("the worker never committed")
    began, offsets, cpu0 = first
    timed = Timed(
        0, 0, done - began, began - launched, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1],
        rss_mib=statistics.median(rss), rss_peak_mib=peak,
    )  # fmt: skip
    return timed, offsets


# ----------------------------------------------------------------------------- the benchmark


def measure(ctx: Context, settings: StackSettings, assets: int, ticks: int, density: float) -> None:
    """Write one size's stream, time the worker and the raw loop on it, record the figures."""
    minutes = minutes_for(assets, ticks, density)
    print(f"  [{assets} assets] writing {minutes} min of synthetic data, density {density:g}",
          flush=True)  # fmt: skip
    stream = write_stream(settings, assets, minutes, density)
    tpr = stream.ticks / stream.records
    print(
        f"  [{assets} assets] {stream.records:,} records ({stream.heartbeats:,} heartbeats),"
        f" {stream.ticks:,} ticks ({tpr:.1f}/record) written in {stream.write_s:.0f} s;"
        " the lattice worker...",
        flush=True,
    )
    worker, first_offsets = run_worker(settings, stream, ctx.work)
    print(f"  [{assets} assets] the raw loop...", flush=True)
    raw_t = raw_limit(settings, stream, raw_codec(settings))
    worker.ticks = stream.ticks_between(first_offsets, stream.end)
    worker.records = stream.records_between(first_offsets, stream.end)
    share = 100.0 * worker.ticks_per_s / raw_t.ticks_per_s if raw_t.ticks_per_s else 0.0
    shape = f"{assets} assets, {tpr:.1f} ticks/record"

    def load(t: Timed) -> str:
        return f"CPU {t.cpu_s / t.seconds:.2f}, starved {t.starved_s / t.seconds:.2f}"

    ctx.figure(
        f"ingest_lattice.ticks_per_s.{assets}", worker.ticks_per_s, "ticks/s",
        target=TARGET_TICKS_PER_S, peer=PEER, peer_value=raw_t.ticks_per_s,
        note=f"alpha worker lattice (EOS), {shape}; {worker.ticks:,} ticks in"
        f" {worker.seconds:.1f} s ({load(worker)})",
    )  # fmt: skip
    ctx.figure(
        f"ingest_lattice.raw_limit.ticks_per_s.{assets}", raw_t.ticks_per_s, "ticks/s",
        note=f"consume(1000) + Avro decode + numpy asset-minute OHLCV, {shape};"
        f" {raw_t.ticks:,} ticks in {raw_t.seconds:.1f} s ({load(raw_t)})",
    )  # fmt: skip
    ctx.figure(
        f"ingest_lattice.share_of_raw.{assets}", share, "%", target=TARGET_SHARE,
        note="worker ticks/s as a share of the raw loop's, same records, same run",
    )  # fmt: skip
    ctx.figure(
        f"ingest_lattice.ticks_per_cpu_s.{assets}", worker.ticks_per_cpu_s, "ticks/cpu-s",
        peer=PEER, peer_value=raw_t.ticks_per_cpu_s,
        note="per CPU second of the process (all threads): what other load cannot take away",
    )  # fmt: skip
    ctx.figure(
        f"ingest_lattice.records_per_s.{assets}", worker.records_per_s, "records/s",
        peer=PEER, peer_value=raw_t.records_per_s, note="md.raw.v0 records, heartbeats included",
    )  # fmt: skip
    ctx.figure(
        f"lattice_worker.rss_mib.{assets}", worker.rss_mib, "MiB", better="lower",
        note=f"median RSS from the first commit to the end; start-up {worker.setup_s:.1f} s",
    )  # fmt: skip
    ctx.figure(
        f"lattice_worker.rss_peak_mib.{assets}", worker.rss_peak_mib, "MiB", better="lower",
        note="VmHWM, start-up included",
    )  # fmt: skip
    ctx.extra[f"throughput.{assets}"] = {
        "scenario": SCENARIO, "seed": SEED, "density": density, "minutes": minutes,
        "records": stream.records, "heartbeats": stream.heartbeats, "ticks": stream.ticks,
        "ticks_per_record": round(tpr, 2), "write_s": round(stream.write_s, 1),
        "worker": _summary(worker), "raw": _summary(raw_t),
    }  # fmt: skip


def _summary(t: Timed) -> dict[str, float]:
    return {
        "ticks": t.ticks, "records": t.records, "seconds": round(t.seconds, 2),
        "setup_s": round(t.setup_s, 2), "cpu_s": round(t.cpu_s, 2),
        "starved_s": round(t.starved_s, 2), "rss_mib": round(t.rss_mib, 1),
        "rss_peak_mib": round(t.rss_peak_mib, 1),
    }  # fmt: skip


def run(ctx: Context, sizes: tuple[int, ...] | None = None, density: float = DENSITY,
        ticks: int | None = None) -> None:  # fmt: skip
    """Measure ingest -> lattice throughput and worker RSS (35 and 200 assets; quick: 35)."""
    sizes = sizes or ((35,) if ctx.quick else (35, 200))
    ticks = ticks or (TICKS_QUICK if ctx.quick else TICKS_FULL)
    print(f"b_throughput: sizes {sizes}, ~{ticks:,} ticks each, density {density:g}", flush=True)
    with private_stack(ctx.work / "stack") as settings:
        for assets in sizes:
            measure(ctx, settings, assets, ticks, density)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on its own (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="35 assets, a small stream")
    parser.add_argument("--assets", type=_sizes, help="universe sizes, e.g. 35,200")
    parser.add_argument("--density", type=float, default=DENSITY, help="trade batch density")
    parser.add_argument("--ticks", type=int, help="about this many ticks per size")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--save", action="store_true", help="write bench/results/<stamp>.json")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with workdir(keep=args.keep) as work:
        ctx = Context(work=work, quick=args.quick)
        run(ctx, args.assets, args.density, args.ticks)
        if args.keep:
            print(f"scratch kept: {work}")
    if args.save:
        from bench.common import write_result

        print(f"result: {write_result(ctx, ['b_throughput'], started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
