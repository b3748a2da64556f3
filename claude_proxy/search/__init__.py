"""Web search for Anthropic's `web_search_*` server tool on OpenAI-format providers.

Sits between pipeline and upstream: the pipeline asks `WebSearch.prepare` what to send; when it
gets a `SearchTurn` back it runs the turn with an `UpstreamCaller` (see README, "Web search").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from claude_proxy.search.backends import Backend, Brave, SearchError, SearXNG, Tavily, build_backend
    from claude_proxy.search.loop import SearchTurn, assemble
    from claude_proxy.search.plan import Prepared, WebSearch
    from claude_proxy.search.upstream_call import UpstreamCaller
    from claude_proxy.translate.websearch import Result

# Each name from the module that defines it, loaded on first use: every attempt asks `plan.WebSearch`
# whether a request has a search tool, but the backends and the search loop only run when one does.
_WHERE = {
    **dict.fromkeys(("Backend", "Brave", "SearchError", "SearXNG", "Tavily", "build_backend"), "backends"),
    **dict.fromkeys(("SearchTurn", "assemble"), "loop"),
    **dict.fromkeys(("Prepared", "WebSearch"), "plan"),
    "UpstreamCaller": "upstream_call",
    "Result": "claude_proxy.translate.websearch",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(where if "." in where else f"{__name__}.{where}"), name)


__all__ = [
    "Backend",
    "Brave",
    "Prepared",
    "Result",
    "SearXNG",
    "SearchError",
    "SearchTurn",
    "Tavily",
    "UpstreamCaller",
    "WebSearch",
    "assemble",
    "build_backend",
]
