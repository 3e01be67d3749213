"""The registry of state store names: ``<stage>.<what>.v<N>``, declared once, pinned in a test.

A renamed store (or a bumped Faust app version) silently starts from empty state, so names are
stateful identifiers: change one only on purpose, with a migration or a rebuild plan.
"""

from __future__ import annotations

import re

from state.errors import StateError

_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.v[1-9]\d*$")

#: Every store of the topology. Add here first; tests/contract/test_state_store.py pins the list.
STORES: tuple[str, ...] = (
    "lattice.accumulators.v1",
    "lattice.baselines.v1",
    "lattice.sketches.v1",
    "lattice.watermarks.v1",
    "market.state.v1",
    "detect.state.v1",
)


def check_name(name: str) -> str:
    """Return ``name`` if it is a declared, well-formed store name.

    Raises:
        StateError: Malformed or not declared in :data:`STORES`.
    """
    if not _NAME.match(name):
        raise StateError(f"store name {name!r} is not <stage>.<what>.v<N>")
    if name not in STORES:
        raise StateError(f"store {name!r} is not declared in state/names.py")
    return name
