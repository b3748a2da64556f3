"""OpenAI completion → Anthropic message, and upstream error bodies → Anthropic errors."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from claude_proxy.translate import (
    Dialect,
    RequestContext,
    envelope,
    error_type_for_status,
    from_upstream_response,
    openai_to_anthropic,
    translate_request,
)
from claude_proxy.translate.errors import upstream_error_message, upstream_error_type
from claude_proxy.translate.identifiers import ANTHROPIC_ID, to_upstream_id
from claude_proxy.translate.response import (
    closing_suffix,
    map_finish_reason,
    parse_arguments,
    repair_json,
    signature_for,
    split_think_tags,
)

MSG_ID = "msg_0123456789abcdef01234567"
LONG = "mcp__some_server__" + "x" * 60
LONG_UP = "mcp__some_server__" + "x" * 37 + "_862e5532"
SIG_A = "cpxsig_ca978112ca1bbdcafac231b39a23dc4d"  # signature_for("a")
SIG_THINK = "cpxsig_a0e90b3995069d8a3d3391fc04ca18be"  # signature_for("Let me think.")


def context(dialect: Dialect | None = None, **fields: Any) -> RequestContext:
    body: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}, {"name": LONG, "input_schema": {"type": "object"}}],
    }
    body.update(fields)
    return translate_request(body, model="gpt-4o", dialect=dialect or Dialect()).context


def completion(message: dict[str, Any], finish_reason: str | None = "stop", usage: Any = None,
               **choice_fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason,
                     **choice_fields}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
ANTHROPIC_USAGE = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", stop_sequence: str | None = None,
            usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": MSG_ID,
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage or ANTHROPIC_USAGE,
    }


def convert(response: dict[str, Any], ctx: RequestContext | None = None) -> dict[str, Any]:
    return openai_to_anthropic(response, ctx or context(), message_id=MSG_ID)


# -- text and reasoning -----------------------------------------------------------------


def test_text() -> None:
    assert convert(completion({"content": "Hello"}, usage=USAGE)) == message([{"type": "text", "text": "Hello"}])


def test_model_is_the_clients_and_id_is_generated() -> None:
    out = openai_to_anthropic(completion({"content": "x"}, usage=USAGE), context())
    assert out["model"] == "claude-sonnet-5"
    assert re.fullmatch(r"msg_[0-9a-f]{24}", out["id"])


def test_empty_content() -> None:
    assert convert(completion({"content": None}, usage=USAGE)) == message([])
    assert convert(completion({"content": ""}, usage=USAGE)) == message([])
    assert convert({"choices": [], "usage": USAGE}) == message([])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field_becomes_a_signed_thinking_block(field: str) -> None:
    response = completion({field: "Let me think.", "content": "Answer."}, usage=USAGE)
    assert convert(response) == message([
        {"type": "thinking", "thinking": "Let me think.", "signature": SIG_THINK},
        {"type": "text", "text": "Answer."},
    ])
    assert signature_for("Let me think.") == SIG_THINK


def test_reasoning_content_wins_over_reasoning_and_details() -> None:
    response = completion(
        {"reasoning_content": "a", "reasoning": "a", "reasoning_details": [{"type": "reasoning.text", "text": "a"}],
         "content": "b"},
        usage=USAGE,
    )
    assert convert(response) == message([
        {"type": "thinking", "thinking": "a", "signature": SIG_A},
        {"type": "text", "text": "b"},
    ])


def test_openrouter_reasoning_details_alone() -> None:
    details = [
        {"type": "reasoning.summary", "summary": "Sum. ", "format": "x", "index": 0},
        {"type": "reasoning.text", "text": "Text.", "index": 1},
        {"type": "reasoning.encrypted", "data": "opaque", "index": 2},
    ]
    out = convert(completion({"reasoning": None, "reasoning_details": details, "content": "ok"}, usage=USAGE))
    assert out == message([
        {"type": "thinking", "thinking": "Sum. Text.", "signature": signature_for("Sum. Text.")},
        {"type": "text", "text": "ok"},
    ])
    assert out["content"][0]["signature"].startswith("cpxsig_")


def test_mistral_content_array_with_thinking_parts() -> None:
    content = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "Hmm, "}, {"type": "text", "text": "yes."}]},
        {"type": "text", "text": "The answer"},
        {"type": "text", "text": " is 4."},
        {"type": "thinking", "thinking": "again"},
        {"type": "text", "text": ""},
        "junk",
    ]
    assert convert(completion({"content": content}, usage=USAGE)) == message([
        {"type": "thinking", "thinking": "Hmm, yes.", "signature": signature_for("Hmm, yes.")},
        {"type": "text", "text": "The answer is 4."},
        {"type": "thinking", "thinking": "again", "signature": signature_for("again")},
    ])


def test_think_tags_are_text_unless_the_dialect_says() -> None:
    text = "<think>a</think>\n\nHello"
    assert convert(completion({"content": text}, usage=USAGE)) == message([{"type": "text", "text": text}])


def test_think_tags_split_with_think_tags_dialect() -> None:
    ctx = context(Dialect(think_tags=True))
    assert convert(completion({"content": "<think>a</think>\n\nHello"}, usage=USAGE), ctx) == message([
        {"type": "thinking", "thinking": "a", "signature": SIG_A},
        {"type": "text", "text": "Hello"},  # same text as the streaming path gives
    ])
    assert convert(completion({"content": "Intro <thought>a</thought> outro"}, usage=USAGE), ctx) == message([
        {"type": "text", "text": "Intro "},
        {"type": "thinking", "thinking": "a", "signature": SIG_A},
        {"type": "text", "text": "outro"},
    ])
    assert convert(completion({"content": "<think>a"}, usage=USAGE), ctx) == message([
        {"type": "thinking", "thinking": "a", "signature": SIG_A},
    ])


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("plain", [("text", "plain")]),
        ("<think>x</think>y", [("thinking", "x"), ("text", "y")]),
        ("<think> </think>\n\n", []),
        ("<think>x</think><think>y</think>z", [("thinking", "x"), ("thinking", "y"), ("text", "z")]),
        ("<think>x</thought>y", [("thinking", "x</thought>y")]),
        ("a<think>x\n", [("text", "a"), ("thinking", "x")]),
    ],
)
def test_split_think_tags(text: str, pieces: list[tuple[str, str]]) -> None:
    assert split_think_tags(text) == pieces


# -- tool calls ---------------------------------------------------------------------------


def call(call_id: str | None, name: str, arguments: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        out["id"] = call_id
    return out


def test_tool_calls() -> None:
    response = completion(
        {"content": "Running.", "tool_calls": [
            call("call_abc", "Bash", '{"command": "ls"}'),
            call("functions.Bash:0", "Bash", '{"command": "pwd"}'),
            call("call_long", LONG_UP, "{}"),
        ]},
        finish_reason="tool_calls",
        usage=USAGE,
    )
    assert convert(response) == message(
        [
            {"type": "text", "text": "Running."},
            {"type": "tool_use", "id": "call_abc", "name": "Bash", "input": {"command": "ls"}},
            {"type": "tool_use", "id": "toolu_cpxZnVuY3Rpb25zLkJhc2g6MA", "name": "Bash", "input": {"command": "pwd"}},
            {"type": "tool_use", "id": "call_long", "name": LONG, "input": {}},
        ],
        stop_reason="tool_use",
    )


def test_kimi_id_is_a_valid_anthropic_id_that_maps_back() -> None:
    out = convert(completion({"tool_calls": [call("functions.get_weather:12", "Bash", "{}")]}, "tool_calls"))
    tool_id = out["content"][0]["id"]
    assert ANTHROPIC_ID.fullmatch(tool_id)
    assert re.fullmatch(r"^[a-zA-Z0-9_-]+$", tool_id)
    assert to_upstream_id(tool_id) == "functions.get_weather:12"


def test_missing_tool_ids_are_unique_per_message() -> None:
    response = completion({"tool_calls": [call(None, "Bash", "{}"), call("", "Bash", "{}")]}, "tool_calls")
    assert [b["id"] for b in convert(response)["content"]] == ["call_0_01234567", "call_1_01234567"]
    generated = openai_to_anthropic(response, context())
    assert [b["id"] for b in generated["content"]] == [f"call_0_{generated['id'][-8:]}", f"call_1_{generated['id'][-8:]}"]
    other = openai_to_anthropic(response, context())
    assert generated["content"][0]["id"] != other["content"][0]["id"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ({"a": 1}, {"a": 1}),  # already an object
        (None, {}),
        ("", {}),
        ("   ", {}),
        ('{"a": 1,}', {"a": 1}),  # trailing comma
        ('{"a": [1, 2,],}', {"a": [1, 2]}),
        ('```json\n{"a": 1}\n```', {"a": 1}),  # code fence
        ('```\n{"a": 1}\n```', {"a": 1}),
        ('{"command": "ls -la', {"command": "ls -la"}),  # truncated in a string
        ('{"a": {"b": [1, 2', {"a": {"b": [1, 2]}}),  # truncated in nested containers
        ('{"a": 1, ', {"a": 1}),  # truncated right after a comma
        ('"{\\"a\\": 1}"', {"a": 1}),  # double-encoded
        ('{"a": 1} trailing words', {"a": 1}),
        ('{"a": 1}}', {"a": 1}),  # a stray closing brace
    ],
)
def test_argument_repair(arguments: Any, expected: dict[str, Any]) -> None:
    response = completion({"tool_calls": [call("c1", "Bash", arguments)]}, "tool_calls", USAGE)
    assert convert(response) == message(
        [{"type": "tool_use", "id": "c1", "name": "Bash", "input": expected}], stop_reason="tool_use"
    )


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", '{"a": }', "42", '{"a"}'])
def test_hopeless_arguments_are_surfaced(arguments: str) -> None:
    response = completion({"tool_calls": [call("c1", "Bash", arguments)]}, "tool_calls", USAGE)
    assert convert(response) == message(
        [{"type": "tool_use", "id": "c1", "name": "Bash", "input": {"_invalid_json_arguments": arguments}}],
        stop_reason="tool_use",
    )


def test_legacy_function_call() -> None:
    response = completion({"content": None, "function_call": {"name": "Bash", "arguments": '{"command":"x"}'}},
                          "function_call", USAGE)
    assert convert(response) == message(
        [{"type": "tool_use", "id": "call_0_01234567", "name": "Bash", "input": {"command": "x"}}],
        stop_reason="tool_use",
    )


def test_non_dict_tool_calls_are_skipped() -> None:
    response = completion({"content": "x", "tool_calls": [None, "junk"]}, "stop", USAGE)
    assert convert(response) == message([{"type": "text", "text": "x"}])


# -- finish reasons, stop sequences ------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("stop", "end_turn"),
        ("end_turn", "end_turn"),
        ("eos", "end_turn"),
        ("stop_sequence", "end_turn"),
        ("STOP", "end_turn"),
        ("length", "max_tokens"),
        ("max_tokens", "max_tokens"),
        ("model_length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("safety", "refusal"),
        ("recitation", "refusal"),
        ("function_call_filter: MALFORMED_FUNCTION_CALL", "refusal"),
        ("load", "end_turn"),
        ("something_new", "end_turn"),
        (None, "end_turn"),
    ],
)
def test_finish_reasons(reason: str | None, expected: str) -> None:
    assert convert(completion({"content": "x"}, reason, USAGE)) == message(
        [{"type": "text", "text": "x"}], stop_reason=expected
    )
    assert map_finish_reason(reason) == expected


@pytest.mark.parametrize("reason", ["stop", "tool_calls", None, "eos", "something_new"])
def test_finish_reason_with_tool_calls_is_tool_use(reason: str | None) -> None:
    response = completion({"tool_calls": [call("c1", "Bash", "{}")]}, reason, USAGE)
    assert convert(response)["stop_reason"] == "tool_use"


@pytest.mark.parametrize(("reason", "expected"), [("length", "max_tokens"), ("content_filter", "refusal")])
def test_cut_off_or_refused_tool_calls_keep_their_reason(reason: str, expected: str) -> None:
    # a tool call truncated by max_tokens must not look complete and runnable
    response = completion({"tool_calls": [call("c1", "Bash", "{}")]}, reason, USAGE)
    assert convert(response)["stop_reason"] == expected


@pytest.mark.parametrize("key", ["stop_reason", "matched_stop", "stop_sequence"])
def test_stop_sequence_named_by_the_upstream(key: str) -> None:
    ctx = context(stop_sequences=["END", "STOP"])
    response = completion({"content": "x"}, "stop", USAGE, **{key: "STOP"})
    assert convert(response, ctx) == message([{"type": "text", "text": "x"}], "stop_sequence", "STOP")


def test_stop_sequence_not_requested_or_a_token_id_is_ignored() -> None:
    ctx = context(stop_sequences=["END"])
    assert convert(completion({"content": "x"}, "stop", USAGE, stop_reason="OTHER"), ctx)["stop_reason"] == "end_turn"
    assert convert(completion({"content": "x"}, "stop", USAGE, stop_reason=128009), ctx)["stop_sequence"] is None
    # A matched stop string does not turn max_tokens into stop_sequence.
    out = convert(completion({"content": "x"}, "length", USAGE, matched_stop="END"), ctx)
    assert (out["stop_reason"], out["stop_sequence"]) == ("max_tokens", "END")


# -- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 60}},
         {"input_tokens": 40, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60}),
        ({"prompt_tokens": 100, "completion_tokens": 20, "prompt_cache_hit_tokens": 30, "prompt_cache_miss_tokens": 70},
         {"input_tokens": 70, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 30}),
        ({"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": {"cached_tokens": 30},
          "prompt_cache_hit_tokens": 30},  # DeepSeek: both spellings, counted once
         {"input_tokens": 70, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 30}),
        ({"prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 25},  # Moonshot top level
         {"input_tokens": 75, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 25}),
        ({"prompt_tokens": 100, "completion_tokens": 20, "prompt_tokens_details": None},
         {"input_tokens": 100, "output_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        ({"input_tokens": 7, "output_tokens": 3},
         {"input_tokens": 7, "output_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        ({"prompt_tokens": -1, "completion_tokens": "x"},
         {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        # reasoning tokens are already inside completion_tokens (OpenAI, DeepSeek)
        ({"prompt_tokens": 10, "completion_tokens": 345, "completion_tokens_details": {"reasoning_tokens": 315}},
         {"input_tokens": 10, "output_tokens": 345, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
    ],
)
def test_usage(usage: dict[str, Any], expected: dict[str, int]) -> None:
    assert convert(completion({"content": "x"}, "stop", usage))["usage"] == expected


def test_xai_reasoning_tokens_separate() -> None:
    usage = {"prompt_tokens": 291, "completion_tokens": 26, "total_tokens": 513,
             "completion_tokens_details": {"reasoning_tokens": 196}}
    ctx = context(Dialect(reasoning_tokens_separate=True))
    assert convert(completion({"content": "x"}, "stop", usage), ctx)["usage"] == {
        "input_tokens": 291, "output_tokens": 222, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
    }


def test_usage_under_x_groq_and_inside_the_choice() -> None:
    groq = completion({"content": "x"}, "stop")
    groq["x_groq"] = {"id": "req_1", "usage": {"prompt_tokens": 8, "completion_tokens": 2}}
    assert convert(groq)["usage"] == {
        "input_tokens": 8, "output_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
    }
    moonshot = completion({"content": "x"}, "stop", usage={"prompt_tokens": 9, "completion_tokens": 4})
    moonshot["choices"][0]["usage"] = moonshot.pop("usage")
    assert convert(moonshot)["usage"] == {
        "input_tokens": 9, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
    }


def test_usage_estimated_when_absent() -> None:
    ctx = context()
    content = [{"type": "text", "text": "Hello there"}]
    assert convert(completion({"content": "Hello there"}, "stop", None), ctx)["usage"] == {
        "input_tokens": ctx.input_tokens,
        "output_tokens": len(json.dumps(content[0])) // 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert ctx.input_tokens == 66


# -- helpers shared with the streaming path ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "suffix"),
    [
        ('{"a": 1}', ""),
        ('{"a": "b', '"}'),
        ('{"a": [1, {"b": "c\\"', '"}]}'),
        ('{"a": "x}', '"}'),
        ("", ""),
        ('{"a": 1}}', None),
        ('{"a": [1}', None),
    ],
)
def test_closing_suffix(text: str, suffix: str | None) -> None:
    assert closing_suffix(text) == suffix


def test_repair_and_parse_helpers() -> None:
    assert repair_json("") == {}
    assert repair_json("nope") is None
    assert parse_arguments({"x": 1}) == {"x": 1}
    assert parse_arguments(None) == {}
    assert parse_arguments("nope") == {"_invalid_json_arguments": "nope"}


# -- errors -------------------------------------------------------------------------------------


def env(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # nested OpenAI
        (400, {"error": {"message": "This model's maximum context length is 128000 tokens.",
                         "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
         # an overflow is said Anthropic's way, so clients compact (issue 15)
         (400, env("invalid_request_error", "prompt is too long: 128001 tokens > 128000 maximum"))),
        (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                         "code": "invalid_api_key"}},
         (401, env("authentication_error", "openai: Incorrect API key provided"))),
        (429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
         (429, env("rate_limit_error", "openai: Rate limit reached"))),
        # flat Mistral / vLLM
        (400, {"object": "error", "message": "Tool call id was abc123 but must be a-z, A-Z, 0-9, with a length of 9.",
               "type": "invalid_request_error", "param": None, "code": None},
         (400, env("invalid_request_error",
                   "openai: Tool call id was abc123 but must be a-z, A-Z, 0-9, with a length of 9."))),
        (400, {"object": "error", "message": "prompt too long", "type": "BadRequestError", "param": None, "code": 400},
         (400, env("invalid_request_error",
                   "prompt is too long: the conversation exceeds the model's context window"))),
        # OpenRouter: int code, metadata.raw
        (402, {"error": {"code": 402, "message": "Insufficient credits"}},
         (402, env("billing_error", "openai: Insufficient credits"))),
        (502, {"error": {"code": 502, "message": "Provider returned error",
                         "metadata": {"raw": "upstream exploded", "provider_name": "X"}}},
         (502, env("api_error", "openai: Provider returned error (upstream exploded)"))),
        (403, {"error": {"code": 403, "message": "flagged", "metadata": {"reasons": ["x"], "flagged_input": "y"}}},
         (403, env("permission_error", "openai: flagged"))),
        # Gemini: a JSON array
        (429, [{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}],
         (429, env("rate_limit_error", "openai: Resource has been exhausted"))),
        # Ollama native
        (404, {"error": "model 'llama9' not found"}, (404, env("not_found_error", "openai: model 'llama9' not found"))),
        # FastAPI-style validation detail
        (422, {"detail": [{"loc": ["body", "x"], "msg": "field required"}, {"msg": "bad"}, "str"]},
         (422, env("invalid_request_error", "openai: field required; bad; str"))),
        (400, {"detail": "nope"}, (400, env("invalid_request_error", "openai: nope"))),
        # an error with a type but no message
        (500, {"error": {"type": "server_error"}}, (500, env("api_error", "openai: server_error"))),
    ],
)
def test_upstream_error_shapes(status: int, body: Any, expected: tuple[int, dict[str, Any]]) -> None:
    assert from_upstream_response(status, json.dumps(body).encode(), "openai") == expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", (502, env("api_error", "upstream: HTTP 502"))),
        (503, b"  <!DOCTYPE html><html></html>", (503, env("overloaded_error", "upstream: HTTP 503"))),
        (503, b"", (503, env("overloaded_error", "upstream: HTTP 503"))),
        (504, b"   ", (504, env("timeout_error", "upstream: HTTP 504"))),
        (500, b"Internal Server Error\n", (500, env("api_error", "upstream: Internal Server Error"))),
        (500, b"\xff\xfe not utf8", (500, env("api_error", "upstream: \ufffd\ufffd not utf8"))),
        (429, b'{"unrelated": true}', (429, env("rate_limit_error", 'upstream: {"unrelated": true}'))),
        (200, b'{"error": {"message": "odd"}}', (502, env("api_error", "upstream: odd"))),
        (302, b"", (502, env("api_error", "upstream: HTTP 302"))),
        (418, b"teapot", (418, env("invalid_request_error", "upstream: teapot"))),
        (529, b"", (529, env("overloaded_error", "upstream: HTTP 529"))),
        (599, b"", (599, env("api_error", "upstream: HTTP 599"))),
    ],
)
def test_non_json_and_odd_error_bodies(status: int, body: bytes, expected: tuple[int, dict[str, Any]]) -> None:
    assert from_upstream_response(status, body) == expected


def test_long_text_error_is_cut() -> None:
    status, body = from_upstream_response(500, b"x" * 5000)
    assert (status, body) == (500, env("api_error", "upstream: " + "x" * 1000))


def test_openrouter_raw_is_cut_and_not_repeated() -> None:
    raw = "r" * 900
    _, body = from_upstream_response(502, json.dumps({"error": {"message": "m", "metadata": {"raw": raw}}}).encode())
    assert body == env("api_error", "upstream: m (" + "r" * 500 + ")")
    _, body = from_upstream_response(502, json.dumps({"error": {"message": "said x", "metadata": {"raw": "x"}}}).encode())
    assert body == env("api_error", "upstream: said x")


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (402, "billing_error"), (403, "permission_error"),
     (404, "not_found_error"), (405, "invalid_request_error"), (408, "timeout_error"), (409, "conflict_error"),
     (413, "request_too_large"), (422, "invalid_request_error"), (429, "rate_limit_error"), (500, "api_error"),
     (502, "api_error"), (503, "overloaded_error"), (504, "timeout_error"), (529, "overloaded_error"),
     (410, "invalid_request_error"), (501, "api_error"), (520, "api_error")],
)
def test_error_type_for_status(status: int, kind: str) -> None:
    assert error_type_for_status(status) == kind


def test_envelope() -> None:
    assert envelope("api_error", "boom") == {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    assert envelope("api_error", "boom", "req_1") == {
        "type": "error", "error": {"type": "api_error", "message": "boom"}, "request_id": "req_1",
    }


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"error": {"message": "m", "type": "server_error"}}, None),
        ({"error": {"message": "m", "type": "invalid_request_error"}}, "invalid_request_error"),
        ({"error": {"message": "m", "type": "server_error", "code": "rate_limit_exceeded"}}, "rate_limit_error"),
        ({"error": {"message": "m", "code": "insufficient_quota"}}, "rate_limit_error"),
        ({"error": {"message": "m", "code": "context_length_exceeded"}}, "invalid_request_error"),
        ({"error": {"message": "m", "code": "invalid_api_key"}}, "authentication_error"),
        ({"error": {"code": 502, "message": "m"}}, "api_error"),
        ({"error": {"code": "429", "message": "m"}}, "rate_limit_error"),
        ({"object": "error", "message": "m", "type": "BadRequestError", "code": 400}, "invalid_request_error"),
        ({"object": "error", "message": "m", "type": "ServiceUnavailable"}, "overloaded_error"),
        ([{"error": {"code": 503, "message": "m", "status": "UNAVAILABLE"}}], "overloaded_error"),
        ([{"error": {"message": "m", "status": "RESOURCE_EXHAUSTED"}}], None),
        ({"error": "plain"}, None),
        ({"error": {"type": "overloaded_error"}}, "overloaded_error"),
        ([], None),
        ("text", None),
    ],
)
def test_upstream_error_type(payload: Any, kind: str | None) -> None:
    assert upstream_error_type(payload) == kind


def test_upstream_error_message_none_for_unknown_shapes() -> None:
    assert upstream_error_message({"foo": 1}) is None
    assert upstream_error_message(None) is None
    assert upstream_error_message([]) is None
    assert upstream_error_message({"error": {}}) is None
