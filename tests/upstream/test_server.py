"""Tests for the scriptable fake OpenAI upstream (tests/support/upstream.py), using plain requests and raw sockets."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from tests.support.upstream import (
    Close,
    FakeUpstream,
    Hang,
    HangBeforeHeaders,
    Json,
    RecordedRequest,
    Reset,
    ResetBeforeHeaders,
    Sleep,
    Stream,
    Text,
    chunk,
    closed_port,
    completion,
    tool_call_delta,
    usage_chunk,
)

pytestmark = pytest.mark.timeout(10)

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello world"}]}


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def sse_events(resp: requests.Response) -> list[str]:
    """The ``data:`` payloads of an SSE response."""
    return [line[len("data: ") :] for line in resp.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def raw_request(port: int, path: str = "/v1/chat/completions", body: bytes = b"{}", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while part := sock.recv(65536):
        data += part
    return data


def split_head(data: bytes) -> tuple[str, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode(), body


# --- default handler -------------------------------------------------------------------------------------------------


def test_default_non_streaming_echo(up: FakeUpstream) -> None:
    resp = requests.post(f"{up.url}/chat/completions", json=CHAT, timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello world"}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_default_echo_uses_last_user_text_parts(up: FakeUpstream) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ignored"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]},
    ]
    resp = requests.post(f"{up.url}/chat/completions", json={"model": "m", "messages": messages}, timeout=5)
    assert resp.json()["choices"][0]["message"]["content"] == "echo: second"


def test_default_streaming_echo(up: FakeUpstream) -> None:
    with requests.post(f"{up.url}/chat/completions", json={**CHAT, "stream": True}, stream=True, timeout=5) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Transfer-Encoding"] == "chunked"
        events = sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(text_chunks) >= 2
    assert "".join(c["choices"][0]["delta"]["content"] for c in text_chunks) == "echo: hello world"
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert set(usage["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_default_models_and_404(up: FakeUpstream) -> None:
    models = requests.get(f"{up.url}/models", timeout=5).json()
    assert models == {
        "object": "list",
        "data": [{"id": "fake-model-1", "object": "model"}, {"id": "fake-model-2", "object": "model"}],
    }
    missing = requests.get(f"{up.url}/nope", timeout=5)
    assert missing.status_code == 404
    assert "error" in missing.json()


def test_handler_override(up: FakeUpstream) -> None:
    seen: list[RecordedRequest] = []

    def handler(req: RecordedRequest) -> Json:
        seen.append(req)
        return Json({"path": req.path}, status=201)

    up.handler = handler
    resp = requests.get(f"{up.url}/anything", timeout=5)
    assert resp.status_code == 201
    assert resp.json() == {"path": "/v1/anything"}
    assert [r.path for r in seen] == ["/v1/anything"]


def test_handler_exception_becomes_500_and_is_recorded(up: FakeUpstream) -> None:
    def broken(req: RecordedRequest) -> Json:
        raise RuntimeError("boom")

    up.handler = broken
    resp = requests.get(f"{up.url}/models", timeout=5)
    assert resp.status_code == 500
    assert len(up.errors) == 1
    assert "boom" in up.errors[0]


# --- recording and scripting -----------------------------------------------------------------------------------------


def test_requests_are_recorded(up: FakeUpstream) -> None:
    t0 = time.monotonic()
    requests.post(
        f"{up.url}/chat/completions?api-version=1",
        json=CHAT,
        headers={"Authorization": "Bearer sk-test", "X-Custom": "yes"},
        timeout=5,
    )
    requests.get(f"{up.url}/models", timeout=5)
    assert up.wait_for_requests(2, timeout=1)
    first, second = up.requests
    assert (first.index, first.method, first.path, first.query) == (0, "POST", "/v1/chat/completions", "api-version=1")
    assert first.params == {"api-version": ["1"]}
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.headers["Authorization"] == "Bearer sk-test"
    assert "x-custom" in first.headers
    assert first.json == CHAT
    assert json.loads(first.body) == CHAT
    assert t0 <= first.time <= second.time <= time.monotonic()
    assert (second.method, second.path, second.body, second.json) == ("GET", "/v1/models", b"", None)
    assert not up.wait_for_requests(3, timeout=0.05)


def test_enqueue_is_fifo_then_default(up: FakeUpstream) -> None:
    up.enqueue(Json({"n": 1}), Text("two", status=503, headers={"Retry-After": "0"}), Json(completion("three")))
    url = f"{up.url}/chat/completions"
    first = requests.post(url, json=CHAT, timeout=5)
    second = requests.post(url, json=CHAT, timeout=5)
    third = requests.post(url, json=CHAT, timeout=5)
    fourth = requests.post(url, json=CHAT, timeout=5)
    assert first.json() == {"n": 1}
    assert (second.status_code, second.text, second.headers["Retry-After"]) == (503, "two", "0")
    assert second.headers["Content-Type"] == "text/plain"
    assert third.json()["choices"][0]["message"]["content"] == "three"
    assert fourth.json()["choices"][0]["message"]["content"] == "echo: hello world"
    assert up.pending == 0


def test_enqueue_path_filter_and_callables(up: FakeUpstream) -> None:
    up.enqueue(lambda req: Json({"echo": req.json["model"]}), path="/chat/completions")
    assert requests.get(f"{up.url}/models", timeout=5).json()["object"] == "list"
    assert up.pending == 1
    assert requests.post(f"{up.url}/chat/completions", json=CHAT, timeout=5).json() == {"echo": "gpt-test"}


def test_builders() -> None:
    c = chunk("hi", reasoning="think", tool_calls=[tool_call_delta(0, id="call_1", name="f", arguments="{")])
    delta = c["choices"][0]["delta"]
    assert delta == {
        "content": "hi",
        "reasoning_content": "think",
        "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{"}}],
    }
    assert chunk(finish_reason="length")["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    assert chunk(system_fingerprint="fp")["system_fingerprint"] == "fp"
    u = usage_chunk(7, 3, cached_tokens=2)
    assert u["choices"] == []
    assert u["usage"]["total_tokens"] == 10
    assert u["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    body = completion(tool_calls=[{"id": "c", "type": "function"}], finish_reason="tool_calls")
    assert body["choices"][0]["message"]["content"] is None
    assert body["choices"][0]["finish_reason"] == "tool_calls"


# --- streaming on the wire -------------------------------------------------------------------------------------------


def test_chunked_stream_arrives_incrementally(up: FakeUpstream) -> None:
    up.enqueue(Stream([chunk("first"), Sleep(1.0), chunk("second")]))
    t0 = time.monotonic()
    with requests.post(f"{up.url}/chat/completions", json=CHAT, stream=True, timeout=5) as resp:
        parts = resp.iter_content(chunk_size=None)
        first = next(parts)
        first_at = time.monotonic() - t0
        rest = b"".join(parts)
        total = time.monotonic() - t0
    assert b'"first"' in first
    assert b"second" not in first
    assert total - first_at >= 0.7  # the first read did not wait for the pause; the rest came after it
    assert b'"second"' in rest
    assert rest.endswith(b"data: [DONE]\n\n")


def test_chunked_framing_raw_items(up: FakeUpstream) -> None:
    up.enqueue(Stream([": comment\n\n", "data:{bad json\n\n", b"event: x\ndata: {}\n\n", ""], done=False))
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(raw_request(up.port, extra="Connection: close\r\n"))
        head, body = split_head(read_until_eof(sock))
    assert head.startswith("HTTP/1.1 200 OK")
    assert "Transfer-Encoding: chunked" in head
    expected = [b": comment\n\n", b"data:{bad json\n\n", b"event: x\ndata: {}\n\n"]
    assert body == b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in expected) + b"0\r\n\r\n"


def test_unchunked_stream_closes_connection(up: FakeUpstream) -> None:
    up.enqueue(Stream([chunk("a")], chunked=False, headers={"X-Extra": "1"}))
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(raw_request(up.port))
        head, body = split_head(read_until_eof(sock))
    assert "Connection: close" in head
    assert "Transfer-Encoding" not in head
    assert "X-Extra: 1" in head
    assert body == b"data: " + json.dumps(chunk("a"), separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n"


def test_close_truncates_chunked_body(up: FakeUpstream) -> None:
    up.enqueue(Stream([chunk("a"), Close()]))
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(raw_request(up.port))
        _, body = split_head(read_until_eof(sock))
    assert b'"a"' in body
    assert not body.endswith(b"0\r\n\r\n")
    assert b"[DONE]" not in body
    up.enqueue(Stream([chunk("a"), Close()]))
    with (
        pytest.raises(requests.exceptions.ChunkedEncodingError),
        requests.post(f"{up.url}/chat/completions", json=CHAT, stream=True, timeout=5) as resp,
    ):
        resp.content  # noqa: B018


def test_stream_delay(up: FakeUpstream) -> None:
    up.enqueue(Stream([chunk("a"), chunk("b")], delay=0.05))
    t0 = time.monotonic()
    resp = requests.post(f"{up.url}/chat/completions", json=CHAT, timeout=5)
    assert time.monotonic() - t0 >= 0.15  # 2 items + [DONE]
    assert sse_events(resp)[-1] == "[DONE]"


# --- failures --------------------------------------------------------------------------------------------------------


def test_reset_mid_stream_is_a_connection_error(up: FakeUpstream) -> None:
    up.enqueue(Stream([chunk("a"), Sleep(0.05), Reset()]))
    with (
        pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)),
        requests.post(f"{up.url}/chat/completions", json=CHAT, stream=True, timeout=5) as resp,
    ):
        for _ in resp.iter_content(chunk_size=None):
            pass
    up.enqueue(Stream([chunk("a"), Reset()]))
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(raw_request(up.port))
        with pytest.raises(ConnectionResetError):
            read_until_eof(sock)


def test_reset_before_headers(up: FakeUpstream) -> None:
    up.enqueue(ResetBeforeHeaders())
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{up.url}/chat/completions", json=CHAT, timeout=5)
    assert up.wait_for_requests(1, timeout=1)


def test_hang_then_client_close_is_recorded(up: FakeUpstream) -> None:
    up.enqueue(Stream([chunk("a"), Hang()]))
    resp = requests.post(f"{up.url}/chat/completions", json=CHAT, stream=True, timeout=5)
    parts = resp.iter_content(chunk_size=None)  # keep a reference: a collected generator closes the connection
    assert b'"a"' in next(parts)
    assert not up.wait_for_disconnect(timeout=0.1)
    closed_at = time.monotonic()
    resp.close()
    assert up.wait_for_disconnect(timeout=2)
    [(index, at)] = up.disconnects
    assert index == 0
    assert closed_at <= at < closed_at + 0.5
    assert up.wait_idle(timeout=2)
    assert up.active_connections == 0
    assert not up.wait_for_disconnect(timeout=0.05)  # already consumed


def test_sleep_notices_client_disconnect(up: FakeUpstream) -> None:
    up.enqueue(Stream([Sleep(5), chunk("never")]))
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(raw_request(up.port))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert up.wait_for_disconnect(timeout=1)
    assert up.disconnects[0][0] == 0


def test_hang_before_headers_triggers_read_timeout(up: FakeUpstream) -> None:
    up.enqueue(HangBeforeHeaders())
    t0 = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{up.url}/chat/completions", json=CHAT, timeout=(1, 0.2))
    assert 0.2 <= time.monotonic() - t0 < 1
    assert up.wait_for_disconnect(timeout=2)


def test_hang_before_headers_with_then(up: FakeUpstream) -> None:
    up.enqueue(HangBeforeHeaders(0.1, then=Json({"late": True})))
    t0 = time.monotonic()
    assert requests.get(f"{up.url}/models", timeout=5).json() == {"late": True}
    assert time.monotonic() - t0 >= 0.1


def test_malformed_request_gets_400_and_server_survives(up: FakeUpstream) -> None:
    for garbage in (
        b"GARBAGE\r\n\r\n",
        b"POST /x HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
            sock.sendall(garbage)
            head, _ = split_head(read_until_eof(sock))
        assert head.startswith("HTTP/1.1 400")
        assert "Connection: close" in head
    assert requests.get(f"{up.url}/models", timeout=5).status_code == 200
    assert up.errors == []


def test_stop_is_fast_with_hanging_handlers() -> None:
    with FakeUpstream() as up:
        up.enqueue(HangBeforeHeaders(), Stream([chunk("a"), Hang()]))
        a = socket.create_connection(("127.0.0.1", up.port), timeout=5)
        b = socket.create_connection(("127.0.0.1", up.port), timeout=5)
        a.sendall(raw_request(up.port))
        assert up.wait_for_requests(1, timeout=1)
        b.sendall(raw_request(up.port))
        assert up.wait_for_requests(2, timeout=1)
        assert b.recv(65536).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 5  # hanging handlers would hold it forever; generous for a loaded machine
    assert up.active_connections == 0
    assert up.disconnects == []  # server-side stop is not a client disconnect
    with a, b:
        a.settimeout(1)
        b.settimeout(1)
        assert read_until_eof(a) == b""  # closed without a response
        read_until_eof(b)  # the rest of the stream, then EOF (no hang)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", up.port), timeout=1)


# --- connections -----------------------------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(up: FakeUpstream) -> None:
    with requests.Session() as session:
        session.post(f"{up.url}/chat/completions", json=CHAT, timeout=5).raise_for_status()
        with session.post(f"{up.url}/chat/completions", json={**CHAT, "stream": True}, stream=True, timeout=5) as r:
            assert sse_events(r)[-1] == "[DONE]"
        session.get(f"{up.url}/models", timeout=5).raise_for_status()
        assert up.connections_total == 1
        assert up.active_connections == 1
        assert len({r.connection for r in up.requests}) == 1
    # No wait_idle() here: urllib3 2.x does not close pooled sockets on Session.close() (only on garbage collection).


def test_pipelined_requests_on_raw_socket(up: FakeUpstream) -> None:
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        body = json.dumps(CHAT).encode()
        sock.sendall(raw_request(up.port, body=body) + raw_request(up.port, body=body, extra="Connection: close\r\n"))
        data = read_until_eof(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.count(b"echo: hello world") == 2
    assert up.connections_total == 1
    assert [r.connection for r in up.requests] == [1, 1]
    assert up.wait_idle(timeout=1)


def test_chunked_request_body_is_decoded(up: FakeUpstream) -> None:
    payload = json.dumps(CHAT).encode()
    body = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, payload[:5], len(payload) - 5, payload[5:])
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(head + body)
        assert b"echo: hello world" in read_until_eof(sock)
    assert up.requests[0].json == CHAT


def test_closed_port_refuses() -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
