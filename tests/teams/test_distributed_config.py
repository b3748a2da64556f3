"""`[teams] store = "postgres"`: DSNs only from the environment, one-line errors naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from claude_proxy.config.loader import ConfigError
from claude_proxy.config.teams import teams_settings

ENV = {"CLAUDE_PROXY_POSTGRES_URL": "postgresql://u@h/db", "CLAUDE_PROXY_REDIS_URL": "redis://h:1/0", "HOME": "/h"}


def test_postgres_reads_dsn_variable_names_and_defaults_auto_migrate_off() -> None:
    s = teams_settings({"store": "postgres", "spool_dir": "/var/spool/cp"}, "c.toml", ENV)
    assert (s.store, s.auto_migrate, s.spool_dir, s.on_store_error) == ("postgres", False, "/var/spool/cp", "open")
    assert "postgresql://" not in repr(s)  # the DSN is never kept in the settings
    assert teams_settings({}, "c.toml", ENV).auto_migrate is True  # SQLite migrates itself
    assert teams_settings({}, "c.toml", ENV).metrics_per_key is False  # one series per key: only when asked
    assert teams_settings({"metrics_per_key": True}, "c.toml", ENV).metrics_per_key is True
    assert teams_settings({}, "c.toml", ENV).event_retention_days == 30  # the design's default
    assert teams_settings({"event_retention_days": 0}, "c.toml", ENV).event_retention_days == 0  # keep every event


def test_a_missing_dsn_variable_is_named() -> None:
    env = {k: v for k, v in ENV.items() if k != "CLAUDE_PROXY_REDIS_URL"}
    with pytest.raises(ConfigError, match=r"\$CLAUDE_PROXY_REDIS_URL \(teams.redis_url_env\), which is not set"):
        teams_settings({"store": "postgres"}, "c.toml", env)
    with pytest.raises(ConfigError, match=r"\$MY_PG"):
        teams_settings({"store": "postgres", "postgres_url_env": "MY_PG"}, "c.toml", ENV)


@pytest.mark.parametrize(("table", "message"), [
    ({"store": "mysql"}, "'teams.store' must be"),
    ({"store": "postgres", "postgres_url_env": "not a name"}, "'teams.postgres_url_env' must be"),
    ({"store": "postgres", "flush_interval": 0}, "'teams.flush_interval' must be"),
    ({"store": "postgres", "auto_migrate": "yes"}, "'teams.auto_migrate' must be"),
    ({"metrics_per_key": "yes"}, "'teams.metrics_per_key' must be true or false"),
    ({"event_retention_days": -1}, "'teams.event_retention_days' must be a whole number of days"),
    ({"event_retention_days": 1.5}, "'teams.event_retention_days' must be a whole number of days"),
])
def test_bad_values_are_one_line_errors(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        teams_settings(table, "c.toml", ENV)


@pytest.mark.parametrize(("store", "absent"), [("postgres", "sqlite3"), ("sqlite", "psycopg"), ("sqlite", "redis")])
def test_a_worker_loads_only_its_own_backends_driver(store: str, absent: str, tmp_path: Path) -> None:
    """Each driver costs a worker megabytes of RSS (sqlite3 ~2 MB; psycopg, redis ~10 MB each)."""
    code = f"""
import sys
from claude_proxy.config.teams import teams_settings
from claude_proxy.teams.gate import open_store
import importlib, pkgutil
import claude_proxy.web, claude_proxy.pipeline
for package in (claude_proxy.web, claude_proxy.pipeline):  # everything a worker serving requests imports
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
settings = teams_settings({{"store": {store!r}, "path": {str(tmp_path / "t.db")!r}}}, "c.toml", {ENV!r})
open_store(settings)
assert {absent!r} not in sys.modules, sorted(m for m in sys.modules if m.startswith({absent!r}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **{k: v for k, v in ENV.items() if k != "HOME"}})
    assert done.returncode == 0, done.stderr


def test_a_dropped_store_is_freed_at_once_not_by_the_cycle_collector(tmp_path: Path) -> None:
    """Nothing a DistributedStore holds refers back to it, so dropping it frees it (and its pools) at once. A store
    only the cycle collector frees is freed at interpreter exit, where on Python 3.13 its PostgreSQL pool's threads
    no longer stop: it cost 20 s at the end of every CLI command on this backend (4 threads × 5 s)."""
    import gc
    import weakref

    from claude_proxy.teams.distributed import DistributedStore

    settings = teams_settings({"store": "postgres", "spool_dir": str(tmp_path / "spool")}, "c.toml", ENV)
    store = DistributedStore(settings, env=ENV)
    dropped = weakref.ref(store)
    gc.disable()
    try:
        del store
        assert dropped() is None, gc.get_referrers(dropped())
    finally:
        gc.enable()
