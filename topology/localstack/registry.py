"""The schema registry of the local stack: Apicurio Registry 3.x, H2 file storage, 127.0.0.1.

Assembled from Maven Central (the ``all`` tar.gz of ``io.apicurio:apicurio-registry-app``);
clients use its Confluent-compatible API under ``/apis/ccompat/v7``. Schemas live in an H2
database file under ``<run>/registry/db``, so they survive a restart.
"""

from __future__ import annotations

import os

import httpx

from topology.localstack.java import Java
from topology.localstack.process import LocalStackError
from topology.localstack.service import StackService
from topology.settings import APICURIO_VERSION, StackSettings

#: Compatibility enforced on every subject unless a subject overrides it (DESIGN.md §7).
DEFAULT_COMPATIBILITY = "BACKWARD"
_CCOMPAT_JSON = "application/vnd.schemaregistry.v1+json"


class RegistryService(StackService):
    """Start, stop and probe the local Apicurio Registry.

    Args:
        settings: Ports, directories, heap.
    """

    name = "registry"
    label = f"Apicurio Registry {APICURIO_VERSION}"

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.home = settings.artifacts / f"apicurio-{APICURIO_VERSION}"
        self.jar = self.home / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"

    @property
    def endpoint(self) -> str:
        """The Confluent-compatible API base URL."""
        return f"{self._base}/apis/ccompat/v7"

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the registry binds."""
        return (self.settings.registry_port,)

    @property
    def _base(self) -> str:
        return f"http://{self.settings.host}:{self.settings.registry_port}"

    def assembled(self) -> bool:
        """Return whether the registry distribution is in place."""
        return self.jar.is_file()

    def start(self, java: Java) -> int:
        """Start the registry; return its pid."""
        self.require_assembled(self.home)
        db = self.process.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            QUARKUS_HTTP_HOST=self.settings.host,
            QUARKUS_HTTP_PORT=str(self.settings.registry_port),
            QUARKUS_MANAGEMENT_ENABLED="false",
            QUARKUS_LOG_CONSOLE_JSON="false",
            APICURIO_STORAGE_KIND="sql",
            APICURIO_STORAGE_SQL_KIND="h2",
            APICURIO_DATASOURCE_URL=f"jdbc:h2:file:{db / 'registry'}",
            APICURIO_DATASOURCE_USERNAME="sa",
            APICURIO_DATASOURCE_PASSWORD="sa",  # noqa: S106 - a local H2 file on loopback
        )
        argv = [
            java.path,
            f"-Xmx{self.settings.registry_heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            self.process.marker,
            "-jar",
            str(self.jar),
        ]
        return self.process.start(argv, env=env, cwd=self.process.workdir)

    def ready(self) -> bool:
        """Return whether the registry reports ready and its ccompat API answers."""
        health = httpx.get(f"{self._base}/health/ready", timeout=2)
        if health.status_code != httpx.codes.OK:
            return False
        return httpx.get(f"{self.endpoint}/subjects", timeout=2).status_code == httpx.codes.OK

    def after_ready(self) -> None:
        """Set the global compatibility level (idempotent).

        Raises:
            LocalStackError: The registry refused it.
        """
        reply = httpx.put(
            f"{self.endpoint}/config",
            json={"compatibility": DEFAULT_COMPATIBILITY},
            headers={"Content-Type": _CCOMPAT_JSON},
            timeout=10,
        )
        if reply.status_code != httpx.codes.OK:
            raise LocalStackError(
                f"the registry refused compatibility {DEFAULT_COMPATIBILITY}:"
                f" HTTP {reply.status_code} {reply.text[:200]}"
            )
