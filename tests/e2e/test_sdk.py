"""End to end: the official `anthropic` SDK → claude-proxy under gunicorn → a real local upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import pytest
import requests

from tests.conftest import UPSTREAM_KEY
from tests.support.upstream import (
    FakeUpstream,
    Hang,
    Json,
    Reset,
    Sleep,
    Stream,
    chunk,
    completion,
    tool_call_delta,
    usage_chunk,
)

pytestmark = pytest.mark.e2e

BASH_TOOL = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
        "additionalProperties": False,
    },
}


def stream_request(proxy) -> requests.Response:  # type: ignore[no-untyped-def]
    """A raw streaming request, for tests that look at bytes and timing rather than the SDK's view."""
    body = {
        "model": "claude-sonnet-5",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    return requests.post(proxy.url + "/v1/messages", stream=True, timeout=10, json=body)


@pytest.fixture
def client(proxy) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=20) as made:
        yield made  # closed: its kept-alive connections would hold the server's stop at the module's end


def test_create_text(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("Hello there", prompt_tokens=42, completion_tokens=7)))
    message = client.messages.create(
        model="claude-sonnet-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello there"
    assert message.model == "claude-sonnet-5"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (42, 7)
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "big-model"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-api-key" not in sent.headers  # the client's key never reaches the provider


def test_tool_round_trip(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Json(
            completion(
                None,
                finish_reason="tool_calls",
                tool_calls=[
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": json.dumps({"command": "echo hi"})},
                    },
                ],
            )
        ),
        Json(completion("It printed hi.")),
    )
    first = client.messages.create(
        model="claude-haiku-4-5-20251001",
        max_tokens=100,
        tools=[BASH_TOOL],
        messages=[{"role": "user", "content": "run echo hi"}],
    )
    assert first.stop_reason == "tool_use"
    tool_use = first.content[0]
    assert tool_use.type == "tool_use" and tool_use.name == "Bash" and tool_use.input == {"command": "echo hi"}
    second = client.messages.create(
        model="claude-haiku-4-5-20251001",
        max_tokens=100,
        tools=[BASH_TOOL],
        messages=[
            {"role": "user", "content": "run echo hi"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": tool_use.id, "content": "hi\n"},
                    {"type": "text", "text": "what did it print?"},
                ],
            },
        ],
    )
    assert second.content[0].text == "It printed hi."
    sent = upstream.requests[-1].json
    assert sent["model"] == "fast-model"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "user"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_abc123"
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_abc123", "content": "hi\n"}
    assert sent["messages"][3] == {"role": "user", "content": "what did it print?"}
    assert "$schema" not in sent["tools"][0]["function"]["parameters"]


@pytest.mark.parametrize(
    ("status", "body", "exc", "error_type"),
    [
        (
            401,
            {"error": {"message": "Incorrect API key", "type": "invalid_request_error", "code": "invalid_api_key"}},
            anthropic.AuthenticationError,
            "authentication_error",
        ),
        (
            400,
            {"error": {"message": "Unsupported parameter: 'top_k'", "code": "unsupported_parameter"}},
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
        (404, {"error": {"message": "model not found"}}, anthropic.NotFoundError, "not_found_error"),
        (
            403,
            {"object": "error", "message": "forbidden", "type": "permission"},
            anthropic.PermissionDeniedError,
            "permission_error",
        ),
    ],
)
def test_upstream_errors_keep_status(client, upstream, status, body, exc, error_type) -> None:
    upstream.enqueue(Json(body, status=status))
    with pytest.raises(exc) as info:
        client.messages.create(model="claude-sonnet-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    assert info.value.body["error"]["type"] == error_type
    assert body.get("error", body).get("message") in info.value.body["error"]["message"]
    assert UPSTREAM_KEY not in json.dumps(info.value.body)


def test_rate_limit_retried_then_surfaced(client, upstream) -> None:
    before = len(upstream.requests)
    limited = Json(
        {"error": {"message": "slow down", "type": "rate_limit_exceeded"}}, status=429, headers={"Retry-After": "0"}
    )
    upstream.enqueue(limited, limited, limited)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="claude-sonnet-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert len(upstream.requests) - before == 3  # one attempt and two retries


def test_retry_then_success(client, upstream) -> None:
    upstream.enqueue(Json({"error": {"message": "busy"}}, status=503), Json(completion("second time lucky")))
    message = client.messages.create(
        model="claude-sonnet-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    assert message.content[0].text == "second time lucky"


def test_stream_accumulates_thinking_text_tools_usage(client, upstream) -> None:
    upstream.enqueue(
        Stream(
            [
                chunk(role="assistant", content=""),
                chunk(reasoning="Let me "),
                chunk(reasoning="think."),
                chunk(content="I'll run "),
                chunk(content="two commands."),
                chunk(tool_calls=[tool_call_delta(0, "call_1", "Bash", "")]),
                chunk(tool_calls=[tool_call_delta(0, arguments='{"command": ')]),
                chunk(tool_calls=[tool_call_delta(0, arguments='"ls"}')]),
                chunk(tool_calls=[tool_call_delta(1, "functions.Bash:1", "Bash", '{"command": "pwd"}')]),
                chunk(finish_reason="tool_calls"),
                usage_chunk(120, 33, cached_tokens=20),
            ],
            delay=0.01,
        )
    )
    with client.messages.stream(
        model="claude-opus-4-8",
        max_tokens=1000,
        tools=[BASH_TOOL],
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "go"}],
    ) as stream:
        message = stream.get_final_message()
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]
    assert message.content[0].thinking == "Let me think."
    assert message.content[0].signature
    assert message.content[1].text == "I'll run two commands."
    assert message.content[2].input == {"command": "ls"} and message.content[2].id == "call_1"
    assert message.content[3].input == {"command": "pwd"}
    assert message.content[3].id.startswith("toolu_") and ":" not in message.content[3].id
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens == 33
    assert message.usage.input_tokens == 100
    assert message.usage.cache_read_input_tokens == 20
    sent = upstream.requests[-1].json
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_stream_tokens_arrive_incrementally(proxy, upstream) -> None:
    upstream.enqueue(
        Stream([chunk(content="first"), Sleep(1.0), chunk(content=" second", finish_reason="stop"), usage_chunk(5, 2)])
    )
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    with stream_request(proxy) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        for line in response.iter_lines():
            if line.startswith(b"data:") and b"text_delta" in line:
                arrivals.append((time.monotonic() - started, json.loads(line[5:])["delta"]["text"]))
    assert [text for _, text in arrivals] == ["first", " second"]
    assert arrivals[0][0] < 0.95, arrivals  # the first token did not wait for the upstream's 1 s pause
    assert arrivals[1][0] - arrivals[0][0] > 0.8


def test_client_disconnect_closes_upstream(proxy, upstream) -> None:
    upstream.enqueue(Stream([chunk(content="hello"), Hang()], done=False))
    response = stream_request(proxy)
    lines = response.iter_lines()
    for line in lines:
        if b"text_delta" in line:
            break
    response.close()  # the client hangs up mid-stream
    assert upstream.wait_for_disconnect(timeout=5.0), "the proxy kept the upstream connection open"
    # the worker is free again: a new request succeeds
    upstream.enqueue(Json(completion("still alive")))
    ok = requests.post(
        proxy.url + "/v1/messages",
        timeout=10,
        json={"model": "claude-sonnet-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
    )
    assert ok.json()["content"][0]["text"] == "still alive"
    # its journal line counts what the cancelled answer used: the prompt estimate and the output so far
    deadline = time.monotonic() + 5
    while not (cut := [e for e in proxy.journal() if e.get("error_type") == "client_disconnected"]):
        assert time.monotonic() < deadline, "no journal line for the cut stream"
        time.sleep(0.05)
    assert cut[-1]["usage_estimated"] is True
    assert cut[-1]["input_tokens"] > 0 and cut[-1]["output_tokens"] == len("hello") // 4


def test_pings_keep_a_silent_stream_alive(proxy, upstream) -> None:
    upstream.enqueue(Stream([chunk(reasoning="hmm"), Sleep(2.2), chunk(content="done", finish_reason="stop")]))
    events = []
    with stream_request(proxy) as response:
        for line in response.iter_lines():
            if line.startswith(b"event:"):
                events.append(line[7:].decode())
    thinking_at = events.index("content_block_delta")
    pings_in_silence = events[thinking_at:].count("ping")
    assert pings_in_silence >= 2, events  # ping_interval is 0.5 s in the test config
    assert events[-2:] == ["message_delta", "message_stop"]


def test_upstream_reset_mid_stream_ends_with_error_event(proxy, upstream) -> None:
    upstream.enqueue(Stream([chunk(content="partial"), Reset()], done=False))
    with stream_request(proxy) as response:
        assert response.status_code == 200
        body = response.text
    events = [line[7:] for line in body.splitlines() if line.startswith("event:")]
    assert events[-1] == "error"
    assert "message_delta" not in events and "message_stop" not in events
    assert events[-2] == "content_block_stop"  # what was open got closed first
    data = json.loads(body.strip().splitlines()[-1][5:])
    assert data["type"] == "error" and data["error"]["type"] == "api_error"


def test_stream_cut_without_finish_reason_is_an_error(proxy, upstream) -> None:
    upstream.enqueue(Stream([chunk(content="partial")], done=False))
    with stream_request(proxy) as response:
        body = response.text
    assert "event: error" in body and "cut off" in body
    assert "end_turn" not in body


def test_stream_error_before_first_byte_is_a_real_status(client, upstream) -> None:
    upstream.enqueue(Json({"error": {"message": "no such model", "code": "model_not_found"}}, status=404))
    with pytest.raises(anthropic.NotFoundError):
        with client.messages.stream(
            model="claude-sonnet-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            stream.get_final_message()
