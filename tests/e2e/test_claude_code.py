"""The real Claude Code CLI (from npm) → claude-proxy under gunicorn → a scripted OpenAI-compatible upstream.

Everything runs inside a network namespace that only has loopback (``unshare -n``, root needed), so the CLI
cannot reach any address but 127.0.0.1; its non-essential traffic is switched off and HOME is a temporary
folder. The CLI is installed once into ``.cache/claude-code/<version>`` by ``tests/support/claude_cli.py``.
The scenario itself lives in ``tests/support/cc_scenario.py``; these tests assert on the JSON it writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cc_scenario import (
    SUBAGENT_MODEL,
    SUBAGENT_REPORT,
    TOOL_CALL_ID,
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    USAGE,
)
from tests.support.claude_cli import ClaudeUnavailable, claude_binary, installed_version

pytestmark = [pytest.mark.claude_code, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "support" / "cc_scenario.py"

# Top-level fields an OpenAI chat completion request may carry (what the proxy is allowed to send).
OPENAI_FIELDS = {
    "model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "tools", "tool_choice",
    "parallel_tool_calls", "temperature", "top_p", "stop", "user", "reasoning_effort",
}  # fmt: skip
# Keys that only exist in the Anthropic API: none may reach an OpenAI upstream, at any depth.
ANTHROPIC_ONLY = {
    "cache_control", "context_management", "thinking", "output_config", "metadata", "anthropic_beta", "betas",
    "anthropic_version", "signature", "tool_use_id", "input_schema", "stop_sequences", "top_k", "is_error",
    "redacted_thinking", "citations", "container", "service_tier", "inference_geo", "speed", "diagnostics",
}  # fmt: skip


def _tool(name: str) -> str | None:
    """A system tool, also where root's tools live when /usr/sbin is not on PATH."""
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin", "/usr/bin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )


def _in_namespace_command(*args: str) -> list[str]:
    """`args` run in a new network namespace whose only interface, loopback, is up."""
    return [
        _tool("unshare") or "unshare",
        "-n",
        "sh",
        "-c",
        '"$0" link set lo up && exec "$@"',
        _tool("ip") or "ip",
        *args,
    ]


@pytest.fixture(scope="module")
def netns() -> None:
    """Skip unless a loopback-only network namespace can be made here (root + unshare + ip)."""
    if os.geteuid() != 0:
        pytest.skip("the Claude Code test needs root to create a loopback-only network namespace (unshare -n)")
    if not _tool("unshare") or not _tool("ip"):
        pytest.skip("the Claude Code test needs unshare (util-linux) and ip (iproute2)")
    probe = subprocess.run(
        _in_namespace_command(_tool("ip") or "ip", "-o", "addr", "show"), capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.strip() or probe.returncode}")
    # The isolation this test relies on: loopback is the only interface, 127.0.0.1/::1 its only addresses.
    interfaces = {line.split()[1] for line in probe.stdout.splitlines() if line.strip()}
    assert interfaces == {"lo"}, probe.stdout
    assert "inet 127.0.0.1/8" in probe.stdout, probe.stdout


@pytest.fixture(scope="module")
def claude(netns: None) -> Iterator[Path]:
    """The real CLI, installed from npm into .cache/ on first use (skips only where node/npm/registry are missing)."""
    try:
        path = claude_binary()
    except ClaudeUnavailable as exc:
        pytest.skip(f"Claude Code CLI unavailable: {exc}")
    print(f"\nClaude Code CLI: {path} ({installed_version(path)})")
    yield path


def run_scenario(claude: Path, tmp_path: Path, *extra: str, script: Path = SCENARIO) -> dict[str, Any]:
    """A scenario script (cc_scenario.py unless told) inside a fresh loopback-only namespace; its JSON result
    (with the script's output on failure)."""
    out = tmp_path / "result.json"
    command = _in_namespace_command(sys.executable, str(script), "--claude", str(claude), "--out", str(out), *extra)
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0 and out.exists(), f"scenario failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _describe(result: dict[str, Any]) -> str:
    """What to print when an assertion fails: the CLI's output and the proxy's log, not the 50 KB bodies."""
    return (
        f"exit={result.get('returncode')}\nstdout={result.get('stdout', '')[:3000]}\n"
        f"stderr={result.get('stderr', '')[:3000]}\njournal={result.get('journal')}\n"
        f"upstream errors={result.get('upstream_errors')}\nproxy output={result.get('proxy_output', '')[-3000:]}"
    )


def _keys(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, key) in a JSON value; property names inside a JSON schema's `properties` are data, not keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not path.endswith(".properties"):
                yield path, key
            yield from _keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _keys(item, f"{path}[{i}]")


def assert_well_formed_openai(body: dict[str, Any]) -> None:
    """An OpenAI chat completion request: known fields, valid roles, tool messages right after their tool_calls."""
    assert set(body) <= OPENAI_FIELDS, set(body) - OPENAI_FIELDS
    leaked = sorted({(path, key) for path, key in _keys(body) if key in ANTHROPIC_ONLY})
    assert not leaked, f"Anthropic-only keys sent upstream: {leaked}"
    assert body["model"] in (UPSTREAM_MODEL, SUBAGENT_MODEL)
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
    for tool in body.get("tools", []):
        assert set(tool) == {"type", "function"} and tool["type"] == "function", tool
        assert set(tool["function"]) <= {"name", "description", "parameters", "strict"}, tool["function"].keys()
        assert tool["function"]["parameters"]["type"] == "object"
    messages = body["messages"]
    pending: list[str] = []  # tool_call ids still waiting for their tool message
    for i, message in enumerate(messages):
        role = message["role"]
        assert role in {"system", "developer", "user", "assistant", "tool"}, message
        if pending:
            assert role == "tool", f"message {i} is {role!r} but tool results are still due for {pending}"
        if role == "tool":
            assert pending, f"message {i}: a tool message that answers no preceding assistant tool_calls"
            assert message["tool_call_id"] == pending.pop(0)
            assert isinstance(message["content"], str)
            continue
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                assert part["type"] in {"text", "image_url"}, part
        else:
            assert content is None or isinstance(content, str), message
        if role == "assistant" and message.get("tool_calls"):
            for call in message["tool_calls"]:
                assert call["type"] == "function" and call["id"]
                json.loads(call["function"]["arguments"])  # arguments are a JSON string
            pending = [call["id"] for call in message["tool_calls"]]
    assert not pending, f"tool_calls never answered: {pending}"


def assert_upstream_requests(result: dict[str, Any]) -> None:
    """Every upstream request: POST /v1/chat/completions with the provider key only, a well-formed body."""
    for request in result["upstream_requests"]:
        assert (request["method"], request["path"]) == ("POST", "/v1/chat/completions"), request["path"]
        headers = request["headers"]
        assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert "x-api-key" not in headers  # the client's placeholder key never reaches the provider
        assert not [h for h in headers if h.startswith(("anthropic-", "x-stainless", "x-claude"))], headers
        assert_well_formed_openai(request["json"])


def assert_tool_round_trip(result: dict[str, Any], tool_turn: dict[str, Any], answer_turn: dict[str, Any]) -> None:
    """The tool really ran: its output (upper-cased by `tr`, so not a copy of the command) came back as `tool`."""
    marker = result["marker"]
    ran = marker.upper()
    assert not any(m["role"] in ("tool", "assistant") for m in tool_turn["messages"])
    assert ran not in json.dumps(tool_turn)
    messages = answer_turn["messages"]
    assistant, tool = messages[-2], messages[-1]
    assert assistant["role"] == "assistant"
    assert [c["id"] for c in assistant["tool_calls"]] == [TOOL_CALL_ID]
    call = assistant["tool_calls"][0]["function"]
    assert call["name"] == "Bash"
    assert json.loads(call["arguments"])["command"] == f"echo {marker} | tr a-z A-Z"
    assert tool == {"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": ran}
    # The prompt and system context arrive before the turn: the conversation is not lost in translation.
    roles = [m["role"] for m in messages]
    assert roles[0] == "system" and "user" in roles[: roles.index("assistant")]


def _succeeded(result: dict) -> tuple[str, dict]:
    """The CLI finished the turn without error and reported the tool's (upper-cased) output."""
    why = _describe(result)
    output = result["cli_json"]
    assert result["returncode"] == 0 and output is not None, why
    assert output["is_error"] is False, why
    assert output["result"] == f"The command printed: {result['marker'].upper()}", why
    return why, output


def test_tool_round_trip(claude: Path, tmp_path: Path) -> None:
    result = run_scenario(claude, tmp_path)
    why = _describe(result)
    output = result["cli_json"]
    assert result["returncode"] == 0, why
    assert output is not None, why
    assert output["type"] == "result" and output["subtype"] == "success", why
    assert output["is_error"] is False, why
    assert output["result"] == f"The command printed: {result['marker'].upper()}", why
    assert output["num_turns"] == 2 and output["stop_reason"] == "end_turn", why

    requests_seen = result["upstream_requests"]
    assert len(requests_seen) == 2, [r["json"]["messages"][-1] for r in requests_seen]  # no side calls
    assert [r["json"]["stream"] for r in requests_seen] == [True, True]
    assert all(r["json"]["stream_options"] == {"include_usage": True} for r in requests_seen)
    assert_upstream_requests(result)
    assert_tool_round_trip(result, requests_seen[0]["json"], requests_seen[1]["json"])
    assert result["upstream_errors"] == []

    # The usage Claude Code reports is the upstream's, summed over both turns (cached tokens split out).
    usage = output["usage"]
    assert usage["input_tokens"] == sum(prompt - cached for prompt, _, cached in USAGE), usage
    assert usage["output_tokens"] == sum(completion for _, completion, _ in USAGE), usage
    assert usage["cache_read_input_tokens"] == sum(cached for _, _, cached in USAGE), usage
    assert usage["cache_creation_input_tokens"] == 0

    journal = result["journal"]
    assert [(e["endpoint"], e["status"], e["stream"], e["stop_reason"]) for e in journal] == [
        ("messages", 200, True, "tool_use"),
        ("messages", 200, True, "end_turn"),
    ], why
    assert [(e["input_tokens"], e["output_tokens"], e["cache_read_tokens"]) for e in journal] == [
        (prompt - cached, completion, cached) for prompt, completion, cached in USAGE
    ]
    assert all(e["upstream_model"] == UPSTREAM_MODEL for e in journal)
    assert "Traceback" not in result["proxy_output"], result["proxy_output"]


def test_broken_stream_falls_back_to_non_streaming(claude: Path, tmp_path: Path) -> None:
    """The upstream dies right after the stream started: the proxy ends the SSE stream with an `error` event,
    and the CLI re-sends the turn without `stream`, which the proxy must serve as a plain JSON message."""
    result = run_scenario(claude, tmp_path, "--scenario", "fallback")
    why, output = _succeeded(result)

    requests_seen = result["upstream_requests"]
    assert [r["json"].get("stream") for r in requests_seen] == [True, None, True], why
    assert requests_seen[0]["json"]["messages"] == requests_seen[1]["json"]["messages"]  # the same turn, re-sent
    assert_upstream_requests(result)
    assert_tool_round_trip(result, requests_seen[1]["json"], requests_seen[2]["json"])

    journal = result["journal"]
    assert [(e["status"], e["stream"], e.get("error_type"), e["stop_reason"]) for e in journal] == [
        (200, True, "api_error", None),
        (200, False, None, "tool_use"),
        (200, True, None, "end_turn"),
    ], why
    assert [(e["input_tokens"], e["output_tokens"], e["cache_read_tokens"]) for e in journal[1:]] == [
        (prompt - cached, completion, cached) for prompt, completion, cached in USAGE
    ]
    # How the CLI totals usage across a fallback is its own business and varies by version (2.1.330 adds the
    # failed stream's message_start estimate, 2.1.197 keeps only the last turn): the exact sum is checked in
    # test_tool_round_trip; here the final turn's upstream numbers must be in it.
    usage = output["usage"]
    assert usage["output_tokens"] >= USAGE[1][1] and usage["cache_read_input_tokens"] == USAGE[1][2], usage


def test_provider_that_ignores_stream_true(claude: Path, tmp_path: Path) -> None:
    """The upstream answers `stream: true` with plain JSON completions: the proxy must stream them to the CLI.
    (It once read such a body as an empty SSE stream, so the CLI re-sent every turn without streaming.)"""
    result = run_scenario(claude, tmp_path, "--scenario", "json")
    why, output = _succeeded(result)
    requests_seen = result["upstream_requests"]
    assert [r["json"].get("stream") for r in requests_seen] == [True, True], why  # no non-streaming retries
    assert_upstream_requests(result)
    assert_tool_round_trip(result, requests_seen[0]["json"], requests_seen[1]["json"])
    assert [(e["stream"], e["stop_reason"], e.get("error")) for e in result["journal"]] == [
        (True, "tool_use", None),
        (True, "end_turn", None),
    ], why
    usage = output["usage"]
    assert usage["input_tokens"] == sum(prompt - cached for prompt, _, cached in USAGE), usage
    assert usage["output_tokens"] == sum(completion for _, completion, _ in USAGE), usage
    assert usage["cache_read_input_tokens"] == sum(cached for _, _, cached in USAGE), usage


def test_claude_proxy_run_with_real_cli(claude: Path, tmp_path: Path) -> None:
    """`claude-proxy run -c CONFIG -- -p ...`: the launcher starts the proxy, runs the CLI against it, stops it."""
    result = run_scenario(claude, tmp_path, "--via-launcher")
    why, _ = _succeeded(result)
    requests_seen = result["upstream_requests"]
    assert len(requests_seen) == 2, why
    assert_upstream_requests(result)
    assert_tool_round_trip(result, requests_seen[0]["json"], requests_seen[1]["json"])
    assert [e["stop_reason"] for e in result["journal"]] == ["tool_use", "end_turn"], why


def test_subagent_routed_by_claude_codes_headers(claude: Path, tmp_path: Path) -> None:
    """CLAUDE_CODE_GATEWAY_HINT_HEADERS=1 and `[routes] subagent`: the main loop stays on [models], the subagent's
    requests (x-claude-code-agent-id, request class "subagent") go to the subagent route's model, and the report
    comes back to the parent as the Agent tool's result."""
    result = run_scenario(claude, tmp_path, "--scenario", "subagent")
    why = _describe(result)
    output = result["cli_json"]
    assert result["returncode"] == 0 and output is not None and output["is_error"] is False, why
    assert SUBAGENT_REPORT in output["result"], why
    assert_upstream_requests(result)
    models = [r["json"]["model"] for r in result["upstream_requests"]]
    assert models[0] == UPSTREAM_MODEL and SUBAGENT_MODEL in models and models[-1] == UPSTREAM_MODEL, models
    routes = [(e["route"], e["upstream_model"]) for e in result["journal"] if e["endpoint"] == "messages"]
    assert ("subagent", SUBAGENT_MODEL) in routes, routes
    assert all(model == SUBAGENT_MODEL for route, model in routes if route == "subagent"), routes
    assert all(route != "subagent" for route, model in routes if model == UPSTREAM_MODEL), routes
    # the parent's last turn carries the subagent's report back as the Agent tool's result
    last = result["upstream_requests"][-1]["json"]["messages"]
    assert last[-1]["role"] == "tool" and SUBAGENT_REPORT in last[-1]["content"], last[-1]
    # hint headers name each request; the prompt id ties the subagent to its parent's prompt
    prompt_ids = {e.get("prompt_id") for e in result["journal"] if e["endpoint"] == "messages"}
    assert len(prompt_ids) == 1 and None not in prompt_ids, prompt_ids
