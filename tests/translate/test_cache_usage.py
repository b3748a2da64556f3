"""Usage that tells the truth about the cache: every provider's shape of cache reads and writes
becomes Anthropic's cache_read_input_tokens / cache_creation_input_tokens, with input_tokens
excluding both — the same numbers streamed and not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_proxy.config.presets import PRESETS
from claude_proxy.translate import StreamTranslator, openai_to_anthropic, translate_request
from claude_proxy.translate.dialect import Dialect


def anthropic(inp: int, out: int, read: int, write: int) -> dict[str, int]:
    return {"input_tokens": inp, "output_tokens": out, "cache_creation_input_tokens": write, "cache_read_input_tokens": read}


# (provider preset, upstream usage as that provider sends it, the Anthropic usage it must become)
SHAPES: list[tuple[str, str, dict[str, Any], dict[str, int]]] = [
    (
        "openai: prompt_tokens_details.cached_tokens (OpenAI prompt-caching guide)",
        "openai",
        {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
         "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0}},
        anthropic(86, 300, 1920, 0),
    ),
    (
        "openrouter anthropic model: a cache read",
        "openrouter",
        {"prompt_tokens": 10339, "completion_tokens": 60, "total_tokens": 10399,
         "prompt_tokens_details": {"cached_tokens": 10318, "cache_write_tokens": 0}, "cost": 0.0042},
        anthropic(21, 60, 10318, 0),
    ),
    (
        "openrouter anthropic model: a cache write",
        "openrouter",
        {"prompt_tokens": 12000, "completion_tokens": 9,
         "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 11500}},
        anthropic(500, 9, 0, 11500),
    ),
    (
        "deepseek: hit/miss next to prompt_tokens_details",
        "deepseek",
        {"prompt_tokens": 1000, "completion_tokens": 345, "prompt_cache_hit_tokens": 768, "prompt_cache_miss_tokens": 232,
         "prompt_tokens_details": {"cached_tokens": 768}, "completion_tokens_details": {"reasoning_tokens": 315}},
        anthropic(232, 345, 768, 0),
    ),
    (
        "deepseek: hit/miss only",
        "deepseek",
        {"prompt_tokens": 64, "completion_tokens": 5, "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 64},
        anthropic(64, 5, 0, 0),
    ),
    (
        "deepseek-shaped gateway without prompt_tokens",
        "deepseek",
        {"completion_tokens": 5, "prompt_cache_hit_tokens": 640, "prompt_cache_miss_tokens": 36},
        anthropic(36, 5, 640, 0),
    ),
    (
        "xai: cached_tokens, reasoning outside completion_tokens (docs.x.ai usage-and-pricing)",
        "grok",
        {"prompt_tokens": 125, "completion_tokens": 48, "total_tokens": 203,
         "prompt_tokens_details": {"text_tokens": 125, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 98},
         "completion_tokens_details": {"reasoning_tokens": 30}},
        anthropic(27, 78, 98, 0),
    ),
    (
        "xai SDK-shaped usage: cached_prompt_text_tokens",
        "grok",
        {"prompt_tokens": 701, "completion_tokens": 69, "prompt_text_tokens": 701, "cached_prompt_text_tokens": 679},
        anthropic(22, 69, 679, 0),
    ),
    (
        "gemini openai-compat: prompt_tokens_details.cached_tokens",
        "gemini",
        {"prompt_tokens": 5000, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4096}},
        anthropic(904, 12, 4096, 0),
    ),
    (
        "gemini usage metadata passed through by a gateway: cached_content_token_count",
        "gemini",
        {"prompt_tokens": 5000, "completion_tokens": 12, "cached_content_token_count": 2048},
        anthropic(2952, 12, 2048, 0),
    ),
    (
        "moonshot: top-level cached_tokens",
        "moonshot",
        {"prompt_tokens": 300, "completion_tokens": 4, "cached_tokens": 256},
        anthropic(44, 4, 256, 0),
    ),
    (
        "groq: prompt_tokens_details.cached_tokens",
        "groq",
        {"prompt_tokens": 2100, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 1536}, "queue_time": 0.01},
        anthropic(564, 30, 1536, 0),
    ),
    (
        "mistral / fireworks: prompt_tokens_details.cached_tokens",
        "mistral",
        {"prompt_tokens": 900, "total_tokens": 910, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 512}},
        anthropic(388, 10, 512, 0),
    ),
    (
        "anthropic-shaped usage (passthrough gateways): already exclusive",
        "custom",
        {"input_tokens": 50, "output_tokens": 10, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200},
        anthropic(50, 10, 1000, 200),
    ),
    (
        "litellm-style: prompt_tokens inclusive plus anthropic cache fields",
        "custom",
        {"prompt_tokens": 1250, "completion_tokens": 10, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200},
        anthropic(50, 10, 1000, 200),
    ),
    (
        "responses-shaped: input_tokens_details",
        "custom",
        {"input_tokens": 500, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 400, "cache_write_tokens": 50}},
        anthropic(50, 7, 400, 50),
    ),
    (
        "no cache at all",
        "custom",
        {"prompt_tokens": 12, "completion_tokens": 3},
        anthropic(12, 3, 0, 0),
    ),
]
IDS = [s[0] for s in SHAPES]


def context(preset: str, stream: bool) -> Any:
    body = {"model": "claude-sonnet-5", "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": "Hi"}]}
    return translate_request(body, model="m", dialect=PRESETS[preset].dialect).context


@pytest.mark.parametrize(("name", "preset", "usage", "expected"), SHAPES, ids=IDS)
def test_non_streamed(name: str, preset: str, usage: dict[str, Any], expected: dict[str, int]) -> None:
    response = {"choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}], "usage": usage}
    assert openai_to_anthropic(response, context(preset, False))["usage"] == expected


@pytest.mark.parametrize(("name", "preset", "usage", "expected"), SHAPES, ids=IDS)
@pytest.mark.parametrize("where", ["usage_chunk", "finish_chunk", "x_groq"])
def test_streamed(name: str, preset: str, usage: dict[str, Any], expected: dict[str, int], where: str) -> None:
    translator = StreamTranslator(context(preset, True))
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "hel"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]},
    ]
    finish: dict[str, Any] = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if where == "usage_chunk":
        chunks += [finish, {"choices": [], "usage": usage}]
    elif where == "finish_chunk":
        chunks.append({**finish, "usage": usage})
    else:
        chunks.append({**finish, "x_groq": {"id": "req_1", "usage": usage}})
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events += translator.feed_data(json.dumps(chunk))
    events += translator.feed_data("[DONE]")
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["usage"] == expected
    assert translator.usage == expected


def test_message_start_carries_cache_figures_sent_on_the_first_chunk() -> None:
    translator = StreamTranslator(context("openrouter", True))
    usage = {"prompt_tokens": 12000, "completion_tokens": 0,
             "prompt_tokens_details": {"cached_tokens": 8000, "cache_write_tokens": 3000}}
    events = translator.feed({"choices": [{"index": 0, "delta": {"content": "x"}}], "usage": usage})
    assert events[0]["message"]["usage"] == anthropic(1000, 1, 8000, 3000)


def test_negative_or_bogus_counts_never_make_input_negative() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": "7", "prompt_tokens_details": {"cached_tokens": 50}}
    response = {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}], "usage": usage}
    assert openai_to_anthropic(response, context("openai", False))["usage"] == anthropic(0, 0, 50, 0)
    assert Dialect().reasoning_tokens_separate is False
