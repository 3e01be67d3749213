"""docker-compose.yml stays valid though no Docker engine runs here.

compose-go, the loader inside `docker compose`, checks the file through a 40-line Go program of
ours (deploy/tools/composecheck); the structural checks below need only PyYAML.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from topology.settings import APICURIO_VERSION, KAFKA_VERSION, REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
TOOL = REPO_ROOT / "deploy" / "tools" / "composecheck"


@pytest.fixture(scope="module")
def composecheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("go") is None:
        pytest.skip("go not found: compose-go validation needs the Go toolchain")
    binary = tmp_path_factory.mktemp("composecheck") / "composecheck"
    built = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=TOOL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return binary


def test_compose_file_loads_with_compose_go(composecheck):
    result = subprocess.run(
        [str(composecheck), str(COMPOSE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 14 services"


def test_compose_go_rejects_a_broken_file(composecheck, tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  a:\n    image: x\n    depends_on: [nowhere]\n")
    result = subprocess.run(
        [str(composecheck), str(broken)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "nowhere" in result.stderr


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_has_the_designed_services(compose):
    services = set(compose["services"])
    assert {
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "registry",
        "clickhouse",
        "prometheus",
        "grafana",
    } <= services
    workers = {n for n, s in compose["services"].items() if "workers" in s.get("profiles", ())}
    assert workers == {"connector", "lattice", "market", "detector", "trader", "sink"}


def test_every_worker_service_runs_a_real_alpha_command(compose):
    from topology.cli import build_parser

    parser = build_parser()
    for name, service in compose["services"].items():
        if "workers" in service.get("profiles", ()):
            args = parser.parse_args(service["command"])  # exits 2 on an unknown command
            assert callable(args.func), name


def test_compose_pins_the_same_versions_as_the_local_stack(compose):
    services = compose["services"]
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        assert services[name]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{APICURIO_VERSION}"


def test_compose_mounts_and_builds_files_that_exist(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            assert (REPO_ROOT / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", ()):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), (name, source)
