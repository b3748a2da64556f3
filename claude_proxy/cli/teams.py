"""`claude-proxy teams create|list|show|update|archive`: teams and their limits, straight on the store."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from claude_proxy.cli.teams_common import actor, common, emit, limit_changes, limit_flags, run_on_store
from claude_proxy.config.teams import Limits
from claude_proxy.teams.base import Store
from claude_proxy.teams.limits import month_of


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claude-proxy teams", description="Teams: shared limits and budgets.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="create a team")
    create.add_argument("name")
    create.add_argument("--display-name")
    limit_flags(create)
    lst = verbs.add_parser("list", help="list teams")
    lst.add_argument("--all", action="store_true", help="archived teams too")
    show = verbs.add_parser("show", help="a team: limits, keys, month spend")
    show.add_argument("name")
    update = verbs.add_parser("update", help="change a team's limits or display name")
    update.add_argument("name")
    update.add_argument("--display-name")
    limit_flags(update)
    archive = verbs.add_parser("archive", help="archive a team (its keys keep their history)")
    archive.add_argument("name")
    for sub in (create, lst, show, update, archive):
        common(sub)
    return parser


def _create(args: argparse.Namespace, store: Store) -> int:
    c = limit_changes(args)
    limits = Limits(c.get("rpm"), c.get("tpm"), c.get("max_concurrent"), c.get("monthly_budget_micros"))
    emit(store.create_team(args.name, limits, actor(), args.display_name).public(), args.json)
    return 0


def _list(args: argparse.Namespace, store: Store) -> int:
    rows = [t.public() for t in store.teams(include_archived=args.all)]
    emit(rows, args.json, rows, ("id", "name", "display_name", "limits", "archived_at"))
    return 0


def _show(args: argparse.Namespace, store: Store) -> int:
    team = store.team(args.name)
    out = team.public()
    out["month"] = month_of(store.clock())
    out["month_spend_usd"] = store.month_spend(f"t:{team.id}") / 1e6
    out["in_flight"] = store.in_flight(f"t:{team.id}")
    out["keys"] = [k.id for k in store.keys(team=team.name)]
    emit(out, args.json)
    return 0


def _update(args: argparse.Namespace, store: Store) -> int:
    changes: dict[str, object] = dict(limit_changes(args))
    if args.display_name is not None:
        changes["display_name"] = args.display_name
    emit(store.update_team(args.name, changes, actor()).public(), args.json)
    return 0


def _archive(args: argparse.Namespace, store: Store) -> int:
    emit(store.update_team(args.name, {"archived": True}, actor()).public(), args.json)
    return 0


VERBS = {"create": _create, "list": _list, "show": _show, "update": _update, "archive": _archive}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_on_store(VERBS[args.verb], args)
