"""Run every benchmark (``bench/b_*.py``) one after the other; print figures; write the JSON result.

Usage (from the checkout; ``bench/run_all`` installs first)::

    bench/run_all                 # every benchmark, full size (see bench/README.md for timings)
    bench/run_all --quick         # small sizes: a smoke run of the whole suite
    bench/run_all --only cpu,throughput
    bench/run_all --keep          # keep the scratch directory (worker logs) and print its path

Benchmarks run one at a time (the machine has 2 cores: two at once would measure each other). A
benchmark that fails is reported with its error and the others still run; the exit code is 1
then. The result goes to ``bench/results/<UTC stamp>-<commit>.json``; compare two runs with
``bench/compare.py A.json B.json``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.common import Context, machine, workdir, write_result

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Every benchmark's short name (``b_cpu.py`` -> ``cpu``), in file-name order."""
    return [p.stem[2:] for p in sorted(BENCH_DIR.glob("b_*.py"))]


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; return 1 if one of them failed."""
    parser = argparse.ArgumentParser(prog="bench/run_all", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", default="", help="comma-separated names, e.g. cpu,latency")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
        names = [n for n in names if n in wanted]
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, {info['kafka']}"
    )
    started = time.monotonic()
    failed: list[str] = []
    with workdir(keep=args.keep) as work:
        ctx = Context(work=work, quick=args.quick)
        for name in names:
            print(f"\n== {name}{' (quick)' if args.quick else ''}", flush=True)
            t0 = time.monotonic()
            bench_work = work / name
            bench_work.mkdir()
            ctx.work = bench_work
            try:
                importlib.import_module(f"bench.b_{name}").run(ctx)
            except (Exception, SystemExit) as exc:  # report it, run the others
                failed.append(name)
                ctx.extra.setdefault("failures", {})[name] = "".join(
                    traceback.format_exception_only(exc)
                ).strip()
                print(f"  FAILED: {exc!r}", flush=True)
                traceback.print_exc()
            print(f"  ({time.monotonic() - t0:.0f} s)", flush=True)
        path = write_result(ctx, names, started)
        if args.keep:
            print(f"\nscratch directory kept: {work}")
    print("\n== summary")
    for fig in ctx.figures:
        print("  " + fig.line())
    missed = [f.name for f in ctx.figures if f.met is False]
    print(f"\n{len(ctx.figures)} figures, {len(missed)} targets missed, {len(failed)} failed")
    print(f"result: {path.relative_to(BENCH_DIR.parent)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
