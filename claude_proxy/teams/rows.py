"""What both SQL ledgers (SQLite, PostgreSQL) share and neither driver is needed for: the key and team
rows as records, the usage groupings, the reading queries (their two dialects as data), limit columns,
refusals worded once, and the admin error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from claude_proxy.config.teams import Rate
from claude_proxy.teams.records import KeyRecord, Refused, Scope, Team, iso, limits_from_row

GROUPS = {
    "day": "day",
    "key": "key_id",
    "owner": "owner",
    "team": "team",
    "model": "upstream_model",
    "client_model": "client_model",
    "provider": "provider",
}
# The usage totals every grouping returns, summed as integers.
SUMS = ("errors", "estimated", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "cost_micros", "unpriced")
# The fleet's count of admissions let through unchecked because the limits store failed (`on_store_error =
# "open"`), as rows of `meta`: each worker's keeper adds its own a few times a second.
FAIL_OPEN_TOTAL, FAIL_OPEN_LAST_AT = "fail_open_total", "fail_open_last_at"
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


@dataclass(frozen=True)
class Dialect:
    """Where the two stores' SQL differs: the parameter marker, and how a boolean sums (SQLite stores it as an
    integer already; PostgreSQL casts it)."""

    param: str
    as_int: str  # a format for an expression, "{}" or "({})::int"


SQLITE = Dialect("?", "{}")
POSTGRES = Dialect("%s", "({})::int")


def fail_open_status(meta: Mapping[str, Any]) -> dict[str, Any]:
    """`status()`'s fail-open figures from the two `meta` rows (absent: none ever)."""
    last = meta.get(FAIL_OPEN_LAST_AT)
    return {"fail_open_total": int(meta.get(FAIL_OPEN_TOTAL) or 0),
            "fail_open_last_at": iso(float(last)) if last else None}


def _where(clauses: Sequence[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def usage_query(d: Dialect, group_by: Sequence[str], since: float | None, until: float | None,
                filters: Mapping[str, str | None] | None, limit: int) -> tuple[str, list[Any]]:
    """Totals of usage_events grouped by any of GROUPS (StoreError for an unknown grouping or filter)."""
    unknown = [g for g in group_by if g not in GROUPS]
    if unknown:
        raise StoreError(f"cannot group usage by {', '.join(unknown)} (choose from {', '.join(GROUPS)})")
    clauses, args = [], []
    for sql, value in ((f"ts >= {d.param}", since), (f"ts < {d.param}", until)):
        if value is not None:
            clauses.append(sql)
            args.append(value)
    for name, value in (filters or {}).items():
        if value is None:
            continue
        if name not in GROUPS:
            raise StoreError(f"cannot filter usage by {name!r} (choose from {', '.join(GROUPS)})")
        clauses.append(f"{GROUPS[name]} = {d.param}")
        args.append(value)
    groups = ", ".join(GROUPS[g] for g in group_by)
    totals = ["count(*) AS requests", f"sum({d.as_int.format('status >= 400')}) AS errors",
              f"sum({d.as_int.format('estimated')}) AS estimated", "sum(input_tokens) AS input_tokens",
              "sum(output_tokens) AS output_tokens", "sum(cache_read_tokens) AS cache_read_tokens",
              "sum(cache_write_tokens) AS cache_write_tokens", "sum(cost_micros) AS cost_micros",
              f"sum(1 - {d.as_int.format('priced')}) AS unpriced"]
    sql = ("SELECT " + ", ".join([*(f"{GROUPS[g]} AS {g}" for g in group_by), *totals]) + " FROM usage_events"
           + _where(clauses) + (" GROUP BY " + groups if group_by else "")
           + " ORDER BY " + (groups or "1") + f" LIMIT {int(limit)}")
    return sql, args


def usage_totals(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of `usage_query` with every total an int (a sum over nothing is NULL; PostgreSQL's are Decimal)."""
    out = []
    for r in rows:
        row = dict(r)
        row["requests"] = int(row["requests"])
        for k in SUMS:
            row[k] = int(row[k] or 0)
        out.append(row)
    return out


def recent_query(d: Dialect, key_id: str | None, failed: bool, limit: int) -> tuple[str, list[Any]]:
    """The latest usage events, newest first (one key's, failures only)."""
    clauses, args = [], []
    if key_id:
        clauses.append(f"key_id = {d.param}")
        args.append(key_id)
    if failed:
        clauses.append("status >= 400")
    return "SELECT * FROM usage_events" + _where(clauses) + f" ORDER BY ts DESC LIMIT {int(limit)}", args


def audit_query(d: Dialect, since: float | None, actor: str | None, action: str | None,
                limit: int) -> tuple[str, list[Any]]:
    """Audit events, newest first, filtered by any of time, actor and action."""
    clauses, args = [], []
    for sql, value in ((f"ts >= {d.param}", since), (f"actor = {d.param}", actor), (f"action = {d.param}", action)):
        if value is not None:
            clauses.append(sql)
            args.append(value)
    return "SELECT * FROM audit_events" + _where(clauses) + f" ORDER BY id DESC LIMIT {int(limit)}", args


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
