"""``alpha worker <role>``: run a stage's Faust worker in the foreground (SIGTERM/^C to stop)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from packs.feature import load_feature_pack
from topology.settings import StackSettings

ROLES = ("lattice",)


def _cmd_worker(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.lattice_worker import LatticeWorker, WorkerOptions

    data_dir = args.data_dir or settings.home / "workers" / args.role
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
    LatticeWorker(options).run(loglevel="debug" if args.debug else "warning")
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
    worker.add_argument("role", choices=ROLES, help="which stage")
    worker.add_argument("--app-id", help="Faust app id = consumer group (default alpha-<role>)")
    worker.add_argument("--data-dir", type=Path, help="local table directory")
    worker.add_argument(
        "--commit-interval", type=float, default=1.0, help="seconds between commits (1.0)"
    )
    worker.add_argument(
        "--session-timeout",
        type=float,
        default=10.0,
        help="seconds before a dead worker's partitions are taken over (10)",
    )
    worker.add_argument("--feature-pack", type=Path, help="a feature pack YAML (default v1.0)")
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    worker.set_defaults(func=_cmd_worker)
