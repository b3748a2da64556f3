"""Request validation: each bad input gets one exact message naming the field path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from claude_proxy.pipeline.validate import validate_messages_request
from tests.support.fixtures import CLAUDE_CODE_FIXTURES

FIXTURES = CLAUDE_CODE_FIXTURES
FIXTURE_NAMES = (
    "cc-2.1.197-print-default.json",
    "cc-2.1.197-tool-turn-1.json",
    "cc-2.1.197-tool-turn-2-tool-result.json",
)


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def fourth(content: Any) -> dict[str, Any]:
    """A body whose messages.3 has the given content (so the paths carry a real index)."""
    return body(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "user", "content": content},
        ]
    )


IMAGE = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}

BAD = [
    ("missing model", body(model=_DROP), "model: Missing data for required field."),
    ("model not a string", body(model=5), "model: Not a valid string."),
    ("missing max_tokens", body(max_tokens=_DROP), "max_tokens: Missing data for required field."),
    ("max_tokens 0", body(max_tokens=0), "max_tokens: Must be greater than or equal to 1."),
    ("max_tokens string", body(max_tokens="10"), "max_tokens: Not a valid integer."),
    ("max_tokens true", body(max_tokens=True), "max_tokens: Not a valid integer."),
    ("max_tokens float", body(max_tokens=1.5), "max_tokens: Not a valid integer."),
    ("max_tokens null", body(max_tokens=None), "max_tokens: Field may not be null."),
    ("missing messages", body(messages=_DROP), "messages: Missing data for required field."),
    ("empty messages", body(messages=[]), "messages: Shorter than minimum length 1."),
    ("messages not a list", body(messages={"role": "user"}), "messages: Not a valid list."),
    ("message not an object", body(messages=["hi"]), "messages.0: Invalid input type."),
    (
        "bad role",
        body(messages=[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]),
        "messages.1.role: Must be one of: user, assistant, system.",
    ),
    ("missing content", body(messages=[{"role": "user"}]), "messages.0.content: Missing data for required field."),
    ("content a number", fourth(5), "messages.3.content: Must be a string or a list of content blocks."),
    (
        "content an object",
        fourth({"type": "text", "text": "x"}),
        "messages.3.content: Must be a string or a list of content blocks.",
    ),
    ("block not an object", fourth(["x"]), "messages.3.content.0: Each content block must be an object."),
    (
        "block without type",
        fourth([{"text": "x"}]),
        "messages.3.content.0.type: Missing or invalid content block type.",
    ),
    ("text without text", fourth([{"type": "text"}]), "messages.3.content.0.text: Missing data for required field."),
    (
        "text not a string",
        fourth([{"type": "text", "text": "ok"}, {"type": "text", "text": 3}]),
        "messages.3.content.1.text: Not a valid string.",
    ),
    (
        "image without source",
        fourth([{"type": "image"}]),
        "messages.3.content.0.source: Missing data for required field.",
    ),
    (
        "image bad media_type",
        fourth([{"type": "image", "source": {**IMAGE, "media_type": "image/bmp"}}]),
        "messages.3.content.0.source.media_type: Must be one of: image/jpeg, image/png, image/gif, image/webp.",
    ),
    (
        "image base64 without data",
        fourth([{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]),
        "messages.3.content.0.source.data: Missing data for required field.",
    ),
    (
        "image url without url",
        fourth([{"type": "image", "source": {"type": "url"}}]),
        "messages.3.content.0.source.url: Missing data for required field.",
    ),
    (
        "tool_use without id",
        fourth([{"type": "tool_use", "name": "Bash", "input": {}}]),
        "messages.3.content.0.id: Missing data for required field.",
    ),
    (
        "tool_use input not an object",
        fourth([{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": "ls"}]),
        "messages.3.content.0.input: Not a valid mapping type.",
    ),
    (
        "tool_result without tool_use_id",
        fourth([{"type": "tool_result", "content": "ok"}]),
        "messages.3.content.0.tool_use_id: Missing data for required field.",
    ),
    (
        "tool_result with a bad nested block",
        fourth([{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text"}]}]),
        "messages.3.content.0.content.0.text: Missing data for required field.",
    ),
    (
        "tool_choice tool without name",
        body(tool_choice={"type": "tool"}),
        "tool_choice.name: Required when type is 'tool'.",
    ),
    (
        "tool_choice bad type",
        body(tool_choice={"type": "required"}),
        "tool_choice.type: Must be one of: auto, any, tool, none.",
    ),
    (
        "thinking enabled without budget",
        body(thinking={"type": "enabled"}),
        "thinking.budget_tokens: Required when type is 'enabled'.",
    ),
    (
        "thinking budget too small",
        body(thinking={"type": "enabled", "budget_tokens": 1023}),
        "thinking.budget_tokens: Must be greater than or equal to 1024.",
    ),
    (
        "temperature above 1",
        body(temperature=1.5),
        "temperature: Must be greater than or equal to 0 and less than or equal to 1.",
    ),
    (
        "temperature NaN",
        body(temperature=float("nan")),
        "temperature: Special numeric values (nan or infinity) are not permitted.",
    ),
    ("top_p infinite", body(top_p=float("inf")), "top_p: Special numeric values (nan or infinity) are not permitted."),
    ("temperature a string", body(temperature="0.5"), "temperature: Not a valid number."),
    ("temperature a boolean", body(temperature=True), "temperature: Not a valid number."),
    ("stream a string", body(stream="false"), "stream: Not a valid boolean."),
    ("stream a number", body(stream=1), "stream: Not a valid boolean."),
    (
        "is_error a string",
        fourth([{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": "false"}]),
        "messages.3.content.0.is_error: Not a valid boolean.",
    ),
    ("stop_sequences not strings", body(stop_sequences=["STOP", 3]), "stop_sequences.1: Not a valid string."),
    ("stop_sequences a string", body(stop_sequences="STOP"), "stop_sequences: Not a valid list."),
    (
        "tools without input_schema",
        body(tools=[{"name": "Bash"}]),
        "tools.0.input_schema: Missing data for required field.",
    ),
    ("tools not a list", body(tools={"name": "Bash"}), "tools: Not a valid list."),
    ("system a number", body(system=5), "system: Must be a string or a list of content blocks."),
    ("system block without text", body(system=[{"type": "text"}]), "system.0.text: Missing data for required field."),
    ("metadata not an object", body(metadata="user-1"), "metadata: Invalid input type."),
]


@pytest.mark.parametrize(("request_body", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_the_field(request_body: dict[str, Any], message: str) -> None:
    assert validate_messages_request(request_body) == [message]


def test_unknown_block_type_names_the_path_and_the_allowed_types() -> None:
    [problem] = validate_messages_request(fourth([{"type": "text", "text": "ok"}, {"type": "video", "url": "x"}]))
    assert problem.startswith("messages.3.content.1.type: Unknown content block type 'video' (expected one of: ")
    for kind in ("text", "image", "tool_use", "tool_result", "thinking", "server_tool_use"):
        assert f" {kind}," in problem or f" {kind})" in problem


def test_several_problems_are_all_reported() -> None:
    problems = validate_messages_request(body(max_tokens=0, temperature=2, messages=[{"role": "bot", "content": 1}]))
    assert sorted(problems) == sorted(
        [
            "max_tokens: Must be greater than or equal to 1.",
            "temperature: Must be greater than or equal to 0 and less than or equal to 1.",
            "messages.0.role: Must be one of: user, assistant, system.",
            "messages.0.content: Must be a string or a list of content blocks.",
        ]
    )


@pytest.mark.parametrize("value", [None, [], "x", 3])
def test_body_must_be_an_object(value: Any) -> None:
    assert validate_messages_request(value) == ["body: The request body must be a JSON object."]


def test_count_tokens_needs_no_max_tokens() -> None:
    request_body = body(max_tokens=_DROP)
    assert validate_messages_request(request_body, count_tokens=True) == []
    assert validate_messages_request(body(model=_DROP, max_tokens=_DROP), count_tokens=True) == [
        "model: Missing data for required field."
    ]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_real_claude_code_requests_validate_clean(name: str) -> None:
    fixture = json.loads((FIXTURES / name).read_text())
    assert validate_messages_request(fixture) == []
    del fixture["max_tokens"]
    del fixture["stream"]
    assert validate_messages_request(fixture, count_tokens=True) == []


def test_fixture_validation_is_not_vacuous() -> None:
    fixture = json.loads((FIXTURES / "cc-2.1.197-tool-turn-2-tool-result.json").read_text())
    broken = copy.deepcopy(fixture)
    index, block_index = next(
        (i, j)
        for i, m in enumerate(broken["messages"])
        if isinstance(m["content"], list)
        for j, b in enumerate(m["content"])
        if b.get("type") == "tool_result"
    )
    del broken["messages"][index]["content"][block_index]["tool_use_id"]
    assert validate_messages_request(broken) == [
        f"messages.{index}.content.{block_index}.tool_use_id: Missing data for required field."
    ]


def test_unknown_top_level_fields_and_block_fields_are_tolerated() -> None:
    request_body = body(
        context_management={"edits": []},
        betas=["x"],
        some_future_field={"a": 1},
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}, "citations": None}],
                "future": True,
            }
        ],
    )
    assert validate_messages_request(request_body) == []


def test_valid_blocks_of_every_common_kind() -> None:
    request_body = body(
        system=[{"type": "text", "text": "be brief"}],
        tools=[
            {"name": "Bash", "input_schema": {"type": "object"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        ],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 1024},
        temperature=1,
        top_p=0.5,
        top_k=40,
        stop_sequences=["END"],
        stream=True,
        metadata={"user_id": "u1"},
        messages=[
            {"role": "user", "content": [{"type": "image", "source": IMAGE}, {"type": "text", "text": "what is it?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": False,
                        "content": [{"type": "text", "text": "a.txt"}, {"type": "image", "source": IMAGE}],
                    },
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
                ],
            },
        ],
    )
    assert validate_messages_request(request_body) == []


def test_server_tool_blocks_are_accepted() -> None:
    request_body = body(
        messages=[
            {"role": "user", "content": "search the web"},
            {
                "role": "assistant",
                "content": [
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
                    {
                        "type": "web_search_tool_result",
                        "tool_use_id": "srvtoolu_1",
                        "content": [{"type": "web_search_result", "url": "https://example.com", "title": "Ex"}],
                    },
                    {"type": "text", "text": "found it"},
                ],
            },
            {"role": "user", "content": "thanks"},
        ]
    )
    assert validate_messages_request(request_body) == []


def test_output_config_effort_must_be_a_known_level() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "output_config": {"effort": 1},
    }
    assert validate_messages_request(body) == ["output_config.effort: Not a valid string."]
    body["output_config"] = {"effort": "extreme"}
    assert validate_messages_request(body) == ["output_config.effort: Must be one of: low, medium, high, xhigh, max."]
    body["output_config"] = {"effort": "high", "something_new": True}
    assert validate_messages_request(body) == []


# -- the fast path never accepts what the full schema rejects ------------------------------------

import json as _json  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from claude_proxy.pipeline.validate import COUNT_TOKENS_SCHEMA, MESSAGES_SCHEMA, _plainly_valid  # noqa: E402

ODD_VALUES = st.one_of(
    st.sampled_from([None, True, False, -1, 0, 1, 1.5, 2, 255, 257, 1023, 1024, float("nan"), "", "0.5", [], {}]),
    st.sampled_from(["text", "user", "bot", "enabled", "tool_use", "image", "high", "extreme", "image/png", "x" * 300]),
    st.integers(-5, 2000),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["type", "text", "x"]), st.text(max_size=3), max_size=2),
)


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value[:6]):
            out += _paths(inner, (*prefix, index))
    return out


def _base() -> dict:
    body = _json.loads((FIXTURES / "cc-2.1.197-tool-turn-2-tool-result.json").read_text())
    body["tools"] = body["tools"][:3]
    assistant = next(m for m in body["messages"] if m["role"] == "assistant")
    assistant["content"].insert(0, {"type": "thinking", "thinking": "hmm", "signature": "sig"})
    result = next(
        b
        for m in body["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    )
    result["is_error"] = False
    body.update(temperature=0.5, top_p=1, top_k=3, stop_sequences=["END"])
    return body


BASE = _base()
BASE_PATHS = _paths(BASE)


def _rich() -> dict:
    """A 2.1.332-shaped body with every kind the fast path now takes: media and tool references in
    tool results, a document and an image in a user turn, a server tool, tool_choice, output format."""
    body = copy.deepcopy(BASE)
    result = next(
        b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_result"
    )
    result["content"] = [
        {"type": "text", "text": "PDF file read"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "tool_reference", "tool_name": "WebFetch"},
    ]
    body["messages"].insert(
        1,
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}, "title": "t"},
            ],
        },
    )
    body["messages"].insert(1, {"role": "system", "content": [], "output_config": {"effort": "medium"}})
    body["tools"].append({"type": "web_search_20250305", "name": "web_search", "max_uses": 8})
    body["tool_choice"] = {"type": "tool", "name": "Bash", "disable_parallel_tool_use": True}
    body["output_config"] = {"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}}
    return body


RICH = _rich()
RICH_PATHS = _paths(RICH)


def test_the_fast_path_accepts_claude_codes_requests() -> None:
    """Every capture is valid, and the plain fast path takes every one of them — images and PDFs in
    tool results, tool references, server tools, tool_choice, structured-output formats included."""
    captures = sorted(FIXTURES.glob("*.json"))
    assert len([p for p in captures if "2.1.332" in p.name]) >= 18
    for path in captures:
        capture = _json.loads(path.read_bytes())
        assert validate_messages_request(capture) == [], path.name
        assert _plainly_valid(capture, count_tokens=False), path.name
        assert COUNT_TOKENS_SCHEMA.validate(capture) == {} and _plainly_valid(capture, count_tokens=True), path.name
    assert _plainly_valid(BASE, count_tokens=False)
    assert _plainly_valid(RICH, count_tokens=False)


FIXED_ODD_VALUES = [
    None,
    True,
    False,
    -1,
    0,
    1,
    1.5,
    2,
    1023,
    float("nan"),
    "",
    "0.5",
    "bot",
    "x" * 300,
    [],
    {},
    [1],
    {"type": "text"},
    {"type": "text", "text": 1},
]


# The plain body and the 2.1.332-shaped one, each with every path into it.
SHAPES = {"base": (BASE, BASE_PATHS), "rich": (RICH, RICH_PATHS)}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_fast_path_never_accepts_a_single_bad_field(shape: str) -> None:
    # every field (by shape) × every odd value, and every field removed: exhaustive for one change
    start, paths = SHAPES[shape]
    for path in paths:
        for value in [*FIXED_ODD_VALUES, KeyError]:
            body = copy.deepcopy(start)
            target = body
            for key in path[:-1]:
                target = target[key]
            if value is KeyError:
                if not isinstance(target, dict):
                    continue
                target.pop(path[-1])
            else:
                target[path[-1]] = value
            for count_tokens, schema in ((False, MESSAGES_SCHEMA), (True, COUNT_TOKENS_SCHEMA)):
                if _plainly_valid(body, count_tokens):
                    assert schema.validate(body) == {}, (path, value, count_tokens)


@pytest.mark.parametrize("shape", SHAPES)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_fast_path_never_accepts_what_the_schema_rejects(shape: str, data: st.DataObject) -> None:
    """Fast path accepts ⇒ schema accepts, on bodies with one to three fields changed or removed."""
    start, paths = SHAPES[shape]
    body = copy.deepcopy(start)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        target = body
        try:
            for key in path[:-1]:
                target = target[key]
            if data.draw(st.booleans()) and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = data.draw(ODD_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    for count_tokens, schema in ((False, MESSAGES_SCHEMA), (True, COUNT_TOKENS_SCHEMA)):
        if _plainly_valid(body, count_tokens):
            assert schema.validate(body) == {}, body


def test_output_format_must_be_a_json_schema() -> None:
    request_body = body(output_config={"format": {"type": "json_object"}})
    assert validate_messages_request(request_body) == [
        "output_config.format.type: Must be one of: json_schema.",
        "output_config.format.schema: Missing data for required field.",
    ]
