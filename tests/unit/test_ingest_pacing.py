"""``--speed`` parsing and the replay pacer, with a settable clock."""

from __future__ import annotations

import pytest

from topology.ingest import IngestError, Pacer, parse_speed


@pytest.mark.parametrize(
    ("text", "speed"), [("10x", 10.0), ("2.5", 2.5), ("max", None), (None, None)]
)
def test_parse_speed(text, speed):
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", ["fast", "0x", "-2x"])
def test_bad_speed_is_a_clear_error(text):
    with pytest.raises(IngestError, match="--speed"):
        parse_speed(text)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pacer_waits_for_recorded_time_scaled_by_speed(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("topology.ingest.time.monotonic", clock.monotonic)
    monkeypatch.setattr("topology.ingest.time.sleep", clock.sleep)
    pace = Pacer(10.0)
    pace(1_000_000)  # the first input sets the origin
    pace(1_010_000)  # 10 s of recording at 10x: due 1 s later
    clock.now += 0.25  # processing took a while
    pace(1_015_000)  # due 1.5 s after the origin: 0.25 s left
    pace(1_012_000)  # already due: no wait
    assert clock.slept == [1.0, 0.25]


def test_no_speed_never_sleeps(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("topology.ingest.time.sleep", clock.sleep)
    pace = Pacer(None)
    for ts in (0, 10_000, 20_000):
        pace(ts)
    assert clock.slept == []
