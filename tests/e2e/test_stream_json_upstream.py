"""A provider that ignores `stream: true` and answers with one plain `chat.completion` JSON body.

Found with the real Claude Code CLI: the proxy read that body as an (empty) SSE stream, ended the stream with
"upstream stream ended without a finish_reason", and Claude Code then re-sent the whole turn without `stream`
— every turn cost two upstream requests (and failed outright with the non-streaming fallback disabled).
The answer must instead be translated and streamed to the client as the normal event sequence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest
import requests

from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream, Json, Text, completion

pytestmark = pytest.mark.e2e


STREAM_BODY = {
    "model": "claude-sonnet-5",
    "max_tokens": 50,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
def client(proxy: ProxyServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=20) as made:
        yield made  # closed: its kept-alive connections would hold the server's stop at the module's end


def _events(proxy: ProxyServer, body: dict) -> list[dict]:
    response = requests.post(proxy.url + "/v1/messages", json=body, timeout=20)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_json_answer_to_a_streaming_tool_turn(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    call = {"id": "call_json_1", "type": "function", "function": {"name": "Bash", "arguments": '{"command":"ls"}'}}
    upstream.enqueue(
        Json(
            completion("Listing.", tool_calls=[call], finish_reason="tool_calls", prompt_tokens=31, completion_tokens=9)
        )
    )
    seen = len(upstream.requests)
    with client.messages.stream(
        model="claude-sonnet-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "list files"}],
        tools=[{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
    ) as stream:
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "Listing."
    assert (message.content[1].id, message.content[1].name, message.content[1].input) == (
        "call_json_1",
        "Bash",
        {"command": "ls"},
    )
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (31, 9)
    assert len(upstream.requests) == seen + 1  # one upstream request, no retry
    assert upstream.last_request.json["stream"] is True


def test_json_answer_events_are_a_normal_stream(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("Hello there", prompt_tokens=12, completion_tokens=3)))
    events = _events(proxy, STREAM_BODY)
    kinds = [e["type"] for e in events if e["type"] != "ping"]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[[e["type"] for e in events].index("content_block_delta")]["delta"] == {
        "type": "text_delta",
        "text": "Hello there",
    }
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert (delta["usage"]["input_tokens"], delta["usage"]["output_tokens"]) == (12, 3)
    entry = proxy.journal()[-1]
    assert (entry["stream"], entry["stop_reason"], entry["input_tokens"], entry.get("error")) == (
        True,
        "end_turn",
        12,
        None,
    )


def test_json_error_body_with_200_is_an_http_error(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    # the error is all the stream would hold: it is read before the 200 is committed (issue 15 §6)
    upstream.enqueue(Json({"error": {"message": "model overloaded, try later", "type": "overloaded_error"}}))
    response = requests.post(proxy.url + "/v1/messages", json=STREAM_BODY, timeout=20)
    assert response.status_code == 529, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["type"] == "overloaded_error"
    assert "model overloaded, try later" in body["error"]["message"]


def test_json_content_type_with_garbage_is_an_error_event(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Text("<html>not json</html>", content_type="application/json"))
    events = _events(proxy, STREAM_BODY)
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error"
    assert "not JSON" in events[-1]["error"]["message"]
