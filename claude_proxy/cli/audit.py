"""`claude-proxy audit`: the append-only trail of admin actions (who, what, when, from where)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from claude_proxy.cli.teams_common import common, emit, run_on_store, span
from claude_proxy.teams.base import Store
from claude_proxy.teams.records import iso


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-proxy audit", description="Admin actions, newest first.")
    parser.add_argument("--since", help="a span back from now: 7d, 12h")
    parser.add_argument("--actor", help="only this actor")
    parser.add_argument("--action", help="only this action, e.g. key.revoke")
    parser.add_argument("--limit", type=int, default=100)
    common(parser)
    return parser


def _audit(args: argparse.Namespace, store: Store) -> int:
    since = time.time() - span(args.since) if args.since else None
    rows = store.audit(since=since, actor=args.actor, action=args.action, limit=args.limit)
    for row in rows:
        row["time"] = iso(row.pop("ts"))
    emit(rows, args.json, rows, ("id", "time", "actor", "action", "target_type", "target_id", "remote_addr"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_on_store(_audit, build_parser().parse_args(argv))
