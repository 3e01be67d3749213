"""``alpha schemas check --against-dir``: the BACKWARD rule without a registry (users' CI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.compat import backward_problems
from topology.cli import main

V1: dict[str, Any] = {"type": "record", "name": "Probe", "namespace": "alpha.it.v0",
      "fields": [{"name": "a", "type": "long"}]}  # fmt: skip


def _write(directory: Path, topic: str, schema: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{topic}.avsc").write_text(json.dumps(schema))
    return directory


def _with_field(field: dict[str, Any]) -> dict[str, Any]:
    return dict(V1, fields=[*V1["fields"], field])


def test_add_with_default_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _write(tmp_path / "old", "probe.v0", V1)
    new = _write(
        tmp_path / "new", "probe.v0", _with_field({"name": "b", "type": "string", "default": ""})
    )
    assert main(["schemas", "check", "--schemas-dir", str(new), "--against-dir", str(old)]) == 0
    out = capsys.readouterr().out
    assert "probe.v0" in out
    assert " ok " in out


@pytest.mark.parametrize(
    ("field", "why"),
    [
        ({"name": "b", "type": "string"}, "reader_field_missing_default_value"),
        (None, "type_mismatch"),
    ],
)
def test_incompatible_change_fails_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: dict[str, Any] | None, why: str
) -> None:
    old = _write(tmp_path / "old", "probe.v0", V1)
    changed = _with_field(field) if field else dict(V1, fields=[{"name": "a", "type": "string"}])
    new = _write(tmp_path / "new", "probe.v0", changed)
    assert main(["schemas", "check", "--schemas-dir", str(new), "--against-dir", str(old)]) == 1
    out = capsys.readouterr().out
    assert "incompatible" in out
    assert why in out


def test_a_topic_not_yet_released_is_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _write(tmp_path / "old", "probe.v0", V1)
    new = _write(tmp_path / "new", "other.v0", V1)
    assert main(["schemas", "check", "--schemas-dir", str(new), "--against-dir", str(old)]) == 0
    assert "new" in capsys.readouterr().out


def test_the_shipped_schemas_are_compatible_with_themselves() -> None:
    assert main(["schemas", "check", "--against-dir", "schemas/avro"]) == 0


def test_unknown_topic_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "check", "--against-dir", "schemas/avro", "--topic", "nope.v0"]) == 1
    assert "no schema for nope.v0" in capsys.readouterr().err


def test_removing_an_enum_symbol_is_incompatible() -> None:
    old = {"type": "enum", "name": "E", "symbols": ["a", "b"]}
    assert (
        backward_problems(
            json.dumps({"type": "enum", "name": "E", "symbols": ["a", "b", "c"]}), json.dumps(old)
        )
        == []
    )
    assert backward_problems(
        json.dumps({"type": "enum", "name": "E", "symbols": ["a"]}), json.dumps(old)
    )
