"""Claude Code 2.1.332's wire through the translator: structured outputs, deferred tools, trailing
system messages, schema keywords per dialect (issue 15). Real captures, exact expectations."""

from __future__ import annotations

import json
from typing import Any

import orjson

from claude_proxy.config.presets import PRESETS
from claude_proxy.translate import StreamTranslator, openai_to_anthropic, translate_request
from claude_proxy.translate.request import STRUCTURED_TOOL, callable_tools, clean_schema
from claude_proxy.translate.tokens import estimate_input_tokens
from tests.support.fixtures import CLAUDE_CODE_FIXTURES

OPENAI = PRESETS["openai"].dialect
DEEPSEEK = PRESETS["deepseek"].dialect
GEMINI = PRESETS["gemini"].dialect
VLLM = PRESETS["vllm"].dialect


def capture(name: str) -> dict[str, Any]:
    return json.loads((CLAUDE_CODE_FIXTURES / f"cc-2.1.332-{name}.json").read_bytes())


def every_capture() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads(p.read_bytes())) for p in sorted(CLAUDE_CODE_FIXTURES.glob("cc-2.1.332-*.json"))]


TITLE_SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
    "additionalProperties": False,
}

# -- structured outputs -----------------------------------------------------------------------


def test_title_request_gets_json_schema_response_format_where_the_provider_takes_it() -> None:
    body = translate_request(capture("interactive-title"), dialect=OPENAI).body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": TITLE_SCHEMA, "strict": True},
    }
    assert "tools" not in body and "tool_choice" not in body  # "tools": [] is omitted


def test_a_loose_schema_is_not_sent_strict() -> None:
    request = capture("interactive-title")
    request["output_config"]["format"]["schema"] = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = translate_request(request, dialect=OPENAI).body
    assert body["response_format"]["json_schema"]["strict"] is False


def test_the_schema_is_cleaned_for_the_provider() -> None:
    request = capture("interactive-title")
    request["output_config"]["format"]["schema"] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"url": {"type": "string", "format": "uri"}},
    }
    body = translate_request(request, dialect=GEMINI).body
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object", "properties": {"url": {"type": "string"}}}


def test_without_json_schema_support_it_is_a_forced_tool() -> None:
    result = translate_request(capture("interactive-title"), dialect=DEEPSEEK)
    assert "response_format" not in result.body
    assert result.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": STRUCTURED_TOOL,
                "description": result.body["tools"][0]["function"]["description"],
                "parameters": TITLE_SCHEMA,
            },
        }
    ]
    assert result.body["tool_choice"] == {"type": "function", "function": {"name": STRUCTURED_TOOL}}
    assert result.context.structured_tool == STRUCTURED_TOOL


def completion(calls: list[dict[str, Any]], reason: str = "tool_calls") -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": calls}, "finish_reason": reason}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }


def test_the_forced_tools_arguments_come_back_as_the_text_block() -> None:
    context = translate_request(capture("interactive-title"), dialect=DEEPSEEK).context
    call = {"id": "c1", "type": "function", "function": {"name": STRUCTURED_TOOL, "arguments": '{"title": "Fix login"}'}}
    message = openai_to_anthropic(completion([call]), context)
    assert message["content"] == [{"type": "text", "text": '{"title": "Fix login"}'}]
    assert message["stop_reason"] == "end_turn"


def stream_events(context: Any, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    translator = StreamTranslator(context, message_id="msg_1")
    events = []
    for chunk in chunks:
        events += translator.feed(chunk)
    return events + translator.finish()


def delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def test_streamed_forced_tool_arguments_are_text_deltas() -> None:
    context = translate_request(capture("interactive-title"), dialect=DEEPSEEK).context
    fragments = ['{"ti', 'tle": "Fix', ' login"}']
    chunks = [
        delta(tool_calls=[{"index": 0, "id": "c1", "type": "function", "function": {"name": STRUCTURED_TOOL, "arguments": ""}}]),
        *(delta(tool_calls=[{"index": 0, "function": {"arguments": f}}]) for f in fragments),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ]
    events = stream_events(context, chunks)
    assert [e["type"] for e in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]
    assert events[2]["content_block"] == {"type": "text", "text": ""}
    assert [e["delta"] for e in events[3:6]] == [{"type": "text_delta", "text": f} for f in fragments]
    assert events[7]["delta"]["stop_reason"] == "end_turn"


def test_a_non_object_schema_is_wrapped_and_unwrapped() -> None:
    request = capture("interactive-title")
    request["output_config"]["format"]["schema"] = {"type": "array", "items": {"type": "string"}}
    result = translate_request(request, dialect=DEEPSEEK)
    assert result.body["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"value": {"type": "array", "items": {"type": "string"}}}, "required": ["value"],
    }
    call = {"id": "c1", "function": {"name": STRUCTURED_TOOL, "arguments": '{"value": ["a", "b"]}'}}
    assert openai_to_anthropic(completion([call]), result.context)["content"] == [{"type": "text", "text": '["a", "b"]'}]
    chunks = [
        delta(tool_calls=[{"index": 0, "id": "c1", "function": {"name": STRUCTURED_TOOL, "arguments": '{"value": ["a",'}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": ' "b"]}'}}]),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    texts = [e["delta"]["text"] for e in stream_events(result.context, chunks) if e["type"] == "content_block_delta"]
    assert texts == ['["a", "b"]']


def test_json_schema_flag_keeps_working_as_an_ordinary_tool() -> None:
    result = translate_request(capture("json-schema-1"), dialect=DEEPSEEK)
    names = [t["function"]["name"] for t in result.body["tools"]]
    assert "StructuredOutput" in names and STRUCTURED_TOOL not in names
    assert result.context.structured_tool == ""


# -- deferred tools ---------------------------------------------------------------------------


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


def test_deferred_tools_are_sent_only_once_loaded() -> None:
    request = capture("mcp-toolsearch-turn-2")
    deferred = {t["name"] for t in request["tools"] if t.get("defer_loading")}
    loaded = {
        b["tool_name"]
        for m in request["messages"] if isinstance(m["content"], list)
        for r in m["content"] if r.get("type") == "tool_result" and isinstance(r.get("content"), list)
        for b in r["content"] if b.get("type") == "tool_reference"
    }
    assert len(loaded) == 2 and loaded < deferred and "DeferredToolPlaceholder" in deferred
    result = translate_request(request, dialect=OPENAI)
    back = result.context.tool_names
    sent = {back.get(n, n) for n in tool_names(result.body)}
    assert sent == {t["name"] for t in request["tools"] if not t.get("defer_loading") or t["name"] in loaded}
    assert "DeferredToolPlaceholder" not in sent
    schemas = {back.get(t["function"]["name"], t["function"]["name"]): t["function"]["parameters"] for t in result.body["tools"]}
    for tool in request["tools"]:
        if tool["name"] in loaded:  # full schemas, not stubs
            assert schemas[tool["name"]]["properties"] == tool["input_schema"]["properties"]


def test_tool_reference_is_readable_text_never_json() -> None:
    body = translate_request(capture("toolsearch-tool-reference"), dialect=OPENAI).body
    tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
    assert any(m["content"] == "Tool loaded: WebFetch" for m in tool_messages)
    assert "tool_reference" not in orjson.dumps(body["messages"]).decode()
    assert "WebFetch" in tool_names(body)


def sizes(request: dict[str, Any]) -> tuple[int, int, int, int]:
    """(bytes, estimated tokens) of the upstream body with every tool inline, then callable-only."""
    inline = {**request, "tools": [{k: v for k, v in t.items() if k != "defer_loading"} for t in request["tools"]]}
    with_all = orjson.dumps(translate_request(inline, dialect=OPENAI).body)
    callable_only = orjson.dumps(translate_request(request, dialect=OPENAI).body)
    tokens_all = estimate_input_tokens(inline)
    tokens_now = estimate_input_tokens({**request, "tools": callable_tools(request)})
    return len(with_all), tokens_all, len(callable_only), tokens_now


def test_mcp_capture_request_size_drops() -> None:
    """The MCP capture as Claude Code sent it: only the placeholder goes (Claude Code itself lists
    only loaded deferred tools), so the saving is small but real."""
    bytes_all, tokens_all, bytes_now, tokens_now = sizes(capture("mcp-toolsearch-turn-2"))
    print(f"\nMCP capture: {bytes_all} B / ~{tokens_all} tok inline -> {bytes_now} B / ~{tokens_now} tok")
    assert bytes_now < bytes_all and tokens_now < tokens_all


def test_mcp_heavy_request_size_drops_to_a_fraction() -> None:
    """An MCP-heavy client that sends its whole deferred catalogue (as the API's tool search
    expects): 200 more MCP tools, shaped like the capture's, none loaded yet."""
    request = capture("mcp-toolsearch-turn-2")
    model = next(t for t in request["tools"] if t["name"].startswith("mcp__") and len(t["name"]) > 64)
    extra = [{**model, "name": f"mcp__server{i // 20}__tool_{i}", "defer_loading": True} for i in range(200)]
    request["tools"] = [*request["tools"], *extra]
    bytes_all, tokens_all, bytes_now, tokens_now = sizes(request)
    print(f"\nMCP-heavy: {bytes_all} B / ~{tokens_all} tok inline -> {bytes_now} B / ~{tokens_now} tok")
    assert bytes_now * 2 < bytes_all and tokens_now * 2 < tokens_all


# -- the rest of 2.1.332's wire -----------------------------------------------------------------


def test_every_capture_translates_to_valid_upstream_messages() -> None:
    for name, request in every_capture():
        for dialect in (OPENAI, VLLM, GEMINI, DEEPSEEK):
            body = translate_request(request, dialect=dialect).body
            text = orjson.dumps(body).decode()
            assert "safeguards" not in body and "output_config" not in text and "cache_control" not in text, name
            assert "defer_loading" not in text and "DeferredToolPlaceholder" not in tool_names(body), name
            assert body.get("tools") != [], name
            for message in body["messages"]:
                assert message["role"] in ("system", "user", "assistant", "tool"), name
                content = message.get("content")
                if message["role"] == "assistant":
                    assert content or message.get("tool_calls"), (name, message)
                elif message["role"] != "tool":
                    assert content, (name, message)
            if dialect.mid_system == "user":
                assert all(m["role"] != "system" for m in body["messages"][1:]), name
            assert all(len(n) <= 64 for n in tool_names(body)), name


def test_post_compact_empty_system_message_is_dropped_and_the_trailing_one_kept() -> None:
    request = capture("interactive-post-compact")
    roles = [(m["role"], m["content"] == []) for m in request["messages"]]
    assert ("system", True) in roles and request["messages"][-1]["role"] == "system"
    body = translate_request(request, dialect=OPENAI).body
    assert body["messages"][-1]["role"] == "system" and body["messages"][-1]["content"].startswith("Task ")
    vllm = translate_request(request, dialect=VLLM).body
    assert vllm["messages"][-1]["role"] == "user"
    last = vllm["messages"][-1]["content"]
    text = last if isinstance(last, str) else last[-1]["text"]
    assert "\n\n<system-reminder>\nTask " in text and text.endswith("</system-reminder>")


def test_images_and_documents_in_tool_results() -> None:
    image = translate_request(capture("image-read-tool-result"), dialect=OPENAI).body["messages"]
    follow = next(m for m in image if m["role"] == "user" and isinstance(m["content"], list)
                  and any(p["type"] == "image_url" for p in m["content"]))
    assert follow["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    pdf_openai = translate_request(capture("pdf-read-tool-result"), dialect=OPENAI).body["messages"]
    assert any(isinstance(m["content"], list) and any(p["type"] == "file" for p in m["content"]) for m in pdf_openai)
    pdf_deepseek = orjson.dumps(translate_request(capture("pdf-read-tool-result"), dialect=DEEPSEEK).body).decode()
    assert "does not accept file attachments" in pdf_deepseek and "JVBERi0" not in pdf_deepseek


def test_schema_keywords_per_dialect() -> None:
    schema = {
        "type": "object",
        "properties": {
            "to": {"type": "string", "allOf": [{"pattern": "^[^\\n\\r]*$"}, {"maxLength": 300}]},
            "filter": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"q": {"type": "string"}}}]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
        },
    }
    assert clean_schema(schema, OPENAI) is schema  # OpenAI takes all of them: untouched
    assert clean_schema(schema, GEMINI) == {
        "type": "object",
        "properties": {
            "to": {"type": "string", "pattern": "^[^\\n\\r]*$", "maxLength": 300},
            "filter": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {"q": {"type": "string"}}}]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
    }


def test_long_mcp_names_are_shortened_and_mapped_back() -> None:
    request = capture("mcp-toolsearch-turn-2")
    long_names = [t["name"] for t in request["tools"] if len(t["name"]) > 64]
    assert long_names
    request["tools"] = [{k: v for k, v in t.items() if k != "defer_loading"} for t in request["tools"]]
    result = translate_request(request, dialect=OPENAI)
    short = next(n for n in tool_names(result.body) if result.context.tool_names.get(n) == long_names[0])
    assert len(short) <= 64 and short.startswith("mcp__")
    call = {"id": "c1", "function": {"name": short, "arguments": "{}"}}
    assert openai_to_anthropic(completion([call]), result.context)["content"][0]["name"] == long_names[0]
