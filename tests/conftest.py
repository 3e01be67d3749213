"""Session fixtures: the real Kafka broker and schema registry, started by ``alpha stack up``.

Locally, a machine without Java or without the assembled stack skips the integration tests with
the reason; with ``CI=true`` that is a failure. ``ALPHA_TEST_DOCKER=1`` runs them against
containers started by testcontainers instead (for users who have a Docker engine).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kit.stack import IN_CI, running_stack, unavailable_reason
from topology.settings import StackSettings


def require_stack() -> None:
    """Skip (locally) or fail (in CI) when the real stack cannot run here."""
    reason = unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and the real stack cannot start: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    """A running broker + registry with every declared topic created; stopped at the end."""
    if os.environ.get("ALPHA_TEST_DOCKER") == "1":
        from tests.kit.containers import container_stack

        with container_stack() as settings:
            yield settings
        return
    require_stack()
    with running_stack(tmp_path_factory.mktemp("stack")) as settings:
        yield settings


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--update-golden``: rewrite golden files after printing their diff (tests/golden)."""
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="print the diff of each golden file against this run, then rewrite it",
    )
