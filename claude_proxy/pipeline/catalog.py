"""`GET /v1/models`: the names a client can send, paged the way Anthropic pages them, each saying which
provider and model serve it — Claude Code's /model picker shows them (CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from claude_proxy.config.loader import Config
from claude_proxy.errors import InvalidRequest, NotFound
from claude_proxy.pipeline.reply import Reply, json_reply
from claude_proxy.routing.router import Router
from claude_proxy.routing.targets import DISCOVERY_PREFIX, Chain, client_target, unprefixed
from claude_proxy.upstream.client import Upstream

MODELS_CACHE_SECONDS = 300.0
MODELS_TIMEOUT = 5.0
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000  # Anthropic's: "Defaults to 20. Ranges from 1 to 1000."
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
        self.config = config
        self.label = label  # a provider's name as headers and logs show it
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
        """Every name a client can send, once: [models] names, every configured target as "PROVIDER,MODEL"
        (when there is more than one provider to choose from), the names Claude Code's picker would hide
        again under DISCOVERY_PREFIX, then what the default provider lists."""
        configured: dict[str, Chain] = {
            name: self.config.models.entries[name] for name in self.config.models.exact_names
        }
        chains = [*self.config.models.entries.values(), *self.config.routes.values()]
        targets = (t for chain in chains for t in chain)
        if len(self.config.providers) > 1:
            configured.update((str(t), (t,)) for t in targets if str(t) not in configured)
        else:  # one provider: a target is its bare model name
            configured.update((t.model, (t,)) for t in targets if t.model not in configured)
        objects = {name: model_object(name, describe(name, chain, self.label)) for name, chain in configured.items()}
        for name, chain in configured.items():
            if not LOOKS_LIKE_CLAUDE.search(name):
                alias = DISCOVERY_PREFIX + name
                objects.setdefault(alias, model_object(alias, describe(name, chain, self.label)))
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


def model_object(name: str, display_name: str | None = None) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": display_name or name, "created_at": "1970-01-01T00:00:00Z"}


def describe(name: str, chain: Chain, label: Callable[[str], str]) -> str:
    """What serves a name, for a picker: "my-big → deepseek deepseek-chat (then openrouter x/y)"."""
    served = [f"{label(t.provider)} {t.model}" for t in chain]
    text = served[0] + (f" (then {', '.join(served[1:])})" if len(served) > 1 else "")
    return text if name == str(chain[0]) or name == chain[0].model else f"{name} → {text}"


def page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page as Anthropic's list endpoints give it: `limit` items after `after_id`, or the `limit` items
    just before `before_id`; `has_more` says whether more lie beyond the page in the direction of travel."""
    try:
        limit = int(query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    after, before = query.get("after_id"), query.get("before_id")
    if after and before:
        raise InvalidRequest("after_id and before_id cannot be used together")
    ids = [item["id"] for item in items]
    for key, cursor in (("after_id", after), ("before_id", before)):
        if cursor and cursor not in ids:  # not a silent restart from the top: paging clients would loop
            raise InvalidRequest(f"{key}: no model with id '{cursor}' (the list may have changed; start again)")
    if before:
        end = ids.index(before)
        start = max(0, end - limit)
        data, has_more = items[start:end], start > 0
    else:
        start = ids.index(after) + 1 if after else 0
        data, has_more = items[start : start + limit], start + limit < len(items)
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
