"""What makes one OpenAI-compatible provider differ from another, as plain data.

The translator reads these fields instead of asking "which provider is this?", so a new
provider is a new row in the preset table, never a new branch in the translator.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import Any

REASONING_EFFORTS = ("minimal", "low", "medium", "high")


@dataclass(frozen=True)
class Dialect:
    name: str = "openai"
    # Field that carries max_tokens upstream; reasoning models always get max_completion_tokens.
    max_tokens_field: str = "max_tokens"
    # Glob patterns of upstream model names that are "reasoning models" (o-series, gpt-5…):
    # they take max_completion_tokens + reasoning_effort and reject sampling parameters.
    reasoning_models: tuple[str, ...] = ()
    # How a requested thinking budget reaches the provider:
    # "reasoning_effort" (top-level string), "openrouter" ({"reasoning": {...}}),
    # "chat_template_kwargs" (vLLM/Qwen enable_thinking), "zai" ({"thinking": {...}}), "none".
    reasoning_param: str = "reasoning_effort"
    # Send the reasoning parameter to every model, not only to `reasoning_models`.
    reasoning_param_all_models: bool = False
    reasoning_efforts: tuple[str, ...] = REASONING_EFFORTS
    top_k: bool = False
    stream_usage: bool = True
    user_field: bool = False
    user_max_len: int = 64
    # Past thinking blocks: "drop", or "tool_turns" to send them back as reasoning_content
    # on assistant turns that made tool calls (DeepSeek / Kimi thinking models need that).
    reasoning_history: str = "drop"
    # Reasoning inlined as <think>…</think> in content.
    think_tags: bool = False
    # "any" keeps tool ids; "alnum9" rewrites them to 9 alphanumerics (Mistral).
    tool_id_style: str = "any"
    tool_name_max: int = 64
    strip_schema_keys: frozenset[str] = frozenset({"$schema"})
    # JSON-schema "format" values removed (a "*" entry removes every format).
    strip_formats: frozenset[str] = frozenset()
    tool_choice_any: str = "required"
    parallel_tool_calls: bool = True
    # xAI reports reasoning tokens outside completion_tokens.
    reasoning_tokens_separate: bool = False
    # PDF documents as OpenAI "file" content parts (else a text note).
    pdf_file_parts: bool = False
    # Largest max_tokens the provider accepts (0: no limit). Claude Code asks for up to 128000,
    # which many providers reject outright rather than clamp.
    max_tokens_limit: int = 0
    # Prompt caching (README "Prompt caching"; each preset row cites its source).
    # Anthropic-style `cache_control` breakpoints forwarded on the same content parts, at most
    # this many per request (0: stripped, as for providers that cache automatically).
    cache_breakpoints: int = 0
    # Keep a breakpoint's `ttl` ("5m"/"1h"); without it only {"type": "ephemeral"} goes up.
    cache_ttl: bool = False
    # Body field that carries a stable per-session cache key (e.g. "prompt_cache_key"); "": none.
    cache_key_field: str = ""
    # Retention asked for when the client marks a breakpoint `ttl: "1h"` (OpenAI "24h"), sent as
    # `prompt_cache_retention` to the models matching `cache_retention_models` only.
    cache_retention: str = ""
    cache_retention_models: tuple[str, ...] = ()
    # Header / body field with the hashed session id, for providers that route a session to the
    # server holding its cache ("x-grok-conv-id", "x-session-affinity", …); "": none.
    affinity_header: str = ""
    affinity_field: str = ""
    # The provider's own web search, used for Anthropic's `web_search_*` server tool when no
    # [web_search] backend is configured (or backend = "native"): "" none, "openrouter_plugin"
    # (`plugins: [{"id": "web", ...}]`, results as `url_citation` annotations; openrouter.ai/docs,
    # "Web Search").
    native_web_search: str = ""
    # Structured outputs (`output_config.format`): True sends OpenAI's
    # `response_format: {type: json_schema, ...}`; False asks for a forced tool whose arguments
    # come back to the client as the text block.
    response_format_json_schema: bool = False
    # Schema combinators the provider's validator rejects: "allOf" merged into its parent,
    # "oneOf" sent as "anyOf" (same instances for the disjoint unions tools use).
    merge_all_of: bool = False
    one_of_as_any_of: bool = False
    # Non-leading `role: system` messages: "keep" (OpenAI accepts them anywhere) or "user"
    # (re-roled as a <system-reminder> user turn for chat templates that reject them).
    mid_system: str = "keep"
    # Extra fields merged into every upstream request (provider routing, etc.).
    extra_body: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def is_reasoning_model(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pat) for pat in self.reasoning_models)

    def wants_session(self) -> bool:
        """Whether a session id changes the upstream request (cache key or affinity)."""
        return bool(self.cache_key_field or self.affinity_header or self.affinity_field)

    def with_overrides(self, **changes: Any) -> Dialect:
        return replace(self, **changes)


DEFAULT_DIALECT = Dialect()
