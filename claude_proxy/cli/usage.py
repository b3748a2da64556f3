"""`claude-proxy usage`: tokens, requests and cost from the teams store, grouped as asked."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence

from claude_proxy.cli.teams_common import UsageError, common, emit, month_bounds, run_on_store, span
from claude_proxy.teams.base import Store
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.rows import GROUPS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-proxy usage", description="Usage and cost per team, key, model…")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--month", help="a UTC month, e.g. 2026-12 (default: this month)")
    when.add_argument("--since", help="a span back from now: 7d, 12h")
    parser.add_argument(
        "--by", nargs="+", default=["team"], choices=sorted(GROUPS), metavar="FIELD",
        help=f"group by any of: {', '.join(GROUPS)} (default: team)",
    )
    for name in ("team", "key", "owner", "model", "provider"):
        parser.add_argument(f"--{name}", help=f"only this {name}")
    parser.add_argument("--csv", action="store_true", help="print CSV")
    common(parser)
    return parser


def _usage(args: argparse.Namespace, store: Store) -> int:
    if args.since:
        since, until = time.time() - span(args.since), None
    else:
        since, until = month_bounds(args.month or month_of(time.time()))
    filters = {name: getattr(args, name) for name in ("team", "key", "owner", "model", "provider")}
    rows = store.usage(group_by=args.by, since=since, until=until, filters=filters)
    for row in rows:
        row["cost_usd"] = row["cost_micros"] / 1e6
    if args.csv:
        if args.json:
            raise UsageError("--csv and --json: choose one")
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else [*args.by, "requests"])
        writer.writeheader()
        writer.writerows(rows)
        return 0
    columns = [*args.by, "requests", "errors", "estimated", "input_tokens", "output_tokens", "cache_read_tokens",
               "cache_write_tokens", "cost_usd", "unpriced"]
    emit(rows, args.json, rows, columns)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_on_store(_usage, build_parser().parse_args(argv))
