"""Property tests: whatever the upstream sends, the Anthropic event grammar holds.

`check_grammar` is the Anthropic streaming grammar as a function; the generators build chunk
sequences the way the providers in provider-quirks.md do (text, reasoning in its three
spellings, tool calls keyed by index / by id / by nothing, interleaved, fragmented or whole,
usage in any of its places, finish_reason and [DONE] present or not, early cuts).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from claude_proxy.translate import StreamTranslator, translate_request
from claude_proxy.translate.identifiers import to_anthropic_id
from claude_proxy.translate.request import RequestContext
from claude_proxy.translate.response import map_finish_reason
from tests.support.grammar import check_grammar

MSG_ID = "msg_0123456789abcdef01234567"
LONG = "mcp__some_server__" + "x" * 60
LONG_UP = "mcp__some_server__" + "x" * 37 + "_862e5532"
NAMES = {"Bash": "Bash", "Read": "Read", LONG_UP: LONG}
def context() -> RequestContext:
    body = {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": n, "input_schema": {"type": "object"}} for n in ("Bash", "Read", LONG)],
    }
    return translate_request(body, model="gpt-4o").context


CTX = context()


# -- the grammar --------------------------------------------------------------------------------


def test_the_validator_rejects_broken_streams() -> None:
    ok = [
        {"type": "message_start", "message": {"role": "assistant", "content": [], "stop_reason": None}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"input_tokens": 1, "output_tokens": 1, "cache_creation_input_tokens": 0,
                   "cache_read_input_tokens": 0}},
        {"type": "message_stop"},
    ]
    assert check_grammar(ok).ending == "message"
    broken = [
        ok[1:],  # no message_start
        ok[:3] + ok[4:],  # block never stopped
        [*ok[:1], {**ok[1], "index": 1}, *ok[2:]],  # index gap
        [*ok[:2], {**ok[2], "delta": {"type": "input_json_delta", "partial_json": "{}"}}, *ok[3:]],  # wrong kind
        ok[:4] + ok[5:],  # no message_delta
        [*ok, {"type": "ping"}],  # after the end
        [*ok[:4], {"type": "error", "error": {"type": "api_error", "message": "x"}}, ok[4]],  # two endings
        ok[:4],  # never ends
    ]
    for events in broken:
        try:
            check_grammar(events)
        except (AssertionError, KeyError):
            continue
        raise AssertionError(f"validator accepted {events}")


# -- legal upstream streams ------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
pieces_text = st.text(min_size=1, max_size=10)


@st.composite
def fragments_of(draw: st.DrawFn, serialized: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(serialized)), max_size=4)))
    bounds = [0, *cuts, len(serialized)]
    return [serialized[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class Call:
    key: int
    upstream_id: str
    name: str
    obj: dict[str, Any]
    fragments: list[str]


@dataclass
class Scenario:
    chunks: list[Any]  # dicts, or raw data strings
    texts: str
    reasoning: str
    calls: list[Call]
    usage: dict[str, Any] | None
    finish: str | None
    done: bool
    cut: int | None
    cut_with_fail: bool
    pings: list[bool]


def content_chunk(kind: str, text: str, draw: st.DrawFn) -> dict[str, Any]:
    delta: dict[str, Any]
    if kind == "text":
        delta = {"content": text}
        extra = draw(st.sampled_from(["", "nulls", "openrouter", "role", "mistral"]))
        if extra == "nulls":
            delta.update({"reasoning_content": None, "tool_calls": None})
        elif extra == "openrouter":
            delta.update({"role": "assistant", "reasoning": "", "reasoning_details": []})
        elif extra == "role":
            delta["role"] = "assistant"
        elif extra == "mistral":
            delta = {"content": [{"type": "text", "text": text}]}
    else:
        spelling = draw(st.sampled_from(["reasoning_content", "reasoning", "details", "both", "mistral"]))
        if spelling == "reasoning_content":
            delta = {"content": None, "reasoning_content": text}
        elif spelling == "reasoning":
            delta = {"content": "", "reasoning": text}
        elif spelling == "details":
            delta = {"content": "", "reasoning": None,
                     "reasoning_details": [{"type": "reasoning.text", "text": text, "index": 0}]}
        elif spelling == "both":  # OpenRouter: the same text twice, to be counted once
            delta = {"content": "", "reasoning": text,
                     "reasoning_details": [{"type": "reasoning.text", "text": text, "index": 0}]}
        else:
            delta = {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]}
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    before = draw(st.lists(st.tuples(st.sampled_from(["text", "reasoning"]), pieces_text), max_size=5))
    after = draw(st.lists(st.tuples(st.sampled_from(["text", "reasoning"]), pieces_text), max_size=2))
    mode = draw(st.sampled_from(["index", "index_from_1", "no_index"]))
    id_style = draw(st.sampled_from(["call", "kimi"]))
    calls: list[Call] = []
    for n in range(draw(st.integers(0, 3))):
        obj = draw(json_objects)
        serialized = draw(st.sampled_from([
            json.dumps(obj), json.dumps(obj, separators=(",", ":")), json.dumps(obj, ensure_ascii=False)]))
        fragments = draw(fragments_of(serialized))
        if draw(st.booleans()):  # OpenAI/DeepSeek: an empty "arguments" first
            fragments.insert(0, "")
        upstream_id = f"call_{n}_{draw(st.integers(0, 999))}" if id_style == "call" else f"functions.Bash:{n}"
        calls.append(Call(n, upstream_id, draw(st.sampled_from(sorted(NAMES))), obj, fragments))

    # Tool fragments in upstream order: interleaved when keyed by index, sequential otherwise.
    order: list[tuple[Call, int]] = []
    if mode == "no_index":
        order = [(c, k) for c in calls for k in range(len(c.fragments))]
    else:
        cursors = {c.key: 0 for c in calls}
        while any(cursors[c.key] < len(c.fragments) for c in calls):
            ready = [c for c in calls if cursors[c.key] < len(c.fragments)]
            c = draw(st.sampled_from(ready))
            order.append((c, cursors[c.key]))
            cursors[c.key] += 1
    base = 1 if mode == "index_from_1" else 0
    fragment_dicts: list[dict[str, Any]] = []
    for c, k in order:
        frag: dict[str, Any] = {}
        if mode != "no_index":
            frag["index"] = base + c.key
        function: dict[str, Any] = {}
        if k == 0:
            frag.update({"id": c.upstream_id, "type": "function"})
            function["name"] = c.name
            if c.fragments[0] or draw(st.booleans()):  # vLLM/Kimi: no "arguments" key at all
                function["arguments"] = c.fragments[0]
        else:
            style = draw(st.sampled_from(["plain", "nulls", "empty_name", "type"]))
            if style == "nulls" and mode != "no_index":
                frag.update({"id": None, "type": None})
                function["name"] = None
            elif style == "empty_name":
                function["name"] = ""
            elif style == "type":
                frag["type"] = "function"
            function["arguments"] = c.fragments[k]
        frag["function"] = function
        fragment_dicts.append(frag)

    chunks: list[Any] = [content_chunk(kind, text, draw) for kind, text in before]
    i = 0
    while i < len(fragment_dicts):
        size = draw(st.integers(1, 3))
        group = fragment_dicts[i : i + size]
        i += len(group)
        chunks.append({"id": "c", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {"tool_calls": group}, "finish_reason": None}]})
    chunks += [content_chunk(kind, text, draw) for kind, text in after]

    finish = draw(st.sampled_from([None, "stop", "length", "tool_calls", "content_filter", "eos"]))
    if finish is not None:
        chunks.append({"id": "c", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    usage = draw(st.none() | st.fixed_dictionaries({
        "prompt_tokens": st.integers(0, 5000), "completion_tokens": st.integers(0, 5000),
        "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": st.integers(0, 100)})}))
    if usage is not None:
        usage["prompt_tokens"] += usage["prompt_tokens_details"]["cached_tokens"]
        place = draw(st.sampled_from(["separate", "last", "x_groq", "choice", "first"]))
        if place == "separate" or not chunks:
            chunks.append({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage})
        elif place == "x_groq":
            chunks[-1] = {**chunks[-1], "x_groq": {"id": "req_1", "usage": usage}}
        elif place == "choice" and chunks[-1]["choices"]:
            chunks[-1] = {**chunks[-1], "choices": [{**chunks[-1]["choices"][0], "usage": usage}]}
        elif place == "first":
            chunks[0] = {**chunks[0], "usage": usage}
        else:
            chunks[-1] = {**chunks[-1], "usage": usage}
    done = draw(st.booleans())
    cut = draw(st.none() | st.integers(0, len(chunks)))
    return Scenario(
        chunks=chunks,
        texts="".join(t for k, t in before + after if k == "text"),
        reasoning="".join(t for k, t in before + after if k == "reasoning"),
        calls=calls,
        usage=usage,
        finish=finish,
        done=done,
        cut=cut,
        cut_with_fail=draw(st.booleans()),
        pings=draw(st.lists(st.booleans(), min_size=len(chunks) + 1, max_size=len(chunks) + 1)),
    )


def play(s: Scenario) -> list[dict[str, Any]]:
    stream = StreamTranslator(CTX, message_id=MSG_ID)
    events: list[dict[str, Any]] = []
    chunks = s.chunks if s.cut is None else s.chunks[: s.cut]
    for chunk, ping in zip(chunks, s.pings, strict=False):
        if ping:
            events += stream.ping()
        events += stream.feed_data(chunk if isinstance(chunk, str) else json.dumps(chunk))
    if s.pings[len(chunks)]:
        events += stream.ping()
    if s.cut is not None and s.cut_with_fail:
        events += stream.fail("api_error", "client went away")
    else:
        if s.done and s.cut is None:
            events += stream.feed_data("[DONE]")
        events += stream.finish()
    assert stream.finish() == [] and stream.fail("api_error", "late") == [] and stream.ping() == []
    return events


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_legal_streams_follow_the_grammar_and_keep_the_content(s: Scenario) -> None:
    outcome = check_grammar(play(s))
    if s.cut is not None:
        return
    if s.finish is None and not s.done:
        assert outcome.ending == "error"
        assert outcome.error == {"type": "error", "error": {
            "type": "api_error", "message": "upstream stream ended without a finish_reason: the response was cut off"}}
        return
    assert outcome.ending == "message", outcome.error
    blocks = outcome.blocks
    assert "".join(b.content for b in blocks if b.kind == "text") == s.texts
    assert "".join(b.content for b in blocks if b.kind == "thinking") == s.reasoning
    tools = [b for b in blocks if b.kind == "tool_use"]
    assert sorted(b.tool_id for b in tools) == sorted(to_anthropic_id(c.upstream_id) for c in s.calls)
    for c in s.calls:
        (block,) = [b for b in tools if b.tool_id == to_anthropic_id(c.upstream_id)]
        assert block.name == NAMES[c.name]
        assert json.loads(block.content) == c.obj, (block.content, c.fragments)
    assert outcome.message_delta is not None
    plain = map_finish_reason(s.finish or "stop")
    expected_reason = "tool_use" if s.calls and plain not in ("max_tokens", "refusal") else plain
    assert outcome.message_delta["delta"] == {"stop_reason": expected_reason, "stop_sequence": None}
    if s.usage is not None:
        cached = s.usage["prompt_tokens_details"]["cached_tokens"]
        assert outcome.message_delta["usage"] == {
            "input_tokens": s.usage["prompt_tokens"] - cached,
            "output_tokens": s.usage["completion_tokens"],
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
        }
    else:
        assert outcome.message_delta["usage"]["input_tokens"] == CTX.input_tokens


# -- anything at all ---------------------------------------------------------------------------------

junk_fragment = st.fixed_dictionaries(
    {},
    optional={
        "index": st.none() | st.integers(0, 3) | st.just("0"),
        "id": st.none() | st.sampled_from(["", "a", "b", "functions.x:0", "toolu_cpx!"]),
        "type": st.none() | st.just("function"),
        "function": st.none() | st.fixed_dictionaries({}, optional={
            "name": st.none() | st.sampled_from(["", "Bash", LONG_UP]),
            "arguments": st.none() | st.sampled_from(["", "{", "}", '"a"', ":", "1", ",", "[", "]", "{}", "x", " "])
            | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        }),
    },
)
junk_delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.none() | st.text(max_size=12) | st.sampled_from(["<think>", "</think>", "<thi", "nk>", "<thought>"])
        | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "thinking", "image"]),
                                          "text": st.text(max_size=4), "thinking": st.text(max_size=4)}), max_size=2),
        "reasoning_content": st.none() | st.text(max_size=6),
        "reasoning": st.none() | st.text(max_size=6),
        "reasoning_details": st.lists(st.fixed_dictionaries({"text": st.text(max_size=4)}), max_size=2),
        "tool_calls": st.none() | st.lists(junk_fragment | st.none(), max_size=3),
        "function_call": st.fixed_dictionaries({}, optional={"name": st.just("Bash"), "arguments": st.text(max_size=4)}),
    },
)
junk_chunk = st.one_of(
    st.builds(lambda d, f, u: {"choices": [{"index": 0, "delta": d, "finish_reason": f}], **u},
              junk_delta,
              st.none() | st.sampled_from(["stop", "length", "tool_calls", "error", "content_filter", "weird", ""]),
              st.sampled_from([{}, {"usage": None}, {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}])),
    st.just({"choices": []}),
    st.just({"choices": [{"index": 1, "delta": {"content": "other choice"}}]}),
    st.just({"choices": None}),
    st.just({"error": {"message": "boom", "type": "server_error"}}),
    st.just({"object": "error", "message": "flat", "code": 400}),
    st.just([{"error": {"code": 503, "message": "overloaded"}}]),
    st.just("[DONE]"),
    st.just("{not json"),
    st.just("null"),
    st.just('"a string"'),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(junk_chunk, max_size=12),
    st.sampled_from(["finish", "fail"]),
    st.booleans(),
)
def test_any_input_follows_the_grammar(chunks: list[Any], ending: str, think_tags: bool) -> None:
    ctx = dataclasses.replace(CTX, dialect=CTX.dialect.with_overrides(think_tags=think_tags))
    stream = StreamTranslator(ctx, message_id=MSG_ID)
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events += stream.feed_data(chunk if isinstance(chunk, str) else json.dumps(chunk))
        events += stream.ping()
    if ending == "fail":
        events += stream.fail("api_error", "transport broke")
    events += stream.finish()
    check_grammar(events)
