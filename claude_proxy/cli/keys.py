"""`claude-proxy keys create|list|show|update|revoke`: stored proxy keys, straight on the store.

Acting on the store (not through the proxy) means the first admin key comes from here and every verb
works while the proxy is down. The full key is printed once, by `create`; only its SHA-256 is stored.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from claude_proxy.cli.teams_common import (
    actor,
    common,
    emit,
    limit_changes,
    limit_flags,
    run_on_store,
    when,
)
from claude_proxy.config.teams import Limits
from claude_proxy.teams.base import Store
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.records import KeyRecord


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-proxy keys", description="Stored proxy keys (cpk_…).")
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="create a key and print it once")
    create.add_argument("--owner", required=True, help="who the key belongs to (usage is reported per owner)")
    create.add_argument("--name", default="", help='what the key is for, e.g. "alice laptop"')
    create.add_argument("--team", help="the team it belongs to")
    create.add_argument("--admin", action="store_true", help="may use /admin/v1 and the admin page")
    create.add_argument(
        "--gateway", action="store_true", help="a trusted gateway: x-claude-gateway-user-id/-email attribute usage"
    )
    create.add_argument("--expires", metavar="WHEN", help="90d, 12h or a date YYYY-MM-DD (UTC)")
    limit_flags(create)
    lst = verbs.add_parser("list", help="list keys (never their secrets)")
    lst.add_argument("--team")
    lst.add_argument("--owner")
    state = lst.add_mutually_exclusive_group()
    state.add_argument("--revoked", action="store_true", help="revoked keys only")
    state.add_argument("--all", action="store_true", help="active, expired and revoked")
    show = verbs.add_parser("show", help="one key: limits, month spend, in-flight requests")
    show.add_argument("key_id")
    update = verbs.add_parser("update", help="change a key's name, owner, team, role or limits")
    update.add_argument("key_id")
    update.add_argument("--name")
    update.add_argument("--owner")
    update.add_argument("--team", help='a team name, or "none"')
    update.add_argument("--admin", choices=("yes", "no"))
    update.add_argument("--gateway", choices=("yes", "no"))
    update.add_argument("--expires", metavar="WHEN", help='90d, a date YYYY-MM-DD, or "never"')
    limit_flags(update)
    revoke = verbs.add_parser("revoke", help="revoke a key: it stops working on the next request everywhere")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason")
    for sub in (create, lst, show, update, revoke):
        common(sub)
    return parser


def _detail(store: Store, record: KeyRecord) -> dict[str, object]:
    out = record.public()
    scope = f"k:{record.id}"
    out["month"] = month_of(store.clock())
    out["month_spend_usd"] = store.month_spend(scope) / 1e6
    out["in_flight"] = store.in_flight(scope)
    return out


def _create(args: argparse.Namespace, store: Store) -> int:
    changes = limit_changes(args)
    limits = Limits(
        rpm=changes.get("rpm"),
        tpm=changes.get("tpm"),
        max_concurrent=changes.get("max_concurrent"),
        monthly_budget_micros=changes.get("monthly_budget_micros"),
    )
    record, key = store.create_key(
        owner=args.owner,
        name=args.name,
        team=args.team,
        admin=args.admin,
        gateway=args.gateway,
        limits=limits,
        expires_at=when(args.expires) if args.expires else None,
        actor=actor(),
    )
    if args.json:
        emit({"key": key, **record.public()}, True)
    else:
        print(key)
        print(f"(shown once; store it now) id {record.id}, owner {record.owner}, team {record.team.name if record.team else '-'}"
              f", role {record.role}{', gateway' if record.gateway else ''}")
    return 0


def _list(args: argparse.Namespace, store: Store) -> int:
    status = "all" if args.all else "revoked" if args.revoked else "active"
    records = [k.public() for k in store.keys(team=args.team, owner=args.owner, status=status)]
    emit(records, args.json, records, ("id", "name", "owner", "team", "role", "status", "limits", "last_used_at"))
    return 0


def _show(args: argparse.Namespace, store: Store) -> int:
    emit(_detail(store, store.key(args.key_id)), args.json)
    return 0


def _update(args: argparse.Namespace, store: Store) -> int:
    changes: dict[str, object] = dict(limit_changes(args))
    for name in ("name", "owner"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.team is not None:
        changes["team"] = None if args.team == "none" else args.team
    for name in ("admin", "gateway"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name) == "yes"
    if args.expires is not None:
        changes["expires_at"] = None if args.expires == "never" else when(args.expires)
    emit(store.update_key(args.key_id, changes, actor()).public(), args.json)
    return 0


def _revoke(args: argparse.Namespace, store: Store) -> int:
    emit(store.revoke_key(args.key_id, actor(), args.reason).public(), args.json)
    return 0


VERBS = {"create": _create, "list": _list, "show": _show, "update": _update, "revoke": _revoke}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_on_store(VERBS[args.verb], args)
