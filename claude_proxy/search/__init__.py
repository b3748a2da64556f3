"""Web search for Anthropic's `web_search_*` server tool on OpenAI-format providers.

Sits between pipeline and upstream: the pipeline asks `WebSearch.prepare` what to send; when it
gets a `SearchTurn` back it runs the turn with an `UpstreamCaller` (see README, "Web search").
"""

from claude_proxy.search.backends import Backend, Brave, SearchError, SearXNG, Tavily, build_backend
from claude_proxy.search.loop import SearchTurn, assemble
from claude_proxy.search.plan import Prepared, WebSearch
from claude_proxy.search.upstream_call import UpstreamCaller
from claude_proxy.translate.websearch import Result

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
