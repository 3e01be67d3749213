"""The shipped feature pack: loads, validates, and its config_hash is pinned."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from packs.base import PackError
from packs.feature import PACK_DIR, FeaturePack, load_feature_pack

#: Changing packs/feature/v1.0.yaml changes every row's config_hash: bump the pack instead.
PINNED = {
    "v1.0": "sha256:c0897323fb0bc1539e2ea4f18b12b0668adf491de36d1260890c3ac7c464f868",
    # v1.0 with the §16.1 minimal normalization (vol, ret_abs): the demo's candle bootstrap.
    "v1.0-bootstrap": "sha256:3b5e16e23cd87e73bcd3930793451ef58006778ecf73af716305cf4926658810",
}


@pytest.mark.parametrize("version", sorted(PINNED))
def test_shipped_pack_hash_is_pinned(version):
    pack = load_feature_pack(version)
    assert pack.feature_pack == version
    assert pack.hash() == PINNED[version]


def test_every_shipped_pack_is_pinned():
    assert sorted(p.stem for p in PACK_DIR.glob("*.yaml")) == sorted(PINNED)


def test_pack_is_frozen_and_strict(tmp_path: Path):
    pack = load_feature_pack()
    with pytest.raises(ValueError, match="frozen"):
        pack.pack_rev = 2
    data = yaml.safe_load((PACK_DIR / "v1.0.yaml").read_text())
    data["baselines"]["half_life_bars"].pop("1h")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(PackError, match="half_life_bars lacks 1h"):
        load_feature_pack(path=bad)
    data = yaml.safe_load((PACK_DIR / "v1.0.yaml").read_text())
    data["lattice"]["grace_ms"] = 1000
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(PackError, match="grace_ms must exceed lateness_ms"):
        load_feature_pack(path=bad)


def test_a_different_value_changes_the_hash():
    pack = load_feature_pack()
    other = FeaturePack.model_validate(pack.model_dump() | {"pack_rev": pack.pack_rev + 1})
    assert other.hash() != pack.hash()
