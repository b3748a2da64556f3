"""The proxy's own door: proxy keys, exposure, CORS, body limit, headers that never cross,
and keys that never leak (responses, events, /health, the journal, the console).

Most checks run the real server against a real local upstream; the cheap, many-case ones use
the Flask test client with the same config.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from claude_proxy.cli.main import check_exposure
from claude_proxy.config.loader import ConfigError, load_config
from claude_proxy.pipeline.journal import Journal, redact
from claude_proxy.web import app as app_module
from claude_proxy.web.app import create_app
from tests.conftest import UPSTREAM_KEY, proxy_config
from tests.support.grammar import check_grammar
from tests.support.proxy_server import CLOSE, ProxyServer, write_config
from tests.support.sse_client import assert_envelope, message_body, parse_sse, stream_events, text_of
from tests.support.upstream import FakeUpstream, Json, Stream, chunk, completion, free_port

PROXY_KEY = "cp-proxy-key-0123456789abcdef"
OTHER_KEY = "cp-second-key-fedcba9876543210"
URL_SECRET = "urlsecret4242"
KEYED = {"x-api-key": PROXY_KEY}


def flask_client(upstream: FakeUpstream, env: dict[str, str] | None = None, **server: Any) -> Any:
    config = proxy_config(upstream)
    config["server"] = {**config["server"], **server}
    return create_app(load_config(data=config, env=env or {})).test_client()


@pytest.fixture(scope="module")
def keyed(upstream: FakeUpstream) -> Iterator[ProxyServer]:
    """The real server with proxy keys, and a base URL that carries credentials of its own."""
    config = proxy_config(upstream, server={"auth_keys": [PROXY_KEY, OTHER_KEY]})
    config["provider"] = {**config["provider"], "base_url": f"http://user:{URL_SECRET}@127.0.0.1:{upstream.port}/v1"}
    with ProxyServer(config) as server:
        yield server


# -- proxy keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-api-key": "wrong"}, 401),
        ({"x-api-key": PROXY_KEY[:-1]}, 401),
        ({"x-api-key": PROXY_KEY + "x"}, 401),
        ({"x-api-key": PROXY_KEY.upper()}, 401),
        ({"x-api-key": ""}, 401),
        ({"authorization": f"Bearer {PROXY_KEY[:-1]}"}, 401),
        ({"authorization": PROXY_KEY}, 401),
        ({"authorization": f"Basic {PROXY_KEY}"}, 401),
        ({"authorization": "Bearer "}, 401),
        ({"x-api-key": f"{PROXY_KEY},{OTHER_KEY}"}, 401),
        ({"x-api-key": PROXY_KEY}, 200),
        ({"x-api-key": OTHER_KEY}, 200),
        ({"authorization": f"Bearer {PROXY_KEY}"}, 200),
        ({"authorization": f"bearer   {OTHER_KEY} "}, 200),
        ({"x-api-key": "sk-ant-the-users-own-key", "authorization": f"Bearer {PROXY_KEY}"}, 200),
        ({"x-api-key": PROXY_KEY, "authorization": "Bearer something-else"}, 200),
    ],
)
def test_proxy_keys(upstream: FakeUpstream, headers: dict[str, str], status: int) -> None:
    client = flask_client(upstream, auth_keys=[PROXY_KEY, OTHER_KEY])
    response = client.post("/v1/messages", json=message_body(), headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 401:
        body = response.get_json()
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
        assert PROXY_KEY not in response.get_data(as_text=True) and OTHER_KEY not in response.get_data(as_text=True)
    else:
        assert response.get_json()["content"][0]["text"] == "echo: hello there"


def test_a_refused_proxy_key_is_journalled_and_counted_without_the_key(keyed: ProxyServer) -> None:
    """A wrong or missing static key: 401 not to be retried, one journal line and a request metric like any other
    answer (operators see who is knocking), and the presented key nowhere on disk."""
    wrong = "cp-wrong-key-5a5a5a5a5a5a5a5a"
    answers = [requests.post(keyed.url + path, json=message_body(), headers=headers, timeout=10)
               for path, headers in (("/v1/messages", {"x-api-key": wrong}), ("/v1/messages/count_tokens", {}))]
    for answer in answers:
        assert answer.status_code == 401 and answer.headers["x-should-retry"] == "false"
    ids = {a.headers["request-id"]: a for a in answers}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len([x for x in keyed.journal() if x.get("request_id") in ids]) < 2:
        time.sleep(0.05)
    lines = {x["request_id"]: x for x in keyed.journal() if x.get("request_id") in ids}
    assert {(x["endpoint"], x["status"], x["error_type"]) for x in lines.values()} == {
        ("messages", 401, "authentication_error"), ("count_tokens", 401, "authentication_error")}
    assert wrong not in keyed.log_file.read_text()
    metrics = requests.get(keyed.url + "/metrics", headers=KEYED, timeout=10).text
    refused = [m for m in metrics.splitlines() if m.startswith("claude_proxy_requests_total{")
               and 'status="401"' in m and 'endpoint="messages"' in m]
    assert refused and float(refused[0].rsplit(" ", 1)[1]) >= 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/claude-sonnet-5"),
        ("GET", "/no/such/route"),
        ("DELETE", "/v1/messages"),
    ],
)
def test_every_endpoint_but_health_is_behind_the_keys(upstream: FakeUpstream, method: str, path: str) -> None:
    client = flask_client(upstream, auth_keys=[PROXY_KEY])
    response = client.open(path, method=method, json=message_body())
    assert response.status_code == 401 and response.get_json()["error"]["type"] == "authentication_error"
    assert client.open(path, method=method, json=message_body(), headers=KEYED).status_code != 401


def test_health_and_root_stay_open(upstream: FakeUpstream) -> None:
    client = flask_client(upstream, auth_keys=[PROXY_KEY])
    assert client.get("/health").status_code == 200
    assert client.get("/").status_code == 200
    assert client.head("/").status_code == 200
    # Claude Code 2.1.332's reachability probe: open, empty, never a 401 that would look like a bad key
    hello = client.head("/api/hello")
    assert (hello.status_code, hello.get_data()) == (200, b"")
    assert client.get("/api/hello").status_code == 200
    assert client.post("/api/hello").status_code == 405


def test_keys_from_the_environment(upstream: FakeUpstream) -> None:
    client = flask_client(upstream, env={"CLAUDE_PROXY_AUTH_KEYS": f" {PROXY_KEY} , {OTHER_KEY},"})
    assert client.post("/v1/messages", json=message_body()).status_code == 401
    for key in (PROXY_KEY, OTHER_KEY):
        assert client.post("/v1/messages", json=message_body(), headers={"x-api-key": key}).status_code == 200


def test_no_keys_configured_means_an_open_door(upstream: FakeUpstream) -> None:
    assert flask_client(upstream).post("/v1/messages", json=message_body()).status_code == 200


def test_every_key_is_compared_in_constant_time(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: a wrong key and a right one cost the same comparisons, all via hmac.compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    client = flask_client(upstream, auth_keys=[PROXY_KEY, OTHER_KEY])
    counts = []
    for headers in ({"x-api-key": "nope"}, {"x-api-key": PROXY_KEY}, {"authorization": f"Bearer {OTHER_KEY}"}):
        calls.clear()
        client.post("/v1/messages/count_tokens", json=message_body(), headers=headers)
        counts.append(len(calls))
        assert {b for _, b in calls} == {PROXY_KEY.encode(), OTHER_KEY.encode()}
    assert counts[0] == counts[1] == counts[2] >= 2


def test_the_proxy_key_never_goes_upstream(upstream: FakeUpstream) -> None:
    client = flask_client(upstream, auth_keys=[PROXY_KEY])
    client.post("/v1/messages", json=message_body(), headers={"authorization": f"Bearer {PROXY_KEY}"})
    sent = upstream.last_request.headers
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}" and "x-api-key" not in sent
    # With the client's own provider key in use, the proxy key is still not what travels.
    config = proxy_config(upstream, server={"auth_keys": [PROXY_KEY]})
    config["provider"] = {"name": "custom", "base_url": upstream.url, "api_key_from_client": True}
    client = create_app(load_config(data=config, env={})).test_client()
    headers = {"x-api-key": PROXY_KEY, "authorization": "Bearer sk-the-users-own-provider-key"}
    assert client.post("/v1/messages", json=message_body(), headers=headers).status_code == 200
    assert upstream.last_request.headers["authorization"] == "Bearer sk-the-users-own-provider-key"
    assert PROXY_KEY not in json.dumps(dict(upstream.last_request.headers))


# -- exposure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "::1", "localhost"])
def test_loopback_needs_no_keys(upstream: FakeUpstream, host: str) -> None:
    check_exposure(load_config(data={**proxy_config(upstream), "host": host}, env={}))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.2", "example.com", ""])
def test_other_addresses_need_keys_or_an_explicit_opt_out(upstream: FakeUpstream, host: str) -> None:
    with pytest.raises(ConfigError, match="refusing to listen"):
        check_exposure(load_config(data={**proxy_config(upstream), "host": host}, env={}))
    check_exposure(load_config(data={**proxy_config(upstream), "host": host}, env={"CLAUDE_PROXY_AUTH_KEYS": "k" * 20}))
    opted_out = proxy_config(upstream, server={"allow_unauthenticated": True})
    check_exposure(load_config(data={**opted_out, "host": host}, env={}))


def test_the_command_refuses_a_public_bind_without_keys(upstream: FakeUpstream, tmp_path: Any) -> None:
    port = free_port()
    path = write_config(tmp_path / "c.toml", proxy_config(upstream))
    env = {k: v for k, v in os.environ.items() if k != "CLAUDE_PROXY_AUTH_KEYS"}
    done = subprocess.run(
        [sys.executable, "-m", "claude_proxy", "-c", str(path), "--host", "0.0.0.0", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without proxy keys" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- CORS -------------------------------------------------------------------------------------


def test_no_cors_by_default(upstream: FakeUpstream) -> None:
    client = flask_client(upstream)
    origin = {"origin": "https://evil.example"}
    response = client.post("/v1/messages", json=message_body(), headers=origin)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = client.options("/v1/messages", headers={**origin, "access-control-request-method": "POST"})
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers.keys())


def test_cors_allow_list(upstream: FakeUpstream) -> None:
    client = flask_client(upstream, cors_origins=["https://app.example"], auth_keys=[PROXY_KEY])
    ask = {"access-control-request-method": "POST", "access-control-request-headers": "x-api-key, content-type"}
    good = client.options("/v1/messages", headers={"origin": "https://app.example", **ask})
    assert good.status_code == 204  # a preflight carries no credentials, so it is answered without one
    assert good.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in good.headers["access-control-allow-methods"] and good.headers["vary"] == "Origin"
    bad = client.options("/v1/messages", headers={"origin": "https://evil.example", **ask})
    assert "access-control-allow-origin" not in bad.headers
    real = client.post("/v1/messages", json=message_body(), headers={"origin": "https://app.example", **KEYED})
    assert real.status_code == 200 and real.headers["access-control-allow-origin"] == "https://app.example"
    other = client.post("/v1/messages", json=message_body(), headers={"origin": "https://evil.example", **KEYED})
    assert "access-control-allow-origin" not in other.headers


# -- the body limit ---------------------------------------------------------------------------


def test_default_body_limit_is_32_mib(upstream: FakeUpstream) -> None:
    assert load_config(data=proxy_config(upstream), env={}).max_body_bytes == 32 * 1024 * 1024


def test_body_over_the_limit_is_a_413(upstream: FakeUpstream) -> None:
    client = flask_client(upstream, max_body_size="1KB")
    body = json.dumps(message_body(text="x" * 2000)).encode()
    response = client.post("/v1/messages", data=body, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["error"]["type"] == "request_too_large"
    fits = json.dumps(message_body(text="y" * 800)).encode()
    assert len(fits) <= 1024
    assert client.post("/v1/messages", data=fits, content_type="application/json").status_code == 200


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 10.0) -> bytes:
    """Send raw bytes; return the response head and as much body as arrives (the server may close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        return data


def test_huge_declared_body_is_refused_before_it_is_sent(keyed: ProxyServer) -> None:
    """Content-Length: 10 GB and no body at all: the 413 comes back at once, nothing is buffered."""
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"x-api-key: " + PROXY_KEY.encode() + b"\r\nContent-Length: 10000000000\r\n\r\n"
    )
    answer = raw_request(keyed.port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["type"] == "request_too_large" and "10000000000" in body["error"]["message"]


def test_chunked_body_over_the_limit_is_a_413(upstream: FakeUpstream) -> None:
    config = proxy_config(upstream, server={"max_body_size": "64KB"})
    with ProxyServer(config) as server:
        piece = b"x" * 16384
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(8)) + b"0\r\n\r\n"
        head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer = raw_request(server.port, head, chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"request_too_large" in answer
        status, events, _ = stream_events(server.url)  # and the server is fine
        assert status == 200 and check_grammar(events).ending == "message"


# -- headers that never cross -----------------------------------------------------------------

UPSTREAM_MAY_SEE = {
    "host",
    "user-agent",
    "accept-encoding",
    "accept",
    "connection",
    "content-type",
    "content-length",
    "authorization",
    "x-request-id",
}
CLIENT_EXTRAS = {
    "Cookie": "session=client-cookie-value",
    "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
    "X-Forwarded-For": "203.0.113.9",
    "X-Client-Secret": "client-private-value",
    "anthropic-beta": "some-beta-2025",
    "Forwarded": "for=203.0.113.9",
    "TE": "trailers",
}
HOSTILE = {
    "Set-Cookie": "tracker=upstream-cookie; Path=/",
    "Proxy-Authenticate": 'Basic realm="upstream"',
    "X-Upstream-Internal": "internal-value",
    "Keep-Alive": "timeout=5",
    "Trailer": "X-Checksum",
}


@pytest.mark.parametrize("stream", [False, True])
def test_headers_do_not_cross_to_an_openai_provider(keyed: ProxyServer, upstream: FakeUpstream, stream: bool) -> None:
    if stream:
        upstream.enqueue(Stream([chunk(content="hi", finish_reason="stop")], headers=HOSTILE))
    else:
        upstream.enqueue(Json(completion("hi"), headers=HOSTILE))
    headers = {**CLIENT_EXTRAS, "authorization": f"Bearer {PROXY_KEY}", "x-api-key": "sk-client-own-key-123456"}
    response = requests.post(keyed.url + "/v1/messages", json=message_body(stream=stream), headers=headers, timeout=10)
    assert response.status_code == 200
    sent = upstream.last_request.headers
    assert set(sent) <= UPSTREAM_MAY_SEE, set(sent) - UPSTREAM_MAY_SEE
    values = json.dumps(dict(sent))
    for value in [*CLIENT_EXTRAS.values(), PROXY_KEY, "sk-client-own-key-123456"]:
        assert value not in values
    got = {k.lower() for k in response.headers}
    assert not got & {"set-cookie", "proxy-authenticate", "x-upstream-internal", "keep-alive", "trailer"}


def test_upstream_cookies_are_not_replayed(keyed: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("one"), headers={"Set-Cookie": "sticky=abc123; Path=/"}), Json(completion("two")))
    for _ in range(2):
        requests.post(keyed.url + "/v1/messages", json=message_body(), headers=KEYED, timeout=10)
    assert "cookie" not in upstream.last_request.headers


def test_error_responses_pass_retry_after_but_not_cookies(keyed: ProxyServer, upstream: FakeUpstream) -> None:
    limited = Json({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "60", "Set-Cookie": "a=b"})
    upstream.enqueue(limited)
    response = requests.post(keyed.url + "/v1/messages", json=message_body(), headers=KEYED, timeout=10)
    assert response.status_code == 429 and response.headers["retry-after"] == "60"
    assert "set-cookie" not in {k.lower() for k in response.headers}


def test_headers_do_not_cross_on_anthropic_passthrough(upstream: FakeUpstream) -> None:
    config = {
        "provider": {"name": "custom", "format": "anthropic", "base_url": upstream.origin, "api_key": UPSTREAM_KEY},
    }
    client = create_app(load_config(data=config, env={})).test_client()
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "usage": {}}
    upstream.enqueue(Json(message, headers=HOSTILE))
    response = client.post("/v1/messages", json=message_body(), headers={**CLIENT_EXTRAS, "x-api-key": "client"})
    assert response.status_code == 200
    sent = upstream.last_request.headers
    assert sent["x-api-key"] == UPSTREAM_KEY and sent["anthropic-beta"] == "some-beta-2025"
    assert not set(sent) & {"cookie", "proxy-authorization", "x-forwarded-for", "x-client-secret", "forwarded", "te"}
    assert not {k.lower() for k in response.headers.keys()} & {
        "set-cookie",
        "proxy-authenticate",
        "x-upstream-internal",
    }


# -- keys never leak --------------------------------------------------------------------------

SECRETS = (UPSTREAM_KEY, PROXY_KEY, OTHER_KEY, URL_SECRET)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret[:6]}… leaked: {text[:400]}"


def test_an_echoed_key_is_blanked_in_error_responses(keyed: ProxyServer, upstream: FakeUpstream) -> None:
    echo = f"Incorrect API key provided: {UPSTREAM_KEY} (also saw {PROXY_KEY})"
    upstream.enqueue(Json({"error": {"message": echo, "type": "invalid_request_error"}}, status=401))
    response = requests.post(keyed.url + "/v1/messages", json=message_body(), headers=KEYED, timeout=10)
    message = assert_envelope(response, 401, "authentication_error")
    assert "Incorrect API key provided" in message
    assert_clean(response.text)


def test_an_echoed_key_is_blanked_in_a_200_error_body(keyed: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json({"error": {"message": f"bad key {UPSTREAM_KEY}", "type": "server_error"}}))
    response = requests.post(keyed.url + "/v1/messages", json=message_body(), headers=KEYED, timeout=10)
    assert response.status_code >= 400 and "bad key" in response.text
    assert_clean(response.text)


def test_an_echoed_key_is_blanked_in_stream_error_events(keyed: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Stream([chunk(content="so far "), {"error": {"message": f"key {UPSTREAM_KEY} revoked", "code": 401}}])
    )
    status, events, response = stream_events(keyed.url, headers=KEYED)
    assert status == 200 and text_of(events) == "so far "
    outcome = check_grammar(events)
    assert outcome.ending == "error" and outcome.error is not None and "revoked" in outcome.error["error"]["message"]
    assert_clean(response.text)


def test_an_echoed_key_is_blanked_in_passthrough_errors(upstream: FakeUpstream) -> None:
    config = {
        "provider": {"name": "custom", "format": "anthropic", "base_url": upstream.origin, "api_key": UPSTREAM_KEY}
    }
    client = create_app(load_config(data=config, env={})).test_client()
    body = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {UPSTREAM_KEY}"}}
    upstream.enqueue(Json(body, status=401))
    response = client.post("/v1/messages", json=message_body())
    assert response.status_code == 401 and "invalid x-api-key" in response.get_data(as_text=True)
    assert_clean(response.get_data(as_text=True))


def test_health_and_console_carry_no_keys(keyed: ProxyServer) -> None:
    health = requests.get(keyed.url + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert_clean(health.text)
    assert_clean(keyed.output())  # the banner names the upstream host, never its credentials


def test_unreachable_upstream_errors_carry_no_url_credentials(upstream: FakeUpstream) -> None:
    config = proxy_config(upstream)
    config["upstream"] = {**config["upstream"], "max_retries": 0}
    config["provider"] = {**config["provider"], "base_url": f"http://user:{URL_SECRET}@127.0.0.1:{free_port()}/v1"}
    with ProxyServer(config) as server:
        for stream in (False, True):
            response = requests.post(server.url + "/v1/messages", json=message_body(stream=stream), headers=CLOSE,
                                     timeout=10)
            assert "connection refused" in assert_envelope(response, 502, "api_error")
            assert_clean(response.text)
        assert_clean(server.output())
        assert_clean(server.log_file.read_text())


def test_the_journal_holds_no_keys_and_is_owner_only(keyed: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json({"error": {"message": f"key {UPSTREAM_KEY} and {PROXY_KEY}"}}, status=403))
    requests.post(keyed.url + "/v1/messages", json=message_body(), headers=KEYED, timeout=10)
    requests.post(keyed.url + "/v1/messages", json=message_body(), headers={"x-api-key": "guess"}, timeout=10)
    time.sleep(0.2)
    text = keyed.log_file.read_text()
    assert "403" in text
    assert_clean(text)
    assert stat.S_IMODE(keyed.log_file.stat().st_mode) == 0o600


def test_journal_is_created_owner_only_whatever_the_umask(tmp_path: Any) -> None:
    old = os.umask(0)
    try:
        fresh = tmp_path / "fresh.jsonl"
        Journal(str(fresh)).close()
        widened = tmp_path / "old.jsonl"
        widened.write_text("")
        widened.chmod(0o666)
        Journal(str(widened)).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert stat.S_IMODE(widened.stat().st_mode) == 0o600


def test_sse_helper_rejects_garbage() -> None:
    with pytest.raises((AssertionError, ValueError)):
        parse_sse(b"data: {}\n\n")


KEY_SHAPES = [
    "sk-abcdefgh12345678",
    "sk-or-v1-abcdefgh1234",
    "sk-ant-api03-abcdefgh",
    "sk-proj-abcdefgh_1234",
    "gsk_ABCDEFGH12345678",
    "fw_abcdefgh12345678",
    "xai-is-not-a-key xai_abcdefgh1234",
]


@pytest.mark.parametrize("key", KEY_SHAPES)
def test_key_shaped_text_is_redacted(key: str) -> None:
    line = json.dumps({"error": f"upstream said: bad key {key}", "status": 401})
    assert "abcdefgh" not in redact(line) and "ABCDEFGH" not in redact(line)
    assert "[REDACTED]" in redact(line)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abcdefgh1234", "Bearer [REDACTED]"),
        ("bearer\tabc.def-ghij", "bearer\t[REDACTED]"),
        ("BEARER   zyxwvuts98", "BEARER   [REDACTED]"),
        ("Bearer short", "Bearer short"),  # too short to be a key
    ],
)
def test_bearer_tokens_are_redacted_in_any_case(header: str, expected: str) -> None:
    assert redact(f"Authorization: {header}") == f"Authorization: {expected}"


def test_redaction_matches_scanning_every_line_for_every_shape() -> None:
    """The literal pre-checks only skip lines no pattern could match: same output as three full passes."""
    import random
    import re

    def reference(text: str) -> str:
        text = re.sub(r"sk-(?:or-|ant-|proj-)?[A-Za-z0-9_\-]{8,}", "[REDACTED]", text)
        text = re.sub(r"(?:gsk|fw|xai)_[A-Za-z0-9]{8,}", "[REDACTED]", text)
        return re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}", r"\1[REDACTED]", text)

    rng = random.Random(7)
    pieces = ["sk-", "or-", "gsk", "fw", "xai", "_", "Bearer", "BEARER", "bEaReR", " ", "\t", "abcdEFGH", "1234", ".", "-", '"', "é"]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert redact(text) == reference(text), text
    assert redact('{"status":200,"latency_ms":1.2}') == '{"status":200,"latency_ms":1.2}'
