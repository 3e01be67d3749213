"""CPU per symbol-minute of the pure processors: lattice, market, detect (issue 7, item 3).

Target: features + baselines + quantiles + DQ + detectors + scoring <= 25 us per symbol-minute
(spec 002: 50-170 us). A *symbol-minute* is one asset's 1m bar: the denominator is the number of
revision-0 1m rows the lattice sealed in the measured window (35 assets x 30 minutes = 1,050).

Workload: the synthetic ``catalogue`` scenario (:mod:`connectors.synthetic`) on 35 assets,
8 partitions, a heartbeat per partition every second as the ingest sink writes them. A
:class:`~topology.pipeline_driver.PipelineDriver` first runs the warm-up: 215 minutes with the
shipped feature pack, past its 200-sample baselines, so z-scores, flags and every detector run
(not only their warm-up branches). The catalogue is injected 15 minutes before the measured
window (30 minutes), so the window holds its patterns: triggers, scoring, suppressions, events.

Each stage is timed on its own, on what it consumes *after decoding*: a reference pass (untimed)
decodes every record once through its topic's Avro codec, in the order the driver delivers them:
the lattice (``LatticeProcessor.step`` on ``md.raw.v0``: tick ingest; on seals bars, features,
baselines, t-digests, DQ, rollups and rows), the market stage (``MarketProcessor.step`` on
``market.in.v0``: universe, context, frames), the detectors (``DetectorProcessor.step`` on
``lattice.v0``: catalogue, IQR clamp, scoring, events). State is written as the live workers
write it: once per commit (Faust's 1 s; here 1 s of stream time) by each stage that consumed
something in that second (``flush()``, ``save_market``). Figures:

- ``cpu.lattice`` (a), ``cpu.market`` (b), ``cpu.detect`` (c), each split into its parts;
- ``cpu.total`` (d), the headline: a + b + c, no Avro, no broker;
- ``cpu.scope``: the issue's list only (lattice seals + market step + detect step: no tick
  ingest, no state writes);
- ``cpu.driver_with_codecs``: the whole driver on the raw values, every record through its
  codec (encode + decode, as a consumer reads it), same commits.

Timing: ``time.process_time_ns`` (this process's CPU: another job on the 2 cores inflates it
less than a wall clock) around each run of records between commits; each repeat starts from a
fresh ``copy.deepcopy`` of the warm state, with the workload's own objects frozen out of the
garbage collector (``gc.freeze``) as a worker's heap would not hold them. Every repeat must
return exactly the reference pass's outputs (so no repeat did less or other work). Figures are
medians over the repeats; the p95 over repeats is in ``ctx.extra`` and on the headline.
pyperf and pytest-benchmark are not installed (not in ``requirements.lock``) and are not added:
this is a plain ``process_time_ns`` harness.

Run: ``PYTHONPATH=. .venv/bin/python -m bench.b_cpu [--quick] [--profile]``. ``--quick`` (a
smoke run): 12 assets, ``min_samples = 30``, 35 minutes of warm-up, a 5-minute window, 2 repeats.
``--profile``: cProfile of one repeat of each stage; prints the top functions by cumulative share
of the stage instead of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import gc
import pstats
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Context, quantiles, workdir
from connectors.heartbeats import HeartbeatClock
from connectors.synthetic.generator import DEFAULT_START_TS, generate
from packs.feature import FeaturePack, load_feature_pack
from processors.detect.processor import DetectorProcessor
from processors.lattice.processor import LatticeProcessor
from processors.market import stage as market_stage
from processors.market.snapshot import MarketProcessor
from schemas import catalog, raw
from schemas.wire import AvroCodec
from tests.kit.lattice import small_pack, synthetic_detector_pack
from topology.pipeline_driver import PipelineDriver

TARGET_US = 25.0
SPEC = "spec 002: 50-170 us"
MINUTE_MS = 60_000
Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Setup:
    """The size of one run."""

    assets: int
    warm_minutes: int
    window_minutes: int
    repeats: int
    driver_repeats: int
    min_samples: int | None  # None: the shipped feature pack's (200)
    seed: int = 7
    scenario: str = "catalogue"
    #: Minutes before the window the scenario is injected at.
    inject_before: int = 15


FULL = Setup(35, warm_minutes=215, window_minutes=30, repeats=5, driver_repeats=3, min_samples=None)
QUICK = Setup(12, warm_minutes=35, window_minutes=5, repeats=2, driver_repeats=1, min_samples=30)


@dataclass(slots=True)
class Second:
    """One second of stream time (one commit of the live workers): what each stage consumes."""

    raw: list[tuple[raw.RawValue, int | None]] = field(default_factory=list)
    #: Decoded ``md.raw.v0`` records with their partition, in runs of (seals?, records).
    runs: list[tuple[bool, list[tuple[int, Record]]]] = field(default_factory=list)
    market: list[Record] = field(default_factory=list)
    detect: list[tuple[int, Record]] = field(default_factory=list)


@dataclass(slots=True)
class Workload:
    """The warm driver, the window's records by second (decoded once), the expected outputs."""

    setup: Setup
    driver: PipelineDriver
    seconds: list[Second]
    #: Stage -> the outputs of each step of the reference pass.
    expected: dict[str, list[Any]]
    symbol_minutes: int
    facts: dict[str, int]


# --------------------------------------------------------------------------- the workload
def _pack(setup: Setup) -> FeaturePack:
    return load_feature_pack() if setup.min_samples is None else small_pack(setup.min_samples)


def _stream(setup: Setup, partitions: int) -> Iterator[tuple[int, Second]]:
    """Yield ``(heartbeat time, second)``: the raw values as ``pipe_stream`` feeds them."""
    values = generate(
        setup.scenario,
        assets=setup.assets,
        minutes=setup.warm_minutes + setup.window_minutes + 1,  # +1: the window's last seals
        seed=setup.seed,
        inject_at_minute=max(0, setup.warm_minutes - setup.inject_before),
    )
    clock = HeartbeatClock(1000)
    second = Second()
    for v in values:
        second.raw.append((v, None))
        due = clock.advance(int(v["exchange_ts"]))
        if due is not None:
            for p in range(partitions):
                second.raw.append((raw.heartbeat(p, due, int(v["ingest_ts"]), v["source"]), p))
            yield due, second
            second = Second()


class _Codecs:
    """Each topic's Avro round trip: a record as a consumer of the topic reads it."""

    def __init__(self) -> None:
        self._codecs: dict[str, tuple[AvroCodec, bool]] = {}

    def __call__(self, topic: str, value: Mapping[str, Any]) -> Record:
        if topic not in self._codecs:
            parsed = catalog.load(topic).parsed
            self._codecs[topic] = (AvroCodec(parsed, 1), catalog.body_wrapped(topic))
        codec, wrapped = self._codecs[topic]
        decoded = codec.decode(codec.encode({"body": value} if wrapped else dict(value)))
        return decoded["body"] if wrapped else decoded


@dataclass(slots=True)
class _Reference:
    """The reference pass: copies of the warm stages, run in the driver's order of delivery."""

    driver: PipelineDriver
    lattice: LatticeProcessor
    market: MarketProcessor
    detector: DetectorProcessor
    codecs: _Codecs = field(default_factory=_Codecs)
    expected: dict[str, list[Any]] = field(
        default_factory=lambda: {"lattice": [], "market": [], "detect": []}
    )
    rows: int = 0
    warm_rows: int = 0
    triggers: int = 0

    def second(self, second: Second) -> None:
        """Decode a second's records and fill its stage inputs (untimed)."""
        for value, part in second.raw:
            decoded = self.codecs("md.raw.v0", value)
            p = self.driver.partition_of(decoded) if part is None else part
            outs = self.lattice.step(p, decoded)
            self.expected["lattice"].append(outs)
            sealing = bool(outs)
            if sealing or not second.runs or second.runs[-1][0]:
                second.runs.append((sealing, []))
            second.runs[-1][1].append((p, decoded))
            for o in outs:
                body = self.codecs(o.topic, o.value)
                if o.topic == "lattice.v0":
                    self._detect(second, o.partition, body)
                else:
                    self._market(second, body)

    def _market(self, second: Second, body: Record) -> None:
        second.market.append(body)
        outs = self.market.step(body)
        self.expected["market"].append(outs)
        for o in outs:
            if o.topic == "lattice.v0":
                self._detect(second, o.partition, self.codecs(o.topic, o.value))

    def _detect(self, second: Second, partition: int, body: Record) -> None:
        if body.get("tf") == "m1" and body.get("revision") == 0:
            self.rows += 1
            self.warm_rows += body.get("warmup") is False
        value = {"body": body}
        second.detect.append((partition, value))
        self.expected["detect"].append(self.detector.step(partition, value))
        self.triggers += len(self.detector.report.triggers)


def build(setup: Setup, log: Callable[[str], None] = print) -> Workload:
    """Generate the stream, warm a driver up, decode the window (all untimed)."""
    started = time.perf_counter()
    driver = PipelineDriver(
        _pack(setup), detector_pack=synthetic_detector_pack(), flush_every=1 << 62
    )
    window_from = DEFAULT_START_TS + setup.warm_minutes * MINUTE_MS
    window_to = window_from + setup.window_minutes * MINUTE_MS
    seconds: list[Second] = []
    for due, second in _stream(setup, driver.partitions):
        if due <= window_from:
            for value, part in second.raw:
                driver.pipe(value, part)
        elif due <= window_to:
            seconds.append(second)
    driver.flush()
    driver.outputs.clear()
    driver.reports.clear()
    log(f"  warm-up: {setup.assets} assets x {setup.warm_minutes} min in {_since(started)}")
    warm = copy.deepcopy(driver)
    ref = _Reference(warm, warm.processor, warm.market, warm.detector)
    for second in seconds:
        ref.second(second)
    facts = {
        "raw_records": sum(len(s.raw) for s in seconds),
        "heartbeats": sum(1 for s in seconds for _v, p in s.raw if p is not None),
        "market_in": sum(len(s.market) for s in seconds),
        "detect_in": sum(len(s.detect) for s in seconds),
        "rows_1m": ref.rows,
        "rows_1m_warm": ref.warm_rows,
        "triggers": ref.triggers,
    }
    return Workload(setup, driver, seconds, ref.expected, ref.rows, facts)


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.1f} s"


# --------------------------------------------------------------------------- timing
Clock = Callable[[], int]
Parts = dict[str, int]


def time_lattice(w: Workload, clock: Clock = time.process_time_ns) -> tuple[Parts, list[Any]]:
    """Run the window through a copy of the warm lattice; return ns by part and the outputs."""
    proc = copy.deepcopy(w.driver.processor)
    ns = {"ingest": 0, "seal": 0, "flush": 0}
    outs: list[Any] = []
    with _frozen():
        for second in w.seconds:
            for sealing, records in second.runs:
                t0 = clock()
                outs.extend(proc.step(p, rec) for p, rec in records)
                ns["seal" if sealing else "ingest"] += clock() - t0
            t0 = clock()
            proc.flush()
            ns["flush"] += clock() - t0
    return ns, outs


def time_market(w: Workload, clock: Clock = time.process_time_ns) -> tuple[Parts, list[Any]]:
    """Run the window's ``market.in.v0`` through a copy of the warm market stage."""
    store = copy.deepcopy(w.driver.stores[market_stage.STORE])
    proc = copy.deepcopy(w.driver.market)
    market_stage.save_market(proc, store)  # untimed: what the warm stage had saved
    ns = {"step": 0, "flush": 0}
    outs: list[Any] = []
    with _frozen():
        for second in (s for s in w.seconds if s.market):
            t0 = clock()
            outs.extend(proc.step(rec) for rec in second.market)
            t1 = clock()
            market_stage.save_market(proc, store)
            t2 = clock()
            ns["step"] += t1 - t0
            ns["flush"] += t2 - t1
    return ns, outs


def time_detect(w: Workload, clock: Clock = time.process_time_ns) -> tuple[Parts, list[Any]]:
    """Run the window's ``lattice.v0`` through a copy of the warm detector stage."""
    proc = copy.deepcopy(w.driver.detector)
    ns = {"step": 0, "flush": 0}
    outs: list[Any] = []
    with _frozen():
        for second in (s for s in w.seconds if s.detect):
            t0 = clock()
            outs.extend(proc.step(p, rec) for p, rec in second.detect)
            t1 = clock()
            proc.flush()
            t2 = clock()
            ns["step"] += t1 - t0
            ns["flush"] += t2 - t1
    return ns, outs


def time_driver(w: Workload, clock: Clock = time.process_time_ns) -> tuple[Parts, list[Any]]:
    """Run the window's raw values through a copy of the warm driver (every codec included)."""
    drv = copy.deepcopy(w.driver)
    store = drv.stores[market_stage.STORE]
    market_stage.save_market(drv.market, store)  # untimed, as in time_market
    ns = {"all": 0}
    with _frozen():
        for second in w.seconds:
            t0 = clock()
            for value, part in second.raw:
                drv.pipe(value, part)
            drv.processor.flush()
            if second.market:
                market_stage.save_market(drv.market, store)
            if second.detect:
                drv.detector.flush()
            ns["all"] += clock() - t0
    return ns, [(s.topic, s.partition, s.key, s.data) for s in drv.outputs]


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """Collect, then keep every object alive so far out of the collector's sweeps."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


STAGES: dict[str, Callable[[Workload, Clock], tuple[Parts, list[Any]]]] = {
    "lattice": time_lattice,
    "market": time_market,
    "detect": time_detect,
    "driver": time_driver,
}


def measure(w: Workload, log: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Time every stage ``repeats`` times; return us per symbol-minute, one value per repeat.

    Keys: ``<stage>.<part>``, ``<stage>`` (its sum), ``total`` and ``scope``.

    Raises:
        RuntimeError: A repeat's outputs differ from the reference pass's (or, for the driver,
            from its first repeat's).
    """
    per: dict[str, list[float]] = {}
    for name, fn in STAGES.items():
        expected = w.expected.get(name)
        repeats = w.setup.driver_repeats if name == "driver" else w.setup.repeats
        for i in range(repeats):
            ns, outs = fn(w, time.process_time_ns)
            if expected is None:
                expected = outs
            elif outs != expected and repr(outs) != repr(expected):
                raise RuntimeError(f"bench: repeat {i} of {name} gave other outputs")
            for part, value in ns.items():
                per.setdefault(f"{name}.{part}", []).append(value / 1000 / w.symbol_minutes)
            per.setdefault(name, []).append(sum(ns.values()) / 1000 / w.symbol_minutes)
        log(f"  {name}: {', '.join(f'{v:.0f}' for v in per[name])} us per symbol-minute")
    n = w.setup.repeats
    per["total"] = [per["lattice"][i] + per["market"][i] + per["detect"][i] for i in range(n)]
    per["scope"] = [
        per["lattice.seal"][i] + per["market.step"][i] + per["detect.step"][i] for i in range(n)
    ]
    return per


# --------------------------------------------------------------------------- figures
#: (figure, key of measure()'s result, note)
PARTS = (
    ("cpu.lattice.ingest", "lattice.ingest", "ticks into the minute accumulators"),
    ("cpu.lattice.seal", "lattice.seal", "bars, features, baselines, t-digests, DQ, rollups"),
    ("cpu.lattice.flush", "lattice.flush", "state as JSON, every 1 s commit"),
    ("cpu.lattice", "lattice", "(a) ticks -> 1m rows"),
    ("cpu.market.step", "market.step", "universe, market context, frames"),
    ("cpu.market.flush", "market.flush", "save_market, commits with input"),
    ("cpu.market", "market", "(b) market stage"),
    ("cpu.detect.step", "detect.step", "catalogue, IQR clamp, scoring, events"),
    ("cpu.detect.flush", "detect.flush", "state as JSON, commits with input"),
    ("cpu.detect", "detect", "(c) detectors + scoring"),
)


def report(ctx: Context, w: Workload, per: Mapping[str, list[float]]) -> None:
    """Record the figures (medians over repeats) and the raw repeats in ``ctx.extra``."""
    us = "us"
    for name, key, note in PARTS:
        median = statistics.median(per[key])
        ctx.figure(f"{name}.us_per_symbol_minute", median, us, better="lower", note=note)
    ctx.figure(
        "cpu.scope.us_per_symbol_minute",
        statistics.median(per["scope"]),
        us,
        target=TARGET_US,
        better="lower",
        note=f"the issue's list: lattice seals + market step + detect step; {SPEC}",
    )
    total = statistics.median(per["total"])
    ctx.figure(
        "cpu.total.us_per_symbol_minute",
        total,
        us,
        target=TARGET_US,
        better="lower",
        note=f"(d) every processor, state writes included, no codecs; {SPEC}",
    )
    ctx.figure(
        "cpu.total.p95_us_per_symbol_minute",
        quantiles(per["total"], (0.95,))[0],
        us,
        better="lower",
        note=f"p95 over {w.setup.repeats} repeats",
    )
    ctx.figure(
        "cpu.driver_with_codecs.us_per_symbol_minute",
        statistics.median(per["driver"]),
        us,
        better="lower",
        peer="cpu.total",
        peer_value=total,
        note="PipelineDriver: Avro encode + decode of every record, same commits",
    )
    ctx.extra["cpu"] = {
        "setup": {k: getattr(w.setup, k) for k in Setup.__dataclass_fields__},
        "facts": w.facts,
        "symbol_minutes": w.symbol_minutes,
        "us_per_symbol_minute": {
            k: {"median": statistics.median(v), "p95": quantiles(v, (0.95,))[0], "repeats": v}
            for k, v in sorted(per.items())
        },
    }


def run(ctx: Context) -> None:
    """Build the workload, time the stages, record the figures."""
    setup = QUICK if ctx.quick else FULL
    w = build(setup)
    f = w.facts
    print(
        f"  window: {setup.window_minutes} min, {w.symbol_minutes:,} symbol-minutes"
        f" ({f['rows_1m_warm']:,} past warm-up), {f['raw_records']:,} raw records"
        f" ({f['heartbeats']:,} heartbeats), {f['triggers']} triggers",
        flush=True,
    )
    report(ctx, w, measure(w))


# --------------------------------------------------------------------------- profile
def profile(w: Workload, top: int = 12) -> str:
    """cProfile one repeat of each stage; return its hot spots as shares of the stage's time.

    Per stage: the repository's functions by cumulative share, then any function (the
    standard library's, built-ins) by self share. Only the timed loops are profiled: the
    stage's first clock tick switches the profiler on, after the deep copy of the warm state.
    """
    root = Path(__file__).resolve().parent.parent.as_posix() + "/"
    lines = []
    for name in ("lattice", "market", "detect"):
        prof = cProfile.Profile()

        def clock(prof: cProfile.Profile = prof) -> int:
            prof.enable()
            return 0

        STAGES[name](w, clock)
        prof.disable()
        stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        rows = [
            (tt, ct, f"{fn.removeprefix(root)}:{line}({func})")
            for (fn, line, func), (_cc, _nc, tt, ct, _callers) in stats.items()
            if "/bench/" not in fn  # the harness's own loops
        ]
        total = sum(tt for tt, _ct, _where in rows)
        mine = sorted((ct, where) for _tt, ct, where in rows if where[0] not in "/~<")
        own = sorted((tt, where) for tt, _ct, where in rows)
        lines.append(f"{name}: {total:.2f} s under the profiler")
        lines.append("  cumulative share, repository code:")
        lines += [f"    {ct / total:6.1%}  {where}" for ct, where in mine[::-1][:top]]
        lines.append("  self share, any function:")
        lines += [f"    {tt / total:6.1%}  {where}" for tt, where in own[::-1][: top // 2]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run standalone and print the figures (``--profile``: the hot spots instead)."""
    parser = argparse.ArgumentParser(prog="python -m bench.b_cpu", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--quick", action="store_true", help="the small smoke variant")
    parser.add_argument("--profile", action="store_true", help="cProfile one repeat instead")
    args = parser.parse_args(argv)
    setup = QUICK if args.quick else FULL
    if args.profile:
        print(profile(build(setup)))
        return
    with workdir() as work:
        run(Context(work=work, quick=args.quick))


if __name__ == "__main__":
    main()
