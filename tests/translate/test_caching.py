"""Prompt caching on the request side, per preset family, from real Claude Code 2.1.332 bodies:
where breakpoints land, the cache key, retention and affinity headers — and that nobody else
gets any of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_proxy.config.presets import PRESETS
from claude_proxy.translate import translate_request
from claude_proxy.translate.caching import cache_key, limit_breakpoints, session_from_metadata, session_id
from claude_proxy.translate.dialect import Dialect
from tests.support.fixtures import CLAUDE_CODE_FIXTURES

HEADERS = json.loads((CLAUDE_CODE_FIXTURES.parent / "claude-code-headers.json").read_text())["fixtures"]


def capture(name: str) -> tuple[dict[str, Any], dict[str, str]]:
    body = json.loads((CLAUDE_CODE_FIXTURES / name).read_text())
    headers = {k: v for k, v in HEADERS[name]["headers"]}
    return body, headers


def upstream(preset: str, name: str, model: str = "m") -> tuple[dict[str, Any], dict[str, str], str]:
    body, headers = capture(name)
    session = session_id(body, headers)
    assert session is not None
    translation = translate_request(body, model=model, dialect=PRESETS[preset].dialect, session=session)
    return translation.body, translation.headers, session


def breakpoints(out: dict[str, Any]) -> list[tuple[int, str, int, dict[str, Any]]]:
    """(message index, role, part index, cache_control) of every forwarded breakpoint."""
    found = []
    for m, message in enumerate(out["messages"]):
        content = message.get("content")
        if isinstance(content, list):
            found.extend((m, message["role"], p, part["cache_control"]) for p, part in enumerate(content) if "cache_control" in part)
    return found


def mentions(value: Any, needle: str) -> bool:
    return needle in json.dumps(value)


# -- the session ------------------------------------------------------------------------------------------------------


def test_session_comes_from_the_header_then_from_metadata() -> None:
    body, headers = capture("cc-2.1.332-print-cache-1h.json")
    assert session_id(body, headers) == "68228284-1ecb-445c-b386-f1031cb354f5"
    assert session_id(body, {}) == "68228284-1ecb-445c-b386-f1031cb354f5"  # metadata.user_id's JSON
    assert session_id(body, {"x-claude-code-session-id": "other-session"}) == "other-session"
    assert session_id({"metadata": {}}, {}) is None
    assert session_id({}, None) is None


def test_older_user_id_form_and_junk() -> None:
    legacy = "user_" + "a" * 64 + "_account__session_36529cb0-fd08-4235-93f5-784477fb7b99"
    assert session_from_metadata({"user_id": legacy}) == "36529cb0-fd08-4235-93f5-784477fb7b99"
    assert session_from_metadata({"user_id": "alice"}) is None
    assert session_from_metadata({"user_id": "{not json"}) is None
    assert session_from_metadata({"user_id": '["a"]'}) is None
    assert session_from_metadata({"user_id": '{"session_id": 5}'}) is None
    assert session_from_metadata("x") is None


def test_cache_key_is_stable_per_session_and_differs_between_sessions() -> None:
    a, b = cache_key("68228284-1ecb-445c-b386-f1031cb354f5"), cache_key("fec2a3d7-2da7-4463-9d77-affc6e56f237")
    assert a == cache_key("68228284-1ecb-445c-b386-f1031cb354f5")
    assert a != b and a.startswith("cpx-") and len(a) == 44
    assert "68228284" not in a


# -- OpenRouter: breakpoints on the same blocks, ttl kept, session affinity header ----------------------------------------


def test_openrouter_first_request_with_1h_ttl() -> None:
    out, headers, session = upstream("openrouter", "cc-2.1.332-print-cache-1h.json", "anthropic/claude-sonnet-4.5")
    hour = {"type": "ephemeral", "ttl": "1h"}
    assert breakpoints(out) == [(0, "system", 0, hour), (0, "system", 1, hour), (2, "system", 0, hour)]
    system = out["messages"][0]["content"]
    assert system[0]["text"] == "You are a Claude agent, built on Anthropic's Claude Agent SDK."
    assert system[1]["text"].startswith("\nYou are an agent working with the user")
    assert not mentions(out["messages"][0], "x-anthropic-billing-header")  # the per-conversation line stays out
    assert out["messages"][1]["role"] == "user" and isinstance(out["messages"][1]["content"], str)
    assert headers == {"x-session-id": cache_key(session)}
    assert "prompt_cache_key" not in out and "prompt_cache_retention" not in out
    assert not mentions(out, session) and not mentions(headers, session)
    assert not mentions(out, "f597cb00e8c99b35")  # the device id never travels


def test_openrouter_tool_result_breakpoint_is_on_the_tool_message() -> None:
    out, _, _ = upstream("openrouter", "cc-2.1.332-tool-turn-2-tool-result.json")
    ephemeral = {"type": "ephemeral"}
    last = len(out["messages"]) - 1
    assert breakpoints(out) == [(0, "system", 0, ephemeral), (0, "system", 1, ephemeral), (last, "tool", 0, ephemeral)]
    tool = out["messages"][last]
    assert tool["tool_call_id"] and tool["content"][0]["type"] == "text"


def test_openrouter_compaction_breakpoint_is_on_the_assistant_text() -> None:
    body, _ = capture("cc-2.1.332-interactive-compact.json")
    out = translate_request(body, model="m", dialect=PRESETS["openrouter"].dialect).body
    marked = breakpoints(out)
    assert len(marked) == 3 and marked[2][1] == "assistant"
    assistant = out["messages"][marked[2][0]]
    expected = next(b["text"] for b in body["messages"][6]["content"] if b.get("cache_control"))
    assert assistant["content"][marked[2][2]]["text"] == expected


def test_openrouter_user_text_breakpoint_keeps_the_other_parts_unmarked() -> None:
    out, _, _ = upstream("openrouter", "cc-2.1.332-mcp-toolsearch-turn-2.json")
    marked = breakpoints(out)
    assert len(marked) == 3
    m, role, p, _ = marked[2]
    assert role == "user" and p == len(out["messages"][m]["content"]) - 1
    assert all("cache_control" not in part for part in out["messages"][m]["content"][:p])


def test_breakpoints_beyond_the_limit_keep_the_first_and_the_last() -> None:
    mark = {"type": "ephemeral"}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": str(n), "cache_control": dict(mark)}]} for n in range(6)
    ]
    body = {"model": "m", "max_tokens": 5, "messages": messages}
    out = translate_request(body, dialect=PRESETS["openrouter"].dialect).body
    assert [(m, p) for m, _, p, _ in breakpoints(out)] == [(0, 0), (3, 0), (4, 0), (5, 0)]
    assert [m["content"] for m in out["messages"][1:3]] == [[{"type": "text", "text": "1"}], [{"type": "text", "text": "2"}]]
    parts: list[dict[str, Any]] = [{"cache_control": {}}, {"cache_control": {}}, {}]
    limit_breakpoints([{"content": parts}], 1)
    assert ["cache_control" in p for p in parts] == [False, True, False]


def test_ttl_dropped_where_the_dialect_does_not_keep_it_and_top_level_cache_control() -> None:
    body, _ = capture("cc-2.1.332-print-cache-1h.json")
    dialect = Dialect(name="custom", cache_breakpoints=4)
    out = translate_request({**body, "cache_control": {"type": "ephemeral", "ttl": "1h"}}, dialect=dialect).body
    assert {str(c) for *_, c in breakpoints(out)} == {str({"type": "ephemeral"})}
    assert out["cache_control"] == {"type": "ephemeral"}


# -- OpenAI-style automatic caching: a per-session prompt_cache_key, retention when asked ---------------------------------


def test_openai_key_and_24h_retention_for_1h_breakpoints() -> None:
    out, headers, session = upstream("openai", "cc-2.1.332-print-cache-1h.json", "gpt-5.1")
    assert out["prompt_cache_key"] == cache_key(session)
    assert out["prompt_cache_retention"] == "24h"
    assert breakpoints(out) == [] and not mentions(out, "cache_control")
    assert headers == {}
    assert isinstance(out["messages"][0]["content"], str)  # the system prompt stays one string


def test_openai_without_1h_or_on_an_older_model_sends_no_retention() -> None:
    out, _, session = upstream("openai", "cc-2.1.332-print-default.json", "gpt-5.1")
    assert out["prompt_cache_key"] == cache_key(session) and "prompt_cache_retention" not in out
    out, _, _ = upstream("openai", "cc-2.1.332-print-cache-1h.json", "gpt-4o")
    assert "prompt_cache_retention" not in out and "prompt_cache_key" in out


def test_two_sessions_never_share_a_key_and_no_session_sends_none() -> None:
    a, _, _ = upstream("openai", "cc-2.1.332-tool-turn-1.json")
    b, _, _ = upstream("openai", "cc-2.1.332-tool-turn-2-tool-result.json")  # same session, later turn
    c, _, _ = upstream("openai", "cc-2.1.332-print-default.json")
    assert a["prompt_cache_key"] == b["prompt_cache_key"] != c["prompt_cache_key"]
    body, _ = capture("cc-2.1.332-print-default.json")
    assert "prompt_cache_key" not in translate_request(body, dialect=PRESETS["openai"].dialect).body


def test_mistral_key_without_retention() -> None:
    out, headers, session = upstream("mistral", "cc-2.1.332-print-cache-1h.json")
    assert out["prompt_cache_key"] == cache_key(session)
    assert "prompt_cache_retention" not in out and headers == {} and not mentions(out, "cache_control")


# -- session affinity headers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "header"), [("grok", "x-grok-conv-id"), ("fireworks", "x-session-affinity")])
def test_affinity_header_carries_the_hashed_session(preset: str, header: str) -> None:
    out, headers, session = upstream(preset, "cc-2.1.332-tool-turn-2-tool-result.json")
    assert headers == {header: cache_key(session)}
    assert "prompt_cache_key" not in out and not mentions(out, "cache_control") and not mentions(out, session)


# -- everyone else: stripped, as before -----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["deepseek", "groq", "gemini", "together", "moonshot", "ollama", "vllm", "custom"])
def test_automatic_or_unknown_caching_providers_get_nothing(preset: str) -> None:
    body, headers = capture("cc-2.1.332-print-cache-1h.json")
    dialect = PRESETS[preset].dialect
    with_session = translate_request(body, model="m", dialect=dialect, session=session_id(body, headers))
    without = translate_request(body, model="m", dialect=dialect)
    assert with_session.body == without.body and with_session.headers == {} == without.headers
    assert not mentions(with_session.body, "cache_control") and "prompt_cache_key" not in with_session.body


def test_quirks_turn_breakpoints_on_for_a_custom_provider() -> None:
    from claude_proxy.config.loader import load_config

    config = load_config(
        data={"provider": {"base_url": "http://127.0.0.1:9/v1", "quirks": {"cache_breakpoints": 2, "cache_ttl": True}}},
        env={},
    )
    out, _, _ = upstream("custom", "cc-2.1.332-print-cache-1h.json")
    assert breakpoints(out) == []
    body, _ = capture("cc-2.1.332-print-cache-1h.json")
    marked = breakpoints(translate_request(body, dialect=config.provider.dialect).body)
    assert [(m, p) for m, _, p, _ in marked] == [(0, 0), (2, 0)]
