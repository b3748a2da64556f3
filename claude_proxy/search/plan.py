"""Where a request's web search server tool goes: the proxy's backend, the provider's own search,
nowhere (dropped with a warning), or a 400 that says what to configure."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from claude_proxy.config.websearch import WebSearchConfig
from claude_proxy.errors import InvalidRequest
from claude_proxy.translate.dialect import Dialect
from claude_proxy.translate.request import Translation
from claude_proxy.translate.websearch import (
    ServerSearchTool,
    apply_native,
    drop_tool_choice_for,
    find_server_tool,
    offer_function,
)
from claude_proxy.upstream.client import host_of

if TYPE_CHECKING:  # loaded when a search runs (or a backend is configured), not by every worker
    from claude_proxy.search.backends import Backend
    from claude_proxy.search.loop import SearchTurn

log = logging.getLogger("claude_proxy.search")


@dataclass
class Prepared:
    """The upstream body to send and, when the proxy serves the server tool, the turn that does it."""

    body: dict[str, Any]
    turn: SearchTurn | None = None


class WebSearch:
    """Built once per proxy from `[web_search]`; `prepare` is called for every OpenAI-format attempt."""

    def __init__(self, config: WebSearchConfig | None, pool_size: int = 16) -> None:
        self.config = config
        self.backend: Backend | None = None
        if config is not None and config.runs_searches:
            from claude_proxy.search.backends import build_backend

            self.backend = build_backend(config, pool_size)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The backend key, for the redaction list the proxy keeps of provider keys."""
        return (self.config.api_key,) if self.config is not None and self.config.api_key else ()

    def check(self, dialects: list[Dialect]) -> tuple[bool, str]:
        """For `claude-proxy doctor`: is web search configured, and does the backend answer a search?"""
        config = self.config
        if self.backend is None:
            native = sorted({d.name for d in dialects if d.native_web_search})
            if native:
                return True, f"web search: native search of {', '.join(native)}"
            how = "drop the server tool" if config is not None and config.on_missing == "drop" else "answer 400"
            return False, f"web search: not configured (add a [web_search] table); requests with it {how}"
        assert config is not None  # a backend is only built from a config
        from claude_proxy.search.backends import SearchError

        try:
            results = self.backend.search("claude-proxy", max_results=1)
        except SearchError as exc:
            return False, f"web search: {config.backend} at {host_of(config.url or '')} failed ({exc.code}): {exc.message}"
        return True, f"web search: {config.backend} at {host_of(config.url or '')} answered ({len(results)} result(s))"

    def prepare(
        self, body: dict[str, Any], translation: Translation, dialect: Dialect, deadline: float | None = None
    ) -> Prepared:
        """`body` is the client's Anthropic request, `translation` its translation for this target.

        Raises InvalidRequest when the request needs web search and nothing can run it (unless
        `on_missing = "drop"`)."""
        tool = find_server_tool(body)
        if tool is None:
            return Prepared(translation.body)
        from claude_proxy.search.loop import SearchTurn

        config = self.config
        if self.backend is not None and config is not None:
            upstream = offer_function(translation.body, body, tool, dialect)
            turn = SearchTurn(upstream, translation.context, tool, self.backend, deadline=deadline,
                              max_results=config.max_results)
            return Prepared(upstream, turn)
        if dialect.native_web_search and (config is None or config.backend == "native"):
            max_results = config.max_results if config is not None else 5
            upstream = apply_native(translation.body, tool, dialect, max_results)
            turn = SearchTurn(upstream, translation.context, tool, None, deadline=deadline,
                              native_query=last_user_text(body))
            return Prepared(upstream, turn)
        return Prepared(self._missing(tool, body, translation, dialect))

    def _missing(self, tool: ServerSearchTool, body: dict[str, Any], translation: Translation, dialect: Dialect) -> dict[str, Any]:
        why = (
            f"provider {dialect.name!r} has no native web search"
            if self.config is not None and self.config.backend == "native"
            else "no search backend is configured"
        )
        if self.config is not None and self.config.on_missing == "drop":
            log.warning("web search: the %s server tool was dropped: %s ([web_search] on_missing = \"drop\")", tool.type, why)
            return drop_tool_choice_for(translation.body, tool, body)
        raise InvalidRequest(
            f"tools: the {tool.type} server tool {tool.name!r} needs a web search backend and {why}: add a "
            "[web_search] table to the claude-proxy config (backend = \"searxng\", \"brave\" or \"tavily\"), "
            "or set [web_search] on_missing = \"drop\" to answer without searching"
        )


def last_user_text(body: dict[str, Any]) -> str:
    """The last user text of the request: the best stand-in for a query native search does not report."""
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content.strip()
        texts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        if texts:
            return str(texts[-1]).strip()
    return ""
