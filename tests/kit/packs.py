"""Shipped packs with a few fields changed, validated like a pack file (so a bad change fails)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from packs.base import Pack

P = TypeVar("P", bound=Pack)


def merge(data: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``data`` with ``changes`` merged in; nested mappings merge, other values replace."""
    out = dict(data)
    for key, value in changes.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, Mapping) else value
    return out


def changed(pack: P, **changes: Any) -> P:
    """Return ``pack`` with ``changes`` applied and validated again.

    A key may name a nested field with ``__`` (``detectors__vol_spike_m_1__enabled=False``) and a
    value may be a mapping merged into the field (``entry_band={"k_entry": 2}``).
    """
    nested: dict[str, Any] = {}
    for path, value in changes.items():
        head, *rest = path.split("__")
        for part in reversed(rest):
            value = {part: value}
        nested = merge(nested, {head: value})
    return type(pack).model_validate(merge(pack.model_dump(), nested))
