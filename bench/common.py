"""What every benchmark shares: the machine's facts, a private stack, figures, the JSON result.

A benchmark is a module ``bench/<name>.py`` with ``run(ctx: Context) -> None`` that records its
figures with :meth:`Context.figure` (value, unit, target, peer ratio) and prints them as it goes.
``bench/run_all`` runs them one after the other (never two at once: the machine has 2 cores)
and writes one JSON file per run under ``bench/results/`` so that runs can be compared
(``bench/compare.py``). A later stage adds its own benchmark with one file: ``run_all`` finds
every ``bench/b_*.py``.

Benchmarks may read the wall clock and may import the test kit (``tests.kit``): they measure,
they never feed an output payload.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from topology.settings import REPO_ROOT, StackSettings

RESULTS = REPO_ROOT / "bench" / "results"


@dataclass
class Figure:
    """One measured figure, with its target and, where a peer ran in the same run, the ratio.

    Attributes:
        name: Short id, e.g. ``ingest_lattice.ticks_per_s.35``.
        value: The measurement.
        unit: ``ticks/s``, ``ms``, ``us``, ``x`` (times real time), ``MiB``...
        target: The issue's target (None: none set).
        better: ``higher`` or ``lower`` (how ``target`` compares).
        peer: What the ratio is taken against, e.g. ``plain confluent-kafka loop``.
        peer_value: The peer's figure in the same run.
        note: What limits the figure, in a few words.
    """

    name: str
    value: float
    unit: str
    target: float | None = None
    better: str = "higher"
    peer: str | None = None
    peer_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """``value / peer_value`` (None without a peer)."""
        if self.peer_value in (None, 0):
            return None
        return self.value / float(self.peer_value or 1)

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target)."""
        if self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target

    def line(self) -> str:
        """One printable line."""
        text = f"{self.name:<48} {_fmt(self.value):>12} {self.unit:<9}"
        if self.target is not None:
            sign = ">=" if self.better == "higher" else "<="
            text += f" target {sign} {_fmt(self.target)} [{'met' if self.met else 'MISSED'}]"
        if self.ratio is not None:
            text += f"  {self.ratio:.2f}x of {self.peer} ({_fmt(self.peer_value or 0)})"
        if self.note:
            text += f"  -- {self.note}"
        return text


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


@dataclass
class Context:
    """A benchmark run: where to work, whether to go quick, and the figures so far."""

    work: Path
    quick: bool = False
    figures: list[Figure] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def figure(self, name: str, value: float, unit: str, **kw: Any) -> Figure:
        """Record a figure and print it."""
        fig = Figure(name, float(value), unit, **kw)
        self.figures.append(fig)
        print("  " + fig.line(), flush=True)
        return fig


def git_commit() -> str:
    """The checkout's commit (``+dirty`` when the tree has changes)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO_ROOT)
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict[str, Any]:
    """The facts a figure depends on: CPU, cores, memory, Python, library versions."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    from importlib import metadata

    for dist in ("faust-streaming", "aiokafka", "confluent-kafka", "numpy", "rocksdict", "chdb"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    kafka = sorted((REPO_ROOT / ".local" / "stack").glob("kafka-*"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kafka": kafka[-1].name if kafka else "not assembled",
        "versions": versions,
    }


def write_result(ctx: Context, names: list[str], started: float) -> Path:
    """Write the run's figures as ``bench/results/<UTC stamp>-<commit>.json``; return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    commit = git_commit()
    doc = {
        "date": now.isoformat(timespec="seconds"),
        "commit": commit,
        "benchmarks": names,
        "quick": ctx.quick,
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine(),
        "figures": [asdict(f) | {"ratio": f.ratio, "met": f.met} for f in ctx.figures],
        "extra": ctx.extra,
    }
    path = RESULTS / f"{now:%Y%m%dT%H%M%SZ}-{commit[:10]}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


@contextlib.contextmanager
def private_stack(work: Path) -> Iterator[StackSettings]:
    """A broker and registry of our own on free ports under ``work``, every topic created."""
    from tests.kit.stack import running_stack, unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise SystemExit(f"bench: the local stack cannot start: {reason}")
    with running_stack(work) as settings:
        yield settings


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    """A scratch directory for one run (kept with ``keep``, e.g. to read worker logs)."""
    path = Path(tempfile.mkdtemp(prefix="alpha-bench-"))
    try:
        yield path
    finally:
        if not keep:
            subprocess.run(["rm", "-rf", str(path)], check=False)


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of ``pid`` and its children, in MiB (0 when it is gone)."""
    total = peak = 0.0
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak += int(line.split()[1]) / 1024
    return total, peak


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                kids = (task / "children").read_text().split()
                for kid in kids:
                    out += [int(kid), *_children(int(kid))]
    return out


def quantiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[float]:
    """Nearest-rank quantiles of ``values`` (empty -> NaN)."""
    if not values:
        return [float("nan")] * len(qs)
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] for q in qs]


if __name__ == "__main__":  # pragma: no cover
    json.dump(machine(), sys.stdout, indent=2)
    print()
