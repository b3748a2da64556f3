"""Teams at the web edge: the auth hook beside the static keys, admission, settlement after the last
byte, the admin API (/admin/v1/…, admin keys only) and GET /v1/me.

`TeamsEdge.begin` is the one call `web/app.py` makes per request. It accepts stored keys and the static
`[server] auth_keys`, admits `POST /v1/messages` against every limit in one store transaction, keeps
the principal and the admission on `flask.g`, and settles from `Response.call_on_close` — after the
last byte of a stream and after a JSON body is sent — so the store round trip adds no client latency.
"""

from __future__ import annotations

import calendar
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from flask import Blueprint, Response, after_this_request, g, request

from claude_proxy.config.loader import Config
from claude_proxy.config.teams import RateError, limits_from, parse_rate, usd_to_micros
from claude_proxy.errors import InvalidRequest, NotFound, ProxyError
from claude_proxy.pipeline import metrics as proxy_metrics
from claude_proxy.pipeline import prometheus
from claude_proxy.pipeline.outcome import Outcome, Recorder
from claude_proxy.pipeline.reply import JSON
from claude_proxy.pipeline.route import TargetPolicy
from claude_proxy.teams.base import STORE_ERRORS
from claude_proxy.teams.gate import AuthFailure, Gate, StoreUnavailable
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.records import Actor, Admitted, Principal, Refused, Usage, iso, limits_dict
from claude_proxy.teams.rows import StoreError
from claude_proxy.web.envelope import JOURNALLED_ENDPOINTS, NO_RETRY, error_response

log = logging.getLogger("claude_proxy")

ADMITTED_ENDPOINTS = {"messages"}  # count_tokens and models authenticate but consume no limits
ADMIN_PREFIX = "admin_"
UI_PREFIX = "ui_"
CostFunction = Callable[[Usage], int | None]


class PermissionDenied(ProxyError):
    status, error_type = 403, "permission_error"


# The teams counters, once per process and registry: every app made in the process (an embedding service
# may make several) records into the same ones instead of registering them twice.
_COUNTERS: list[tuple[Any, dict[str, Any]]] = []  # (registry, its counters)
_COUNTERS_LOCK = threading.Lock()


def _teams_counters() -> dict[str, Any]:
    registry = proxy_metrics.metrics().registry
    with _COUNTERS_LOCK:
        for known, made in _COUNTERS:
            if known is registry:
                return made
        made = _make_counters(registry)
        _COUNTERS.append((registry, made))
        return made


def _make_counters(registry: prometheus.Registry) -> dict[str, Any]:
    ns = proxy_metrics.NAMESPACE + "_"
    counter = registry.counter
    return {
        "refusal": counter(ns + "limit_refusals", "Requests refused by a limit or budget", ("limit", "scope")),
        "auth": counter(ns + "auth", "Authentication results", ("result",)),
        "store": counter(ns + "store_operations", "Teams store operations", ("store", "op", "result")),
        "fail_open": counter(ns + "store_fail_open", "Requests admitted unchecked: the store failed", ("store",)),
        "spool_uploaded": counter(ns + "usage_spool_uploaded", "Usage records uploaded from the local spool"),
        "spool_dropped": counter(ns + "usage_spool_dropped", "Usage records dropped: the spool was full"),
        "cost": counter(ns + "team_cost_usd", "What answers cost in USD (from [prices]) by the key's team "
                        "(\"\" for a key in none), provider and upstream model",
                        ("team", "provider", "upstream_model")),
        # [teams] metrics_per_key only: one series per key (cardinality), the ledger has the rest.
        "key_cost": counter(ns + "key_cost_usd", "What answers cost in USD (from [prices]) by key, its team, "
                            "provider and upstream model", ("key_id", "team", "provider", "upstream_model")),
        "key_tokens": counter(ns + "key_tokens", "Tokens by key, its team and kind (input, output, cache_read, "
                              "cache_write)", ("key_id", "team", "kind")),
    }


class TeamsMetrics:
    """Refusals, auth results, store operations, fail-opens and cost by team in the proxy's own registry
    (created on first use)."""

    def __init__(self, store: str = "sqlite", per_key: bool = False) -> None:
        self.store = store
        self.per_key = per_key  # [teams] metrics_per_key
        self._made: dict[str, Any] | None = None
        # Each label set's child, looked up once: `labels()` sorts and locks on every call (a few µs,
        # four times a request); the children themselves live as long as their metric.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _metrics(self) -> dict[str, Any]:
        if self._made is None:  # the shared lookup (a lock) once, not on every event of every request
            self._made = _teams_counters()
        return self._made

    def _child(self, made: dict[str, Any], name: str, *values: str) -> Any:
        child = self._children.get((name, *values))
        if child is None:
            child = self._children[(name, *values)] = made[name].labels(*values)
        return child

    def cost(self, usage: Usage, team: str | None, key_id: str = "") -> None:
        """A settled answer's cost under its team (teams are few and named by admins: a bounded label); with
        `metrics_per_key`, its cost and tokens under its key too."""
        try:
            made = self._metrics()
            cost = (usage.cost_micro_usd or 0) / 1_000_000
            if cost:
                self._child(made, "cost", team or "", usage.provider or "", usage.upstream_model or "").inc(cost)
            if not self.per_key or not key_id:
                return
            if cost:
                made["key_cost"].labels(key_id, team or "", usage.provider or "", usage.upstream_model or "").inc(cost)
            for kind in ("input", "output", "cache_read", "cache_write"):
                tokens = getattr(usage, f"{kind}_tokens")
                if tokens > 0:
                    made["key_tokens"].labels(key_id, team or "", kind).inc(tokens)
        except Exception:  # pragma: no cover - metrics never break serving
            log.exception("claude-proxy: recording teams metrics failed")

    def __call__(self, name: str, labels: Mapping[str, str]) -> None:
        try:
            metric = self._metrics()[name]
            if name == "spool_uploaded":
                metric.inc(int(labels.get("n", "0")))
                return
            if name == "spool_dropped":
                metric.inc()
                return
            key = (name, *labels.items())
            child = self._children.get(key)
            if child is None:
                if name in ("store", "fail_open"):
                    labels = {"store": self.store, **labels}
                child = self._children[key] = metric.labels(**labels)
            child.inc()
        except Exception:  # pragma: no cover - metrics never break serving
            log.exception("claude-proxy: recording teams metrics failed")


class TeamsEdge:
    def __init__(self, config: Config, gate: Gate | None = None, recorder: Recorder | None = None) -> None:
        assert config.teams is not None
        self.config = config
        self.recorder = recorder  # the proxy's journal and request metrics, for refusals
        self.metrics = TeamsMetrics(config.teams.store, per_key=config.teams.metrics_per_key)
        self.gate = gate or Gate(config.teams, config.auth_keys, events=self.metrics)
        self.gate.prepare()
        # A finished request's usage → its cost in micro-USD from [prices] (None = unpriced).
        self.cost_of: CostFunction = self._cost

    def target_policy(self, principal: Principal | None) -> TargetPolicy | None:
        """For a key with a monthly budget (its own, its team's or [teams.defaults]'), only targets with a price:
        an unpriced answer's cost could never be charged, so the budget would not hold. None = any target."""
        teams = self.config.teams
        if principal is None or teams is None or teams.unpriced == "allow":
            return None
        budgeted = [s for s in principal.scopes if s.limits.monthly_budget_micros is not None]
        if not budgeted:
            return None
        prices = self.config.prices

        def refusal(targets: Sequence[tuple[str, str]]) -> str:
            named = ", ".join(f"{model} on {provider}" for provider, model in targets)
            return (f"{named} has no price in this proxy's [prices], and {budgeted[0].label} has a monthly budget: "
                    "a budgeted key can only use priced models")

        def refused() -> None:
            self.metrics("refusal", {"limit": "unpriced", "scope": budgeted[0].kind})

        return TargetPolicy(lambda provider, model: prices.find(provider, model) is not None, refusal, refused)

    def _cost(self, usage: Usage) -> int | None:
        prices = self.config.prices
        if not prices:
            return None
        return prices.cost(
            usage.provider,
            usage.upstream_model,
            {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cache_read_input_tokens": usage.cache_read_tokens,
                "cache_creation_input_tokens": usage.cache_write_tokens,
            },
        )

    # -- the per-request hook ----------------------------------------------------------------------------------------

    def begin(self, open_endpoints: set[str]) -> Response | None:
        """Authenticate (stored or static key), check admin routes, admit messages. None = go on."""
        endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
        if not endpoint or endpoint in open_endpoints or endpoint.startswith(UI_PREFIX):
            return None
        bearer = request.headers.get("authorization", "")
        presented = (
            request.headers.get("x-api-key") or "",
            bearer[7:].strip() if bearer.lower().startswith("bearer ") else "",
        )
        admitting = endpoint in ADMITTED_ENDPOINTS and request.method == "POST"
        found = self.gate.authenticate(presented, request.headers, admitting=admitting)
        if isinstance(found, AuthFailure):
            if found.reason == "unavailable":
                return self._refuse(endpoint, 503, "overloaded_error", found.message)
            return self._refuse(endpoint, 401, "authentication_error", found.message, NO_RETRY)
        g.principal = found
        g.log_fields = {"key_id": found.key_id, "team": found.team_name}
        if endpoint.startswith(ADMIN_PREFIX) and not found.admin:
            return error_response(403, "permission_error", "this route needs an admin key")
        if admitting:
            return self._admit(endpoint, found)
        return None

    def _refuse(
        self, endpoint: str, status: int, error_type: str, message: str,
        headers: Mapping[str, str] | None = None, details: Mapping[str, Any] | None = None,
    ) -> Response:
        """A request turned away at the door; on a journalled route it gets its journal line (status,
        error_type, key id and team) and its request metrics, like a request the pipeline answered."""
        if self.recorder is not None and endpoint in JOURNALLED_ENDPOINTS:
            outcome = Outcome(g.get("request_id", ""), endpoint, extra=dict(g.get("log_fields") or {}))
            self.recorder.fail(outcome, ProxyError(message, status=status, error_type=error_type))
        return error_response(status, error_type, message, headers, details)

    def _admit(self, endpoint: str, principal: Principal) -> Response | None:
        reserve = (request.content_length or 0) // 4  # the design's O(1) estimate: ~4 bytes per token
        decision = self.gate.admit(principal, reserve)
        if isinstance(decision, Refused):
            return self._refusal(endpoint, decision)
        g.admitted = decision
        g.principal = decision.principal  # resolved again if an admin change came in between

        @after_this_request
        def _settle_after(response: Response) -> Response:
            outcome: Outcome | None = g.get("outcome")
            status = response.status_code
            response.call_on_close(lambda: self._close(decision, outcome, status))
            return response

        return None

    def _refusal(self, endpoint: str, refused: Refused) -> Response:
        if refused.limit == "revoked":
            return self._refuse(endpoint, 401, "authentication_error", refused.message, NO_RETRY)
        if refused.limit == "budget":
            return self._refuse(endpoint, 429, "rate_limit_error", refused.message, NO_RETRY,
                                {"error_code": "budget_exhausted"})
        retry = str(max(1, int(refused.retry_after + 0.999)))
        return self._refuse(endpoint, 429, "rate_limit_error", refused.message, {"retry-after": retry})

    def _close(self, admitted: Admitted, outcome: Outcome | None, status: int) -> None:
        try:
            self.settle(admitted, usage_of(outcome, status, admitted.reserve_tokens))
        except Exception:  # pragma: no cover - never let accounting break the worker
            log.exception("claude-proxy: settling usage failed")

    def settle(self, admitted: Admitted, usage: Usage) -> None:
        """Close an admitted request: usage row, spend, token correction, lease release — once.
        The integrator may call it from the pipeline with better usage (e.g. passthrough SSE tokens)."""
        if usage.cost_micro_usd is None:
            from dataclasses import replace

            usage = replace(usage, cost_micro_usd=self.cost_of(usage))
        if self.gate.settle(admitted, usage):
            self.metrics.cost(usage, admitted.principal.team_name, admitted.principal.key_id)

    # -- routes ----------------------------------------------------------------------------------------------------------

    def install(self, bp: Blueprint) -> None:
        """The admin API and /v1/me on the proxy's blueprint (so they share its prefix, auth and envelopes)."""
        store = self.gate.store

        def body() -> dict[str, Any]:
            try:
                data = orjson.loads(request.get_data(cache=False) or b"{}")
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest(f"body: not valid JSON ({exc})") from None
            if not isinstance(data, dict):
                raise InvalidRequest("body: expected a JSON object")
            return data

        def actor() -> Actor:
            p: Principal = g.principal
            return Actor(f"key:{p.key_id} ({p.owner})", p.key_id, request.remote_addr, g.get("request_id"))

        def reply(data: Any, status: int = 200) -> Response:
            return Response(orjson.dumps(data), status=status, mimetype=JSON)

        def guarded(fn: Callable[..., Response]) -> Callable[..., Response]:
            def run(**kwargs: Any) -> Response:
                try:
                    return fn(**kwargs)
                except StoreError as exc:
                    kinds = {404: NotFound, 409: ProxyError}
                    raise kinds.get(exc.status, InvalidRequest)(str(exc), status=exc.status) from None
                except (RateError, ValueError, TypeError) as exc:
                    raise InvalidRequest(str(exc)) from None
                except STORE_ERRORS as exc:
                    log.warning("teams: admin API: the store is unavailable: %s", exc)
                    raise StoreUnavailable("the teams store is unavailable; try again shortly") from None

            run.__name__ = fn.__name__
            return run

        def add(rule: str, endpoint: str, fn: Callable[..., Response], methods: list[str]) -> None:
            bp.add_url_rule(rule, endpoint=endpoint, view_func=guarded(fn), methods=methods)

        def keys_collection() -> Response:
            if request.method == "POST":
                data = body()
                owner = data.get("owner")
                if not isinstance(owner, str) or not owner:
                    raise InvalidRequest("owner: required, the person or service the key belongs to")
                record, key = store.create_key(
                    owner=owner,
                    name=str(data.get("name") or ""),
                    team=data.get("team"),
                    admin=bool(data.get("admin")),
                    gateway=bool(data.get("gateway")),
                    limits=limits_from(data.get("limits") or {}, "limits.", "body"),
                    expires_at=_time(data.get("expires_at")),
                    actor=actor(),
                )
                return reply({"key": key, **record.public()}, 201)
            status = request.args.get("status", "active")
            if status not in ("active", "revoked", "expired", "all"):
                raise InvalidRequest("status: one of active, revoked, expired, all")
            found = store.keys(team=request.args.get("team"), owner=request.args.get("owner"), status=status)
            after = request.args.get("after")
            if after:  # the page after this key, in creation order (the key may have left the filter since)
                mark = store.key(after)
                found = [k for k in found if (k.created_at, k.id) > (mark.created_at, mark.id)]
            limit = _limit(request.args.get("limit"), 100)
            page = found[:limit]
            return reply({"data": [k.public() for k in page], "has_more": len(found) > limit,
                          "last_id": page[-1].id if page else None})

        def key_item(key_id: str) -> Response:
            if request.method == "PATCH":
                data = body()
                changes: dict[str, Any] = limit_changes(data.pop("limits", None) or {})
                for name in ("name", "owner", "team", "admin", "gateway"):
                    if name in data:
                        changes[name] = data[name]
                if "expires_at" in data:
                    changes["expires_at"] = _time(data["expires_at"])
                return reply(store.update_key(key_id, changes, actor()).public())
            record = store.key(key_id)
            return reply({**record.public(), "month_spend_usd": store.month_spend(f"k:{record.id}") / 1e6,
                          "in_flight": store.in_flight(f"k:{record.id}")})

        def key_revoke(key_id: str) -> Response:
            reason = body().get("reason")
            return reply(store.revoke_key(key_id, actor(), str(reason) if reason else None).public())

        def teams_collection() -> Response:
            if request.method == "POST":
                data = body()
                name = data.get("name")
                if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", name):
                    raise InvalidRequest("name: required, letters, digits, _ . - (up to 64)")
                limits = limits_from(data.get("limits") or {}, "limits.", "body")
                return reply(store.create_team(name, limits, actor(), data.get("display_name")).public(), 201)
            return reply({"data": [t.public() for t in store.teams(include_archived="all" in request.args)]})

        def team_item(name: str) -> Response:
            if request.method == "PATCH":
                data = body()
                changes: dict[str, Any] = limit_changes(data.pop("limits", None) or {})
                for field in ("display_name", "archived"):
                    if field in data:
                        changes[field] = data[field]
                return reply(store.update_team(name, changes, actor()).public())
            team = store.team(name)
            return reply({**team.public(), "month_spend_usd": store.month_spend(f"t:{team.id}") / 1e6,
                          "in_flight": store.in_flight(f"t:{team.id}")})

        def usage() -> Response:
            group_by = [x for x in request.args.get("group_by", "day").split(",") if x]
            filters = {n: request.args.get(n) for n in ("team", "key", "owner", "model", "provider")}
            rows = store.usage(group_by=group_by, since=_time(request.args.get("from")),
                               until=_time(request.args.get("to")), filters=filters)
            return reply({"data": rows})

        def audit() -> Response:
            limit = _limit(request.args.get("limit"), 100)
            after = request.args.get("after")
            if after is not None and not after.isdigit():
                raise InvalidRequest("after: an audit event id (the last_id of the previous page)")
            rows = store.audit(since=_time(request.args.get("from")), until=_time(request.args.get("to")),
                               actor=request.args.get("actor"), action=request.args.get("action"),
                               after=int(after) if after else None, limit=limit + 1)
            page = rows[:limit]
            for row in page:
                row["time"] = iso(row.pop("ts"))
            return reply({"data": page, "has_more": len(rows) > limit, "last_id": page[-1]["id"] if page else None})

        def status() -> Response:
            return reply({**store.status(), "worker_live_requests": self.gate.live(),
                          "worker_fail_open": self.gate.fail_open,
                          "worker_pid": os.getpid()})

        def me() -> Response:
            p: Principal = g.principal
            month = month_of(time.time())
            scopes = [
                {"kind": s.kind, "label": s.label, "limits": limits_dict(s.limits),
                 "month_spend_usd": store.month_spend(s.name, month) / 1e6, "in_flight": store.in_flight(s.name)}
                for s in p.scopes
            ]
            return reply({"id": p.key_id, "name": p.key_name, "owner": p.owner, "team": p.team_name,
                          "role": p.role, "static": p.static, "month": month, "scopes": scopes})

        add("/admin/v1/keys", "admin_keys", keys_collection, ["GET", "POST"])
        add("/admin/v1/keys/<key_id>", "admin_key", key_item, ["GET", "PATCH"])
        add("/admin/v1/keys/<key_id>/revoke", "admin_key_revoke", key_revoke, ["POST"])
        add("/admin/v1/teams", "admin_teams", teams_collection, ["GET", "POST"])
        add("/admin/v1/teams/<name>", "admin_team", team_item, ["GET", "PATCH"])
        add("/admin/v1/usage", "admin_usage", usage, ["GET"])
        add("/admin/v1/audit", "admin_audit", audit, ["GET"])
        add("/admin/v1/status", "admin_status", status, ["GET"])
        add("/v1/me", "me", me, ["GET"])
        if self.config.teams is not None and self.config.teams.ui:
            from claude_proxy.web.ui import UsagePage

            UsagePage(store).install(bp, self.config.teams.ui_cookie_secure)


def usage_of(outcome: Outcome | None, status: int, reserve_tokens: int) -> Usage:
    """A finished request's usage as the provider reported it; estimated (and flagged) when it reported
    none for an answer that went out — a stream the client cut counts the prompt and the output sent so
    far; nothing for a failure before any byte."""
    if outcome is None:
        return Usage(status=status)
    final = outcome.status or status
    reported = outcome.input_tokens is not None or outcome.output_tokens is not None
    common = dict(
        endpoint=outcome.endpoint,
        request_id=outcome.request_id,
        client_model=outcome.client_model,
        provider=outcome.provider,
        upstream_model=outcome.upstream_model,
        stream=outcome.stream,
        status=final,
        error_type=outcome.error_type,
        latency_ms=outcome.latency_ms,
    )
    if reported:
        return Usage(
            input_tokens=outcome.input_tokens or 0,
            output_tokens=outcome.output_tokens or 0,
            cache_read_tokens=outcome.cache_read_tokens or 0,
            cache_write_tokens=outcome.cache_write_tokens or 0,
            estimated=bool(outcome.usage_estimated),
            **common,
        )
    if final < 400 or outcome.answered:
        return Usage(input_tokens=reserve_tokens, estimated=True, **common)
    return Usage(**common)


def limit_changes(data: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in ("rpm", "tpm"):
        if name in data:
            changes[name] = None if data[name] is None else parse_rate(data[name])
    if "max_concurrent" in data:
        value = data["max_concurrent"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidRequest("limits.max_concurrent: a whole number ≥ 0 or null")
        changes["max_concurrent"] = value
    if "monthly_budget_usd" in data:
        value = data["monthly_budget_usd"]
        changes["monthly_budget_micros"] = None if value is None else usd_to_micros(value)
    return changes


def _limit(value: str | None, default: int, most: int = 1000) -> int:
    """A page size from the query string: 1 to `most`."""
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise InvalidRequest(f"limit: a whole number from 1 to {most}")
    return int(value)


def _time(value: Any) -> float | None:
    """An ISO date/time (UTC) or epoch seconds, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
            try:
                return float(calendar.timegm(time.strptime(value, fmt)))
            except ValueError:
                continue
        try:
            return float(value)
        except ValueError:
            pass
    raise InvalidRequest(f"expected a time (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or epoch seconds), got {value!r}")


__all__ = ["TeamsEdge", "usage_of"]
