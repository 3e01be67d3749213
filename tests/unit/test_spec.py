"""The topic declaration: its rules, its names (pinned) and its rendering (snapshot)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from topology import spec
from topology.spec import ASSET_PARTITIONS, TOPICS, Cleanup, Key, TopologySpecError

SNAPSHOT = Path(__file__).with_name("snapshots") / "topics.txt"


def test_describe_matches_the_snapshot():
    # A changed topic is a deliberate act: update the snapshot in the same commit.
    assert spec.describe() + "\n" == SNAPSHOT.read_text()


def test_design_topics_are_declared():
    names = {s.name for s in TOPICS}
    design = {
        "md.raw.v0", "lattice.v0", "market.in.v0", "market.snapshot.v0", "universe.v0",
        "alpha.events.v0", "alpha.events.replay.v0", "alpha.events.dlq", "hrp.budget.v0",
        "cvar.caps.v0", "sizing.decisions.v0", "orders.v0", "fills.v0", "trade.adjust.v0",
        "risk.state.v0", "control.v0", "retention.events.v0",
    }  # fmt: skip
    assert design <= names


def test_per_asset_topics_are_co_partitioned():
    per_asset = [s for s in TOPICS if s.key is Key.ASSET_UID and not s.name.endswith(".dlq")]
    assert len(per_asset) >= 8
    assert {s.partitions for s in per_asset} == {ASSET_PARTITIONS}


def test_every_input_with_a_dlq_has_one_declared():
    names = {s.name for s in TOPICS}
    for s in TOPICS:
        if s.dlq:
            assert spec.dlq_name(s.name) in names


@pytest.mark.parametrize(
    ("topic", "dlq"),
    [
        ("md.raw.v0", "md.raw.dlq"),
        ("lattice.v0", "lattice.dlq"),
        ("alpha.events.v12", "alpha.events.dlq"),
    ],
)
def test_dlq_name(topic, dlq):
    assert spec.dlq_name(topic) == dlq


def test_compacted_topics_carry_no_retention_and_configs_say_compact():
    compacted = [s for s in TOPICS if s.cleanup is Cleanup.COMPACT]
    assert {s.name for s in compacted} >= {"universe.v0", "hrp.budget.v0", "cvar.caps.v0"}
    for s in compacted:
        assert s.configs()["cleanup.policy"] == "compact"
        assert "retention.ms" not in s.configs()


def test_delete_topics_set_their_retention():
    raw = spec.topic("md.raw.v0")
    assert raw.configs() == {"cleanup.policy": "delete", "retention.ms": str(7 * spec.DAY_MS)}


def _one(**changes: Any) -> tuple[spec.TopicSpec, ...]:
    return (dataclasses.replace(spec.topic("md.raw.v0"), **changes),)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "MdRaw"}, "not <domain>.<entity>"),
        ({"name": "md.raw"}, "not <domain>.<entity>"),
        ({"partitions": 0}, "partitions must be >= 1"),
        ({"partitions": 4}, "co-partitioning"),
        ({"cleanup": Cleanup.COMPACT}, "must not set a time retention"),
        ({"retention_ms": 0}, "would drop everything"),
    ],
)
def test_validate_rejects_broken_declarations(changes, message):
    with pytest.raises(TopologySpecError, match=message):
        spec.validate(_one(**changes))


def test_validate_rejects_duplicates():
    with pytest.raises(TopologySpecError, match="declared twice"):
        spec.validate(_one() + _one())


def test_unknown_topic_is_a_clear_error():
    with pytest.raises(TopologySpecError, match=r"'nope\.v0' is not declared"):
        spec.topic("nope.v0")
