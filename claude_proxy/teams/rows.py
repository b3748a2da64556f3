"""What both SQL ledgers (SQLite, PostgreSQL) share and neither driver is needed for: the key and team
rows as records, the usage groupings, limit columns, refusals worded once, and the admin error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claude_proxy.config.teams import Rate
from claude_proxy.teams.records import KeyRecord, Refused, Scope, Team, limits_from_row

GROUPS = {
    "day": "day",
    "key": "key_id",
    "owner": "owner",
    "team": "team",
    "model": "upstream_model",
    "client_model": "client_model",
    "provider": "provider",
}
KEY_SELECT = """
SELECT k.*, t.id AS t_id, t.name AS t_name, t.display_name AS t_display_name, t.created_at AS t_created_at,
       t.archived_at AS t_archived_at, t.rpm AS t_rpm, t.rpm_period_s AS t_rpm_period_s, t.tpm AS t_tpm,
       t.tpm_period_s AS t_tpm_period_s, t.max_concurrent AS t_max_concurrent,
       t.monthly_budget_micros AS t_monthly_budget_micros
FROM api_keys k LEFT JOIN teams t ON t.id = k.team_id
"""


class StoreError(Exception):
    """The store refused an admin action (unknown key or team, a name taken): phrased for a person."""

    status = 400

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def team_from(row: Mapping[str, Any], prefix: str = "") -> Team:
    return Team(
        id=row[prefix + "id"],
        name=row[prefix + "name"],
        display_name=row[prefix + "display_name"],
        limits=limits_from_row(row, prefix),
        created_at=row[prefix + "created_at"],
        archived_at=row[prefix + "archived_at"],
    )


def key_from(row: Mapping[str, Any]) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        owner=row["owner"],
        role=row["role"],
        gateway=bool(row["gateway"]),
        limits=limits_from_row(row),
        team=team_from(row, "t_") if row["t_id"] is not None else None,
        created_at=row["created_at"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        revoke_reason=row["revoke_reason"],
        last_used_at=row["last_used_at"],
    )


def rate_refusal(kind: str, scope: Scope, rate: Rate, retry_after: float) -> Refused:
    what = ("request" if kind == "rpm" else "token") + ("" if rate.amount == 1 else "s")
    wait = max(1, int(retry_after + 0.999))
    return Refused(kind, scope, retry_after=float(wait), message=f"{scope.label}: {rate.amount} {what} per "
                   f"{period_name(rate.period_s)}; retry in {wait} s")


def period_name(seconds: int) -> str:
    return {1: "second", 60: "minute", 3600: "hour", 86400: "day"}.get(seconds, f"{seconds} s")


def limit_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for the limit fields present in `changes` (None clears one)."""
    columns: dict[str, Any] = {}
    for kind in ("rpm", "tpm"):
        if kind in changes:
            rate: Rate | None = changes[kind]
            columns[kind] = rate.amount if rate else None
            columns[kind + "_period_s"] = rate.period_s if rate else None
    for name in ("max_concurrent", "monthly_budget_micros"):
        if name in changes:
            columns[name] = changes[name]
    return columns
