"""The embedded store: one SQLite file (WAL) shared by every worker and instance on one machine.

Ledger (keys, teams, usage, audit, epoch) and limiter (GCRA state, leases, month spend) live in the
same file. Every read-then-write runs in `BEGIN IMMEDIATE`, which takes the write lock up front, so
two workers can never both read "99 of 100" and both admit (a deferred transaction would also hit
SQLITE_BUSY on upgrade despite busy_timeout). WAL with synchronous=NORMAL: durable across process
crashes; the last transactions may be lost on power loss. Local disk only: WAL does not work over NFS.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from claude_proxy.config.teams import Rate
from claude_proxy.teams.base import StoreDown
from claude_proxy.teams.batch import GroupCommit
from claude_proxy.teams.catalog import Catalog
from claude_proxy.teams.limits import budget_allows, corrected, gcra, interval, month_of, month_reset, usd
from claude_proxy.teams.records import (
    Admitted,
    Principal,
    Refused,
    Stale,
    Usage,
)
from claude_proxy.teams.rows import (
    FAIL_OPEN_LAST_AT,
    FAIL_OPEN_TOTAL,
    PRUNE_AGAIN,
    PRUNE_BUDGET,
    PRUNE_EVERY,
    SQLITE,
    USAGE_KEPT_FROM,
    Pruned,
    Retained,
    StoreError,
    audit_query,
    day_of,
    day_start,
    fail_open_status,
    rate_refusal,
    recent_query,
    usage_query,
    usage_totals,
)
from claude_proxy.teams.schema import DDL, VERSION


def _fcntl() -> ModuleType | None:
    try:
        return importlib.import_module("fcntl")
    except ImportError:  # Windows: SQLite's own locking alone
        return None


FCNTL = _fcntl()

POOL_SIZE = 8
# SQLite's own checkpoint runs in whichever commit crosses this many WAL pages (its default is 1,000: a
# few milliseconds every ~90 requests, in a request). The keepers checkpoint far sooner, off the request
# path (`maintain`); this is the backstop if they fall behind (~40 MB of WAL).
AUTOCHECKPOINT_PAGES = 10_000
# Each pooled connection's page cache, in KiB (SQLite's default is 2 MiB). With several processes writing,
# WAL invalidates a connection's cache whenever another one committed, so a big cache mostly holds pages
# that will be read again from the OS cache anyway: measured, 8 busy connections held ~4 MB more per
# worker at the default and ran no faster.
CACHE_KIB = 256
PRUNE_BATCH = 5000  # usage events folded into usage_daily per write transaction
LAST_USED_EVERY = 60.0  # a key's last_used_at is written at most this often (seconds; it is shown to the minute)
# The events matching `cond` as daily totals, added to the day's row (the key, owner, provider and model of
# an event without one are "", as in PostgreSQL's usage_daily).
ROLLUP = """
INSERT INTO usage_daily (day, key_id, owner, provider, upstream_model, team_id, requests, errors, estimated,
  input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_micros, unpriced)
SELECT day, key_id, coalesce(owner, ''), coalesce(provider, ''), coalesce(upstream_model, ''), max(team_id),
  count(*), coalesce(sum(status >= 400), 0), sum(estimated), sum(input_tokens), sum(output_tokens),
  sum(cache_read_tokens), sum(cache_write_tokens), coalesce(sum(cost_micros), 0), sum(1 - priced)
FROM usage_events WHERE {cond} GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (day, key_id, owner, provider, upstream_model) DO UPDATE SET
  requests = requests + excluded.requests, errors = errors + excluded.errors,
  estimated = estimated + excluded.estimated, input_tokens = input_tokens + excluded.input_tokens,
  output_tokens = output_tokens + excluded.output_tokens,
  cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
  cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
  cost_micros = cost_micros + excluded.cost_micros, unpriced = unpriced + excluded.unpriced
"""


def _cannot_open(path: str, exc: Exception) -> str:
    """Why the store file (or its lock file) could not be opened, in one line."""
    if isinstance(exc, FileExistsError):  # mkdir met a file where a directory of the path should be
        return f"cannot open {path}: {exc.filename} is a file, not a directory"
    if isinstance(exc, OSError):
        return f"cannot open {path}: {exc.strerror} ({exc.filename or path})"
    return f"{type(exc).__name__}: {exc}"


class SqliteStore(Catalog):
    """All reads and writes of the teams store. Thread-safe; connections are opened after the fork.
    Teams, keys and shared settings: `Catalog`."""

    name = "sqlite"
    dialect = SQLITE

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_ms: int = 5000,
        lease_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        tpm_counts_cache_reads: bool = False,
        event_retention_days: int = 0,
    ) -> None:
        self.path = path
        self.retention_days = event_retention_days  # 0: keep every usage event
        self._prune_due = 0.0  # monotonic time of this process's next check
        self.busy_timeout_ms = busy_timeout_ms
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.tpm_counts_cache_reads = tpm_counts_cache_reads
        self._pool: queue.LifoQueue[sqlite3.Connection] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._opened = 0
        self._writes = 0  # write transactions by this process (a checkpoint is due when it moved)
        self._checkpointed = 0
        self._writer = threading.Lock()  # one writer per process at a time ...
        self._lock_fd = -1  # ... and per machine: flock on `<db>.lock` (opened after the fork)
        self._lock_pid = 0
        self.group_commit: GroupCommit[sqlite3.Connection] = GroupCommit(self._write)  # admissions, settlements
        self._last_used: dict[str, float] = {}  # key id → when this process last wrote its last_used_at
        self._sweep_due = 0.0  # monotonic time of this process's next sweep of expired leases

    # -- connections -------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fresh = not os.path.exists(self.path)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        if fresh:
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        self._into_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        return conn

    def _into_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode, which then stays with the file: read first, so every open after the first
        takes no lock for it. The switch needs the file to itself, and SQLite answers "database is locked" at
        once instead of running the busy handler (or leaves the mode as it was) when another connection holds
        it: every worker of a new instance opens the new file together, and a worker that failed here failed
        to boot, and gunicorn then stopped the whole instance. So: again, with backoff, within busy_timeout."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        pause = 0.001
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                    return
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode == "wal":
                    return
                refused: sqlite3.Error = sqlite3.OperationalError(
                    f"the file stays in {mode} journal mode, not WAL: another process held it past busy_timeout, "
                    "or its filesystem has no shared memory for WAL (a local disk is needed)")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                refused = exc
            if time.monotonic() + pause > deadline:
                raise refused
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        if self._pool is None or self._pid != os.getpid():  # first use, or first use after a fork
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    self._pool, self._pid, self._opened = queue.LifoQueue(), os.getpid(), 0
        pool = self._pool
        try:
            conn = pool.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = self._opened < POOL_SIZE
                self._opened += grow
            try:
                conn = self._connect() if grow else pool.get()
            except (sqlite3.Error, OSError) as exc:  # OSError: its directory cannot be made
                with self._lock:
                    self._opened -= grow
                raise StoreDown("sqlite", _cannot_open(self.path, exc)) from exc
        try:
            yield conn
        except sqlite3.Error as exc:  # locked past busy_timeout, I/O, a damaged file: unavailable, said once
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise StoreDown("sqlite", f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            pool.put(conn)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One read-then-write transaction holding the write lock from its first statement.

        Writers queue for it in the kernel first (a thread lock, then `flock` on `<db>.lock`, which every
        process of ours takes, the CLI's too) instead of in SQLite: SQLite's busy handler polls by sleeping
        1, 2, 5, 10 … 100 ms, so two writers that meet cost the second one milliseconds, while a queued
        writer here wakes the moment the lock is free. busy_timeout still covers anyone else's writers."""
        with self._writer, self._machine_lock(), self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            if conn.in_transaction:  # (a caller may have rolled back already)
                conn.execute("COMMIT")
                self._writes += 1

    _reading, _writing = _conn, _write  # for Catalog

    @contextlib.contextmanager
    def _machine_lock(self) -> Iterator[None]:
        """The machine-wide writer lock (released by the kernel if the process dies holding it)."""
        fcntl = FCNTL
        if fcntl is None:
            yield
            return
        if self._lock_fd < 0 or self._lock_pid != os.getpid():  # first write, or first after a fork
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreDown("sqlite", _cannot_open(self.path + ".lock", exc)) from None
            self._lock_pid = os.getpid()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def migrate(self) -> int:
        """Create or upgrade the schema; safe to run from several processes at once.

        Every worker runs this as it boots, a respawned one too, often while its siblings write. A schema
        that is current is only read: no write lock. One that is not is written in the writers' queue (thread
        lock, then the machine-wide flock): waiting for the write lock in SQLite's busy handler instead, a
        booting worker could starve behind a busy fleet for busy_timeout, fail to boot, and gunicorn would
        then stop the whole instance."""
        with self._conn() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] == VERSION:
                return VERSION
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > VERSION:
                conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: schema is at {version}, this claude-proxy knows {VERSION}: upgrade it")
            for statement in DDL.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {VERSION}")
        return VERSION

    def maintain(self) -> None:
        """Once an hour, prune usage events past the retention. Then checkpoint the WAL into the database file
        if this process wrote since the last time: PASSIVE, so it waits for no reader or writer, and the WAL
        starts over from its beginning once it is all copied."""
        if self.retention_days and time.monotonic() >= self._prune_due:
            self._prune_due = time.monotonic() + PRUNE_EVERY  # a store error waits for the next hour too
            if not self.prune_usage(budget_s=PRUNE_BUDGET).done:
                self._prune_due = time.monotonic() + PRUNE_AGAIN
        if time.monotonic() >= self._sweep_due:
            self._sweep_due = time.monotonic() + max(self.lease_seconds, 1.0)
            with self._write() as conn:  # a dead worker's leases (they stopped counting when they expired)
                conn.execute("DELETE FROM rl_lease WHERE expires < ?", (self.clock(),))
        writes = self._writes
        if writes == self._checkpointed:
            return
        with self._conn() as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._checkpointed = writes

    def stop(self) -> None:
        """No background work of its own (the gate's keeper does its upkeep): the same as close."""
        self.close()

    def close(self) -> None:
        if self._lock_fd >= 0 and self._lock_pid == os.getpid():
            os.close(self._lock_fd)
        self._lock_fd = -1
        pool, self._pool = self._pool, None
        while pool is not None:
            try:
                pool.get_nowait().close()
            except queue.Empty:
                break

    # -- epoch and shared counts -------------------------------------------------------------------------------

    def epoch(self) -> int:
        with self._conn() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()[0])

    def epoch_hint(self) -> int | None:
        """Nothing to add: every admission reads the epoch inside its own transaction."""
        return None

    def _changed(self, conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE name = 'epoch'")
        return int(conn.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()[0])

    def note_fail_open(self, count: int, last_at: float) -> None:
        """Add `count` admissions that went unchecked to the store's running count (rows of `meta`)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT)",
                (FAIL_OPEN_TOTAL, str(count)),
            )
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                " SET value = CAST(max(CAST(value AS REAL), CAST(excluded.value AS REAL)) AS TEXT)",
                (FAIL_OPEN_LAST_AT, repr(float(last_at))),
            )

    def prune_usage(self, now: float | None = None, batch: int = PRUNE_BATCH, budget_s: float | None = None) -> Pruned:
        """Fold the usage events of whole UTC days past `event_retention_days` into usage_daily and delete
        them, oldest first, at most ~`batch` events per write transaction (requests queue behind each one
        briefly, not behind the whole prune), until none is left or `budget_s` has passed. Rolled up and
        deleted together: an event is counted in exactly one of the two tables at every moment."""
        if not self.retention_days:
            return Pruned(0, True)
        started = time.monotonic()
        before_day = day_of((self.clock() if now is None else now) - self.retention_days * 86400)
        before_ts = day_start(before_day)
        with self._conn() as conn:  # the hourly check of every worker: a read, no write lock
            if conn.execute("SELECT 1 FROM usage_events WHERE ts < ? LIMIT 1", (before_ts,)).fetchone() is None:
                return Pruned(0, True)
        total = 0
        while True:
            with self._write() as conn:
                edge = conn.execute("SELECT ts FROM usage_events WHERE ts < ? ORDER BY ts LIMIT 1 OFFSET ?",
                                    (before_ts, max(batch, 1) - 1)).fetchone()
                cond, bound = ("ts <= ?", float(edge[0])) if edge is not None else ("ts < ?", before_ts)
                conn.execute(ROLLUP.format(cond=cond), (bound,))
                gone = conn.execute(f"DELETE FROM usage_events WHERE {cond}", (bound,)).rowcount
                if gone:
                    conn.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
                                 " SET value = max(value, excluded.value)", (USAGE_KEPT_FROM, before_day))
            total += gone
            if edge is None:
                return Pruned(total, True)
            if budget_s is not None and time.monotonic() - started >= budget_s:
                return Pruned(total, False)

    # -- admission -----------------------------------------------------------------------------------------------

    def admit(self, principal: Principal, rid: str, reserve_tokens: int, reserve_micros: int = 0,
              expected_epoch: int | None = None) -> Admitted | Refused | Stale:
        """One transaction: every limit of every scope is checked, and only if all pass is anything written.

        With `expected_epoch` (the epoch the principal's key snapshot was taken under), an admin change since
        answers Stale and writes nothing. Also re-checks the key's revocation and expiry inside the same
        transaction: a revoked key cannot slip through between a cache refill and an epoch change.
        Group-committed with the other writes queued meanwhile; a refusal writes nothing."""
        return self.group_commit.run(
            lambda conn: self._admit(conn, principal, rid, reserve_tokens, reserve_micros, expected_epoch))

    def _admit(self, conn: sqlite3.Connection, principal: Principal, rid: str, reserve_tokens: int,
               reserve_micros: int, expected_epoch: int | None) -> Admitted | Refused | Stale:
        """At most three reads (epoch and key; rate states; live leases and month spend) and two writes,
        whatever the number of scopes."""
        now = self.clock()
        epoch, revoked_at, expires_at, found = conn.execute(_EPOCH_AND_KEY, (principal.key_id,)).fetchone()
        epoch = int(epoch)
        if expected_epoch is not None and epoch != expected_epoch:
            return Stale(epoch)
        if not principal.static and (not found or revoked_at is not None or (expires_at or float("inf")) <= now):
            return Refused("revoked", None, message="this key has been revoked or has expired")
        rates = {scope.name: [(kind, rate, cost) for kind, rate, cost in (
            ("rpm", scope.limits.rpm, 1), ("tpm", scope.limits.tpm, reserve_tokens)) if rate is not None]
            for scope in principal.scopes}
        states = _rate_states(conn, [f"{name}:{kind}" for name, rs in rates.items() for kind, _, _ in rs])
        leased = [s for s in principal.scopes
                  if s.limits.max_concurrent is not None or s.limits.monthly_budget_micros is not None]
        live = _leases_and_spend(conn, [s.name for s in leased], now, month_of(now))
        tats: dict[str, tuple[float, float]] = {}
        headroom: dict[str, Any] = {}
        for scope in principal.scopes:  # scope by scope, each limit in turn: the first one exceeded answers
            room: dict[str, Any] = {}
            for kind, rate, cost in rates[scope.name]:
                k = f"{scope.name}:{kind}"
                decision = gcra(_rescaled(states.get(k), now, rate), now, rate, min(cost, rate.amount))
                if not decision.allowed:
                    return rate_refusal(kind, scope, rate, decision.retry_after)
                tats[k] = (decision.tat, interval(rate))
                room[kind] = decision.remaining
            count, reserved, spent = live.get(scope.name, (0, 0, 0))
            if scope.limits.max_concurrent is not None:
                if count >= scope.limits.max_concurrent:
                    return Refused("concurrent", scope, retry_after=1.0,
                                   message=f"{scope.label}: {scope.limits.max_concurrent} concurrent requests at most;"
                                   " retry when one finishes")
                room["concurrent"] = scope.limits.max_concurrent - count - 1
            budget = scope.limits.monthly_budget_micros
            if budget is not None:
                if not budget_allows(spent, reserved + reserve_micros, budget):
                    reset = month_reset(now)
                    return Refused("budget", scope, reset_at=reset,
                                   message=f"{scope.label}'s monthly budget of {usd(budget)} is spent; resets "
                                   + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(reset)))
                room["budget_micros"] = budget - spent - reserved
            headroom[scope.kind] = room
        if tats:
            conn.execute(
                "INSERT INTO rl_state (k, tat, step) VALUES " + ", ".join(["(?, ?, ?)"] * len(tats))
                + " ON CONFLICT (k) DO UPDATE SET tat = excluded.tat, step = excluded.step",
                [v for k, (tat, step) in tats.items() for v in (k, tat, step)],
            )
        if leased:
            expires = now + self.lease_seconds
            conn.execute(
                "INSERT INTO rl_lease (scope, rid, expires, reserve_tokens, reserve_micros) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?)"] * len(leased)),
                [v for s in leased for v in (s.name, rid, expires, reserve_tokens, reserve_micros)],
            )
        return Admitted(rid, principal, reserve_tokens, now, epoch, headroom)

    def renew(self, rids: Sequence[str]) -> int:
        """Push the expiry of live requests' leases forward (the keeper thread, every lease_seconds/3)."""
        if not rids:
            return 0
        with self._write() as conn:
            expires = self.clock() + self.lease_seconds
            total = 0
            for start in range(0, len(rids), 500):
                chunk = rids[start : start + 500]
                total += conn.execute(
                    f"UPDATE rl_lease SET expires = ? WHERE rid IN ({', '.join('?' * len(chunk))})", (expires, *chunk)
                ).rowcount
            return total

    def settle(self, admitted: Admitted, usage: Usage) -> bool:
        """Close a request: record its usage (idempotent on the usage id), charge spend, correct the token
        buckets and drop its leases, in one transaction (group-committed with the writes queued meanwhile).
        False when it was already settled."""
        now = self.clock()  # when the request finished, not when its batch commits
        tokens = usage.input_tokens + usage.output_tokens + usage.cache_write_tokens
        if self.tpm_counts_cache_reads:
            tokens += usage.cache_read_tokens
        return self.group_commit.run(lambda conn: self._settle(conn, admitted, usage, now, tokens))

    def _settle(self, conn: sqlite3.Connection, admitted: Admitted, usage: Usage, now: float, tokens: int) -> bool:
        principal = admitted.principal
        inserted = conn.execute(
            "INSERT INTO usage_events (usage_id, request_id, ts, day, key_id, team_id, team, owner, endpoint,"
            " client_model, provider, upstream_model, stream, status, error_type, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_tokens, estimated, cost_micros, priced, latency_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (usage_id) DO NOTHING",
            (
                admitted.rid,
                usage.request_id,
                now,
                time.strftime("%Y-%m-%d", time.gmtime(now)),
                principal.key_id,
                principal.team_id,
                principal.team_name,
                principal.owner,
                usage.endpoint,
                usage.client_model,
                usage.provider,
                usage.upstream_model,
                None if usage.stream is None else int(usage.stream),
                usage.status,
                usage.error_type,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                int(usage.estimated),
                usage.cost_micro_usd,
                int(usage.cost_micro_usd is not None),
                usage.latency_ms,
            ),
        ).rowcount
        conn.execute("DELETE FROM rl_lease WHERE rid = ?", (admitted.rid,))
        if not inserted:
            return False
        month = month_of(admitted.admitted_at)
        if usage.cost_micro_usd:
            conn.execute(
                "INSERT INTO spend (scope, month, micros) VALUES " + ", ".join(["(?, ?, ?)"] * len(principal.scopes))
                + " ON CONFLICT (scope, month) DO UPDATE SET micros = micros + excluded.micros",
                [v for scope in principal.scopes for v in (scope.name, month, usage.cost_micro_usd)],
            )
        for scope in principal.scopes:
            rate = scope.limits.tpm
            delta = tokens - min(admitted.reserve_tokens, rate.amount) if rate else 0
            if rate is not None and delta:
                k = f"{scope.name}:tpm"
                tat = _tat(conn, k, now, rate)
                if tat is not None:
                    conn.execute(
                        "UPDATE rl_state SET tat = ?, step = ? WHERE k = ?",
                        (corrected(tat, now, rate, delta), interval(rate), k),
                    )
        if not principal.static and now - self._last_used.get(principal.key_id, 0.0) >= LAST_USED_EVERY:
            conn.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                (now, principal.key_id, now - LAST_USED_EVERY),
            )
            if len(self._last_used) >= 100_000:
                self._last_used.clear()
            self._last_used[principal.key_id] = now
        return True

    def record_usage(self, admitted: Admitted, usage: Usage, cost_micro_usd: int | None) -> bool:
        """`settle` with the cost given apart (the seam for the `[prices]` cost function)."""
        from dataclasses import replace

        return self.settle(admitted, replace(usage, cost_micro_usd=cost_micro_usd))

    # -- reading -------------------------------------------------------------------------------------------------

    def month_spend(self, scope: str, month: str | None = None) -> int:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT micros FROM spend WHERE scope = ? AND month = ?", (scope, month or month_of(self.clock()))
            ).fetchone()
            return int(row[0]) if row else 0

    def in_flight(self, scope: str | None = None) -> int:
        with self._conn() as conn:
            now = self.clock()
            if scope is None:
                return int(conn.execute("SELECT count(DISTINCT rid) FROM rl_lease WHERE expires >= ?", (now,)).fetchone()[0])
            return int(
                conn.execute("SELECT count(*) FROM rl_lease WHERE scope = ? AND expires >= ?", (scope, now)).fetchone()[0]
            )

    def usage(
        self,
        *,
        group_by: Sequence[str] = ("day",),
        since: float | None = None,
        until: float | None = None,
        filters: Mapping[str, str | None] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Totals grouped by any of day, key, owner, team, model, client_model, provider (pruned days from
        usage_daily)."""
        with self._conn() as conn:
            kept = conn.execute("SELECT value FROM meta WHERE name = ?", (USAGE_KEPT_FROM,)).fetchone()
            retained = Retained(str(kept[0]), daily_complete=False) if kept else None
            sql, args = usage_query(SQLITE, group_by, since, until, filters, limit, retained)
            return usage_totals(conn.execute(sql, args).fetchall())

    def recent(self, *, key_id: str | None = None, failed: bool = False, limit: int = 20) -> list[dict[str, Any]]:
        sql, args = recent_query(SQLITE, key_id, failed, limit)
        with self._conn() as conn:
            return [dict(r) for r in conn.execute(sql, args)]

    def audit(
        self, *, since: float | None = None, actor: str | None = None, action: str | None = None, limit: int = 100,
        until: float | None = None, after: int | None = None,
    ) -> list[dict[str, Any]]:
        sql, args = audit_query(SQLITE, since, actor, action, limit, until, after)
        with self._conn() as conn:
            rows = conn.execute(sql, args).fetchall()
        out = []
        for r in rows:
            row = dict(r)
            row["details"] = json.loads(row["details"]) if row["details"] else None
            out.append(row)
        return out

    def status(self) -> dict[str, Any]:
        with self._conn() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            counts = {
                name: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for name, table in (("keys", "api_keys"), ("teams", "teams"), ("usage_events", "usage_events"),
                                    ("audit_events", "audit_events"))
            }
            meta = dict(conn.execute("SELECT name, value FROM meta WHERE name IN (?, ?, ?)",
                                     (FAIL_OPEN_TOTAL, FAIL_OPEN_LAST_AT, USAGE_KEPT_FROM)).fetchall())
        return {
            "store": self.name,
            "path": self.path,
            "schema_version": version,
            "journal_mode": mode,
            "epoch": self.epoch(),
            "in_flight": self.in_flight(),
            **counts,
            "event_retention_days": self.retention_days,
            "usage_events_kept_from": meta.get(USAGE_KEPT_FROM),
            **fail_open_status(meta),
        }


# The epoch and a stored key's revocation and expiry in one read (a static key: no row, found = 0).
_EPOCH_AND_KEY = ("SELECT m.value, k.revoked_at, k.expires_at, k.id IS NOT NULL FROM meta m"
                  " LEFT JOIN api_keys k ON k.id = ? WHERE m.name = 'epoch'")


def _rate_states(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
    """The stored (tat, step) of each rate limit in `keys`, one read for all."""
    if not keys:
        return {}
    rows = conn.execute(f"SELECT k, tat, step FROM rl_state WHERE k IN ({', '.join('?' * len(keys))})", keys)
    return {k: (float(tat), float(step)) for k, tat, step in rows}


def _leases_and_spend(conn: sqlite3.Connection, scopes: Sequence[str], now: float, month: str
                      ) -> dict[str, tuple[int, int, int]]:
    """Per scope: (live leases, their reserved micro-USD, this month's spend), one read for all. Expired
    leases do not count (the keeper deletes them)."""
    if not scopes:
        return {}
    rows = conn.execute(
        "SELECT column1,"
        " (SELECT count(*) FROM rl_lease l WHERE l.scope = column1 AND l.expires >= ?),"
        " (SELECT coalesce(sum(reserve_micros), 0) FROM rl_lease l WHERE l.scope = column1 AND l.expires >= ?),"
        " (SELECT coalesce(max(micros), 0) FROM spend WHERE spend.scope = column1 AND spend.month = ?)"
        f" FROM (VALUES {', '.join(['(?)'] * len(scopes))})",
        (now, now, month, *scopes),
    )
    return {scope: (int(n), int(reserved), int(spent)) for scope, n, reserved, spent in rows}


def _rescaled(state: tuple[float, float] | None, now: float, rate: Rate) -> float | None:
    """A limit's TAT, rescaled when the limit changed since it was written: the units already used
    stay used, in the new limit's time per unit (so raising 1/hour to 100/hour frees 99 at once)."""
    if state is None:
        return None
    tat, step = state
    new_step = interval(rate)
    if tat <= now or step == new_step or not step or new_step == float("inf"):
        return tat
    return now + (tat - now) / step * new_step


def _tat(conn: sqlite3.Connection, k: str, now: float, rate: Rate) -> float | None:
    """One limit's TAT, rescaled (see `_rescaled`)."""
    return _rescaled(_rate_states(conn, [k]).get(k), now, rate)
