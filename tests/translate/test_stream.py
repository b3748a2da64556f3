"""The streaming translator: OpenAI chunks in, the WHOLE list of Anthropic events out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_proxy.translate import Dialect, RequestContext, SSEParser, StreamTranslator, translate_request
from claude_proxy.translate.identifiers import to_upstream_id
from claude_proxy.translate.response import signature_for

MSG_ID = "msg_0123456789abcdef01234567"
LONG = "mcp__some_server__" + "x" * 60
LONG_UP = "mcp__some_server__" + "x" * 37 + "_862e5532"
INPUT_ESTIMATE = 66  # the local estimate for the request below


def context(dialect: Dialect | None = None, **fields: Any) -> RequestContext:
    body: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}, {"name": LONG, "input_schema": {"type": "object"}}],
    }
    body.update(fields)
    return translate_request(body, model="gpt-4o", dialect=dialect or Dialect()).context


def run(chunks: list[Any], ctx: RequestContext | None = None, *, done: bool = True) -> list[dict[str, Any]]:
    """Feed chunks (dicts/lists as JSON, strings as raw data), then [DONE] and EOF."""
    stream = StreamTranslator(ctx or context(), message_id=MSG_ID)
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events += stream.feed_data(chunk if isinstance(chunk, str) else json.dumps(chunk))
    if done:
        events += stream.feed_data("[DONE]")
    events += stream.finish()
    assert stream.finish() == []
    return events


def run_sse(raw: bytes, ctx: RequestContext | None = None, step: int = 7) -> list[dict[str, Any]]:
    """Raw upstream SSE bytes, delivered in small pieces, through the parser and the translator."""
    parser = SSEParser()
    stream = StreamTranslator(ctx or context(), message_id=MSG_ID)
    events: list[dict[str, Any]] = []
    for i in range(0, len(raw), step):
        for event in parser.feed(raw[i : i + step]):
            events += stream.feed_data(event.data)
    for event in parser.close():
        events += stream.feed_data(event.data)
    return events + stream.finish()


def sse(*items: Any) -> bytes:
    """SSE bytes: dicts/lists become `data:` JSON, strings are written as they are."""
    out = b""
    for item in items:
        if isinstance(item, str):
            out += item.encode()
        else:
            out += b"data: " + json.dumps(item).encode() + b"\n\n"
    return out


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [choice], **extra}


def tc(index: int | None = None, id: str | None = None, name: str | None = None, args: Any = None,
       **extra: Any) -> dict[str, Any]:
    """One tool_calls[] fragment; only the keys given are present."""
    out: dict[str, Any] = dict(extra)
    if index is not None:
        out["index"] = index
    if id is not None:
        out["id"] = id
        out.setdefault("type", "function")
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    out["function"] = function
    return out


def calls(*fragments: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return chunk({"tool_calls": list(fragments)}, finish, **extra)


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


# -- expected events ----------------------------------------------------------------------


def start(input_tokens: int = INPUT_ESTIMATE, cache_read: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_start",
            "message": {
                "id": MSG_ID,
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": cache_read},
            },
        },
        {"type": "ping"},
    ]


def text(index: int, *parts: str) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}} for p in parts),
        {"type": "content_block_stop", "index": index},
    ]


def thinking(index: int, *parts: str) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index,
         "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        *({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": p}}
          for p in parts),
        {"type": "content_block_delta", "index": index,
         "delta": {"type": "signature_delta", "signature": signature_for("".join(parts))}},
        {"type": "content_block_stop", "index": index},
    ]


def tool_start(index: int, tool_id: str, name: str) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}


def json_delta(index: int, partial: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial}}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def tool(index: int, tool_id: str, name: str, *partials: str) -> list[dict[str, Any]]:
    return [tool_start(index, tool_id, name), *(json_delta(index, p) for p in partials), stop(index)]


def usage(input_tokens: int, output_tokens: int, cache_read: int = 0) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read}


def end(stop_reason: str, use: dict[str, int], stop_sequence: str | None = None) -> list[dict[str, Any]]:
    return [
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence}, "usage": use},
        {"type": "message_stop"},
    ]


def error(kind: str, message: str) -> list[dict[str, Any]]:
    return [{"type": "error", "error": {"type": kind, "message": message}}]


U = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
AU = usage(10, 5)
ARGS_LS = '{"command": "ls"}'


def test_input_estimate_constant() -> None:
    assert context().prompt_tokens() == INPUT_ESTIMATE


# -- text and reasoning ---------------------------------------------------------------------


def test_text_only() -> None:
    events = run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}), chunk({"content": " world"}),
                  chunk({}, "stop"), usage_chunk(U)])
    assert events == start() + text(0, "Hello", " world") + end("end_turn", AU)


def test_reasoning_then_text() -> None:
    events = run([chunk({"reasoning_content": "Let me ", "content": None}),
                  chunk({"reasoning_content": "think.", "content": None}),
                  chunk({"reasoning_content": None, "content": "Answer"}),
                  chunk({}, "stop", usage=U)])
    assert events == start() + thinking(0, "Let me ", "think.") + text(1, "Answer") + end("end_turn", AU)
    assert events[5]["delta"] == {"type": "signature_delta", "signature": signature_for("Let me think.")}
    assert events[5]["delta"]["signature"]


def test_text_then_reasoning_then_text() -> None:
    events = run([chunk({"content": "A"}), chunk({"reasoning": "R"}), chunk({"content": "B"}), chunk({}, "stop", usage=U)])
    assert events == start() + text(0, "A") + thinking(1, "R") + text(2, "B") + end("end_turn", AU)


def test_reasoning_and_content_in_one_delta() -> None:
    events = run([chunk({"reasoning_content": "R", "content": "T"}, "stop", usage=U)])
    assert events == start(10) + thinking(0, "R") + text(1, "T") + end("end_turn", AU)


def test_mistral_content_parts() -> None:
    events = run([
        chunk({"role": "assistant", "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "Hmm"}]}]}),
        chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": ", ok"}]}]}),
        chunk({"content": [{"type": "text", "text": "Four."}]}),
        chunk({"content": ""}, "stop", usage=U),
    ])
    assert events == start() + thinking(0, "Hmm", ", ok") + text(1, "Four.") + end("end_turn", AU)


def test_openrouter_reasoning_not_counted_twice_and_empty_reasoning_ignored() -> None:
    events = run([
        chunk({"role": "assistant", "content": "", "reasoning": "Plan",
               "reasoning_details": [{"type": "reasoning.text", "text": "Plan", "index": 0}]}),
        chunk({"role": "assistant", "content": "", "reasoning": None,
               "reasoning_details": [{"type": "reasoning.text", "text": " more", "index": 0}]}),
        chunk({"role": "assistant", "content": "", "reasoning": None,
               "reasoning_details": [{"type": "reasoning.encrypted", "data": "xyz", "index": 1}]}),
        chunk({"role": "assistant", "content": "Hi", "reasoning": "", "reasoning_details": []}),
        chunk({"role": "assistant", "content": "!", "reasoning": "", "reasoning_details": []}),
        chunk({"role": "assistant", "content": ""}, "stop", usage=U),
    ])
    assert events == start() + thinking(0, "Plan", " more") + text(1, "Hi", "!") + end("end_turn", AU)


def test_think_tags_split_across_chunks() -> None:
    ctx = context(Dialect(think_tags=True))
    events = run([chunk({"content": "<thi"}), chunk({"content": "nk>Let me"}), chunk({"content": " see</th"}),
                  chunk({"content": "ink>\n\n"}), chunk({"content": "Answer <"}), chunk({"content": "3"}),
                  chunk({}, "stop", usage=U)], ctx)
    assert events == start() + thinking(0, "Let me", " see") + text(1, "Answer ", "<3") + end("end_turn", AU)


def test_think_tags_text_before_and_thought_tags() -> None:
    ctx = context(Dialect(think_tags=True))
    events = run([chunk({"content": "Intro <thought>x</thought> outro"}), chunk({}, "stop", usage=U)], ctx)
    assert events == start() + text(0, "Intro ") + thinking(1, "x") + text(2, "outro") + end("end_turn", AU)


def test_think_tags_unclosed_at_the_end_and_a_partial_tag_flushed() -> None:
    ctx = context(Dialect(think_tags=True))
    assert run([chunk({"content": "<think>never closed</th"}), chunk({}, "stop", usage=U)], ctx) == (
        start() + thinking(0, "never closed", "</th") + end("end_turn", AU)
    )
    assert run([chunk({"content": "a <thi"}), chunk({}, "stop", usage=U)], ctx) == (
        start() + text(0, "a ", "<thi") + end("end_turn", AU)
    )


def test_think_tags_are_plain_text_by_default() -> None:
    events = run([chunk({"content": "<thi"}), chunk({"content": "nk>x</think>y"}), chunk({}, "stop", usage=U)])
    assert events == start() + text(0, "<thi", "nk>x</think>y") + end("end_turn", AU)


# -- tool calls -------------------------------------------------------------------------------


def test_parallel_tool_calls_sequential() -> None:
    events = run([
        calls(tc(0, "call_a", "Bash", "")),
        calls(tc(0, args='{"command"')),
        calls(tc(0, args=': "ls"}')),
        calls(tc(1, "call_b", LONG_UP, "")),
        calls(tc(1, args="{}")),
        chunk({}, "tool_calls"),
        usage_chunk(U),
    ])
    assert events == (start() + tool(0, "call_a", "Bash", '{"command"', ': "ls"}') + tool(1, "call_b", LONG, "{}")
                      + end("tool_use", AU))


def test_parallel_tool_calls_interleaved_with_partial_arguments() -> None:
    events = run([
        calls(tc(0, "call_a", "Bash", '{"command": ')),
        calls(tc(1, "call_b", "Bash", '{"command": ')),
        calls(tc(0, args='"ls"}')),
        calls(tc(1, args='"pwd"}')),
        chunk({}, "tool_calls", usage=U),
    ])
    assert events == (
        [*start(), tool_start(0, "call_a", "Bash"), json_delta(0, '{"command": '), json_delta(0, '"ls"}'), stop(0), *tool(1, "call_b", "Bash", '{"command": "pwd"}'), *end("tool_use", AU)]
    )


def test_parallel_tool_calls_interleaved_after_empty_first_fragments() -> None:
    # OpenAI-style empty "arguments" first, then the calls take turns: 0, 1, 0, 1.
    events = run([
        calls(tc(0, "call_a", "Bash", "")),
        calls(tc(1, "call_b", "Bash", "")),
        calls(tc(0, args='{"command": "ls"}')),
        calls(tc(1, args='{"command": "pwd"}')),
        chunk({}, "tool_calls", usage=U),
    ])
    assert events == (start() + tool(0, "call_a", "Bash", ARGS_LS) + tool(1, "call_b", "Bash", '{"command": "pwd"}')
                      + end("tool_use", AU))


def test_interleaved_three_calls_in_one_chunk_each() -> None:
    events = run([
        calls(tc(0, "a", "Bash", '{"x": '), tc(1, "b", "Bash", '{"y": '), tc(2, "c", "Bash", '{"z": ')),
        calls(tc(2, args="3}"), tc(1, args="2}"), tc(0, args="1}")),
        chunk({}, "tool_calls", usage=U),
    ])
    assert events == [
        *start(),
        tool_start(0, "a", "Bash"), json_delta(0, '{"x": '), json_delta(0, "1}"), stop(0),
        *tool(1, "b", "Bash", '{"y": 2}'),  # buffered calls follow in order of appearance
        *tool(2, "c", "Bash", '{"z": 3}'),
        *end("tool_use", AU),
    ]


def test_tool_calls_without_index() -> None:
    # New id = new call; no id and no index = continuation of the last call.
    events = run([
        calls(tc(None, "a1", "Bash", '{"command": ')),
        calls(tc(None, None, None, '"ls"}')),
        calls(tc(None, "b2", "Bash", "{")),
        calls(tc(None, None, None, '"command": "pwd"}')),
        chunk({}, "tool_calls", usage=U),
    ])
    assert events == (
        start()
        + tool(0, "a1", "Bash", '{"command": ', '"ls"}')
        + tool(1, "b2", "Bash", "{", '"command": "pwd"}')
        + end("tool_use", AU)
    )


def test_tool_call_index_starting_at_one() -> None:
    events = run([calls(tc(1, "call_x", "Bash", "")), calls(tc(1, args=ARGS_LS)), calls(tc(2, "call_y", "Bash", "{}")),
                  chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_x", "Bash", ARGS_LS) + tool(1, "call_y", "Bash", "{}") + end("tool_use", AU)


def test_explicit_nulls_and_empty_name_on_continuations() -> None:
    events = run([
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "Bash", "arguments": None}}]}),
        chunk({"content": None, "tool_calls": [
            {"index": 0, "id": None, "type": None, "function": {"name": None, "arguments": '{"command"'}}]}),
        chunk({"content": None, "tool_calls": [
            {"index": 0, "id": "", "type": "function", "function": {"name": "", "arguments": ': "ls"}'}}]}),
        chunk({"tool_calls": None}, "tool_calls", usage=U),
    ])
    assert events == start() + tool(0, "call_a", "Bash", '{"command"', ': "ls"}') + end("tool_use", AU)


def test_whole_arguments_in_one_chunk() -> None:
    events = run([calls(tc(0, "call_a", "Bash", ARGS_LS), finish="tool_calls", usage=U)])
    assert events == start(10) + tool(0, "call_a", "Bash", ARGS_LS) + end("tool_use", AU)


def test_arguments_as_a_json_object() -> None:
    events = run([calls(tc(0, "call_a", "Bash", {"command": "ls", "n": 1})), chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_a", "Bash", '{"command": "ls", "n": 1}') + end("tool_use", AU)


def test_empty_arguments_give_no_delta() -> None:
    events = run([calls(tc(0, "call_a", "Bash", "")), calls(tc(0, args="")), chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_a", "Bash") + end("tool_use", AU)


def test_no_argument_call_followed_by_another_call() -> None:
    events = run([calls(tc(0, "call_a", "Bash")), calls(tc(1, "call_b", "Bash", "{")), calls(tc(1, args="}")),
                  chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_a", "Bash") + tool(1, "call_b", "Bash", "{}") + end("tool_use", AU)


def test_truncated_arguments_are_closed() -> None:
    events = run([calls(tc(0, "call_a", "Bash", '{"command": "ls -')), chunk({}, "length", usage=U)])
    # closed so the client can parse it, but the stop reason says it was cut off
    assert events == start() + tool(0, "call_a", "Bash", '{"command": "ls -', '"}') + end("max_tokens", AU)


def test_hopeless_arguments_end_with_an_error() -> None:
    events = run([calls(tc(0, "call_a", "Bash", "ls -la")), chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_a", "Bash", "ls -la") + error(
        "api_error", "upstream sent tool call 'Bash' with arguments that are not a JSON object: 'ls -la'"
    )


def test_arguments_that_are_a_json_array_end_with_an_error() -> None:
    events = run([calls(tc(0, "call_a", "Bash", [1, 2])), chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_a", "Bash", "[1, 2]") + error(
        "api_error", "upstream sent tool call 'Bash' with arguments that are not a JSON object: '[1, 2]'"
    )


def test_more_arguments_after_a_call_was_closed_is_an_error() -> None:
    events = run([calls(tc(0, "call_a", "Bash", ARGS_LS)), chunk({"content": "then text"}),
                  calls(tc(0, args='{"more": 1}')), chunk({}, "tool_calls")])
    assert events == (start() + tool(0, "call_a", "Bash", ARGS_LS) + text(1, "then text")[:2]
                      + [stop(1)] + error("api_error", "upstream sent more arguments for tool call 'Bash' after it was complete"))


def test_tool_call_without_a_name_is_an_error() -> None:
    events = run([calls(tc(0, "call_a", None, ARGS_LS)), chunk({}, "tool_calls", usage=U)])
    assert events == start() + error("api_error", "upstream sent a tool call without a function name")


def test_name_arriving_after_the_arguments() -> None:
    events = run([calls(tc(0, "call_a", None, '{"command": ')), calls(tc(0, None, "Bash", '"ls"}')),
                  chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_a", "Bash", '{"command": "ls"}') + end("tool_use", AU)


def test_stop_with_tool_calls_is_tool_use() -> None:
    events = run([calls(tc(0, "call_a", "Bash", ARGS_LS)), chunk({}, "stop", usage=U)])
    assert events == start() + tool(0, "call_a", "Bash", ARGS_LS) + end("tool_use", AU)


def test_text_then_tool_then_text() -> None:
    events = run([chunk({"content": "Let me check."}), calls(tc(0, "call_a", "Bash", ARGS_LS)),
                  chunk({"content": "Done."}), chunk({}, "tool_calls", usage=U)])
    assert events == (start() + text(0, "Let me check.") + tool(1, "call_a", "Bash", ARGS_LS) + text(2, "Done.")
                      + end("tool_use", AU))


def test_invalid_tool_ids_are_mapped_and_missing_ids_generated() -> None:
    events = run([calls(tc(0, "functions.Bash:0", "Bash", ARGS_LS)), calls(tc(1, None, "Bash", "{}")),
                  chunk({}, "tool_calls", usage=U)])
    assert events == (start() + tool(0, "toolu_cpxZnVuY3Rpb25zLkJhc2g6MA", "Bash", ARGS_LS)
                      + tool(1, "call_cdef01234567_1", "Bash", "{}") + end("tool_use", AU))
    assert to_upstream_id("toolu_cpxZnVuY3Rpb25zLkJhc2g6MA") == "functions.Bash:0"


def test_id_changed_mid_stream_keeps_the_first() -> None:
    events = run([calls(tc(0, "call_first", "Bash", '{"command": ')), calls(tc(0, "call_second", None, '"ls"}')),
                  chunk({}, "tool_calls", usage=U)])
    assert events == start() + tool(0, "call_first", "Bash", '{"command": ', '"ls"}') + end("tool_use", AU)


def test_legacy_function_call_delta() -> None:
    events = run([chunk({"function_call": {"name": "Bash", "arguments": '{"command"'}}),
                  chunk({"function_call": {"arguments": ': "ls"}'}}), chunk({}, "function_call", usage=U)])
    assert events == start() + tool(0, "call_cdef01234567_0", "Bash", '{"command"', ': "ls"}') + end("tool_use", AU)


def test_null_and_junk_fragments_are_ignored() -> None:
    events = run([chunk({"content": "x", "tool_calls": [None, "junk"]}), chunk({}, "stop", usage=U)])
    assert events == start() + text(0, "x") + end("end_turn", AU)


# -- usage and the end of the stream -------------------------------------------------------------


def test_usage_in_the_finish_chunk() -> None:
    assert run([chunk({"content": "x"}), chunk({}, "stop", usage=U)]) == start() + text(0, "x") + end("end_turn", AU)


def test_usage_in_a_separate_chunk_after_finish() -> None:
    # The finish chunk alone does not end the message: message_delta waits for [DONE].
    stream = StreamTranslator(context(), message_id=MSG_ID)
    events = stream.feed(chunk({"content": "x"}))
    assert stream.feed(chunk({}, "stop", usage=None)) == []
    assert stream.feed(usage_chunk({"prompt_tokens": 50, "completion_tokens": 7, "prompt_tokens_details":
                                    {"cached_tokens": 20}})) == []
    events += stream.feed_data("[DONE]")
    assert events == start() + text(0, "x") + end("end_turn", usage(30, 7, 20))
    assert stream.usage == usage(30, 7, 20)
    assert stream.stop_reason == "end_turn"


def test_usage_under_x_groq() -> None:
    events = run([chunk({"content": "x"}), chunk({}, "stop", x_groq={"id": "req_1", "usage": U})])
    assert events == start() + text(0, "x") + end("end_turn", AU)


def test_usage_inside_the_choice() -> None:
    finish = chunk({}, "stop")
    finish["choices"][0]["usage"] = {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 4}
    assert run([chunk({"content": "x"}), finish]) == start() + text(0, "x") + end("end_turn", usage(6, 5, 4))


def test_usage_absent_is_estimated() -> None:
    events = run([chunk({"content": "Hello world, this is text"}), chunk({}, "stop")])
    assert events == start() + text(0, "Hello world, this is text") + end("end_turn", usage(INPUT_ESTIMATE, 6))
    assert run([chunk({}, "stop")]) == start() + end("end_turn", usage(INPUT_ESTIMATE, 1))


def test_usage_last_one_wins() -> None:
    events = run([chunk({"content": "x"}, usage={"prompt_tokens": 1, "completion_tokens": 1}), chunk({}, "stop", usage=U)])
    assert events == start(1) + text(0, "x") + end("end_turn", AU)


def test_usage_in_the_first_chunk_sets_message_start() -> None:
    first = chunk({"content": "x"}, usage={"prompt_tokens": 40, "completion_tokens": 0,
                                           "prompt_tokens_details": {"cached_tokens": 30}})
    events = run([first, chunk({}, "stop", usage={"prompt_tokens": 40, "completion_tokens": 3,
                                                  "prompt_tokens_details": {"cached_tokens": 30}})])
    assert events == start(10, 30) + text(0, "x") + end("end_turn", usage(10, 3, 30))


def test_xai_reasoning_tokens_separate() -> None:
    ctx = context(Dialect(reasoning_tokens_separate=True))
    events = run([chunk({"content": "x"}), chunk({}, "stop"),
                  usage_chunk({"prompt_tokens": 291, "completion_tokens": 26,
                               "completion_tokens_details": {"reasoning_tokens": 196}})], ctx)
    assert events == start() + text(0, "x") + end("end_turn", usage(291, 222))


def test_done_missing_after_finish_reason() -> None:
    events = run([chunk({"content": "x"}), chunk({}, "length", usage=U)], done=False)
    assert events == start() + text(0, "x") + end("max_tokens", AU)


def test_eof_without_finish_reason_is_an_error() -> None:
    events = run([chunk({"content": "x"})], done=False)
    assert events == start() + text(0, "x")[:2] + [stop(0)] + error(
        "api_error", "upstream stream ended without a finish_reason: the response was cut off"
    )


def test_eof_before_anything() -> None:
    assert run([], done=False) == start() + error(
        "api_error", "upstream stream ended without a finish_reason: the response was cut off"
    )


def test_done_without_finish_reason_is_a_normal_end() -> None:
    assert run([chunk({"content": "x"}, usage=U)]) == start(10) + text(0, "x") + end("end_turn", AU)


def test_eof_in_the_middle_of_a_thinking_block() -> None:
    events = run([chunk({"reasoning_content": "hmm"})], done=False)
    assert events == [*start(), thinking(0, "hmm")[0], thinking(0, "hmm")[1], stop(0), *error("api_error", "upstream stream ended without a finish_reason: the response was cut off")]


@pytest.mark.parametrize(
    ("reason", "stop_reason"),
    [("stop", "end_turn"), ("eos", "end_turn"), ("end_turn", "end_turn"), ("length", "max_tokens"),
     ("model_length", "max_tokens"), ("max_tokens", "max_tokens"), ("content_filter", "refusal"),
     ("safety", "refusal"), ("recitation", "refusal"), ("tool_calls", "tool_use"), ("function_call", "tool_use"),
     ("unload", "end_turn")],
)
def test_finish_reasons(reason: str, stop_reason: str) -> None:
    assert run([chunk({"content": "x"}), chunk({}, reason, usage=U)]) == (
        start() + text(0, "x") + end(stop_reason, AU)
    )


@pytest.mark.parametrize("reason", ["error", "network_error", "insufficient_system_resource", "ERROR"])
def test_error_finish_reasons(reason: str) -> None:
    assert run([chunk({"content": "x"}), chunk({}, reason, usage=U)]) == (
        start() + text(0, "x")[:2] + [stop(0)]
        + error("api_error", f"upstream ended the response with finish_reason {reason!r}")
    )


def test_stop_sequence_from_vllm_stop_reason_and_sglang_matched_stop() -> None:
    ctx = context(stop_sequences=["END"])
    vllm = chunk({"content": ""}, "stop", usage=U)
    vllm["choices"][0]["stop_reason"] = "END"
    assert run([chunk({"content": "x"}), vllm], ctx) == start() + text(0, "x") + end("stop_sequence", AU, "END")
    sglang = chunk({}, "stop", usage=U)
    sglang["choices"][0]["matched_stop"] = "END"
    assert run([chunk({"content": "x"}), sglang], ctx) == start() + text(0, "x") + end("stop_sequence", AU, "END")
    token = chunk({}, "stop", usage=U)
    token["choices"][0]["stop_reason"] = 128009
    assert run([chunk({"content": "x"}), token], ctx) == start() + text(0, "x") + end("end_turn", AU)


def test_other_choices_are_ignored() -> None:
    other = chunk({"content": "other"})
    other["choices"][0]["index"] = 1
    assert run([chunk({"content": "x"}), other, chunk({}, "stop", usage=U)]) == start() + text(0, "x") + end("end_turn", AU)


# -- errors mid-stream ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        ({"error": {"message": "The server had an error while processing your request. Sorry about that!",
                    "type": "server_error"}},
         "api_error", "upstream error: The server had an error while processing your request. Sorry about that!"),
        ({"error": {"message": "Rate limit", "type": "tokens", "code": "rate_limit_exceeded"}},
         "rate_limit_error", "upstream error: Rate limit"),
        ({"object": "error", "message": "prompt too long", "type": "BadRequestError", "param": None, "code": 400},
         "invalid_request_error", "upstream error: prompt too long"),
        ({"id": "gen-1", "object": "chat.completion.chunk", "provider": "X",
          "error": {"code": 502, "message": "Provider returned error", "metadata": {"raw": "boom"}},
          "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}]},
         "api_error", "upstream error: Provider returned error (boom)"),
        ([{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}],
         "overloaded_error", "upstream error: The model is overloaded."),
        ({"error": "model crashed"}, "api_error", "upstream error: model crashed"),
        ({"error": {"code": 429, "message": "slow down"}}, "rate_limit_error", "upstream error: slow down"),
    ],
)
def test_error_objects_mid_stream(payload: Any, kind: str, message: str) -> None:
    events = run([chunk({"content": "partial"}), payload, chunk({"content": "ignored"}), chunk({}, "stop")])
    assert events == start() + text(0, "partial")[:2] + [stop(0)] + error(kind, message)


def test_error_as_the_first_chunk() -> None:
    assert run([{"error": {"message": "nope", "type": "invalid_request_error"}}]) == (
        start() + error("invalid_request_error", "upstream error: nope")
    )


def test_malformed_json_chunk() -> None:
    events = run([chunk({"content": "x"}), '{"choices": [', chunk({}, "stop")])
    assert events == start() + text(0, "x")[:2] + [stop(0)] + error(
        "api_error", "upstream sent a malformed stream chunk: '{\"choices\": ['"
    )


def test_non_object_json_chunk() -> None:
    assert run(["42"]) == start() + error("api_error", "upstream error: upstream reported an error mid-stream")


def test_chunk_without_choices_is_ignored() -> None:
    assert run([{"id": "x", "object": "chat.completion.chunk"}, chunk({}, "stop", usage=U)]) == (
        start() + end("end_turn", AU)
    )


# -- the public API around the stream ---------------------------------------------------------------


def test_ping() -> None:
    stream = StreamTranslator(context(), message_id=MSG_ID)
    assert stream.ping() == start()
    assert stream.ping() == [{"type": "ping"}]
    events = stream.feed(chunk({"content": "x"}, "stop", usage=U))
    assert stream.ping() == [{"type": "ping"}]
    events += stream.finish()
    assert events == text(0, "x") + end("end_turn", AU)
    assert stream.ping() == []


def test_fail_after_finish_does_nothing() -> None:
    stream = StreamTranslator(context(), message_id=MSG_ID)
    stream.feed(chunk({"content": "x"}, "stop"))
    stream.finish()
    assert stream.fail("api_error", "late") == []
    assert stream.feed(chunk({"content": "more"})) == []
    assert stream.feed_data("[DONE]") == []
    assert stream.feed_data("not json") == []
    assert stream.ended and stream.error is None


def test_fail_closes_the_open_block() -> None:
    stream = StreamTranslator(context(), message_id=MSG_ID)
    events = stream.feed(calls(tc(0, "call_a", "Bash", '{"comm')))
    events += stream.fail("timeout_error", "upstream read timed out")
    assert events == [*start(), tool_start(0, "call_a", "Bash"), json_delta(0, '{"comm'), stop(0), *error("timeout_error", "upstream read timed out")]
    assert stream.error == ("timeout_error", "upstream read timed out")
    assert stream.finish() == [] and stream.fail("api_error", "again") == []


def test_fail_before_start() -> None:
    stream = StreamTranslator(context(), message_id=MSG_ID)
    assert not stream.started
    assert stream.fail("api_error", "connect failed") == start() + error("api_error", "connect failed")
    assert stream.started and stream.ended


def test_generated_message_id() -> None:
    stream = StreamTranslator(context())
    first = stream.start()
    assert first[0]["message"]["id"].startswith("msg_") and len(first[0]["message"]["id"]) == 28
    assert stream.start() == []


# -- one test per provider shape (raw SSE through the parser) ------------------------------------------


def test_openai_text_include_usage() -> None:
    base = {"id": "chatcmpl-B9", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_1"}

    def c(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                "usage": None, "obfuscation": "pad"}

    raw = sse(
        c({"role": "assistant", "content": "", "refusal": None}),
        c({"content": "Hello"}),
        c({"content": "!"}),
        c({}, "stop"),
        {**base, "choices": [], "usage": {"prompt_tokens": 19, "completion_tokens": 2, "total_tokens": 21,
                                          "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                                          "completion_tokens_details": {"reasoning_tokens": 0}}},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == start() + text(0, "Hello", "!") + end("end_turn", usage(19, 2))


def test_openai_tool_call_args_split() -> None:
    def c(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-C", "object": "chat.completion.chunk", "model": "gpt-4o",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": None}

    call_id = "call_" + "A" * 24
    raw = sse(
        c({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": "Bash", "arguments": ""}}],
           "refusal": None}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": '{"co'}}]}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": 'mmand":"l'}}]}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": 's"}'}}]}),
        c({"tool_calls": [{"index": 1, "id": "call_" + "B" * 24, "type": "function",
                           "function": {"name": "Bash", "arguments": ""}}]}),
        c({"tool_calls": [{"index": 1, "function": {"arguments": '{"command":"pwd"}'}}]}),
        c({}, "tool_calls"),
        {"id": "chatcmpl-C", "object": "chat.completion.chunk", "choices": [],
         "usage": {"prompt_tokens": 80, "completion_tokens": 30, "total_tokens": 110}},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == (start() + tool(0, call_id, "Bash", '{"co', 'mmand":"l', 's"}')
                            + tool(1, "call_" + "B" * 24, "Bash", '{"command":"pwd"}') + end("tool_use", usage(80, 30)))


def test_openai_midstream_error_no_done() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Par"}),
        {"error": {"message": "The server had an error while processing your request. Sorry about that!",
                   "type": "server_error"}},
    )
    assert run_sse(raw) == start() + text(0, "Par")[:2] + [stop(0)] + error(
        "api_error", "upstream error: The server had an error while processing your request. Sorry about that!"
    )


def test_deepseek_reasoner_reasoning_then_content() -> None:
    base = {"id": "6f3c2a1e-0000-4000-8000-123456789abc", "object": "chat.completion.chunk", "created": 1,
            "model": "deepseek-reasoner", "system_fingerprint": "fp_ds"}

    def c(delta: dict[str, Any], finish: str | None = None, use: Any = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                "usage": use}

    ds_usage = {"prompt_tokens": 20, "completion_tokens": 345, "total_tokens": 365, "prompt_tokens_details":
                {"cached_tokens": 16}, "completion_tokens_details": {"reasoning_tokens": 315},
                "prompt_cache_hit_tokens": 16, "prompt_cache_miss_tokens": 4}
    raw = sse(
        c({"role": "assistant", "content": None, "reasoning_content": ""}),
        c({"content": None, "reasoning_content": "The user"}),
        c({"content": None, "reasoning_content": " greets."}),
        c({"content": "Hi", "reasoning_content": None}),
        c({"content": " there", "reasoning_content": None}),
        c({"content": "", "reasoning_content": None}, "stop", ds_usage),
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == (start() + thinking(0, "The user", " greets.") + text(1, "Hi", " there")
                            + end("end_turn", usage(4, 345, 16)))


def test_deepseek_reasoner_tool_call_after_reasoning() -> None:
    call_id = "call_00_" + "abcdefghijklmnopqrstuvwx"
    raw = sse(
        chunk({"role": "assistant", "content": None, "reasoning_content": "Need ls."}, usage=None),
        chunk({"content": None, "reasoning_content": None, "tool_calls": [
            {"index": 0, "id": call_id, "type": "function", "function": {"name": "Bash", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"command":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "ls"}'}}]}),
        chunk({"content": ""}, "tool_calls", usage=U),
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == (start() + thinking(0, "Need ls.") + tool(1, call_id, "Bash", '{"command":', ' "ls"}')
                            + end("tool_use", AU))


def test_groq_text_x_groq_usage() -> None:
    groq_usage = {"queue_time": 0.01, "prompt_tokens": 12, "prompt_time": 0.001, "completion_tokens": 3,
                  "completion_time": 0.01, "total_tokens": 15, "total_time": 0.011}
    raw = sse(
        chunk({"role": "assistant", "content": ""}, x_groq={"id": "req_01", "seed": 42}),
        chunk({"content": "Hey"}),
        chunk({}, "stop", x_groq={"id": "req_01", "usage": groq_usage}, usage=groq_usage),
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == start() + text(0, "Hey") + end("end_turn", usage(12, 3))
    older = sse(chunk({"content": "Hey"}), chunk({}, "stop", x_groq={"id": "req_01", "usage": groq_usage}),
                "data: [DONE]\n\n")
    assert run_sse(older) == start() + text(0, "Hey") + end("end_turn", usage(12, 3))


def test_groq_tool_call_whole_args_and_reasoning() -> None:
    raw = sse(
        chunk({"role": "assistant", "reasoning": "Use Bash."}, x_groq={"id": "req_02"}),
        chunk({"tool_calls": [{"id": "tk85n1k4m", "type": "function",
                               "function": {"name": "Bash", "arguments": '{"command":"ls"}'}, "index": 0}]}),
        chunk({}, "tool_calls", x_groq={"id": "req_02", "usage": U}),
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == (start() + thinking(0, "Use Bash.") + tool(1, "tk85n1k4m", "Bash", '{"command":"ls"}')
                            + end("tool_use", AU))


def test_xai_grok_reasoning_tool_usage() -> None:
    def c(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"id": "x1", "object": "chat.completion.chunk", "model": "grok-3-mini",
                "choices": [{"index": 0, "delta": delta, **extra}]}

    raw = sse(
        c({"role": "assistant", "reasoning_content": "Thinking"}),
        c({"reasoning_content": " hard"}),
        c({"tool_calls": [{"id": "call_12345678", "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                           "index": 0, "type": "function"}]}),
        c({}, finish_reason="tool_calls"),
        {"id": "x1", "object": "chat.completion.chunk", "choices": [], "usage": {
            "prompt_tokens": 291, "completion_tokens": 26, "total_tokens": 513,
            "completion_tokens_details": {"reasoning_tokens": 196}, "num_sources_used": 0,
            "cost_in_usd_ticks": 12345}},
        "data: [DONE]\n\n",
    )
    ctx = context(Dialect(reasoning_tokens_separate=True))
    assert run_sse(raw, ctx) == (start() + thinking(0, "Thinking", " hard")
                                 + tool(1, "call_12345678", "Bash", '{"command":"ls"}') + end("tool_use", usage(291, 222)))


def test_mistral_tool_call_no_index() -> None:
    mistral_usage = {"prompt_tokens": 60, "total_tokens": 80, "completion_tokens": 20}
    raw = sse(
        {"id": "0123456789abcdef0123456789abcdef", "object": "chat.completion.chunk", "model": "mistral-large",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {"id": "0123456789abcdef0123456789abcdef", "object": "chat.completion.chunk", "model": "mistral-large",
         "choices": [{"index": 0, "delta": {"tool_calls": [
             {"id": "D681PevKs", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}},
             {"id": "x9Y8z7W6v", "function": {"name": "Bash", "arguments": '{"command": "pwd"}'}},
         ]}, "finish_reason": "tool_calls"}], "usage": mistral_usage},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw, context(Dialect(tool_id_style="alnum9"))) == (
        start() + tool(0, "D681PevKs", "Bash", '{"command": "ls"}') + tool(1, "x9Y8z7W6v", "Bash", '{"command": "pwd"}')
        + end("tool_use", usage(60, 20))
    )


def test_mistral_magistral_thinking_parts() -> None:
    raw = sse(
        chunk({"role": "assistant", "content": [
            {"type": "thinking", "thinking": [{"type": "text", "text": "Okay, 2+2"}]}]}),
        chunk({"content": [{"type": "thinking", "thinking": [{"type": "text", "text": " is 4."}]}]}),
        chunk({"content": [{"type": "text", "text": "4"}]}),
        chunk({"content": ""}, "stop", usage=U),
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == start() + thinking(0, "Okay, 2+2", " is 4.") + text(1, "4") + end("end_turn", AU)


def test_moonshot_usage_inside_choice_and_kimi_ids() -> None:
    def c(delta: dict[str, Any], finish: str | None = None, use: Any = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if use:
            choice["usage"] = use
        return {"id": "cmpl-abc", "object": "chat.completion.chunk", "model": "kimi-k2-thinking", "choices": [choice]}

    raw = sse(
        c({"role": "assistant", "reasoning_content": "Call it."}),
        c({"tool_calls": [{"index": 0, "id": "functions.Bash:0", "type": "function",
                           "function": {"name": "Bash", "arguments": ""}}]}),
        c({"tool_calls": [{"index": 0, "type": "function", "function": {"arguments": '{"command":"ls"}'}}]}),
        c({}, "tool_calls", {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39, "cached_tokens": 10,
                             "prompt_tokens_details": {"cached_tokens": 10}}),
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == (start() + thinking(0, "Call it.")
                            + tool(1, "toolu_cpxZnVuY3Rpb25zLkJhc2g6MA", "Bash", '{"command":"ls"}')
                            + end("tool_use", usage(20, 9, 10)))


def test_openrouter_processing_comments_and_reasoning_details() -> None:
    def c(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": "gen-1", "provider": "Anthropic", "model": "anthropic/claude", "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": finish,
                             "native_finish_reason": finish}], **extra}

    raw = sse(
        ": OPENROUTER PROCESSING\n\n",
        ": OPENROUTER PROCESSING\n\n",
        c({"content": "", "reasoning": "Plan.", "reasoning_details": [
            {"type": "reasoning.text", "text": "Plan.", "format": "anthropic-claude-v1", "index": 0}]}),
        c({"content": "", "reasoning": None, "reasoning_details": [
            {"type": "reasoning.text", "signature": "sig", "format": "anthropic-claude-v1", "index": 0}]}),
        c({"content": "Done", "reasoning": "", "reasoning_details": []}),
        c({"content": "", "reasoning": "", "reasoning_details": []}, "stop"),
        {"id": "gen-1", "object": "chat.completion.chunk", "choices": [], "usage": {
            "prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15, "cost": 0.001, "is_byok": False,
            "cost_details": {"upstream_inference_cost": None}, "completion_tokens_details": {"reasoning_tokens": 2}}},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == start() + thinking(0, "Plan.") + text(1, "Done") + end("end_turn", usage(11, 4))


def test_openrouter_midstream_error_finish_error() -> None:
    raw = sse(
        ": OPENROUTER PROCESSING\n\n",
        chunk({"role": "assistant", "content": "Hel"}),
        {"id": "gen-2", "object": "chat.completion.chunk", "provider": "Google",
         "error": {"code": 502, "message": "Provider returned error", "metadata": {"raw": "Internal error",
                                                                                   "provider_name": "Google"}},
         "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}]},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == start() + text(0, "Hel")[:2] + [stop(0)] + error(
        "api_error", "upstream error: Provider returned error (Internal error)"
    )


def test_vllm_tool_call_fragmented() -> None:
    tool_id = "chatcmpl-tool-" + "0123456789abcdef" * 2

    def c(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": "chatcmpl-v", "object": "chat.completion.chunk", "model": "",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}]}

    raw = sse(
        c({"role": "assistant", "content": ""}),
        c({"tool_calls": [{"id": tool_id, "type": "function", "index": 0, "function": {"name": "Bash"}}]}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": '{"command": '}}]}),
        c({"tool_calls": [{"index": 0, "function": {"arguments": '"ls"}'}}]}),
        c({"content": ""}, "tool_calls", stop_reason=None),
        {"id": "chatcmpl-v", "object": "chat.completion.chunk", "model": "", "choices": [],
         "usage": {"prompt_tokens": 100, "total_tokens": 120, "completion_tokens": 20}},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == start() + tool(0, tool_id, "Bash", '{"command": ', '"ls"}') + end("tool_use", usage(100, 20))


def test_vllm_stop_string_and_flat_error() -> None:
    ctx = context(stop_sequences=["###"])
    raw = sse(chunk({"content": "a"}), chunk({"content": ""}, "stop", usage=U) | {
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop", "stop_reason": "###"}]},
        "data: [DONE]\n\n")
    assert run_sse(raw, ctx) == start() + text(0, "a") + end("stop_sequence", AU, "###")
    err = sse(chunk({"content": "a"}), {"object": "error", "message": "KV cache full", "type": "ServiceUnavailable",
                                        "param": None, "code": 503})
    assert run_sse(err) == start() + text(0, "a")[:2] + [stop(0)] + error("overloaded_error", "upstream error: KV cache full")


def test_sglang_null_tool_calls_and_matched_stop() -> None:
    ctx = context(stop_sequences=["</answer>"])
    finish = chunk({"content": None, "tool_calls": None}, "stop", usage=U)
    finish["choices"][0]["matched_stop"] = "</answer>"
    raw = sse(chunk({"content": "42", "tool_calls": None, "reasoning_content": None}), finish, "data: [DONE]\n\n")
    assert run_sse(raw, ctx) == start() + text(0, "42") + end("stop_sequence", AU, "</answer>")


def test_ollama_older_role_on_every_delta() -> None:
    def c(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-7", "object": "chat.completion.chunk", "model": "qwen3", "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": {"role": "assistant", **delta}, "finish_reason": finish}]}

    raw = sse(c({"content": "", "reasoning": "Hm."}), c({"content": "Yes"}), c({"content": ""}, "stop"),
              "data: [DONE]\n\n")
    assert run_sse(raw) == start() + thinking(0, "Hm.") + text(1, "Yes") + end("end_turn", usage(INPUT_ESTIMATE, 1))


def test_ollama_two_tool_calls_whole() -> None:
    def c(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-8", "object": "chat.completion.chunk", "model": "qwen3", "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    raw = sse(
        c({"role": "assistant", "content": ""}),
        c({"tool_calls": [
            {"id": "call_ab12cd34", "index": 0, "type": "function",
             "function": {"name": "Bash", "arguments": '{"command":"ls"}'}},
            {"id": "call_ef56gh78", "index": 1, "type": "function",
             "function": {"name": "Bash", "arguments": '{"command":"pwd"}'}},
        ]}),
        c({}, "tool_calls"),
        {"id": "chatcmpl-8", "object": "chat.completion.chunk", "choices": [],
         "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == (start() + tool(0, "call_ab12cd34", "Bash", '{"command":"ls"}')
                            + tool(1, "call_ef56gh78", "Bash", '{"command":"pwd"}') + end("tool_use", usage(40, 12)))


def test_gemini_openai_compat_parallel_tools_no_index() -> None:
    def c(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "g1", "object": "chat.completion.chunk", "model": "gemini-3-pro",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    sig = {"google": {"thought_signature": "CiQB..."}}
    raw = sse(
        c({"role": "assistant", "tool_calls": [{"id": "a1b2", "type": "function", "extra_content": sig,
                                                "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}]}),
        c({"tool_calls": [{"id": "c3d4", "type": "function",
                           "function": {"name": "Bash", "arguments": '{"command":"pwd"}'}}]}),
        c({}, "stop") | {"usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}},
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == (start() + tool(0, "a1b2", "Bash", '{"command":"ls"}')
                            + tool(1, "c3d4", "Bash", '{"command":"pwd"}') + end("tool_use", usage(50, 10)))


def test_gemini_error_array_mid_stream() -> None:
    raw = sse(chunk({"content": "x"}),
              [{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}])
    assert run_sse(raw) == start() + text(0, "x")[:2] + [stop(0)] + error(
        "rate_limit_error", "upstream error: Resource has been exhausted"
    )


def test_zai_glm_continuation_with_empty_name_and_stray_index() -> None:
    raw = sse(
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_glm1", "type": "function",
                                                    "function": {"name": "Bash", "arguments": ""}}]}),
        chunk({"index": 0, "tool_calls": [{"function": {"name": "", "arguments": '{"command":"ls"}'}}]}),
        chunk({}, "tool_calls", usage=U),
        "data: [DONE]\n\n",
    )
    assert run_sse(raw) == start() + tool(0, "call_glm1", "Bash", '{"command":"ls"}') + end("tool_use", AU)


def test_copilot_index_starting_at_one_with_id_and_event_lines() -> None:
    raw = (
        b"event: message\nid: 1\n" + sse(chunk({"content": "Sure."}))
        + b"id: 2\n" + sse(calls(tc(1, "call_cp", "Bash", '{"command":"ls"}')))
        + sse(chunk({}, "tool_calls", usage=U), "data: [DONE]\n\n")
    )
    assert run_sse(raw) == (start() + text(0, "Sure.") + tool(1, "call_cp", "Bash", '{"command":"ls"}')
                            + end("tool_use", AU))


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64, 4096])
def test_provider_stream_is_independent_of_read_size(step: int) -> None:
    raw = sse(
        ": keep-alive\r\n\r\n",
        chunk({"reasoning_content": "R"}),
        chunk({"content": "héllo ✓"}),
        calls(tc(0, "call_a", "Bash", '{"command": "é"}')),
        chunk({}, "tool_calls", usage=U),
        "data: [DONE]\r\n\r\n",
    )
    assert run_sse(raw, step=step) == (start() + thinking(0, "R") + text(1, "héllo ✓")
                                       + tool(2, "call_a", "Bash", '{"command": "é"}') + end("tool_use", AU))


def test_gateway_numbering_every_call_zero_still_gives_two_calls() -> None:
    # Some gateways put index 0 on every call; a new id that carries a name after a complete
    # call starts a new one (a host that only changes the id mid-call sends no name).
    events = run([
        calls(tc(0, "call_a", "Bash", ARGS_LS)),
        calls(tc(0, "call_b", "Read", '{"path": ')),
        calls(tc(0, args='"x"}')),
        chunk({}, "tool_calls", usage=U),
    ])
    assert events == (start() + tool(0, "call_a", "Bash", ARGS_LS)
                      + tool(1, "call_b", "Read", '{"path": ', '"x"}') + end("tool_use", AU))


def test_same_index_new_id_without_name_continues_the_call() -> None:
    events = run([
        calls(tc(0, "call_a", "Bash", '{"command": ')),
        calls(tc(0, "call_changed", None, '"ls"}')),
        chunk({}, "tool_calls", usage=U),
    ])
    assert events == start() + tool(0, "call_a", "Bash", '{"command": ', '"ls"}') + end("tool_use", AU)


def test_empty_data_line_is_a_keep_alive() -> None:
    translator = StreamTranslator(context())
    assert translator.feed_data("") == []
    assert translator.feed_data("  ") == []
    assert not translator.ended


def test_a_stream_stopped_before_its_usage_counts_the_prompt_and_the_output_so_far() -> None:
    """The client hung up before the provider's usage chunk: an estimate, flagged, not nothing."""
    stream = StreamTranslator(context(), message_id=MSG_ID)
    stream.feed_data(json.dumps(chunk({"content": "x" * 41})))
    stream.feed_data(json.dumps(calls(tc(0, "call_1", "Bash", '{"command": "l'))))
    assert stream.usage is None
    assert stream.usage_so_far() == (
        {"input_tokens": INPUT_ESTIMATE, "output_tokens": (41 + len('{"command": "l')) // 4,
         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}, True)


def test_a_stream_stopped_after_its_usage_counts_what_the_provider_reported() -> None:
    stream = StreamTranslator(context(), message_id=MSG_ID)
    stream.feed_data(json.dumps(chunk({"content": "Hello"})))
    stream.feed_data(json.dumps(chunk({}, "stop")))
    stream.feed_data(json.dumps(usage_chunk(U)))  # the client leaves before [DONE]
    assert stream.usage_so_far() == (AU, False)
