"""Which target serves a request: scenario routes, model mappings, fallback chains, and
the per-provider cool-down that keeps a dead provider from costing every request its timeout.

Precedence (first match wins): what the client names, then what the request needs (a window, vision),
then what Claude Code says it is (its headers), then what it looks like (model name, thinking):
  1. the client sent "PROVIDER,MODEL" as the model name → exactly that target;
  2. long_context — estimated input tokens above `long_context_threshold`;
  3. image — the request carries an image;
  4. compaction / subagent / auxiliary — Claude Code's `x-claude-code-request-class` header
     (sent with CLAUDE_CODE_GATEWAY_HINT_HEADERS=1), or `x-claude-code-agent-id` (every subagent
     request carries it, hint headers or not) → subagent;
  5. background — the model name looks like Claude Code's small/fast model (haiku-class);
  6. think — thinking is enabled (type "enabled" or "adaptive");
  7. [models] — the model name's mapping (exact, then most specific pattern);
  8. otherwise the name passes through unchanged to the default provider.
A route that is not configured is simply skipped.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from claude_proxy.routing.sticky import DEFAULT_MAX_SESSIONS, DEFAULT_TTL_SECONDS, StickyMap, sticky_first
from claude_proxy.routing.targets import Chain, ModelMap, Target, client_target, provider_aliases, unprefixed

# What Claude Code 2.1.332 says a request is (spec/claude-code-2.1.332-wire.md §15, §17): the values of
# `x-claude-code-request-class` that have a route of their own. `main` (and `workflow`, `side_reply`,
# seen only in the binary) fall through to the other rules.
REQUEST_CLASSES: dict[str, str] = {"compaction": "compaction", "subagent": "subagent", "auxiliary": "auxiliary"}
REQUEST_CLASS_HEADER = "x-claude-code-request-class"
AGENT_ID_HEADER = "x-claude-code-agent-id"  # on every subagent request, with or without hint headers
SCENARIOS = ("long_context", "image", *dict.fromkeys(REQUEST_CLASSES.values()), "background", "think")


@dataclass(frozen=True)
class RoutingConfig:
    long_context_threshold: int = 60_000
    background_models: tuple[str, ...] = ("*haiku*",)
    cooldown_failures: int = 3
    cooldown_seconds: float = 30.0
    sticky_sessions: int = DEFAULT_MAX_SESSIONS  # sessions remembered per worker (0: no stickiness)
    sticky_ttl: float = DEFAULT_TTL_SECONDS


@dataclass(frozen=True)
class Plan:
    route: str  # "client", a scenario name, "models", or "default"
    chain: Chain


def _has_image(body: Mapping[str, Any]) -> bool:
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image":
                return True
            if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                if any(isinstance(b, dict) and b.get("type") == "image" for b in block["content"]):
                    return True
    return False


def request_class(headers: Mapping[str, str]) -> str | None:
    """The route Claude Code's own headers name for a request (a REQUEST_CLASSES value), or None."""
    kind = REQUEST_CLASSES.get(str(headers.get(REQUEST_CLASS_HEADER) or "").strip().lower())
    if kind is None and headers.get(AGENT_ID_HEADER):
        return "subagent"
    return kind


class Router:
    def __init__(
        self,
        models: ModelMap,
        routes: Mapping[str, Chain],
        providers: Mapping[str, Any],
        default_provider: str,
        config: RoutingConfig = RoutingConfig(),
    ) -> None:
        self.models = models
        self.routes = dict(routes)
        self.providers = providers
        self.default_provider = default_provider
        self.aliases = provider_aliases(providers, default_provider)
        self.config = config

    def scenario(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str | None:
        """The scenario a request falls under, among the configured routes."""
        routes = self.routes
        if "long_context" in routes and _input_tokens(body) > self.config.long_context_threshold:
            return "long_context"
        if "image" in routes and _has_image(body):
            return "image"
        kind = request_class(headers) if headers else None
        if kind is not None and kind in routes:
            return kind
        model = unprefixed(str(body.get("model", "")))
        if "background" in routes and any(fnmatch.fnmatchcase(model, p) for p in self.config.background_models):
            return "background"
        thinking = body.get("thinking")
        if "think" in routes and isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
            return "think"
        return None

    def plan(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Plan:
        """The route and chain for a request; `headers` are the client's (case-insensitive lookups)."""
        model = unprefixed(str(body.get("model", "")))
        direct = client_target(model, self.providers, self.aliases)
        if direct is not None:
            return Plan("client", (direct,))
        scenario = self.scenario(body, headers)
        if scenario is not None:
            return Plan(scenario, self.routes[scenario])
        chain = self.models.chain(model)
        if chain is not None:
            return Plan("models", chain)
        return Plan("default", (Target(self.default_provider, model),))


class ProviderHealth:
    """Consecutive failures per provider; after N in a row it cools down for a while.

    Per process (each gunicorn worker learns on its own) and thread-safe. It also remembers which
    target served each session last (`routing.sticky`), so a session's prompt cache stays warm.
    """

    def __init__(self, config: RoutingConfig = RoutingConfig(), clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.sticky = StickyMap(config.sticky_sessions, config.sticky_ttl, clock)
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def cooling(self, provider: str) -> bool:
        with self._lock:
            return self._until.get(provider, 0.0) > self.clock()

    def success(self, provider: str) -> None:
        with self._lock:
            self._failures.pop(provider, None)
            self._until.pop(provider, None)

    def failure(self, provider: str) -> None:
        with self._lock:
            count = self._failures.get(provider, 0) + 1
            self._failures[provider] = count
            if count >= self.config.cooldown_failures:
                self._until[provider] = self.clock() + self.config.cooldown_seconds

    def order(self, chain: Chain, session: str | None = None) -> list[Target]:
        """The chain without cooling providers — unless all are cooling: then try them all
        anyway rather than fail without asking anyone. With a session, the target that served
        its previous request comes first while its provider is not cooling down."""
        ready = [t for t in chain if not self.cooling(t.provider)]
        ordered = ready or list(chain)
        if session and len(chain) > 1:
            return sticky_first(ordered, self.sticky.get(session, chain) if ready else None)
        return ordered

    def served(self, chain: Chain, session: str | None, target: Target) -> None:
        """`target` answered this session's request: its next one in `chain` goes there first."""
        if session and len(chain) > 1:
            self.sticky.record(session, chain, target)

    def state(self, provider: str) -> dict[str, Any]:
        with self._lock:
            until = self._until.get(provider, 0.0)
            now = self.clock()
            cooling = until > now
            return {
                "state": "cooling_down" if cooling else "up",
                "consecutive_failures": self._failures.get(provider, 0),
                **({"cooldown_remaining_s": round(until - now, 1)} if cooling else {}),
            }


def _input_tokens(body: Mapping[str, Any]) -> int:
    from claude_proxy.translate.tokens import (
        estimate_input_tokens,  # here, not at the top: the gunicorn master never routes
    )

    return estimate_input_tokens(dict(body))
