"""The teams store a test runs on — the embedded SQLite file or PostgreSQL + Redis — as a fixture
parameter, so one set of page/admin/CLI assertions runs on both backends.

`backend_for(request, name)` builds it: a fresh SQLite directory, or a fresh database on the
session's private PostgreSQL (migrated, as `claude-proxy store migrate` does) and a flushed private
Redis (tests/support/stores.py: free loopback ports, skipped or failed under CI when missing). The DSNs
reach servers and CLI runs through `env` only (`[teams] store = "postgres"` reads them from there).

Usage on PostgreSQL goes through each worker's local spool first and is uploaded in batches
(`flush_interval`): `wait_uploaded` waits for that explicitly, with a deadline.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.teams.spool import dir_backlog

BACKENDS = ("sqlite", "postgres")
FLUSH_INTERVAL = 0.2  # seconds between spool uploads on PostgreSQL (the default is 1 s)
PG_URL_ENV, REDIS_URL_ENV = "CLAUDE_PROXY_POSTGRES_URL", "CLAUDE_PROXY_REDIS_URL"
_databases = itertools.count()


class TeamsBackend:
    """One store for a module: the `[teams]` table for each server on it, and the env they and the CLI need."""

    def __init__(self, name: str, directory: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.dir = directory
        self.env = dict(env or {})
        self.spools: list[Path] = []

    def table(self, instance: str, **extra: Any) -> dict[str, Any]:
        """`[teams]` for one server (one instance name and spool directory each, on PostgreSQL)."""
        if self.name == "sqlite":
            return {"path": str(self.dir / "teams.db"), **extra}
        spool = self.dir / f"spool-{instance}"
        self.spools.append(spool)
        return {"store": "postgres", "spool_dir": str(spool), "flush_interval": FLUSH_INTERVAL, "instance": instance,
                **extra}

    def process_env(self) -> dict[str, str]:
        """The environment for a subprocess (a CLI run) on this store."""
        return {**os.environ, **self.env}

    def backlog(self) -> int:
        """Usage bytes spooled on local disk and not yet in the ledger (always 0 on SQLite)."""
        return sum(dir_backlog(str(s)) for s in self.spools)

    def wait_uploaded(self, timeout: float = 30.0) -> None:
        """Every spooled usage record is in the ledger (SQLite writes it at settlement: nothing to wait for)."""
        deadline = time.monotonic() + timeout
        while self.backlog() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.backlog() == 0, f"the usage spools still hold {self.backlog()} bytes after {timeout} s"


def backend_for(request: pytest.FixtureRequest, name: str, prefix: str) -> TeamsBackend:
    """A fresh store of kind `name` ("sqlite" or "postgres") for the requesting module."""
    directory = Path(tempfile.mkdtemp(prefix=f"claude-proxy-{prefix}-{name}-"))
    if name == "sqlite":
        return TeamsBackend(name, directory)
    from tests.support.stores import PostgresServer, RedisServer, migrate

    pg: PostgresServer = request.getfixturevalue("postgres_server")
    rd: RedisServer = request.getfixturevalue("redis_server")
    dsn = pg.database(f"{prefix}_{next(_databases)}")
    migrate(dsn)
    rd.flush()
    return TeamsBackend(name, directory, {PG_URL_ENV: dsn, REDIS_URL_ENV: rd.url})
