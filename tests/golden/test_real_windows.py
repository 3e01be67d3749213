"""Golden windows on real recordings (spec 002 §16.3): recorded data in, frozen bytes out.

Each window is an *input* -- bundled folders under ``data/samples``, a half-open window of
recorded time ``[from, to)`` (``ingest_ts``: the receive time of a capture, the exchange time of
a candle or funding sample; ``alpha ingest replay --from-time/--to-time`` takes the same bounds)
and the packs -- and its *expected output*. The replay (:class:`connectors.replay.source.Replay`)
feeds the :class:`topology.pipeline_driver.PipelineDriver` the way ``alpha ingest replay`` feeds
``md.raw.v0`` (records keyed by asset, a heartbeat to every partition per second of stream
time). ``real_windows.json`` holds, per window, the inputs, the replay's counts, the dead letters,
a sha256 over every ``lattice.v0`` payload (Avro bytes after the 5-byte wire header, in output
order: rows, seals and market frames), the rows by ``tf/dq_status``, and every event as its spec
JSON (``schemas.events.to_json``) with the sha256 of its Avro payload. ``pytest tests/golden
--update-golden`` prints the diff and rewrites the file; review the diff before committing it.

What the windows show (docs/detection.md "Golden windows"):

* The WebSocket captures carry no asset context (no OI), so every tick-built minute is
  ``partial`` (``oi_stale``) and baselines never update: they never fire, gaps and outages
  included. Their lattice bytes pin bars, microstructure, DQ, gaps and duplicate trades.
* Candles carry OHLCV only. With the shipped pack a candle row stays in warm-up forever (spread,
  OI and basis baselines never fill), so the candle windows use the shipped pack with
  ``baselines.features = [vol, ret_abs]`` (§16.1, "minimal normalization"); each window starts
  ``min_samples`` minutes (60, or the shipped 200) before what it judges.
* The largest 1m move of the 4.7 days of candles (found from the files, pinned) must make a
  detector fire on its coin within 5 minutes; a restart halfway gives the same bytes.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow.feather as feather
import pytest

from connectors.assets import AssetRegistry
from connectors.replay.source import Replay
from packs.detector import load_detector_pack
from packs.feature import FeaturePack, load_feature_pack
from packs.universe import load_universe_policy
from schemas import raw
from schemas.events import iso_ms, to_json
from schemas.raw import RawValue, Source
from topology.pipeline_driver import PipelineDriver
from topology.settings import REPO_ROOT

GOLDEN = Path(__file__).with_name("real_windows.json")
SAMPLES = Path("data") / "samples"
CANDLES = SAMPLES / "hyperliquid-perps-candles-funding-freqtrade-2025-07"
EVENTS, LATTICE = "alpha.events.v0", "lattice.v0"
HEADER = 5  # Confluent wire header (magic + schema id): the driver's ids, not the payload's
MINUTE_MS = 60_000
#: Candles carry OHLCV only: normalise what they have (spec 002 §16.1, "minimal normalization").
CANDLE_PACK = {"baselines.features": ["vol", "ret_abs"]}
#: The largest 1m close-to-close move of the 12 perps' 4.7 days (pinned: see test below).
SHOCK_COIN, SHOCK_LABEL = "ENA", "2025-07-21T13:27:00Z"
SHOCK_SLACK_MS = 5 * MINUTE_MS


@dataclass(frozen=True)
class Window:
    """One golden window: what is replayed, with which packs, and why."""

    name: str
    folders: tuple[Path, ...]
    start: str  # ISO-8601 UTC, inclusive
    end: str  # exclusive
    note: str
    pack_changes: dict[str, Any] = field(default_factory=dict)  # dotted path -> value
    #: Reasons of the replay's dead letters the recording is known to produce.
    known_dead_letters: tuple[str, ...] = ()

    def bounds(self) -> tuple[int, int]:
        return ms_of(self.start), ms_of(self.end)

    def feature_pack(self) -> FeaturePack:
        data = load_feature_pack().model_dump()
        for path, value in self.pack_changes.items():
            *parents, leaf = path.split(".")
            node = data
            for p in parents:
                node = node[p]
            node[leaf] = value
        return FeaturePack.model_validate(data)


WINDOWS = (
    Window(
        "ws-calibration-2025-09-04",
        (SAMPLES / "hyperliquid-ws-calibration-2025-09-04",),
        "2025-09-04T19:46:00Z",
        "2025-09-04T20:22:00Z",
        "the whole 35 min capture of BTC/ETH/SOL trades, BBO, L2: one 18 s reconnect with 27 "
        "re-sent trades; no OI feed, so every minute is partial: nothing may fire",
    ),
    Window(
        "ws-collector-2025-09-03",
        (SAMPLES / "hyperliquid-ws-collector-2025-09-03",),
        "2025-09-03T12:55:00Z",
        "2025-09-03T13:05:00Z",
        "the whole 9 min capture of BTC/ETH/SOL with 250 s and 51 s outages (gap markers, stale "
        "minutes) and 32 re-sent trades: outages never fire",
    ),
    Window(
        "candles-2025-07-22-midnight",
        (CANDLES,),
        "2025-07-21T22:30:00Z",
        "2025-07-22T01:00:00Z",
        "12 perps' 1m candles + hourly funding: 60 minutes of warm-up (min_samples 60), then "
        "23:30-01:00 UTC across midnight (cvd_level reset, IQR digests refreshed; funding "
        "samples at 23:00 and 00:00)",
        {**CANDLE_PACK, "baselines.min_samples": 60},
    ),
    Window(
        "candles-ena-shock-2025-07-21",
        (CANDLES,),
        "2025-07-21T09:50:00Z",
        "2025-07-21T13:45:00Z",
        "the largest 1m move of the 4.7 days: ENA +3.2 % in the minute to 13:27 UTC (+2.9 % the "
        "minute before, -3.0 % to 13:32), shipped min_samples 200 (ENA warm from 13:10); "
        "BTC/ETH candles start at 11:28, their funding at 10:00 (stale no_data minutes between)",
        CANDLE_PACK,
    ),
)
SHOCK = WINDOWS[3]


def ms_of(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@dataclass
class Recorder:
    """The replay's output, kept in order: ``(record, None)`` or ``(None, heartbeat args)``."""

    items: list[tuple[RawValue | None, tuple[int, int, Source] | None]] = field(
        default_factory=list
    )
    dead: list[str] = field(default_factory=list)

    def send(self, value: RawValue) -> None:
        self.items.append((value, None))

    def heartbeat(self, stream_ts: int, ingest_ts: int, source: Source) -> None:
        self.items.append((None, (stream_ts, ingest_ts, source)))

    def dead_letter(
        self, original: bytes, reason: str, stage: str, key: bytes | None = None
    ) -> None:
        self.dead.append(f"{stage}: {reason}")

    def feed(self, driver: PipelineDriver, start: int = 0, stop: int | None = None) -> None:
        """Pipe items as ``RawSink`` writes them: records by key, heartbeats to every partition."""
        for value, beat in self.items[start:stop]:
            if value is not None:
                driver.pipe(value)
                continue
            assert beat is not None
            for p in range(driver.partitions):
                driver.pipe(raw.heartbeat(p, *beat), partition=p)


@dataclass
class Run:
    """One window run: the golden summary, the driver, the recorded replay."""

    summary: dict[str, Any]
    driver: PipelineDriver
    recorder: Recorder


def new_driver(window: Window, flush_every: int = 10_000) -> PipelineDriver:
    return PipelineDriver(window.feature_pack(), flush_every=flush_every)


def run(window: Window) -> Run:
    """Replay one window through the pipeline; return its golden summary."""
    recorder = Recorder()
    stats = Replay(AssetRegistry()).run(
        [REPO_ROOT / f for f in window.folders], recorder, window=window.bounds()
    )
    driver = new_driver(window)
    recorder.feed(driver)
    driver.flush()
    events: list[dict[str, Any]] = [
        {"avro_sha256": hashlib.sha256(s.data[HEADER:]).hexdigest(), "event": to_json(s.value)}
        for s in driver.outputs
        if s.topic == EVENTS
    ]
    summary: dict[str, Any] = {
        "note": window.note,
        "input": inputs_of(window, driver.partitions),
        "replay": {
            "inputs": stats.inputs,
            "outside_window": stats.outside_window,
            "records": dict(sorted(stats.records.items())),
            "heartbeats": stats.heartbeats,
            "gaps": stats.gaps,
            "duplicate_trades": stats.parser["duplicate_trades"],
        },
        "dead_letters": sorted(recorder.dead),
        "lattice": lattice_of(driver),
        "events_by_subtype": dict(sorted(Counter(e["event"]["subtype"] for e in events).items())),
        "events": events,
    }
    return Run(summary, driver, recorder)


def inputs_of(window: Window, partitions: int) -> dict[str, Any]:
    """Return what a window replays, with the packs' versions and hashes."""
    pack, detector, policy = window.feature_pack(), load_detector_pack(), load_universe_policy()
    return {
        "folders": [str(f) for f in window.folders],
        "from": window.start,
        "to": window.end,
        "from_ms": window.bounds()[0],
        "to_ms": window.bounds()[1],
        "feature_pack": pack.feature_pack,
        "feature_pack_changes": window.pack_changes,
        "feature_pack_hash": pack.hash(),
        "min_samples": pack.baselines.min_samples,
        "detector_pack": detector.version,
        "detector_pack_hash": detector.hash(),
        "universe_policy_rev": policy.universe_policy_rev,
        "universe_policy_hash": policy.hash(),
        "partitions": partitions,
    }


def lattice_of(driver: PipelineDriver) -> dict[str, Any]:
    """Return the count and sha256 of every ``lattice.v0`` payload, rows by ``tf/dq_status``."""
    digest = hashlib.sha256()
    records = 0
    rows: Counter[str] = Counter()
    for s in driver.outputs:
        if s.topic == LATTICE:
            digest.update(s.data[HEADER:])
            records += 1
            if s.key is not None:  # a feature row (seals and market frames have no key)
                rows[f"{s.value['tf']}/{s.value['dq_status']}"] += 1
    return {"records": records, "rows": dict(sorted(rows.items())), "sha256": digest.hexdigest()}


def render(summaries: dict[str, dict[str, Any]]) -> str:
    """Return the golden JSON: windows in order; one input item, section or event per line."""
    parts = []
    for name, summary in summaries.items():
        lines = [_section(key, value) for key, value in summary.items()]
        parts.append(f" {json.dumps(name)}: {{\n" + ",\n".join(lines) + "\n }")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _section(key: str, value: Any) -> str:
    if key == "events" and value:
        items = [json.dumps(e, sort_keys=True) for e in value]
    elif key == "input":
        items = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in value.items()]
    else:
        return f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}"
    brackets = "[]" if key == "events" else "{}"
    body = ",\n".join(f"   {item}" for item in items)
    return f"  {json.dumps(key)}: {brackets[0]}\n{body}\n  {brackets[1]}"


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return {w.name: run(w) for w in WINDOWS}


def test_windows_equal_the_golden_file(
    runs: dict[str, Run], request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    text = render({name: r.summary for name, r in runs.items()})
    old = GOLDEN.read_text() if GOLDEN.exists() else ""
    diff = "".join(
        difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(GOLDEN), "this run")
    )
    if request.config.getoption("--update-golden"):
        with capsys.disabled():
            sys.stdout.write(diff or f"{GOLDEN.name}: no change\n")
        GOLDEN.write_text(text)
        return
    assert old, f"{GOLDEN} is missing: run pytest tests/golden --update-golden"
    assert not diff, f"real windows differ from {GOLDEN.name}:\n{diff[:6000]}"


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: w.name)
def test_no_dead_letters_but_the_known_ones(runs: dict[str, Run], window: Window) -> None:
    r = runs[window.name]
    assert r.driver.dead_letters == []
    assert r.driver.stage_dead_letters == []
    assert sorted(r.recorder.dead) == sorted(window.known_dead_letters)


def test_captures_never_fire_outages_included(runs: dict[str, Run]) -> None:
    for window in WINDOWS[:2]:
        assert runs[window.name].summary["events"] == [], window.name
    outages = runs["ws-collector-2025-09-03"].summary
    assert outages["replay"]["gaps"] > 0
    assert outages["lattice"]["rows"]["m1/stale"] > 0


def test_a_restarted_pipeline_gives_the_same_bytes(runs: dict[str, Run]) -> None:
    """The shock window again, restarted from the stores halfway and amid the shock's events."""
    want = runs[SHOCK.name]
    items = want.recorder.items
    amid = next(
        i
        for i, (v, _b) in enumerate(items)
        if v is not None and v["ingest_ts"] >= ms_of(SHOCK_LABEL)
    )
    cuts = (0, len(items) // 2, amid, len(items))
    assert cuts == tuple(sorted(set(cuts)))
    driver = new_driver(SHOCK, flush_every=2_000)  # another flush cadence, too
    for start, stop in pairwise(cuts):
        if start:
            driver.restart()
        want.recorder.feed(driver, start, stop)
    driver.flush()
    for topic in (EVENTS, LATTICE):
        got = [s.data for s in driver.outputs if s.topic == topic]
        assert got == [s.data for s in want.driver.outputs if s.topic == topic], topic
    assert any(s.topic == EVENTS for s in driver.outputs)


def largest_move() -> tuple[str, int, float]:
    """Return ``(coin, bar label ms, return)`` of the largest 1m close-to-close move."""
    best = ("", 0, 0.0)
    for path in sorted((REPO_ROOT / CANDLES).glob("*-1m-futures.feather")):
        table = feather.read_table(path, columns=["date", "close"])
        opens = [int(d.timestamp() * 1000) for d in table.column("date").to_pylist()]
        close = table.column("close").to_pylist()
        for i in range(1, len(opens)):
            ret = close[i] / close[i - 1] - 1
            if opens[i] - opens[i - 1] == MINUTE_MS and abs(ret) > abs(best[2]):
                best = (path.name.split("_")[0], opens[i] + MINUTE_MS, ret)
    return best


def test_the_largest_real_move_fires_on_its_coin(runs: dict[str, Run]) -> None:
    coin, label, ret = largest_move()
    assert (coin, iso_ms(label)) == (SHOCK_COIN, SHOCK_LABEL), (coin, iso_ms(label), ret)
    start, end = SHOCK.bounds()
    warm_ts = start + SHOCK.feature_pack().baselines.min_samples * MINUTE_MS
    assert warm_ts < label - SHOCK_SLACK_MS, "the window must be warm 5 min before the move"
    assert label + SHOCK_SLACK_MS < end
    driver = runs[SHOCK.name].driver
    near = [
        (iso_ms(e["exchange_ts"]), e["subtype"], e["severity"])
        for e in driver.events()
        if e["symbol"] == coin and abs(e["exchange_ts"] - label) <= SHOCK_SLACK_MS
    ]
    row = next(
        s.value
        for s in driver.read(LATTICE, rows_only=True)
        if (s.value["symbol"], s.value["tf"], s.value["exchange_ts"]) == (coin, "m1", label)
    )
    seen = {k: row[k] for k in ("ret_m_1", "z_ret_abs_m_1", "z_vol_m_1", "dq_status", "warmup")}
    assert near, f"nothing fired on {coin} within 5 min of {iso_ms(label)}; its row: {seen}"
    assert row["ret_m_1"] == pytest.approx(ret, rel=1e-9)
    assert any(t.startswith("price_spike_up") for _ts, t, _sev in near), near
