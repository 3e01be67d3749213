"""BACKWARD compatibility between two Avro schemas, without a registry (DESIGN.md §7).

BACKWARD (the registry's rule, spec 002 §11.6): a consumer on the *new* schema can read data
written with the *old* one. This is the check ``alpha schemas check --against-dir`` runs in a
user's CI against the last released schemas; against a live registry the registry decides.
"""

from __future__ import annotations

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType


def backward_problems(new_text: str, old_text: str) -> list[str]:
    """Return why ``new_text`` cannot read data written with ``old_text`` (empty: compatible)."""
    reader = avro.schema.parse(new_text)
    writer = avro.schema.parse(old_text)
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    where = ", ".join(sorted(result.locations))
    what = "; ".join(sorted(str(m) for m in result.messages))
    kinds = ", ".join(
        sorted(str(k.value) if hasattr(k, "value") else str(k) for k in result.incompatibilities)
    )
    return [f"{kinds or 'incompatible'} at {where}: {what}"]
