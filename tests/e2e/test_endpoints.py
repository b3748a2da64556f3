"""Every endpoint of the real server (the `claude-proxy` command under gunicorn) with `requests` and the SDK."""

from __future__ import annotations

import base64
import json
import re
import socket
import stat
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import requests

from claude_proxy import __version__
from tests.conftest import UPSTREAM_KEY, proxy_config
from tests.support.fixtures import CLAUDE_CODE_FIXTURES
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream, Json, Stream, chunk, closed_port, completion, usage_chunk

pytestmark = pytest.mark.e2e

MAX_BODY = 200_000
PROXY_KEY = "pk-e2e-proxy-key-13579"
FIXTURES = CLAUDE_CODE_FIXTURES
BODY = {"model": "claude-sonnet-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")
BASH_TOOL = {
    "name": "Bash",
    "description": "Executes a given bash command and returns its output. Use it for git, tests and builds.",
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command to execute"},
            "timeout": {"type": "number", "description": "Optional timeout in milliseconds (max 600000)"},
        },
        "required": ["command"],
    },
}


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream) -> Iterator[ProxyServer]:
    config = proxy_config(
        upstream,
        models={"claude-sonnet-5": "big-model"},
        server={"max_body_size": MAX_BODY, "log_bodies": True},
    )
    with ProxyServer(config) as server:
        yield server


DOWN: dict[str, int] = {}


@pytest.fixture(scope="module")
def down() -> Iterator[ProxyServer]:
    """A proxy whose provider refuses connections; only exact and haiku names are mapped."""
    DOWN["port"] = closed_port()
    base_url = f"http://gwuser:gw-pass-123@127.0.0.1:{DOWN['port']}/v1"
    config = {
        "provider": {"name": "custom", "base_url": base_url, "api_key": UPSTREAM_KEY},
        "models": {"claude-sonnet-5": "big-model", "claude-opus-4-8": "huge-model", "claude-haiku-*": "fast-model"},
        "upstream": {"max_retries": 1, "retry_base_delay": 0.01, "connect_timeout": 2.0},
    }
    with ProxyServer(config) as server:
        yield server


@pytest.fixture
def client(proxy: ProxyServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=20) as made:
        yield made  # closed: its kept-alive connections would hold the server's stop at the module's end


def journal_line(server: ProxyServer, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The journal record of one request (streams are written when they end: wait a little)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [r for r in server.journal() if r.get("request_id") == request_id]
        if lines or time.monotonic() > deadline:
            assert len(lines) == 1, f"{len(lines)} journal lines for {request_id}"
            return lines[0]
        time.sleep(0.05)


def assert_error(response: requests.Response, status: int, error_type: str) -> str:
    """An Anthropic error envelope with this status and type; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


# -- /v1/messages --------------------------------------------------------------------------------------------


def test_messages_with_beta_query(proxy: ProxyServer, upstream: FakeUpstream, client: anthropic.Anthropic) -> None:
    upstream.enqueue(Json(completion("beta ok", prompt_tokens=11, completion_tokens=3)))
    response = requests.post(proxy.url + "/v1/messages?beta=true", json=BODY, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "beta ok"}]
    assert upstream.requests[-1].path == "/v1/chat/completions"
    assert upstream.requests[-1].query == ""

    upstream.enqueue(Json(completion("sdk beta ok")))
    message = client.beta.messages.create(
        model="claude-sonnet-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}], betas=["some-beta"]
    )
    assert message.content[0].text == "sdk beta ok"  # type: ignore[union-attr]


# -- count_tokens ------------------------------------------------------------------------------------------------


def _count(client: anthropic.Anthropic, **kwargs: Any) -> int:
    kwargs.setdefault("messages", [{"role": "user", "content": "Hello, how are you today?"}])
    return client.messages.count_tokens(model="claude-sonnet-5", **kwargs).input_tokens


def _png(size: int) -> str:
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (size // 256)).decode()


def test_count_tokens_is_a_plausible_estimate(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    seen = len(upstream.requests)
    base = _count(client)
    assert 5 <= base <= 30

    with_system = _count(client, system="You are a careful assistant. " * 20)
    assert with_system >= base + 80

    with_tool = _count(client, tools=[BASH_TOOL])
    assert with_tool >= base + 40  # the definition costs tokens: name, description and schema

    output = "".join(f"line {i}: drwxr-xr-x  2 root root 4096 Nov 24 file_{i}.py\n" for i in range(60))
    conversation = [
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls -l"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": output}]},
    ]
    with_result = _count(client, tools=[BASH_TOOL], messages=conversation)
    assert with_result >= with_tool + 600  # ~60 lines of dense output
    assert with_result >= len(output) // 4  # code-like text is denser than chars/4

    def image_message(data: str) -> list[dict[str, Any]]:
        return [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
                    {"type": "text", "text": "Hello, how are you today?"},
                ],
            }
        ]

    small_image = _count(client, messages=image_message(_png(512)))
    big_image = _count(client, messages=image_message(_png(90_000)))
    assert 1400 <= small_image - base <= 1800  # a fixed cost per image, ~1600
    assert abs(big_image - small_image) <= 50  # not the size of the base64 text
    assert len(upstream.requests) == seen  # estimated locally


def test_count_tokens_of_a_real_claude_code_request(client: anthropic.Anthropic) -> None:
    fixture = json.loads((FIXTURES / "cc-2.1.197-tool-turn-1.json").read_text())
    fixture.pop("max_tokens")
    fixture.pop("stream", None)
    size = len(json.dumps(fixture))
    response = requests.post(
        client.base_url.__str__().rstrip("/") + "/v1/messages/count_tokens", json=fixture, timeout=10
    )
    assert response.status_code == 200, response.text
    tokens = response.json()["input_tokens"]
    assert size // 8 <= tokens <= size // 2


def test_count_tokens_validates(proxy: ProxyServer) -> None:
    response = requests.post(proxy.url + "/v1/messages/count_tokens", json={"model": "m", "messages": []}, timeout=10)
    assert assert_error(response, 400, "invalid_request_error") == "messages: Shorter than minimum length 1."


def test_head_api_hello_is_answered_at_once(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    seen = len(upstream.requests)
    started = time.monotonic()
    response = requests.head(proxy.url + "/api/hello", headers={"User-Agent": "Bun/1.4.6", "Accept": "*/*"}, timeout=5)
    assert response.status_code == 200 and response.content == b""
    assert time.monotonic() - started < 1.0
    assert len(upstream.requests) == seen  # nothing asked upstream


# -- models ----------------------------------------------------------------------------------------------------


def test_models_lists_mapped_names_then_the_upstreams(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    response = requests.get(proxy.url + "/v1/models", timeout=10)
    assert response.status_code == 200
    page = response.json()
    ids = [m["id"] for m in page["data"]]
    # mapped exact names first, the upstream's own list last (configured targets may sit between)
    assert ids[0] == "claude-sonnet-5"
    assert ids[-2:] == ["fake-model-1", "fake-model-2"]
    assert len(set(ids)) == len(ids)
    assert page["data"][0] == {
        "type": "model",
        "id": "claude-sonnet-5",
        "display_name": "claude-sonnet-5 → big-model on custom",  # which provider and model serve it
        "created_at": "1970-01-01T00:00:00Z",
    }
    assert (page["has_more"], page["first_id"], page["last_id"]) == (False, "claude-sonnet-5", "fake-model-2")
    assert all(m["type"] == "model" for m in page["data"])
    assert [m["display_name"] for m in page["data"][-2:]] == ["fake-model-1", "fake-model-2"]  # the upstream's own
    listing = [r for r in upstream.requests if r.path == "/v1/models"]
    assert listing and listing[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"

    limited = requests.get(proxy.url + "/v1/models?limit=1&after_id=claude-sonnet-5", timeout=10).json()
    assert [m["id"] for m in limited["data"]] == [ids[1]]
    assert limited["has_more"] is True
    before = requests.get(proxy.url + "/v1/models?before_id=fake-model-2", timeout=10).json()
    assert [m["id"] for m in before["data"]] == ids[:-1]
    bad = requests.get(proxy.url + "/v1/models?limit=lots", timeout=10)
    assert assert_error(bad, 400, "invalid_request_error") == "limit: must be an integer from 1 to 1000"


def test_models_with_the_sdk(client: anthropic.Anthropic) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "claude-sonnet-5" and ids[-2:] == ["fake-model-1", "fake-model-2"]
    assert client.models.retrieve("claude-sonnet-5").id == "claude-sonnet-5"


def test_model_by_id(proxy: ProxyServer, down: ProxyServer) -> None:
    for model_id in ("claude-sonnet-5", "fake-model-1"):
        response = requests.get(f"{proxy.url}/v1/models/{model_id}", timeout=10)
        assert response.status_code == 200
        assert response.json()["id"] == model_id
    response = requests.get(f"{down.url}/v1/models/claude-haiku-4-5", timeout=10)  # matched by a pattern
    assert (response.status_code, response.json()["id"]) == (200, "claude-haiku-4-5")
    response = requests.get(f"{down.url}/v1/models/gpt-unknown", timeout=10)
    assert "gpt-unknown" in assert_error(response, 404, "not_found_error")


def test_models_still_answer_when_the_upstream_is_down(down: ProxyServer) -> None:
    response = requests.get(down.url + "/v1/models", timeout=15)
    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert ids[:2] == ["claude-sonnet-5", "claude-opus-4-8"]
    assert "fake-model-1" not in ids
    health = requests.get(down.url + "/health", timeout=5)
    assert health.status_code == 200
    for body in (BODY, {**BODY, "stream": True}):
        failed = requests.post(down.url + "/v1/messages", json=body, timeout=15)
        message = assert_error(failed, 502, "api_error")
        assert message == f"custom: cannot reach 127.0.0.1:{DOWN['port']}: connection refused"
        assert UPSTREAM_KEY not in failed.text and "gw-pass-123" not in failed.text


# -- health, root, unknown routes ---------------------------------------------------------------------------


def test_health(proxy: ProxyServer) -> None:
    response = requests.get(proxy.url + "/health", timeout=5)
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["version"] == __version__
    assert health["provider"] == "custom"
    assert health["format"] == "openai"
    assert health["api_key_configured"] is True
    assert UPSTREAM_KEY not in response.text and "sk-" not in response.text


def test_root_get_and_head(proxy: ProxyServer) -> None:
    get = requests.get(proxy.url + "/", timeout=5)
    assert get.status_code == 200
    assert get.json()["status"] == "ok"
    head = requests.head(proxy.url + "/", timeout=5)
    assert head.status_code == 200
    assert head.content == b""
    assert REQUEST_ID.match(head.headers["request-id"])


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/nothing"), ("POST", "/v2/messages"), ("GET", "/favicon.ico")]
)
def test_unknown_route_is_a_404_envelope(proxy: ProxyServer, method: str, path: str) -> None:
    response = requests.request(method, proxy.url + path, timeout=5)
    assert path in assert_error(response, 404, "not_found_error")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/messages"), ("PUT", "/v1/messages/count_tokens"), ("POST", "/v1/models"), ("DELETE", "/health")],
)
def test_wrong_method_is_an_envelope(proxy: ProxyServer, method: str, path: str) -> None:
    response = requests.request(method, proxy.url + path, timeout=5)
    message = assert_error(response, 405, "invalid_request_error")
    assert method in message and path in message


# -- bad bodies ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"model": "m", "max_tokens": 5, ', "body: not valid JSON: "),
        (b'{"model": "caf\xe9", "max_tokens": 5, "messages": []}', "body: not valid UTF-8 (byte 14)"),
        (b"", "body: the request body is empty; expected a JSON object"),
        (b"[1, 2, 3]", "body: The request body must be a JSON object."),
        (b'"just a string"', "body: The request body must be a JSON object."),
        (json.dumps({**BODY, "max_tokens": None}).encode(), "max_tokens: Field may not be null."),
        (
            json.dumps({"model": "m", "messages": BODY["messages"]}).encode(),
            "max_tokens: Missing data for required field.",
        ),
        (
            json.dumps(
                {**BODY, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "nope"}]}]}
            ).encode(),
            "messages.0.content.1.type: Unknown content block type 'nope'",
        ),
    ],
    ids=["truncated", "latin1", "empty", "array", "string", "null", "missing", "block-type"],
)
def test_bad_bodies_are_400_with_the_field_path(
    proxy: ProxyServer, upstream: FakeUpstream, data: bytes, expected: str
) -> None:
    seen = len(upstream.requests)
    response = requests.post(
        proxy.url + "/v1/messages", data=data, headers={"content-type": "application/json"}, timeout=10
    )
    assert assert_error(response, 400, "invalid_request_error").startswith(expected)
    assert len(upstream.requests) == seen


def test_a_body_over_max_body_size_is_413(proxy: ProxyServer) -> None:
    big = {**BODY, "messages": [{"role": "user", "content": "x" * (MAX_BODY + 10)}]}
    response = requests.post(proxy.url + "/v1/messages", json=big, timeout=10)
    assert str(MAX_BODY) in assert_error(response, 413, "request_too_large")
    response = requests.post(proxy.url + "/v1/messages/count_tokens", json=big, timeout=10)
    assert_error(response, 413, "request_too_large")
    # just under the limit is fine
    fits = {**BODY, "messages": [{"role": "user", "content": "x" * (MAX_BODY - 200)}]}
    assert requests.post(proxy.url + "/v1/messages/count_tokens", json=fits, timeout=10).status_code == 200


def test_a_chunked_body_over_max_body_size_is_413(proxy: ProxyServer) -> None:
    def pieces() -> Iterator[bytes]:
        yield b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "'
        for _ in range(MAX_BODY // 10_000 + 5):
            yield b"y" * 10_000
        yield b'"}]}'

    response = requests.post(
        proxy.url + "/v1/messages", data=pieces(), headers={"content-type": "application/json"}, timeout=10
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "request_too_large")


def test_a_chunked_body_under_the_limit_works(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("chunked ok")))
    encoded = json.dumps(BODY).encode()
    response = requests.post(
        proxy.url + "/v1/messages",
        data=iter([encoded[:10], encoded[10:]]),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "chunked ok"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(proxy: ProxyServer) -> None:
    """Content-Length alone decides: the proxy answers without waiting for a body that never comes."""
    host, port = "127.0.0.1", proxy.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY * 100}\r\n\r\n{{".encode()
        )
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413 ")


# -- request ids ----------------------------------------------------------------------------------------------


def test_every_response_has_a_request_id(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("ok")))
    responses_ = [
        requests.post(proxy.url + "/v1/messages", json=BODY, timeout=10),
        requests.post(proxy.url + "/v1/messages", data=b"{", timeout=10),
        requests.post(
            proxy.url + "/v1/messages/count_tokens", json={"model": "m", "messages": BODY["messages"]}, timeout=10
        ),
        requests.get(proxy.url + "/v1/models", timeout=10),
        requests.get(proxy.url + "/health", timeout=10),
        requests.get(proxy.url + "/", timeout=10),
        requests.get(proxy.url + "/nowhere", timeout=10),
        requests.get(proxy.url + "/v1/messages", timeout=10),
    ]
    ids = [r.headers.get("request-id", "") for r in responses_]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    echoed = requests.get(proxy.url + "/health", headers={"x-request-id": "trace-abc_123"}, timeout=5)
    assert echoed.headers["request-id"] == "trace-abc_123"
    unsafe = requests.get(proxy.url + "/health", headers={"x-request-id": "bad id\twith spaces"}, timeout=5)
    assert REQUEST_ID.match(unsafe.headers["request-id"])


# -- the request log ---------------------------------------------------------------------------------------------


def test_journal_records_each_request(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("logged", prompt_tokens=42, completion_tokens=7)))
    ok = requests.post(proxy.url + "/v1/messages", json=BODY, timeout=10)
    assert ok.status_code == 200
    record = journal_line(proxy, ok.headers["request-id"])
    assert record["client_model"] == "claude-sonnet-5"
    assert record["upstream_model"] == "big-model"
    assert record["stream"] is False
    assert record["status"] == 200
    assert isinstance(record["latency_ms"], (int, float)) and record["latency_ms"] >= 0
    assert (record["input_tokens"], record["output_tokens"]) == (42, 7)
    assert record.get("error_type") is None

    upstream.enqueue(Stream([chunk("str"), chunk("eamed", finish_reason="stop"), usage_chunk(12, 2)]))
    streamed = requests.post(proxy.url + "/v1/messages", json={**BODY, "stream": True}, timeout=10)
    assert streamed.status_code == 200 and "message_stop" in streamed.text
    record = journal_line(proxy, streamed.headers["request-id"])
    assert (record["stream"], record["status"], record["input_tokens"], record["output_tokens"]) == (True, 200, 12, 2)
    assert record["upstream_model"] == "big-model"

    upstream.enqueue(
        *[Json({"error": {"message": "Rate limit reached", "type": "rate_limit"}}, status=429)] * 3,
    )
    limited = requests.post(proxy.url + "/v1/messages", json={**BODY, "model": "claude-haiku-4-5"}, timeout=10)
    assert limited.status_code == 429
    record = journal_line(proxy, limited.headers["request-id"])
    assert (record["status"], record["error_type"]) == (429, "rate_limit_error")
    assert (record["client_model"], record["upstream_model"]) == ("claude-haiku-4-5", "fast-model")

    invalid = requests.post(proxy.url + "/v1/messages", json={**BODY, "max_tokens": 0}, timeout=10)
    record = journal_line(proxy, invalid.headers["request-id"])
    assert (record["status"], record["error_type"]) == (400, "invalid_request_error")


def test_journal_file_is_private_and_never_holds_a_key(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    assert stat.S_IMODE(proxy.log_file.stat().st_mode) == 0o600
    leaky = {
        **BODY,
        "messages": [{"role": "user", "content": f"my key is {UPSTREAM_KEY} and sk-ant-api03-abcdefghijklmnop"}],
    }
    upstream.enqueue(Json(completion(f"you said {UPSTREAM_KEY}")))
    response = requests.post(proxy.url + "/v1/messages", json=leaky, timeout=10)
    assert response.status_code == 200
    record = journal_line(proxy, response.headers["request-id"])
    assert "request_body" in record  # log_bodies = true
    assert "[REDACTED]" in json.dumps(record)
    text = proxy.log_file.read_text()
    assert UPSTREAM_KEY not in text
    assert "sk-ant-api03-abcdefghijklmnop" not in text


def test_an_upstream_error_echoing_the_key_does_not_leak_it(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Json(
            {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "invalid_request_error"}},
            status=401,
        )
    )
    response = requests.post(proxy.url + "/v1/messages", json=BODY, timeout=10)
    message = assert_error(response, 401, "authentication_error")
    assert message.startswith("custom: Incorrect API key provided: ")
    assert UPSTREAM_KEY not in response.text
    record = journal_line(proxy, response.headers["request-id"])
    assert UPSTREAM_KEY not in json.dumps(record)
    assert UPSTREAM_KEY not in proxy.log_file.read_text()


def nested_tool_use_body(depth: int) -> bytes:
    deep = '{"x":' * depth + "1" + "}" * depth
    return (
        '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},'
        '{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":' + deep + "}]},"
        '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]}'
    ).encode()


def test_json_nested_past_orjsons_writer_but_within_the_limit_is_served(proxy: ProxyServer) -> None:
    raw = nested_tool_use_body(300)  # orjson writes 254 levels; the standard library takes over
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = requests.post(proxy.url + path, data=raw, headers={"content-type": "application/json"}, timeout=10)
        assert response.status_code == 200, response.text
    assert response.json()["input_tokens"] > 300


def test_json_nested_deeper_than_python_recursion_is_a_400(proxy: ProxyServer) -> None:
    deep = '{"x":' * 1000 + "1" + "}" * 1000  # orjson reads it; deeper than the proxy's limit on any Python
    raw = (
        '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},'
        '{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":' + deep + "}]},"
        '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]}'
    ).encode()
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = requests.post(proxy.url + path, data=raw, headers={"content-type": "application/json"}, timeout=10)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == {
            "type": "invalid_request_error",
            "message": "body: JSON nested too deeply to process",
        }


def test_a_400_naming_the_max_tokens_limit_is_retried_clamped_and_remembered(
    proxy: ProxyServer, upstream: FakeUpstream
) -> None:
    too_many = Json(
        {
            "error": {
                "message": "max_tokens is too large: 128000. This model supports at most 16384 completion tokens",
                "type": "invalid_request_error",
            }
        },
        status=400,
    )
    upstream.enqueue(too_many, Json(completion("clamped")))
    before = len(upstream.requests)
    body = {"model": "claude-sonnet-5", "max_tokens": 128000, "messages": [{"role": "user", "content": "x"}]}
    response = requests.post(proxy.url + "/v1/messages", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "clamped"
    sent = [r.json["max_tokens"] for r in upstream.requests[before:]]
    assert sent == [128000, 16384]
    record = next(r for r in proxy.journal() if r.get("request_id") == response.headers["request-id"])
    assert record["adjusted"] == {"max_tokens_limit": 16384}
    # the worker remembers: the next request is clamped before it is sent (one worker in this test server)
    upstream.enqueue(Json(completion("first time")))
    assert requests.post(proxy.url + "/v1/messages", json=body, timeout=10).status_code == 200
    assert upstream.requests[-1].json["max_tokens"] == 16384


def test_a_400_that_names_nothing_fixable_is_not_retried(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json({"error": {"message": "model does not exist"}}, status=400))
    before = len(upstream.requests)
    body = {"model": "claude-sonnet-5", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
    response = requests.post(proxy.url + "/v1/messages", json=body, timeout=10)
    assert response.status_code == 400
    assert len(upstream.requests) - before == 1
