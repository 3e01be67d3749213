"""Start and drive the real local stack from tests, through the project's own ``alpha`` CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from topology.settings import REPO_ROOT, StackSettings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ARTIFACTS = Path(os.environ.get("ALPHA_STACK_DIR", REPO_ROOT / ".local" / "stack"))


def alpha_executable() -> list[str]:
    """Return the argv prefix that runs the installed ``alpha`` console script."""
    script = Path(sys.executable).parent / "alpha"
    return [str(script)] if script.exists() else [sys.executable, "-m", "topology.cli"]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_settings(home: Path) -> StackSettings:
    """Return settings for a private stack: its own directory and free ports."""
    return StackSettings(
        home=home,
        stack_dir=ARTIFACTS,
        kafka_port=free_port(),
        controller_port=free_port(),
        registry_port=free_port(),
    )


def stack_env(settings: StackSettings, **extra: str) -> dict[str, str]:
    """Return the environment that points ``alpha`` at ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHA_")}
    env.update(
        ALPHA_HOME=str(settings.home),
        ALPHA_STACK_DIR=str(settings.artifacts),
        ALPHA_KAFKA_PORT=str(settings.kafka_port),
        ALPHA_CONTROLLER_PORT=str(settings.controller_port),
        ALPHA_REGISTRY_PORT=str(settings.registry_port),
    )
    env.update(extra)
    return env


def alpha(
    settings: StackSettings, *args: str, timeout: float = 240, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``alpha <args>`` against the stack of ``settings``; never raises on a non-zero exit."""
    return subprocess.run(
        [*alpha_executable(), *args],
        env=stack_env(settings, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def unavailable_reason() -> str | None:
    """Return why the real stack cannot start here, or None if it can."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Java 17 not found: install openjdk-17-jre-headless"
    if not any(ARTIFACTS.glob("kafka-*/libs/kafka_2.13-*.jar")):
        return f"Kafka is not assembled in {ARTIFACTS}: run scripts/bootstrap.sh"
    if not any(ARTIFACTS.glob("apicurio-*/apicurio-registry-app-*-runner.jar")):
        return f"the registry is not assembled in {ARTIFACTS}: run scripts/bootstrap.sh"
    return None


def processes_with_marker(fragment: str) -> list[int]:
    """Return pids whose command line mentions ``fragment`` (e.g. a stack's home directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if fragment.encode() in cmdline and b"-Dalpha.stack=" in cmdline:
            found.append(int(proc.name))
    return found


@contextlib.contextmanager
def running_stack(home: Path) -> Iterator[StackSettings]:
    """Start a private stack under ``home`` (free ports) with every topic; stop it at the end."""
    settings = stack_settings(home)
    up = alpha(settings, "stack", "up")
    if up.returncode != 0:
        alpha(settings, "stack", "down")
        raise AssertionError(f"alpha stack up failed:\n{up.stdout}\n{up.stderr}")
    try:
        topics = alpha(settings, "topics", "create")
        assert topics.returncode == 0, topics.stdout + topics.stderr
        yield settings
    finally:
        down = alpha(settings, "stack", "down")
        assert down.returncode == 0, down.stderr
