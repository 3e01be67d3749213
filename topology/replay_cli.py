"""``alpha replay``: re-run the topology from ``md.raw.v0`` offsets, then verify (spec 002 §16).

``alpha replay [run] [--from-offset N | --from-time T] [--to-offset N | --to-time T]`` reads
``md.raw.v0`` (read_committed, every partition from the same offset or from the offsets of a
record time) up to the end offsets it finds at start, re-runs lattice, market and detect
in-process with fresh state (:class:`topology.pipeline_driver.PipelineDriver`) and publishes
every event on ``alpha.events.replay.v0`` -- same partition, key and payload as live but
``provenance.replay_of = true`` -- in Kafka transactions. ``--dry-run`` publishes nothing.

``alpha replay verify [--from-time T] [--to-time T] [--run ID]`` compares the committed events of
``alpha.events.v0`` and ``alpha.events.replay.v0`` (exchange_ts in the window): counts by class,
a digest of each side, and IDENTICAL or the first difference. Exit 0 when identical, else 1.

The Kafka plumbing is here; offsets, digests and the comparison are :mod:`topology.replay`.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connectors.registry import RegistryError, SchemaRegistry
from packs.detector import load_detector_pack
from packs.feature import load_feature_pack
from packs.universe import load_universe_policy
from processors.detect.events import Provenance
from schemas import catalog, raw
from schemas.errors import AlphaError, WireFormatError
from schemas.events import iso_ms
from schemas.wire import HEADER_SIZE, frame
from topology.driver import Sent
from topology.events_cli import RegistryDecoder
from topology.pipeline_driver import PipelineDriver
from topology.replay import (
    REPLAY_TOPIC,
    RUN_HEADER,
    Bounds,
    Comparison,
    Replayer,
    ReplayError,
    compare,
    in_window,
    parse_time,
    resolve_ranges,
)
from topology.settings import StackSettings

LIVE_TOPIC = "alpha.events.v0"
EXIT_DIFFERENT = 1
TXN_EVENTS = 1000  # events per transaction
FLUSH_EVERY = 1000  # raw records between state flushes (memory stores: no effect on outputs)
STALL_S = 60.0  # no record and no position change for this long: give up

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False)


# ---------------------------------------------------------------------------- reading
def _consumer(settings: StackSettings, group: str) -> Consumer:
    # Partitions are assigned, never subscribed: the group id is never used to commit.
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "log_level": 0,  # errors surface as exceptions, not librdkafka log lines
        }
    )


def _watermarks(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    # Under read_committed the high mark is the last stable offset: open transactions excluded.
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        raise ReplayError(f"Kafka unreachable ({topic}): {exc.args[0].str()}") from exc
    if meta is None or meta.error is not None or not meta.partitions:
        raise ReplayError(f"topic {topic} not found on the broker (run `alpha topics create`)")
    out: dict[int, tuple[int, int]] = {}
    for p in sorted(meta.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        out[p] = (int(low), int(high))
    return out


def _offsets_for_time(consumer: Consumer, topic: str, parts: list[int], ts: int) -> dict[int, int]:
    found = consumer.offsets_for_times([TopicPartition(topic, p, ts) for p in parts], timeout=10)
    return {tp.partition: int(tp.offset) for tp in found}


class _Reader:
    """Yield the records of ``[start, end)`` of each partition; track how far each one got."""

    def __init__(self, consumer: Consumer, topic: str, ranges: dict[int, tuple[int, int]]) -> None:
        self.consumer = consumer
        self.topic = topic
        self.ranges = {p: r for p, r in ranges.items() if r[1] > r[0]}
        self.reached = {p: start for p, (start, _end) in self.ranges.items()}
        self.total = sum(end - start for start, end in self.ranges.values())

    @property
    def advanced(self) -> int:
        """Offsets passed so far (records plus transaction markers), of :attr:`total`."""
        return sum(self.reached[p] - start for p, (start, _e) in self.ranges.items())

    def __iter__(self) -> Iterator[Message]:
        todo = dict(self.ranges)
        if not todo:
            return
        self.consumer.assign([TopicPartition(self.topic, p, s) for p, (s, _e) in todo.items()])
        last_move = time.monotonic()
        while todo:
            batch = self.consumer.consume(500, timeout=0.5)
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise ReplayError(f"{self.topic}: {err.str()}")
                p, offset = msg.partition(), msg.offset()
                if p is None or offset is None or p not in todo or offset >= todo[p][1]:
                    continue
                self.reached[p] = offset + 1
                yield msg
            if self._settle(todo) or batch:
                last_move = time.monotonic()
            elif time.monotonic() - last_move > STALL_S:
                where = ", ".join(f"{p}@{self.reached[p]}<{e}" for p, (_s, e) in todo.items())
                raise ReplayError(
                    f"{self.topic}: no progress for {STALL_S:.0f} s ({where}); is a transaction"
                    " left open on the topic?"
                )

    def _settle(self, todo: dict[int, tuple[int, int]]) -> bool:
        # Transactional topics end with commit markers that are never delivered: a partition is
        # done once the consumer's position passed its end, or its last record was read.
        tps = [TopicPartition(self.topic, p) for p in todo]
        done = []
        for tp in self.consumer.position(tps):
            end = todo[tp.partition][1]
            if tp.offset >= end or self.reached[tp.partition] >= end:
                self.reached[tp.partition] = end
                done.append(tp.partition)
        for p in done:
            del todo[p]
        if done:
            self.consumer.pause([TopicPartition(self.topic, p) for p in done])
        return bool(done)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=_err,
        transient=True,
    )


# ---------------------------------------------------------------------------- publishing
class _Publisher:
    """Publish events on the replay topic in transactions of :data:`TXN_EVENTS` events."""

    def __init__(self, settings: StackSettings, run_id: str, schema_id: int) -> None:
        self.schema_id = schema_id
        self.headers: list[tuple[str, str | bytes | None]] = [(RUN_HEADER, run_id.encode())]
        self.pending = self.published = self.transactions = 0
        self._failure: KafkaError | None = None
        self.producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "transactional.id": run_id,
                "linger.ms": 20,
                "log_level": 0,
            }
        )
        try:
            self.producer.init_transactions(30)
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise ReplayError(f"starting transactions: {exc.args[0].str()}") from exc

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failure = err

    def publish(self, sent: Sent) -> None:
        """Send one event (reframed with the replay subject's schema id, same Avro bytes)."""
        data = frame(self.schema_id, sent.data[HEADER_SIZE:])
        while True:
            try:
                self.producer.produce(
                    REPLAY_TOPIC,
                    value=data,
                    key=sent.key,
                    partition=sent.partition,
                    headers=self.headers,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let the broker catch up
        self.pending += 1
        if self.pending >= TXN_EVENTS:
            self.commit()
            self.producer.begin_transaction()

    def commit(self) -> None:
        """Commit the open transaction (flushes; a failed delivery aborts the replay)."""
        try:
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            raise ReplayError(f"committing to {REPLAY_TOPIC}: {exc.args[0].str()}") from exc
        if self._failure is not None:
            raise ReplayError(f"delivery to {REPLAY_TOPIC} failed: {self._failure.str()}")
        self.published += self.pending
        self.pending = 0
        self.transactions += 1

    def abort(self) -> None:
        """Abort the open transaction (what was committed before stays)."""
        with contextlib.suppress(KafkaException):  # else it times out on the broker anyway
            self.producer.abort_transaction(30)


def _replay_schema_id(registry: SchemaRegistry) -> int:
    # The replay topic carries the event schema under its own subject (TopicNameStrategy).
    schema = catalog.load(LIVE_TOPIC)
    subject = f"{REPLAY_TOPIC}-value"
    try:
        return int(registry.client.register_schema(subject, Schema(schema.text, "AVRO")))
    except SchemaRegistryError as exc:
        raise RegistryError(f"{subject}: {exc}") from exc
    except Exception as exc:  # transport errors (connection refused, timeouts)
        raise RegistryError(f"schema registry at {registry.url} unreachable: {exc}") from exc


# ---------------------------------------------------------------------------- alpha replay run
def _times(args: argparse.Namespace) -> tuple[int | None, int | None]:
    from_ts = None if args.from_time is None else parse_time(args.from_time, "--from-time")
    to_ts = None if args.to_time is None else parse_time(args.to_time, "--to-time")
    if from_ts is not None and to_ts is not None and from_ts >= to_ts:
        raise ReplayError(f"--from-time {args.from_time} is not before --to-time {args.to_time}")
    for name in ("from_offset", "to_offset"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise ReplayError(f"--{name.replace('_', '-')} must be >= 0")
    start, end = args.from_offset, args.to_offset
    if start is not None and end is not None and start >= end:
        raise ReplayError(f"--from-offset {start} is not below --to-offset {end}")
    return from_ts, to_ts


def _driver(args: argparse.Namespace) -> PipelineDriver:
    """Load the packs (a bad pack fails here, before Kafka) and build a fresh driver."""
    from topology.stage_workers import git_commit, producer_name

    pack = load_feature_pack(path=args.feature_pack) if args.feature_pack else None
    detector_pack = load_detector_pack(path=args.detector_pack) if args.detector_pack else None
    detector_pack = detector_pack or load_detector_pack()
    policy = load_universe_policy(path=args.universe_policy) if args.universe_policy else None
    provenance = Provenance(
        producer=producer_name(),
        detector_pack=detector_pack.version,
        detector_hash=detector_pack.hash(),
        git_commit=git_commit(),
        replay_of=True,
    )
    return PipelineDriver(
        pack, detector_pack, policy, provenance=provenance, flush_every=FLUSH_EVERY
    )


def _cmd_run(args: argparse.Namespace, settings: StackSettings) -> int:
    from_ts, to_ts = _times(args)
    driver = _driver(args)
    run_id = f"alpha-replay-{uuid.uuid4().hex}"
    with SchemaRegistry(settings.registry_url) as registry:
        replayer = Replayer(driver, registry.codec(raw.TOPIC))
        schema_id = None if args.dry_run else _replay_schema_id(registry)
    consumer = _consumer(settings, run_id)
    publisher = None
    started = time.monotonic()
    try:
        marks = _watermarks(consumer, raw.TOPIC)
        parts = sorted(marks)

        def found(ts: int | None) -> dict[int, int] | None:
            return None if ts is None else _offsets_for_time(consumer, raw.TOPIC, parts, ts)

        bounds = Bounds(args.from_offset, found(from_ts), args.to_offset, found(to_ts))
        ranges = resolve_ranges(marks, bounds)
        reader = _Reader(consumer, raw.TOPIC, ranges)
        if schema_id is not None:
            publisher = _Publisher(settings, run_id, schema_id)
        send: Callable[[Sent], None] = publisher.publish if publisher else (lambda _s: None)
        _replay(reader, replayer, send)
        replayer.finish()
        if publisher is not None:
            publisher.commit()
    except BaseException:
        if publisher is not None:
            publisher.abort()
        raise
    finally:
        consumer.close()
    elapsed = time.monotonic() - started
    _print_run(run_id, args, ranges, replayer, publisher, elapsed)
    return 0


def _replay(reader: _Reader, replayer: Replayer, send: Callable[[Sent], None]) -> None:
    events = 0
    with _progress() as progress:
        task = progress.add_task("replaying md.raw.v0", total=reader.total, note="")
        for n, msg in enumerate(reader, 1):
            for sent in replayer.feed(msg.partition() or 0, msg.offset() or 0, msg.value() or b""):
                send(sent)
                events += 1
            if n % 500 == 0:
                note = f"{n} records, {events} events"
                progress.update(task, completed=reader.advanced, note=note)
        progress.update(task, completed=reader.total)


def _print_run(
    run_id: str,
    args: argparse.Namespace,
    ranges: dict[int, tuple[int, int]],
    replayer: Replayer,
    publisher: _Publisher | None,
    elapsed: float,
) -> None:
    stats = replayer.stats
    driver = replayer.driver
    _out.print(
        f"replay {run_id}: {raw.TOPIC} -> {'(dry run)' if args.dry_run else REPLAY_TOPIC},"
        f" fresh state; feature pack {driver.pack.feature_pack}, detector pack"
        f" {driver.detector_pack.version}, universe policy rev {driver.policy.universe_policy_rev}"
    )
    table = Table("partition", "from", "to (excl.)", "records read", "first", "last", box=None)
    for p, (start, end) in ranges.items():
        first, last = stats.first_offset.get(p), stats.last_offset.get(p)
        table.add_row(
            str(p), str(start), str(end), str(stats.records[p]),
            "-" if first is None else str(first), "-" if last is None else str(last),
        )  # fmt: skip
    _out.print(table)
    classes = Table("class", "events", box=None)
    for cls, n in sorted(stats.events.items()):
        classes.add_row(cls, str(n))
    classes.add_row("total", str(sum(stats.events.values())))
    _out.print(classes)
    errors = sum(stats.pipe_errors.values())
    _out.print(f"pipe errors (undecodable {raw.TOPIC} records, skipped): {errors}")
    for reason, n in stats.pipe_errors.most_common():
        _out.print(f"  {n:>7}  {reason}", markup=False)
    for topic, n in sorted(stats.dead_letters.items()):
        _out.print(f"dead letters of {topic} (a stage rejected the record): {n}")
    if stats.contract_dropped:
        dropped = stats.contract_dropped
        _out.print(f"events breaking the contract's bounds (not published): {dropped}")
    if publisher is not None:
        _out.print(
            f"published {publisher.published} events on {REPLAY_TOPIC} in"
            f" {publisher.transactions} transactions (header {RUN_HEADER}: {run_id})"
        )
    rate = stats.total_records / elapsed if elapsed > 0 else 0.0
    _out.print(f"{stats.total_records} records in {elapsed:.1f} s: {rate:,.0f} records/s")


# ---------------------------------------------------------------------------- alpha replay verify
def _read_events(
    settings: StackSettings, topic: str, decoder: RegistryDecoder, window: tuple[int | None, ...]
) -> tuple[list[dict[str, Any]], list[str], int]:
    """Return the topic's events in the window, their run header, and undecodable records."""
    consumer = _consumer(settings, f"alpha-replay-verify-{uuid.uuid4().hex}")
    events: list[dict[str, Any]] = []
    runs: list[str] = []
    bad = 0
    try:
        marks = _watermarks(consumer, topic)
        reader = _Reader(consumer, topic, dict(marks))
        with _progress() as progress:
            task = progress.add_task(f"reading {topic}", total=reader.total, note="")
            for n, msg in enumerate(reader, 1):
                try:
                    event = decoder.decode(msg.value() or b"")
                except (AlphaError, WireFormatError, EOFError, ValueError, IndexError):
                    bad += 1
                    continue
                if in_window(event, window[0], window[1]):
                    events.append(event)
                    runs.append(_header(msg, RUN_HEADER))
                if n % 500 == 0:
                    progress.update(task, completed=reader.advanced)
    except SchemaRegistryError as exc:
        raise RegistryError(f"schema registry at {settings.registry_url}: {exc}") from exc
    finally:
        consumer.close()
    return events, runs, bad


def _header(msg: Message, name: str) -> str:
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


def _cmd_verify(args: argparse.Namespace, settings: StackSettings) -> int:
    window = (
        None if args.window_from is None else parse_time(args.window_from, "--from-time"),
        None if args.window_to is None else parse_time(args.window_to, "--to-time"),
    )
    decoder = RegistryDecoder(settings.registry_url)
    live, _runs, live_bad = _read_events(settings, LIVE_TOPIC, decoder, window)
    replayed, runs, replay_bad = _read_events(settings, REPLAY_TOPIC, decoder, window)
    per_run: dict[str, int] = {}
    for run in runs:
        per_run[run] = per_run.get(run, 0) + 1
    if args.run is not None:
        if args.run not in per_run:
            known = ", ".join(per_run) or "none"
            raise ReplayError(f"no event of run {args.run} in the window (runs: {known})")
        replayed = [e for e, r in zip(replayed, runs, strict=True) if r == args.run]
    result = compare(live, replayed)
    _print_verify(args, window, result, per_run, (live_bad, replay_bad))
    return 0 if result.identical else EXIT_DIFFERENT


def _print_verify(
    args: argparse.Namespace,
    window: tuple[int | None, ...],
    result: Comparison,
    per_run: dict[str, int],
    bad: tuple[int, int],
) -> None:
    bound = ["open" if t is None else iso_ms(t) for t in window]
    _out.print(f"window: exchange_ts [{bound[0]}, {bound[1]})")
    runs = ", ".join(f"{r or '(no run header)'} {n}" for r, n in per_run.items()) or "none"
    _out.print(f"replay runs on {REPLAY_TOPIC} in the window: {runs}")
    if args.run is not None:
        _out.print(f"comparing run {args.run} only")
    for name, side, n_bad in (("live", result.live, bad[0]), ("replay", result.replay, bad[1])):
        line = f"{name}: {side.read} events read"
        if side.duplicates:
            line += (
                f", {side.duplicates} duplicates of (event_id, revision) dropped (the last copy"
                " kept)"
            )
        if n_bad:
            line += f", {n_bad} undecodable records skipped"
        _out.print(line)
    table = Table("class", "live", "replay", box=None)
    live_classes, replay_classes = result.live.by_class(), result.replay.by_class()
    for cls in sorted({*live_classes, *replay_classes}):
        table.add_row(cls, str(live_classes[cls]), str(replay_classes[cls]))
    table.add_row("total", str(len(result.live.events)), str(len(result.replay.events)))
    _out.print(table)
    _out.print(f"live    {result.live.digest}")
    _out.print(f"replay  {result.replay.digest}")
    first = result.first
    if first is None:
        empty = not result.live.events
        _out.print(
            "IDENTICAL" + (" (no event on either side: nothing was compared)" if empty else "")
        )
        return
    where = f"event {first.event_id} rev {first.revision} ({iso_ms(first.exchange_ts)})"
    if first.missing_on is not None:
        other = "replay" if first.missing_on == "live" else "live"
        _out.print(f"DIFFERENT: first difference: {where} is on {other}, not on {first.missing_on}")
    else:
        _out.print(
            f"DIFFERENT: first difference: {where} at {first.path}: live {first.live!r},"
            f" replay {first.replay!r}",
            markup=False,
        )


# ---------------------------------------------------------------------------- the parser
def _run_options(parser: argparse.ArgumentParser, default: Any) -> None:
    # ``alpha replay [opts]`` and ``alpha replay run [opts]`` both run: the subcommand's copy of
    # an option defaults to SUPPRESS so it never overwrites what the parent parsed.
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-offset", type=int, default=default, metavar="N",
        help="start every md.raw.v0 partition at offset N (default: its first offset)",
    )  # fmt: skip
    start.add_argument(
        "--from-time", default=default, metavar="T",
        help="start each partition at its first record whose Kafka timestamp (the write time)"
        " is >= T; ISO-8601 (UTC unless an offset is given) or epoch ms",
    )  # fmt: skip
    end = parser.add_mutually_exclusive_group()
    end.add_argument(
        "--to-offset", type=int, default=default, metavar="N",
        help="stop every partition before offset N (default: the end offsets at start)",
    )  # fmt: skip
    end.add_argument(
        "--to-time", default=default, metavar="T",
        help="stop each partition before its first record whose timestamp is >= T",
    )  # fmt: skip
    parser.add_argument("--feature-pack", type=Path, default=default, help="feature pack YAML")
    parser.add_argument("--detector-pack", type=Path, default=default, help="detector pack YAML")
    parser.add_argument("--universe-policy", type=Path, default=default, help="policy YAML")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=False if default is None else default,
        help="run, publish nothing",
    )


def add_replay_parser(sub: Any) -> None:
    """Add ``alpha replay [run]`` and ``alpha replay verify``."""
    replay = sub.add_parser(
        "replay",
        help="re-run the topology from md.raw.v0 offsets to alpha.events.replay.v0; verify",
        description=__doc__,
        usage="alpha replay [run] [--from-offset N | --from-time T] [--to-offset N | --to-time T]"
        " [--feature-pack P] [--detector-pack P] [--universe-policy P] [--dry-run]\n"
        "       alpha replay verify [--from-time T] [--to-time T] [--run ID]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_options(replay, None)
    replay.set_defaults(func=_cmd_run)
    # prog: the custom usage above would otherwise become the subcommands' prefix
    actions = replay.add_subparsers(dest="action", metavar="<action>", prog="alpha replay")
    run = actions.add_parser("run", help="the replay (the default action)")
    _run_options(run, argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)
    verify = actions.add_parser(
        "verify",
        help="compare alpha.events.v0 with alpha.events.replay.v0 (exit 0 identical, 1 not)",
    )
    verify.add_argument(
        "--from-time", dest="window_from", metavar="T", help="events with exchange_ts >= T"
    )
    verify.add_argument(
        "--to-time", dest="window_to", metavar="T", help="events with exchange_ts < T"
    )
    verify.add_argument("--run", metavar="ID", help="only this replay run's events (its id)")
    verify.set_defaults(func=_cmd_verify)
