"""Context overflow said Anthropic's way, and never learned as a max_tokens limit (issue 15)."""

from __future__ import annotations

import json

import pytest

from claude_proxy.translate.errors import from_upstream_response
from claude_proxy.translate.overflow import Overflow, overflow_error, overflow_message, parse_overflow, with_window
from claude_proxy.translate.recovery import limit_from_message, recover

BODY = {"model": "m", "messages": [], "max_tokens": 32000, "stream": True}

# (provider, wording, prompt tokens, window) — the prompt does not fit
OVERFLOWS = [
    ("openai", "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 "
     "tokens. Please reduce the length of the messages.", 130512, 128000),
    ("openai split", "This model's maximum context length is 128000 tokens. However, you requested 140000 tokens "
     "(130000 in the messages, 10000 in the completion). Please reduce the length of the messages or completion.",
     130000, 128000),
    ("deepseek", "This model's maximum context length is 65536 tokens. However, you requested 70000 tokens "
     "(70000 in the messages, 0 in the completion). Please reduce the length of the messages or completion.",
     70000, 65536),
    ("sglang", "Requested token count exceeds the model's maximum context length of 4096 tokens. You requested a "
     "total of 5000 tokens: 4500 tokens from the input messages and 500 tokens for the completion. Please reduce "
     "the number of tokens in the input messages or the completion to fit within the limit.", 4500, 4096),
    ("sglang input", "The input (5000 tokens) is longer than the model's context length (4096 tokens).", 5000, 4096),
    ("vllm", "This model's maximum context length is 32768 tokens. However, you requested 1000 output tokens and "
     "your prompt contains 40000 input tokens, for a total of 41000 tokens.", 40000, 32768),
    ("mistral", "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context "
     "length", 40000, 32768),
    ("gemini", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
     1200000, 1048576),
    ("kimi", "Your request exceeded model token limit: 262144 (requested: 300000)", 300000, 262144),
    ("llama.cpp", "request (20014 tokens) exceeds the available context size (16384 tokens), try increasing it",
     20014, 16384),
    ("openrouter", "This endpoint's maximum context length is 8192 tokens. However, you requested about 9000 tokens "
     "(8800 of text input, 200 in the output). Please reduce the length of either one.", 8800, 8192),
]


@pytest.mark.parametrize(("provider", "message", "prompt", "window"), OVERFLOWS)
def test_provider_overflows_become_anthropics_prompt_is_too_long(
    provider: str, message: str, prompt: int, window: int
) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    status, envelope = from_upstream_response(400, body, provider)
    assert status == 400
    assert envelope == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": f"prompt is too long: {prompt} tokens > {window} maximum"},
    }


@pytest.mark.parametrize(("provider", "message", "prompt", "window"), OVERFLOWS)
def test_an_overflow_is_never_a_max_tokens_lesson(provider: str, message: str, prompt: int, window: int) -> None:
    assert limit_from_message(message, 128000) is None
    assert recover({**BODY, "max_tokens": 128000}, message) is None


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("prompt too long; exceeded max context length by 120 tokens", 400),  # Ollama
        ("the request exceeds the available context size, try increasing it", 400),  # llama.cpp
        ("the input length exceeds the context length", 500),  # Ollama, as a 500: not ours to relabel
    ],
)
def test_wordings_without_numbers_use_the_estimate(message: str, status: int) -> None:
    body = json.dumps({"error": message}).encode()
    got_status, envelope = from_upstream_response(status, body, "ollama", estimate=9000)
    if status >= 500:
        assert got_status == status and "prompt is too long" not in envelope["error"]["message"]
        return
    assert (got_status, envelope["error"]["message"]) == (400, "prompt is too long: 9000 tokens > model's maximum context")


def test_openai_code_alone_marks_an_overflow() -> None:
    body = json.dumps({"error": {"message": "too much", "code": "context_length_exceeded"}}).encode()
    assert from_upstream_response(400, body, "openai", estimate=200000)[1]["error"]["message"] == (
        "prompt is too long: 200000 tokens > model's maximum context"
    )


def test_vllm_completion_too_large_is_fitted_once_and_not_remembered() -> None:
    # vLLM's "1000 in the messages, 32000 in the completion": the prompt fits; the old code learned max_tokens=1000
    message = ("This model's maximum context length is 32768 tokens. However, you requested 33000 tokens "
               "(1000 in the messages, 32000 in the completion). Please reduce the length of the messages or "
               "completion.")
    assert parse_overflow(message) == Overflow(1000, 32768, 32000)
    assert limit_from_message(message, 32000) is None
    fixed = recover(BODY, message)
    assert fixed == ({**BODY, "max_tokens": 31768}, {"max_tokens_fit": 31768})  # no "max_tokens_limit" lesson
    # and it is not an overflow for the client either: the provider's own words pass through
    status, envelope = from_upstream_response(400, json.dumps({"error": {"message": message}}).encode(), "vllm")
    assert status == 400
    assert envelope["error"]["message"].startswith("vllm: This model's maximum context length")


def test_vllm_max_tokens_too_large_wording() -> None:
    message = ("'max_tokens' or 'max_completion_tokens' is too large: 32000. This model's maximum context length is "
               "32768 tokens and your request has 1000 input tokens (32000 > 32768 - 1000).")
    assert parse_overflow(message) == Overflow(1000, 32768, 32000)
    assert recover(BODY, message) == ({**BODY, "max_tokens": 31768}, {"max_tokens_fit": 31768})


def test_max_tokens_limits_are_still_learned() -> None:
    message = "max_tokens is too large: 128000. This model supports at most 16384 completion tokens"
    assert recover({**BODY, "max_tokens": 128000}, message) == (
        {**BODY, "max_tokens": 16384}, {"max_tokens_limit": 16384}
    )


def test_overflow_error_before_the_upstream_call() -> None:
    assert overflow_error(1000, None) is None
    assert overflow_error(1000, 0) is None
    assert overflow_error(8000, 8192) is None
    assert overflow_error(9000, 8192) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "prompt is too long: 9000 tokens > 8192 maximum"},
    }


def test_unrelated_errors_are_not_overflows() -> None:
    for message in ("Invalid API key", "max_tokens must be an integer", "tool_call_id 12345 not found"):
        assert parse_overflow(message) is None


def test_a_numberless_overflow_takes_the_configured_window() -> None:
    # Ollama: no maximum in the wording; the proxy's estimate is the prompt.
    plain = overflow_message(parse_overflow("prompt too long; exceeded max context length by 120 tokens") or Overflow(), 9000)
    assert plain == "prompt is too long: 9000 tokens > model's maximum context"
    assert with_window(plain, 8192) == "prompt is too long: 9000 tokens > 8192 maximum"
    # Nothing to go on but the window: the prompt is at least one over it.
    bare = overflow_message(Overflow())
    assert with_window(bare, 8192, estimate=None) == "prompt is too long: 8193 tokens > 8192 maximum"
    assert with_window(bare, 8192, estimate=12000) == "prompt is too long: 12000 tokens > 8192 maximum"
    # An estimate under the window (the provider counts differently) still says "over".
    assert with_window(plain.replace("9000", "5000"), 8192) == "prompt is too long: 8193 tokens > 8192 maximum"
    # Numbered overflows and other errors are left alone.
    assert with_window("prompt is too long: 9000 tokens > 8192 maximum", 4096) is None
    assert with_window("max_tokens is too large", 4096) is None
    # Without a window: the estimate at least (no maximum to give); nothing to add is None.
    assert with_window(bare, None, estimate=7000) == "prompt is too long: 7000 tokens > model's maximum context"
    assert with_window(plain, None) is None
