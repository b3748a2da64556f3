"""The per-worker door: who a request is (stored or static key), whether it may run, and closing it.

    authenticate → Principal | AuthFailure        (a snapshot cache checked against the global epoch)
    admit        → Admitted | Refused             (one store transaction for every limit of every scope)
    settle       → usage row + spend + leases     (after the last byte; idempotent on the usage id)

A keeper thread renews the leases of requests still running, so a lease only expires when the
worker holding it is gone. Web-framework free: the web edge turns the answers into responses.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from claude_proxy.config.loader import ConfigError
from claude_proxy.config.teams import Limits, TeamsSettings
from claude_proxy.errors import ProxyError
from claude_proxy.teams import keys as keyfmt
from claude_proxy.teams.base import STORE_ERRORS, Store
from claude_proxy.teams.records import Admitted, KeyRecord, Principal, Refused, Scope, Stale, Usage
from claude_proxy.teams.rows import StoreError

log = logging.getLogger("claude_proxy.teams")

NEGATIVE_TTL = 2.0  # unknown keys are remembered this long (a key created since is found after it)
CACHE_MAX = 10_000
MAINTAIN_EVERY = 0.25  # seconds between the keeper's calls to the store's upkeep
FAIL_OPEN_RETRY = 5.0  # seconds the keeper waits to write the fail-open count again after the store refused it
GATEWAY_USER_ID = "x-claude-gateway-user-id"
GATEWAY_USER_EMAIL = "x-claude-gateway-user-email"
_MAX_USER = 256


@dataclass(frozen=True)
class AuthFailure:
    reason: str  # "missing" | "unknown" | "revoked" | "expired" | "unavailable"

    @property
    def message(self) -> str:
        return {
            "missing": "invalid or missing proxy key: send it as x-api-key or Authorization: Bearer",
            "unknown": "invalid proxy key: send a key claude-proxy issued, as x-api-key or Authorization: Bearer",
            "revoked": "this proxy key has been revoked: ask your claude-proxy admin for a new one",
            "expired": "this proxy key has expired: ask your claude-proxy admin for a new one",
            "unavailable": "the key store is unavailable; try again shortly",
        }[self.reason]


class StoreUnavailable(ProxyError):
    status, error_type = 503, "overloaded_error"


def new_usage_id() -> str:
    """A request's lease and usage id: the nanosecond clock then 64 random bits — unique, and time-ordered so
    usage rows append to the ledger's primary-key B-tree instead of landing on a random page each time."""
    return f"u_{time.time_ns():016x}{secrets.token_hex(8)}"


Events = Callable[[str, Mapping[str, str]], None]


def open_store(settings: TeamsSettings, *, clock: Callable[[], float] = time.time, events: Any = None) -> Store:
    """The configured backend: one SQLite file, or PostgreSQL + Redis (imported only when configured)."""
    if settings.store == "postgres":
        from claude_proxy.teams.distributed import DistributedStore

        return DistributedStore(settings, clock=clock, events=events)
    from claude_proxy.teams.store import SqliteStore  # here: a PostgreSQL worker never loads sqlite3

    return SqliteStore(settings.path, busy_timeout_ms=settings.busy_timeout_ms, lease_seconds=settings.lease_seconds,
                       clock=clock, tpm_counts_cache_reads=settings.tpm_counts_cache_reads,
                       event_retention_days=settings.event_retention_days)


class Gate:
    def __init__(
        self,
        settings: TeamsSettings,
        static_keys: Sequence[str] = (),
        *,
        clock: Callable[[], float] = time.time,
        events: Events | None = None,
    ) -> None:
        self.settings = settings
        self.static = tuple((k.encode(), keyfmt.static_id(k)) for k in static_keys)
        self.clock = clock
        self.events = events or (lambda name, labels: None)
        self.store: Store = open_store(settings, clock=clock, events=self.events)
        self._cache: dict[bytes, tuple[KeyRecord | None, float]] = {}
        self._stale: dict[bytes, tuple[KeyRecord | None, float]] = {}  # the snapshots before the last epoch change
        self.fail_open = 0  # this worker's admissions without the limits store, since it started
        # Not yet added to the store's fleet-wide count (`store status`): the keeper writes them, and keeps
        # them while the store cannot take them.
        self._fail_open_pending = 0
        self._fail_open_last = 0.0
        self._fail_open_retry_at = 0.0  # monotonic; after a failed write the keeper waits FAIL_OPEN_RETRY
        self._epoch = -1
        self._live: dict[str, Admitted] = {}
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._closed = threading.Event()
        self._keeper_pid = 0

    def prepare(self) -> None:
        """Create or upgrade (SQLite) or check (PostgreSQL) the schema, then let go of the connection
        (workers open their own after the fork). A PostgreSQL that cannot be reached does not stop the
        start: known keys are served from the cache, unknown keys get 503 until it answers."""
        try:
            self.store.migrate()
        except STORE_ERRORS as exc:
            if self.store.name == "sqlite":  # its own file: what stops it now will stop every request
                raise ConfigError(f"[teams] the SQLite store cannot be opened: {exc}") from None
            log.warning("teams: the ledger is unreachable at start (%s); serving what the cache allows", exc)
        self.store.close()
        start = getattr(self.store, "start", None)
        if start is not None:
            start()

    # -- who ------------------------------------------------------------------------------------------------------

    def authenticate(
        self, presented: Sequence[str], headers: Mapping[str, str], *, admitting: bool = False
    ) -> Principal | AuthFailure:
        """The principal for the first presented key that is ours (static keys compared in constant time).

        `admitting`: the request goes on to `admit`, which checks the snapshot's epoch inside the admission
        itself (one store call, and no window between the check and the admission), so no epoch is read here."""
        candidates = [p for p in presented if p]
        static_hit = None
        for key, key_id in self.static:  # every pair compared, so timing tells nothing
            for candidate in candidates:
                if hmac.compare_digest(candidate.encode(), key):
                    static_hit = key_id
        if static_hit is not None:
            self.events("auth", {"result": "ok"})
            return self._static_principal(static_hit)
        stored = [c for c in candidates if keyfmt.key_id_of(c)]
        if not stored:
            self.events("auth", {"result": "unknown" if candidates else "missing"})
            return AuthFailure("unknown" if candidates else "missing")
        try:
            record, epoch, taken = self._lookup(keyfmt.hash_key(stored[0]), check_epoch=not admitting)
        except STORE_ERRORS as exc:
            log.warning("teams: key lookup failed: %s", exc)
            self.events("auth", {"result": "unavailable"})
            return AuthFailure("unavailable")
        if record is None:
            self.events("auth", {"result": "unknown"})
            return AuthFailure("unknown")
        status = record.status(self.clock())
        if status != "active":
            self.events("auth", {"result": status})
            return AuthFailure(status)
        self.events("auth", {"result": "ok"})
        return self.principal(record, headers, epoch=epoch, snapshot_at=taken)

    def _read_epoch(self, check_epoch: bool) -> int | None:
        """The store's epoch (None: it did not answer). Before an admission, only what the store can say
        without a round trip (`epoch_hint`: e.g. the ledger's, once a second) unless nothing is known yet."""
        try:
            if check_epoch or self._epoch < 0:
                return self.store.epoch()
            return self.store.epoch_hint()
        except STORE_ERRORS:
            return None

    def _see_epoch(self, epoch: int, forward_only: bool = False) -> None:
        """Some admin change, anywhere: every snapshot taken before it is dropped (kept aside as stale).
        `forward_only` for epochs that may lag what this worker already knows (hints, a stale answer)."""
        with self._lock:
            if epoch != self._epoch and not (forward_only and epoch < self._epoch):
                self._stale = {**self._stale, **self._cache} if len(self._stale) < CACHE_MAX else dict(self._cache)
                self._cache.clear()
                self._epoch = epoch

    def _lookup(self, secret_hash: bytes, check_epoch: bool = True) -> tuple[KeyRecord | None, int, float]:
        """(record, the epoch its snapshot belongs to, when it was taken)."""
        now = time.monotonic()
        epoch = self._read_epoch(check_epoch)
        if epoch is not None:
            self._see_epoch(epoch, forward_only=not check_epoch)
        with self._lock:
            hit = self._cache.get(secret_hash)
            current = self._epoch
        # the snapshot holds when the epoch was just read, or admission will check it; if no store answers,
        # snapshots serve within auth_stale_seconds
        fresh = epoch is not None or (not check_epoch and current >= 0) or (
            hit is not None and now - hit[1] <= self.settings.auth_stale_seconds)
        if hit is not None and fresh and (hit[0] is not None or now - hit[1] < NEGATIVE_TTL):
            return hit[0], current, hit[1]
        try:
            record = self.store.find_key(secret_hash)
        except STORE_ERRORS:
            old = hit if hit is not None and hit[0] is not None else self._stale.get(secret_hash)
            if old is not None and old[0] is not None and now - old[1] <= self.settings.auth_stale_seconds:
                self.events("auth", {"result": "stale_cache"})
                return old[0], -1, old[1]  # a key seen lately, while the ledger is down: served for a bounded time
            raise
        with self._lock:
            if self._epoch == current:
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[secret_hash] = (record, now)
        return record, current, now

    def _static_principal(self, key_id: str) -> Principal:
        scope = Scope("s:" + key_id, "key", f"key {key_id}", self.settings.defaults)
        return Principal(key_id, key_id, key_id, "user", None, None, (scope,), static=True)

    def principal(self, record: KeyRecord, headers: Mapping[str, str], *, epoch: int = -1,
                  snapshot_at: float = 0.0) -> Principal:
        """Scopes and effective limits: each scope's own values, then [teams.defaults], then unlimited.
        A trusted gateway key with a forwarded user: usage is that user's, the key's limits apply per user."""
        defaults: Limits = self.settings.defaults
        key_limits = record.limits.over(defaults)
        scopes: list[Scope] = []
        owner, user = record.owner, None
        if record.gateway:
            user = (headers.get(GATEWAY_USER_EMAIL) or headers.get(GATEWAY_USER_ID) or "").strip()[:_MAX_USER] or None
        if user:
            owner = user
            scopes.append(Scope(f"u:{record.id}:{user}", "user", f"user {user}", key_limits))
        else:
            scopes.append(Scope(f"k:{record.id}", "key", f"key {record.name or record.id}", key_limits))
        if record.team is not None:
            team = record.team
            scopes.append(Scope(f"t:{team.id}", "team", f"team {team.name}", team.limits.over(defaults)))
        return Principal(
            key_id=record.id,
            key_name=record.name,
            owner=owner,
            role=record.role,
            team_id=record.team.id if record.team else None,
            team_name=record.team.name if record.team else None,
            scopes=tuple(scopes),
            user_id=user,
            epoch=epoch,
            snapshot_at=snapshot_at,
        )

    # -- may it run ------------------------------------------------------------------------------------------------

    def admit(self, principal: Principal, reserve_tokens: int, reserve_micros: int = 0) -> Admitted | Refused:
        """Admit against every limit at once, under the key snapshot's epoch (an admin change since: the key
        is resolved again and admitted under what it is now); on a store error, open or closed as configured."""
        rid = new_usage_id()
        for _ in range(3):
            expected = None if principal.static else principal.epoch
            try:
                decision = self.store.admit(principal, rid, reserve_tokens, reserve_micros, expected_epoch=expected)
                if isinstance(decision, Stale):
                    again = self._refresh(principal, decision.epoch)
                    if isinstance(again, Refused):
                        return again
                    principal = again
                    continue
            except STORE_ERRORS as exc:
                return self._admit_without_store(principal, rid, reserve_tokens, exc)
            break
        else:
            raise StoreUnavailable("the key store kept changing during admission; try again shortly")
        self.events("store", {"op": "admit", "result": "ok", "store": self._limiter_name()})
        if isinstance(decision, Admitted):
            self._hold(decision)
        else:
            scope = decision.scope
            self.events("refusal", {"limit": decision.limit, "scope": scope.kind if scope else "key"})
        return decision

    def _admit_without_store(self, principal: Principal, rid: str, reserve_tokens: int, exc: Exception
                             ) -> Admitted | Refused:
        """The limits store failed: 503 when closed; when open, admitted uncounted once the key itself still
        checks out (the epoch from whatever store answers; a snapshot within auth_stale_seconds otherwise)."""
        store = getattr(exc, "store", self.store.name)
        log.warning("teams: admission failed: %s", exc)
        self.events("store", {"op": "admit", "result": "error", "store": store})
        if self.settings.on_store_error == "closed":
            raise StoreUnavailable("the limits store is unavailable; try again shortly") from None
        if not principal.static:
            try:
                epoch = self.store.epoch()
                checked = principal if epoch == principal.epoch else self._refresh(principal, epoch)
            except STORE_ERRORS:
                if time.monotonic() - principal.snapshot_at > self.settings.auth_stale_seconds:
                    raise StoreUnavailable(AuthFailure("unavailable").message) from None
                checked = principal
            if isinstance(checked, Refused):
                return checked
            principal = checked
        with self._lock:
            self.fail_open += 1
            self._fail_open_pending += 1
            self._fail_open_last = self.clock()
        self.events("fail_open", {"store": store})
        admitted = Admitted(rid, principal, reserve_tokens, self.clock(), -1)
        self._hold(admitted)
        return admitted

    def _refresh(self, principal: Principal, epoch: int) -> Principal | Refused:
        """The key as it is under `epoch` (after an admin change): a new principal, or a refusal if the key
        was revoked or expired since. Store errors propagate."""
        self._see_epoch(epoch, forward_only=True)
        try:
            record: KeyRecord | None = self.store.key(principal.key_id)
        except StoreError:
            record = None
        status = record.status(self.clock()) if record is not None else "unknown"
        if record is None or status != "active":
            self.events("auth", {"result": status})
            return Refused("revoked", None, message=AuthFailure(status).message)
        headers = {GATEWAY_USER_EMAIL: principal.user_id} if principal.user_id else {}
        return self.principal(record, headers, epoch=epoch, snapshot_at=time.monotonic())

    def _hold(self, admitted: Admitted) -> None:
        """An admitted request is live until settled: the keeper renews its leases meanwhile."""
        self._start_keeper()
        with self._lock:
            self._live[admitted.rid] = admitted

    def settle(self, admitted: Admitted, usage: Usage) -> bool:
        """Close an admitted request exactly once (the integrator may call it from the pipeline too): True
        for the call that closed it (even if the store then failed: the answer went out, its cost was spent)."""
        with self._lock:
            if admitted.settled:
                return False
            admitted.settled = True
            self._live.pop(admitted.rid, None)
        try:
            self.store.settle(admitted, usage)
            self.events("store", {"op": "settle", "result": "ok", "store": self._limiter_name()})
        except STORE_ERRORS as exc:  # the lease frees itself at expiry; SQLite: the usage row is lost, and said so
            log.error("teams: could not settle %s for key %s: %s", admitted.rid, admitted.principal.key_id, exc)
            self.events("store", {"op": "settle", "result": "error", "store": getattr(exc, "store", self.store.name)})
        return True

    # -- keeper ----------------------------------------------------------------------------------------------------

    def _start_keeper(self) -> None:
        """One keeper per worker process, started after the fork on the first admission."""
        keeper = self._keeper
        if keeper is not None and self._keeper_pid == os.getpid() and keeper.is_alive():
            return
        if self._closed.is_set():  # after close(): no keeper again
            return
        with self._lock:
            if self._keeper is not None and self._keeper_pid == os.getpid() and self._keeper.is_alive():
                return
            self._keeper_pid = os.getpid()
            self._keeper = threading.Thread(target=self._keep, name="teams-lease-keeper", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        """Renew live leases every lease_seconds/3; between renewals, the store's upkeep (SQLite: the WAL
        checkpoint, kept off the request path) a few times a second."""
        renew_every = max(self.settings.lease_seconds / 3, 0.05)
        tick = min(MAINTAIN_EVERY, renew_every)
        renewed = time.monotonic()
        while not self._closed.wait(tick):
            try:
                self.store.maintain()
            except STORE_ERRORS as exc:
                log.warning("teams: store upkeep failed: %s", exc)
            if time.monotonic() >= self._fail_open_retry_at:
                self.flush_fail_open()
            if time.monotonic() - renewed < renew_every:
                continue
            renewed = time.monotonic()
            with self._lock:
                live = list(self._live.values())
            renew_live = getattr(self.store, "renew_live", None)
            try:
                if renew_live is not None:
                    renew_live(live)
                else:
                    self.store.renew([a.rid for a in live])
                self.events("store", {"op": "renew", "result": "ok", "store": self._limiter_name()})
            except STORE_ERRORS as exc:
                log.warning("teams: lease renewal failed: %s", exc)
                self.events("store", {"op": "renew", "result": "error", "store": self._limiter_name()})

    def close(self) -> None:
        """The end of this gate in this process (an embedding app's teardown; tests): the keeper stops, fail-opens
        not yet counted are written, the uploader (PostgreSQL) uploads what it can and stops, the store closes.
        A worker that just exits needs none of it: its leases expire and its spool is adopted."""
        self._closed.set()
        keeper = self._keeper
        if keeper is not None and self._keeper_pid == os.getpid() and keeper is not threading.current_thread():
            keeper.join(10)
        self.flush_fail_open()
        self.store.stop()

    def flush_fail_open(self) -> int:
        """Add this worker's fail-opens since the last flush to the store's count (what `store status`, the
        admin API and the page show for the whole fleet); kept for the next try when the store is down.
        Returns how many were written."""
        with self._lock:
            count, last_at = self._fail_open_pending, self._fail_open_last
            self._fail_open_pending = 0
        if not count:
            return 0
        try:
            self.store.note_fail_open(count, last_at)
        except STORE_ERRORS as exc:
            with self._lock:
                self._fail_open_pending += count
                self._fail_open_retry_at = time.monotonic() + FAIL_OPEN_RETRY
            log.warning("teams: recording %d fail-open admissions failed (kept for the next try): %s", count, exc)
            return 0
        return count

    def _limiter_name(self) -> str:
        return "redis" if self.store.name == "postgres" else self.store.name

    def live(self) -> int:
        with self._lock:
            return len(self._live)
