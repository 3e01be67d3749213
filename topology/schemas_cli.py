"""``alpha schemas check``: the contract check users run in their CI (DESIGN.md §7, spec 002 §11.6).

Against the registry (default): for each shipped schema, would the subject ``<topic>-value``
accept it as its next version under the registry's compatibility rule (BACKWARD)? Against a
directory of released ``.avsc`` files (``--against-dir``, e.g. ``git archive v1.0 schemas/avro``):
the same BACKWARD rule, checked locally with Apache Avro's checker, no server needed. Exit code
0 when everything may be published, 1 when any schema is incompatible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from connectors.registry import SchemaRegistry
from schemas import catalog
from schemas.compat import backward_problems
from schemas.errors import SchemaError
from topology.settings import StackSettings

_out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
EXIT_INCOMPATIBLE = 1


def _selected(args: argparse.Namespace) -> dict[str, catalog.TopicSchema]:
    directory = args.schemas_dir or catalog.AVRO_DIR
    schemas = catalog.read_dir(directory)
    if args.topic:
        missing = sorted(set(args.topic) - set(schemas))
        if missing:
            raise SchemaError(f"no schema for {', '.join(missing)} in {directory}")
        schemas = {t: schemas[t] for t in args.topic}
    return schemas


def _against_dir(
    schemas: dict[str, catalog.TopicSchema], old_dir: Path
) -> list[tuple[str, str, str]]:
    released = catalog.read_dir(old_dir)
    rows: list[tuple[str, str, str]] = []
    for topic, schema in sorted(schemas.items()):
        old = released.get(topic)
        if old is None:
            rows.append((topic, "new", f"not in {old_dir}"))
            continue
        problems = backward_problems(schema.text, old.text)
        if problems:
            rows.append((topic, "incompatible", "; ".join(problems)))
        elif schema.text == old.text:
            rows.append((topic, "same", f"identical to {old_dir}"))
        else:
            rows.append((topic, "ok", f"BACKWARD-compatible with {old_dir}"))
    return rows


def _cmd_check(args: argparse.Namespace, settings: StackSettings) -> int:
    schemas = _selected(args)
    if args.against_dir:
        rows = _against_dir(schemas, args.against_dir)
        where = str(args.against_dir)
    else:
        with SchemaRegistry(settings.registry_url) as registry:
            rows = [(t, *registry.check(s)) for t, s in sorted(schemas.items())]
        where = settings.registry_url
    table = Table("topic", "verdict", "detail", box=None, title=f"schemas vs {where}")
    for topic, verdict, detail in rows:
        style = "red" if verdict == "incompatible" else ""
        table.add_row(topic, f"[{style}]{verdict}[/]" if style else verdict, detail)
    _out.print(table)
    bad = [r[0] for r in rows if r[1] == "incompatible"]
    if bad:
        _out.print(
            f"{len(bad)} incompatible: {', '.join(bad)} (evolve add-only with defaults,"
            " or publish a new topic major)"
        )
        return EXIT_INCOMPATIBLE
    _out.print(f"{len(rows)} schema(s) compatible")
    return 0


def add_schemas_parser(sub: Any) -> None:
    """Add ``alpha schemas check``."""
    schemas = sub.add_parser("schemas", help="the Avro contracts (schemas/avro) and the registry")
    actions = schemas.add_subparsers(dest="action", metavar="<action>", required=True)
    check = actions.add_parser(
        "check",
        help="fail (exit 1) if a schema is not BACKWARD-compatible with the registry or a release",
        description="Compare schemas with the registry's subjects (default) or with a directory "
        "of released .avsc files; exit 1 on any incompatible change. Nothing is registered.",
    )
    check.add_argument(
        "--schemas-dir", type=Path, help="the .avsc files to check (default: the shipped ones)"
    )
    check.add_argument(
        "--against-dir",
        type=Path,
        help="released .avsc files to compare with, instead of the registry",
    )
    check.add_argument("--topic", action="append", help="only this topic (repeatable)")
    check.set_defaults(func=_cmd_check)
