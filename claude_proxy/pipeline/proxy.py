"""The request pipeline, free of any web framework: bytes in, a `Reply` out.

    validate → route (fallback.Chains) → one attempt (attempt / passthrough) → stream pump (streaming) → Reply

`Proxy` is the facade the web edge calls; each step lives in its own module and every request's
`Outcome` is finished exactly once by the `Recorder` (journal + metrics).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any

from claude_proxy import __version__
from claude_proxy.config.loader import Config, fast_paths_enabled
from claude_proxy.config.network import url_secrets
from claude_proxy.errors import InvalidRequest, ProxyError
from claude_proxy.pipeline.attempt import OpenAIAttempts
from claude_proxy.pipeline.catalog import Catalog
from claude_proxy.pipeline.credentials import Credentials
from claude_proxy.pipeline.fallback import Chains
from claude_proxy.pipeline.journal import Journal
from claude_proxy.pipeline.outcome import Outcome, Recorder
from claude_proxy.pipeline.passthrough import Passthrough
from claude_proxy.pipeline.reply import JSON, Reply, decode_json, json_reply, too_deep
from claude_proxy.pipeline.route import Attempt, TargetPolicy
from claude_proxy.pipeline.tracing import tracing_for
from claude_proxy.pipeline.validate import validate_messages_request
from claude_proxy.routing.router import ProviderHealth, Router
from claude_proxy.routing.targets import DEFAULT_PROVIDER
from claude_proxy.translate.caching import session_id
from claude_proxy.translate.tokens import estimate_input_tokens
from claude_proxy.upstream.client import Upstream, host_of

__all__ = ["JSON", "Outcome", "Proxy", "Reply"]

_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def _header_id(headers: Mapping[str, str], name: str) -> str | None:
    """A client-chosen id for the request log, only when it is a plain token (never free text)."""
    value = headers.get(name)
    return value if value and _ID.fullmatch(value) else None


class Proxy:
    def __init__(self, config: Config, upstream: Upstream | None = None, journal: Journal | None = None) -> None:
        self.config = config
        self.provider = config.provider
        fast = fast_paths_enabled(config)  # [server] fast_paths, overridden by CLAUDE_PROXY_FAST_PATHS
        self.upstream = upstream or Upstream(
            config.provider, config.timeouts, config.retry, pool_size=config.threads, fast_paths=fast
        )
        self.upstreams: dict[str, Upstream] = {
            name: self.upstream
            if name == config.default_provider
            else Upstream(provider, config.timeouts, config.retry, pool_size=config.threads, fast_paths=fast)
            for name, provider in config.providers.items()
        }
        self.router = Router(config.models, config.routes, config.providers, config.default_provider, config.routing)
        self.health_of = ProviderHealth(config.routing)
        provider_keys = [p.api_key for p in config.providers.values()]
        search_key = config.web_search.api_key if config.web_search is not None else None
        proxy_credentials = [s for p in config.providers.values() for s in url_secrets(p.network.proxy)]
        self.secrets = tuple(
            k for k in (config.provider.api_key, *provider_keys, *config.auth_keys, search_key, *proxy_credentials) if k
        )
        self.journal = journal or Journal(config.log_file, secrets=self.secrets, log_bodies=config.log_bodies)
        self.recorder = Recorder(self.journal, self.secrets, config.provider.name, prices=config.prices)
        self.credentials = Credentials(config.auth_keys)
        self.chains = Chains(config, self.upstreams, self.health_of, self.recorder, self.label)
        self.openai = OpenAIAttempts(config, self.credentials, self.recorder)
        self.passthrough = Passthrough(self.credentials, self.recorder)
        self.catalog = Catalog(config, self.upstream, self.router, self._default_auth, self.label)
        self.tracing = tracing_for(config, os.environ)

    def close(self) -> None:
        self.openai.web_search.close()
        for upstream in {id(u): u for u in self.upstreams.values()}.values():
            upstream.close()
        self.journal.close()
        if self.tracing is not None:
            self.tracing.close()

    def label(self, name: str) -> str:
        provider = self.config.providers[name]
        # [provider] shows as its preset ("deepseek") unless a [providers.deepseek] is also configured
        if name == DEFAULT_PROVIDER and provider.name not in self.config.providers:
            return provider.name
        return name

    def fail(self, outcome: Outcome, error: ProxyError) -> None:
        self.recorder.fail(outcome, error)

    # -- POST /v1/messages -----------------------------------------------------------

    def messages(
        self, raw: bytes, headers: Mapping[str, str], outcome: Outcome, policy: TargetPolicy | None = None
    ) -> Reply:
        if self.tracing is not None:
            self.tracing.start(outcome, headers)
        try:
            try:
                return self._messages(raw, headers, outcome, policy)
            except RecursionError:  # JSON nested deeper than Python recurses (orjson reads 1024 levels)
                raise too_deep() from None
        except ProxyError as error:
            self.recorder.fail(outcome, error)
            raise

    def _validated(self, raw: bytes, outcome: Outcome, count_tokens: bool = False) -> dict[str, Any]:
        body = decode_json(raw)
        problems = validate_messages_request(body, count_tokens=count_tokens)
        if problems:
            raise InvalidRequest(
                "; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
            )
        outcome.client_model = body["model"]
        if self.config.log_bodies:
            outcome.request_body = body
        return body

    def _messages(
        self, raw: bytes, headers: Mapping[str, str], outcome: Outcome, policy: TargetPolicy | None = None
    ) -> Reply:
        body = self._validated(raw, outcome)
        stream = bool(body.get("stream"))
        plan = self.router.plan(body, headers)
        outcome.route, outcome.stream = plan.route, stream
        outcome.session_id = _header_id(headers, "x-claude-code-session-id")
        outcome.prompt_id = _header_id(headers, "x-claude-code-prompt-id")

        session = session_id(body, headers)  # Claude Code's session: cache key, affinity, sticky target

        def serve(attempt: Attempt, deadline: float) -> Reply:
            if attempt.provider.format == "anthropic":
                return self.passthrough.send(attempt, "/v1/messages", raw, body, headers, outcome, stream, deadline)
            return self.openai.send(attempt, body, headers, outcome, stream, deadline, session)

        return self.chains.serve(plan, outcome, serve, session, policy)

    # -- other endpoints --------------------------------------------------------------

    def count_tokens(self, raw: bytes, headers: Mapping[str, str], outcome: Outcome) -> Reply:
        if self.tracing is not None:
            self.tracing.start(outcome, headers)
        try:
            body = self._validated(raw, outcome, count_tokens=True)
            # counted where the message would go: an Anthropic target counts exactly, others are estimated
            attempt = self.chains.attempts(self.router.plan(body, headers))[0]
            attempt = Attempt(attempt.target, attempt.provider, attempt.upstream, attempt.label, last=True)
            outcome.provider, outcome.upstream_model = attempt.label, attempt.target.model
            if attempt.provider.format == "anthropic":
                path, deadline = "/v1/messages/count_tokens", time.monotonic() + self.config.timeouts.total
                return self.passthrough.send(attempt, path, raw, body, headers, outcome, False, deadline)
            try:
                tokens = estimate_input_tokens(body)
            except RecursionError:
                raise too_deep() from None
        except ProxyError as error:
            self.recorder.fail(outcome, error)
            raise
        outcome.input_tokens = tokens
        self.recorder.finish(outcome, 200)
        return json_reply({"input_tokens": tokens})

    def _default_auth(self, headers: Mapping[str, str]) -> dict[str, str]:
        if self.provider.format == "anthropic":
            return self.credentials.anthropic_headers(headers, "models", self.provider)
        return self.credentials.openai_headers(headers, self.provider, self.upstream)

    def upstream_model_ids(self, headers: Mapping[str, str]) -> list[str]:
        return self.catalog.upstream_model_ids(headers)

    def models(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        return self.catalog.models(headers, query)

    def model(self, model_id: str, headers: Mapping[str, str]) -> Reply:
        return self.catalog.model(model_id, headers)

    def health(self) -> dict[str, Any]:
        providers = {
            self.label(name): {
                "format": provider.format,
                "upstream": host_of(provider.base_url),
                "api_key_configured": not provider.key_missing,
                **self.health_of.state(name),
            }
            for name, provider in self.config.providers.items()
        }
        return {
            "status": "ok",
            "version": __version__,
            "provider": self.provider.name,
            "format": self.provider.format,
            "upstream": host_of(self.provider.base_url),
            "api_key_configured": not self.provider.key_missing,
            "models_mapped": len(self.config.models),
            "providers": providers,
        }
