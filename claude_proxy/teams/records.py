"""The typed values the store hands out and takes in (no I/O)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from claude_proxy.config.teams import Limits, Rate


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def limits_dict(limits: Limits) -> dict[str, Any]:
    return {
        "rpm": str(limits.rpm) if limits.rpm else None,
        "tpm": str(limits.tpm) if limits.tpm else None,
        "max_concurrent": limits.max_concurrent,
        "monthly_budget_usd": None if limits.monthly_budget_micros is None else limits.monthly_budget_micros / 1e6,
    }


@dataclass(frozen=True)
class Actor:
    """Who does an admin action, and from where (an audit row's subject)."""

    who: str
    key_id: str | None = None
    remote_addr: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Team:
    id: int
    name: str
    display_name: str | None
    limits: Limits
    created_at: float
    archived_at: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "display_name": self.display_name,
            "limits": limits_dict(self.limits),
            "created_at": iso(self.created_at),
            "archived_at": iso(self.archived_at),
        }


@dataclass(frozen=True)
class KeyRecord:
    """One stored key, never its secret: an immutable snapshot (caches never write back)."""

    id: str
    name: str
    owner: str
    role: str
    gateway: bool
    limits: Limits
    team: Team | None
    created_at: float
    created_by: str | None = None
    expires_at: float | None = None
    revoked_at: float | None = None
    revoke_reason: str | None = None
    last_used_at: float | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def public(self, now: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "team": self.team.name if self.team else None,
            "role": self.role,
            "gateway": self.gateway,
            "status": self.status(time.time() if now is None else now),
            "limits": limits_dict(self.limits),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "revoke_reason": self.revoke_reason,
            "last_used_at": iso(self.last_used_at),
        }


@dataclass(frozen=True)
class Scope:
    """One thing limits apply to in a request: a key, a team, or a gateway-forwarded user."""

    name: str  # "k:<id>", "t:<id>", "u:<key id>:<user>", "s:<static id>"
    kind: str  # "key" | "team" | "user"
    label: str  # for messages: "key alice-laptop", "team platform"
    limits: Limits


@dataclass(frozen=True)
class Principal:
    """Who a request is: the key that authenticated, its team, the identity usage is attributed to."""

    key_id: str
    key_name: str
    owner: str
    role: str
    team_id: int | None
    team_name: str | None
    scopes: tuple[Scope, ...]
    static: bool = False
    user_id: str | None = None  # forwarded by a trusted gateway key
    # the store epoch the key snapshot was taken under (admission checks it) and when (monotonic seconds)
    epoch: int = field(default=-1, compare=False)
    snapshot_at: float = field(default=0.0, compare=False)

    @property
    def admin(self) -> bool:
        return self.role == "admin" and not self.static


@dataclass(frozen=True)
class Refused:
    limit: str  # "rpm" | "tpm" | "concurrent" | "budget" | "revoked"
    scope: Scope | None
    retry_after: float = 0.0
    reset_at: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Stale:
    """The store's epoch is no longer the one the principal was resolved under (an admin change since):
    nothing was written, the gate resolves the key again and retries."""

    epoch: int


@dataclass
class Admitted:
    rid: str  # the lease id = the usage id: proxy-generated, time-ordered then random (see gate.new_usage_id)
    principal: Principal
    reserve_tokens: int
    admitted_at: float
    epoch: int
    headroom: dict[str, Any] = field(default_factory=dict)
    settled: bool = False


@dataclass(frozen=True)
class Usage:
    """What one finished request used, as the provider reported it (estimated when it reported none)."""

    endpoint: str = "messages"
    request_id: str | None = None
    client_model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    stream: bool | None = None
    status: int | None = None
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False
    cost_micro_usd: int | None = None
    latency_ms: float | None = None


RATE_COLUMNS = ("rpm", "rpm_period_s", "tpm", "tpm_period_s", "max_concurrent", "monthly_budget_micros")


def limits_from_row(row: Any, prefix: str = "") -> Limits:
    def rate(name: str) -> Rate | None:
        amount = row[prefix + name]
        return None if amount is None else Rate(int(amount), int(row[prefix + name + "_period_s"] or 60))

    return Limits(
        rpm=rate("rpm"),
        tpm=rate("tpm"),
        max_concurrent=row[prefix + "max_concurrent"],
        monthly_budget_micros=row[prefix + "monthly_budget_micros"],
    )


def limits_to_columns(limits: Limits) -> dict[str, Any]:
    return {
        "rpm": limits.rpm.amount if limits.rpm else None,
        "rpm_period_s": limits.rpm.period_s if limits.rpm else None,
        "tpm": limits.tpm.amount if limits.tpm else None,
        "tpm_period_s": limits.tpm.period_s if limits.tpm else None,
        "max_concurrent": limits.max_concurrent,
        "monthly_budget_micros": limits.monthly_budget_micros,
    }
