"""The Redis limiter: GCRA buckets, in-flight leases and month spend, one Lua script per admission.

Expendable state, exact while it lives: the admission script reads Redis TIME (one clock for every
host), checks the fleet's epoch against the caller's key snapshot, checks every limit of every scope
and writes only when all pass — the request's one Redis round trip. After a restart buckets start
full, leases are gone and month spend is seeded again from the PostgreSQL ledger (`NEED_SEED`).

The client is strict on purpose (redis-py's defaults retry with backoff: 4.9 s against a hung server):
no retries, 100 ms socket and connect timeouts, a blocking pool that waits 50 ms for a connection,
and a breaker that skips Redis for 5 s after three consecutive errors.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from claude_proxy.teams.base import StoreDown
from claude_proxy.teams.breaker import Breaker
from claude_proxy.teams.limits import month_reset, usd
from claude_proxy.teams.records import Admitted, Principal, Refused, Scope, Stale, Usage
from claude_proxy.teams.rows import rate_refusal

EPOCH_KEY = "cp:epoch"
SPEND_TTL_S = 40 * 86400
KINDS = ("rpm", "tpm", "concurrent", "budget")

SETTLE = """
-- KEYS per scope i from 1 + 3i: tpm state, lease hash, spend key (month of admission)
-- ARGV[1]: a JSON array of: rid, n, then per scope 4 values from 3 + 4i: tpm amount, tpm period, token delta,
-- cost micros
local ARGV = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rid, n = ARGV[1], tonumber(ARGV[2])
for i = 0, n - 1 do
  local kb, ab = 1 + 3 * i, 3 + 4 * i
  redis.call('HDEL', KEYS[kb + 1], rid)
  local amount, period, delta = tonumber(ARGV[ab]), tonumber(ARGV[ab + 1]), tonumber(ARGV[ab + 2])
  if amount > 0 and delta ~= 0 then
    local v = redis.call('HMGET', KEYS[kb], 'tat', 'step')
    if v[1] then
      local step = period / amount
      local tat, old = tonumber(v[1]), tonumber(v[2])
      if tat > now and old and old ~= 0 and old ~= step then tat = now + (tat - now) / old * step end
      tat = tat + delta * step
      if delta < 0 and tat < now then tat = now end
      redis.call('HSET', KEYS[kb], 'tat', string.format('%.17g', tat), 'step', string.format('%.17g', step))
      redis.call('PEXPIRE', KEYS[kb], math.max(1000, math.ceil((tat - now) * 1000) + 1000))
    end
  end
  local cost = tonumber(ARGV[ab + 3])
  if cost > 0 and redis.call('EXISTS', KEYS[kb + 2]) == 1 then redis.call('INCRBY', KEYS[kb + 2], cost) end
end
return 1
"""

RENEW = """
-- push the expiry of one request's leases forward (KEYS: its lease hashes; ARGV: rid, lease ms)
local t = redis.call('TIME')
local expires = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2]) / 1000
local n = 0
for _, lk in ipairs(KEYS) do
  local v = redis.call('HGET', lk, ARGV[1])
  if v then
    local rest = string.match(v, '^[^:]+(:.*)$')
    redis.call('HSET', lk, ARGV[1], string.format('%.17g', expires) .. rest)
    redis.call('PEXPIRE', lk, tonumber(ARGV[2]) * 2)
    n = n + 1
  end
end
return n
"""

RAISE_EPOCH = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
local new = tonumber(ARGV[1])
if new > cur then redis.call('SET', KEYS[1], ARGV[1]); return new end
return cur
"""

IN_FLIGHT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for idx = 2, #all, 2 do
  if tonumber(string.match(all[idx], '^([^:]+)')) >= now then n = n + 1 end
end
return n
"""

LIVE_RIDS = """
-- the request ids holding a live lease in one lease hash
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for idx = 1, #all, 2 do
  if tonumber(string.match(all[idx + 1], '^([^:]+)')) >= now then out[#out + 1] = all[idx] end
end
return out
"""


def tag_of(principal: Principal) -> str:
    """The hash tag every key of a request shares: its team, or the key itself when it has none."""
    return f"t:{principal.team_id}" if principal.team_id is not None else f"k:{principal.key_id}"


def scope_key(tag: str, scope: str, what: str) -> str:
    return f"cp:{{{tag}}}:{scope}:{what}"


def _n(value: int | None) -> int:
    return -1 if value is None else int(value)


class RedisLimiter:
    name = "redis"

    def __init__(self, url: str, *, lease_seconds: float = 60.0, breaker: Breaker | None = None,
                 tpm_counts_cache_reads: bool = False, socket_timeout: float = 0.1) -> None:
        self._url = url
        self.lease_seconds = lease_seconds
        self.breaker = breaker or Breaker()
        self.tpm_counts_cache_reads = tpm_counts_cache_reads
        self.socket_timeout = socket_timeout
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._pid = 0
        self._lock = threading.Lock()

    def _redis(self) -> redis.Redis:
        if self._client is None or self._pid != os.getpid():  # first use, or first use after a fork
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    pool = redis.BlockingConnectionPool.from_url(
                        self._url, max_connections=64, timeout=0.05, socket_timeout=self.socket_timeout,
                        socket_connect_timeout=self.socket_timeout, retry=Retry(NoBackoff(), 0))
                    client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
                    admit = resources.files("claude_proxy.teams").joinpath("redis_limits.lua").read_text()
                    # register_script: EVALSHA, falling back to EVAL after a restart or SCRIPT FLUSH
                    self._scripts = {name: client.register_script(src) for name, src in
                                     (("admit", admit), ("settle", SETTLE), ("renew", RENEW),
                                      ("epoch", RAISE_EPOCH), ("in_flight", IN_FLIGHT),
                                      ("live_rids", LIVE_RIDS))}
                    self._client, self._pid = client, os.getpid()
        return self._client

    def _call(self, fn: Callable[[redis.Redis], Any]) -> Any:
        if not self.breaker.allow():
            raise StoreDown("redis", "unavailable (circuit open after repeated errors)")
        try:
            result = fn(self._redis())
        except redis.RedisError as exc:
            self.breaker.failure()
            raise StoreDown("redis", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        self.breaker.success()
        return result

    def script(self, name: str) -> Any:
        self._redis()
        return self._scripts[name]

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.connection_pool.disconnect()

    # -- epoch and revocation ------------------------------------------------------------------------------------

    def epoch(self) -> int | None:
        value = self._call(lambda r: r.get(EPOCH_KEY))
        return None if value is None else int(value)

    def raise_epoch(self, epoch: int) -> int:
        """Set the fleet's epoch to `epoch` unless it is already higher (never moves back)."""
        return int(self._call(lambda r: self.script("epoch")(keys=[EPOCH_KEY], args=[epoch], client=r)))

    def flag_revoked(self, key_id: str, team_id: int | None) -> None:
        tag = f"t:{team_id}" if team_id is not None else f"k:{key_id}"
        self._call(lambda r: r.set(scope_key(tag, f"k:{key_id}", "revoked"), 1))

    # -- admission -----------------------------------------------------------------------------------------------

    def admit(self, principal: Principal, rid: str, reserve_tokens: int, reserve_micros: int,
              seed: Callable[[str, str], int], expected_epoch: int | None = None,
              ledger_epoch: Callable[[], int] | None = None) -> Admitted | Refused | Stale:
        """One script call: the epoch check, the revocation flag and every limit of every scope. Only after a
        Redis restart (epoch or month spend missing: seeded from the ledger) or when Redis missed an epoch
        the ledger has (`expected_epoch` ahead: raised) is there a second call."""
        tag = tag_of(principal)
        keys = [scope_key(tag, f"k:{principal.key_id}", "revoked")]
        args: list[Any] = [rid, reserve_tokens, reserve_micros, int(self.lease_seconds * 1000), len(principal.scopes)]
        for scope in principal.scopes:
            lim = scope.limits
            keys += [scope_key(tag, scope.name, "rpm"), scope_key(tag, scope.name, "tpm"),
                     scope_key(tag, scope.name, "lease"), scope_key(tag, scope.name, "spend:")]
            args += [_n(lim.rpm.amount if lim.rpm else None), lim.rpm.period_s if lim.rpm else 0,
                     _n(lim.tpm.amount if lim.tpm else None), lim.tpm.period_s if lim.tpm else 0,
                     _n(lim.max_concurrent), _n(lim.monthly_budget_micros)]
        keys.append(EPOCH_KEY)
        args.append("-" if expected_epoch is None else expected_epoch)
        packed = orjson.dumps(args)  # one argument: redis-py encodes and frames each argument on its own
        for _ in range(4):
            out = self._call(lambda r: self.script("admit")(keys=keys, args=[packed], client=r))
            verdict = out[0].decode() if isinstance(out[0], bytes) else out[0]
            if verdict == "NO_EPOCH":  # Redis restarted empty: the ledger's epoch, then again
                self.raise_epoch(ledger_epoch() if ledger_epoch is not None else 0)
                continue
            if verdict == "STALE":
                fleet = int(out[1])
                assert expected_epoch is not None
                if fleet > expected_epoch:
                    return Stale(fleet)
                self.raise_epoch(expected_epoch)  # the snapshot is newer than Redis's epoch (a missed publish)
                continue
            if verdict != "NEED_SEED":
                break
            scope, month = principal.scopes[int(out[1])], out[2].decode()
            micros = seed(scope.name, month)  # the ledger's spend for that month (StoreDown when it is down)
            self._call(lambda r, s=scope, m=month, v=micros: r.set(scope_key(tag, s.name, "spend:" + m), v, nx=True,
                                                                 ex=SPEND_TTL_S))
        else:
            raise StoreDown("redis", "the epoch or month spend could not be seeded")
        if verdict == "REVOKED":
            return Refused("revoked", None, message="this key has been revoked or has expired")
        if verdict == "REFUSED":
            kind, scope = KINDS[int(out[1])], principal.scopes[int(out[2])]
            return _refusal(kind, scope, float(out[3]))
        now = int(out[1]) + int(out[2]) / 1_000_000
        headroom: dict[str, Any] = {}
        for i, scope in enumerate(principal.scopes):
            values = [int(v) for v in out[4 + 4 * i : 8 + 4 * i]]
            room = {k: v for k, v in zip(("rpm", "tpm", "concurrent", "budget_micros"), values, strict=True) if v >= 0}
            headroom[scope.kind] = room
        return Admitted(rid, principal, reserve_tokens, now, -1, headroom)

    def settle(self, admitted: Admitted, usage: Usage, month: str) -> None:
        """Drop the leases, correct the token buckets, add the cost to this month's counters (if seeded)."""
        principal = admitted.principal
        tag = tag_of(principal)
        tokens = usage.input_tokens + usage.output_tokens + usage.cache_write_tokens
        if self.tpm_counts_cache_reads:
            tokens += usage.cache_read_tokens
        keys: list[str] = []
        args: list[Any] = [admitted.rid, len(principal.scopes)]
        for scope in principal.scopes:
            rate = scope.limits.tpm
            keys += [scope_key(tag, scope.name, "tpm"), scope_key(tag, scope.name, "lease"),
                     scope_key(tag, scope.name, "spend:" + month)]
            delta = tokens - min(admitted.reserve_tokens, rate.amount) if rate else 0
            args += [rate.amount if rate else 0, rate.period_s if rate else 0, delta, usage.cost_micro_usd or 0]
        packed = orjson.dumps(args)
        self._call(lambda r: self.script("settle")(keys=keys, args=[packed], client=r))

    def renew(self, live: Sequence[Admitted]) -> int:
        """One pipelined round trip renewing every live request's leases (the keeper thread)."""
        if not live:
            return 0
        ms = int(self.lease_seconds * 1000)

        def run(r: redis.Redis) -> int:
            pipe = r.pipeline(transaction=False)
            for admitted in live:
                tag = tag_of(admitted.principal)
                keys = [scope_key(tag, s.name, "lease") for s in admitted.principal.scopes]
                self.script("renew")(keys=keys, args=[admitted.rid, ms], client=pipe)
            return sum(int(n) for n in pipe.execute())

        return int(self._call(run))

    def in_flight(self, tag: str, scope: str) -> int:
        return int(self._call(lambda r: self.script("in_flight")(keys=[scope_key(tag, scope, "lease")], client=r)))

    def in_flight_all(self) -> int:
        """Requests in flight fleet-wide: distinct request ids with a live lease. A request holds one lease
        per limited scope (its key's and its team's): it is one request, as the embedded store counts it."""
        def run(r: redis.Redis) -> int:
            rids: set[bytes] = set()
            for k in r.scan_iter(match="cp:*:lease", count=500):
                rids.update(self.script("live_rids")(keys=[k], client=r))
            return len(rids)

        return int(self._call(run))

    def ping(self) -> bool:
        return bool(self._call(lambda r: r.ping()))


def _refusal(kind: str, scope: Scope, retry_after: float) -> Refused:
    """The same refusals, worded the same, as the embedded store's (the reset time is for the message)."""
    if kind in ("rpm", "tpm"):
        rate = scope.limits.rpm if kind == "rpm" else scope.limits.tpm
        assert rate is not None
        return rate_refusal(kind, scope, rate, retry_after)
    if kind == "concurrent":
        return Refused("concurrent", scope, retry_after=1.0,
                       message=f"{scope.label}: {scope.limits.max_concurrent} concurrent requests at most;"
                       " retry when one finishes")
    budget = scope.limits.monthly_budget_micros or 0
    reset = month_reset(time.time())
    return Refused("budget", scope, reset_at=reset,
                   message=f"{scope.label}'s monthly budget of {usd(budget)} is spent; resets "
                   + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(reset)))
