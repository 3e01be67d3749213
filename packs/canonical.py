"""Canonical JSON and ``config_hash`` (spec 002 §13.2; STYLE.md: Packs and config_hash).

Sorted keys, no whitespace, floats at a fixed precision, tuples as arrays: the same
configuration gives the same bytes and the same hash on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from schemas.errors import AlphaError

#: Significant digits kept for floats: 12 is beyond any threshold's meaning and below the noise
#: of float arithmetic, so 0.1 + 0.2 and 0.3 hash alike.
FLOAT_DIGITS = 12


class CanonicalError(AlphaError):
    """A value cannot be put in canonical JSON (NaN, infinity, an unknown type)."""


def canonicalize(value: Any) -> Any:
    """Return ``value`` as plain JSON data with floats rounded to :data:`FLOAT_DIGITS`.

    Raises:
        CanonicalError: NaN or infinite floats, non-string keys, unsupported types.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalError(f"{value!r} has no canonical form")
        rounded = float(f"{value:.{FLOAT_DIGITS}g}")
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, Decimal):
        return canonicalize(float(value))
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise CanonicalError("mapping keys must be strings")
        return {k: canonicalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonicalize(v) for v in value]
    raise CanonicalError(f"{type(value).__name__} has no canonical JSON form")


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of ``value``."""
    return json.dumps(
        canonicalize(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def config_hash(value: Any) -> str:
    """Return ``"sha256:" + hex digest`` of the canonical JSON of ``value``."""
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()
