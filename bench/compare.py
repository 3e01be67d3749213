"""Compare two benchmark results: ``bench/compare.py OLD.json NEW.json``.

Prints every figure the two runs share, with both values and the change (a positive change is
an improvement whichever way the figure is better), then the figures only one run has.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _load(path: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"compare: cannot read {path}: {exc}") from exc
    return doc


def main(argv: list[str] | None = None) -> int:
    """Print the comparison; return 0."""
    parser = argparse.ArgumentParser(prog="bench/compare.py", description=__doc__.split("\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    args = parser.parse_args(argv)
    old, new = _load(args.old), _load(args.new)
    print(f"old: {old['date']} {old['commit'][:12]}   new: {new['date']} {new['commit'][:12]}")
    before = {f["name"]: f for f in old["figures"]}
    after = {f["name"]: f for f in new["figures"]}
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        change = (b["value"] - a["value"]) / a["value"] * 100 if a["value"] else float("nan")
        if b.get("better") == "lower":
            change = -change
        print(
            f"  {name:<48} {a['value']:>14,.3f} -> {b['value']:>14,.3f}"
            f" {b['unit']:<8} {change:+6.1f} %"
        )
    for label, only in (
        ("only old", before.keys() - after.keys()),
        ("only new", after.keys() - before.keys()),
    ):
        for name in sorted(only):
            print(f"  {name:<48} ({label})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
