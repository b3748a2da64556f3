"""Anthropic Messages request → OpenAI Chat Completions request.

`translate_request` returns the upstream body together with what the response side needs
to map names back (a `RequestContext`), so responses and streams can be translated
without keeping any state between requests.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .caching import cache_key, cache_mark, limit_breakpoints, long_ttl
from .dialect import DEFAULT_DIALECT, Dialect
from .identifiers import to_upstream_id, to_upstream_tool_name, tool_name_map
from .jsonio import dumps, dumps_text
from .tokens import estimate_input_tokens
from .websearch import history_text

T = TypeVar("T")

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"

# Top-level request fields that are Anthropic-only and consumed (or deliberately dropped)
# by the translation; anything else unknown is governed by the `[params]` config.
KNOWN_FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "tools", "tool_choice", "stop_sequences",
        "temperature", "top_p", "top_k", "metadata", "thinking", "stream", "output_config",
        "context_management", "cache_control", "container", "service_tier", "speed",
        "inference_geo", "diagnostics", "user_profile_id", "workspace_id", "mcp_servers",
        "betas", "anthropic_beta", "safeguards", "thread",
    }
)

# Block types with no OpenAI equivalent that are flattened to text rather than rejected.
SERVER_BLOCK_TYPES = frozenset(
    {
        "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
        "code_execution_tool_result", "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result", "tool_search_tool_result",
        "container_upload", "mcp_tool_use", "mcp_tool_result", "tool_reference",
    }
)

IMAGE_TOOL_RESULT_NOTE = "Image output of tool call {id}:"
TOOL_LOADED_NOTE = "Tool loaded: {name}"
SYSTEM_REMINDER = "<system-reminder>\n{text}\n</system-reminder>"

# The forced tool that carries structured output to providers without json_schema response_format.
STRUCTURED_TOOL = "structured_output"
STRUCTURED_TOOL_DESCRIPTION = (
    "Give your final answer by calling this tool exactly once; its arguments are the answer, "
    "a JSON value that matches the schema."
)
# A non-object schema travels as this one property of an object (function parameters must be objects).
STRUCTURED_WRAP_KEY = "value"


@dataclass(frozen=True)
class RequestContext:
    """What translating the response needs to know about the request."""

    client_model: str
    upstream_model: str
    dialect: Dialect = DEFAULT_DIALECT
    tool_names: dict[str, str] = field(default_factory=dict)
    stop_sequences: tuple[str, ...] = ()
    input_tokens: int | None = None  # None: estimated from `source` when first needed
    stream: bool = False
    thinking: bool = False
    source: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    session: str | None = None  # the Claude Code session id (never sent upstream as it is)
    # Upstream name of the forced structured-output tool, whose arguments are the answer text.
    structured_tool: str = ""
    # The structured answer is the tool arguments' STRUCTURED_WRAP_KEY (a non-object schema).
    structured_wrapped: bool = False

    def prompt_tokens(self) -> int:
        """The estimated input tokens, computed on first use: a non-streamed answer that reports
        its usage never needs it, and a stream needs it only for `message_start`."""
        if self.input_tokens is None:
            estimate = estimate_input_tokens(self.source) if self.source is not None else 0
            object.__setattr__(self, "input_tokens", estimate)
            object.__setattr__(self, "source", None)  # a long stream must not keep the whole request alive
        return self.input_tokens or 0


@dataclass(frozen=True)
class Translation:
    body: dict[str, Any]
    context: RequestContext
    # Headers the upstream request must carry on top of auth (session affinity for caching).
    headers: dict[str, str] = field(default_factory=dict)


def _text_of(blocks: Any) -> str:
    if isinstance(blocks, str):
        return blocks
    parts = []
    for block in blocks or []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif isinstance(block, str):
            parts.append(block)
    return "\n\n".join(p for p in parts if p)


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return "" if system.startswith(BILLING_HEADER_PREFIX) else system
    texts = []
    for block in system or []:
        if not isinstance(block, dict):
            continue
        text = str(block.get("text", ""))
        if text.startswith(BILLING_HEADER_PREFIX) or not text:
            continue
        texts.append(text)
    return "\n\n".join(texts)


def _system_content(system: Any, dialect: Dialect) -> str | list[dict[str, Any]]:
    """The system text; as text parts keeping their breakpoints for providers that take them."""
    if not dialect.cache_breakpoints or not isinstance(system, list):
        return _system_text(system)
    parts: list[dict[str, Any]] = []
    for block in system:
        if not isinstance(block, dict):
            continue
        text = str(block.get("text", ""))
        if text.startswith(BILLING_HEADER_PREFIX) or not text:
            continue
        parts.append(_marked({"type": "text", "text": text}, block, dialect))
    if not any("cache_control" in p for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _marked(part: dict[str, Any], block: Any, dialect: Dialect) -> dict[str, Any]:
    """`part` with the block's cache breakpoint, where the provider takes breakpoints."""
    if dialect.cache_breakpoints and isinstance(block, dict):
        mark = cache_mark(block.get("cache_control"), dialect.cache_ttl)
        if mark is not None:
            part["cache_control"] = mark
    return part


def _image_part(source: dict[str, Any]) -> dict[str, Any] | None:
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif kind == "url":
        url = str(source.get("url", ""))
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: dict[str, Any], dialect: Dialect) -> list[dict[str, Any]]:
    source = block.get("source") or {}
    title = block.get("title")
    header = f"Document: {title}\n" if title else ""
    kind = source.get("type")
    if kind == "text":
        return [{"type": "text", "text": header + str(source.get("data", ""))}]
    if kind == "content":
        inner = source.get("content")
        return [{"type": "text", "text": header + _text_of(inner)}]
    if kind == "base64":
        media = source.get("media_type", "application/pdf")
        if dialect.pdf_file_parts:
            filename = (title or "document") + (".pdf" if media == "application/pdf" else "")
            return [
                {
                    "type": "file",
                    "file": {"filename": filename, "file_data": f"data:{media};base64,{source.get('data', '')}"},
                }
            ]
        return [{"type": "text", "text": f"[{header.strip() or 'Document'} ({media}) omitted: "
                 "this provider does not accept file attachments]"}]
    if kind == "url":
        return [{"type": "text", "text": f"{header}[Document at {source.get('url', '')}]"}]
    return [{"type": "text", "text": f"[{header.strip() or 'Document'} omitted]"}]


def _flatten_block(block: dict[str, Any]) -> str:
    """A readable text stand-in for a block that cannot travel upstream as itself."""
    kind = block.get("type")
    if kind == "tool_reference":
        return TOOL_LOADED_NOTE.format(name=block.get("tool_name", ""))
    if kind == "search_result":
        return "\n".join(
            x for x in (str(block.get("title", "")), str(block.get("source", "")), _text_of(block.get("content"))) if x
        )
    if kind in ("server_tool_use", "web_search_tool_result"):
        return history_text(block)  # the results as text, snippets included when they are ours
    content = block.get("content")
    inner = _text_of(content) if isinstance(content, (list, str)) else ""
    return f"[{kind}]" + (f"\n{inner}" if inner else "")


def _user_parts(blocks: list[Any], dialect: Dialect) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            part = _image_part(block.get("source") or {})
            parts.append(part or {"type": "text", "text": "[image omitted: file references are not supported]"})
        elif kind == "document":
            parts.extend(_document_parts(block, dialect))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            parts.append({"type": "text", "text": _flatten_block(block)})
        if dialect.cache_breakpoints and parts:
            _marked(parts[-1], block, dialect)
    return parts


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """All-text content as one string (the form every provider accepts), unless a part carries
    a cache breakpoint that must stay on it."""
    if all(p.get("type") == "text" and "cache_control" not in p for p in parts):
        return "\n\n".join(p["text"] for p in parts if p["text"])
    return parts


def _tool_result_messages(block: dict[str, Any], dialect: Dialect) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result → the tool message, plus image/file parts that must follow as a user turn."""
    tool_id = to_upstream_id(str(block.get("tool_use_id", "")), dialect.tool_id_style)
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for item in content:
            if isinstance(item, str):
                texts.append(item)
                continue
            kind = item.get("type")
            if kind == "text":
                texts.append(str(item.get("text", "")))
            elif kind == "image":
                part = _image_part(item.get("source") or {})
                if part:
                    images.append(part)
                    texts.append("[image attached in the next message]")
            elif kind == "document":
                for part in _document_parts(item, dialect):
                    if part["type"] == "text":
                        texts.append(part["text"])
                    else:  # a file part: like images, it can only travel in a user message
                        images.append(part)
                        texts.append("[document attached in the next message]")
            else:
                texts.append(_flatten_block(item))
        text = "\n\n".join(t for t in texts if t)
    else:
        text = "" if content is None else str(content)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error: the tool call failed."
    if images:
        images = [{"type": "text", "text": IMAGE_TOOL_RESULT_NOTE.format(id=tool_id)}, *images]
    if dialect.cache_breakpoints and block.get("cache_control"):
        part = _marked({"type": "text", "text": text}, block, dialect)
        return {"role": "tool", "tool_call_id": tool_id, "content": [part]}, images
    return {"role": "tool", "tool_call_id": tool_id, "content": text}, images


def _user_messages(content: Any, dialect: Dialect) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict[str, Any]] = []
    follow_up: list[dict[str, Any]] = []
    others: list[Any] = []
    for block in content or []:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            message, images = _tool_result_messages(block, dialect)
            tool_messages.append(message)
            follow_up.extend(images)
        else:
            others.append(block)
    out = list(tool_messages)
    parts = follow_up + _user_parts(others, dialect)
    if parts:
        out.append({"role": "user", "content": _collapse(parts)})
    return out


def _assistant_message(content: Any, dialect: Dialect) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    marks: dict[int, dict[str, Any]] = {}  # text index → breakpoint, for providers that take them
    for block in content or []:
        if isinstance(block, str):
            texts.append(block)
            continue
        kind = block.get("type")
        if kind == "text":
            if dialect.cache_breakpoints and block.get("cache_control"):
                marks[len(texts)] = _marked({}, block, dialect)
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            thinking.append(str(block.get("thinking", "")))
        elif kind == "redacted_thinking":
            continue
        elif kind == "tool_use":
            calls.append(
                {
                    "id": to_upstream_id(str(block.get("id", "")), dialect.tool_id_style),
                    "type": "function",
                    "function": {
                        "name": to_upstream_tool_name(str(block.get("name", "")), dialect.tool_name_max),
                        "arguments": dumps_text(block.get("input", {})),
                    },
                }
            )
        else:
            texts.append(_flatten_block(block) + "\n\n")  # a paragraph of its own, not run into the next
    text = "".join(texts)
    if not text and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if marks and text:
        message["content"] = [{"type": "text", "text": t, **marks.get(n, {})} for n, t in enumerate(texts) if t]
    if calls:
        message["tool_calls"] = calls
        if dialect.reasoning_history == "tool_turns" and thinking:
            message["reasoning_content"] = "".join(thinking)
    return message


def _messages(body: dict[str, Any], dialect: Dialect) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = _system_content(body.get("system"), dialect)
    if system:
        out.append({"role": "system", "content": system})
    for message in body.get("messages") or []:
        role = message.get("role")
        content = message.get("content")
        if role == "user":
            out.extend(_user_messages(content, dialect))
        elif role == "assistant":
            translated = _assistant_message(content, dialect)
            if translated:
                out.append(translated)
        elif role == "system":
            text = _system_content(content, dialect)
            if text:  # an empty one (after /compact) is dropped: providers reject empty content
                _system_message(out, text, dialect)
    if dialect.cache_breakpoints:
        limit_breakpoints(out, dialect.cache_breakpoints)
    return out


def _system_message(out: list[dict[str, Any]], content: str | list[dict[str, Any]], dialect: Dialect) -> None:
    """A `role: system` message inside the conversation, in the form the provider accepts
    (text parts keep their cache breakpoints where the provider takes them)."""
    if dialect.mid_system == "keep" or all(m["role"] == "system" for m in out):
        previous = out[-1]["content"] if out and out[-1]["role"] == "system" else None
        if isinstance(previous, str) and isinstance(content, str):
            out[-1] = {"role": "system", "content": f"{previous}\n\n{content}"}
        else:
            out.append({"role": "system", "content": content})
        return
    text = content if isinstance(content, str) else "\n\n".join(str(p.get("text", "")) for p in content)
    reminder = SYSTEM_REMINDER.format(text=text)
    last = out[-1]
    if last["role"] == "user" and isinstance(last["content"], str):
        out[-1] = {"role": "user", "content": f"{last['content']}\n\n{reminder}"}
    elif last["role"] == "user":
        out[-1] = {"role": "user", "content": [*last["content"], {"type": "text", "text": reminder}]}
    else:
        out.append({"role": "user", "content": reminder})


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def clean_schema(schema: Any, dialect: Dialect) -> Any:
    """A JSON schema without the keywords this provider rejects (property names are kept).

    Copy-on-write: parts with nothing to strip are returned as they are, not rebuilt.
    """
    if not isinstance(schema, dict):
        return schema
    if dialect.merge_all_of and isinstance(schema.get("allOf"), list):
        schema = _merge_all_of(schema)
    strip_keys, strip_formats = dialect.strip_schema_keys, dialect.strip_formats
    out: dict[str, Any] | None = None
    items = list(schema.items())
    for position, (key, value) in enumerate(items):
        drop = key in strip_keys or (
            key == "format" and isinstance(value, str) and ("*" in strip_formats or value in strip_formats)
        )
        new = value
        if key == "oneOf" and dialect.one_of_as_any_of and "anyOf" not in schema and isinstance(value, list):
            if out is None:
                out = dict(items[:position])
            out["anyOf"] = _clean_list(value, dialect)
            continue
        if not drop:
            if key in _SCHEMA_MAPS and isinstance(value, dict):
                cleaned = {name: clean_schema(sub, dialect) for name, sub in value.items()}
                if any(cleaned[name] is not sub for name, sub in value.items()):
                    new = cleaned
            elif key in _SCHEMA_ONE and isinstance(value, (dict, list)):
                new = _clean_list(value, dialect) if isinstance(value, list) else clean_schema(value, dialect)
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                new = _clean_list(value, dialect)
        if out is None and (drop or new is not value):
            out = dict(items[:position])  # the first change: copy what came before, order kept
        if out is not None and not drop:
            out[key] = new
    return schema if out is None else out


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """`allOf` folded into its parent, for validators that reject it. A keyword two parts both
    set keeps the parent's (or the first) value: the schema gets looser, never stricter, and the
    client still validates the arguments against its own schema."""
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        part = _merge_all_of(part) if isinstance(part.get("allOf"), list) else part
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**value, **merged[key]}
            elif key == "required" and isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = [*merged[key], *(r for r in value if r not in merged[key])]
            else:
                merged.setdefault(key, value)
    return merged


def _clean_list(values: list[Any], dialect: Dialect) -> list[Any]:
    cleaned = [clean_schema(v, dialect) for v in values]
    return cleaned if any(c is not v for c, v in zip(cleaned, values, strict=True)) else values


def schema_key(dialect: Dialect) -> tuple[Any, ...]:
    """The dialect fields that change a cleaned schema (part of every cache key for one)."""
    return (dialect.strip_schema_keys, dialect.strip_formats, dialect.merge_all_of, dialect.one_of_as_any_of)


_CLEANED: dict[tuple[Any, ...], Any] = {}
_CLEANED_MAX = 512  # Claude Code has ~24 tools; a few clients and versions fit many times over


def _remembered(cache: dict[tuple[Any, ...], Any], limit: int, value: Any, extra: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """`compute()`, remembered per serialised `value` and `extra` in a cache of at most `limit`
    entries; computed afresh for what orjson cannot serialise (huge integers, deep nesting)."""
    try:
        key = (dumps(value), *extra)
    except (TypeError, ValueError, RecursionError):
        return compute()
    found = cache.get(key)
    if found is None:
        if len(cache) >= limit:
            cache.clear()
        # Kept as an exact-size copy: orjson's bytes hold the writer's whole buffer (~3.4 KB of memory
        # for a 100-byte schema), and a worker keeps up to `limit` keys for as long as it lives.
        key = (bytes(memoryview(key[0])), *key[1:])
        found = cache[key] = compute()
    return found


def cleaned_schema(schema: Any, dialect: Dialect) -> Any:
    """`clean_schema`, remembered: Claude Code sends the same tool schemas on every turn, and
    serialising one (the cache key) costs a twentieth of cleaning it. The result is shared
    between requests, so it must never be mutated — nothing downstream does."""
    return _remembered(_CLEANED, _CLEANED_MAX, schema, schema_key(dialect), lambda: clean_schema(schema, dialect))


ToolParts = tuple[tuple[tuple[str, Any, Any], ...], dict[str, str]]
_TOOL_LISTS: dict[tuple[Any, ...], ToolParts] = {}
_TOOL_LISTS_MAX = 32  # a few clients, versions and MCP sets; each entry holds its ~25 KB key


def _tool_parts(tools: Any, dialect: Dialect) -> ToolParts:
    """(name, parameters, description) of each function tool, and the upstream → client names
    that had to change. Remembered for the whole list: Claude Code sends the same tools on every
    turn, and one serialisation of the list (the key) costs half of translating it again."""
    if not isinstance(tools, list):
        return _translate_tools(tools, dialect)
    extra = (dialect.tool_name_max, *schema_key(dialect))
    return _remembered(_TOOL_LISTS, _TOOL_LISTS_MAX, tools, extra, lambda: _translate_tools(tools, dialect))


def _translate_tools(tools: Any, dialect: Dialect) -> ToolParts:
    functions = []
    for tool in tools or ():
        kind = tool.get("type")
        if kind not in (None, "custom") or "input_schema" not in tool:
            continue  # server tools (web_search_2025…, bash_2025…) have no OpenAI form
        functions.append(
            (
                to_upstream_tool_name(str(tool["name"]), dialect.tool_name_max),
                cleaned_schema(tool.get("input_schema") or {"type": "object"}, dialect),
                tool.get("description"),
            )
        )
    names = [str(t.get("name", "")) for t in tools or () if isinstance(t, dict)]
    return tuple(functions), tool_name_map(names, dialect.tool_name_max)


def _tools(parts: ToolParts) -> list[dict[str, Any]]:
    """The OpenAI `tools` list, new dicts every time (the parts are shared between requests)."""
    out = []
    for name, parameters, description in parts[0]:
        function: dict[str, Any] = {"name": name, "parameters": parameters}
        if description:
            function["description"] = description
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any], dialect: Dialect) -> Any:
    kind = choice.get("type")
    if kind == "any":
        return dialect.tool_choice_any
    if kind == "none":
        return "none"
    if kind == "tool":
        return {"type": "function", "function": {"name": to_upstream_tool_name(str(choice.get("name", "")), dialect.tool_name_max)}}
    return "auto"


def reasoning_effort(body: dict[str, Any], dialect: Dialect) -> str | None:
    """The effort a request's thinking settings ask for, in the provider's vocabulary."""
    thinking = body.get("thinking") or {}
    kind = thinking.get("type")
    if kind == "disabled":
        return None
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    wanted = effort.lower() if isinstance(effort, str) and effort else None
    if kind == "enabled" and not wanted:
        budget = int(thinking.get("budget_tokens") or 0)
        wanted = "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if kind is None and not wanted:
        return None
    if kind == "adaptive" and not wanted:
        wanted = "medium"
    allowed = dialect.reasoning_efforts
    if wanted in allowed:
        return wanted
    order = ["none", "minimal", "low", "medium", "high", "xhigh", "max"]
    rank = order.index(wanted) if wanted in order else order.index("medium")
    # nearest allowed effort, preferring the stronger one
    best = min(allowed, key=lambda e: (abs(order.index(e) - rank) if e in order else 99, -order.index(e) if e in order else 0))
    return best


def _apply_reasoning(out: dict[str, Any], body: dict[str, Any], dialect: Dialect, model: str) -> None:
    thinking = body.get("thinking") or {}
    disabled = thinking.get("type") == "disabled"
    effort = reasoning_effort(body, dialect)
    param = dialect.reasoning_param
    applies = dialect.reasoning_param_all_models or dialect.is_reasoning_model(model)
    if param == "reasoning_effort" and effort and applies:
        out["reasoning_effort"] = effort
    elif param == "openrouter":
        if disabled:
            out["reasoning"] = {"enabled": False}
        elif effort:
            out["reasoning"] = {"effort": effort if effort in ("low", "medium", "high") else "high"}
    elif param == "chat_template_kwargs" and (effort or disabled):
        out["chat_template_kwargs"] = {"enable_thinking": not disabled}
    elif param == "zai" and (effort or disabled):
        out["thinking"] = {"type": "disabled" if disabled else "enabled"}


def _user_field(metadata: Any, dialect: Dialect) -> str | None:
    if not dialect.user_field or not isinstance(metadata, dict):
        return None
    user = metadata.get("user_id")
    if not isinstance(user, str) or not user:
        return None
    if len(user) > dialect.user_max_len:
        return hashlib.sha256(user.encode()).hexdigest()[: dialect.user_max_len]
    return user


def translate_request(
    body: dict[str, Any],
    *,
    model: str | None = None,
    dialect: Dialect = DEFAULT_DIALECT,
    forward: dict[str, Any] | None = None,
    session: str | None = None,
) -> Translation:
    """Translate a validated Anthropic request body.

    `model` is the upstream model (defaults to the requested one); `forward` holds unknown
    top-level fields the caller decided to pass through; `session` is the Claude Code session id
    (`caching.session_id`), hashed into the provider's cache key and affinity header.
    """
    client_model = str(body.get("model", ""))
    upstream_model = model or client_model
    reasoning = dialect.is_reasoning_model(upstream_model)
    out: dict[str, Any] = {"model": upstream_model, "messages": _messages(body, dialect)}

    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if dialect.max_tokens_limit and max_tokens > dialect.max_tokens_limit:
            max_tokens = dialect.max_tokens_limit
        out["max_completion_tokens" if reasoning else dialect.max_tokens_field] = max_tokens

    if not reasoning:
        for name in ("temperature", "top_p"):
            if body.get(name) is not None:
                out[name] = body[name]
        if dialect.top_k and body.get("top_k") is not None:
            out["top_k"] = body["top_k"]
    if body.get("stop_sequences") and not reasoning:  # o-series / gpt-5 reject `stop`
        out["stop"] = list(body["stop_sequences"])

    tool_parts = _tool_parts(callable_tools(body), dialect)
    tools = _tools(tool_parts)
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            out["tool_choice"] = _tool_choice(choice, dialect)
            if choice.get("disable_parallel_tool_use") and dialect.parallel_tool_calls:
                out["parallel_tool_calls"] = False
    structured_tool, wrapped = _apply_output_format(out, body, dialect, tool_parts)

    user = _user_field(body.get("metadata"), dialect)
    if user:
        out["user"] = user
    _apply_reasoning(out, body, dialect, upstream_model)
    headers = _apply_caching(out, body, dialect, upstream_model, session)

    stream = bool(body.get("stream"))
    if stream:
        out["stream"] = True
        if dialect.stream_usage:
            out["stream_options"] = {"include_usage": True}
    for key, value in (forward or {}).items():
        out.setdefault(key, value)
    for key, value in dialect.extra_body.items():
        out.setdefault(key, value)

    thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    context = RequestContext(
        client_model=client_model,
        upstream_model=upstream_model,
        dialect=dialect,
        tool_names=dict(tool_parts[1]),
        stop_sequences=tuple(body.get("stop_sequences") or ()),
        source=body,
        stream=stream,
        thinking=thinking,
        session=session,
        structured_tool=structured_tool,
        structured_wrapped=wrapped,
    )
    return Translation(out, context, headers)


def _apply_caching(
    out: dict[str, Any], body: dict[str, Any], dialect: Dialect, model: str, session: str | None
) -> dict[str, str]:
    """Cache key, retention, affinity and a top-level breakpoint, as the dialect says; returns the
    headers the upstream request needs."""
    headers: dict[str, str] = {}
    if dialect.cache_breakpoints and body.get("cache_control"):
        mark = cache_mark(body["cache_control"], dialect.cache_ttl)
        if mark is not None:
            out["cache_control"] = mark
    if dialect.cache_retention and (
        not dialect.cache_retention_models or any(fnmatch.fnmatchcase(model, p) for p in dialect.cache_retention_models)
    ) and long_ttl(body):
        out["prompt_cache_retention"] = dialect.cache_retention
    if session and dialect.wants_session():
        key = cache_key(session)
        if dialect.cache_key_field:
            out[dialect.cache_key_field] = key
        if dialect.affinity_field:
            out[dialect.affinity_field] = key
        if dialect.affinity_header:
            headers[dialect.affinity_header] = key
    return headers


def loaded_tool_names(messages: Any) -> set[str]:
    """Names of the deferred tools that `tool_reference` blocks in tool results have loaded."""
    names: set[str] = set()
    for message in messages or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list) or message.get("role") != "user":
            continue
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            inner = block.get("content")
            if isinstance(inner, list):
                names.update(
                    str(item.get("tool_name"))
                    for item in inner
                    if isinstance(item, dict) and item.get("type") == "tool_reference"
                )
    return names


def callable_tools(body: dict[str, Any]) -> list[Any]:
    """The tools the model may call now, as the API decides it: every tool not marked
    `defer_loading`, plus each deferred one a `tool_reference` has loaded. So Claude Code's
    `DeferredToolPlaceholder` never reaches the model, and unloaded MCP schemas cost no tokens."""
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not any(isinstance(t, dict) and t.get("defer_loading") for t in tools):
        return tools
    loaded = loaded_tool_names(body.get("messages"))
    return [t for t in tools if not (isinstance(t, dict) and t.get("defer_loading")) or t.get("name") in loaded]


def output_format_schema(body: dict[str, Any]) -> Any:
    """The JSON schema `output_config.format` asks the answer to match, or None."""
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


def strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts `schema`: every object closed, every property required."""
    if isinstance(schema, list):
        return all(strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    props = schema.get("properties")
    if schema.get("type") == "object" or isinstance(props, dict):
        if schema.get("additionalProperties") is not False:
            return False
        if isinstance(props, dict) and set(schema.get("required") or ()) != set(props):
            return False
    return all(
        strict_compatible(v)
        for k, v in schema.items()
        if k in _SCHEMA_ONE or k in _SCHEMA_LISTS or k in ("properties", "$defs", "definitions")
        for v in ([*v.values()] if k in ("properties", "$defs", "definitions") and isinstance(v, dict) else [v])
    )


def _apply_output_format(out: dict[str, Any], body: dict[str, Any], dialect: Dialect, tool_parts: ToolParts) -> tuple[str, bool]:
    """`output_config.format` as `response_format` where the provider takes json_schema, else as a
    tool the model must call (forced when it is the only tool). Returns (tool name, wrapped)."""
    schema = output_format_schema(body)
    if schema is None:
        return "", False
    cleaned = cleaned_schema(schema, dialect)
    if dialect.response_format_json_schema:
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": cleaned, "strict": strict_compatible(cleaned)},
        }
        return "", False
    taken = {name for name, _, _ in tool_parts[0]}
    name = STRUCTURED_TOOL
    while name in taken:
        name = "_" + name
    wrapped = cleaned.get("type") != "object"
    parameters = (
        {"type": "object", "properties": {STRUCTURED_WRAP_KEY: cleaned}, "required": [STRUCTURED_WRAP_KEY]}
        if wrapped
        else cleaned
    )
    tool = {"type": "function", "function": {"name": name, "description": STRUCTURED_TOOL_DESCRIPTION, "parameters": parameters}}
    out["tools"] = [*out.get("tools", ()), tool]
    if len(out["tools"]) == 1:
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    return name, wrapped


def anthropic_to_openai(body: dict[str, Any], model: str | None = None, dialect: Dialect = DEFAULT_DIALECT) -> dict[str, Any]:
    """Just the upstream body, for callers that do not need the response context."""
    return translate_request(body, model=model, dialect=dialect).body
