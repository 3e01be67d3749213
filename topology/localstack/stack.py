"""The local stack as a whole: fetch artifacts, bring services up in order, down in reverse.

``up`` is idempotent (a running, ready service is left alone), refuses a port held by someone
else with one clear line, and fails with the service's last log lines if it dies while starting.
``down`` leaves no process behind: SIGTERM to the process group, SIGKILL after the grace period.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from topology.localstack.java import Java, find_java
from topology.localstack.kafka import KafkaService
from topology.localstack.process import LocalStackError, port_in_use
from topology.localstack.registry import RegistryService
from topology.localstack.service import StackService
from topology.settings import APICURIO_VERSION, KAFKA_VERSION, REPO_ROOT, StackSettings

Report = Callable[[str], None]
POM = REPO_ROOT / "deploy" / "local" / "pom.xml"


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One line of ``alpha stack status``."""

    name: str
    state: str
    pid: int | None
    endpoint: str
    log: str


class LocalStack:
    """The broker and the registry of one run directory.

    Args:
        settings: Where and how the stack runs.
    """

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.services: tuple[StackService, ...] = (
            KafkaService(self.settings),
            RegistryService(self.settings),
        )

    def fetch(self, report: Report, *, force: bool = False) -> None:
        """Assemble Kafka and the registry from Maven Central (no-op when already assembled).

        Raises:
            LocalStackError: Maven is missing or the download failed.
        """
        if not force and all(s.assembled() for s in self.services):
            report(f"artifacts present in {self.settings.artifacts}")
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalStackError("Maven not found: install maven (apt-get install maven)")
        kafka_libs = self.settings.artifacts / f"kafka-{KAFKA_VERSION}" / "libs"
        shutil.rmtree(kafka_libs, ignore_errors=True)  # no stale jars from another version
        report(
            f"assembling Kafka {KAFKA_VERSION} and Apicurio Registry {APICURIO_VERSION}"
            f" from Maven Central into {self.settings.artifacts}"
        )
        argv = [mvn, "-B", "-q", "-f", str(POM), f"-Dstack.dir={self.settings.artifacts}"]
        out = subprocess.run([*argv, "package"], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            tail = " | ".join((out.stdout + out.stderr).strip().splitlines()[-5:])
            raise LocalStackError(f"mvn failed to assemble the stack: {tail}")
        missing = [s.name for s in self.services if not s.assembled()]
        if missing:
            raise LocalStackError(f"mvn finished but {', '.join(missing)} is still missing")

    def up(self, report: Report) -> None:
        """Start every service that is not running and wait until each is ready.

        Raises:
            LocalStackError: No Java 17, missing artifacts, a port taken by another process, or a
                service that died or did not become ready.
        """
        java: Java | None = None
        for service in self.services:
            pid = service.process.pid()
            if pid is not None:
                service.wait_ready(self.settings.start_timeout_s)
                report(f"{service.name}: already running (pid {pid}) on {service.endpoint}")
                continue
            self._check_ports(service)
            java = java or find_java(self.settings.java)
            pid = service.start(java)
            report(f"{service.name}: starting (pid {pid}), waiting for {service.endpoint}")
            try:
                service.wait_ready(self.settings.start_timeout_s)
            except LocalStackError:
                service.process.stop(self.settings.stop_timeout_s, pid=pid)
                raise
            report(f"{service.name}: ready on {service.endpoint}")

    def down(self, report: Report) -> None:
        """Stop every service, last started first."""
        for service in reversed(self.services):
            if service.process.stop(self.settings.stop_timeout_s):
                report(f"{service.name}: stopped")
            else:
                report(f"{service.name}: not running")

    def status(self) -> list[ServiceStatus]:
        """Return each service's state: ``ready``, ``not ready``, ``stopped``, ``not assembled``."""
        rows = []
        for service in self.services:
            pid = service.process.pid()
            if pid is None:
                state = "stopped" if service.assembled() else "not assembled"
            else:
                state = "ready" if _safe(service.ready) else "not ready"
            rows.append(
                ServiceStatus(
                    service.name, state, pid, service.endpoint, str(service.process.log_file)
                )
            )
        return rows

    def service(self, name: str) -> StackService:
        """Return the service called ``name``.

        Raises:
            LocalStackError: No such service.
        """
        for service in self.services:
            if service.name == name:
                return service
        names = ", ".join(s.name for s in self.services)
        raise LocalStackError(f"no service {name!r} (services: {names})")

    def _check_ports(self, service: StackService) -> None:
        for port in service.ports:
            if port_in_use(self.settings.host, port):
                raise LocalStackError(
                    f"port {port} on {self.settings.host} is already in use by another process;"
                    f" stop it, or move {service.name} with the ALPHA_*_PORT settings"
                )


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return probe()
    except Exception:
        return False
