"""Run stage workers as real processes (``alpha worker``) and watch their progress in Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from tests.kit.kafka import end_offsets
from tests.kit.stack import alpha_executable, stack_env
from topology.settings import StackSettings


class WorkerProcess:
    """One ``alpha worker <role>`` process in its own process group (so kill -9 takes it all).

    The role ``sink`` runs ``alpha sink`` instead.
    """

    def __init__(self, settings: StackSettings, role: str, log: Path, *args: str) -> None:
        self.settings, self.role, self.args = settings, role, args
        self.log = log
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self._out = self.log.open("ab")
        command = ["sink"] if self.role == "sink" else ["worker", self.role]
        self.proc = subprocess.Popen(
            [*alpha_executable(), *command, *self.args],
            env=stack_env(self.settings),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def restart(self) -> None:
        """Start the same command again (after :meth:`kill9` or an exit), as a supervisor does."""
        if self.proc.poll() is None:
            raise AssertionError(f"{self.role} still runs (pid {self.proc.pid})")
        self._out.close()
        self.restarts += 1
        self._start()

    def kill9(self) -> None:
        """SIGKILL the whole process group, as a crash would, and reap it."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._out.close()

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait; return the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        self._out.close()
        return code

    def alive(self) -> bool:
        """True while the worker runs; raise with its log's tail if it exited by itself."""
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"the worker exited with code {code}:\n{self.tail(80)}")
        return True

    def tail(self, lines: int = 40) -> str:
        """The end of the worker's log (for assertion messages)."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def committed(settings: StackSettings, group: str, topic: str, partitions: int) -> dict[int, int]:
    """Return the group's committed offsets on ``topic`` (0 where nothing is committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: max(0, tp.offset) for tp in tps}
    finally:
        consumer.close()


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, on_timeout: Callable[[], str] = str
) -> None:
    """Poll ``condition`` every 0.5 s until true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {what}\n{on_timeout()}"
            )
        time.sleep(0.5)


def consumed_share(settings: StackSettings, group: str, topic: str) -> float:
    """Share of ``topic``'s records the group has committed, 0..1."""
    end = end_offsets(settings, topic)
    done = committed(settings, group, topic, len(end))
    total = sum(end.values())
    return sum(min(done[p], e) for p, e in end.items()) / total if total else 1.0
