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

from claude_proxy.config.teams import Limits, TeamsSettings
from claude_proxy.errors import ProxyError
from claude_proxy.teams import keys as keyfmt
from claude_proxy.teams.base import STORE_ERRORS, Store
from claude_proxy.teams.records import Admitted, KeyRecord, Principal, Refused, Scope, Usage
from claude_proxy.teams.store import SqliteStore

log = logging.getLogger("claude_proxy.teams")

NEGATIVE_TTL = 2.0  # unknown keys are remembered this long (a key created since is found after it)
CACHE_MAX = 10_000
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


Events = Callable[[str, Mapping[str, str]], None]


def open_store(settings: TeamsSettings, *, clock: Callable[[], float] = time.time, events: Any = None) -> Store:
    """The configured backend: one SQLite file, or PostgreSQL + Redis (imported only when configured)."""
    if settings.store == "postgres":
        from claude_proxy.teams.distributed import DistributedStore

        return DistributedStore(settings, clock=clock, events=events)
    return SqliteStore(settings.path, busy_timeout_ms=settings.busy_timeout_ms, lease_seconds=settings.lease_seconds,
                       clock=clock, tpm_counts_cache_reads=settings.tpm_counts_cache_reads)


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
        self.fail_open = 0
        self._epoch = -1
        self._live: dict[str, Admitted] = {}
        self._lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        self._keeper_pid = 0

    def prepare(self) -> None:
        """Create or upgrade (SQLite) or check (PostgreSQL) the schema, then let go of the connection
        (workers open their own after the fork). A PostgreSQL that cannot be reached does not stop the
        start: known keys are served from the cache, unknown keys get 503 until it answers."""
        try:
            self.store.migrate()
        except STORE_ERRORS as exc:
            if self.store.name == "sqlite":
                raise
            log.warning("teams: the ledger is unreachable at start (%s); serving what the cache allows", exc)
        self.store.close()
        start = getattr(self.store, "start", None)
        if start is not None:
            start()

    # -- who ------------------------------------------------------------------------------------------------------

    def authenticate(self, presented: Sequence[str], headers: Mapping[str, str]) -> Principal | AuthFailure:
        """The principal for the first presented key that is ours (static keys compared in constant time)."""
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
            record = self._lookup(keyfmt.hash_key(stored[0]))
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
        return self.principal(record, headers)

    def _lookup(self, secret_hash: bytes) -> KeyRecord | None:
        now = time.monotonic()
        try:
            epoch: int | None = self.store.epoch()
        except STORE_ERRORS:
            epoch = None  # no store answers: snapshots serve, within auth_stale_seconds
        with self._lock:
            if epoch is not None and epoch != self._epoch:  # some admin change, anywhere: every snapshot is dropped
                self._stale = {**self._stale, **self._cache} if len(self._stale) < CACHE_MAX else dict(self._cache)
                self._cache.clear()
                self._epoch = epoch
            hit = self._cache.get(secret_hash)
        fresh = epoch is not None or (hit is not None and now - hit[1] <= self.settings.auth_stale_seconds)
        if hit is not None and fresh and (hit[0] is not None or now - hit[1] < NEGATIVE_TTL):
            return hit[0]
        try:
            record = self.store.find_key(secret_hash)
        except STORE_ERRORS:
            old = hit if hit is not None and hit[0] is not None else self._stale.get(secret_hash)
            if old is not None and old[0] is not None and now - old[1] <= self.settings.auth_stale_seconds:
                self.events("auth", {"result": "stale_cache"})
                return old[0]  # a key seen lately, while the ledger is down: served for a bounded time
            raise
        with self._lock:
            if self._epoch == epoch:
                if len(self._cache) >= CACHE_MAX:
                    self._cache.clear()
                self._cache[secret_hash] = (record, now)
        return record

    def _static_principal(self, key_id: str) -> Principal:
        scope = Scope("s:" + key_id, "key", f"key {key_id}", self.settings.defaults)
        return Principal(key_id, key_id, key_id, "user", None, None, (scope,), static=True)

    def principal(self, record: KeyRecord, headers: Mapping[str, str]) -> Principal:
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
            scopes.append(Scope(f"k:{record.id}", "key", f"key {record.name}", key_limits))
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
        )

    # -- may it run ------------------------------------------------------------------------------------------------

    def admit(self, principal: Principal, reserve_tokens: int, reserve_micros: int = 0) -> Admitted | Refused:
        """Admit against every limit at once; on a store error, open or closed as configured."""
        rid = "u_" + secrets.token_hex(16)
        try:
            decision = self.store.admit(principal, rid, reserve_tokens, reserve_micros)
        except STORE_ERRORS as exc:
            store = getattr(exc, "store", self.store.name)
            log.warning("teams: admission failed: %s", exc)
            self.events("store", {"op": "admit", "result": "error", "store": store})
            if self.settings.on_store_error == "closed":
                raise StoreUnavailable("the limits store is unavailable; try again shortly") from None
            with self._lock:
                self.fail_open += 1
            self.events("fail_open", {"store": store})
            decision = Admitted(rid, principal, reserve_tokens, self.clock(), -1)
        else:
            self.events("store", {"op": "admit", "result": "ok", "store": self._limiter_name()})
        if isinstance(decision, Admitted):
            self._start_keeper()
            with self._lock:
                self._live[rid] = decision
        else:
            scope = decision.scope
            self.events("refusal", {"limit": decision.limit, "scope": scope.kind if scope else "key"})
        return decision

    def settle(self, admitted: Admitted, usage: Usage) -> None:
        """Close an admitted request exactly once (the integrator may call it from the pipeline too)."""
        with self._lock:
            if admitted.settled:
                return
            admitted.settled = True
            self._live.pop(admitted.rid, None)
        try:
            self.store.settle(admitted, usage)
            self.events("store", {"op": "settle", "result": "ok", "store": self._limiter_name()})
        except STORE_ERRORS as exc:  # the lease frees itself at expiry; SQLite: the usage row is lost, and said so
            log.error("teams: could not settle %s for key %s: %s", admitted.rid, admitted.principal.key_id, exc)
            self.events("store", {"op": "settle", "result": "error", "store": getattr(exc, "store", self.store.name)})

    # -- keeper ----------------------------------------------------------------------------------------------------

    def _start_keeper(self) -> None:
        """One keeper per worker process, started after the fork on the first admission."""
        keeper = self._keeper
        if keeper is not None and self._keeper_pid == os.getpid() and keeper.is_alive():
            return
        with self._lock:
            if self._keeper is not None and self._keeper_pid == os.getpid() and self._keeper.is_alive():
                return
            self._keeper_pid = os.getpid()
            self._keeper = threading.Thread(target=self._keep, name="teams-lease-keeper", daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        interval = max(self.settings.lease_seconds / 3, 0.05)
        while True:
            time.sleep(interval)
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

    def _limiter_name(self) -> str:
        return "redis" if self.store.name == "postgres" else self.store.name

    def live(self) -> int:
        with self._lock:
            return len(self._live)
