"""Deterministic request bodies shaped like Claude Code's (generated, so the suite needs no fixture files).

`claude_code_request()` is a ~30 KB first turn: system blocks (billing header, identity, long
instructions with cache_control), 16 tools with real-looking JSON schemas, a user turn with
reminder + prompt blocks and a tool round trip. `long_conversation()` is the 1 MB, 400-message
history a long Claude Code session accumulates.
"""

from __future__ import annotations

import random
from typing import Any

WORDS = (
    "the file function test module request response stream token model tool call result error value "
    "config server client proxy upstream thread worker buffer socket message content block system user "
    "assistant return import class def self data list dict string number path line read write edit search "
    "pattern output input schema json parse format event chunk delta usage cache index name type id"
).split()


def text(rng: random.Random, size: int) -> str:
    """About `size` characters of word salad (deterministic for a given rng)."""
    out: list[str] = []
    n = 0
    while n < size:
        word = rng.choice(WORDS)
        out.append(word)
        n += len(word) + 1
    return " ".join(out)


def _prop(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


def tools(rng: random.Random, description_size: int = 900) -> list[dict[str, Any]]:
    """16 tools in Claude Code's style: long descriptions, nested JSON schemas with $schema etc."""
    specs: list[tuple[str, dict[str, Any], list[str]]] = [
        (
            "Bash",
            {
                "command": _prop("string", "The command to execute"),
                "timeout": _prop("number", "Timeout in ms"),
                "description": _prop("string", "What this command does"),
                "run_in_background": _prop("boolean", "Run in the background"),
            },
            ["command"],
        ),
        (
            "Read",
            {
                "file_path": _prop("string", "Absolute path"),
                "offset": _prop("number", "Line to start at"),
                "limit": _prop("number", "Number of lines"),
            },
            ["file_path"],
        ),
        (
            "Edit",
            {
                "file_path": _prop("string", "Absolute path"),
                "old_string": _prop("string", "Text to replace"),
                "new_string": _prop("string", "Replacement"),
                "replace_all": _prop("boolean", "Replace all", default=False),
            },
            ["file_path", "old_string", "new_string"],
        ),
        (
            "Write",
            {"file_path": _prop("string", "Absolute path"), "content": _prop("string", "File content")},
            ["file_path", "content"],
        ),
        ("Glob", {"pattern": _prop("string", "Glob pattern"), "path": _prop("string", "Directory")}, ["pattern"]),
        (
            "Grep",
            {
                "pattern": _prop("string", "Regex"),
                "path": _prop("string", "Where"),
                "glob": _prop("string", "Filter"),
                "output_mode": _prop("string", "Mode", enum=["content", "files_with_matches", "count"]),
                "-i": _prop("boolean", "Case insensitive"),
                "-n": _prop("boolean", "Line numbers"),
                "head_limit": _prop("number", "Limit"),
                "multiline": _prop("boolean", "Multiline"),
            },
            ["pattern"],
        ),
        (
            "Task",
            {
                "description": _prop("string", "Short description"),
                "prompt": _prop("string", "The task"),
                "subagent_type": _prop("string", "Agent type"),
            },
            ["description", "prompt", "subagent_type"],
        ),
        (
            "TodoWrite",
            {
                "todos": {
                    "type": "array",
                    "description": "The updated todo list",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["content", "status", "activeForm"],
                        "properties": {
                            "content": _prop("string", "Todo", minLength=1),
                            "status": _prop("string", "Status", enum=["pending", "in_progress", "completed"]),
                            "activeForm": _prop("string", "Present tense", minLength=1),
                        },
                    },
                }
            },
            ["todos"],
        ),
        (
            "WebFetch",
            {"url": _prop("string", "URL", format="uri"), "prompt": _prop("string", "What to extract")},
            ["url", "prompt"],
        ),
        (
            "WebSearch",
            {
                "query": _prop("string", "Query", minLength=2),
                "allowed_domains": {"type": "array", "items": {"type": "string"}, "description": "Only these"},
                "blocked_domains": {"type": "array", "items": {"type": "string"}, "description": "Never these"},
            },
            ["query"],
        ),
        (
            "NotebookEdit",
            {
                "notebook_path": _prop("string", "Path"),
                "cell_id": _prop("string", "Cell"),
                "new_source": _prop("string", "Source"),
                "cell_type": _prop("string", "Type", enum=["code", "markdown"]),
                "edit_mode": _prop("string", "Mode", enum=["replace", "insert", "delete"]),
            },
            ["notebook_path", "new_source"],
        ),
        (
            "BashOutput",
            {"bash_id": _prop("string", "Shell id"), "filter": _prop("string", "Regex filter")},
            ["bash_id"],
        ),
        ("KillShell", {"shell_id": _prop("string", "Shell id")}, ["shell_id"]),
        ("ExitPlanMode", {"plan": _prop("string", "The plan")}, ["plan"]),
        ("SlashCommand", {"command": _prop("string", "The slash command with arguments")}, ["command"]),
        ("mcp__ide__getDiagnostics", {"uri": _prop("string", "File URI")}, []),
    ]
    out = []
    for name, properties, required in specs:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        }
        if required:
            schema["required"] = required
        out.append({"name": name, "description": text(rng, description_size), "input_schema": schema})
    return out


def claude_code_request(
    *, stream: bool = False, model: str = "claude-sonnet-4-5", size: int = 30_000
) -> dict[str, Any]:
    """A realistic first-turn Claude Code request of about `size` bytes of JSON."""
    rng = random.Random(42)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli"},
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": tools(rng),
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>" + text(rng, 1500) + "</system-reminder>"},
                    {"type": "text", "text": "Find where the stream translator opens tool blocks and explain it."},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me search for it."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "name": "Grep",
                        "input": {"pattern": "def _open", "path": "/repo", "output_mode": "content"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                        "content": [{"type": "text", "text": text(rng, 1200)}],
                    },
                ],
            },
        ],
        "metadata": {"user_id": "user_" + "a" * 64 + "_account__session_0f3c1d2e"},
        "thinking": {"type": "enabled", "budget_tokens": 4096},
        "temperature": 1,
    }
    import orjson  # a dependency of the proxy itself

    missing = size - len(orjson.dumps(body))
    body["system"][2]["text"] = text(rng, max(missing, 0))
    return body


def long_conversation(
    *, messages: int = 400, size: int = 1_020_000, model: str = "claude-sonnet-4-5"
) -> dict[str, Any]:
    """A long session: `messages` turns (text, tool_use, tool_result, thinking) totalling about `size` bytes."""
    import orjson

    body = claude_code_request(model=model, stream=True)
    rng = random.Random(7)
    per_message = max(200, (size - len(orjson.dumps(body))) // messages)
    history: list[dict[str, Any]] = []
    for i in range(messages):
        if i % 2 == 0:
            if i == 0:
                content: Any = [{"type": "text", "text": text(rng, per_message)}]
            else:
                content = [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_{i - 1:024d}",
                        "content": [{"type": "text", "text": text(rng, per_message - 80)}],
                    },
                    {"type": "text", "text": "continue"},
                ]
            history.append({"role": "user", "content": content})
        else:
            history.append(
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": text(rng, 120), "signature": "sig" + "x" * 60},
                        {"type": "text", "text": text(rng, per_message // 2)},
                        {
                            "type": "tool_use",
                            "id": f"toolu_{i:024d}",
                            "name": "Read",
                            "input": {
                                "file_path": f"/repo/src/module_{i}.py",
                                "offset": i,
                                "limit": 200,
                                "note": text(rng, per_message // 4),
                            },
                        },
                    ],
                }
            )
    history.append({"role": "user", "content": "What next?"})
    body["messages"] = [*history[: messages - 1], history[-1]] if len(history) > messages else history
    return body
