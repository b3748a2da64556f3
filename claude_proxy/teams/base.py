"""The storage interface both backends implement: `SqliteStore` (one file, one machine) and
`DistributedStore` (PostgreSQL ledger + Redis limiter, any number of machines).

The gate, the admin API, the usage page and the CLI see only this contract, so each rule exists once;
tests/teams/test_contract.py runs the same tests against both. A backend raises `StoreDown` when it
cannot answer (SQLite's own errors are turned into it): callers treat it as "the store is unavailable".
No driver is imported here, so each worker loads only its own backend's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from claude_proxy.config.loader import ConfigError
from claude_proxy.config.teams import Limits
from claude_proxy.teams.records import Actor, Admitted, KeyRecord, Principal, Refused, Stale, Team, Usage


class StoreDown(Exception):
    """A store could not be reached or did not answer in time (the message never holds a DSN)."""

    def __init__(self, store: str, message: str) -> None:
        super().__init__(f"{store}: {message}")
        self.store = store


class SchemaBehind(ConfigError):
    """The database's schema is not the one this claude-proxy needs: one line, then the worker stops."""


STORE_ERRORS: tuple[type[Exception], ...] = (StoreDown,)


class Store(Protocol):
    """Everything the gate, the admin API, the page and the CLI ask of a teams store."""

    name: str
    clock: Callable[[], float]

    def migrate(self) -> Any: ...
    def close(self) -> None: ...  # let go of connections (before the fork too); the store opens them again on use
    def stop(self) -> None: ...  # the end of this process's use: background work finished, then close
    def maintain(self) -> None: ...  # upkeep off the request path (each worker's keeper, a few times a second)
    def epoch(self) -> int: ...
    def epoch_hint(self) -> int | None: ...  # an epoch known without a round trip, when there is news; else None
    def meta(self, name: str, make: Callable[[], str]) -> str: ...

    def create_team(self, name: str, limits: Limits, actor: Actor, display_name: str | None = None) -> Team: ...
    def team(self, name: str) -> Team: ...
    def teams(self, include_archived: bool = False) -> list[Team]: ...
    def update_team(self, name: str, changes: Mapping[str, Any], actor: Actor) -> Team: ...

    def create_key(self, *, owner: str, actor: Actor, name: str = "", team: str | None = None, admin: bool = False,
                   gateway: bool = False, limits: Limits = ..., expires_at: float | None = None
                   ) -> tuple[KeyRecord, str]: ...
    def key(self, key_id: str) -> KeyRecord: ...
    def find_key(self, secret_hash: bytes) -> KeyRecord | None: ...
    def keys(self, *, team: str | None = None, owner: str | None = None, status: str = "active") -> list[KeyRecord]: ...
    def update_key(self, key_id: str, changes: Mapping[str, Any], actor: Actor) -> KeyRecord: ...
    def revoke_key(self, key_id: str, actor: Actor, reason: str | None = None) -> KeyRecord: ...

    def admit(self, principal: Principal, rid: str, reserve_tokens: int, reserve_micros: int = 0,
              expected_epoch: int | None = None) -> Admitted | Refused | Stale: ...
    def renew(self, rids: Sequence[str]) -> int: ...
    def settle(self, admitted: Admitted, usage: Usage) -> bool: ...

    def month_spend(self, scope: str, month: str | None = None) -> int: ...
    def in_flight(self, scope: str | None = None) -> int: ...
    def usage(self, *, group_by: Sequence[str] = ..., since: float | None = None, until: float | None = None,
              filters: Mapping[str, str | None] | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...
    def recent(self, *, key_id: str | None = None, failed: bool = False, limit: int = 20) -> list[dict[str, Any]]: ...
    def audit(self, *, since: float | None = None, actor: str | None = None, action: str | None = None,
              limit: int = 100, until: float | None = None, after: int | None = None) -> list[dict[str, Any]]: ...
    def status(self) -> dict[str, Any]: ...
    def note_fail_open(self, count: int, last_at: float) -> None: ...  # add to the fleet's fail-open count
