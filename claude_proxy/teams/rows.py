"""What both SQL ledgers (SQLite, PostgreSQL) share and neither driver is needed for: the key and team
rows as records, the usage groupings, the reading queries (their two dialects as data), limit columns,
refusals worded once, and the admin error."""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

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
# The first UTC day whose usage events are all kept (`event_retention_days`); absent until a prune removed any.
USAGE_KEPT_FROM = "usage_kept_from"
PRUNE_EVERY = 3600.0  # seconds between each worker's checks for usage events past the retention
# A prune runs on the worker's keeper thread, which also renews leases: it stops after PRUNE_BUDGET seconds
# and goes on PRUNE_AGAIN seconds later (a first prune of a year's ledger takes minutes, in slices).
PRUNE_BUDGET, PRUNE_AGAIN = 0.5, 1.0


class Pruned(NamedTuple):
    events: int  # usage events folded into daily totals and deleted
    done: bool  # False: the time budget ran out with older events left


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


@dataclass(frozen=True)
class Retained:
    """Where a ledger's usage is once old events were pruned (`event_retention_days`): events from the day
    `kept_from` on, whole-day totals in `usage_daily` before it. `daily_complete`: PostgreSQL's daily
    table holds every day (written with each upload), so only its days before `kept_from` are read; SQLite's
    holds just the days rolled up when pruned, all of them read (no day is in both tables)."""

    kept_from: str  # YYYY-MM-DD (UTC)
    daily_complete: bool


# usage_daily's expression for each grouping: the team by its current name; the client's model is not kept.
DAILY_GROUPS = {**{g: f"d.{c}" for g, c in GROUPS.items()}, "team": "t.name", "client_model": "NULL"}
# What one usage event adds to each total (usage_daily holds the same totals per day, under these names).
_EVENT_TOTALS = {"requests": "1", "errors": "{status}", "estimated": "{estimated}", "input_tokens": "input_tokens",
                 "output_tokens": "output_tokens", "cache_read_tokens": "cache_read_tokens",
                 "cache_write_tokens": "cache_write_tokens", "cost_micros": "cost_micros", "unpriced": "1 - {priced}"}


def day_start(day: str) -> float:
    """The first second (UTC epoch) of a YYYY-MM-DD day (ValueError for anything else). Not `strptime`:
    the keeper calls this in every worker, and `_strptime` with its locale tables is ~0.1 MB more each."""
    if len(day) != 10 or day[4] != "-" or day[7] != "-":
        raise ValueError(f"not a YYYY-MM-DD day: {day!r}")
    return float(calendar.timegm(date.fromisoformat(day).timetuple()))


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def _filters(d: Dialect, filters: Mapping[str, str | None] | None, columns: Mapping[str, str]
             ) -> tuple[list[str], list[Any]]:
    clauses, args = [], []
    for name, value in (filters or {}).items():
        if value is None:
            continue
        if name not in GROUPS:
            raise StoreError(f"cannot filter usage by {name!r} (choose from {', '.join(GROUPS)})")
        clauses.append(f"{columns[name]} = {d.param}")
        args.append(value)
    return clauses, args


def usage_query(d: Dialect, group_by: Sequence[str], since: float | None, until: float | None,
                filters: Mapping[str, str | None] | None, limit: int,
                retained: Retained | None = None) -> tuple[str, list[Any]]:
    """Totals of usage grouped by any of GROUPS (StoreError for an unknown grouping or filter): from
    usage_events, plus usage_daily's whole days once events were pruned (`retained`). A pruned day counts
    whole when [since, until) overlaps it, and has no client model."""
    unknown = [g for g in group_by if g not in GROUPS]
    if unknown:
        raise StoreError(f"cannot group usage by {', '.join(unknown)} (choose from {', '.join(GROUPS)})")
    groups = ", ".join(GROUPS[g] for g in group_by)
    clauses, args = _filters(d, filters, GROUPS)
    first = since
    if retained is not None and retained.daily_complete:
        first = max(since or 0.0, day_start(retained.kept_from))
    for sql, value in ((f"ts >= {d.param}", first), (f"ts < {d.param}", until)):
        if value is not None:
            clauses.append(sql)
            args.append(value)
    totals = {name: expr.format(status=d.as_int.format("status >= 400"), estimated=d.as_int.format("estimated"),
                                priced=d.as_int.format("priced")) for name, expr in _EVENT_TOTALS.items()}
    if retained is None:  # every usage row is an event
        sql = ("SELECT " + ", ".join([*(f"{GROUPS[g]} AS {g}" for g in group_by),
                                      *(f"sum({expr}) AS {name}" for name, expr in totals.items())])
               + " FROM usage_events" + _where(clauses)
               + (" GROUP BY " + groups if group_by else "") + " ORDER BY " + (groups or "1") + f" LIMIT {int(limit)}")
        return sql, args
    events = ("SELECT " + ", ".join([*(f"{GROUPS[g]} AS {g}" for g in group_by),
                                     *(f"{expr} AS {name}" for name, expr in totals.items())])
              + " FROM usage_events" + _where(clauses))
    daily_clauses, daily_args = _filters(d, filters, DAILY_GROUPS)
    bounds = [(f"d.day >= {d.param}", day_of(since) if since is not None else None),
              (f"d.day <= {d.param}", day_of(until - 0.001) if until is not None else None),
              (f"d.day < {d.param}", retained.kept_from if retained.daily_complete else None)]
    for sql, value in bounds:
        if value is not None:
            daily_clauses.append(sql)
            daily_args.append(value)
    daily = ("SELECT " + ", ".join([*(f"{DAILY_GROUPS[g]} AS {g}" for g in group_by), *(f"d.{n}" for n in totals)])
             + " FROM usage_daily d LEFT JOIN teams t ON t.id = d.team_id" + _where(daily_clauses))
    outer = ", ".join(group_by)
    sql = ("SELECT " + ", ".join([*group_by, *(f"sum({n}) AS {n}" for n in totals)])
           + f" FROM ({events} UNION ALL {daily}) u"
           + (" GROUP BY " + outer if group_by else "") + " ORDER BY " + (outer or "1") + f" LIMIT {int(limit)}")
    return sql, [*args, *daily_args]


def usage_totals(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of `usage_query` with every total an int (a sum over nothing is NULL; PostgreSQL's are Decimal)."""
    out = []
    for r in rows:
        row = dict(r)
        row["requests"] = int(row["requests"] or 0)
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
                limit: int, until: float | None = None, after: int | None = None) -> tuple[str, list[Any]]:
    """Audit events, newest first, filtered by any of time, actor and action; `after` (an event id) pages on
    to the older ones."""
    clauses, args = [], []
    for sql, value in ((f"ts >= {d.param}", since), (f"ts < {d.param}", until), (f"actor = {d.param}", actor),
                       (f"action = {d.param}", action), (f"id < {d.param}", after)):
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
