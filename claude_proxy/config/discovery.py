"""Model discovery as data: the `/v1/models` entries the configuration makes selectable.

Claude Code (`CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1`) fills its `/model` picker from
`GET /v1/models`, so every exact `[models]` name and every route target is listed with a
`display_name` saying which provider and upstream model serve it. Pure: config in, dicts out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from claude_proxy.config.loader import Config
from claude_proxy.routing.targets import Chain

DEFAULT_LIMIT = 20  # Anthropic's default page size (docs.anthropic.com/en/api/models-list)
MAX_LIMIT = 1000
EPOCH = "1970-01-01T00:00:00Z"


def _served_by(chain: Chain, label: Callable[[str], str]) -> str:
    first = f"{chain[0].model} on {label(chain[0].provider)}"
    return first if len(chain) == 1 else f"{first}, then {len(chain) - 1} fallback(s)"


def model_entry(model_id: str, display_name: str | None = None) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": display_name or model_id, "created_at": EPOCH}


def configured_models(config: Config, label: Callable[[str], str] = str) -> list[dict[str, Any]]:
    """Entries for every exact `[models]` name, then every route target as `PROVIDER,MODEL` (the
    form a client may send), each once, in configuration order. Glob keys are not sendable ids."""
    entries: dict[str, dict[str, Any]] = {}
    for name in config.models.exact_names:
        chain = config.models.chain(name)
        if chain:
            entries[name] = model_entry(name, f"{name} → {_served_by(chain, label)}")
    chains: Iterable[tuple[str, Chain]] = [
        *((f"[models] {k}", c) for k, c in config.models.entries.items()),
        *((f"route {k}", c) for k, c in config.routes.items()),
    ]
    for where, chain in chains:
        for target in chain:
            shown = f"{target.model} on {label(target.provider)} ({where})"
            entries.setdefault(str(target), model_entry(str(target), shown))
    return list(entries.values())


def page_models(entries: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """One page of a model list, as Anthropic pages it: `limit` (1–1000, default 20), `after_id`
    (the page after that id) or `before_id` (the page immediately before it).
    Raises ValueError for a `limit` that is not an integer from 1 to 1000."""
    raw = query.get("limit")
    try:
        limit = DEFAULT_LIMIT if raw in (None, "") else int(str(raw))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    ids = [e["id"] for e in entries]
    before, after = query.get("before_id"), query.get("after_id")
    if before is not None:
        end = ids.index(before) if before in ids else len(ids)
        start = max(0, end - limit)
        page, has_more = entries[start:end], start > 0
    else:
        start = ids.index(after) + 1 if after in ids else 0
        page, has_more = entries[start : start + limit], start + limit < len(entries)
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }
