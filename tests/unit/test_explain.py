"""``alpha explain``: synthetic scenarios re-run through the core, no broker (spec 002 §13.5).

One ``basket_shock`` run (4 assets, 50 minutes, seed 7, injection at minute 45, 2 partitions)
through the :class:`PipelineDriver` is the "live" system; its raw values, heartbeats included
(as the ingest sink writes them), are what ``md.raw.v0`` would hold. Events of four classes are
explained from those values and must reproduce; changed copies of them must not.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from connectors.heartbeats import HeartbeatClock
from connectors.synthetic.generator import generate
from packs.detector import detector_id, load_detector_pack
from packs.universe import load_universe_policy
from processors.detect.scoring import sigmoid
from schemas import raw
from schemas.ids import partition_for
from tests.kit.lattice import small_pack, synthetic_detector_pack
from topology import explain_cli
from topology.explain import (
    ExplainError,
    Explanation,
    PackMismatchError,
    Rerun,
    Setup,
    build,
    check_packs,
    explain,
    first_difference,
    rerun,
    to_json,
)
from topology.pipeline_driver import PipelineDriver
from topology.settings import StackSettings

ASSETS, MINUTES, SEED, INJECT, WARMUP, PARTITIONS = 4, 50, 7, 45, 30, 2
#: One event per class family: a spike, a price shock, a market-context event, a divergence.
SUBTYPES = (
    "vol_spike_m_1",
    "price_spike_down_m_1",
    "basket_shock_dt_5s",
    "price_flat_cvd_trend_m_5",
)
UNKNOWN_ID = "01990000-0000-7000-8000-000000000000"

Event = dict[str, Any]


def topic_values(values: Iterator[raw.RawValue], partitions: int) -> list[raw.RawValue]:
    """Return ``values`` with the heartbeats the ingest sink adds (as ``pipe_stream`` does)."""
    clock = HeartbeatClock(1000)
    out: list[raw.RawValue] = []
    for v in values:
        out.append(v)
        due = clock.advance(int(v["exchange_ts"]))
        if due is not None:
            out += [
                raw.heartbeat(p, due, int(v["ingest_ts"]), v["source"]) for p in range(partitions)
            ]
    return out


@pytest.fixture(scope="module")
def setup() -> Setup:
    return Setup(
        small_pack(min_samples=WARMUP),
        synthetic_detector_pack(),
        load_universe_policy(),
        PARTITIONS,
    )


@pytest.fixture(scope="module")
def live(setup: Setup) -> tuple[list[raw.RawValue], PipelineDriver]:
    values = topic_values(
        generate(
            "basket_shock", assets=ASSETS, minutes=MINUTES, seed=SEED, inject_at_minute=INJECT
        ),
        PARTITIONS,
    )
    driver = PipelineDriver(
        setup.feature_pack,
        setup.detector_pack,
        setup.policy,
        partitions=PARTITIONS,
        flush_every=10_000,
    )
    driver.pipe_all(values)
    assert driver.dead_letters == []
    assert driver.stage_dead_letters == []
    return values, driver


def first_event(driver: PipelineDriver, subtype: str) -> Event:
    return next(e for e in driver.events() if e["subtype"] == subtype)


@pytest.fixture(scope="module")
def explained(
    live: tuple[list[raw.RawValue], PipelineDriver], setup: Setup
) -> Callable[[str], tuple[Event, Rerun, Explanation]]:
    """Return the explanation of the first event of a subtype (each re-run made once)."""
    values, driver = live
    done: dict[str, tuple[Event, Rerun, Explanation]] = {}

    def get(subtype: str) -> tuple[Event, Rerun, Explanation]:
        if subtype not in done:
            event = first_event(driver, subtype)
            run = rerun(event, values, setup)
            done[subtype] = (event, run, build(event, run, setup))
        return done[subtype]

    return get


def live_row(driver: PipelineDriver, event: Mapping[str, Any]) -> dict[str, Any]:
    rows = [
        s.value
        for s in driver.read("lattice.v0", rows_only=True)
        if (s.value["asset_uid"], s.value["tf"], s.value["exchange_ts"], s.value["revision"])
        == (event["asset_uid"], "m1", event["exchange_ts"], event["revision"])
    ]
    return rows[-1]


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_an_event_reproduces_from_the_raw_values(
    subtype: str, explained: Any, live: tuple[list[raw.RawValue], PipelineDriver]
) -> None:
    event, run, x = explained(subtype)
    values, driver = live
    v = x.verdict
    assert (v.reproduced, v.produced, v.difference) == (True, True, None), v
    assert v.severity_live == v.severity_rerun == event["severity"]
    assert x.packs.mismatches == ()
    # the detector, as the trigger carries it
    assert x.trigger is not None
    assert x.trigger.detector_id == detector_id(subtype)
    assert (x.trigger.subtype, x.trigger.asset_uid) == (subtype, event["asset_uid"])
    assert dict(x.trigger.features) == event["local_state"]["features"]
    assert x.threshold is not None
    assert x.threshold > 0
    # the scoring, term by term, lands on the event's severity
    s = x.score
    assert s is not None
    assert (s.severity, s.outcome) == (event["severity"], "emitted")
    assert s.raw == pytest.approx(s.core + s.novelty - s.penalty)
    assert s.severity == math.floor(100 * sigmoid(s.policy.a * (s.raw - s.sigmoid_center)) + 0.5)
    assert s.first_seen_at == event["novelty"]["first_seen_at"]
    # the asset's row of the minute as the lattice produced it, and the partition's frame
    assert x.feature_row == live_row(driver, event)
    assert {"b_mean_vol", "b_scale_vol", "z_vol_m_1", "q_vol_m_1", "dq_status"} <= set(
        x.feature_row
    )
    assert x.market_frame is not None
    assert x.market_frame["exchange_ts"] == event["exchange_ts"]
    assert x.market_frame["partition"] == partition_for(
        str(event["asset_uid"]).encode(), PARTITIONS
    )
    # it stopped once the minute was decided
    assert run.unfinished == ()
    assert run.records < len(values)


def test_a_changed_severity_is_not_reproduced(explained: Any, setup: Setup) -> None:
    event, run, _ = explained("vol_spike_m_1")
    tampered = {**event, "severity": event["severity"] - 1}
    v = build(tampered, run, setup).verdict
    assert (v.reproduced, v.produced) == (False, True)
    assert (v.severity_live, v.severity_rerun) == (event["severity"] - 1, event["severity"])
    assert v.difference is not None
    assert (v.difference.path, v.difference.rerun) == ("severity", event["severity"])


def test_a_changed_payload_field_is_named_by_its_path(explained: Any, setup: Setup) -> None:
    event, run, _ = explained("price_spike_down_m_1")
    tampered = copy.deepcopy(event)
    tampered["local_state"]["features"]["z_vol_m_1"] += 1.0
    v = build(tampered, run, setup).verdict
    assert not v.reproduced
    assert v.difference is not None
    assert v.difference.path == "local_state.features.z_vol_m_1"
    assert v.severity_live == v.severity_rerun


def test_replay_of_is_not_a_difference(explained: Any, setup: Setup) -> None:
    event, run, _ = explained("vol_spike_m_1")
    replayed = copy.deepcopy(event)
    replayed["provenance"]["replay_of"] = True
    assert build(replayed, run, setup).verdict.reproduced


def test_an_unknown_id_was_never_produced(explained: Any, setup: Setup) -> None:
    subtype = "basket_shock_dt_5s"
    event, run, _ = explained(subtype)
    v = build({**event, "event_id": UNKNOWN_ID}, run, setup).verdict
    assert (v.reproduced, v.produced, v.severity_rerun) == (False, False, None)
    assert "never produced" in v.note
    assert v.closest is not None
    assert (v.closest["event_id"], v.closest["subtype"]) == (str(event["event_id"]), subtype)


def test_a_trigger_the_scorer_held_back_shows_its_reason(explained: Any, setup: Setup) -> None:
    event, run, _ = explained("price_spike_down_m_1")
    assert "vol_spike_m_1" in event["coalesced"]  # the scenario's shock fired both on the asset
    x = build({**event, "subtype": "vol_spike_m_1", "event_id": UNKNOWN_ID}, run, setup)
    assert x.trigger is not None
    assert x.score is not None
    assert (x.trigger.subtype, x.score.outcome) == ("vol_spike_m_1", "coalesced")
    assert not x.verdict.produced
    assert x.verdict.closest is not None
    assert x.verdict.closest["subtype"] == "price_spike_down_m_1"
    assert "price_spike_down_m_1" in {t.subtype for t, _s in x.siblings}
    assert "outcome        coalesced" in explain_cli.render(x)


def test_other_packs_are_refused_before_anything_runs(
    live: tuple[list[raw.RawValue], PipelineDriver], setup: Setup
) -> None:
    event = first_event(live[1], "vol_spike_m_1")
    shipped = Setup(setup.feature_pack, load_detector_pack(), setup.policy, PARTITIONS)
    assert [m.split(":")[0] for m in check_packs(event, shipped).mismatches] == ["config_hash"]

    read: list[raw.RawValue] = []

    def values() -> Iterator[raw.RawValue]:
        for v in live[0]:
            read.append(v)
            yield v

    with pytest.raises(PackMismatchError, match="config_hash: event sha256:"):
        explain(event, values(), shipped)
    assert read == []


def test_render_shows_the_event_detector_thresholds_and_config_hash(explained: Any) -> None:
    event, _run, x = explained("vol_spike_m_1")
    text = explain_cli.render(x)
    assert x.trigger is not None
    for part in (
        str(event["event_id"]),
        "VERDICT  REPRODUCED",
        f"DETECTOR  {x.trigger.detector_id}",
        f"threshold      {x.threshold:.6g} (tier {x.trigger.tier})",
        f"severity       {event['severity']} = floor(100 sigmoid(",
        event["provenance"]["config_hash"],
        "FEATURE ROW",
        "MARKET FRAME",
    ):
        assert part in text, part


def test_render_says_what_differs(explained: Any, setup: Setup) -> None:
    event, run, _ = explained("vol_spike_m_1")
    text = explain_cli.render(build({**event, "severity": 1}, run, setup))
    assert f"NOT REPRODUCED  severity live 1, re-run {event['severity']}; first difference" in text
    text = explain_cli.render(build({**event, "event_id": UNKNOWN_ID}, run, setup))
    assert "NOT REPRODUCED  the re-run never produced this event id; closest:" in text


def test_render_flags_a_pack_mismatch_loudly(explained: Any, setup: Setup) -> None:
    event, run, _ = explained("vol_spike_m_1")
    shipped = Setup(setup.feature_pack, load_detector_pack(), setup.policy, PARTITIONS)
    text = explain_cli.render(build(event, run, shipped))
    assert "(loaded) <-- MISMATCH" in text
    assert "!! PACK MISMATCH: config_hash: event sha256:" in text


def test_json_is_one_deterministic_object(explained: Any, setup: Setup) -> None:
    event, run, x = explained("basket_shock_dt_5s")
    text = json.dumps(to_json(x), sort_keys=True, allow_nan=False)
    again = json.dumps(to_json(build(copy.deepcopy(event), run, setup)), sort_keys=True)
    assert text == again
    data = json.loads(text)
    assert data["event_id"] == str(event["event_id"])
    assert data["detector"]["detector_id"] == "sync.basket_shock_dt_5s"
    assert data["verdict"]["reproduced"] is True
    assert data["packs"]["event"]["config_hash"] == data["packs"]["loaded"]["config_hash"]
    assert data["scoring"]["severity"] == event["severity"]


def test_first_difference_walks_maps_then_lists() -> None:
    assert first_difference({"a": [1, 2]}, {"a": [1, 2]}) is None
    diff = first_difference({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}})
    assert diff is not None
    assert (diff.path, diff.live, diff.rerun) == ("a.b[1]", 2, 3)
    diff = first_difference({"a": [1]}, {"a": [1, 2]})
    assert diff is not None
    assert diff.path == "a[1]"
    diff = first_difference({"a": 1}, {"a": 1, "b": 2})
    assert diff is not None
    assert (diff.path, diff.live) == ("b", "<absent>")
    diff = first_difference({"a": 1}, {"a": 1.0})
    assert diff is not None


# ------------------------------------------------------------------------------------ the CLI
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alpha")
    explain_cli.add_explain_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_the_parser_takes_the_workers_pack_options() -> None:
    args = parse("explain", UNKNOWN_ID, "--detector-pack", "d.yaml", "--json")
    assert (args.event_id, str(args.detector_pack), args.json) == (UNKNOWN_ID, "d.yaml", True)
    assert (args.topic, args.feature_pack, args.universe_policy) == ("alpha.events.v0", None, None)
    assert args.func is not None


def test_the_command_prints_json_and_exits_0_when_reproduced(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    live: tuple[list[raw.RawValue], PipelineDriver],
    setup: Setup,
) -> None:
    values, driver = live
    event = first_event(driver, "price_flat_cvd_trend_m_5")
    asked: list[tuple[str, str]] = []

    def find_event(settings: StackSettings, event_id: str, topic: str) -> Event:
        asked.append((event_id, topic))
        return event

    def read_raw(*_args: Any, **_kwargs: Any) -> Iterator[raw.RawValue]:
        yield from values

    monkeypatch.setattr(explain_cli, "find_event", find_event)
    monkeypatch.setattr(explain_cli, "read_raw", read_raw)
    args = parse("explain", str(event["event_id"]).upper(), "--json")
    assert explain_cli.run(args, StackSettings(), setup) == explain_cli.EXIT_REPRODUCED
    assert asked == [(str(event["event_id"]), "alpha.events.v0")]
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"]["reproduced"] is True
    assert out["detector"]["detector_id"] == detector_id("price_flat_cvd_trend_m_5")


def test_a_disagreeing_rerun_exits_2(explained: Any, setup: Setup) -> None:
    event, run, x = explained("vol_spike_m_1")
    assert explain_cli.exit_status(x) == 0
    assert explain_cli.exit_status(build({**event, "severity": 1}, run, setup)) == 2


def test_a_malformed_id_is_one_line() -> None:
    args = parse("explain", "not-an-id")
    with pytest.raises(ExplainError, match="'not-an-id' is not an event id"):
        explain_cli.run(args, StackSettings(), explain_cli.setup_of(args))
