"""``alpha ingest``: the replay, synthetic and Hyperliquid sources, with progress."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.replay.source import ReplayStats
from topology.ingest import (
    format_time,
    ingest_context,
    parse_speed,
    parse_window,
    run_replay,
    run_synthetic,
)
from topology.settings import StackSettings

_out = Console(highlight=False, soft_wrap=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_out,
        transient=True,
    )


def window_summary(stats: ReplayStats, *, auto: bool) -> str:
    """Describe the window a replay applied and what it left out ("" when there was none)."""
    start, end = stats.window
    if start is None and end is None:
        return "; auto-window: no 1m candles or live captures, nothing skipped" if auto else ""
    text = f"; window [{_bound(start)}, {_bound(end)})"
    if auto and stats.span is not None:
        first, last = stats.span
        text += f" (auto: 1m candles / live captures {format_time(first)} .. {format_time(last)})"
    elif auto:
        text += " (auto: no 1m candles or live captures to clamp to)"
    return text + f": {stats.outside_window} inputs outside it skipped"


def _bound(ms: int | None) -> str:
    return "open" if ms is None else format_time(ms)


def _cmd_replay(args: argparse.Namespace, settings: StackSettings) -> int:
    speed = parse_speed(args.speed)
    window = parse_window(args.from_time, args.to_time)
    with ingest_context(settings) as ctx, _progress() as progress:
        task = progress.add_task("replaying", total=None)
        stats = run_replay(
            ctx,
            [Path(p) for p in args.paths],
            speed=speed,
            window=window,
            auto_window=args.auto_window,
            on_start=lambda total: progress.update(task, total=total),
            on_progress=lambda: progress.advance(task),
        )
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.records.items()))
    _out.print(
        f"replayed {stats.files} files, {stats.inputs} inputs -> md.raw.v0: {kinds};"
        f" heartbeats {stats.heartbeats} x {ctx.sink.partitions} partitions;"
        f" gap markers {stats.gaps}; dead letters {stats.dead_letters} (md.raw.dlq);"
        f" duplicate trades dropped {stats.parser.get('duplicate_trades', 0)}"
        + window_summary(stats, auto=args.auto_window)
    )
    return 0


def _cmd_synthetic(args: argparse.Namespace, settings: StackSettings) -> int:
    with ingest_context(settings) as ctx, _progress() as progress:
        task = progress.add_task(f"scenario {args.scenario}", total=args.minutes)
        start: list[int] = []

        def on_progress(exchange_ts: int) -> None:
            start[:] = start or [exchange_ts]
            progress.update(task, completed=(exchange_ts - start[0]) // 60_000)

        counts = run_synthetic(
            ctx,
            scenario=args.scenario,
            assets=args.assets,
            minutes=args.minutes,
            seed=args.seed,
            inject_at_minute=args.inject_at,
            on_progress=on_progress,
        )
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    _out.print(
        f"synthetic {args.scenario}: {args.assets} assets x {args.minutes} min, seed {args.seed}"
        f" -> md.raw.v0: {kinds}"
    )
    return 0


def _cmd_hyperliquid(args: argparse.Namespace, settings: StackSettings) -> int:
    from connectors.hyperliquid.live import HyperliquidSettings
    from topology.live import run_hyperliquid

    coins = tuple(c.strip() for c in args.coins.split(",") if c.strip())
    hl = HyperliquidSettings(**({"ws_url": args.ws_url} if args.ws_url else {}))
    if args.rest_url:
        hl = hl.model_copy(update={"rest_url": args.rest_url})
    run_hyperliquid(
        settings,
        hl,
        coins,
        report=_out.print,
        max_seconds=args.seconds,
        metrics_port=args.metrics_port,
    )
    return 0


def add_ingest_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alpha ingest ...`` to the CLI."""
    ingest = sub.add_parser("ingest", help="write market data to md.raw.v0")
    actions = ingest.add_subparsers(dest="action", metavar="<source>", required=True)

    replay = actions.add_parser(
        "replay",
        help="replay recorded files (CSV, WS captures, REST cassettes, Feather)",
        description="Replay recorded market data into md.raw.v0, deterministically:"
        " the same files always give byte-identical records. Directories are read recursively.",
    )
    replay.add_argument("paths", nargs="+", help="files or directories")
    replay.add_argument("--speed", help="pace at N times recorded speed (e.g. 10x); default max")
    replay.add_argument(
        "--from-time",
        metavar="T",
        help="replay only inputs recorded at or after T (ISO-8601 UTC like 2025-07-21T00:00Z or"
        " 2025-07-21, or epoch ms); histories are stamped with exchange time",
    )
    replay.add_argument(
        "--to-time", metavar="T", help="replay only inputs recorded before T (same forms)"
    )
    replay.add_argument(
        "--auto-window",
        action="store_true",
        help="also clamp the window to the span of the 1m candles and live captures: skip"
        " sparse histories (e.g. years of funding) before and after them",
    )
    replay.set_defaults(func=_cmd_replay)

    synthetic = actions.add_parser(
        "synthetic", help="seeded synthetic multi-asset data with an injected scenario"
    )
    synthetic.add_argument("--scenario", default="calm", help="see docs/synthetic.md")
    synthetic.add_argument("--assets", type=int, default=35)
    synthetic.add_argument("--minutes", type=int, default=300)
    synthetic.add_argument("--seed", type=int, default=7)
    synthetic.add_argument(
        "--inject-at",
        type=int,
        metavar="MINUTE",
        help="run minute of the injection (default max(minutes-60, 0.7*minutes))",
    )
    synthetic.set_defaults(func=_cmd_synthetic)

    live = actions.add_parser("hyperliquid", help="the live Hyperliquid connector (WS + REST)")
    live.add_argument("--coins", default="BTC,ETH,SOL", help="comma-separated coins")
    live.add_argument("--ws-url", help="WebSocket URL (default: mainnet)")
    live.add_argument("--rest-url", help="REST info URL (default: mainnet)")
    live.add_argument("--seconds", type=float, help="stop after this long (default: run until ^C)")
    live.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    live.set_defaults(func=_cmd_hyperliquid)
