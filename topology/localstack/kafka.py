"""The Apache Kafka broker of the local stack: single-node KRaft, broker+controller, 127.0.0.1.

Assembled from Maven Central by ``deploy/local/pom.xml`` (``alpha stack fetch``); configured from
``deploy/local/kafka/server.properties``; data under ``<run>/kafka/data``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path
from string import Template

from confluent_kafka.admin import AdminClient

from topology.localstack.java import Java
from topology.localstack.process import LocalStackError, port_in_use
from topology.localstack.service import StackService
from topology.settings import KAFKA_VERSION, REPO_ROOT, StackSettings

TEMPLATE_DIR = REPO_ROOT / "deploy" / "local" / "kafka"


class KafkaService(StackService):
    """Start, stop and probe the local broker.

    Args:
        settings: Ports, directories, heap.
    """

    name = "kafka"
    label = f"Kafka {KAFKA_VERSION}"

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.home = settings.artifacts / f"kafka-{KAFKA_VERSION}"
        self.data_dir = self.process.workdir / "data"

    @property
    def endpoint(self) -> str:
        """Where clients connect."""
        return f"{self.settings.host}:{self.settings.kafka_port}"

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the broker binds."""
        return (self.settings.kafka_port, self.settings.controller_port)

    def assembled(self) -> bool:
        """Return whether the broker jars are in place."""
        return any((self.home / "libs").glob(f"kafka_2.13-{KAFKA_VERSION}.jar"))

    def start(self, java: Java) -> int:
        """Render the config, format storage on first start, start the broker; return its pid."""
        self.require_assembled(self.home)
        workdir = self.process.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = self._render_config(workdir)
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, config)
        argv = [*self._jvm(java), "kafka.Kafka", str(config)]
        return self.process.start(argv, env=self._env(), cwd=workdir)

    def ready(self) -> bool:
        """Return whether the broker answers a metadata request."""
        if any(not port_in_use(self.settings.host, port) for port in self.ports):
            return False
        admin = AdminClient({"bootstrap.servers": self.endpoint, "log_level": 0})
        metadata = admin.list_topics(timeout=2)
        return len(metadata.brokers) > 0

    def _jvm(self, java: Java) -> list[str]:
        return [
            java.path,
            f"-Xms{min(256, self.settings.kafka_heap_mb)}m",
            f"-Xmx{self.settings.kafka_heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            self.process.marker,
            f"-Dlog4j2.configurationFile={TEMPLATE_DIR / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.process.workdir}",
            "-cp",
            str(self.home / "libs" / "*"),
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("KAFKA_OPTS", None)
        return env

    def _render_config(self, workdir: Path) -> Path:
        text = Template((TEMPLATE_DIR / "server.properties").read_text()).substitute(
            host=self.settings.host,
            kafka_port=self.settings.kafka_port,
            controller_port=self.settings.controller_port,
            data_dir=self.data_dir,
        )
        path = workdir / "server.properties"
        path.write_text(text)
        return path

    def _format(self, java: Java, config: Path) -> None:
        argv = [*self._jvm(java), "kafka.tools.StorageTool", "format"]
        # "--cluster-id=" form: a base64url id may start with "-", which would read as an option.
        argv += [f"--cluster-id={self._cluster_id()}", "-c", str(config), "--ignore-formatted"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            detail = (out.stderr or out.stdout).strip().splitlines()[-3:]
            raise LocalStackError(f"formatting KRaft storage failed: {' | '.join(detail)}")

    def _cluster_id(self) -> str:
        # Derived from the data directory: stable for one directory, distinct between directories.
        digest = hashlib.sha256(str(self.data_dir).encode()).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
