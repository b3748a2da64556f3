"""What the teams verbs (keys, teams, usage, audit) share: the store from the config, flags, output."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from claude_proxy.config.loader import ConfigError, load_config
from claude_proxy.config.teams import RateError, parse_rate, usd_to_micros
from claude_proxy.teams.base import STORE_ERRORS, SchemaBehind, Store
from claude_proxy.teams.records import Actor
from claude_proxy.teams.rows import StoreError

PROG = "claude-proxy"
_SPAN = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """A bad flag value: printed as one line, exit 2."""


def common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="PATH", help="config file (TOML) with a [teams] table")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", metavar="N|N/PERIOD", help='requests per minute, or e.g. "100/hour" ("none" clears)')
    parser.add_argument("--tpm", metavar="N|N/PERIOD", help='tokens per minute, or e.g. "2000000/hour"')
    parser.add_argument("--max-concurrent", metavar="N", help="requests in flight at once")
    parser.add_argument("--budget", metavar="USD", help="monthly budget in USD")


def limit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """Only the limit flags given; the value "none" clears a limit."""
    changes: dict[str, Any] = {}
    try:
        for name in ("rpm", "tpm"):
            value = getattr(args, name)
            if value is not None:
                changes[name] = None if value == "none" else parse_rate(int(value) if value.isdigit() else value)
        if args.max_concurrent is not None:
            if args.max_concurrent == "none":
                changes["max_concurrent"] = None
            elif args.max_concurrent.isdigit():
                changes["max_concurrent"] = int(args.max_concurrent)
            else:
                raise UsageError(f"--max-concurrent must be a whole number or none, got {args.max_concurrent!r}")
        if args.budget is not None:
            changes["monthly_budget_micros"] = None if args.budget == "none" else usd_to_micros(float(args.budget))
    except (RateError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return changes


def open_store(args: argparse.Namespace) -> Store:
    """The configured store, ready: SQLite is created or upgraded; PostgreSQL must be at the schema head."""
    from claude_proxy.teams.gate import open_store as build

    config = load_config(args.config)
    if config.teams is None:
        where = config.source or "the config"
        raise ConfigError(f"{where}: no [teams] table: add one (store = \"sqlite\") to use stored keys")
    store = build(config.teams)
    try:
        store.migrate()
    except BaseException:
        store.stop()  # a store that cannot be made ready is let go of here, like one a verb is done with
        raise
    return store


def actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}@{socket.gethostname()}", remote_addr="local")


def span(text: str) -> float:
    """"7d", "12h", "30m" → seconds."""
    match = _SPAN.fullmatch(text.strip())
    if not match:
        raise UsageError(f"expected a span like 7d, 12h or 30m, got {text!r}")
    return int(match[1]) * _UNITS[match[2]]


def when(text: str) -> float:
    """An absolute date (YYYY-MM-DD, UTC) or a span from now ("90d")."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        import calendar

        return float(calendar.timegm(time.strptime(text, "%Y-%m-%d")))
    return time.time() + span(text)


def month_bounds(month: str) -> tuple[float, float]:
    import calendar

    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise UsageError(f"--month must look like 2026-12, got {month!r}")
    year, mon = int(month[:4]), int(month[5:])
    if not 1 <= mon <= 12:
        raise UsageError(f"--month must look like 2026-12, got {month!r}")
    start = calendar.timegm((year, mon, 1, 0, 0, 0))
    end = calendar.timegm((year + (mon == 12), 1 if mon == 12 else mon + 1, 1, 0, 0, 0))
    return float(start), float(end)


def emit(data: Any, as_json: bool, table: Sequence[dict[str, Any]] | None = None, columns: Sequence[str] = ()) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=False, default=str))
        return
    if table is None:
        for key, value in (data.items() if isinstance(data, dict) else ()):
            print(f"{key:>16}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
        return
    cols = list(columns) or (list(table[0]) if table else [])
    cells = [[_cell(row.get(c)) for c in cols] for row in table]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not table:
        print("(none)")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "-"
    return str(value)


def run_on_store(verb: Callable[[argparse.Namespace, Store], int], args: argparse.Namespace) -> int:
    """`run` for a verb on the configured store: opened (created or upgraded) first and stopped when the
    verb is done, whatever it did, so its connections and a PostgreSQL pool's threads end with the verb,
    not in the interpreter's exit (where a pool's threads may not stop: 20 s per command on Python 3.13)."""

    def on_store(args: argparse.Namespace) -> int:
        store = open_store(args)
        try:
            return verb(args, store)
        finally:
            store.stop()

    return run(on_store, args)


def run(handler: Any, args: argparse.Namespace) -> int:
    """Run a verb; config, store and flag problems are one line on stderr."""
    try:
        return int(handler(args))
    except (ConfigError, StoreError, UsageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SchemaBehind as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 4
    except STORE_ERRORS as exc:  # unreachable, locked too long, a full disk
        print(f"{PROG}: error: the teams store failed: {exc}", file=sys.stderr)
        return 1
