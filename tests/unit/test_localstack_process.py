"""Process ownership, port checks and stopping, on throwaway Python processes (no JVM)."""

from __future__ import annotations

import os
import socket
import sys
import textwrap

import pytest

from topology.localstack.java import find_java
from topology.localstack.process import (
    LocalStackError,
    ManagedProcess,
    _alive,
    port_in_use,
    wait_until,
)


def test_port_in_use_sees_a_listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


@pytest.fixture
def managed(tmp_path) -> ManagedProcess:
    return ManagedProcess("sleeper", tmp_path / "sleeper")


def _start(managed: ManagedProcess, code: str = "import time; time.sleep(120)") -> int:
    argv = [sys.executable, "-c", code, managed.marker]
    return managed.start(argv, env=dict(os.environ), cwd=managed.workdir.parent)


def test_start_records_pid_and_stop_leaves_nothing(managed):
    pid = _start(managed)
    assert wait_until(lambda: managed.pid() == pid, timeout_s=10)
    assert managed.stop(timeout_s=10) is True
    assert not _alive(pid)
    assert managed.pid() is None
    assert not managed.pid_file.exists()
    assert managed.stop(timeout_s=1) is False


def test_stop_escalates_to_sigkill(managed):
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ready', flush=True); time.sleep(120)"
    )
    pid = _start(managed, code)
    assert wait_until(lambda: "ready" in managed.tail(5), timeout_s=10)
    assert managed.stop(timeout_s=0.5) is True
    assert not _alive(pid)


def test_a_reused_pid_is_never_taken_for_ours(managed):
    managed.workdir.mkdir(parents=True)
    managed.pid_file.write_text(f"{os.getpid()}\n")  # alive, but without our marker
    assert managed.pid() is None
    assert not managed.pid_file.exists()
    assert managed.stop(timeout_s=1) is False


def test_exited_reports_the_log_tail(managed):
    _start(managed, "import sys; print('boom: bad config', flush=True); sys.exit(3)")
    with pytest.raises(
        LocalStackError, match=r"sleeper exited during start-up(.|\n)*boom: bad config"
    ):
        wait_until(lambda: False, timeout_s=10, abort=managed.exited)


def test_wait_until_times_out_quietly():
    assert wait_until(lambda: False, timeout_s=0.2, interval_s=0.05) is False


def test_wait_until_treats_exceptions_as_not_yet():
    calls = iter([False, True])

    def flaky() -> bool:
        if not next(calls):
            raise ValueError("not yet")
        return True

    assert wait_until(flaky, timeout_s=5, interval_s=0.01)


def _fake_java(tmp_path, version: str) -> str:
    path = tmp_path / "java"
    path.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        echo 'openjdk version "{version}" 2020-01-01' >&2
        """)
    )
    path.chmod(0o755)
    return str(path)


def test_old_java_is_refused_with_the_install_hint(tmp_path):
    with pytest.raises(
        LocalStackError, match="is Java 11; Java 17\\+ is needed: install openjdk-17"
    ):
        find_java(_fake_java(tmp_path, "11.0.2"))


def test_java_1_8_reads_as_8(tmp_path):
    with pytest.raises(LocalStackError, match="is Java 8;"):
        find_java(_fake_java(tmp_path, "1.8.0_292"))


def test_new_java_is_accepted(tmp_path):
    java = find_java(_fake_java(tmp_path, "21.0.1"))
    assert java.major == 21


def test_missing_explicit_java_is_named(tmp_path):
    with pytest.raises(LocalStackError, match="ALPHA_JAVA=/nowhere/java is not an executable"):
        find_java("/nowhere/java")


def test_no_java_at_all(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(
        LocalStackError, match=r"^Java 17 not found: install openjdk-17-jre-headless"
    ):
        find_java(None)
