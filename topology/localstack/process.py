"""A background JVM process we own: pid file, port checks, start, graceful stop, log tail.

A process is ours only if its command line carries ``-Dalpha.stack=<workdir>``: a stale pid file
whose pid was reused by something else is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import AlphaError

# Processes started by this interpreter: kept so they are reaped (no zombies, no ResourceWarning)
# while the daemon itself outlives us in its own session.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalStackError(AlphaError):
    """The local stack cannot be assembled, started, reached or stopped."""


def port_in_use(host: str, port: int) -> bool:
    """Return whether something already listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float = 0.25,
    abort: Callable[[], str | None] | None = None,
) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes.

    Args:
        condition: Returns True when done; exceptions count as "not yet".
        timeout_s: Give up after this many seconds.
        interval_s: Pause between polls.
        abort: Returns a reason to stop waiting early (e.g. the process died), else None.

    Returns:
        True if the condition held in time.

    Raises:
        LocalStackError: ``abort`` gave a reason.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return True
        if abort is not None and (reason := abort()):
            raise LocalStackError(reason)
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


@dataclass(frozen=True, slots=True)
class ManagedProcess:
    """One service's process, identified by its working directory.

    Attributes:
        name: Service name, used in messages and file names.
        workdir: Holds the pid file and the log; its path is the ownership marker.
    """

    name: str
    workdir: Path

    @property
    def pid_file(self) -> Path:
        """Where the pid of the running process is kept."""
        return self.workdir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        """The process's combined stdout and stderr."""
        return self.workdir / f"{self.name}.log"

    @property
    def marker(self) -> str:
        """The JVM system property that marks the process as ours."""
        return f"-Dalpha.stack={self.workdir}"

    def pid(self) -> int | None:
        """Return the pid if our process is alive; forget a stale pid file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _is_ours(pid, self.marker):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> int:
        """Start ``argv`` in its own session, output appended to the log; return its pid."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n==== alpha stack: starting {self.name} ====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def exited(self) -> str | None:
        """Return a reason if the process is no longer running (for ``wait_until(abort=...)``)."""
        if self.pid() is None:
            return f"{self.name} exited during start-up; last log lines:\n{self.tail(15)}"
        return None

    def stop(self, timeout_s: float, pid: int | None = None) -> bool:
        """Stop the process group: SIGTERM, then SIGKILL after ``timeout_s``.

        Args:
            timeout_s: Grace period for a clean shutdown.
            pid: The process to stop; default the one in the pid file.

        Returns:
            True if a process was stopped, False if none was running.
        """
        pid = pid or self.pid()
        if pid is None or not _alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        if not wait_until(lambda: not _alive(pid), timeout_s=timeout_s, interval_s=0.1):
            _signal_group(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), timeout_s=10, interval_s=0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int) -> str:
        """Return the last ``lines`` lines of the log (empty if there is none)."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 256 * lines))
                text = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    if (child := _CHILDREN.get(pid)) is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    # A zombie (exited, not yet reaped by its parent) counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _is_ours(pid: int, marker: str) -> bool:
    if not _alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # Right after exec the kernel can show an empty cmdline for a moment: the pid file was
    # written by us for this pid, so an alive process without a cmdline yet is still ours.
    return not cmdline.strip(b"\0") or marker.encode() in cmdline.split(b"\0")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
