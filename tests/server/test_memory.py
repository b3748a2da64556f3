"""A finished request leaves nothing for the cycle collector.

Objects caught in a reference cycle outlive their request until a garbage collection, and the
ones still in flight at a collection are promoted to older generations that are collected
rarely: under load a worker's memory then follows the cycles, not the requests. The upstream
response, its socket reader and its buffers must go the moment a request is done.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from claude_proxy.config.loader import load_config
from claude_proxy.web.app import create_app
from tests.conftest import proxy_config
from tests.support.upstream import FakeUpstream, Stream, chunk, usage_chunk

HEADERS = {"x-api-key": "client-key", "anthropic-version": "2023-06-01"}
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hello"}]}
# Packages whose objects must never be left in a cycle by a request (werkzeug's URL matcher
# makes a small closure cycle per match of its own; that is its business, and a few hundred bytes).
OURS = ("claude_proxy", "requests", "urllib3", "http.client", "socket", "ssl", "flask")


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[FlaskClient]:
    yield create_app(load_config(data=proxy_config(upstream), env={})).test_client()


def cyclic_garbage(run: Any, times: int = 5) -> list[Any]:
    """The objects `run()` left in reference cycles, found by a full collection."""
    run()  # warm caches, pools and lazily imported modules first
    gc.collect()
    flags = gc.get_debug()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(times):
            run()
        gc.collect()
        found = [o for o in gc.garbage if (type(o).__module__ or "").startswith(OURS)]
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)
        gc.enable()
    return found


def test_a_non_streamed_request_leaves_no_cycles(client: FlaskClient, upstream: FakeUpstream) -> None:
    def run() -> None:
        response = client.post("/v1/messages", json=BODY, headers=HEADERS)
        assert response.status_code == 200 and response.json["type"] == "message"

    assert [type(o).__qualname__ for o in cyclic_garbage(run)] == []


def test_a_streamed_request_leaves_no_cycles(client: FlaskClient, upstream: FakeUpstream) -> None:
    def run() -> None:
        upstream.enqueue(Stream([chunk(content="hi"), chunk(finish_reason="stop"), usage_chunk(3, 1)]))
        response = client.post("/v1/messages", json={**BODY, "stream": True}, headers=HEADERS)
        assert b"event: message_stop" in response.data

    assert [type(o).__qualname__ for o in cyclic_garbage(run)] == []


def test_the_check_sees_a_cycle_when_there_is_one() -> None:
    from claude_proxy.upstream.fastpath.framing import ChunkedDecoder

    def run() -> None:
        decoder: Any = ChunkedDecoder()
        decoder.me = decoder

    assert [type(o).__qualname__ for o in cyclic_garbage(run)] == ["ChunkedDecoder"] * 5
