"""Canonical JSON, config_hash and pack loading."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packs.base import Pack, PackError, load_pack
from packs.canonical import CanonicalError, canonical_json, config_hash


def test_canonical_json_sorts_keys_and_strips_whitespace():
    assert (
        canonical_json({"b": 1, "a": {"d": [1, 2], "c": None}})
        == '{"a":{"c":null,"d":[1,2]},"b":1}'
    )


def test_fixed_float_precision_hides_arithmetic_noise():
    assert canonical_json(0.1 + 0.2) == canonical_json(0.3) == "0.3"
    assert canonical_json(2.0) == "2"
    assert canonical_json((1.5, 2)) == "[1.5,2]"


@given(
    st.dictionaries(
        st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False) | st.integers()
    )
)
def test_hash_ignores_key_order(mapping):
    assert config_hash(mapping) == config_hash(dict(reversed(list(mapping.items()))))


def test_hash_format_and_sensitivity():
    h = config_hash({"threshold": 2.5})
    assert h.startswith("sha256:")
    assert len(h) == 7 + 64
    assert h != config_hash({"threshold": 2.6})


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1: "x"}, object()])
def test_values_without_a_canonical_form_are_refused(bad):
    with pytest.raises(CanonicalError):
        canonical_json(bad)


class DemoPack(Pack):
    version: str
    window_m: tuple[int, ...]
    z_cap: float


def test_load_pack_validates_and_freezes(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("version: v1.0\nwindow_m: [1, 5, 15]\nz_cap: 6\n")
    pack = load_pack(path, DemoPack)
    assert pack.window_m == (1, 5, 15)
    assert pack.hash() == config_hash({"version": "v1.0", "window_m": [1, 5, 15], "z_cap": 6.0})
    with pytest.raises(Exception, match="frozen"):
        pack.z_cap = 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: v1.0\nwindow_m: [1]\nz_cap: 6\nextra: 1\n",
            "extra: Extra inputs are not permitted",
        ),
        ("version: v1.0\nwindow_m: [x]\nz_cap: 6\n", "window_m.0:"),
        ("version: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_pack_files_fail_in_one_line(tmp_path, text, message):
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    with pytest.raises(PackError, match=message) as caught:
        load_pack(path, DemoPack)
    assert "\n" not in str(caught.value)


def test_missing_pack_file(tmp_path):
    with pytest.raises(PackError, match="does not exist"):
        load_pack(tmp_path / "nope.yaml", DemoPack)
