"""Teams and keys, the admin side of both SQL ledgers (SQLite, PostgreSQL), written once.

An admin change is the same on both: check the target, write the row, bump the epoch, append the audit
line, in one transaction. What differs is each store's own: how a transaction starts (SQLite queues
writers on a machine-wide lock first; PostgreSQL takes a pooled connection behind a breaker), the
parameter marker, how the epoch column is incremented, and who must hear of a change once it is
committed (nobody on SQLite, where each admission reads the epoch; Redis on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from claude_proxy.config.teams import Limits
from claude_proxy.teams import keys as keyfmt
from claude_proxy.teams.records import Actor, KeyRecord, Team, limits_to_columns
from claude_proxy.teams.rows import KEY_SELECT, Dialect, StoreError, key_from, limit_changes, team_from


class Catalog:
    """Mixed into a store; the store supplies the five members below. Statements are written with `?` and
    given the store's parameter marker."""

    dialect: Dialect
    clock: Callable[[], float]

    def _reading(self) -> AbstractContextManager[Any]:
        """A connection for reads."""
        raise NotImplementedError

    def _writing(self) -> AbstractContextManager[Any]:
        """One write transaction, committed when the block ends without an error."""
        raise NotImplementedError

    def _changed(self, conn: Any) -> int:
        """Bump the epoch (every worker's key snapshot is stale from now on); the new epoch."""
        raise NotImplementedError

    def _published(self, epoch: int) -> None:
        """After an admin change committed, with its epoch."""

    def _sql(self, text: str) -> str:
        return text if self.dialect.param == "?" else text.replace("?", self.dialect.param)

    def _audit(self, conn: Any, actor: Actor, action: str, target_type: str, target_id: str, details: Any) -> None:
        conn.execute(
            self._sql("INSERT INTO audit_events (ts, actor, actor_key_id, action, target_type, target_id, details,"
                      " remote_addr, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (self.clock(), actor.who, actor.key_id, action, target_type, target_id,
             json.dumps(details, sort_keys=True, default=str), actor.remote_addr, actor.request_id),
        )

    def meta(self, name: str, make: Callable[[], str]) -> str:
        """A shared setting (e.g. the page's cookie secret), created once for every worker and instance."""
        select = self._sql("SELECT value FROM meta WHERE name = ?")
        with self._writing() as conn:
            row = conn.execute(select, (name,)).fetchone()
            if row is None:  # another instance may have created it meanwhile: then its value stands
                conn.execute(self._sql("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"),
                             (name, make()))
                row = conn.execute(select, (name,)).fetchone()
            return str(row["value"])

    # -- teams -----------------------------------------------------------------------------------------------------

    def _team(self, conn: Any, name: str) -> Team:
        row = conn.execute(self._sql("SELECT * FROM teams WHERE name = ?"), (name,)).fetchone()
        if row is None:
            raise StoreError(f"no team named {name!r}", 404)
        return team_from(row)

    def create_team(self, name: str, limits: Limits, actor: Actor, display_name: str | None = None) -> Team:
        now = self.clock()
        cols = limits_to_columns(limits)
        with self._writing() as conn:
            if conn.execute(self._sql("SELECT 1 FROM teams WHERE name = ?"), (name,)).fetchone():
                raise StoreError(f"team {name!r} already exists", 409)
            conn.execute(
                self._sql(f"INSERT INTO teams (name, display_name, {', '.join(cols)}, created_at, updated_at)"
                          f" VALUES (?, ?, {', '.join('?' * len(cols))}, ?, ?)"),
                (name, display_name, *cols.values(), now, now),
            )
            epoch = self._changed(conn)
            self._audit(conn, actor, "team.create", "team", name, {"display_name": display_name, **cols})
            team = self._team(conn, name)
        self._published(epoch)
        return team

    def team(self, name: str) -> Team:
        with self._reading() as conn:
            return self._team(conn, name)

    def teams(self, include_archived: bool = False) -> list[Team]:
        where = "" if include_archived else " WHERE archived_at IS NULL"
        with self._reading() as conn:
            return [team_from(r) for r in conn.execute(f"SELECT * FROM teams{where} ORDER BY name").fetchall()]

    def update_team(self, name: str, changes: Mapping[str, Any], actor: Actor) -> Team:
        """`changes`: display_name, archived, and rpm/tpm (Rate or None), max_concurrent, monthly_budget_micros."""
        columns = limit_changes(changes)
        if "display_name" in changes:
            columns["display_name"] = changes["display_name"]
        if "archived" in changes:
            columns["archived_at"] = self.clock() if changes["archived"] else None
        with self._writing() as conn:
            self._team(conn, name)
            if columns:
                sets = ", ".join(f"{c} = ?" for c in columns)
                conn.execute(self._sql(f"UPDATE teams SET {sets}, updated_at = ? WHERE name = ?"),
                             (*columns.values(), self.clock(), name))
            epoch = self._changed(conn)
            action = "team.archive" if changes.get("archived") else "team.update"
            self._audit(conn, actor, action, "team", name, columns)
            team = self._team(conn, name)
        self._published(epoch)
        return team

    # -- keys ------------------------------------------------------------------------------------------------------

    def _key(self, conn: Any, key_id: str) -> KeyRecord:
        row = conn.execute(self._sql(KEY_SELECT + " WHERE k.id = ?"), (key_id,)).fetchone()
        if row is None:
            raise StoreError(f"no key with id {key_id!r}", 404)
        return key_from(row)

    def create_key(self, *, owner: str, actor: Actor, name: str = "", team: str | None = None, admin: bool = False,
                   gateway: bool = False, limits: Limits = Limits(), expires_at: float | None = None
                   ) -> tuple[KeyRecord, str]:
        """A new key: (its record, the full key). The key is returned here once and never stored."""
        now = self.clock()
        cols = limits_to_columns(limits)
        with self._writing() as conn:
            team_id = self._team(conn, team).id if team else None
            while True:
                key_id, key = keyfmt.new_key()
                if not conn.execute(self._sql("SELECT 1 FROM api_keys WHERE id = ?"), (key_id,)).fetchone():
                    break
            conn.execute(
                self._sql(f"INSERT INTO api_keys (id, secret_hash, name, owner, team_id, role, gateway,"
                          f" {', '.join(cols)}, created_at, created_by, expires_at)"
                          f" VALUES (?, ?, ?, ?, ?, ?, ?, {', '.join('?' * len(cols))}, ?, ?, ?)"),
                (key_id, keyfmt.hash_key(key), name or owner, owner, team_id, "admin" if admin else "user",
                 bool(gateway), *cols.values(), now, actor.who, expires_at),
            )
            epoch = self._changed(conn)
            self._audit(conn, actor, "key.create", "key", key_id,
                        {"owner": owner, "name": name or owner, "team": team, "admin": admin, "gateway": gateway,
                         "expires_at": expires_at, **cols})
            record = self._key(conn, key_id)
        self._published(epoch)
        return record, key

    def key(self, key_id: str) -> KeyRecord:
        with self._reading() as conn:
            return self._key(conn, key_id)

    def find_key(self, secret_hash: bytes) -> KeyRecord | None:
        with self._reading() as conn:
            row = conn.execute(self._sql(KEY_SELECT + " WHERE k.secret_hash = ?"), (secret_hash,)).fetchone()
            return key_from(row) if row else None

    def keys(self, *, team: str | None = None, owner: str | None = None, status: str = "active") -> list[KeyRecord]:
        clauses, args = [], []
        if team:
            clauses.append("t.name = ?")
            args.append(team)
        if owner:
            clauses.append("k.owner = ?")
            args.append(owner)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        with self._reading() as conn:
            rows = conn.execute(self._sql(KEY_SELECT + where + " ORDER BY k.created_at, k.id"), args).fetchall()
        now = self.clock()
        found = [key_from(r) for r in rows]
        return found if status == "all" else [k for k in found if k.status(now) == status]

    def update_key(self, key_id: str, changes: Mapping[str, Any], actor: Actor) -> KeyRecord:
        """`changes`: name, owner, team (name or None), admin, gateway, expires_at, and the limits."""
        columns = limit_changes(changes)
        for field in ("name", "owner", "expires_at"):
            if field in changes:
                columns[field] = changes[field]
        if "admin" in changes:
            columns["role"] = "admin" if changes["admin"] else "user"
        if "gateway" in changes:
            columns["gateway"] = bool(changes["gateway"])
        with self._writing() as conn:
            self._key(conn, key_id)
            if "team" in changes:
                columns["team_id"] = self._team(conn, changes["team"]).id if changes["team"] else None
            if columns:
                sets = ", ".join(f"{c} = ?" for c in columns)
                conn.execute(self._sql(f"UPDATE api_keys SET {sets} WHERE id = ?"), (*columns.values(), key_id))
            epoch = self._changed(conn)
            self._audit(conn, actor, "key.update", "key", key_id, {**columns, "team": changes.get("team")})
            record = self._key(conn, key_id)
        self._published(epoch)
        return record

    def revoke_key(self, key_id: str, actor: Actor, reason: str | None = None) -> KeyRecord:
        """Revoke (idempotent: a second revoke keeps the first time and reason, and is audited too)."""
        epoch = None
        with self._writing() as conn:
            if self._key(conn, key_id).revoked_at is None:
                conn.execute(self._sql("UPDATE api_keys SET revoked_at = ?, revoked_by = ?, revoke_reason = ?"
                                       " WHERE id = ?"), (self.clock(), actor.who, reason, key_id))
                epoch = self._changed(conn)
            self._audit(conn, actor, "key.revoke", "key", key_id, {"reason": reason})
            record = self._key(conn, key_id)
        if epoch is not None:
            self._published(epoch)
        return record
