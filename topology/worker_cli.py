"""``alpha worker <role>``: run a stage's Faust worker in the foreground (SIGTERM/^C to stop)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from packs.feature import load_feature_pack
from topology.settings import StackSettings

ROLES = ("lattice", "market", "detector", "trader")


def _cmd_worker(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.lattice_worker import LatticeWorker, WorkerOptions

    data_dir = args.data_dir or settings.home / "workers" / args.role
    Path(data_dir).parent.mkdir(parents=True, exist_ok=True)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=settings.host)
    options = WorkerOptions(
        bootstrap=settings.bootstrap_servers,
        registry_url=settings.registry_url,
        app_id=args.app_id or f"alpha-{args.role}",
        data_dir=Path(data_dir),
        commit_interval_s=args.commit_interval,
        replication=settings.topic_replication,
        session_timeout_s=args.session_timeout,
        pack=load_feature_pack(path=args.feature_pack) if args.feature_pack else None,
    )
    if args.stall_timeout is not None:
        options = replace(options, stall_timeout_s=args.stall_timeout)
    if args.eager_commit is not None:
        options = replace(options, eager_commit_s=args.eager_commit or None)
    loglevel = "debug" if args.debug else args.log_level
    if args.role == "lattice":
        LatticeWorker(options).run(loglevel)
    elif args.role == "trader":
        from packs.risk import load_risk_policy
        from topology.trader_worker import TraderWorker

        risk_policy = load_risk_policy(path=args.risk_policy) if args.risk_policy else None
        TraderWorker(options, risk_policy).run(loglevel)
    elif args.role == "market":
        from packs.universe import load_universe_policy
        from topology.stage_workers import MarketWorker

        policy = load_universe_policy(path=args.universe_policy) if args.universe_policy else None
        MarketWorker(options, policy).run(loglevel)
    else:
        from packs.detector import load_detector_pack
        from packs.universe import load_universe_policy
        from topology.stage_workers import DetectorWorker

        pack = load_detector_pack(path=args.detector_pack) if args.detector_pack else None
        policy = load_universe_policy(path=args.universe_policy) if args.universe_policy else None
        DetectorWorker(options, pack, policy).run(loglevel)
    return 0


def add_worker_parser(sub: Any) -> None:
    """Add ``alpha worker``."""
    worker = sub.add_parser(
        "worker",
        help="run a stage's Faust worker (exactly-once; state restored from its changelog)",
        description="Run a stage worker in the foreground. Local tables are wiped at start and "
        "restored from the committed changelog topics, so a crash never leaves state ahead "
        "of the committed offsets (docs/lattice.md).",
    )
    worker.add_argument(
        "role",
        choices=ROLES,
        help="which stage: lattice (md.raw.v0 -> lattice.v0, market.in.v0), market"
        " (market.in.v0 -> market.snapshot.v0, universe.v0, frames), detector (lattice.v0 ->"
        " alpha.events.v0, trade.in.v0), trader (trade.in.v0 -> sizing decisions, paper orders"
        " and fills, exit advice, HRP budgets, CVaR caps, risk state, kill switch)",
    )
    worker.add_argument("--app-id", help="Faust app id = consumer group (default alpha-<role>)")
    worker.add_argument("--data-dir", type=Path, help="local table directory")
    worker.add_argument(
        "--commit-interval", type=float, default=1.0, help="seconds between commits (1.0)"
    )
    worker.add_argument(
        "--eager-commit",
        type=float,
        help="commit within this many seconds after a record produced outputs (a sealed"
        " minute, a frame, events), so they are visible downstream at once; 0: only every"
        " --commit-interval (default 0.1)",
    )
    worker.add_argument(
        "--session-timeout",
        type=float,
        default=10.0,
        help="seconds before a dead worker's partitions are taken over (10)",
    )
    worker.add_argument(
        "--stall-timeout",
        type=float,
        help="seconds a record or commit may take before the worker logs every task and exits"
        " non-zero for its supervisor to restart it (120)",
    )
    worker.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="warning"
    )
    worker.add_argument(
        "--feature-pack", type=Path, help="a feature pack YAML (lattice, detector; default v1.0)"
    )
    worker.add_argument(
        "--detector-pack", type=Path, help="a detector pack YAML (detector; default v0.1)"
    )
    worker.add_argument(
        "--universe-policy",
        type=Path,
        help="a universe policy YAML (market; detector hotlist; default v1)",
    )
    worker.add_argument(
        "--risk-policy", type=Path, help="a risk pack YAML (trader; default packs/risk/v1.yaml)"
    )
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    worker.set_defaults(func=_cmd_worker)
