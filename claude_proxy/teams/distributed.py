"""The distributed store: the PostgreSQL ledger + the Redis limiter + the local usage spool, behind the
same contract as the embedded SQLite store (teams/base.py), for any number of machines.

- Admin changes commit in PostgreSQL (bumping the epoch there, audit row in the same transaction),
  then raise the fleet's epoch in Redis so every worker drops its key cache on its next request. If
  Redis misses that write, each worker also reads the ledger's epoch at most once a second.
- Admission is one Redis script, one round trip: it also checks the epoch; settlement appends the usage record to the local spool first (the
  record is safe on disk before anything else happens), then settles the limiter.
- Usage, spend and audit are read from PostgreSQL; in-flight counts and headroom from Redis.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from claude_proxy.config.teams import Limits, TeamsSettings
from claude_proxy.teams.base import SchemaBehind, StoreDown
from claude_proxy.teams.breaker import Breaker
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.postgres import PostgresLedger
from claude_proxy.teams.records import Actor, Admitted, KeyRecord, Principal, Refused, Stale, Team, Usage
from claude_proxy.teams.redis_limits import RedisLimiter
from claude_proxy.teams.rows import PRUNE_AGAIN, PRUNE_BUDGET, PRUNE_EVERY
from claude_proxy.teams.spool import Spool

log = logging.getLogger("claude_proxy.teams")
LEDGER_EPOCH_EVERY = 1.0  # seconds between reads of the ledger's epoch per worker


def publish_epoch(limiter: RedisLimiter, epoch: int) -> None:
    """A committed admin change's epoch, to Redis at once (the other workers' next admission sees it)."""
    try:
        limiter.raise_epoch(epoch)
    except StoreDown as exc:  # the workers' once-a-second ledger read picks it up
        log.warning("teams: could not publish epoch %d to Redis: %s", epoch, exc)


class DistributedStore:
    name = "postgres"

    def __init__(self, settings: TeamsSettings, env: Mapping[str, str] | None = None, *,
                 clock: Callable[[], float] = time.time, events: Callable[[str, dict[str, str]], None] | None = None
                 ) -> None:
        env = os.environ if env is None else env
        pg_url, redis_url = env.get(settings.postgres_url_env), env.get(settings.redis_url_env)
        if not pg_url or not redis_url:
            missing = settings.postgres_url_env if not pg_url else settings.redis_url_env
            raise StoreDown("config", f"${missing} is not set")
        self.settings = settings
        self.clock = clock
        self.limiter = RedisLimiter(redis_url, lease_seconds=settings.lease_seconds, breaker=Breaker(),
                                    tpm_counts_cache_reads=settings.tpm_counts_cache_reads)
        # Not a method of ours: the ledger holding this store would make a cycle, and a store only the cycle
        # collector frees is freed at interpreter exit, where its pool's threads no longer stop (5 s each, 3.13).
        self.ledger = PostgresLedger(pg_url, pgbouncer=settings.postgres_pgbouncer, clock=clock, breaker=Breaker(),
                                     on_change=functools.partial(publish_epoch, self.limiter))
        self.spool = Spool(settings.spool_dir, self.ledger.record_usage, instance=settings.instance,
                           flush_interval=settings.flush_interval, max_bytes=settings.spool_max_mb * 1024 * 1024,
                           events=events)
        self._ledger_epoch = -1
        self._ledger_epoch_at = -1e9
        self._prune_due = 0.0  # monotonic time of this process's next check for usage events past the retention
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------------------------------

    def migrate(self) -> str:
        """Make ready: migrate if `auto_migrate` (in a separate process: workers never import alembic),
        then check the schema is this claude-proxy's head (SchemaBehind otherwise)."""
        if self.settings.auto_migrate:
            done = subprocess.run([sys.executable, "-m", "claude_proxy", "store", "migrate", "--from-worker"],
                                  capture_output=True, text=True, timeout=120, env=dict(os.environ))
            if done.returncode != 0:
                raise SchemaBehind((done.stderr.strip().splitlines() or ["store migrate failed"])[-1])
        return self.ledger.check_schema()

    def start(self) -> None:
        """In a serving worker: the uploader (it also adopts spools left by dead workers)."""
        self.spool.start()

    def stop(self) -> None:
        """The end of this process's use: the uploader stops after uploading what it can, then `close`."""
        self.spool.stop()
        self.close()

    def close(self) -> None:
        self.ledger.close()
        self.limiter.close()

    def maintain(self) -> None:
        """Once an hour, prune the ledger's usage events past the retention (every worker checks; the first
        to find any deletes them). Uploads are the spool's uploader thread's."""
        if self.settings.event_retention_days and time.monotonic() >= self._prune_due:
            self._prune_due = time.monotonic() + PRUNE_EVERY  # a store error waits for the next hour too
            if not self.ledger.prune_usage(self.settings.event_retention_days, budget_s=PRUNE_BUDGET).done:
                self._prune_due = time.monotonic() + PRUNE_AGAIN

    # -- epoch -----------------------------------------------------------------------------------------------------

    def _ledger_epoch_due(self) -> int | None:
        """The ledger's epoch, read at most once a second per worker (None between reads or when it is down)."""
        now = time.monotonic()
        if now - self._ledger_epoch_at < LEDGER_EPOCH_EVERY:
            return None
        self._ledger_epoch_at = now
        try:
            self._ledger_epoch = self.ledger.epoch()
        except StoreDown:
            return None
        return self._ledger_epoch

    def epoch_hint(self) -> int | None:
        """Before an admission: the ledger's epoch once a second (a change Redis missed still arrives); the
        admission script checks Redis's epoch itself."""
        return self._ledger_epoch_due()

    def epoch(self) -> int:
        """The fleet's epoch: Redis's; the ledger's at most once a second (it wins when higher, and is
        pushed to Redis, e.g. after a restart emptied it or a change missed it)."""
        ledger_epoch = self._ledger_epoch_due()
        try:
            fleet = self.limiter.epoch()
        except StoreDown:
            if self._ledger_epoch < 0:
                raise
            return self._ledger_epoch
        if fleet is None or (ledger_epoch is not None and ledger_epoch > fleet):
            base = ledger_epoch if ledger_epoch is not None else self.ledger.epoch()
            return self.limiter.raise_epoch(base)
        return max(fleet, self._ledger_epoch)

    # -- ledger: admin changes -------------------------------------------------------------------------------------

    def meta(self, name: str, make: Callable[[], str]) -> str:
        return self.ledger.meta(name, make)

    def create_team(self, name: str, limits: Limits, actor: Actor, display_name: str | None = None) -> Team:
        return self.ledger.create_team(name, limits, actor, display_name)

    def team(self, name: str) -> Team:
        return self.ledger.team(name)

    def teams(self, include_archived: bool = False) -> list[Team]:
        return self.ledger.teams(include_archived)

    def update_team(self, name: str, changes: Mapping[str, Any], actor: Actor) -> Team:
        return self.ledger.update_team(name, changes, actor)

    def create_key(self, *, owner: str, actor: Actor, name: str = "", team: str | None = None, admin: bool = False,
                   gateway: bool = False, limits: Limits = Limits(), expires_at: float | None = None
                   ) -> tuple[KeyRecord, str]:
        return self.ledger.create_key(owner=owner, actor=actor, name=name, team=team, admin=admin, gateway=gateway,
                                      limits=limits, expires_at=expires_at)

    def key(self, key_id: str) -> KeyRecord:
        return self.ledger.key(key_id)

    def find_key(self, secret_hash: bytes) -> KeyRecord | None:
        return self.ledger.find_key(secret_hash)

    def keys(self, *, team: str | None = None, owner: str | None = None, status: str = "active") -> list[KeyRecord]:
        return self.ledger.keys(team=team, owner=owner, status=status)

    def update_key(self, key_id: str, changes: Mapping[str, Any], actor: Actor) -> KeyRecord:
        return self.ledger.update_key(key_id, changes, actor)

    def revoke_key(self, key_id: str, actor: Actor, reason: str | None = None) -> KeyRecord:
        record = self.ledger.revoke_key(key_id, actor, reason)  # its epoch published (`on_change`)
        try:  # the second guard: the admission script refuses a flagged key even from a stale cache
            self.limiter.flag_revoked(record.id, record.team.id if record.team else None)
        except StoreDown as exc:
            log.warning("teams: could not flag key %s revoked in Redis: %s", record.id, exc)
        return record

    # -- limiter ---------------------------------------------------------------------------------------------------

    def admit(self, principal: Principal, rid: str, reserve_tokens: int, reserve_micros: int = 0,
              expected_epoch: int | None = None) -> Admitted | Refused | Stale:
        return self.limiter.admit(principal, rid, reserve_tokens, reserve_micros, self.ledger.month_spend,
                                  expected_epoch, self.ledger.epoch)

    def renew(self, rids: Sequence[str]) -> int:
        raise NotImplementedError("the distributed store renews Admitted requests: renew_live")

    def renew_live(self, live: Sequence[Admitted]) -> int:
        return self.limiter.renew(live)

    def settle(self, admitted: Admitted, usage: Usage) -> bool:
        """Spool the usage record (safe on local disk before anything else), then settle the limiter."""
        principal = admitted.principal
        now = self.clock()
        self.spool.append({
            "usage_id": admitted.rid, "request_id": usage.request_id, "ts": now,
            "day": time.strftime("%Y-%m-%d", time.gmtime(now)), "instance": self.spool.instance,
            "key_id": principal.key_id, "team_id": principal.team_id, "team": principal.team_name,
            "owner": principal.owner, "endpoint": usage.endpoint, "client_model": usage.client_model,
            "provider": usage.provider, "upstream_model": usage.upstream_model, "stream": usage.stream,
            "status": usage.status, "error_type": usage.error_type, "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens, "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens, "estimated": usage.estimated,
            "cost_micros": usage.cost_micro_usd, "priced": usage.cost_micro_usd is not None,
            "latency_ms": usage.latency_ms, "scopes": [s.name for s in principal.scopes],
            "admitted_at": admitted.admitted_at,
        })
        self.limiter.settle(admitted, usage, month_of(admitted.admitted_at))
        return True

    # -- reading -----------------------------------------------------------------------------------------------------

    def month_spend(self, scope: str, month: str | None = None) -> int:
        return self.ledger.month_spend(scope, month)

    def in_flight(self, scope: str | None = None) -> int:
        if scope is None:
            return self.limiter.in_flight_all()
        kind, _, rest = scope.partition(":")
        if kind == "t":
            tag = scope
        elif kind == "s":
            tag = "k:" + rest
        else:  # k:<id> or u:<key id>:<user>: tagged by the key's team, when it has one
            record = self.ledger.key(rest.split(":", 1)[0])
            tag = f"t:{record.team.id}" if record.team else f"k:{record.id}"
        return self.limiter.in_flight(tag, scope)

    def usage(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.ledger.usage(**kwargs)

    def recent(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.ledger.recent(**kwargs)

    def audit(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.ledger.audit(**kwargs)

    def note_fail_open(self, count: int, last_at: float) -> None:
        self.ledger.note_fail_open(count, last_at)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"store": self.name, "limiter": "redis"}
        try:
            out["schema_version"] = self.ledger.schema_version()
            out.update(self.ledger.counts())
            out.update(self.ledger.fail_open())
            out["event_retention_days"] = self.settings.event_retention_days
            out["usage_events_kept_from"] = self.ledger.kept_from()
            out["ledger"] = "up"
        except StoreDown as exc:
            out["ledger"] = f"down: {exc}"
        try:
            out["in_flight"] = self.limiter.in_flight_all()
            out["limiter_state"] = "up"
        except StoreDown as exc:
            out["limiter_state"] = f"down: {exc}"
        try:
            out["epoch"] = self.epoch()
        except StoreDown:
            out["epoch"] = None
        out["breakers"] = {"postgres": self.ledger.breaker.snapshot(), "redis": self.limiter.breaker.snapshot()}
        out["spool"] = self.spool.backlog()
        return out
