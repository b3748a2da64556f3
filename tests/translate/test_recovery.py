"""Adjusting a request after a provider's 400 names a limit (pure functions, exact outputs)."""

from __future__ import annotations

import pytest

from claude_proxy.translate.recovery import limit_from_message, recover

BODY = {"model": "m", "messages": [], "max_tokens": 128000, "stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        # OpenAI
        (
            "max_tokens is too large: 128000. This model supports at most 16384 completion tokens, whereas you "
            "provided 128000.",
            16384,
        ),
        # DeepSeek
        ("Invalid max_tokens value, the valid range of max_tokens is [1, 8192]", 8192),
        # Groq
        (
            "`max_tokens` must be less than or equal to `32768`, the maximum value for `max_tokens` is less than the "
            "`context_window` for this model",
            32768,
        ),
        ("max_tokens: 128000 > 64000, which is the maximum allowed number of output tokens", 64000),
    ],
)
def test_limits_read_from_real_error_wordings(message: str, limit: int) -> None:
    assert limit_from_message(message, 128000) == limit


@pytest.mark.parametrize(
    "message",
    [
        "Invalid API key",
        "max_tokens must be an integer",  # no number: nothing to learn
        "messages.3: tool_call_id 12345 not found",  # numbers, but not about tokens
        "max_tokens is too large: 128000",  # no number below what was asked
        # the prompt itself is too long: no max_tokens below the request would fix that
        "This model's maximum context length is 131,072 tokens. However, you requested 140,000 tokens",
    ],
)
def test_unrelated_errors_learn_nothing(message: str) -> None:
    assert limit_from_message(message, 128000) is None


def test_recover_clamps_the_field_that_was_sent() -> None:
    body, note = recover(BODY, "max_tokens is too large: 128000. This model supports at most 16384 tokens") or ({}, {})
    assert body == {**BODY, "max_tokens": 16384}
    assert note == {"max_tokens_limit": 16384}
    reasoning = {"model": "o3", "max_completion_tokens": 100000}
    assert recover(reasoning, "max_completion_tokens: at most 65536 tokens") == (
        {"model": "o3", "max_completion_tokens": 65536},
        {"max_tokens_limit": 65536},
    )


def test_recover_drops_stream_options_an_old_server_rejects() -> None:
    body, note = recover(BODY, "Unrecognized request argument supplied: stream_options") or ({}, {})
    assert "stream_options" not in body and body["stream"] is True
    assert note == {"dropped": "stream_options"}


def test_recover_gives_up_on_anything_else() -> None:
    assert recover(BODY, "model 'm' does not exist") is None
    assert recover({"model": "m"}, "stream_options unsupported") is None
