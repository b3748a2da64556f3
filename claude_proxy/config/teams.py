"""The `[teams]` and `[teams.defaults]` tables: stored keys, limits and usage on an embedded store.

Kept apart from loader.py so the team settings are read in one place; loader.py calls `teams_settings`.
Rates are written as an integer (per minute) or a string that carries its own period ("100/hour").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PERIODS = {"second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "m": 60, "hour": 3600, "h": 3600, "day": 86400, "d": 86400}
_RATE = re.compile(r"\s*(\d+)\s*(?:/\s*(\d*)\s*([a-z]+))?\s*")
TEAMS_KEYS = {
    "store",
    "sqlite_path",
    "path",
    "on_store_error",
    "lease_seconds",
    "busy_timeout_ms",
    "tpm_counts_cache_reads",
    "unpriced",
    "metrics_per_key",
    "event_retention_days",
    "ui",
    "ui_cookie_secure",
    "defaults",
    "postgres_url_env",
    "redis_url_env",
    "postgres_pgbouncer",
    "auto_migrate",
    "auth_stale_seconds",
    "spool_dir",
    "spool_max_mb",
    "flush_interval",
    "instance",
}
# The distributed store's drivers ([postgres] extra): module → the pip command that brings it.
POSTGRES_MODULES = ("psycopg", "psycopg_pool", "redis")
POSTGRES_EXTRA = "pip install 'claude-proxy[postgres]'"
DEFAULTS_KEYS = {"rpm", "tpm", "max_concurrent", "monthly_budget_usd"}


class RateError(ValueError):
    """A rate that is neither an integer nor "N/period"."""


@dataclass(frozen=True)
class Rate:
    """`amount` per `period_s` seconds."""

    amount: int
    period_s: int = 60

    def __str__(self) -> str:
        name = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(self.period_s)
        return f"{self.amount}/{name}" if name else f"{self.amount}/{self.period_s}s"


def parse_rate(value: int | str) -> Rate:
    """60 → 60/minute; "100/hour", "5000/day", "10/30s" → that many per that period."""
    if isinstance(value, bool):
        raise RateError(f"expected a rate like 60 or \"100/hour\", got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise RateError(f"a rate cannot be negative, got {value}")
        return Rate(value)
    match = _RATE.fullmatch(str(value).lower())
    if not match:
        raise RateError(f"expected a rate like 60 or \"100/hour\", got {value!r}")
    amount, count, unit = int(match[1]), match[2], match[3]
    if unit is None:
        return Rate(amount)
    if unit.rstrip("s") in PERIODS:
        unit = unit.rstrip("s") if unit not in PERIODS else unit
    if unit not in PERIODS:
        raise RateError(f"unknown period {unit!r} in {value!r} (second, minute, hour or day)")
    period = PERIODS[unit] * (int(count) if count else 1)
    if period <= 0:
        raise RateError(f"the period in {value!r} must be positive")
    return Rate(amount, period)


@dataclass(frozen=True)
class Limits:
    """Limits of one scope; None = not set here (the next level decides, and unlimited at the end)."""

    rpm: Rate | None = None
    tpm: Rate | None = None
    max_concurrent: int | None = None
    monthly_budget_micros: int | None = None

    def over(self, fallback: Limits) -> Limits:
        """These limits, with `fallback` filling what is not set."""
        return Limits(
            rpm=self.rpm if self.rpm is not None else fallback.rpm,
            tpm=self.tpm if self.tpm is not None else fallback.tpm,
            max_concurrent=self.max_concurrent if self.max_concurrent is not None else fallback.max_concurrent,
            monthly_budget_micros=(
                self.monthly_budget_micros if self.monthly_budget_micros is not None else fallback.monthly_budget_micros
            ),
        )


@dataclass(frozen=True)
class TeamsSettings:
    store: str = "sqlite"
    path: str = ""
    on_store_error: str = "open"
    lease_seconds: float = 60.0
    busy_timeout_ms: int = 5000
    tpm_counts_cache_reads: bool = False
    # A key or team with a monthly budget on a model [prices] has no price for: "deny" (403 before any upstream
    # call: its cost could never be charged) or "allow" (served, recorded as unpriced, never charged).
    unpriced: str = "deny"
    # A key_id label on per-key cost and token counters (claude_proxy_key_*): one series per key, model and
    # provider, so off by default (500 keys make too many series); key-level views come from the ledger.
    metrics_per_key: bool = False
    # usage_events older than this many whole UTC days are folded into daily totals (usage_daily) and deleted,
    # so the ledger stops growing; 0 keeps every event. Usage by day, key, owner, team, model and provider
    # stays exact; past it a day counts whole, and its client model and single requests are gone.
    event_retention_days: int = 30
    ui: bool = True
    ui_cookie_secure: str = "auto"
    defaults: Limits = Limits()
    # store = "postgres": PostgreSQL (ledger) + Redis (limiter). DSNs are read from these environment
    # variables when a worker connects, never from the file, and never kept in the settings.
    postgres_url_env: str = "CLAUDE_PROXY_POSTGRES_URL"
    redis_url_env: str = "CLAUDE_PROXY_REDIS_URL"
    postgres_pgbouncer: bool = False
    auto_migrate: bool = True
    auth_stale_seconds: float = 300.0
    spool_dir: str = ""
    spool_max_mb: int = 256
    flush_interval: float = 1.0
    instance: str = ""


def default_store_path(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    state = Path(env.get("XDG_STATE_HOME") or Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return str(state / "claude-proxy" / "teams.db")


def sqlite_path_problem(path: str) -> str | None:
    """Why the SQLite store cannot live at `path`, found without creating anything: a file where one of its
    directories should be, or a directory this user cannot write to. None when nothing is in the way."""
    target = Path(path)
    if target.is_dir():
        return f"{path} is a directory: give the store's file, e.g. {target / 'teams.db'}"
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:  # the nearest part of the path that exists
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable by this user"
    if target.exists() and not os.access(target, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by this user"
    return None


def usd_to_micros(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RateError(f"expected an amount in USD (a number ≥ 0), got {value!r}")
    return round(value * 1_000_000)


def teams_settings(table: Mapping[str, Any], where: str, env: Mapping[str, str]) -> TeamsSettings:
    """Validate `[teams]`; every error names file and key, like the rest of the config."""
    from claude_proxy.config.loader import ConfigError

    def fail(key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{where}: 'teams.{key}' must be {expected}, got {type(value).__name__} {value!r}")

    for key in table:
        if key not in TEAMS_KEYS:
            raise ConfigError(f"{where}: unknown key 'teams.{key}' (expected one of: {', '.join(sorted(TEAMS_KEYS))})")
    store = table.get("store", "sqlite")
    if store not in ("sqlite", "postgres"):
        raise fail("store", '"sqlite" (one machine) or "postgres" (PostgreSQL + Redis, many machines)', store)
    path = table.get("sqlite_path", table.get("path", default_store_path(env)))
    if not isinstance(path, str) or not path:
        raise fail("sqlite_path", "a file path", path)
    distributed = _distributed(table, store, where, env, fail)
    on_error = table.get("on_store_error", "open")
    if on_error not in ("open", "closed"):
        raise fail("on_store_error", '"open" or "closed"', on_error)
    unpriced = table.get("unpriced", "deny")
    if unpriced not in ("deny", "allow"):
        raise fail("unpriced", '"deny" (budgeted keys only on priced models) or "allow"', unpriced)
    lease = table.get("lease_seconds", 60)
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or lease <= 0:
        raise fail("lease_seconds", "a number of seconds above 0", lease)
    busy = table.get("busy_timeout_ms", 5000)
    if isinstance(busy, bool) or not isinstance(busy, int) or busy < 0:
        raise fail("busy_timeout_ms", "an integer ≥ 0", busy)
    retention = table.get("event_retention_days", 30)
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 0:
        raise fail("event_retention_days", "a whole number of days ≥ 0 (0: keep every usage event)", retention)
    flags = {}
    for key, default in (("tpm_counts_cache_reads", False), ("metrics_per_key", False), ("ui", True)):
        flags[key] = table.get(key, default)
        if not isinstance(flags[key], bool):
            raise fail(key, "true or false", flags[key])
    secure = table.get("ui_cookie_secure", "auto")
    if secure not in ("auto", True, False):
        raise fail("ui_cookie_secure", '"auto", true or false', secure)
    defaults_table = table.get("defaults", {})
    if not isinstance(defaults_table, dict):
        raise fail("defaults", "a table", defaults_table)
    try:
        defaults = limits_from(defaults_table, "teams.defaults.", where)
    except RateError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return TeamsSettings(
        store=store,
        path=str(Path(path).expanduser()),
        on_store_error=on_error,
        lease_seconds=float(lease),
        busy_timeout_ms=busy,
        tpm_counts_cache_reads=flags["tpm_counts_cache_reads"],
        unpriced=unpriced,
        metrics_per_key=flags["metrics_per_key"],
        event_retention_days=retention,
        ui=flags["ui"],
        ui_cookie_secure=str(secure).lower() if isinstance(secure, bool) else secure,
        defaults=defaults,
        **distributed,
    )


def _distributed(table: Mapping[str, Any], store: str, where: str, env: Mapping[str, str], fail: Any) -> dict[str, Any]:
    """The PostgreSQL + Redis settings; for store = "postgres" the DSN variables must be set and the
    drivers installed (each a one-line error naming the variable or the pip command)."""
    from claude_proxy.config.loader import ConfigError

    out: dict[str, Any] = {}
    for key in ("postgres_url_env", "redis_url_env", "instance"):
        if key in table:
            value = table[key]
            if not isinstance(value, str) or (key != "instance" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value)):
                raise fail(key, "the name of an environment variable" if key != "instance" else "a name", value)
            out[key] = value
    for key in ("postgres_pgbouncer", "auto_migrate"):
        if key in table:
            if not isinstance(table[key], bool):
                raise fail(key, "true or false", table[key])
            out[key] = table[key]
    if "auto_migrate" not in out:
        out["auto_migrate"] = store == "sqlite"  # PostgreSQL migrates only when asked (a separate step)
    for key, positive in (("auth_stale_seconds", False), ("flush_interval", True), ("spool_max_mb", True)):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
                raise fail(key, "a number above 0" if positive else "a number ≥ 0", value)
            out[key] = int(value) if key == "spool_max_mb" else float(value)
    spool = table.get("spool_dir")
    if spool is not None:
        if not isinstance(spool, str) or not spool:
            raise fail("spool_dir", "a directory path", spool)
        out["spool_dir"] = str(Path(spool).expanduser())
    else:
        state = Path(default_store_path(env)).parent
        out["spool_dir"] = str(state / "usage-spool")
    if store == "postgres":
        import importlib.util

        for var_key, default in (("postgres_url_env", "CLAUDE_PROXY_POSTGRES_URL"),
                                 ("redis_url_env", "CLAUDE_PROXY_REDIS_URL")):
            var = out.get(var_key, default)
            if not env.get(var):
                raise ConfigError(f"{where}: [teams] store = \"postgres\" reads its DSN from ${var} (teams.{var_key}),"
                                  " which is not set")
        missing = [m for m in POSTGRES_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"{where}: [teams] store = \"postgres\" needs {', '.join(missing)}: {POSTGRES_EXTRA}")
    return out


def limits_from(table: Mapping[str, Any], prefix: str, where: str) -> Limits:
    """A `Limits` from a table with rpm/tpm/max_concurrent/monthly_budget_usd (RateError names the key)."""
    for key in table:
        if key not in DEFAULTS_KEYS:
            raise RateError(f"unknown key '{prefix}{key}' (expected one of: {', '.join(sorted(DEFAULTS_KEYS))})")
    values: dict[str, Any] = {}
    for key in ("rpm", "tpm"):
        if key in table:
            try:
                values[key] = parse_rate(table[key])
            except RateError as exc:
                raise RateError(f"'{prefix}{key}': {exc}") from None
    if "max_concurrent" in table:
        value = table["max_concurrent"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RateError(f"'{prefix}max_concurrent' must be an integer ≥ 0, got {value!r}")
        values["max_concurrent"] = value
    if "monthly_budget_usd" in table:
        try:
            values["monthly_budget_micros"] = usd_to_micros(table["monthly_budget_usd"])
        except RateError as exc:
            raise RateError(f"'{prefix}monthly_budget_usd': {exc}") from None
    return Limits(**values)
