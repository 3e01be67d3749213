"""``alpha trader``: talk to the downstream stage and read what it decided.

- ``alpha trader alert --level CRIT --reason TEXT``: write an alert to ``trade.in.v0`` (an
  alert-only record, partition -1). The trader applies it before the next minute it processes:
  a ``CRIT`` starts the fail-safe (spec 001: new entries pause for ``cooldown_minutes``, a
  ``mode_switch`` record goes to ``control.v0`` each way). ``RESUME`` is the operator's way out
  of a hard stop: it lifts it and restarts the executor (a ``mode_switch`` from ``hard_stop``;
  the next breach emits a kill switch again). Alerts go through the stage's one input topic, so
  a replay from offsets applies them at the same minute again.
- ``alpha trader sizing-api [--port 8125]``: ``POST /sizing`` over HTTP with the trader's
  latest CVaR caps (:mod:`topology.sizing_api`).
- ``alpha trader tail [--topic T]``: print the stage's records as they are committed
  (read_committed, decoded with the writer schema from the registry), one JSON object per line;
  ``--from-beginning``, ``--max``, ``--idle-timeout`` as in ``alpha events tail``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from connectors.registry import SchemaRegistry
from schemas.errors import AlphaError
from topology import spec
from topology.events_cli import follow
from topology.settings import StackSettings
from topology.trader_driver import OUTPUT_TOPICS

TRADE_IN = "trade.in.v0"
LEVELS = ("INFO", "WARN", "CRIT", "RESUME")


def alert_record(level: str, reason: str, at_ms: int) -> dict[str, Any]:
    """The alert-only ``trade.in.v0`` value the trader applies before its next minute."""
    if level not in LEVELS:
        raise AlphaError(f"alert level {level!r} is not one of {', '.join(LEVELS)}")
    if not reason.strip():
        raise AlphaError("an alert needs a reason (it labels the metric and the mode switch)")
    return {
        "partition": -1,
        "partitions": spec.topic("lattice.v0").partitions,
        "minute_ms": 0,
        "final": False,
        "quotes": [],
        "signals": [],
        "alerts": [{"level": level, "reason": reason, "at_ms": at_ms}],
    }


def _cmd_alert(args: argparse.Namespace, settings: StackSettings) -> int:
    at_ms = args.at_ms if args.at_ms is not None else int(time.time() * 1000)
    value = alert_record(args.level, args.reason, at_ms)
    with SchemaRegistry(settings.registry_url) as registry:
        data = registry.codec(TRADE_IN).encode(value)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all"})
    producer.produce(TRADE_IN, data, key=b"alert", partition=0)
    if producer.flush(30) != 0:
        raise AlphaError(f"the alert was not acknowledged by {settings.bootstrap_servers}")
    sys.stdout.write(f"alert {args.level} '{args.reason}' at {at_ms} written to {TRADE_IN}\n")
    return 0


def _cmd_tail(args: argparse.Namespace, settings: StackSettings) -> int:
    def show(topic: str, value: dict[str, Any]) -> str:
        return json.dumps({"topic": topic, "value": value}, sort_keys=True)

    follow(
        settings,
        args.topic or list(OUTPUT_TOPICS),
        from_beginning=args.from_beginning,
        max_records=args.max,
        idle_timeout=args.idle_timeout,
        show=show,
    )
    return 0


def _cmd_sizing_api(args: argparse.Namespace, settings: StackSettings) -> int:
    from packs.risk import load_risk_policy
    from topology.sizing_api import serve

    policy = load_risk_policy(path=args.risk_policy) if args.risk_policy else load_risk_policy()
    serve(settings, policy, args.host, args.port)
    return 0


def add_trader_parser(sub: Any) -> None:
    """Add ``alpha trader``."""
    trader = sub.add_parser("trader", help="alerts to and records of the downstream stage")
    trader_sub = trader.add_subparsers(dest="action", metavar="<action>", required=True)
    alert = trader_sub.add_parser(
        "alert",
        help="send an alert to the trader (CRIT starts the fail-safe)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    alert.add_argument(
        "--level",
        choices=LEVELS,
        required=True,
        help="CRIT starts the fail-safe; RESUME lifts a hard stop (operator)",
    )
    alert.add_argument("--reason", required=True, help="why (metric label, mode-switch record)")
    alert.add_argument("--at-ms", type=int, help="when, epoch ms (default: now)")
    alert.set_defaults(func=_cmd_alert)
    tail = trader_sub.add_parser(
        "tail",
        help="print decisions, orders, fills, advice, budgets, caps, risk and control records",
    )
    tail.add_argument(
        "--topic", action="append", choices=OUTPUT_TOPICS, help="only this topic (repeatable)"
    )
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--max", type=int, help="stop after this many records")
    tail.add_argument(
        "--idle-timeout", type=float, help="stop after this many seconds without a record"
    )
    tail.set_defaults(func=_cmd_tail)
    api = trader_sub.add_parser(
        "sizing-api",
        help="serve POST /sizing (the CVaR guard's max size and leverage) and GET /caps",
    )
    api.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    api.add_argument("--port", type=int, default=8125, help="port (8125; 0: a free one)")
    api.add_argument("--risk-policy", type=Path, help="a risk pack YAML (default v1)")
    api.set_defaults(func=_cmd_sizing_api)
