"""The PostgreSQL ledger: teams, keys, usage, spend, audit and the epoch (psycopg 3 + psycopg-pool).

The pool is created lazily in the process that uses it, so a worker never inherits its parent's
connections (never at import, never in the gunicorn master). Small and strict: 3 connections, a 1 s
wait for one, 2 s to connect, 2 s per statement, and a breaker in front so a dead database costs
three timeouts, then nothing, until a probe finds it back.

Usage arrives in batches from the spool (`record_usage`): one transaction inserts the events
`ON CONFLICT (usage_id) DO NOTHING RETURNING`, and only the rows actually inserted feed the daily
aggregates and the month spend, upserted in primary-key order — so re-uploading a batch never counts
twice and concurrent uploaders never deadlock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from claude_proxy.teams.base import SchemaBehind, StoreDown
from claude_proxy.teams.breaker import Breaker
from claude_proxy.teams.catalog import Catalog
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.migrations import HEAD
from claude_proxy.teams.rows import (
    FAIL_OPEN_LAST_AT,
    FAIL_OPEN_TOTAL,
    POSTGRES,
    USAGE_KEPT_FROM,
    Pruned,
    Retained,
    audit_query,
    day_of,
    day_start,
    fail_open_status,
    recent_query,
    usage_query,
    usage_totals,
)

DOWN = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
# Past this many usage rows (by the planner's statistics) `status()` reports the estimate, not a count.
EXACT_COUNT_BELOW = 1_000_000
# The planner's row estimate for a table: rows per page at the last ANALYZE (or autovacuum) times the pages
# the table has now, so growth since then is seen; -1 when it was never analysed.
ESTIMATE_ROWS = (
    "SELECT CASE WHEN c.reltuples < 0 OR c.relpages = 0 THEN -1"
    " ELSE (c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint"
    " END AS n FROM pg_class c WHERE c.oid = to_regclass(%s)"
)

# One spooled usage record's columns, in the order the upload inserts them.
# Column → its PostgreSQL type (the upload sends one array per column: `unnest` turns them back into rows).
EVENT_TYPES = {
    "usage_id": "text", "request_id": "text", "ts": "float8", "day": "text", "instance": "text", "key_id": "text",
    "team_id": "int8", "team": "text", "owner": "text", "endpoint": "text", "client_model": "text",
    "provider": "text", "upstream_model": "text", "stream": "bool", "status": "int4", "error_type": "text",
    "input_tokens": "int8", "output_tokens": "int8", "cache_read_tokens": "int8", "cache_write_tokens": "int8",
    "estimated": "bool", "cost_micros": "int8", "priced": "bool", "latency_ms": "float8",
}
EVENT_COLUMNS = tuple(EVENT_TYPES)
# Each array holds one Python type (a spooled 1 and 1.0 alike become float8, say).
_EVENT_CASTS: tuple[Callable[[Any], Any], ...] = tuple(
    {"text": str, "float8": float, "int8": int, "int4": int, "bool": bool}[t] for t in EVENT_TYPES.values())
# One statement for a whole batch, whatever its size: a constant text (prepared once per connection) with one
# array parameter per column — ~4x less client CPU than a multi-row VALUES list of ~25 parameters per row.
INSERT_EVENTS = (
    f"INSERT INTO usage_events ({', '.join(EVENT_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in EVENT_TYPES.values())
    + ") ON CONFLICT (usage_id) DO NOTHING RETURNING usage_id"
)


class PostgresLedger(Catalog):
    """Durable records on PostgreSQL. Thread-safe; raises StoreDown when the database cannot answer.
    Teams, keys and shared settings: `Catalog`; each committed admin change's epoch goes to `on_change`."""

    name = "postgres"
    dialect = POSTGRES

    def __init__(self, dsn: str, *, pgbouncer: bool = False, clock: Callable[[], float] = time.time,
                 breaker: Breaker | None = None, max_size: int = 3,
                 on_change: Callable[[int], None] | None = None) -> None:
        self.on_change = on_change
        self._dsn = dsn
        self.pgbouncer = pgbouncer
        self.clock = clock
        self.breaker = breaker or Breaker()
        self.max_size = max_size
        self._pool: ConnectionPool | None = None
        self._pid = 0
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    kwargs: dict[str, Any] = {"connect_timeout": 2, "options": "-c statement_timeout=2000",
                                              "row_factory": dict_row}
                    if self.pgbouncer:  # transaction pooling and server-side prepared statements don't mix
                        kwargs["prepare_threshold"] = None
                    pool = ConnectionPool(self._dsn, min_size=1, max_size=self.max_size, timeout=1.0, max_idle=300,
                                          check=ConnectionPool.check_connection, kwargs=kwargs, open=False,
                                          name="claude-proxy-ledger")
                    pool.open(wait=False)
                    self._pool, self._pid = pool, os.getpid()
        return self._pool

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction (committed on success); StoreDown when the database is unreachable or slow."""
        if not self.breaker.allow():
            raise StoreDown("postgres", "unavailable (circuit open after repeated errors)")
        try:
            with self._get_pool().connection() as conn, conn.transaction():
                yield conn
        except DOWN as exc:
            self.breaker.failure()
            raise StoreDown("postgres", type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]) from None
        except BaseException:
            self.breaker.success()  # it answered (a constraint or our own StoreError): reachable
            raise
        else:
            self.breaker.success()

    _reading = _writing = _tx  # for Catalog

    def _published(self, epoch: int) -> None:
        if self.on_change is not None:
            self.on_change(epoch)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close(timeout=1)

    def schema_version(self) -> str | None:
        with self._tx() as conn:
            found = conn.execute("SELECT to_regclass('alembic_version') AS t").fetchone()
            if not found or found["t"] is None:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            return row["version_num"] if row else None

    def check_schema(self) -> str:
        """The worker's start-up check: the schema must be at this claude-proxy's head."""
        version = self.schema_version()
        if version != HEAD:
            raise SchemaBehind(f"the PostgreSQL schema is at {version or 'nothing (empty database)'}, this "
                               f"claude-proxy needs {HEAD}: run `claude-proxy store migrate`")
        return version

    # -- epoch, meta, audit ---------------------------------------------------------------------------------------

    def epoch(self) -> int:
        with self._tx() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()["value"])

    def _changed(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE name = 'epoch' RETURNING value")
        return int(row.fetchone()["value"])

    def note_fail_open(self, count: int, last_at: float) -> None:
        """Add `count` admissions that went unchecked (Redis down) to the fleet's count in `meta`."""
        with self._tx() as conn:
            conn.execute("INSERT INTO meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
                         " SET value = (meta.value::bigint + EXCLUDED.value::bigint)::text", (FAIL_OPEN_TOTAL, str(count)))
            conn.execute("INSERT INTO meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
                         " SET value = GREATEST(meta.value::float8, EXCLUDED.value::float8)::text",
                         (FAIL_OPEN_LAST_AT, repr(float(last_at))))

    # -- usage -------------------------------------------------------------------------------------------------

    def record_usage(self, batch: Sequence[Mapping[str, Any]]) -> int:
        """Store spooled usage records exactly once; returns how many were new."""
        if not batch:
            return 0
        ordered = sorted(batch, key=lambda r: r["usage_id"])
        with self._tx() as conn:
            columns = [[None if (v := r.get(c)) is None else cast(v) for r in ordered]
                       for c, cast in zip(EVENT_COLUMNS, _EVENT_CASTS, strict=True)]
            inserted = {row["usage_id"] for row in conn.execute(INSERT_EVENTS, columns).fetchall()}
            fresh = [r for r in ordered if r["usage_id"] in inserted]
            daily: dict[tuple[str, str, str, str, str], list[Any]] = {}
            spend: dict[tuple[str, str], int] = {}
            last_used: dict[str, float] = {}
            for r in fresh:
                pk = (r["day"], r["key_id"], r.get("owner") or "", r.get("provider") or "", r.get("upstream_model") or "")
                agg = daily.setdefault(pk, [r.get("team_id"), 0, 0, 0, 0, 0, 0, 0, 0, 0])
                agg[1] += 1
                agg[2] += int((r.get("status") or 0) >= 400)
                agg[3] += int(bool(r.get("estimated")))
                for i, col in enumerate(("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                                         "cost_micros"), start=4):
                    agg[i] += int(r.get(col) or 0)
                agg[9] += int(not r.get("priced"))
                if r.get("cost_micros"):
                    for scope in r.get("scopes") or ():
                        month = month_of(float(r.get("admitted_at") or r["ts"]))
                        spend[(scope, month)] = spend.get((scope, month), 0) + int(r["cost_micros"])
                if not str(r["key_id"]).startswith("static:"):
                    last_used[r["key_id"]] = max(last_used.get(r["key_id"], 0.0), float(r["ts"]))
            if daily:  # primary-key order: concurrent uploaders lock rows in the same order (no deadlocks)
                conn.cursor().executemany(
                    "INSERT INTO usage_daily (day, key_id, owner, provider, upstream_model, team_id, requests, errors,"
                    " estimated, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_micros,"
                    " unpriced) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (day, key_id, owner, provider, upstream_model) DO UPDATE SET"
                    " requests = usage_daily.requests + EXCLUDED.requests,"
                    " errors = usage_daily.errors + EXCLUDED.errors,"
                    " estimated = usage_daily.estimated + EXCLUDED.estimated,"
                    " input_tokens = usage_daily.input_tokens + EXCLUDED.input_tokens,"
                    " output_tokens = usage_daily.output_tokens + EXCLUDED.output_tokens,"
                    " cache_read_tokens = usage_daily.cache_read_tokens + EXCLUDED.cache_read_tokens,"
                    " cache_write_tokens = usage_daily.cache_write_tokens + EXCLUDED.cache_write_tokens,"
                    " cost_micros = usage_daily.cost_micros + EXCLUDED.cost_micros,"
                    " unpriced = usage_daily.unpriced + EXCLUDED.unpriced",
                    [(*pk, *agg) for pk, agg in sorted(daily.items())],
                )
            if spend:
                conn.cursor().executemany(
                    "INSERT INTO spend (scope, month, micros) VALUES (%s, %s, %s) ON CONFLICT (scope, month)"
                    " DO UPDATE SET micros = spend.micros + EXCLUDED.micros",
                    [(*pk, micros) for pk, micros in sorted(spend.items())],
                )
            if last_used:
                conn.cursor().executemany(
                    "UPDATE api_keys SET last_used_at = %s WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                    [(ts, key_id, ts - 60) for key_id, ts in sorted(last_used.items())],
                )
            return len(fresh)

    def month_spend(self, scope: str, month: str | None = None) -> int:
        with self._tx() as conn:
            row = conn.execute("SELECT micros FROM spend WHERE scope = %s AND month = %s",
                               (scope, month or month_of(self.clock()))).fetchone()
            return int(row["micros"]) if row else 0

    def usage(self, *, group_by: Sequence[str] = ("day",), since: float | None = None, until: float | None = None,
              filters: Mapping[str, str | None] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        with self._tx() as conn:
            kept = conn.execute("SELECT value FROM meta WHERE name = %s", (USAGE_KEPT_FROM,)).fetchone()
            retained = Retained(str(kept["value"]), daily_complete=True) if kept else None
            sql, args = usage_query(POSTGRES, group_by, since, until, filters, limit, retained)
            return usage_totals(conn.execute(sql, args).fetchall())

    def prune_usage(self, retention_days: int, batch: int = 10_000, budget_s: float | None = None) -> Pruned:
        """Delete the usage events of whole UTC days past `retention_days`; usage_daily (written with each
        upload) already holds those days. The boundary moves first, in its own transaction, so usage
        queries read those days from usage_daily from then on, while the deletes run in batches (short
        transactions, no long lock on the table) until none is left or `budget_s` has passed."""
        if retention_days <= 0:
            return Pruned(0, True)
        started = time.monotonic()
        before_day = day_of(self.clock() - retention_days * 86400)
        before_ts = day_start(before_day)
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM usage_events WHERE ts < %s LIMIT 1", (before_ts,)).fetchone() is None:
                return Pruned(0, True)
            conn.execute("INSERT INTO meta (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
                         " SET value = GREATEST(meta.value, EXCLUDED.value)", (USAGE_KEPT_FROM, before_day))
        total = 0
        while True:
            with self._tx() as conn:
                gone = conn.execute("DELETE FROM usage_events WHERE usage_id IN (SELECT usage_id FROM usage_events"
                                    " WHERE ts < %s ORDER BY ts LIMIT %s)", (before_ts, batch)).rowcount
            total += gone
            if gone < batch:
                return Pruned(total, True)
            if budget_s is not None and time.monotonic() - started >= budget_s:
                return Pruned(total, False)

    def kept_from(self) -> str | None:
        """The first day whose usage events are all kept (None: none were ever pruned)."""
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = %s", (USAGE_KEPT_FROM,)).fetchone()
        return str(row["value"]) if row else None

    def recent(self, *, key_id: str | None = None, failed: bool = False, limit: int = 20) -> list[dict[str, Any]]:
        sql, args = recent_query(POSTGRES, key_id, failed, limit)
        with self._tx() as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def audit(self, *, since: float | None = None, actor: str | None = None, action: str | None = None,
              limit: int = 100, until: float | None = None, after: int | None = None) -> list[dict[str, Any]]:
        sql, args = audit_query(POSTGRES, since, actor, action, limit, until, after)
        with self._tx() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [dict(r) for r in rows]  # details: JSONB comes back as a dict

    def counts(self, exact_below: int = EXACT_COUNT_BELOW) -> dict[str, Any]:
        """Rows per table for `status()`. Keys, teams and audit are counted; usage rows are counted while
        the planner's statistics put them under `exact_below`, and past that the planner's own estimate
        is given (`usage_events_estimated: true`): `count(*)` reads the whole table, seconds at the tens of
        millions of rows a company's ledger reaches, on every status call and admin page."""
        out: dict[str, Any] = {}
        with self._tx() as conn:
            for name, table in (("keys", "api_keys"), ("teams", "teams"), ("audit_events", "audit_events")):
                out[name] = int(conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"])
            row = conn.execute(ESTIMATE_ROWS, ("usage_events",)).fetchone()
            estimate = int(row["n"]) if row is not None and row["n"] is not None else -1
            if 0 <= exact_below <= estimate:
                out["usage_events"], out["usage_events_estimated"] = estimate, True
            else:  # small, or never analysed (no statistics yet): counted
                out["usage_events"] = int(conn.execute("SELECT count(*) AS n FROM usage_events").fetchone()["n"])
        return out

    def fail_open(self) -> dict[str, Any]:
        """The fleet's fail-open count and the last one's time, for `status()`."""
        with self._tx() as conn:
            meta = conn.execute("SELECT name, value FROM meta WHERE name IN (%s, %s)",
                                (FAIL_OPEN_TOTAL, FAIL_OPEN_LAST_AT)).fetchall()
        return fail_open_status({r["name"]: r["value"] for r in meta})
