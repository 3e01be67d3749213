"""``alpha assets``: inspect the asset registry and record remaps (spec 002 §3.2, §21.1)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from connectors.asset_store import load_registry, save_registry
from connectors.registry import SchemaRegistry
from schemas.wire import AvroCodec
from topology.settings import StackSettings

_out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
TOPIC = "asset.registry.v0"


def _codec(settings: StackSettings) -> AvroCodec:
    with SchemaRegistry(settings.registry_url) as registry:
        return registry.codec(TOPIC)


def _cmd_list(args: argparse.Namespace, settings: StackSettings) -> int:
    registry = load_registry(settings.bootstrap_servers, _codec(settings))
    table = Table("venue", "kind", "symbol", "gen", "asset_uid", "status", box=None)
    for e in registry.entries():
        table.add_row(e.venue, e.kind, e.symbol, str(e.generation), str(e.asset_uid), e.status)
    _out.print(table)
    return 0


def _cmd_remap(args: argparse.Namespace, settings: StackSettings) -> int:
    codec = _codec(settings)
    registry = load_registry(settings.bootstrap_servers, codec)
    before = registry.lookup(args.venue, args.kind, args.symbol)
    if before is None:
        _out.print(f"{args.venue}:{args.kind}:{args.symbol} was never seen; nothing to remap")
        return 1
    after = registry.remap(args.venue, args.kind, args.symbol)
    save_registry(settings.bootstrap_servers, codec, registry)
    _out.print(
        f"{args.symbol}: asset_uid {before.asset_uid} frozen (remapped);"
        f" new asset_uid {after.asset_uid} (generation {after.generation})"
    )
    return 0


def add_assets_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alpha assets ...`` to the CLI."""
    assets = sub.add_parser("assets", help="the asset identity registry (asset.registry.v0)")
    actions = assets.add_subparsers(dest="action", metavar="<action>", required=True)
    actions.add_parser("list", help="every identity, all generations").set_defaults(func=_cmd_list)
    remap = actions.add_parser(
        "remap", help="freeze a symbol's id and give it a new one (the exchange reused a name)"
    )
    remap.add_argument("venue")
    remap.add_argument("kind", choices=("perp", "spot"))
    remap.add_argument("symbol")
    remap.set_defaults(func=_cmd_remap)
