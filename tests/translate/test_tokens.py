"""The local token estimate: exact counts for hand-checked inputs."""

from __future__ import annotations

import json

import pytest

from claude_proxy.translate.tokens import (
    IMAGE_TOKENS,
    PDF_PAGE_TOKENS,
    estimate_input_tokens,
    estimate_output_tokens,
    text_tokens,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("Hello, world!", 4),  # Hello , world !  (single spaces are free)
        ("12345", 2),  # 123 45
        ("internationalization", 4),  # 20 letters: 1 + 19 // 6
        ("a\n\nb", 3),  # a, a newline run, b
        ("a b", 2),
        ("  \n", 1),
        ('x = {"k": 1}', 9),
        ("café", 2),  # "caf" + "é"
    ],
)
def test_text_tokens(text: str, expected: int) -> None:
    assert text_tokens(text) == expected


def test_minimal_body_counts_message_overhead() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hello, world!"}]}
    assert estimate_input_tokens(body) == 4 + 4


def test_system_and_tools_are_counted() -> None:
    body = {
        "model": "m",
        "system": "Be brief.",  # 3 + 4 overhead
        "messages": [{"role": "user", "content": "Hello, world!"}],  # 4 + 4
        "tools": [{"name": "Bash", "description": "Run a command", "input_schema": {"type": "object"}}],
    }
    # tool: 12 overhead + "Bash" 1 + "Run a command" 4 ("command" is 7 letters: 2) + '{"type": "object"}' 9
    assert estimate_input_tokens(body) == 7 + 8 + 26


def test_empty_body_is_at_least_one() -> None:
    assert estimate_input_tokens({}) == 1
    assert estimate_input_tokens({"messages": [], "system": ""}) == 1


def test_block_kinds() -> None:
    pdf = "A" * 8000  # 6000 bytes decoded: two "pages"
    content = [
        {"type": "text", "text": "Hello, world!", "cache_control": {"type": "ephemeral"}},  # 4
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "xx"}},  # 1600
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a b"}},  # 2
        {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "12345"}]}},  # 2
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},  # 3000
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "QQ=="}},  # 1500
    ]
    body = {"messages": [{"role": "user", "content": content}]}
    assert estimate_input_tokens(body) == 4 + 4 + IMAGE_TOKENS + 2 + 2 + 2 * PDF_PAGE_TOKENS + PDF_PAGE_TOKENS


def test_tool_blocks_and_thinking() -> None:
    assistant = [
        {"type": "thinking", "thinking": "a b", "signature": "sig"},  # 2
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"k": 1}},  # 8 + 1 + '{"k": 1}' 7
    ]
    user = [
        {"type": "tool_result", "tool_use_id": "t1", "content": "a b"},  # 8 + 2
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "12345"}]},  # 8 + 2
        {"type": "tool_result", "tool_use_id": "t1"},  # 8 + 0
    ]
    body = {"messages": [{"role": "assistant", "content": assistant}, {"role": "user", "content": user}]}
    assert estimate_input_tokens(body) == (4 + 2 + 16) + (4 + 10 + 10 + 8)


def test_unknown_block_is_counted_as_its_json() -> None:
    block = {"type": "x"}
    body = {"messages": [{"role": "user", "content": [block]}]}
    assert estimate_input_tokens(body) == 4 + text_tokens(json.dumps(block))
    assert text_tokens(json.dumps(block)) == 9


def test_non_dict_entries_are_ignored() -> None:
    body = {"messages": ["junk", {"role": "user", "content": 5}], "tools": ["junk"]}
    assert estimate_input_tokens(body) == 4


@pytest.mark.parametrize(("chars", "expected"), [(0, 0), (1, 1), (3, 1), (8, 2), (400, 100)])
def test_estimate_output_tokens(chars: int, expected: int) -> None:
    assert estimate_output_tokens(chars) == expected
