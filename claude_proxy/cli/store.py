"""`claude-proxy store migrate [--sql] | status`: the teams store's schema and health.

PostgreSQL is migrated with alembic in this separate process (workers never import it): `migrate`
applies the revisions under an advisory lock, `--sql` prints their DDL for a DBA without connecting.
SQLite creates or upgrades its file in place. `status` shows the schema revision, reachability, the
breakers, the fleet's fail-open count and this host's usage spool backlog.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any

from claude_proxy.cli.teams_common import PROG, common, emit, run
from claude_proxy.config.loader import ConfigError, load_config
from claude_proxy.config.teams import TeamsSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-proxy store", description="The teams store's schema and health.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    migrate = verbs.add_parser("migrate", help="create or upgrade the schema (PostgreSQL: alembic)")
    migrate.add_argument("--sql", action="store_true", help="print the DDL instead of applying it (no connection)")
    migrate.add_argument("--from-worker", action="store_true", help=argparse.SUPPRESS)
    common(migrate)
    status = verbs.add_parser("status", help="schema revision, reachability, breakers, fail-opens, spool backlog")
    common(status)
    return parser


def _settings(args: argparse.Namespace) -> TeamsSettings:
    config = load_config(args.config)
    if config.teams is None:
        raise ConfigError(f"{config.source or 'the config'}: no [teams] table: nothing to migrate")
    return config.teams


def alembic_config(url: str | None) -> Any:
    """An alembic Config pointing at the packaged revisions (psycopg 3 as the SQLAlchemy driver)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("claude_proxy.teams") / "migrations"))
    if url:
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url[len(prefix):]
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.store == "sqlite":
        if args.sql:
            from claude_proxy.teams.schema import DDL

            print(DDL)
            return 0
        from claude_proxy.teams.store import SqliteStore

        version = SqliteStore(settings.path).migrate()
        emit({"store": "sqlite", "path": settings.path, "schema_version": version}, args.json)
        return 0
    try:
        from alembic import command
    except ImportError:
        raise ConfigError("migrations need alembic: pip install 'claude-proxy[postgres]'") from None
    from claude_proxy.teams.migrations import HEAD

    if args.sql:  # offline: the DDL, for review; never connects
        command.upgrade(alembic_config("postgresql+psycopg://reviewer@localhost/claude_proxy"), "head", sql=True)
        return 0
    url = os.environ.get(settings.postgres_url_env)
    if not url:
        raise ConfigError(f"${settings.postgres_url_env} is not set (the PostgreSQL DSN)")
    try:
        command.upgrade(alembic_config(url), "head")
    except Exception as exc:  # sqlalchemy's OperationalError and friends: one line, never the DSN
        message = str(exc).splitlines()[0][:300].replace(url, "<dsn>")
        print(f"{PROG}: error: migration failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    if not args.from_worker:
        emit({"store": "postgres", "schema_version": HEAD}, args.json)
    return 0


def _status(args: argparse.Namespace) -> int:
    from claude_proxy.teams.gate import open_store

    settings = _settings(args)
    store = open_store(settings)
    try:
        out = store.status()
    finally:
        store.stop()  # as `run_on_store` does for the other verbs
    if settings.store == "postgres":
        from claude_proxy.teams.migrations import HEAD
        from claude_proxy.teams.spool import dir_backlog

        out.pop("spool", None)  # this process's own spool is empty; the host's backlog is on disk
        out["schema_head"] = HEAD
        out["spool_dir"] = settings.spool_dir
        out["spool_backlog_bytes"] = dir_backlog(settings.spool_dir)
    emit(out, args.json)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run({"migrate": _migrate, "status": _status}[args.verb], args)
