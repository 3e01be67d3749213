"""Runtime settings of the local stack and the clients: ports, directories, Java, heap sizes.

Read from ``ALPHA_*`` environment variables (e.g. ``ALPHA_KAFKA_PORT=29092``). These are *runtime*
settings: never hashed into ``config_hash`` and never reaching an output payload.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]

KAFKA_VERSION = "4.1.1"
APICURIO_VERSION = "3.0.9"


class StackSettings(BaseSettings):
    """Where the local stack lives and how it listens; every field has an ``ALPHA_`` env var."""

    model_config = SettingsConfigDict(env_prefix="ALPHA_", frozen=True, extra="ignore")

    home: Path = Field(
        default=REPO_ROOT / ".local",
        description="Root of everything local and git-ignored: artifacts, data, logs, pid files.",
    )
    run_dir: Path | None = Field(
        default=None,
        description="Data, logs and pid files of the running stack; default <home>/run.",
    )
    stack_dir: Path | None = Field(
        default=None,
        description="Assembled Kafka and registry artifacts; default <home>/stack.",
    )
    host: str = Field(default="127.0.0.1", description="Every service binds here only.")
    kafka_port: int = Field(default=9092, description="Broker listener (PLAINTEXT).")
    controller_port: int = Field(default=9093, description="KRaft controller listener.")
    registry_port: int = Field(default=8081, description="Schema registry HTTP port.")
    java: str | None = Field(
        default=None, description="java executable; default $JAVA_HOME/bin/java, then PATH."
    )
    kafka_heap_mb: int = Field(default=768, description="Broker JVM heap (-Xmx), MiB.")
    registry_heap_mb: int = Field(default=384, description="Registry JVM heap (-Xmx), MiB.")
    start_timeout_s: float = Field(default=90.0, description="Wait this long for readiness.")
    stop_timeout_s: float = Field(default=30.0, description="SIGTERM grace before SIGKILL.")
    topic_replication: int = Field(default=1, description="Replication factor of new topics.")
    bootstrap: str | None = Field(
        default=None,
        description="Brokers of a cluster not started by us (e.g. kafka-1:9092,kafka-2:9092);"
        " default the local stack's <host>:<kafka_port>.",
    )
    registry: str | None = Field(
        default=None,
        description="Confluent-compatible registry URL of a registry not started by us;"
        " default the local stack's /apis/ccompat/v7 URL.",
    )

    clickhouse_url: str | None = Field(
        default=None,
        description="ClickHouse for the sink and alpha sql: chdb:///dir (embedded) or"
        " http://user:password@host:8123/alpha (a server); default chdb://<home>/clickhouse.",
    )
    sql_port: int = Field(
        default=8124, description="The sink's read-only query endpoint (alpha sql); 0 = any."
    )

    @property
    def clickhouse_dsn(self) -> str:
        """ClickHouse of the sink: ``ALPHA_CLICKHOUSE_URL``, else chDB under ``<home>``."""
        return self.clickhouse_url or f"chdb://{(self.home / 'clickhouse').resolve()}"

    @property
    def runtime(self) -> Path:
        """Directory of data, logs and pid files."""
        return self.run_dir or self.home / "run"

    @property
    def artifacts(self) -> Path:
        """Directory of the assembled Kafka and registry distributions."""
        return self.stack_dir or self.home / "stack"

    @property
    def bootstrap_servers(self) -> str:
        """Brokers for Kafka clients: ``ALPHA_BOOTSTRAP``, else the local broker."""
        return self.bootstrap or f"{self.host}:{self.kafka_port}"

    @property
    def registry_url(self) -> str:
        """Registry API for clients: ``ALPHA_REGISTRY``, else the local registry's ccompat API."""
        return self.registry or f"http://{self.host}:{self.registry_port}/apis/ccompat/v7"
