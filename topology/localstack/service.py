"""What every service of the local stack shares: a managed JVM process and a readiness wait."""

from __future__ import annotations

from abc import ABC, abstractmethod

from topology.localstack.java import Java
from topology.localstack.process import LocalStackError, ManagedProcess, wait_until
from topology.settings import StackSettings


class StackService(ABC):
    """One service of the local stack, with its process under ``<run>/<name>``.

    Args:
        settings: Ports, directories, heap.
    """

    name: str
    label: str

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.runtime / self.name)

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where clients connect."""

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """Every port the service binds."""

    @abstractmethod
    def assembled(self) -> bool:
        """Return whether its artifacts are in place."""

    @abstractmethod
    def start(self, java: Java) -> int:
        """Start it in the background; return the pid."""

    @abstractmethod
    def ready(self) -> bool:
        """Return whether it serves requests (may raise: that counts as not ready)."""

    def after_ready(self) -> None:  # noqa: B027 - an optional hook, not an abstract step
        """Configure the service once it is ready (idempotent); nothing by default."""

    def wait_ready(self, timeout_s: float) -> None:
        """Block until ready, then run :meth:`after_ready`.

        Raises:
            LocalStackError: It exited, or was not ready within ``timeout_s``.
        """
        if not wait_until(self.ready, timeout_s=timeout_s, abort=self.process.exited):
            raise LocalStackError(
                f"{self.label} did not become ready on {self.endpoint} within {timeout_s:.0f}s;"
                f" see {self.process.log_file}"
            )
        self.after_ready()

    def require_assembled(self, where: object) -> None:
        """Raise a pointer to ``alpha stack fetch`` when the artifacts are missing."""
        if not self.assembled():
            raise LocalStackError(
                f"{self.label} is not assembled in {where}: run `alpha stack fetch`"
            )
