"""The preset table: where each provider lives, which key it wants, and its quirks as data."""

from __future__ import annotations

from dataclasses import dataclass

from claude_proxy.translate.dialect import DEFAULT_DIALECT, Dialect

STRICT_SCHEMA_KEYS = frozenset({"$schema", "propertyNames"})

# `response_format_json_schema` (structured outputs as OpenAI's json_schema response_format) is
# True where the provider documents it for chat completions:
#   openai      platform.openai.com/docs/guides/structured-outputs
#   openrouter  openrouter.ai/docs/features/structured-outputs (models that support it)
#   fireworks   docs.fireworks.ai/structured-responses/structured-response-formatting
#   grok        docs.x.ai/docs/guides/structured-outputs
#   together    docs.together.ai/docs/json-mode
#   groq        console.groq.com/docs/structured-outputs
#   mistral     docs.mistral.ai/capabilities/structured-output/custom_structured_output
#   gemini      ai.google.dev/gemini-api/docs/openai ("Structured output")
#   ollama      github.com/ollama/ollama docs/openai.md (response_format json_schema, 0.5+)
#   vllm        docs.vllm.ai/en/latest/features/structured_outputs.html
# and False where only json_object (no schema) exists, so the forced tool keeps the schema:
#   deepseek    api-docs.deepseek.com/guides/json_mode;  moonshot  platform.moonshot.ai (JSON Mode)
#   custom      unknown server: a tool call is what every OpenAI-compatible server understands.
# Gemini's OpenAI endpoint converts tool schemas to its OpenAPI subset (no allOf/oneOf/uniqueItems:
# ai.google.dev/api/caching#Schema), so those are rewritten or dropped there.


@dataclass(frozen=True)
class Preset:
    name: str
    base_url: str
    api_key_env: str | None
    format: str = "openai"  # "openai" (translate) or "anthropic" (passthrough)
    key_required: bool = True
    dialect: Dialect = DEFAULT_DIALECT
    description: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            dialect=Dialect(
                name="openai",
                max_tokens_field="max_completion_tokens",
                reasoning_models=("o1*", "o3*", "o4*", "gpt-5*"),
                user_field=True,
                pdf_file_parts=True,
                # Automatic prefix caching routed by `prompt_cache_key`; `prompt_cache_retention: "24h"`
                # (extended retention, gpt-5.x and gpt-4.1 families) when the client asks for 1h breakpoints.
                # Source: developers.openai.com/docs/guides/prompt-caching (#prompt-cache-retention);
                # openai-python f9d2d13 (enum "in_memory" | "24h").
                cache_key_field="prompt_cache_key",
                cache_retention="24h",
                cache_retention_models=("gpt-5*", "gpt-4.1*"),
                response_format_json_schema=True,
            ),
            description="OpenAI",
        ),
        Preset(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            dialect=Dialect(
                name="openrouter",
                reasoning_param="openrouter",
                top_k=True,
                user_field=True,
                user_max_len=128,
                pdf_file_parts=True,
                # `cache_control` on content parts for Anthropic and Gemini models, at most four
                # breakpoints, `ttl` "5m" | "1h"; sticky provider routing keyed by `x-session-id`
                # (≤ 256 chars). Source: openrouter.ai/docs/guides/best-practices/prompt-caching,
                # openrouter.ai/docs/client-sdks/typescript/models/anthropiccachecontroldirective.
                cache_breakpoints=4,
                cache_ttl=True,
                affinity_header="x-session-id",
                native_web_search="openrouter_plugin",
                response_format_json_schema=True,
            ),
            description="OpenRouter",
        ),
        Preset(
            "fireworks",
            "https://api.fireworks.ai/inference/v1",
            "FIREWORKS_API_KEY",
            # Automatic prefix caching per replica; `x-session-affinity` pins a session to one replica.
            # Source: docs.fireworks.ai/guides/prompt-caching ("user" field or x-session-affinity header).
            dialect=Dialect(
                name="fireworks",
                top_k=True,
                reasoning_history="tool_turns",
                affinity_header="x-session-affinity",
                response_format_json_schema=True,
            ),
            description="Fireworks AI",
        ),
        Preset(
            "grok",
            "https://api.x.ai/v1",
            "XAI_API_KEY",
            dialect=Dialect(
                name="grok",
                reasoning_models=("grok-3-mini*",),
                reasoning_efforts=("low", "high"),
                reasoning_tokens_separate=True,
                # Automatic caching, stored per server: `x-grok-conv-id` routes a conversation to one
                # (Chat Completions; prompt_cache_key is the Responses API's). Cached tokens come back in
                # prompt_tokens_details.cached_tokens. Source: docs.x.ai/developers/advanced-api-usage/
                # prompt-caching/maximizing-cache-hits and …/usage-and-pricing.
                affinity_header="x-grok-conv-id",
                response_format_json_schema=True,
            ),
            description="xAI Grok",
        ),
        Preset(
            "together",
            "https://api.together.xyz/v1",
            "TOGETHER_API_KEY",
            # No documented cache controls for Chat Completions were found: nothing sent [UNVERIFIED].
            dialect=Dialect(name="together", top_k=True, think_tags=True, response_format_json_schema=True),
            description="Together AI",
        ),
        Preset(
            "groq",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            # Automatic prefix caching, nothing to send (and Groq rejects unknown fields); reads in
            # prompt_tokens_details.cached_tokens. Source: console.groq.com/docs/prompt-caching.
            dialect=Dialect(
                name="groq",
                strip_schema_keys=STRICT_SCHEMA_KEYS,
                reasoning_param="none",
                response_format_json_schema=True,
            ),
            description="Groq",
        ),
        Preset(
            "deepseek",
            "https://api.deepseek.com/v1",
            "DEEPSEEK_API_KEY",
            # Context caching on disk, on by default, no request field; usage reports
            # prompt_cache_hit_tokens / prompt_cache_miss_tokens. Source: api-docs.deepseek.com/guides/kv_cache.
            dialect=Dialect(name="deepseek", reasoning_param="none", reasoning_history="tool_turns"),
            description="DeepSeek",
        ),
        Preset(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            dialect=Dialect(
                name="mistral",
                tool_id_style="alnum9",
                tool_choice_any="any",
                reasoning_param="none",
                stream_usage=False,
                # `prompt_cache_key` raises the chance of a prefix-cache hit. Source:
                # docs.mistral.ai/studio-api/conversations/advanced/prompt-caching.
                cache_key_field="prompt_cache_key",
                response_format_json_schema=True,
                mid_system="user",
            ),
            description="Mistral",
        ),
        Preset(
            "moonshot",
            "https://api.moonshot.ai/v1",
            "MOONSHOT_API_KEY",
            dialect=Dialect(
                name="moonshot", reasoning_param="none", reasoning_history="tool_turns", tool_choice_any="auto"
            ),
            description="Moonshot / Kimi",
        ),
        Preset(
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta/openai",
            "GEMINI_API_KEY",
            dialect=Dialect(
                name="gemini",
                strip_schema_keys=STRICT_SCHEMA_KEYS | {"exclusiveMinimum", "exclusiveMaximum", "uniqueItems"},
                merge_all_of=True,
                one_of_as_any_of=True,
                response_format_json_schema=True,
                strip_formats=frozenset({"*"}),
                reasoning_param_all_models=False,
                reasoning_efforts=("low", "high"),
                parallel_tool_calls=False,
                # Implicit caching (Gemini 2.5 and newer) needs nothing; the OpenAI-compatible endpoint
                # takes no cache_control. Source: ai.google.dev/gemini-api/docs/caching.
            ),
            description="Google Gemini (OpenAI-compatible endpoint)",
        ),
        Preset(
            "anthropic",
            "https://api.anthropic.com",
            "ANTHROPIC_API_KEY",
            format="anthropic",
            # Passthrough: cache_control (and ttl) reach Anthropic unchanged, usage comes back as is.
            description="Anthropic (passthrough, no translation)",
        ),
        Preset(
            "ollama",
            "http://localhost:11434/v1",
            None,
            key_required=False,
            dialect=Dialect(
                name="ollama", reasoning_param="none", response_format_json_schema=True, mid_system="user"
            ),
            description="Ollama (local)",
        ),
        Preset(
            "vllm",
            "http://localhost:8000/v1",
            "VLLM_API_KEY",
            key_required=False,
            dialect=Dialect(
                name="vllm",
                top_k=True,
                think_tags=True,
                reasoning_param="none",
                response_format_json_schema=True,
                mid_system="user",
            ),
            description="vLLM (local)",
        ),
        Preset(
            "custom",
            "",
            None,
            key_required=False,
            dialect=Dialect(name="custom"),
            description="any OpenAI-compatible endpoint (needs base_url)",
        ),
    )
}


def preset(name: str) -> Preset | None:
    return PRESETS.get(name.lower())
