"""The ``alpha`` command line, run as users run it: help, one-line errors, no tracebacks."""

from __future__ import annotations

import pytest

from tests.kit.stack import alpha, stack_settings
from topology import spec


@pytest.fixture
def settings(tmp_path):
    return stack_settings(tmp_path / "home")


def test_help_lists_the_commands(settings):
    result = alpha(settings, "--help")
    assert result.returncode == 0
    for word in ("stack", "topics", "smoke", "demo", "ALPHA_KAFKA_PORT"):
        assert word in result.stdout


def test_stack_help_names_the_pinned_versions(settings):
    result = alpha(settings, "stack", "--help")
    assert result.returncode == 0
    assert "Apache Kafka 4." in result.stdout
    assert "Apicurio Registry 3." in result.stdout


def test_topics_describe_needs_no_broker(settings):
    result = alpha(settings, "topics", "describe")
    assert result.returncode == 0
    assert result.stdout == spec.describe() + "\n"


def test_missing_java_is_one_line(settings, tmp_path):
    result = alpha(settings, "stack", "up", ALPHA_JAVA=str(tmp_path / "no-java"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"alpha: error: ALPHA_JAVA={tmp_path / 'no-java'} is not an executable java"
    ]


def test_missing_artifacts_point_at_fetch(tmp_path):
    settings = stack_settings(tmp_path / "home").model_copy(
        update={"stack_dir": tmp_path / "empty"}
    )
    result = alpha(settings, "stack", "up")
    assert result.returncode == 1
    assert "is not assembled in" in result.stderr
    assert "run `alpha stack fetch`" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_of_a_stack_never_started(settings):
    result = alpha(settings, "stack", "status")
    assert result.returncode == 1
    assert result.stdout.count("stopped") + result.stdout.count("not assembled") == 2


def test_down_when_nothing_runs_is_fine(settings):
    result = alpha(settings, "stack", "down")
    assert result.returncode == 0
    assert result.stdout.count("not running") == 2


def test_unreachable_broker_is_one_line(settings):
    result = alpha(
        settings, "topics", "list", "--bootstrap", f"127.0.0.1:{settings.kafka_port}", timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.startswith("alpha: error: cannot reach the broker")
    assert "Traceback" not in result.stderr


def test_bad_setting_is_one_line(settings):
    result = alpha(settings, "stack", "status", ALPHA_KAFKA_PORT="not-a-port")
    assert result.returncode == 1
    assert result.stderr.startswith("alpha: error: invalid setting")
    assert "ALPHA_KAFKA_PORT" in result.stderr
