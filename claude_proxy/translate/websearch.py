"""Anthropic's web search server tool on an OpenAI-format provider, as pure wire rules.

The request's `{"type": "web_search_20250305", "name": "web_search", …}` cannot travel upstream;
instead the model is offered a plain `web_search` function, and what the proxy finds is shown to
the client exactly as Anthropic shows it: a `server_tool_use` block (id `srvtoolu_…`, input
`{query}`) and a `web_search_tool_result` block holding `web_search_result`s or the error form
`{"type": "web_search_tool_result_error", "error_code": …}` (Anthropic docs, "Web search tool";
SDK `WebSearchToolResultErrorCode`). Streamed, `server_tool_use` arrives as a start with
`input: {}` plus one `input_json_delta`, and the result block arrives whole in its
`content_block_start` (Anthropic docs, "Web search tool" → streaming).

`encrypted_content` is opaque to clients. Ours is `cpxws1.` + base64(UTF-8 snippet): not secret,
just the page text the model saw, so that a client echoing the block back next turn gives the model
its results again (`history_text`). Anthropic's own encrypted_content is left undecoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .dialect import Dialect
from .identifiers import to_upstream_tool_name

FUNCTION_NAME = "web_search"
SERVER_TOOL_PREFIX = "web_search_"
ENCRYPTED_PREFIX = "cpxws1."
DEFAULT_MAX_USES = 10  # Anthropic documents 1–10 for max_uses; no value means "a few", not "forever"
ERROR_CODES = frozenset(
    {"invalid_tool_input", "unavailable", "max_uses_exceeded", "too_many_requests", "query_too_long", "request_too_large"}
)
FUNCTION_DESCRIPTION = (
    "Search the web for current information. Returns the top results (title, URL, age, text excerpt). "
    "Use it for facts that may have changed or that you do not know; cite the URLs you use."
)


@dataclass(frozen=True)
class Result:
    """One search hit, whichever backend found it."""

    url: str
    title: str
    page_age: str | None = None
    snippet: str = ""


@dataclass(frozen=True)
class ServerSearchTool:
    """The client's web search server tool and its limits."""

    name: str
    type: str
    max_uses: int
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    user_location: Mapping[str, Any] | None = None


def find_server_tool(body: Mapping[str, Any]) -> ServerSearchTool | None:
    """The request's `web_search_*` server tool, if it has one."""
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        if isinstance(kind, str) and kind.startswith(SERVER_TOOL_PREFIX):
            max_uses = tool.get("max_uses")
            location = tool.get("user_location")
            return ServerSearchTool(
                name=str(tool.get("name") or FUNCTION_NAME),
                type=kind,
                max_uses=max_uses if isinstance(max_uses, int) and max_uses > 0 else DEFAULT_MAX_USES,
                allowed_domains=_strings(tool.get("allowed_domains")),
                blocked_domains=_strings(tool.get("blocked_domains")),
                user_location=location if isinstance(location, dict) else None,
            )
    return None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str) and v) if isinstance(value, list) else ()


# -- the upstream request ---------------------------------------------------------------------------


def function_tool() -> dict[str, Any]:
    """The OpenAI function the model calls instead of the server tool."""
    return {
        "type": "function",
        "function": {
            "name": FUNCTION_NAME,
            "description": FUNCTION_DESCRIPTION,
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "The search query"}},
                "required": ["query"],
            },
        },
    }


def offer_function(
    body: dict[str, Any], source: Mapping[str, Any], tool: ServerSearchTool, dialect: Dialect
) -> dict[str, Any]:
    """The translated upstream body with the `web_search` function offered (a new dict)."""
    out = dict(body)
    out["tools"] = [*(body.get("tools") or []), function_tool()]
    choice = source.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "tool":
            name = str(choice.get("name", ""))
            target = FUNCTION_NAME if name == tool.name else to_upstream_tool_name(name, dialect.tool_name_max)
            out["tool_choice"] = {"type": "function", "function": {"name": target}}
        elif kind == "any":
            out["tool_choice"] = dialect.tool_choice_any
        elif kind == "none":
            out["tool_choice"] = "none"
        else:
            out["tool_choice"] = "auto"
        if choice.get("disable_parallel_tool_use") and dialect.parallel_tool_calls:
            out["parallel_tool_calls"] = False
    return out


def without_function(body: dict[str, Any]) -> dict[str, Any]:
    """The body with the `web_search` function withdrawn (after max_uses was reported exceeded)."""
    out = dict(body)
    tools = [t for t in body.get("tools") or [] if _function_name(t) != FUNCTION_NAME]
    choice = out.get("tool_choice")
    if tools:
        out["tools"] = tools
        if isinstance(choice, dict) or choice == "required":
            out["tool_choice"] = "auto"  # forcing a call now would force the withdrawn one
    else:
        out.pop("tools", None)
        out.pop("tool_choice", None)
        out.pop("parallel_tool_calls", None)
    return out


def drop_tool_choice_for(body: dict[str, Any], tool: ServerSearchTool, source: Mapping[str, Any]) -> dict[str, Any]:
    """The body when the server tool is dropped: a tool_choice naming it must go too."""
    choice = source.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("tool", "any") and "tool_choice" in body:
        if choice.get("type") == "any" or choice.get("name") == tool.name:
            return {k: v for k, v in body.items() if k != "tool_choice"}
    return body


def _function_name(tool: Any) -> str | None:
    if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
        name = tool["function"].get("name")
        return name if isinstance(name, str) else None
    return None


def apply_native(body: dict[str, Any], tool: ServerSearchTool, dialect: Dialect, max_results: int) -> dict[str, Any]:
    """The upstream body asking the provider's own search (OpenRouter's web plugin)."""
    if dialect.native_web_search != "openrouter_plugin":
        return body
    plugin: dict[str, Any] = {"id": "web", "max_results": max_results}
    if tool.allowed_domains:
        plugin["include_domains"] = list(tool.allowed_domains)
    if tool.blocked_domains:
        plugin["exclude_domains"] = list(tool.blocked_domains)
    plugins = [p for p in body.get("plugins") or [] if not (isinstance(p, dict) and p.get("id") == "web")]
    return {**body, "plugins": [*plugins, plugin]}


def annotations_of(choice_part: Mapping[str, Any]) -> list[Result]:
    """`url_citation` annotations of a message or delta (OpenRouter's web plugin) as results."""
    found = []
    for item in choice_part.get("annotations") or ():
        if not isinstance(item, dict) or item.get("type") != "url_citation":
            continue
        cite = item.get("url_citation") if isinstance(item.get("url_citation"), dict) else item
        url = cite.get("url")
        if isinstance(url, str) and url:
            title = cite.get("title")
            content = cite.get("content")
            found.append(
                Result(url, title if isinstance(title, str) and title else url, None, content if isinstance(content, str) else "")
            )
    return found


# -- domains ----------------------------------------------------------------------------------------


def domain_allowed(url: str, allowed: Iterable[str], blocked: Iterable[str]) -> bool:
    """Anthropic's domain rules: `example.com` covers its subdomains, `docs.example.com` only that
    one, `example.com/blog` only that path; no scheme in the rule."""
    allowed, blocked = tuple(allowed), tuple(blocked)
    if not allowed and not blocked:
        return True
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    path = parts.path or "/"
    if any(_matches(host, path, rule) for rule in blocked):
        return False
    return not allowed or any(_matches(host, path, rule) for rule in allowed)


def _matches(host: str, path: str, rule: str) -> bool:
    rule = rule.strip().lower()
    if "://" in rule:
        rule = rule.split("://", 1)[1]
    domain, _, prefix = rule.partition("/")
    domain = domain.rstrip(".")
    if domain.startswith("*."):
        domain = domain[2:]
    if not domain or not (host == domain or host.endswith("." + domain)):
        return False
    if not prefix:
        return True
    prefix = "/" + prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


# -- Anthropic blocks -------------------------------------------------------------------------------


def new_server_tool_id() -> str:
    return f"srvtoolu_{random.getrandbits(96):024x}"


def encode_snippet(text: str) -> str:
    return ENCRYPTED_PREFIX + base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_snippet(value: Any) -> str | None:
    """The snippet inside our own `encrypted_content`; None for anyone else's."""
    if not isinstance(value, str) or not value.startswith(ENCRYPTED_PREFIX):
        return None
    try:
        return base64.b64decode(value[len(ENCRYPTED_PREFIX) :], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def server_tool_use_block(tool_id: str, query: str, name: str = FUNCTION_NAME) -> dict[str, Any]:
    return {"type": "server_tool_use", "id": tool_id, "name": name, "input": {"query": query}}


def result_block(tool_id: str, results: Iterable[Result]) -> dict[str, Any]:
    return {
        "type": "web_search_tool_result",
        "tool_use_id": tool_id,
        "content": [
            {
                "type": "web_search_result",
                "url": r.url,
                "title": r.title,
                "encrypted_content": encode_snippet(r.snippet),
                "page_age": r.page_age,
            }
            for r in results
        ],
    }


def error_block(tool_id: str, code: str) -> dict[str, Any]:
    return {
        "type": "web_search_tool_result",
        "tool_use_id": tool_id,
        "content": {"type": "web_search_tool_result_error", "error_code": code if code in ERROR_CODES else "unavailable"},
    }


def block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole server-tool block as stream events, as Anthropic streams it."""
    if block["type"] == "server_tool_use":
        start = {**block, "input": {}}
        partial = json.dumps(block["input"], ensure_ascii=False)
        return [
            {"type": "content_block_start", "index": index, "content_block": start},
            {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial}},
            {"type": "content_block_stop", "index": index},
        ]
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        {"type": "content_block_stop", "index": index},
    ]


def server_tool_usage(requests: int) -> dict[str, int]:
    return {"web_search_requests": requests, "web_fetch_requests": 0}


# -- what the model reads ---------------------------------------------------------------------------


def results_text(query: str, results: Iterable[Result]) -> str:
    """Search results as the tool message the model reads."""
    lines = [f"Web search results for query: {json.dumps(query, ensure_ascii=False)}", ""]
    n = 0
    for n, r in enumerate(results, 1):
        lines.append(f"[{n}] {r.title}")
        lines.append(f"URL: {r.url}")
        if r.page_age:
            lines.append(f"Published: {r.page_age}")
        if r.snippet:
            lines.append(r.snippet)
        lines.append("")
    if n == 0:
        lines.append("No results.")
    return "\n".join(lines).rstrip() + "\n"


ERROR_TEXT = {
    "max_uses_exceeded": "the search limit for this turn is used up; answer with what you have found",
    "too_many_requests": "the search service is rate-limited right now",
    "unavailable": "the search service is unavailable right now",
    "query_too_long": "the query is too long; use a shorter one",
    "invalid_tool_input": "the call had no usable `query` string",
}


def error_text(code: str) -> str:
    return f"Web search error ({code}): {ERROR_TEXT.get(code, 'the search failed')}."


def history_text(block: Mapping[str, Any]) -> str:
    """A server_tool_use / web_search_tool_result block the client sent back, as text the model reads."""
    if block.get("type") == "server_tool_use":
        query = (block.get("input") or {}).get("query") if isinstance(block.get("input"), dict) else None
        if isinstance(query, str):
            return f"[searched the web for {json.dumps(query, ensure_ascii=False)}]"
        return f"[server tool call {block.get('name', '')}: {json.dumps(block.get('input', {}), ensure_ascii=False)}]"
    content = block.get("content")
    if isinstance(content, dict):
        return f"[web search failed: {content.get('error_code', 'unavailable')}]"
    lines = ["[web search results]"]
    for n, item in enumerate(content if isinstance(content, list) else [], 1):
        if not isinstance(item, dict):
            continue
        lines.append(f"[{n}] {item.get('title', '')} <{item.get('url', '')}>")
        if item.get("page_age"):
            lines.append(f"Published: {item['page_age']}")
        snippet = decode_snippet(item.get("encrypted_content"))
        if snippet:
            lines.append(snippet)
    return "\n".join(lines)
