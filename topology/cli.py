"""The ``alpha`` command line.

Every failure the project anticipates is one line on stderr and a non-zero exit; ``--debug`` adds
the traceback. Settings come from ``ALPHA_*`` environment variables (see ``alpha stack --help``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from schemas.errors import AlphaError
from topology import spec
from topology.assets_cli import add_assets_parser
from topology.events_cli import add_events_parser
from topology.explain_cli import add_explain_parser
from topology.hrp_cli import add_hrp_parser
from topology.ingest_cli import add_ingest_parser
from topology.replay_cli import add_replay_parser
from topology.schemas_cli import add_schemas_parser
from topology.settings import APICURIO_VERSION, KAFKA_VERSION, StackSettings
from topology.sql_cli import add_sql_parsers
from topology.trader_cli import add_trader_parser
from topology.worker_cli import add_worker_parser

EXIT_ERROR = 1
EXIT_DRIFT = 3

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
# Tables keep whole paths when piped (rich would truncate them to 80 columns).
_tables = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

_EPILOG = """\
typical session:
  alpha stack up          start Kafka and the schema registry on 127.0.0.1
  alpha topics create     create every declared topic (idempotent)
  alpha smoke             prove registry + wire format + transactions end to end
  alpha stack down        stop everything, leave no process behind

settings (environment): ALPHA_HOME, ALPHA_KAFKA_PORT (9092), ALPHA_CONTROLLER_PORT (9093),
ALPHA_REGISTRY_PORT (8081), ALPHA_JAVA, ALPHA_TOPIC_REPLICATION (1). See docs/local-stack.md.
"""


def _say(message: str) -> None:
    _out.print(message)


def _cmd_fetch(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.localstack.stack import LocalStack

    with _out.status("resolving artifacts with Maven (first time: a few hundred MB)..."):
        LocalStack(settings).fetch(_say, force=args.force)
    return 0


def _cmd_up(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.localstack.stack import LocalStack

    LocalStack(settings).up(_say)
    return 0


def _cmd_down(args: argparse.Namespace, settings: StackSettings) -> int:
    import shutil

    from topology.localstack.stack import LocalStack

    LocalStack(settings).down(_say)
    if args.wipe:
        shutil.rmtree(settings.runtime, ignore_errors=True)
        _say(f"wiped {settings.runtime} (topics, offsets, registered schemas)")
    return 0


def _cmd_status(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.localstack.stack import LocalStack

    rows = LocalStack(settings).status()
    table = Table("service", "state", "pid", "endpoint", "log", box=None)
    for row in rows:
        table.add_row(row.name, row.state, str(row.pid or "-"), row.endpoint, row.log)
    _tables.print(table)
    return 0 if all(r.state == "ready" for r in rows) else EXIT_ERROR


def _cmd_logs(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.localstack.stack import LocalStack

    stack = LocalStack(settings)
    names = [args.service] if args.service else [s.name for s in stack.services]
    for name in names:
        process = stack.service(name).process
        _out.rule(f"{name}: {process.log_file}")
        sys.stdout.write(process.tail(args.lines) + "\n")
    if args.follow:
        _follow(stack.service(names[-1]).process.log_file)
    return 0


def _follow(path: object) -> None:
    with open(str(path), encoding="utf-8", errors="replace") as fh:
        fh.seek(0, 2)
        while True:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.25)


def _cmd_topics_create(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.admin import admin_client, create_topics

    replication = args.replication or settings.topic_replication
    states = create_topics(
        admin_client(args.bootstrap or settings.bootstrap_servers), replication=replication
    )
    for state in states:
        suffix = f": {state.detail} (not changed)" if state.detail else ""
        _say(f"{state.status:<8} {state.spec.name}{suffix}")
    created = sum(s.status == "created" for s in states)
    drift = [s for s in states if s.status == "drift"]
    _say(
        f"{created} created, {len(states) - created - len(drift)} already present,"
        f" {len(drift)} drifted"
    )
    if drift:
        _err.print(
            "error: drifted topics differ from topology/spec.py;"
            " recreate them or bump the topic major"
        )
        return EXIT_DRIFT
    return 0


def _cmd_topics_list(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.admin import admin_client, inspect, undeclared

    admin = admin_client(args.bootstrap or settings.bootstrap_servers)
    table = Table("topic", "key", "partitions", "cleanup", "on broker", box=None)
    for state in inspect(admin):
        s = state.spec
        shown = state.status + (f" ({state.detail})" if state.detail else "")
        table.add_row(s.name, str(s.key), str(s.partitions), str(s.cleanup), shown)
    _tables.print(table)
    extra = undeclared(admin)
    if extra:
        _say(f"also on the broker, not declared: {', '.join(extra)}")
    return 0


def _cmd_topics_describe(args: argparse.Namespace, settings: StackSettings) -> int:
    sys.stdout.write(spec.describe() + "\n")
    return 0


def _cmd_smoke(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.smoke import run_smoke

    run_smoke(settings, _say, records=args.records)
    return 0


def _cmd_demo(args: argparse.Namespace, settings: StackSettings) -> int:
    from topology.demo import run_demo

    return run_demo(settings, _out, fresh=not args.no_reset)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``alpha`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="alpha",
        description="Alpha Data Detector: stateful stream processing for crypto market data.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    stack = sub.add_parser(
        "stack",
        help="the local Kafka broker and schema registry (no Docker)",
        description=(
            f"Apache Kafka {KAFKA_VERSION} (KRaft, single node) and Apicurio Registry"
            f" {APICURIO_VERSION}, assembled from Maven Central, on 127.0.0.1."
        ),
    )
    stack_sub = stack.add_subparsers(dest="action", metavar="<action>", required=True)
    fetch = stack_sub.add_parser("fetch", help="assemble Kafka and the registry with Maven")
    fetch.add_argument("--force", action="store_true", help="re-download even if present")
    fetch.set_defaults(func=_cmd_fetch)
    stack_sub.add_parser("up", help="start what is not running; wait until ready").set_defaults(
        func=_cmd_up
    )
    down = stack_sub.add_parser("down", help="stop everything (SIGTERM, then SIGKILL)")
    down.add_argument("--wipe", action="store_true", help="also delete topics, offsets, schemas")
    down.set_defaults(func=_cmd_down)
    stack_sub.add_parser("status", help="state, pid and endpoint of each service").set_defaults(
        func=_cmd_status
    )
    logs = stack_sub.add_parser("logs", help="print a service's log")
    logs.add_argument("service", nargs="?", choices=("kafka", "registry"), help="default: all")
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines to show (40)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=_cmd_logs)

    topics = sub.add_parser("topics", help="the declared topics (topology/spec.py)")
    topics_sub = topics.add_subparsers(dest="action", metavar="<action>", required=True)
    create = topics_sub.add_parser("create", help="create every declared topic (idempotent)")
    create.add_argument("--replication", type=int, help="replication factor (default: settings)")
    create.add_argument("--bootstrap", help="brokers (default: the local stack)")
    create.set_defaults(func=_cmd_topics_create)
    listing = topics_sub.add_parser("list", help="declared topics and their state on the broker")
    listing.add_argument("--bootstrap", help="brokers (default: the local stack)")
    listing.set_defaults(func=_cmd_topics_list)
    topics_sub.add_parser("describe", help="print the declaration, no broker needed").set_defaults(
        func=_cmd_topics_describe
    )

    smoke = sub.add_parser("smoke", help="self-test: Avro via the registry, transactions")
    smoke.add_argument("--records", type=int, default=5, help="records per transaction (5)")
    smoke.set_defaults(func=_cmd_smoke)
    demo = sub.add_parser(
        "demo",
        help="the main job: the whole topology on the bundled real data, summary and picture",
        description="Start the stack from empty (it wipes the local stack's topics, the ClickHouse"
        " store and the worker tables first), run the workers and the sink, replay the bundled"
        " real Hyperliquid candles and tick captures, print a summary from ClickHouse and draw"
        " demo-output/alpha-demo.png and .html. The stack keeps running afterwards.",
    )
    demo.add_argument(
        "--no-reset", action="store_true", help="keep the existing data (replays on top of it)"
    )
    demo.set_defaults(func=_cmd_demo)
    add_ingest_parser(sub)
    add_assets_parser(sub)
    add_worker_parser(sub)
    add_schemas_parser(sub)
    add_events_parser(sub)
    add_sql_parsers(sub)
    add_explain_parser(sub)
    add_replay_parser(sub)
    add_hrp_parser(sub)
    add_trader_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``alpha`` command; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Callable[[argparse.Namespace, StackSettings], int] = args.func
    try:
        settings = StackSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"ALPHA_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        _err.print(f"alpha: error: invalid setting: {problems}", markup=False)
        return EXIT_ERROR
    try:
        return handler(args, settings)
    except AlphaError as exc:
        if args.debug:
            raise
        _err.print(f"alpha: error: {exc}", markup=False)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
