"""``alpha stack`` on a private stack: up twice is harmless, a taken port is one clear line,
schemas and topics survive a restart, and down leaves no process behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from connectors.registry import SchemaRegistry
from tests.conftest import require_stack
from tests.kit.stack import alpha, processes_with_marker, stack_settings
from topology.admin import admin_client
from topology.localstack.process import port_in_use
from topology.settings import StackSettings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    require_stack()
    settings = stack_settings(tmp_path_factory.mktemp("lifecycle"))
    up = alpha(settings, "stack", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    yield settings
    alpha(settings, "stack", "down")


def _pids(settings: StackSettings) -> dict[str, str]:
    status = alpha(settings, "stack", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[1:] if line.strip()]
    return {row[0]: row[2] for row in rows if row[1] == "ready"}


def test_up_twice_is_harmless(own_stack):
    before = _pids(own_stack)
    assert set(before) == {"kafka", "registry"}
    again = alpha(own_stack, "stack", "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 2
    assert _pids(own_stack) == before


def test_port_in_use_is_one_clear_line(own_stack, tmp_path):
    other = stack_settings(tmp_path / "other")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", other.kafka_port))
        squatter.listen()
        result = alpha(other, "stack", "up")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"alpha: error: port {other.kafka_port} on 127.0.0.1 is already in use by another"
        " process; stop it, or move kafka with the ALPHA_*_PORT settings"
    )
    assert "Traceback" not in result.stderr
    assert processes_with_marker(str(tmp_path / "other")) == []


def test_restart_keeps_schemas_and_topics_and_down_leaves_nothing(own_stack):
    with SchemaRegistry(own_stack.registry_url) as registry:
        schema_id = registry.register("ops.smoke.v0")
    created = alpha(own_stack, "topics", "create")
    assert created.returncode == 0, created.stderr

    down = alpha(own_stack, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert processes_with_marker(str(own_stack.home)) == []
    for port in (own_stack.kafka_port, own_stack.controller_port, own_stack.registry_port):
        assert not port_in_use(own_stack.host, port), port
    status = alpha(own_stack, "stack", "status")
    assert status.returncode == 1
    assert status.stdout.count("stopped") == 2

    up = alpha(own_stack, "stack", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    subject = httpx.get(f"{own_stack.registry_url}/subjects/ops.smoke.v0-value/versions/latest")
    assert subject.json()["id"] == schema_id
    topics = admin_client(own_stack.bootstrap_servers).list_topics(timeout=10).topics
    assert "md.raw.v0" in topics
    assert len(topics["md.raw.v0"].partitions) == 8
