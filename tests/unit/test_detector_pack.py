"""The shipped detector pack: loads, carries Appendix D, its hash is pinned, bad packs fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from packs.base import PackError
from packs.detector import (
    EVENT_CLASSES,
    FAMILIES,
    PACK_DIR,
    SUBTYPE_FAMILY,
    DetectorPack,
    Detectors,
    detector_id,
    load_detector_pack,
)

#: Changing packs/detector/v0.1.yaml changes every event's config_hash: bump the pack instead.
PINNED = {
    "v0.1": "sha256:55d9651a83867560cf3d4664a482760507a46b5961cd613bc8fadf3fd32b338b",
}


def _data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PACK_DIR / "v0.1.yaml").read_text())
    return data


def _load(tmp_path: Path, data: dict[str, Any]) -> DetectorPack:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_detector_pack(path=path)


@pytest.mark.parametrize("version", sorted(PINNED))
def test_shipped_pack_hash_is_pinned(version):
    pack = load_detector_pack(version)
    assert pack.version == version
    assert pack.hash() == PINNED[version]


def test_every_shipped_pack_is_pinned():
    assert sorted(p.stem for p in PACK_DIR.glob("*.yaml")) == sorted(PINNED)


def test_appendix_d_defaults():
    pack = load_detector_pack()
    assert {c: pack.classes[c].publish_threshold for c in EVENT_CLASSES} == {
        "spike": 65,
        "shift": 60,
        "quadrant": 55,
        "divergence": 55,
        "synchrony": 60,
        "rotation": 55,
    }
    d2 = {c: (pack.classes[c].cooldown_s, pack.classes[c].half_life_s) for c in EVENT_CLASSES}
    assert d2 == {
        "spike": (45, 120),
        "shift": (90, 300),
        "quadrant": (90, 180),
        "divergence": (90, 240),
        "synchrony": (60, 60),
        "rotation": (300, 900),
    }
    w = pack.classes["spike"]
    assert (w.w1, w.w2, w.w3, w.a) == (1.0, 0.5, 0.4, 0.6)
    d5 = {c: pack.classes[c].budget_per_symbol_min for c in EVENT_CLASSES}
    assert d5 == {
        "spike": 4,
        "shift": 2,
        "quadrant": 2,
        "divergence": 2,
        "synchrony": 2,
        "rotation": 1,
    }
    assert pack.global_cap_per_min == 800
    assert pack.scoring.reemit_gain == 0.30
    assert pack.scoring.coalesce_window_ms == 1000
    assert (pack.gates.oi_stale_ms, pack.gates.book_stale_ms) == (20_000, 3_000)


def test_resolve_applies_detector_and_tier_overrides():
    pack = load_detector_pack()
    oi = pack.resolve("oi_spike_up_m_5", "mid")  # B.1: oi spike has its own weights and timing
    assert (oi.w1, oi.w2, oi.w3, oi.a) == (0.9, 0.6, 0.3, 0.58)
    assert (oi.cooldown_ms, oi.half_life_s, oi.publish_threshold) == (60_000, 180.0, 65)
    vol = pack.resolve("vol_spike_m_1", "mid")
    assert (vol.cooldown_ms, vol.half_life_s, vol.budget_per_symbol_min) == (45_000, 120.0, 4)
    assert pack.resolve("vol_spike_m_1", "tail").budget_per_symbol_min == 2  # D.7
    assert pack.resolve("spread_stress_m_1", "tail").budget_per_symbol_min == 2
    assert pack.threshold("vol_spike_m_1", "top") == 3.2
    assert pack.threshold("vol_spike_m_1", "mid") == 3.0
    assert pack.threshold("vol_spike_m_1", "tail") == 3.8
    assert pack.threshold("price_spike_m_1", "tail") == 2.5


def test_detector_ids_use_the_spec_prefixes():
    assert detector_id("vol_spike_m_1") == "spike.vol_spike_m_1"
    assert detector_id("premium_no_oi_m_5") == "div.premium_no_oi_m_5"
    assert detector_id("basket_shock_dt_5s") == "sync.basket_shock_dt_5s"
    assert detector_id("rs_flip_sector_m_15") == "rot.rs_flip_sector_m_15"
    assert len(SUBTYPE_FAMILY) == 19
    assert set(FAMILIES) == set(Detectors.model_fields)


def test_memory_covers_every_cooldown_and_novelty_episode():
    pack = load_detector_pack()
    assert pack.memory_ms() > 5 * 900 * 1000  # rotation: 5 half-lives of 900 s


def test_pack_is_frozen():
    pack = load_detector_pack()
    with pytest.raises(ValueError, match="frozen"):
        pack.version = "v0.2"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["classes"].pop("rotation"), "classes lacks rotation"),
        (lambda d: d["classes"]["spike"].update(publish_threshold=101), "classes.spike"),
        (lambda d: d["detectors"]["vol_spike_m_1"].update(threshold=0), "threshold"),
        (lambda d: d["detectors"]["vol_spike_m_1"].update(bogus=1), "Extra inputs"),
        (lambda d: d["detectors"].pop("quadrant_m_5"), "detectors.quadrant_m_5"),
        (lambda d: d["tiers"]["top"]["thresholds"].update(nope=1.0), "unknown detector family"),
        (lambda d: d["tiers"].update(huge={}), "tiers.huge"),
        (lambda d: d.update(version="0.1"), "version"),
        (lambda d: d["scoring"].update(near_guard_margin=1.0), "near_guard_margin"),
        (
            lambda d: d["detectors"]["funding_jolt_h_1"].update(lookback_min=61),
            "lookback_min",
        ),
        (
            lambda d: d["detectors"]["leader_cooling_followers_hot_m_15"].update(bucket_min=30),
            "3 buckets must fit",
        ),
    ],
)
def test_a_bad_pack_fails_with_one_clear_line(tmp_path: Path, edit, message):
    data = _data()
    edit(data)
    with pytest.raises(PackError, match=message) as info:
        _load(tmp_path, data)
    assert "\n" not in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_missing_and_unparsable_files(tmp_path: Path):
    with pytest.raises(PackError, match="does not exist"):
        load_detector_pack(path=tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed")
    with pytest.raises(PackError, match="not valid YAML"):
        load_detector_pack(path=bad)


def test_a_different_value_changes_the_hash():
    pack = load_detector_pack()
    other = DetectorPack.model_validate(pack.model_dump() | {"global_cap_per_min": 799})
    assert other.hash() != pack.hash()
