"""`claude-proxy store migrate [--sql] | status` on a real PostgreSQL, and the worker's schema check."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from claude_proxy.teams.migrations import HEAD
from tests.conftest import proxy_config
from tests.support.proxy_server import ProxyServer, write_config
from tests.support.stores import PostgresServer, RedisServer
from tests.support.upstream import FakeUpstream


def _cli(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "claude_proxy", "store", *args, "-c", str(config)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.toml", {"provider": {"name": "custom", "base_url": "http://127.0.0.1:9"},
                                              "teams": {"store": "postgres", "spool_dir": str(tmp_path / "spool")}})


def test_the_head_constant_is_the_revisions_head() -> None:
    from alembic.script import ScriptDirectory

    from claude_proxy.cli.store import alembic_config

    assert ScriptDirectory.from_config(alembic_config(None)).get_current_head() == HEAD


def test_sql_prints_the_ddl_without_connecting(tmp_path: Path) -> None:
    env = {"CLAUDE_PROXY_POSTGRES_URL": "postgresql://nobody@127.0.0.1:1/none", "CLAUDE_PROXY_REDIS_URL": "redis://x"}
    out = _cli(_config(tmp_path), env, "migrate", "--sql")
    assert out.returncode == 0, out.stderr
    assert "CREATE TABLE api_keys" in out.stdout and "CREATE TABLE usage_events" in out.stdout


def test_migrate_twice_at_once_then_again_is_one_head(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    dsn = postgres_server.database("migrations")
    env = {"CLAUDE_PROXY_POSTGRES_URL": dsn, "CLAUDE_PROXY_REDIS_URL": redis_server.url}
    config = _config(tmp_path)
    with ThreadPoolExecutor(2) as pool:  # two instances migrating at once: the advisory lock serialises them
        results = list(pool.map(lambda _: _cli(config, env, "migrate", "--json"), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert _cli(config, env, "migrate").returncode == 0  # a rerun is a no-op
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    status = _cli(config, env, "status", "--json")
    assert status.returncode == 0 and f'"schema_version": "{HEAD}"' in status.stdout
    assert dsn not in status.stdout + status.stderr


def test_a_worker_on_an_older_schema_refuses_to_start_with_one_line(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    dsn = postgres_server.database("behind")  # empty: never migrated
    with FakeUpstream() as upstream:
        server = ProxyServer(proxy_config(upstream, teams={"store": "postgres"}), workers=1,
                             env={"CLAUDE_PROXY_POSTGRES_URL": dsn, "CLAUDE_PROXY_REDIS_URL": redis_server.url})
        with pytest.raises(RuntimeError) as failed:
            server.start()
        server.stop()
    lines = [line for line in server.output().splitlines() if "schema" in line]
    assert lines and lines[0].startswith("claude-proxy: error: the PostgreSQL schema is at nothing")
    assert "run `claude-proxy store migrate`" in lines[0]
    assert "Traceback" not in server.output() and dsn not in server.output()
    assert "exited with" in str(failed.value)


def test_0002_counts_unpriced_answers_in_the_daily_totals_filled_in_from_the_events(
    postgres_server: PostgresServer,
) -> None:
    """A ledger at 0001 with days already uploaded: 0002 adds usage_daily.unpriced, counted from the events
    still there, so those days read the same once their events are pruned; and it goes back down cleanly."""
    from alembic import command

    from claude_proxy.cli.store import alembic_config

    dsn = postgres_server.database("upgrade_0002")
    command.upgrade(alembic_config(dsn), "0001")
    event = ("INSERT INTO usage_events (usage_id, ts, day, key_id, owner, provider, upstream_model, input_tokens,"
             " output_tokens, cache_read_tokens, cache_write_tokens, estimated, cost_micros, priced)"
             " VALUES (%s, 0, %s, 'k1', 'o', %s, 'm', 1, 1, 0, 0, false, %s, %s)")
    with psycopg.connect(dsn) as conn:
        for usage_id, day, provider, priced in (("u1", "2026-11-01", "p", True), ("u2", "2026-11-01", "p", False),
                                                ("u3", "2026-11-01", "p", False), ("u4", "2026-11-02", None, False)):
            conn.execute(event, (usage_id, day, provider, 5 if priced else None, priced))
        conn.execute("INSERT INTO usage_daily (day, key_id, owner, provider, upstream_model, requests, errors,"
                     " estimated, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_micros)"
                     " VALUES ('2026-11-01', 'k1', 'o', 'p', 'm', 3, 0, 0, 3, 3, 0, 0, 5),"
                     " ('2026-11-02', 'k1', 'o', '', 'm', 1, 0, 0, 1, 1, 0, 0, 0)")
    command.upgrade(alembic_config(dsn), "head")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT day, provider, unpriced FROM usage_daily ORDER BY day").fetchall()
        assert rows == [("2026-11-01", "p", 2), ("2026-11-02", "", 1)]
    command.downgrade(alembic_config(dsn), "0001")
    with psycopg.connect(dsn) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'usage_daily'")}
        assert "unpriced" not in columns and "cost_micros" in columns
    command.upgrade(alembic_config(dsn), "head")
