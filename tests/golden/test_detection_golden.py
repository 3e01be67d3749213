"""Golden detection: every synthetic scenario through lattice -> market -> detect, frozen.

Each scenario (4 assets, 77 minutes, seed 7: a calm regime; injection at minute 45; a feature
pack whose baselines warm up after 30 samples) runs through the
:class:`topology.pipeline_driver.PipelineDriver`. ``detection.json`` holds, per scenario, every
event as ``[minute, symbol, subtype, severity, revision, event_id, sha256 of the Avro payload]``:
any change to a payload byte shows. ``pytest tests/golden --update-golden`` prints the diff and
rewrites the file; review the diff before committing it.

Beside the frozen bytes, the behaviour each detector owes its scenario is asserted (positive:
the injection makes the detector fire on the target; negative: the low-liquidity false spike,
the warm-up and the dead book's stale minutes must not fire). Every one of the 19 subtypes has its
scenario. The sectors are :data:`connectors.synthetic.scenarios.SYNTHETIC_SECTORS`, in the
detector pack (so they are in ``config_hash``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.synthetic.generator import DEFAULT_START_TS, generate
from connectors.synthetic.scenarios import (
    CATALOGUE_MINUTES,
    CATALOGUE_SLOTS,
    SCENARIOS,
)
from packs.detector import SUBTYPE_FAMILY
from tests.kit.lattice import small_pack, synthetic_detector_pack
from topology.pipeline_driver import PipelineDriver

GOLDEN = Path(__file__).with_name("detection.json")
ASSETS, MINUTES, SEED, INJECT, WARMUP = 4, 77, 7, 45, 30
DETECTOR_PACK = synthetic_detector_pack()
TARGET, THIN = "SYN01", "SYN03"
#: subtype -> the scenario whose injection makes it fire on the target (SYN01).
FIRES = {
    "vol_spike_m_1": "volume_spike",
    "price_spike_up_m_1": "oi_build_long",
    "price_spike_down_m_1": "oi_build_short",
    "oi_spike_up_m_5": "oi_build_long",
    "oi_spike_down_m_5": "short_squeeze",
    "liq_cluster_m_5": "long_liquidation",
    "spread_stress_m_1": "spread_blowout",
    "basis_jolt_m_5": "basis_jolt",
    "funding_jolt_h_1": "funding_jolt",
    "price_up_oi_up_m_5": "oi_build_long",
    "price_up_oi_down_m_5": "short_squeeze",
    "price_down_oi_up_m_5": "oi_build_short",
    "price_down_oi_down_m_5": "long_liquidation",
    "price_up_cvd_down_m_5": "absorption",
    "premium_no_oi_m_5": "basis_jolt",
    "basket_shock_dt_5s": "basket_shock",
    "price_flat_cvd_trend_m_5": "accumulation",
    "leader_cooling_followers_hot_m_15": "leader_cooling",
    "rs_flip_sector_m_15": "sector_rotation",
}
#: Where a detector fires if not on the target: market-wide ones on the leader's row (None: any
#: asset), leader cooling on the row of the leader that cooled.
ON = {
    "basket_shock_dt_5s": None,
    "rs_flip_sector_m_15": None,
    "leader_cooling_followers_hot_m_15": "SYN00",
}
#: The 15m detectors judge whole buckets after the injection: their last chance is later.
LATEST = {"leader_cooling_followers_hot_m_15": INJECT + 30}
#: Scenarios that need a longer run (the catalogue's last slot is at INJECT + 67).
LONGER = {"catalogue": CATALOGUE_MINUTES}
Event = tuple[int, str, str, int, int, str, str]


def minute_of(exchange_ts: int) -> int:
    """Return the run minute whose 1m bar has label ``exchange_ts``."""
    return (exchange_ts - DEFAULT_START_TS) // 60_000 - 1


def run(scenario: str) -> tuple[list[Event], PipelineDriver]:
    """Run one scenario; return its events in golden form and the driver."""
    minutes = LONGER.get(scenario, MINUTES)
    values = generate(scenario, assets=ASSETS, minutes=minutes, seed=SEED, inject_at_minute=INJECT)
    driver = PipelineDriver(
        small_pack(min_samples=WARMUP),
        detector_pack=DETECTOR_PACK,
        partitions=2,
        flush_every=10_000,
    )
    driver.pipe_stream(values)
    driver.flush()
    assert driver.dead_letters == []
    assert driver.stage_dead_letters == []
    events = [
        (
            minute_of(s.value["exchange_ts"]),
            s.value["symbol"],
            s.value["subtype"],
            s.value["severity"],
            s.value["revision"],
            str(s.value["event_id"]),
            hashlib.sha256(s.data[5:]).hexdigest()[:16],
        )
        for s in driver.outputs
        if s.topic == "alpha.events.v0"
    ]
    return events, driver


def render(runs: dict[str, list[Event]]) -> str:
    """Return the golden JSON: scenarios sorted, one event per line (diffs read by event)."""
    parts = []
    for name in sorted(runs):
        lines = ",\n".join(f"  {json.dumps(list(e))}" for e in runs[name])
        parts.append(
            f" {json.dumps(name)}: [\n{lines}\n ]" if lines else f" {json.dumps(name)}: []"
        )
    return "{\n" + ",\n".join(parts) + "\n}\n"


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[list[Event], PipelineDriver]]:
    return {name: run(name) for name in SCENARIOS}


def test_events_equal_the_golden_file(
    runs: dict[str, tuple[list[Event], PipelineDriver]],
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = render({name: events for name, (events, _) in runs.items()})
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
    assert not diff, f"detection differs from {GOLDEN.name}:\n{diff[:6000]}"


def _new_on(runs: Any, scenario: str, symbol: str | None) -> set[tuple[int, str, str]]:
    calm = {(e[0], e[1], e[2]) for e in runs["calm"][0]}
    return {
        (e[0], e[1], e[2])
        for e in runs[scenario][0]
        if (symbol is None or e[1] == symbol) and (e[0], e[1], e[2]) not in calm
    }


@pytest.mark.parametrize(("subtype", "scenario"), sorted(FIRES.items()))
def test_the_injection_makes_its_detector_fire(runs: Any, subtype: str, scenario: str) -> None:
    symbol = ON.get(subtype, TARGET)
    new = _new_on(runs, scenario, symbol)
    hits = sorted(m for m, _s, t in new if t == subtype)
    assert hits, f"{subtype} never fired on {symbol or 'any asset'} in {scenario}: {sorted(new)}"
    assert INJECT - 1 <= hits[0] <= LATEST.get(subtype, INJECT + 15), hits


def test_every_detector_has_a_scenario() -> None:
    assert set(FIRES) == set(SUBTYPE_FAMILY)


def test_the_catalogue_fires_every_detector(runs: Any) -> None:
    """One run fires all 19 subtypes (the broker test runs this one end to end)."""
    events = runs["catalogue"][0]
    assert {e[2] for e in events} == set(SUBTYPE_FAMILY)
    cooling = [e for e in events if e[2] == "leader_cooling_followers_hot_m_15"]
    assert [(e[0], e[1]) for e in cooling] == [(INJECT + 29, "SYN00")]
    basket = INJECT + CATALOGUE_SLOTS[-1][0]
    assert [e[0] for e in events if e[2] == "basket_shock_dt_5s"][-1] == basket


def test_the_low_liquidity_false_spike_does_not_fire(runs: Any) -> None:
    # The thin asset's spike on no volume trips the illiquidity guard: nothing new fires.
    assert _new_on(runs, "low_liquidity_false_spike", None) == set()


def test_nothing_fires_during_warm_up(runs: Any) -> None:
    for name, (events, _) in runs.items():
        assert all(e[0] >= WARMUP for e in events), name


def test_stale_minutes_never_fire(runs: Any) -> None:
    events, driver = runs["dead_book"]
    stale = {
        minute_of(s.value["exchange_ts"])
        for s in driver.read("lattice.v0", rows_only=True)
        if s.value["symbol"] == TARGET and s.value["tf"] == "m1" and s.value["dq_status"] != "ok"
    }
    assert len(stale) >= 3, "the dead book should leave stale minutes"
    assert not [e for e in events if e[1] == TARGET and e[0] in stale]
    for _events, d in runs.values():
        assert {e["local_state"]["dq"]["status"] for e in d.events()} <= {"ok"}


def test_a_restarted_pipeline_gives_the_same_events(runs: Any) -> None:
    values = list(
        generate("basket_shock", assets=ASSETS, minutes=MINUTES, seed=SEED, inject_at_minute=INJECT)
    )
    driver = PipelineDriver(
        small_pack(min_samples=WARMUP), detector_pack=DETECTOR_PACK, partitions=2, flush_every=50
    )
    half = len(values) // 2
    driver.pipe_stream(values[:half])
    driver.restart()
    driver.pipe_stream(values[half:])
    driver.flush()
    got = [s.data for s in driver.outputs if s.topic == "alpha.events.v0"]
    want = [s.data for s in runs["basket_shock"][1].outputs if s.topic == "alpha.events.v0"]
    assert got == want
