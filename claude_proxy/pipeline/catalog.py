"""`GET /v1/models`: the names a client can send, paged the way Anthropic pages them."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from claude_proxy.config.discovery import configured_models, page_models
from claude_proxy.config.loader import Config
from claude_proxy.errors import InvalidRequest, NotFound
from claude_proxy.pipeline.reply import Reply, json_reply
from claude_proxy.routing.router import Router
from claude_proxy.routing.targets import client_target
from claude_proxy.upstream.client import Upstream

MODELS_CACHE_SECONDS = 300.0
MODELS_TIMEOUT = 5.0


class Catalog:
    def __init__(
        self,
        config: Config,
        upstream: Upstream,
        router: Router,
        auth: Callable[[Mapping[str, str]], dict[str, str]],
        label: Callable[[str], str] = str,
    ) -> None:
        self.label = label  # a provider as headers and logs name it
        self.config = config
        self.upstream = upstream
        self.router = router
        self.auth = auth  # the default provider's auth headers for a client's request
        self._cache: tuple[float, list[str]] = (0.0, [])

    def upstream_model_ids(self, headers: Mapping[str, str]) -> list[str]:
        """The default provider's model list, cached; never raises (an empty list if unreachable)."""
        stamp, cached = self._cache
        if time.monotonic() - stamp < MODELS_CACHE_SECONDS:
            return cached
        ids: list[str] = []
        try:
            anthropic = self.config.provider.format == "anthropic"
            path = "/v1/models" if anthropic else "/models"
            response = self.upstream.request(
                "GET",
                path,
                headers=self.auth(headers),
                retry=False,
                deadline=time.monotonic() + MODELS_TIMEOUT,
                timeout=MODELS_TIMEOUT,
            )
            data = orjson.loads(self.upstream.read(response, time.monotonic() + MODELS_TIMEOUT))
            ids = [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]
        except Exception:
            ids = []
        self._cache = (time.monotonic(), ids)
        return ids

    def models(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        # the names a client can send: [models] names, every configured target as "PROVIDER,MODEL" (when
        # there is more than one provider to choose from), then what the default provider lists
        # every configured name (with a display_name saying which provider and model serve it), every
        # target as "PROVIDER,MODEL" when there is more than one provider to choose from, then what
        # the default provider lists; paged as Anthropic pages (limit 20 by default)
        several = len(self.config.providers) > 1
        entries = [e for e in configured_models(self.config, self.label) if several or "," not in e["id"]]
        known = {e["id"] for e in entries}
        entries += [model_object(n) for n in dict.fromkeys(self.upstream_model_ids(headers)) if n not in known]
        try:
            return json_reply(page_models(entries, dict(query)))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None

    def model(self, model_id: str, headers: Mapping[str, str]) -> Reply:
        known = (
            self.config.models.lookup(model_id) is not None
            or client_target(model_id, self.config.providers, self.router.aliases) is not None
            or model_id in self.upstream_model_ids(headers)
        )
        if not known:
            raise NotFound(f"model '{model_id}' is not mapped by claude-proxy nor listed by the upstream")
        return json_reply(model_object(model_id))


def model_object(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
