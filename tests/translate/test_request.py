"""Anthropic Messages request → OpenAI Chat Completions request: whole bodies, exactly."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from claude_proxy.translate import (
    DEFAULT_DIALECT,
    Dialect,
    RequestContext,
    anthropic_to_openai,
    estimate_input_tokens,
    translate_request,
)
from claude_proxy.translate.identifiers import to_anthropic_id
from tests.support.fixtures import CLAUDE_CODE_FIXTURES

FIXTURES = CLAUDE_CODE_FIXTURES
BILLING = "x-anthropic-billing-header: cc_version=2.1.197.123; cc_entrypoint=sdk-cli;"
EPHEMERAL = {"type": "ephemeral"}
REASONING = Dialect(reasoning_models=("o*", "gpt-5*"))


def req(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 1024,
        "messages": messages if messages is not None else [{"role": "user", "content": "Hi"}],
    }
    body.update(fields)
    return body


def translate(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return translate_request(body, **kwargs).body


def keys_named(value: Any, name: str) -> list[str]:
    """Paths of every dict key called `name`, anywhere in `value`."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, sub in node.items():
                if key == name:
                    found.append(f"{path}/{key}")
                walk(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(value, "")
    return found


def schema_keywords(schema: Any, name: str) -> list[str]:
    """Paths where `name` is used as a schema keyword (not as a property name)."""
    found: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, sub in node.items():
                if key == name:
                    found.append(f"{path}/{key}")
                if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(sub, dict):
                    for prop, prop_schema in sub.items():
                        walk(prop_schema, f"{path}/{key}/{prop}")
                elif key not in ("enum", "const", "default", "examples", "required"):
                    walk(sub, f"{path}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{path}[{i}]")

    walk(schema, "")
    return found


# -- basics ---------------------------------------------------------------------------


def test_minimal_request_and_context() -> None:
    body = req()
    t = translate_request(body)
    assert t.body == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
    }
    assert t.context == RequestContext(
        client_model="claude-sonnet-5",
        upstream_model="claude-sonnet-5",
        dialect=DEFAULT_DIALECT,
        tool_names={},
        stop_sequences=(),
        input_tokens=None,  # not estimated until something needs it
        stream=False,
        thinking=False,
    )
    assert t.context.prompt_tokens() == estimate_input_tokens(body)
    assert t.context.input_tokens == estimate_input_tokens(body)  # and remembered


def test_upstream_model_override_and_sampling_fields() -> None:
    t = translate_request(req(temperature=0.2, top_p=0.9, top_k=40), model="gpt-4o")
    assert t.body == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
    }
    assert (t.context.client_model, t.context.upstream_model) == ("claude-sonnet-5", "gpt-4o")


def test_top_k_only_when_the_dialect_accepts_it() -> None:
    assert translate(req(top_k=40), dialect=Dialect(top_k=True)) == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "top_k": 40,
    }


def test_max_tokens_field_of_the_dialect() -> None:
    assert translate(req(), dialect=Dialect(max_tokens_field="max_completion_tokens")) == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 1024,
    }


def test_temperature_zero_is_kept() -> None:
    assert translate(req(temperature=0))["temperature"] == 0


def test_anthropic_to_openai_is_just_the_body() -> None:
    assert anthropic_to_openai(req(), model="gpt-4o") == translate_request(req(), model="gpt-4o").body


# -- system ---------------------------------------------------------------------------


def test_system_string() -> None:
    assert translate(req(system="Be brief."))["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_system_string_that_is_only_the_billing_header_is_dropped() -> None:
    assert translate(req(system=BILLING))["messages"] == [{"role": "user", "content": "Hi"}]


def test_system_blocks_drop_billing_header_and_cache_control() -> None:
    system = [
        {"type": "text", "text": BILLING},
        {"type": "text", "text": "You are Claude.", "cache_control": EPHEMERAL},
        {"type": "text", "text": ""},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    assert translate(req(system=system))["messages"] == [
        {"role": "system", "content": "You are Claude.\n\nBe brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_system_blocks_that_are_all_dropped_give_no_system_message() -> None:
    assert translate(req(system=[{"type": "text", "text": BILLING}]))["messages"] == [{"role": "user", "content": "Hi"}]


def test_mid_conversation_system_keeps_its_position() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "system", "content": "Agents: a, b"},
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": [{"type": "text", "text": "block system", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": "second"},
    ]
    assert translate(req(messages, system="top"))["messages"] == [
        {"role": "system", "content": "top"},
        {"role": "user", "content": "first"},
        {"role": "system", "content": "Agents: a, b"},
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": "block system"},
        {"role": "user", "content": "second"},
    ]


def test_empty_mid_conversation_system_is_dropped() -> None:
    messages = [{"role": "user", "content": "a"}, {"role": "system", "content": ""}, {"role": "user", "content": "b"}]
    assert translate(req(messages))["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]


# -- user content -----------------------------------------------------------------------


def test_user_text_blocks_collapse_to_a_string() -> None:
    content = [
        {"type": "text", "text": "<system-reminder>x</system-reminder>"},
        {"type": "text", "text": ""},
        {"type": "text", "text": "say hi", "cache_control": EPHEMERAL},
        "bare string",
    ]
    assert translate(req([{"role": "user", "content": content}]))["messages"] == [
        {"role": "user", "content": "<system-reminder>x</system-reminder>\n\nsay hi\n\nbare string"}
    ]


def test_images_base64_url_and_file() -> None:
    content = [
        {"type": "text", "text": "Compare:"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/AAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}, "cache_control": EPHEMERAL},
        {"type": "image", "source": {"type": "file", "file_id": "file_123"}},
    ]
    assert translate(req([{"role": "user", "content": content}]))["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare:"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": "[image omitted: file references are not supported]"},
            ],
        }
    ]


PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}


def test_pdf_as_file_part_when_the_dialect_accepts_files() -> None:
    content = [
        {"type": "document", "source": PDF, "title": "Report", "citations": {"enabled": True}},
        {"type": "document", "source": PDF},
        {"type": "text", "text": "Summarise."},
    ]
    assert translate(req([{"role": "user", "content": content}]), dialect=Dialect(pdf_file_parts=True))["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "file", "file": {"filename": "Report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
                {"type": "file", "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
                {"type": "text", "text": "Summarise."},
            ],
        }
    ]


def test_pdf_as_text_note_otherwise() -> None:
    content = [
        {"type": "document", "source": PDF, "title": "Report"},
        {"type": "document", "source": PDF},
        {"type": "text", "text": "Summarise."},
    ]
    assert translate(req([{"role": "user", "content": content}]))["messages"] == [
        {
            "role": "user",
            "content": "[Document: Report (application/pdf) omitted: this provider does not accept file attachments]"
            "\n\n[Document (application/pdf) omitted: this provider does not accept file attachments]"
            "\n\nSummarise.",
        }
    ]


def test_text_content_url_and_unknown_documents() -> None:
    content = [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain body"}, "title": "T"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "untitled body"}},
        {
            "type": "document",
            "source": {"type": "content", "content": [{"type": "text", "text": "p1"}, {"type": "text", "text": "p2"}]},
            "title": "C",
        },
        {"type": "document", "source": {"type": "url", "url": "https://example.com/x.pdf"}},
        {"type": "document", "source": {"type": "file", "file_id": "file_1"}, "title": "F"},
    ]
    assert translate(req([{"role": "user", "content": content}]))["messages"] == [
        {
            "role": "user",
            "content": "Document: T\nplain body\n\nuntitled body\n\nDocument: C\np1\n\np2"
            "\n\n[Document at https://example.com/x.pdf]\n\n[Document: F omitted]",
        }
    ]


def test_search_result_block_is_text() -> None:
    content = [
        {
            "type": "search_result",
            "source": "https://example.com",
            "title": "Example",
            "content": [{"type": "text", "text": "snippet"}],
        }
    ]
    assert translate(req([{"role": "user", "content": content}]))["messages"] == [
        {"role": "user", "content": "Example\nhttps://example.com\nsnippet"}
    ]


# -- tool round trips -------------------------------------------------------------------

TOOLS = [
    {
        "name": "Bash",
        "description": "Run a command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
    },
    {"name": "Read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}},
]
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "Bash",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
            "description": "Run a command",
        },
    },
    {
        "type": "function",
        "function": {"name": "Read", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}},
    },
]


def assistant_calls(*calls: tuple[str, str, dict[str, Any]], text: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in calls]
    return {"role": "assistant", "content": content}


def openai_calls(*calls: tuple[str, str, dict[str, Any]], text: str | None = None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": text,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a, ensure_ascii=False)}}
            for i, n, a in calls
        ],
    }


def test_tool_result_string_and_tools() -> None:
    messages = [
        {"role": "user", "content": "run it"},
        assistant_calls(("toolu_1", "Bash", {"command": "echo hi"}), text="Running."),
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi", "is_error": False,
                 "cache_control": EPHEMERAL},
            ],
        },
    ]
    assert translate(req(messages, tools=TOOLS)) == {
        "model": "claude-sonnet-5",
        "messages": [
            {"role": "user", "content": "run it"},
            openai_calls(("toolu_1", "Bash", {"command": "echo hi"}), text="Running."),
            {"role": "tool", "tool_call_id": "toolu_1", "content": "hi"},
        ],
        "max_tokens": 1024,
        "tools": OPENAI_TOOLS,
    }


def test_tool_result_variants() -> None:
    messages = [
        assistant_calls(
            ("t_text", "Read", {"path": "a"}),
            ("t_err", "Bash", {"command": "false"}),
            ("t_err_empty", "Bash", {"command": "x"}),
            ("t_none", "Bash", {"command": "y"}),
            ("t_doc", "Read", {"path": "d"}),
        ),
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t_text",
                 "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}]},
                {"type": "tool_result", "tool_use_id": "t_err", "content": "exit 1", "is_error": True},
                {"type": "tool_result", "tool_use_id": "t_err_empty", "content": [], "is_error": True},
                {"type": "tool_result", "tool_use_id": "t_none"},
                {"type": "tool_result", "tool_use_id": "t_doc", "content": [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
                    {"type": "tool_reference", "tool_name": "Bash"},
                ]},
            ],
        },
    ]
    assert translate(req(messages))["messages"][1:] == [
        {"role": "tool", "tool_call_id": "t_text", "content": "line 1\n\nline 2"},
        {"role": "tool", "tool_call_id": "t_err", "content": "Error: exit 1"},
        {"role": "tool", "tool_call_id": "t_err_empty", "content": "Error: the tool call failed."},
        {"role": "tool", "tool_call_id": "t_none", "content": ""},
        {"role": "tool", "tool_call_id": "t_doc", "content": "doc\n\nTool loaded: Bash"},
    ]


def test_tool_result_images_follow_as_a_user_message() -> None:
    messages = [
        assistant_calls(("t1", "Read", {"path": "a.png"}), ("t2", "Read", {"path": "b.png"})),
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "text", "text": "first"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                ]},
                {"type": "tool_result", "tool_use_id": "t2", "is_error": True, "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x/b.png"}},
                ]},
                {"type": "text", "text": "what do you see?"},
            ],
        },
    ]
    assert translate(req(messages))["messages"] == [
        openai_calls(("t1", "Read", {"path": "a.png"}), ("t2", "Read", {"path": "b.png"})),
        {"role": "tool", "tool_call_id": "t1", "content": "first\n\n[image attached in the next message]"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: [image attached in the next message]"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Image output of tool call t1:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                {"type": "text", "text": "Image output of tool call t2:"},
                {"type": "image_url", "image_url": {"url": "https://x/b.png"}},
                {"type": "text", "text": "what do you see?"},
            ],
        },
    ]


def test_tool_result_pdf_follows_as_a_file_part_or_becomes_a_note() -> None:
    messages = [
        assistant_calls(("t1", "Read", {"path": "r.pdf"})),
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "read 1 page"},
                {"type": "document", "source": PDF, "title": "r"},
            ]},
        ]},
    ]
    assert translate(req(messages), dialect=Dialect(pdf_file_parts=True))["messages"] == [
        openai_calls(("t1", "Read", {"path": "r.pdf"})),
        {"role": "tool", "tool_call_id": "t1", "content": "read 1 page\n\n[document attached in the next message]"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Image output of tool call t1:"},
                {"type": "file", "file": {"filename": "r.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
            ],
        },
    ]
    assert translate(req(messages))["messages"] == [
        openai_calls(("t1", "Read", {"path": "r.pdf"})),
        {"role": "tool", "tool_call_id": "t1", "content": "read 1 page\n\n[Document: r (application/pdf) omitted: "
                                                           "this provider does not accept file attachments]"},
    ]


def test_text_next_to_tool_results_keeps_order_after_the_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "go"},
        assistant_calls(("a", "Bash", {"command": "1"}), ("b", "Bash", {"command": "2"})),
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "before"},
                {"type": "tool_result", "tool_use_id": "a", "content": "one"},
                {"type": "text", "text": "between"},
                {"type": "tool_result", "tool_use_id": "b", "content": "two"},
                {"type": "text", "text": "after"},
            ],
        },
        {"role": "assistant", "content": "done"},
    ]
    assert translate(req(messages))["messages"] == [
        {"role": "user", "content": "go"},
        openai_calls(("a", "Bash", {"command": "1"}), ("b", "Bash", {"command": "2"})),
        {"role": "tool", "tool_call_id": "a", "content": "one"},
        {"role": "tool", "tool_call_id": "b", "content": "two"},
        {"role": "user", "content": "before\n\nbetween\n\nafter"},
        {"role": "assistant", "content": "done"},
    ]


def test_tool_use_input_keeps_unicode_and_empty_input() -> None:
    messages = [assistant_calls(("a", "Bash", {"command": "echo héllo ✓"}), ("b", "Read", {}))]
    assert translate(req(messages))["messages"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "echo héllo ✓"}'}},
                {"id": "b", "type": "function", "function": {"name": "Read", "arguments": "{}"}},
            ],
        }
    ]


# -- thinking history -------------------------------------------------------------------

THINKING_HISTORY = [
    {"role": "user", "content": "q1"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "plan A", "signature": "sig1"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": " plan B", "signature": "sig2"},
            {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
        ],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.txt"}]},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "no tools here", "signature": "sig3"},
            {"type": "text", "text": "Found a.txt"},
        ],
    },
    {"role": "user", "content": "q2"},
    {"role": "assistant", "content": [{"type": "thinking", "thinking": "only thinking", "signature": "s"}]},
    {"role": "user", "content": "q3"},
]


def test_thinking_dropped_by_default() -> None:
    assert translate(req(THINKING_HISTORY))["messages"] == [
        {"role": "user", "content": "q1"},
        openai_calls(("t1", "Bash", {"command": "ls"})),
        {"role": "tool", "tool_call_id": "t1", "content": "a.txt"},
        {"role": "assistant", "content": "Found a.txt"},
        {"role": "user", "content": "q2"},
        {"role": "user", "content": "q3"},
    ]


def test_thinking_sent_back_on_tool_turns_only() -> None:
    assert translate(req(THINKING_HISTORY), dialect=Dialect(reasoning_history="tool_turns"))["messages"] == [
        {"role": "user", "content": "q1"},
        {**openai_calls(("t1", "Bash", {"command": "ls"})), "reasoning_content": "plan A plan B"},
        {"role": "tool", "tool_call_id": "t1", "content": "a.txt"},
        {"role": "assistant", "content": "Found a.txt"},
        {"role": "user", "content": "q2"},
        {"role": "user", "content": "q3"},
    ]


def test_thinking_in_a_user_message_is_dropped() -> None:
    content = [{"type": "thinking", "thinking": "x", "signature": "s"}, {"type": "text", "text": "hi"}]
    assert translate(req([{"role": "user", "content": content}]))["messages"] == [{"role": "user", "content": "hi"}]


# -- cache_control ----------------------------------------------------------------------


def test_cache_control_never_reaches_the_upstream() -> None:
    body = req(
        [
            {"role": "user", "content": [
                {"type": "text", "text": "hi", "cache_control": EPHEMERAL},
                {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}, "cache_control": EPHEMERAL},
                {"type": "document", "source": PDF, "cache_control": EPHEMERAL},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "calling", "cache_control": EPHEMERAL},
                {"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "x"}, "cache_control": EPHEMERAL},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "cache_control": EPHEMERAL,
                 "content": [{"type": "text", "text": "out", "cache_control": EPHEMERAL}]},
            ]},
        ],
        system=[{"type": "text", "text": "sys", "cache_control": EPHEMERAL}],
        tools=[{**TOOLS[0], "cache_control": EPHEMERAL}],
        cache_control=EPHEMERAL,
    )
    for dialect in (DEFAULT_DIALECT, Dialect(pdf_file_parts=True)):
        out = translate(body, dialect=dialect)
        assert keys_named(out, "cache_control") == []
    assert translate(body) == {
        "model": "claude-sonnet-5",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "https://x/i.png"}},
                {"type": "text", "text": "[Document (application/pdf) omitted: this provider does not accept file "
                                         "attachments]"},
            ]},
            openai_calls(("t", "Bash", {"command": "x"}), text="calling"),
            {"role": "tool", "tool_call_id": "t", "content": "out"},
        ],
        "max_tokens": 1024,
        "tools": [OPENAI_TOOLS[0]],
    }


# -- tool_choice, stop, metadata ------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "dialect", "expected"),
    [
        ({"type": "auto"}, DEFAULT_DIALECT, {"tool_choice": "auto"}),
        ({"type": "any"}, DEFAULT_DIALECT, {"tool_choice": "required"}),
        ({"type": "any"}, Dialect(tool_choice_any="any"), {"tool_choice": "any"}),
        ({"type": "none"}, DEFAULT_DIALECT, {"tool_choice": "none"}),
        ({"type": "tool", "name": "Bash"}, DEFAULT_DIALECT,
         {"tool_choice": {"type": "function", "function": {"name": "Bash"}}}),
        ({"type": "auto", "disable_parallel_tool_use": True}, DEFAULT_DIALECT,
         {"tool_choice": "auto", "parallel_tool_calls": False}),
        ({"type": "any", "disable_parallel_tool_use": True}, Dialect(parallel_tool_calls=False),
         {"tool_choice": "required"}),
        ({"type": "auto", "disable_parallel_tool_use": False}, DEFAULT_DIALECT, {"tool_choice": "auto"}),
    ],
)
def test_tool_choice(choice: dict[str, Any], dialect: Dialect, expected: dict[str, Any]) -> None:
    assert translate(req(tools=TOOLS, tool_choice=choice), dialect=dialect) == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "tools": OPENAI_TOOLS,
        **expected,
    }


def test_tool_choice_without_tools_is_not_sent() -> None:
    assert translate(req(tool_choice={"type": "any"})) == translate(req())


def test_stop_sequences() -> None:
    t = translate_request(req(stop_sequences=["\n\nHuman:", "END"]))
    assert t.body == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "stop": ["\n\nHuman:", "END"],
    }
    assert t.context.stop_sequences == ("\n\nHuman:", "END")
    assert "stop" not in translate(req(stop_sequences=[]))


def test_metadata_user_only_with_user_field() -> None:
    body = req(metadata={"user_id": "user-42"})
    assert "user" not in translate(body)
    assert translate(body, dialect=Dialect(user_field=True)) == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "user": "user-42",
    }


def test_long_user_id_is_hashed() -> None:
    user_id = json.dumps({"device_id": "f" * 64, "account_uuid": "", "session_id": "1e5388a3-8f88-4ea8-a2f5-5578a997eebf"})
    assert len(user_id) > 64
    digest = hashlib.sha256(user_id.encode()).hexdigest()
    assert translate(req(metadata={"user_id": user_id}), dialect=Dialect(user_field=True))["user"] == digest[:64]
    assert translate(req(metadata={"user_id": user_id}), dialect=Dialect(user_field=True, user_max_len=16))["user"] == (
        digest[:16]
    )
    exactly = "u" * 64
    assert translate(req(metadata={"user_id": exactly}), dialect=Dialect(user_field=True))["user"] == exactly


@pytest.mark.parametrize("metadata", [{}, {"user_id": None}, {"user_id": ""}, {"user_id": 5}, "junk"])
def test_metadata_without_a_usable_user(metadata: Any) -> None:
    assert "user" not in translate(req(metadata=metadata), dialect=Dialect(user_field=True))


# -- reasoning ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4095}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16383}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 31999}}, "high"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}, "high"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "LOW"}}, "low"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}}, "high"),
        ({"thinking": {"type": "adaptive"}}, "medium"),
        ({"output_config": {"effort": "medium"}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 31999}, "output_config": {"effort": "low"}}, "low"),
    ],
)
def test_reasoning_model_gets_effort_and_no_sampling(fields: dict[str, Any], effort: str) -> None:
    body = req(temperature=0.7, top_p=0.9, top_k=5, **fields)
    t = translate_request(body, model="gpt-5-mini", dialect=REASONING.with_overrides(top_k=True))
    assert t.body == {
        "model": "gpt-5-mini",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 1024,
        "reasoning_effort": effort,
    }


@pytest.mark.parametrize("fields", [{}, {"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}])
def test_reasoning_model_without_thinking(fields: dict[str, Any]) -> None:
    assert translate(req(temperature=0.7, **fields), model="o3", dialect=REASONING) == {
        "model": "o3",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 1024,
    }


def test_non_reasoning_model_of_a_reasoning_dialect() -> None:
    body = req(temperature=0.7, thinking={"type": "enabled", "budget_tokens": 31999})
    t = translate_request(body, model="gpt-4o", dialect=REASONING)
    assert t.body == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "temperature": 0.7,
    }
    assert t.context.thinking is True


def test_reasoning_param_for_all_models() -> None:
    body = req(temperature=0.7, thinking={"type": "adaptive"}, output_config={"effort": "high"})
    assert translate(body, model="deepseek-chat", dialect=Dialect(reasoning_param_all_models=True)) == {
        "model": "deepseek-chat",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "temperature": 0.7,
        "reasoning_effort": "high",
    }


@pytest.mark.parametrize(
    ("allowed", "wanted", "expected"),
    [
        (("low", "high"), "medium", "high"),  # a tie goes to the stronger effort
        (("low", "high"), "minimal", "low"),
        (("minimal", "low", "medium", "high", "xhigh"), "xhigh", "xhigh"),
        (("minimal", "low", "medium", "high", "xhigh"), "max", "xhigh"),
        (("low", "medium", "high"), "bogus", "medium"),
    ],
)
def test_effort_is_the_nearest_allowed_one(allowed: tuple[str, ...], wanted: str, expected: str) -> None:
    dialect = REASONING.with_overrides(reasoning_efforts=allowed)
    body = req(thinking={"type": "adaptive"}, output_config={"effort": wanted})
    assert translate(body, model="o4-mini", dialect=dialect)["reasoning_effort"] == expected


@pytest.mark.parametrize(
    ("param", "fields", "extra"),
    [
        ("openrouter", {"thinking": {"type": "enabled", "budget_tokens": 2000}}, {"reasoning": {"effort": "low"}}),
        ("openrouter", {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}},
         {"reasoning": {"effort": "high"}}),
        ("openrouter", {"thinking": {"type": "disabled"}}, {"reasoning": {"enabled": False}}),
        ("openrouter", {}, {}),
        ("chat_template_kwargs", {"thinking": {"type": "enabled", "budget_tokens": 9000}},
         {"chat_template_kwargs": {"enable_thinking": True}}),
        ("chat_template_kwargs", {"thinking": {"type": "disabled"}}, {"chat_template_kwargs": {"enable_thinking": False}}),
        ("chat_template_kwargs", {}, {}),
        ("zai", {"thinking": {"type": "adaptive"}}, {"thinking": {"type": "enabled"}}),
        ("zai", {"thinking": {"type": "disabled"}}, {"thinking": {"type": "disabled"}}),
        ("zai", {}, {}),
        ("none", {"thinking": {"type": "enabled", "budget_tokens": 9000}}, {}),
        ("reasoning_effort", {"thinking": {"type": "enabled", "budget_tokens": 9000}}, {}),  # not a reasoning model
    ],
)
def test_reasoning_param_variants(param: str, fields: dict[str, Any], extra: dict[str, Any]) -> None:
    assert translate(req(temperature=0.5, **fields), model="qwen3", dialect=Dialect(reasoning_param=param)) == {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "temperature": 0.5,
        **extra,
    }


@pytest.mark.parametrize(
    ("thinking", "flag"),
    [({"type": "enabled", "budget_tokens": 10}, True), ({"type": "adaptive"}, True),
     ({"type": "disabled"}, False), (None, False)],
)
def test_context_thinking_flag(thinking: dict[str, Any] | None, flag: bool) -> None:
    body = req(thinking=thinking) if thinking else req()
    assert translate_request(body).context.thinking is flag


# -- tool names, tool ids, schemas ---------------------------------------------------------

LONG = "mcp__some_server__" + "x" * 60
LONG_UP = "mcp__some_server__" + "x" * 37 + "_862e5532"


def test_long_tool_names_are_shortened_everywhere_and_mapped_back() -> None:
    body = req(
        [assistant_calls(("t1", LONG, {"a": 1})), {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}],
        tools=[{"name": LONG, "input_schema": {"type": "object"}}, TOOLS[1]],
        tool_choice={"type": "tool", "name": LONG},
    )
    t = translate_request(body)
    assert t.body == {
        "model": "claude-sonnet-5",
        "messages": [
            openai_calls(("t1", LONG_UP, {"a": 1})),
            {"role": "tool", "tool_call_id": "t1", "content": "ok"},
        ],
        "max_tokens": 1024,
        "tools": [
            {"type": "function", "function": {"name": LONG_UP, "parameters": {"type": "object"}}},
            OPENAI_TOOLS[1],
        ],
        "tool_choice": {"type": "function", "function": {"name": LONG_UP}},
    }
    assert t.context.tool_names == {LONG_UP: LONG}


def test_encoded_tool_ids_go_upstream_as_the_original() -> None:
    kimi = "functions.Bash:0"
    encoded = to_anthropic_id(kimi)
    messages = [
        assistant_calls((encoded, "Bash", {"command": "ls"})),
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": encoded, "content": "a"}]},
    ]
    assert translate(req(messages))["messages"] == [
        openai_calls((kimi, "Bash", {"command": "ls"})),
        {"role": "tool", "tool_call_id": kimi, "content": "a"},
    ]


def test_alnum9_tool_ids() -> None:
    encoded = to_anthropic_id("functions.Bash:0")
    messages = [
        assistant_calls(("toolu_01ABC", "Bash", {"command": "ls"}), (encoded, "Bash", {"command": "pwd"}),
                        ("abc123XYZ", "Read", {})),
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01ABC", "content": "a"},
            {"type": "tool_result", "tool_use_id": encoded, "content": "b"},
            {"type": "tool_result", "tool_use_id": "abc123XYZ", "content": "c"},
        ]},
    ]
    assert translate(req(messages), dialect=Dialect(tool_id_style="alnum9"))["messages"] == [
        openai_calls(("3DAWIQ32q", "Bash", {"command": "ls"}), ("lkLI1OEfW", "Bash", {"command": "pwd"}),
                     ("abc123XYZ", "Read", {})),
        {"role": "tool", "tool_call_id": "3DAWIQ32q", "content": "a"},
        {"role": "tool", "tool_call_id": "lkLI1OEfW", "content": "b"},
        {"role": "tool", "tool_call_id": "abc123XYZ", "content": "c"},
    ]


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "format": {"type": "string", "enum": ["json", "text"], "description": "a property called format"},
        "$schema": {"type": "string", "description": "a property called $schema"},
        "propertyNames": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "when": {"type": "string", "format": "date-time"},
        "metadata": {"type": "object", "propertyNames": {"type": "string", "format": "email"},
                     "additionalProperties": {"type": "string", "format": "uri"}},
        "list": {"type": "array", "items": {"$schema": "x", "type": "string", "format": "uri"}},
        "either": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
        "ref": {"$ref": "#/$defs/thing"},
    },
    "$defs": {"thing": {"type": "object", "properties": {"format": {"type": "string", "format": "uri"}}}},
    "required": ["format", "$schema"],
    "additionalProperties": False,
    "default": {"format": "json", "$schema": "kept: data, not schema"},
}


def params(dialect: Dialect) -> dict[str, Any]:
    body = translate(req(tools=[{"name": "T", "input_schema": SCHEMA}]), dialect=dialect)
    return body["tools"][0]["function"]["parameters"]


def test_schema_default_strips_only_dollar_schema() -> None:
    assert params(DEFAULT_DIALECT) == {
        "type": "object",
        "properties": {
            "format": {"type": "string", "enum": ["json", "text"], "description": "a property called format"},
            "$schema": {"type": "string", "description": "a property called $schema"},
            "propertyNames": {"type": "string"},
            "url": {"type": "string", "format": "uri"},
            "when": {"type": "string", "format": "date-time"},
            "metadata": {"type": "object", "propertyNames": {"type": "string", "format": "email"},
                         "additionalProperties": {"type": "string", "format": "uri"}},
            "list": {"type": "array", "items": {"type": "string", "format": "uri"}},
            "either": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
            "ref": {"$ref": "#/$defs/thing"},
        },
        "$defs": {"thing": {"type": "object", "properties": {"format": {"type": "string", "format": "uri"}}}},
        "required": ["format", "$schema"],
        "additionalProperties": False,
        "default": {"format": "json", "$schema": "kept: data, not schema"},
    }


def test_schema_strict_dialect_strips_property_names_and_some_formats() -> None:
    strict = Dialect(strip_schema_keys=frozenset({"$schema", "propertyNames"}), strip_formats=frozenset({"uri", "email"}))
    assert params(strict) == {
        "type": "object",
        "properties": {
            "format": {"type": "string", "enum": ["json", "text"], "description": "a property called format"},
            "$schema": {"type": "string", "description": "a property called $schema"},
            "propertyNames": {"type": "string"},
            "url": {"type": "string"},
            "when": {"type": "string", "format": "date-time"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "list": {"type": "array", "items": {"type": "string"}},
            "either": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
            "ref": {"$ref": "#/$defs/thing"},
        },
        "$defs": {"thing": {"type": "object", "properties": {"format": {"type": "string"}}}},
        "required": ["format", "$schema"],
        "additionalProperties": False,
        "default": {"format": "json", "$schema": "kept: data, not schema"},
    }


def test_schema_star_strips_every_format() -> None:
    cleaned = params(Dialect(strip_formats=frozenset({"*"})))
    assert schema_keywords(cleaned, "format") == []
    assert list(cleaned["properties"]) == list(SCHEMA["properties"])
    assert cleaned["properties"]["format"] == SCHEMA["properties"]["format"]
    assert cleaned["properties"]["either"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}


def test_schema_cleaning_does_not_mutate_the_request() -> None:
    before = json.dumps(SCHEMA)
    params(Dialect(strip_schema_keys=frozenset({"$schema", "propertyNames"}), strip_formats=frozenset({"*"})))
    assert json.dumps(SCHEMA) == before


def test_server_tools_are_dropped() -> None:
    tools = [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "custom", "name": "Custom", "input_schema": {"type": "object"}, "description": ""},
        TOOLS[1],
    ]
    assert translate(req(tools=tools))["tools"] == [
        {"type": "function", "function": {"name": "Custom", "parameters": {"type": "object"}}},
        OPENAI_TOOLS[1],
    ]
    only_server = translate(req(tools=tools[:2], tool_choice={"type": "any"}))
    assert "tools" not in only_server and "tool_choice" not in only_server


def test_server_tool_blocks_are_flattened_to_text() -> None:
    messages = [
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "héllo"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                {"type": "web_search_result", "url": "https://a", "title": "A", "encrypted_content": "e"},
                {"type": "web_search_result", "url": "https://b", "title": "B", "encrypted_content": "e"},
            ]},
            {"type": "code_execution_tool_result", "tool_use_id": "srvtoolu_2", "content": {"stdout": "x"}},
            {"type": "mcp_tool_result", "tool_use_id": "m", "content": [{"type": "text", "text": "mcp out"}]},
            {"type": "text", "text": "Here you go."},
        ]},
        {"role": "user", "content": [{"type": "container_upload", "file_id": "f"}, {"type": "text", "text": "thanks"}]},
    ]
    assert translate(req(messages))["messages"] == [
        {"role": "user", "content": "search"},
        {"role": "assistant", "content": '[searched the web for "héllo"]\n\n'
                                         "[web search results]\n[1] A <https://a>\n[2] B <https://b>\n\n"
                                         "[code_execution_tool_result]\n\n"
                                         "[mcp_tool_result]\nmcp out\n\n"
                                         "Here you go."},
        {"role": "user", "content": "[container_upload]\n\nthanks"},
    ]


# -- stream, forward, extra_body -------------------------------------------------------------


def test_stream_asks_for_usage() -> None:
    t = translate_request(req(stream=True))
    assert t.body == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert t.context.stream is True


def test_stream_without_usage_option() -> None:
    assert translate(req(stream=True), dialect=Dialect(stream_usage=False)) == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "stream": True,
    }


def test_stream_false_is_not_sent() -> None:
    assert "stream" not in translate(req(stream=False))


def test_forward_and_extra_body_never_override_translated_fields() -> None:
    dialect = Dialect(extra_body={"provider": {"order": ["fireworks"]}, "max_tokens": 1, "seed": 7})
    out = translate(
        req(stream=True),
        dialect=dialect,
        forward={"service_tier": "auto", "model": "hijack", "seed": 1},
    )
    assert out == {
        "model": "claude-sonnet-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
        "stream": True,
        "stream_options": {"include_usage": True},
        "service_tier": "auto",
        "seed": 1,
        "provider": {"order": ["fireworks"]},
    }


def test_anthropic_only_fields_are_not_forwarded() -> None:
    body = req(
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        output_config={"effort": "high"},
        thinking={"type": "adaptive"},
        service_tier="auto",
        container="c",
        metadata={"user_id": "u"},
    )
    assert translate(body) == translate(req())


# -- the real Claude Code requests -----------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


FIXTURE_NAMES = [
    "cc-2.1.197-print-default.json",
    "cc-2.1.197-tool-turn-1.json",
    "cc-2.1.197-tool-turn-2-tool-result.json",
]


@pytest.mark.parametrize("name", FIXTURE_NAMES)
@pytest.mark.parametrize(
    "dialect",
    [DEFAULT_DIALECT, Dialect(strip_schema_keys=frozenset({"$schema", "propertyNames"}), strip_formats=frozenset({"*"}),
                              tool_id_style="alnum9", reasoning_history="tool_turns")],
)
def test_claude_code_fixture_invariants(name: str, dialect: Dialect) -> None:
    body = load(name)
    t = translate_request(body, model="gpt-4o", dialect=dialect)
    out = t.body
    system_text = "\n\n".join(b["text"] for b in body["system"][1:])
    first_user = "\n\n".join(b["text"] for b in body["messages"][0]["content"])
    agents = body["messages"][1]["content"]

    assert out["model"] == "gpt-4o"
    assert t.context.client_model == "claude-opus-4-8"
    assert set(out) == {"model", "messages", "max_tokens", "tools", "stream", "stream_options"}
    assert out["max_tokens"] == 64000
    assert out["stream_options"] == {"include_usage": True}
    assert keys_named(out, "cache_control") == []
    assert "x-anthropic-billing-header" not in json.dumps(out)

    messages = out["messages"]
    assert messages[0] == {"role": "system", "content": system_text}
    assert messages[1] == {"role": "user", "content": first_user}
    assert messages[2] == {"role": "system", "content": agents}  # mid-conversation system, in place
    if name.endswith("tool-result.json"):
        call_id = "91fL3Oyxj" if dialect.tool_id_style == "alnum9" else "toolu_c341db99911547dd8cc5b4b2"
        assert [m["role"] for m in messages] == ["system", "user", "system", "assistant", "tool"]
        assert messages[3:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": call_id, "type": "function", "function": {
                    "name": "Bash", "arguments": '{"command": "echo proxy-ok", "description": "test"}'}}],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "proxy-ok"},
        ]
    else:
        assert [m["role"] for m in messages] == ["system", "user", "system"]

    assert [tool["function"]["name"] for tool in out["tools"]] == [tool["name"] for tool in body["tools"]]
    for openai_tool, tool in zip(out["tools"], body["tools"], strict=True):
        function = openai_tool["function"]
        assert function["description"] == tool["description"]
        assert schema_keywords(function["parameters"], "$schema") == []
        if dialect is DEFAULT_DIALECT:
            assert function["parameters"] == {k: v for k, v in tool["input_schema"].items() if k != "$schema"}
        else:
            assert schema_keywords(function["parameters"], "propertyNames") == []
            assert schema_keywords(function["parameters"], "format") == []
            assert list(function["parameters"]["properties"]) == list(tool["input_schema"]["properties"])


def test_claude_code_fixture_on_a_reasoning_model() -> None:
    body = load("cc-2.1.197-tool-turn-2-tool-result.json")
    out = translate(body, model="gpt-5", dialect=REASONING)
    assert {k: v for k, v in out.items() if k not in ("messages", "tools")} == {
        "model": "gpt-5",
        "max_completion_tokens": 64000,
        "reasoning_effort": "high",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_claude_code_fixture_through_openrouter() -> None:
    body = load("cc-2.1.197-print-default.json")
    out = translate(body, model="anthropic/claude-opus", dialect=Dialect(reasoning_param="openrouter", user_field=True))
    assert out["reasoning"] == {"effort": "high"}
    assert out["user"] == hashlib.sha256(body["metadata"]["user_id"].encode()).hexdigest()[:64]


def test_reasoning_models_get_no_stop_sequences() -> None:
    body = req(stop_sequences=["END"], temperature=0.2)
    assert "stop" not in translate(body, model="o3-mini", dialect=REASONING)
    assert "temperature" not in translate(body, model="o3-mini", dialect=REASONING)
    assert translate(body, model="gpt-4o", dialect=REASONING)["stop"] == ["END"]


def test_max_tokens_is_clamped_to_the_provider_limit() -> None:
    limited = Dialect(max_tokens_limit=8192)
    assert translate(req(max_tokens=128000), dialect=limited)["max_tokens"] == 8192
    assert translate(req(max_tokens=1000), dialect=limited)["max_tokens"] == 1000
    assert translate(req(max_tokens=128000))["max_tokens"] == 128000  # no limit by default


def test_cleaned_schemas_are_remembered_per_content_and_dialect() -> None:
    from claude_proxy.translate.request import cleaned_schema

    schema = {"$schema": "x", "type": "object", "properties": {"u": {"type": "string", "format": "uri"}}}
    first = cleaned_schema(schema, Dialect())
    assert first == {"type": "object", "properties": {"u": {"type": "string", "format": "uri"}}}
    assert cleaned_schema(dict(schema), Dialect()) is first  # same content: the remembered result
    strict = Dialect(strip_formats=frozenset({"uri"}))
    assert cleaned_schema(schema, strict) == {"type": "object", "properties": {"u": {"type": "string"}}}
    deep: dict = {"type": "object"}
    for _ in range(300):  # beyond orjson's nesting limit: still cleaned, just not remembered
        deep = {"type": "object", "properties": {"x": deep}, "$schema": "y"}
    assert "$schema" not in cleaned_schema(deep, Dialect())


def test_remembered_schemas_keep_their_keys_at_their_own_size() -> None:
    """orjson's output holds the writer's whole buffer (~4 KB for a short schema); a worker keeps up to 512
    schema keys for as long as it lives, so the cache stores exact-size copies: ~0.8 KB an entry here,
    key and cleaned schema together, against ~4.8 KB with orjson's own bytes as the key."""
    import gc
    import tracemalloc

    from claude_proxy.translate.request import _CLEANED, cleaned_schema

    _CLEANED.clear()
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(300):
            cleaned_schema({"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x"}}}, Dialect())
        gc.collect()
        per_entry = tracemalloc.get_traced_memory()[0] / 300
    finally:
        tracemalloc.stop()
        _CLEANED.clear()
    assert per_entry < 2000, f"{per_entry:.0f} bytes per remembered schema"


def test_the_context_lets_go_of_the_request_once_it_has_its_estimate() -> None:
    t = translate_request(req())
    assert t.context.source is not None
    tokens = t.context.prompt_tokens()
    assert t.context.source is None and t.context.prompt_tokens() == tokens


def test_remembered_tool_lists_translate_as_a_fresh_list_would() -> None:
    from claude_proxy.translate.identifiers import to_upstream_tool_name
    from claude_proxy.translate.request import _TOOL_LISTS, _translate_tools

    renamed = {to_upstream_tool_name("mcp__srv__do.it"): "mcp__srv__do.it"}

    tools = [
        {"name": "Bash", "description": "Run", "input_schema": {"$schema": "x", "type": "object"}},
        {"name": "mcp__srv__do.it", "input_schema": {"type": "object", "properties": {"u": {"type": "string", "format": "uri"}}}},
        {"type": "web_search_20250305", "name": "web_search"},
        {"name": "NoDescription", "description": "", "input_schema": {"type": "object"}},
    ]
    _TOOL_LISTS.clear()
    first = translate_request(req(tools=tools))
    expected = [
        {"type": "function", "function": {"name": name, "parameters": params, **({"description": d} if d else {})}}
        for name, params, d in _translate_tools(tools, Dialect())[0]
    ]
    assert first.body["tools"] == expected and len(_TOOL_LISTS) == 1
    assert first.context.tool_names == renamed and first.body["tools"][1]["function"]["name"] != "mcp__srv__do.it"
    # what a caller does with one translation never reaches the next
    first.body["tools"][0]["function"]["name"] = "changed"
    first.body["tools"].append({"type": "function"})
    first.context.tool_names.clear()
    second = translate_request(req(tools=json.loads(json.dumps(tools))))
    assert second.body["tools"] == expected and len(_TOOL_LISTS) == 1
    assert second.context.tool_names == renamed
    # another dialect, another entry
    strict = translate_request(req(tools=tools), dialect=Dialect(strip_formats=frozenset({"uri"}), tool_name_max=8))
    assert strict.body["tools"][1]["function"]["parameters"] == {"type": "object", "properties": {"u": {"type": "string"}}}
    assert all(len(t["function"]["name"]) <= 8 for t in strict.body["tools"]) and len(_TOOL_LISTS) == 2
    # a list orjson cannot serialise (an integer past 64 bits) is keyed by the stdlib's exact JSON instead
    huge = [{"name": "Big", "input_schema": {"type": "integer", "maximum": 2**70}}]
    assert translate_request(req(tools=huge)).body["tools"][0]["function"]["parameters"]["maximum"] == 2**70
    assert len(_TOOL_LISTS) == 3
    bigger = [{"name": "Big", "input_schema": {"type": "integer", "maximum": 2**70 + 1}}]  # not the same key
    assert translate_request(req(tools=bigger)).body["tools"][0]["function"]["parameters"]["maximum"] == 2**70 + 1
