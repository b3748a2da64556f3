"""`GET /v1/models`: the names a client can send, paged the way Anthropic pages them, each saying which
provider and model serve it — Claude Code's /model picker shows them (CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from claude_proxy.config.discovery import MAX_LIMIT, configured_models, model_entry, page_models
from claude_proxy.config.loader import Config
from claude_proxy.errors import InvalidRequest, NotFound
from claude_proxy.pipeline.reply import Reply, json_reply
from claude_proxy.routing.router import Router
from claude_proxy.routing.targets import DISCOVERY_PREFIX, client_target, unprefixed
from claude_proxy.upstream.client import Upstream

MODELS_CACHE_SECONDS = 300.0
MODELS_TIMEOUT = 5.0
# Claude Code 2.1.332 keeps only gateway model ids matching this (its gateway discovery filter)
LOOKS_LIKE_CLAUDE = re.compile(r"claude|anthropic", re.IGNORECASE)


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

    def entries(self, headers: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every name a client can send, once: every configured name (with a display_name saying which provider
        and model serve it), every target as "PROVIDER,MODEL" when there is more than one provider to choose
        from, those again under DISCOVERY_PREFIX where Claude Code's picker would filter them out, then what
        the default provider lists."""
        several = len(self.config.providers) > 1
        configured = [e for e in configured_models(self.config, self.label) if several or "," not in e["id"]]
        objects = {entry["id"]: entry for entry in configured}
        for entry in configured:
            if not LOOKS_LIKE_CLAUDE.search(entry["id"]):
                alias = DISCOVERY_PREFIX + entry["id"]
                objects.setdefault(alias, model_entry(alias, entry["display_name"]))
        for name in self.upstream_model_ids(headers):
            objects.setdefault(name, model_object(name))
        return list(objects.values())

    def models(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        return json_reply(page(self.entries(headers), query))

    def model(self, model_id: str, headers: Mapping[str, str]) -> Reply:
        for entry in self.entries(headers):
            if entry["id"] == model_id:
                return json_reply(entry)
        name = unprefixed(model_id)
        known = (
            self.config.models.lookup(name) is not None
            or client_target(name, self.config.providers, self.router.aliases) is not None
            or name in self.upstream_model_ids(headers)
        )
        if not known:
            raise NotFound(f"model '{model_id}' is not mapped by claude-proxy nor listed by the upstream")
        return json_reply(model_object(model_id))


def model_object(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}


def page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page as Anthropic gives it (config/discovery.page_models), with the request checked first: a bad
    `limit`, both cursors, or a cursor that names no model is a 400 — never a silent restart from the top,
    on which a client paging with `has_more` would loop."""
    after, before = query.get("after_id"), query.get("before_id")
    if after and before:
        raise InvalidRequest("after_id and before_id cannot be used together")
    ids = {item["id"] for item in items}
    for key, cursor in (("after_id", after), ("before_id", before)):
        if cursor and cursor not in ids:
            raise InvalidRequest(f"{key}: no model with id '{cursor}' (the list may have changed; start again)")
    try:
        return page_models(items, {k: v for k, v in query.items() if k in ("limit", "after_id", "before_id") and v})
    except ValueError:
        raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}") from None
