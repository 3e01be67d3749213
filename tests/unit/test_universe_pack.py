"""The shipped universe policy: loads, validates, and its config_hash is pinned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from packs.base import PackError
from packs.universe import PACK_DIR, UniversePolicy, load_universe_policy

#: Changing packs/universe/v1.yaml changes config_hash: ship a new rev instead.
PINNED = {
    1: "sha256:834737bb822137b51d76153f65d8fcd3bb4efd2a32fca7f2ff55b80355ec0a9f",
}


@pytest.mark.parametrize("rev", sorted(PINNED))
def test_shipped_policy_hash_is_pinned(rev):
    policy = load_universe_policy(rev=rev)
    assert policy.universe_policy_rev == rev
    assert policy.hash() == PINNED[rev]


def test_every_shipped_policy_is_pinned():
    assert sorted(p.stem for p in PACK_DIR.glob("*.yaml")) == [f"v{r}" for r in sorted(PINNED)]


def test_shipped_values_are_the_spec_defaults():
    p = load_universe_policy()
    assert (p.n_base, p.entry_band.n_entry, p.entry_band.k_entry) == (25, 22, 3)
    assert (p.exit_band.n_exit, p.exit_band.k_exit, p.freeze_min, p.min_dwell_min) == (30, 5, 5, 30)
    assert (p.scores.w_dv, p.scores.w_oi, p.scores.dv_lookback_min) == (0.7, 0.3, 60)
    assert (p.hotlist.s_hot, p.hotlist.ttl_base_min, p.hotlist.ttl_k_min_per_point) == (70, 15, 0.3)
    assert p.churn.max_changes_per_hour == 5
    rs = p.market.rs
    assert (rs.w1, rs.w2, rs.w3, rs.z_cap) == (0.5, 0.3, 0.2, 3.0)
    assert p.market.min_assets_for_context == 5
    assert p.market.max_partition_lag_min is None


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    return bad


def _data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PACK_DIR / "v1.yaml").read_text())
    return data


def test_policy_is_frozen_and_strict(tmp_path: Path):
    policy = load_universe_policy()
    with pytest.raises(ValueError, match="frozen"):
        policy.n_base = 30
    data = _data()
    data["entry_band"]["n_entry"] = 26
    with pytest.raises(PackError, match="bands must nest"):
        load_universe_policy(_write(tmp_path, data))
    data = _data()
    data["hotlist"]["always_hot"] = ["nope"]
    with pytest.raises(PackError, match="unknown reasons: nope"):
        load_universe_policy(_write(tmp_path, data))
    data = _data()
    data["market"]["rs"]["top_n"] = 17
    with pytest.raises(PackError, match=r"market\.rs\.top_n"):
        load_universe_policy(_write(tmp_path, data))
    data = _data()
    data["surprise"] = 1
    with pytest.raises(PackError, match="surprise"):
        load_universe_policy(_write(tmp_path, data))


def test_a_different_value_changes_the_hash():
    policy = load_universe_policy()
    other = UniversePolicy.model_validate(policy.model_dump() | {"freeze_min": 6})
    assert other.hash() != policy.hash()
