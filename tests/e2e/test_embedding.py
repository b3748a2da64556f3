"""Embedding: a host Flask app with its own routes and auth mounts the proxy Blueprint under /llm.

The host (tests/support/embedded_app.py) runs under a real gunicorn; the official anthropic SDK
talks to `/llm`, plain requests talk to the host. Each side keeps its own auth and its own error
format: the host's token does not open the proxy, the proxy's key does not open the host, the
host's 404s stay the host's, and everything under /llm answers as the Anthropic API does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest
import requests

from tests.conftest import UPSTREAM_KEY, proxy_config
from tests.support.gunicorn_server import GunicornServer
from tests.support.upstream import FakeUpstream, Json, Stream, chunk, completion, usage_chunk

pytestmark = pytest.mark.e2e

PROXY_KEY = "pk-embedded-proxy-key"
HOST_TOKEN = "host-session-token-123"
HOST = {"Authorization": f"Bearer {HOST_TOKEN}"}


@pytest.fixture(scope="module")
def host(upstream: FakeUpstream) -> Iterator[GunicornServer]:
    config = proxy_config(upstream, server={"auth_keys": [PROXY_KEY]})
    with GunicornServer(
        config,
        "tests.support.embedded_app:app",
        threads=8,
        health_path="/llm/health",
        env={"HOST_APP_TOKEN": HOST_TOKEN},
    ) as server:
        yield server


@pytest.fixture
def client(host: GunicornServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=host.url + "/llm", api_key=PROXY_KEY, max_retries=0, timeout=20) as sdk:
        yield sdk


def test_sdk_create_under_the_prefix(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("from the host", prompt_tokens=9, completion_tokens=2)), path="/chat/completions")
    message = client.messages.create(
        model="claude-sonnet-5", max_tokens=50, messages=[{"role": "user", "content": "embedded?"}]
    )
    assert message.content[0].text == "from the host"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 2)
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.json["model"] == "big-model"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the proxy key stays at the proxy
    assert PROXY_KEY not in json.dumps(dict(sent.headers)) and HOST_TOKEN not in json.dumps(dict(sent.headers))


def test_sdk_stream_under_the_prefix(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Stream(
            [chunk(content="streamed "), chunk(content="through the host", finish_reason="stop"), usage_chunk(4, 3)]
        ),
        path="/chat/completions",
    )
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "stream it"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "streamed through the host"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3
    assert upstream.requests[-1].json["model"] == "fast-model"


def test_sdk_count_tokens_and_models(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model="claude-sonnet-5", messages=[{"role": "user", "content": "hello"}])
    assert counted.input_tokens > 0
    names = [m.id for m in client.models.list()]
    assert "fake-model-1" in names  # the upstream's list, fetched through the embedded proxy


def test_the_proxy_keeps_its_own_auth(host: GunicornServer, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    for headers in ({}, HOST, {"x-api-key": "wrong"}):  # the host's token is not a proxy key
        response = requests.post(
            host.url + "/llm/v1/messages",
            json={"model": "claude-sonnet-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 401
        assert response.json()["type"] == "error" and response.json()["error"]["type"] == "authentication_error"
        assert response.headers["request-id"]
    assert len(upstream.requests) == before
    with anthropic.Anthropic(base_url=host.url + "/llm", api_key="nope", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.create(model="claude-sonnet-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert requests.get(host.url + "/llm/health", timeout=10).json()["status"] == "ok"  # open, as standalone
    assert requests.get(host.url + "/llm/metrics", timeout=10).status_code == 401
    assert requests.get(host.url + "/llm/metrics", headers={"x-api-key": PROXY_KEY}, timeout=10).status_code == 200


def test_the_host_keeps_its_routes_and_auth(host: GunicornServer) -> None:
    assert requests.get(host.url + "/", timeout=10).json() == {"service": "host-app"}
    denied = requests.get(host.url + "/api/items", timeout=10)
    assert (denied.status_code, denied.json()) == (403, {"detail": "host: login required"})
    with_proxy_key = requests.get(host.url + "/api/items", headers={"x-api-key": PROXY_KEY}, timeout=10)
    assert with_proxy_key.status_code == 403  # the proxy's key is not a host session
    assert requests.get(host.url + "/api/items", headers=HOST, timeout=10).json() == {"items": [1, 2, 3]}
    added = requests.post(host.url + "/api/items", headers=HOST, json={"name": "x"}, timeout=10)
    assert (added.status_code, added.json()) == (201, {"added": {"name": "x"}})
    assert "request-id" not in added.headers  # the proxy's hooks do not run on host routes


def test_errors_on_each_side_keep_their_format(host: GunicornServer) -> None:
    host_404 = requests.get(host.url + "/nope", headers=HOST, timeout=10)
    assert (host_404.status_code, host_404.json()) == (404, {"detail": "host: not found"})
    host_405 = requests.delete(host.url + "/api/items", headers=HOST, timeout=10)
    assert (host_405.status_code, host_405.json()) == (405, {"detail": "host: method not allowed"})

    key = {"x-api-key": PROXY_KEY}
    proxy_404 = requests.get(host.url + "/llm/v1/nope", headers=key, timeout=10)
    assert proxy_404.status_code == 404
    assert proxy_404.json()["type"] == "error" and proxy_404.json()["error"]["type"] == "not_found_error"
    assert proxy_404.json()["request_id"] == proxy_404.headers["request-id"]
    proxy_405 = requests.get(host.url + "/llm/v1/messages", headers=key, timeout=10)
    assert proxy_405.status_code == 405 and proxy_405.json()["error"]["type"] == "invalid_request_error"
    bad = requests.post(
        host.url + "/llm/v1/messages",
        headers=key,
        json={"model": "claude-sonnet-5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "?"}]}]},
        timeout=10,
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert "messages.0.content.0.type" in bad.json()["error"]["message"]
    not_json = requests.post(host.url + "/llm/v1/messages", headers=key, data=b"{", timeout=10)
    assert not_json.status_code == 400 and not_json.json()["type"] == "error"
