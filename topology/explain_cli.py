"""``alpha explain EVENT_ID``: why an event fired, and does the topology reproduce it (§13.5).

Finds the event on ``alpha.events.v0`` (read_committed, decoded with the writer schema the
registry holds for its id; a scan from the beginning), checks that the loaded packs are the ones
the event names (its ``config_hash``), then reads ``md.raw.v0`` from the beginning of every
partition (read_committed) up to each partition's first record past the event's minute + grace
+ 60 s, and re-runs lattice, market and detect in-process (:mod:`topology.explain`). It prints
the detector's inputs and thresholds, the scoring term by term, the feature row and the market
frame of the minute, the packs, and the verdict: the re-run's event with the same id compared
field by field with the live one (``provenance.replay_of`` aside).

The re-run starts from empty state at the topic's first offset, as the workers did: once
retention has deleted the head of ``md.raw.v0`` (7 days), baselines start later than they did
live and an older event may not reproduce.

Exit status: 0 reproduced; 2 the re-run disagrees (another payload, or no event with that id);
1 an error (unknown event id, empty topic, packs that are not the event's, no broker).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Generator, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from packs.detector import load_detector_pack
from packs.feature import load_feature_pack
from packs.universe import load_universe_policy
from schemas.errors import WireFormatError
from schemas.events import iso_ms
from schemas.ids import partition_for
from schemas.wire import AvroCodec, unframe
from topology import spec
from topology.explain import (
    ExplainError,
    Explanation,
    Score,
    Setup,
    cutoff_ts,
    explain,
    to_json,
)
from topology.settings import StackSettings

EVENTS = "alpha.events.v0"
RAW = "md.raw.v0"
EXIT_REPRODUCED = 0
EXIT_DIFFERS = 2
#: Seconds without a record, below the end offsets, before the read gives up.
IDLE_TIMEOUT_S = 30.0

_err = Console(stderr=True, highlight=False, soft_wrap=True)


class _Codecs:
    """Wire-format codecs by each frame's schema id, the writer schema fetched from the registry."""

    def __init__(self, registry_url: str) -> None:
        self.url = registry_url
        self.client = SchemaRegistryClient({"url": registry_url})
        self.codecs: dict[int, AvroCodec] = {}

    def decode(self, data: bytes) -> dict[str, Any]:
        schema_id, _ = unframe(data)
        codec = self.codecs.get(schema_id)
        if codec is None:
            try:
                text = self.client.get_schema(schema_id).schema_str or ""
            except Exception as exc:  # registry errors and transport errors alike
                raise ExplainError(
                    f"schema registry at {self.url}: schema {schema_id}: {exc}"
                ) from None
            parsed = fastavro.parse_schema(json.loads(text))
            codec = self.codecs[schema_id] = AvroCodec(parsed, schema_id)
        return codec.decode(data)


class _Reader:
    """Read every partition of a topic from its beginning to its end offset (read_committed).

    Iterating yields records as the broker delivers them (offset order per partition);
    :meth:`finish` stops a partition early.
    """

    def __init__(self, settings: StackSettings, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "group.id": "alpha-explain",  # assigned partitions, no commits: never joins
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            meta = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise ExplainError(f"{topic}: not on the broker {settings.bootstrap_servers}")
            self.ends = {
                p: int(self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in sorted(meta.partitions)
            }
        except KafkaException as exc:
            self.consumer.close()
            raise ExplainError(f"broker {settings.bootstrap_servers}: {exc}") from None
        self.live = {p for p, end in self.ends.items() if end > 0}

    @property
    def total(self) -> int:
        """Return the number of offsets below the end offsets (records plus commit markers)."""
        return sum(self.ends.values())

    def finish(self, partition: int) -> None:
        """Read no further in ``partition``."""
        if partition in self.live:
            self.live.discard(partition)
            self.consumer.pause([TopicPartition(self.topic, partition)])

    def __iter__(self) -> Iterator[Message]:
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self.live])
        last = time.monotonic()
        while self.live:
            batch = self.consumer.consume(1000, timeout=0.5)
            for msg in batch:
                if msg.error():
                    raise ExplainError(f"{self.topic}: {msg.error()}")
                p, offset = msg.partition() or 0, msg.offset() or 0
                if p not in self.live:
                    continue  # fetched before the partition was finished
                yield msg
                if offset + 1 >= self.ends[p]:
                    self.finish(p)
            if batch:
                last = time.monotonic()
                continue
            # transactional topics end with commit markers that are never delivered
            tps = [TopicPartition(self.topic, p) for p in sorted(self.live)]
            for tp in self.consumer.position(tps):
                if tp.offset >= self.ends[tp.partition]:
                    self.finish(tp.partition)
            if self.live and time.monotonic() - last > IDLE_TIMEOUT_S:
                raise ExplainError(
                    f"{self.topic}: nothing read for {IDLE_TIMEOUT_S:.0f} s below the end"
                    f" offsets of partitions {sorted(self.live)} (an open transaction?)"
                )

    def close(self) -> None:
        """Leave the broker."""
        self.consumer.close()


def find_event(settings: StackSettings, event_id: str, topic: str = EVENTS) -> dict[str, Any]:
    """Return the decoded event ``event_id`` of ``topic``, scanning it from the beginning.

    Replaceable by an indexed lookup (ClickHouse): the rest of the command needs only the
    decoded value.

    Raises:
        ExplainError: The topic is empty or holds no such event.
    """
    codecs = _Codecs(settings.registry_url)
    needle = event_id.encode()  # an Avro string is its UTF-8 bytes: skip the others undecoded
    reader = _Reader(settings, topic)
    scanned = 0
    try:
        if not reader.live:
            raise ExplainError(f"{topic} is empty: no event to explain")
        for msg in reader:
            scanned += 1
            data = msg.value() or b""
            if needle in data:
                event = codecs.decode(data)
                if str(event["event_id"]) == event_id:
                    return event
    finally:
        reader.close()
    raise ExplainError(f"event {event_id} is not on {topic} ({scanned} records scanned)")


def read_raw(
    settings: StackSettings, until_ts: int, partitions: int, progress: Progress | None = None
) -> Generator[dict[str, Any], None, None]:
    """Yield decoded ``md.raw.v0`` values, each partition up to its first one past ``until_ts``.

    Values that do not decode are skipped (the lattice dead-lettered them too).

    Raises:
        ExplainError: The topic is empty, or a value sits on another partition than the
            sink's partitioner gives (the re-run would put it elsewhere).
    """
    codecs = _Codecs(settings.registry_url)
    reader = _Reader(settings, RAW)
    try:
        if not reader.live:
            raise ExplainError(f"{RAW} is empty: nothing to re-run")
        task = None if progress is None else progress.add_task(RAW, total=reader.total)
        for n, msg in enumerate(reader, 1):
            if progress is not None and task is not None and n % 500 == 0:
                progress.update(task, completed=n)
            p = msg.partition() or 0
            try:
                value = codecs.decode(msg.value() or b"")
            except WireFormatError:
                continue
            if _partition_of(value, partitions) != p:
                raise ExplainError(
                    f"{RAW}/{p}@{msg.offset()}: asset {value['asset_uid']} belongs on partition"
                    f" {_partition_of(value, partitions)} by the sink's partitioner"
                )
            yield value
            if int(value["exchange_ts"]) > until_ts:
                reader.finish(p)
    finally:
        reader.close()


def _partition_of(value: Mapping[str, Any], partitions: int) -> int:
    # TopologyTestDriver.partition_of: heartbeats carry their partition, the rest hash the key
    body = value["body"]
    if int(value["asset_uid"]) == 0 and "partition" in body:
        return int(body["partition"])
    return partition_for(str(value["asset_uid"]).encode(), partitions)


# ------------------------------------------------------------------------------ rendering
def render(x: Explanation) -> str:
    """Return the explanation as plain text for a terminal, one section per concern."""
    parts = [_head(x), _packs(x), _detector(x), _scoring(x), _row(x), _frame(x), _rerun(x)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]" if value else "-"
    return str(value)


def _pairs(items: Any, indent: int = 17, width: int = 100) -> str:
    """Lay ``name value`` pairs out in lines of at most ``width`` columns."""
    lines, line = [], ""
    for name, value in items:
        cell = f"{name} {_fmt(value)}"
        if line and indent + len(line) + 2 + len(cell) > width:
            lines.append(line)
            line = cell
        else:
            line = f"{line}  {cell}" if line else cell
    lines.append(line or "-")
    return ("\n" + " " * indent).join(lines)


def _line(label: str, text: str) -> str:
    return f"  {label:<15}{text}"


def _head(x: Explanation) -> str:
    e, v = x.event, x.verdict
    if v.reproduced:
        verdict = (
            f"REPRODUCED  severity live {v.severity_live}, re-run {v.severity_rerun}; {v.note}"
        )
    elif v.produced and v.difference is not None:
        d = v.difference
        verdict = (
            f"NOT REPRODUCED  severity live {v.severity_live}, re-run {v.severity_rerun};"
            f" first difference at {d.path}: live {_fmt(d.live)}, re-run {_fmt(d.rerun)}"
        )
    else:
        verdict = f"NOT REPRODUCED  {v.note}"
    return "\n".join(
        [
            f"EVENT  {x.event_id}",
            _line(
                "what",
                f"{e['symbol']}  {e['class']}/{e['subtype']}  tf {e['tf']}  severity"
                f" {e['severity']}  revision {e['revision']}",
            ),
            _line("when", f"{iso_ms(e['exchange_ts'])}  emitted_at {iso_ms(e['emitted_at'])}"),
            _line("debounce_key", e["debounce_key"]),
            "VERDICT  " + verdict,
        ]
    )


def _packs(x: Explanation) -> str:
    ev, lo = x.packs.event, x.packs.loaded
    lines = ["PACKS  the event's provenance | the loaded packs"]
    for key, extra in (
        ("feature_pack", "feature_hash"),
        ("detector_pack", "detector_hash"),
        ("universe_policy_rev", None),
    ):
        mark = "" if ev[key] == lo[key] else "   <-- MISMATCH"
        hashed = f"  {lo[extra]}" if extra else ""
        label = key.removeprefix("universe_")
        lines.append(_line(label, f"{_fmt(ev[key])} | {_fmt(lo[key])}{hashed}{mark}"))
    same = ev["config_hash"] == lo["config_hash"]
    lines.append(_line("config_hash", f"{ev['config_hash']}  (event)"))
    lines.append(_line("", f"{lo['config_hash']}  (loaded) {'same' if same else '<-- MISMATCH'}"))
    lines.append(_line("made by", f"{ev['producer']}  git_commit {ev['git_commit']}"))
    lines += [f"  !! PACK MISMATCH: {m}" for m in x.packs.mismatches]
    return "\n".join(lines)


def _detector(x: Explanation) -> str:
    t = x.trigger
    if t is None:
        return (
            f"DETECTOR  the re-run's detectors did not trigger {x.event['subtype']} on"
            f" {x.event['symbol']} at this minute (revision {x.event['revision']})"
        )
    params = [(k, v) for k, v in sorted(x.params.items()) if k != "threshold" and v is not None]
    secondary = [
        f"{_fmt(z)}" + (f" clamp {_fmt(list(b))}" if b else "")
        for z, b in zip(
            t.secondary_z, t.secondary_bounds or (None,) * len(t.secondary_z), strict=True
        )
    ]
    lines = [
        f"DETECTOR  {t.detector_id}  class {t.event_class}  subtype {t.subtype}  tf {t.tf}"
        f"  window {t.window_sec} s  tier {t.tier}",
        _line("threshold", f"{_fmt(x.threshold)} (tier {t.tier})"),
        _line("params", _pairs(params)),
        _line(
            "primary_z",
            _fmt(t.primary_z)
            + (f"  IQR clamp {_fmt(list(t.primary_bounds))}" if t.primary_bounds else ""),
        ),
        _line("secondary_z", ", ".join(secondary) or "-"),
        _line(
            "penalties",
            _pairs(
                [
                    ("breadth", t.breadth),
                    ("dq_penalty", t.dq_penalty),
                    ("illiquidity_penalty", t.illiquidity_penalty),
                ]
            ),
        ),
        _line("inputs", _pairs(t.features)),
        _line("flags", ", ".join(t.flags) or "-"),
        _line("detail", _pairs(t.detail)),
    ]
    return "\n".join(lines)


def _scoring(x: Explanation) -> str:
    s = x.score
    if s is None:
        return ""
    p = s.policy
    prev = s.previous
    before = "none (no emission of this key in memory)"
    if prev is not None:
        before = (
            f"last emission {iso_ms(prev.last_emit_ts)} {prev.last_subtype} severity"
            f" {prev.last_severity}; cooldown until {iso_ms(prev.cooldown_until_ts)}"
        )
    outcome = s.outcome + (f" ({s.cause})" if s.cause else "")
    if s.first_seen_at is not None:
        outcome += f"; first_seen_at {iso_ms(s.first_seen_at)}"
    if s.coalesced:
        outcome += f"; coalesced {', '.join(s.coalesced)}"
    lines = [
        "SCORING  raw = w1 primary + w2 max(0, secondary) + w3 breadth + novelty - penalty",
        _line(
            "policy",
            _pairs(
                [
                    ("w1", p.w1),
                    ("w2", p.w2),
                    ("w3", p.w3),
                    ("a", p.a),
                    ("publish_threshold", p.publish_threshold),
                    ("cooldown_s", p.cooldown_ms // 1000),
                    ("half_life_s", p.half_life_s),
                    ("budget_per_min", p.budget_per_symbol_min),
                ]
            ),
        ),
        _line(
            "core",
            f"{_fmt(p.w1)} x {_fmt(s.primary)} + {_fmt(p.w2)} x {_fmt(max(0.0, s.secondary))}"
            f" + {_fmt(p.w3)} x {_fmt(s.breadth)} = {_fmt(s.core)}",
        ),
        _line("novelty", f"+{_fmt(s.novelty)}  {s.novelty_rule}"),
        _line("penalty", f"-{_fmt(s.penalty)}"),
        _line("raw", _fmt(s.raw)),
        _line(
            "severity",
            f"{s.severity} = floor(100 sigmoid({_fmt(p.a)} (raw - {_fmt(s.sigmoid_center)}))"
            f" + 0.5); publish threshold {p.publish_threshold}",
        ),
        _line("outcome", outcome),
        _line("key before", before),
    ]
    for i, (t, sc) in enumerate(x.siblings):
        lines.append(_line("" if i else "same minute", _sibling(t.detector_id, sc)))
    return "\n".join(lines)


def _sibling(name: str, s: Score) -> str:
    return f"{name} severity {s.severity} {s.outcome}"


def _row(x: Explanation) -> str:
    row = x.feature_row
    if row is None:
        return "FEATURE ROW  the re-run produced no 1m row of the asset at this minute"
    lines = [
        f"FEATURE ROW  {row['symbol']} {row['tf']} {iso_ms(row['exchange_ts'])} revision"
        f" {row['revision']} (revisions produced: {_fmt(list(x.revisions))})",
        *_row_body(row),
    ]
    if x.tf_row is not None:
        t = x.tf_row
        lines.append(
            f"ROW OF {t['tf']}  {iso_ms(t['exchange_ts'])} revision {t['revision']}"
            " (the latest of the event's timeframe)"
        )
        lines += _row_body(t)
    return "\n".join(lines)


_DQ = (
    "dq_status", "dq_reasons", "warmup", "illiquidity_hit", "final", "ingest_lag_ms",
    "clock_skew_ms", "book_staleness_ms", "oi_staleness_ms", "dropped_ticks", "late_ticks",
)  # fmt: skip
_ID = ("asset_uid", "venue", "symbol", "tf", "exchange_ts", "revision", "ingest_ts", "source")


def _row_body(row: Mapping[str, Any]) -> list[str]:
    bases = [k.removeprefix("b_mean_") for k in row if k.startswith("b_mean_")]
    shown = set(_DQ) | set(_ID)
    table = [f"  {'baselines':<15}{'feature':<10}{'b_mean':>14}{'b_scale':>14}{'z':>12}{'q':>10}"]
    for base in bases:
        z = next((k for k in row if k.startswith(f"z_{base}_")), None)
        q = next((k for k in row if k.startswith(f"q_{base}_")), None)
        shown |= {f"b_mean_{base}", f"b_scale_{base}", z or "", q or ""}
        table.append(
            f"  {'':<15}{base:<10}{_fmt(row[f'b_mean_{base}']):>14}"
            f"{_fmt(row[f'b_scale_{base}']):>14}{_fmt(row.get(z or '')):>12}"
            f"{_fmt(row.get(q or '')):>10}"
        )
    quantiles = [(k, row[k]) for k in row if k.startswith("q_") and k not in shown]
    flags = [k for k in row if k.startswith("is_") and row[k] is True]
    shown |= {k for k in row if k.startswith(("q_", "is_"))}
    values = [(k, v) for k, v in row.items() if k not in shown]
    return [
        _line("dq", _pairs([(k, row.get(k)) for k in _DQ])),
        *table,
        _line("quantiles", _pairs(quantiles)),
        _line("flags", ", ".join(flags) or "-"),
        _line("values", _pairs(values)),
    ]


def _frame(x: Explanation) -> str:
    f = x.market_frame
    if f is None:
        return "MARKET FRAME  the re-run's market stage sent no frame of this minute"
    uid = x.event["asset_uid"]
    mine = next((a for a in f.get("assets") or () if a["asset_uid"] == uid), None)
    keys = (
        "leader", "leader_prev", "dominance_share", "shock_count_5s", "shock_count_approx",
        "return_dispersion_m_5", "vol_dispersion_m_5", "time_to_next_funding_sec",
        "universe_size", "universe_rev", "universe_policy_rev", "dq_status", "rs_top", "rs_bottom",
    )  # fmt: skip
    lines = [
        f"MARKET FRAME  partition {f['partition']}  {iso_ms(f['exchange_ts'])}",
        _line("market", _pairs([(k, f.get(k)) for k in keys])),
        _line(
            "this asset",
            _pairs((k, v) for k, v in mine.items() if k not in ("asset_uid", "symbol"))
            if mine
            else "not in the frame's assets",
        ),
    ]
    return "\n".join(lines)


def _rerun(x: Explanation) -> str:
    r = x.rerun
    text = (
        f"RE-RUN  {r['records']} {RAW} records piped, each partition up to its first record\n"
        f"        past {iso_ms(r['cutoff_ts'])}; dead letters {r['dead_letters']}"
    )
    if r["unfinished_partitions"]:
        text += f"; partitions {r['unfinished_partitions']} ended before that"
    return text


def setup_of(args: argparse.Namespace) -> Setup:
    """Return the packs of the command's options (the workers' defaults) and the partitions."""
    return Setup(
        feature_pack=load_feature_pack(path=args.feature_pack)
        if args.feature_pack
        else load_feature_pack(),
        detector_pack=load_detector_pack(path=args.detector_pack)
        if args.detector_pack
        else load_detector_pack(),
        policy=load_universe_policy(path=args.universe_policy)
        if args.universe_policy
        else load_universe_policy(),
        partitions=spec.topic(RAW).partitions,
    )


def run(args: argparse.Namespace, settings: StackSettings, setup: Setup) -> int:
    """Explain ``args.event_id`` with ``setup``; print it; return the exit status."""
    try:
        event_id = str(uuid.UUID(args.event_id))
    except ValueError:
        raise ExplainError(f"{args.event_id!r} is not an event id (a UUID)") from None
    with _err.status(f"looking for {event_id} on {args.topic}..."):
        event = find_event(settings, event_id, args.topic)
    until = cutoff_ts(event, setup.feature_pack)
    columns = (
        TextColumn(f"re-running {RAW} up to {iso_ms(until)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        Progress(*columns, console=_err, transient=True) as progress,
        closing(read_raw(settings, until, setup.partitions, progress)) as raw,
    ):
        x = explain(event, raw, setup, allow_mismatch=args.allow_mismatch)
    if args.json:
        sys.stdout.write(json.dumps(to_json(x), sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render(x))
    return exit_status(x)


def exit_status(x: Explanation) -> int:
    """Return 0 when the re-run reproduced the event, else 2."""
    return EXIT_REPRODUCED if x.verdict.reproduced else EXIT_DIFFERS


def _cmd_explain(args: argparse.Namespace, settings: StackSettings) -> int:
    return run(args, settings, setup_of(args))


def add_explain_parser(sub: Any) -> None:
    """Add ``alpha explain``."""
    cmd = sub.add_parser(
        "explain",
        help="why an event fired: re-run the topology from md.raw.v0 and compare (0/2 exit)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument("event_id", metavar="EVENT_ID", help="the event's id (a UUIDv7)")
    cmd.add_argument(
        "--topic",
        default=EVENTS,
        choices=(EVENTS, "alpha.events.replay.v0"),
        help="where the event is (default alpha.events.v0)",
    )
    cmd.add_argument(
        "--feature-pack", type=Path, help="the feature pack YAML the lattice ran (default v1.0)"
    )
    cmd.add_argument(
        "--detector-pack", type=Path, help="the detector pack YAML the detector ran (default v0.1)"
    )
    cmd.add_argument(
        "--universe-policy",
        type=Path,
        help="the universe policy YAML the market and detector ran (default v1)",
    )
    cmd.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="re-run even when the packs are not the event's (its id cannot reproduce)",
    )
    cmd.add_argument("--json", action="store_true", help="one JSON object (sorted keys)")
    cmd.set_defaults(func=_cmd_explain)
