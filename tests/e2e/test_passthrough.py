"""`format = "anthropic"`: requests go to an Anthropic-compatible upstream untranslated, and come back as sent."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import requests

from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream, Hang, Json, Sleep, Stream, Text

pytestmark = pytest.mark.e2e

PROXY_KEY = "sk-ant-proxy-own-key-0123456789"
CLIENT_KEY = "sk-ant-client-key-9876543210"
UNSET_KEY_VAR = "CLAUDE_PROXY_TEST_ANTHROPIC_KEY_NEVER_SET"
BETA = "claude-code-20250219,interleaved-thinking-2025-05-14"
CLIENT_HEADERS = {
    "content-type": "application/json",
    "x-api-key": CLIENT_KEY,
    "authorization": "Bearer client-bearer-token",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": BETA,
    "anthropic-dangerous-direct-browser-access": "true",
    "x-stainless-lang": "js",
    "x-stainless-retry-count": "0",
    "x-claude-code-session-id": "3b9f7a52-5f7e-4a0e-9d7e-2f1c9c4b8a11",
    "user-agent": "claude-cli/2.1.197 (external, cli)",
    "cookie": "session=abc",
}
MESSAGE = {
    "id": "msg_01XYZ",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-5",
    "content": [{"type": "text", "text": "Hello from Anthropic"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 5, "cache_read_input_tokens": 0},
}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


MESSAGE_START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {**MESSAGE, "content": [], "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1}},
    },
)
EVENTS = [
    MESSAGE_START,
    sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    sse("ping", {"type": "ping"}),
    sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    ),
    sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " world"}},
    ),
    sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
    ),
    sse("message_stop", {"type": "message_stop"}),
]


def paced(events: list[str], pause: float = 0.05) -> list[Any]:
    """The events with a pause between each, so each is written (and must be relayed) separately."""
    items: list[Any] = []
    for event in events:
        items += [event, Sleep(pause)]
    return items[:-1]


def passthrough_config(upstream: FakeUpstream, **provider: Any) -> dict[str, Any]:
    return {
        "provider": {
            "name": "anthropic",
            "format": "anthropic",
            "base_url": upstream.origin,
            "api_key_env": UNSET_KEY_VAR,
            **provider,
        },
        "models": {"claude-opus-4-8": "claude-opus-4-1"},
        "upstream": {"max_retries": 2, "retry_base_delay": 0.05, "read_timeout": 5.0},
        "server": {"ping_interval": 0.5},
    }


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream) -> Iterator[ProxyServer]:
    with ProxyServer(passthrough_config(upstream, api_key=PROXY_KEY)) as server:
        yield server


@pytest.fixture(scope="module")
def client_keyed(upstream: FakeUpstream) -> Iterator[ProxyServer]:
    """No key of its own: uses the client's (api_key_from_client)."""
    with ProxyServer(passthrough_config(upstream, api_key_from_client=True)) as server:
        yield server


@pytest.fixture
def client(proxy: ProxyServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0, timeout=20) as made:
        yield made  # closed: its kept-alive connections would hold the server's stop at the module's end


def post(server: ProxyServer, raw: bytes, path: str = "/v1/messages?beta=true", **kw: Any) -> requests.Response:
    return requests.post(server.url + path, data=raw, headers=kw.pop("headers", CLIENT_HEADERS), timeout=15, **kw)


RAW = (
    b'{"model": "claude-sonnet-5",  "max_tokens":64, "messages":[{"role":"user","content":"caf\\u00e9 \xe2\x98\x95"}],'
    b' "metadata":{"user_id":"u-1"}, "context_management": {"edits": []}, "future_field": [1, 2.50, true]}'
)


def test_body_and_headers(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(MESSAGE))
    response = post(proxy, RAW)
    assert response.status_code == 200, response.text
    assert response.content == json.dumps(MESSAGE).encode()  # the upstream's bytes, as they were
    sent = upstream.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.body == RAW  # byte for byte: spacing, escapes, unknown fields and all
    assert sent.headers["x-api-key"] == PROXY_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == BETA
    for name in (
        "authorization",
        "cookie",
        "x-stainless-lang",
        "x-stainless-retry-count",
        "x-claude-code-session-id",
        "anthropic-dangerous-direct-browser-access",
    ):
        assert name not in sent.headers, name
    assert "claude-cli" not in sent.headers.get("user-agent", "")
    assert CLIENT_KEY not in str(dict(sent.headers))


def test_a_mapped_model_is_the_only_change(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(MESSAGE))
    body = json.loads(RAW)
    body["model"] = "claude-opus-4-8"
    assert post(proxy, json.dumps(body).encode()).status_code == 200
    assert upstream.requests[-1].json == {**body, "model": "claude-opus-4-1"}


def test_anthropic_version_defaults_when_the_client_sends_none(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(MESSAGE))
    assert post(proxy, RAW, headers={"content-type": "application/json"}).status_code == 200
    sent = upstream.requests[-1].headers
    assert sent["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in sent
    assert sent["x-api-key"] == PROXY_KEY


def test_the_clients_key_is_used_only_with_api_key_from_client(
    client_keyed: ProxyServer, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Json(MESSAGE))
    assert post(client_keyed, RAW).status_code == 200
    assert upstream.requests[-1].headers["x-api-key"] == CLIENT_KEY

    upstream.enqueue(Json(MESSAGE))
    bearer_only = {k: v for k, v in CLIENT_HEADERS.items() if k != "x-api-key"}
    assert post(client_keyed, RAW, headers=bearer_only).status_code == 200
    assert upstream.requests[-1].headers["x-api-key"] == "client-bearer-token"

    seen = len(upstream.requests)
    no_key = {k: v for k, v in CLIENT_HEADERS.items() if k not in ("x-api-key", "authorization")}
    response = post(client_keyed, RAW, headers=no_key)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert UNSET_KEY_VAR in response.json()["error"]["message"]
    assert len(upstream.requests) == seen


def test_sdk_non_streaming(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(MESSAGE))
    message = client.messages.create(
        model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.id == "msg_01XYZ"
    assert message.content[0].text == "Hello from Anthropic"  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)
    assert upstream.requests[-1].headers["x-api-key"] == PROXY_KEY


def test_stream_is_relayed_as_it_arrives(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    """The upstream sends message_start and then hangs: the client has the event all the same."""
    upstream.enqueue(Stream([MESSAGE_START, Hang()], done=False))
    raw = RAW.replace(b'"max_tokens":64', b'"max_tokens":64, "stream": true')
    with requests.post(
        proxy.url + "/v1/messages", data=raw, headers=CLIENT_HEADERS, stream=True, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = b""
        for piece in response.iter_content(chunk_size=None):
            received += piece
            if received.count(b"\n\n") >= 2:
                break
    assert received.startswith(MESSAGE_START.encode())
    assert upstream.wait_for_disconnect(timeout=10)  # the client left: the proxy let go of the upstream too


def test_stream_bytes_pass_through_unchanged(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream(paced(EVENTS), done=False))
    raw = RAW.replace(b'"max_tokens":64', b'"max_tokens":64, "stream": true')
    response = post(proxy, raw)
    assert response.status_code == 200
    assert response.content == "".join(EVENTS).encode()
    assert upstream.requests[-1].body == raw


def test_sdk_accumulates_a_streamed_message(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream(paced(EVENTS), done=False))
    with client.messages.stream(
        model="claude-sonnet-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["Hello", " world"]
    assert final.content[0].text == "Hello world"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 2)
    assert upstream.requests[-1].json["stream"] is True


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 250000 tokens > 200000 maximum",
                },
            },
        ),
        (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        (404, {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-nope"}}),
    ],
)
def test_upstream_errors_come_back_unmodified(
    proxy: ProxyServer, upstream: FakeUpstream, status: int, body: dict[str, Any]
) -> None:
    upstream.enqueue(Json(body, status=status))
    seen = len(upstream.requests)
    response = post(proxy, RAW)
    assert response.status_code == status
    assert response.content == json.dumps(body).encode()
    assert len(upstream.requests) == seen + 1  # not retried


def test_rate_limit_keeps_its_retry_hint(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens exceeded"}}
    upstream.enqueue(*[Json(body, status=429, headers={"retry-after": "0"})] * 3)
    response = post(proxy, RAW)
    assert response.status_code == 429
    assert response.content == json.dumps(body).encode()
    assert response.headers["retry-after"] == "0"


def test_529_is_retried(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    upstream.enqueue(Json(overloaded, status=529), Json(overloaded, status=529), Json(MESSAGE))
    seen = len(upstream.requests)
    response = post(proxy, RAW)
    assert response.status_code == 200
    assert response.json()["id"] == "msg_01XYZ"
    assert len(upstream.requests) == seen + 3

    upstream.enqueue(*[Json(overloaded, status=529)] * 3)
    response = post(proxy, RAW)
    assert response.status_code == 529
    assert response.content == json.dumps(overloaded).encode()


def test_a_non_json_gateway_error_becomes_an_envelope(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(*[Text("<html>502 Bad Gateway</html>", status=502, content_type="text/html")] * 3)
    response = post(proxy, RAW)
    assert response.status_code == 502
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "api_error"


def test_count_tokens_passes_through(proxy: ProxyServer, upstream: FakeUpstream, client: anthropic.Anthropic) -> None:
    raw = b'{"model":"claude-sonnet-5", "messages":[{"role":"user","content":"count me"}]}'
    upstream.enqueue(Json({"input_tokens": 4321}), path="/v1/messages/count_tokens")
    response = post(proxy, raw, path="/v1/messages/count_tokens?beta=true")
    assert response.status_code == 200
    assert response.json() == {"input_tokens": 4321}
    sent = upstream.requests[-1]
    assert (sent.path, sent.body, sent.headers["x-api-key"]) == ("/v1/messages/count_tokens", raw, PROXY_KEY)
    assert sent.headers["anthropic-beta"] == BETA

    upstream.enqueue(Json({"input_tokens": 77}), path="/v1/messages/count_tokens")
    counted = client.messages.count_tokens(model="claude-opus-4-8", messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens == 77
    assert upstream.requests[-1].json["model"] == "claude-opus-4-1"


def test_a_key_echoed_into_a_relayed_stream_is_blanked(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    echoed = sse("error", {"type": "error", "error": {"type": "api_error", "message": f"bad key {PROXY_KEY}"}})
    upstream.enqueue(Stream([MESSAGE_START, echoed], done=False))
    raw = RAW.replace(b'"max_tokens":64', b'"max_tokens":64, "stream": true')
    response = post(proxy, raw)
    assert response.status_code == 200
    assert PROXY_KEY not in response.text
    assert "bad key [REDACTED]" in response.text
    assert response.text.startswith(MESSAGE_START)  # the rest passes through unchanged


def test_relayed_streams_return_their_connection_and_count_their_tokens(
    proxy: ProxyServer, upstream: FakeUpstream
) -> None:
    raw = RAW.replace(b'"max_tokens":64', b'"max_tokens":64, "stream": true')
    before = len(upstream.requests)
    ids = []
    for _ in range(3):
        upstream.enqueue(Stream(paced(EVENTS), done=False))
        response = post(proxy, raw)
        assert response.status_code == 200 and "message_stop" in response.text
        ids.append(response.headers["request-id"])
    connections = {r.connection for r in upstream.requests[before:]}
    assert len(connections) == 1, connections  # one pooled connection, reused by each stream
    deadline = time.monotonic() + 5
    while not all(any(r.get("request_id") == i for r in proxy.journal()) for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for record in (r for r in proxy.journal() if r.get("request_id") in ids):
        assert (record["input_tokens"], record["output_tokens"], record["stop_reason"]) == (12, 2, "end_turn")
