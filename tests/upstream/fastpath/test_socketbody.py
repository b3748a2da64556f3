"""Which path a body takes, and what only the fast path does: a body read from the socket
(`SocketBody`), the remembering adapter, and a connection kept out of the pool when bytes came
after the body. These tests read the fast path's own attributes; tests/upstream/test_streams.py
checks the behaviour both paths share."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest
import trustme

from claude_proxy.config.loader import ProviderConfig, RetryPolicy, Timeouts
from claude_proxy.errors import UpstreamUnavailable
from claude_proxy.translate.dialect import Dialect
from claude_proxy.upstream.body import PublicBody
from claude_proxy.upstream.client import Upstream
from claude_proxy.upstream.fastpath.adapter import RememberingAdapter
from claude_proxy.upstream.fastpath.socketbody import SocketBody
from tests.support.upstream import FakeUpstream, Json, Sleep, Stream, Text, chunk

BODY = b'{"model":"m","stream":true}'


def make_upstream(up: FakeUpstream, ca: trustme.CA, tmp_path: Path, fast_paths: bool = True) -> Upstream:
    provider = ProviderConfig(name="custom", base_url=up.url, format="openai", dialect=Dialect(), api_key="sk-test")
    upstream = Upstream(provider, Timeouts(connect=2, read=5, total=30), RetryPolicy(0), fast_paths=fast_paths)
    if up.tls is not None:
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        upstream.session.verify = str(bundle)
    return upstream


def test_streams_and_whole_bodies_are_read_from_the_socket(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path)
    assert upstream.fast is not None
    up.enqueue(Stream([chunk(content="a"), Sleep(0.05), chunk(content="b", finish_reason="stop")]))
    response = upstream.post_json("/chat/completions", BODY, stream=True)
    assert b"data: [DONE]" in b"".join(p for p in upstream.iter_body(response, time.monotonic() + 5) if isinstance(p, bytes))
    assert isinstance(upstream.body_reader(response), SocketBody)
    upstream.release(response)
    up.enqueue(Json({"ok": True}))
    reply = upstream.post_json("/chat/completions", b"{}")
    assert isinstance(upstream.fast.open_body(reply), SocketBody)  # Content-Length bodies too
    assert up.connections_total == 1


def test_with_the_switch_off_bodies_go_through_urllib3(plain: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(plain, ca, tmp_path, fast_paths=False)
    assert upstream.fast is None
    assert not isinstance(upstream.session.get_adapter(plain.url), RememberingAdapter)
    plain.enqueue(Stream([chunk(content="a", finish_reason="stop")]))
    response = upstream.post_json("/chat/completions", BODY, stream=True)
    assert b"data: [DONE]" in b"".join(p for p in upstream.iter_body(response, time.monotonic() + 5) if isinstance(p, bytes))
    assert isinstance(upstream.body_reader(response), PublicBody)
    upstream.release(response)
    plain.enqueue(Json({"again": 1}))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"again": 1}'
    assert plain.connections_total == 1  # urllib3 pooled it after the clean end


def test_a_compressed_body_is_left_to_urllib3(plain: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(plain, ca, tmp_path)
    plain.enqueue(Text(gzip.compress(b'{"z": 1}'), headers={"Content-Encoding": "gzip"}, content_type="application/json"))
    response = upstream.post_json("/chat/completions", b"{}")
    assert upstream.fast is not None and upstream.fast.open_body(response) is None
    assert upstream.read(response, time.monotonic() + 5) == b'{"z": 1}'


def test_malformed_chunk_framing_is_named(plain: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(plain, ca, tmp_path)
    headers = {"Transfer-Encoding": "chunked", "Connection": "keep-alive"}
    plain.enqueue(Stream(["5\r\ndata:\r\nzz\r\nmore\r\n"], chunked=False, done=False, headers=headers))
    with pytest.raises(UpstreamUnavailable, match="connection broke mid-response: malformed chunked body"):
        for _ in upstream.iter_body(upstream.post_json("/chat/completions", BODY, stream=True), time.monotonic() + 5):
            pass


def test_bytes_beyond_the_content_length_keep_the_connection_out_of_the_pool(
    plain: FakeUpstream, ca: trustme.CA, tmp_path: Path
) -> None:
    """Stock http.client drops what its buffer holds past the body and pools the connection anyway."""
    upstream = make_upstream(plain, ca, tmp_path)
    plain.enqueue(Text(b'{"a":1}GARBAGE', headers={"Content-Length": "7"}, content_type="application/json"))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"a":1}'
    plain.enqueue(Json({"b": 2}))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"b": 2}'
    assert plain.connections_total == 2


def test_the_adapter_remembers_its_pool_until_the_session_closes(
    plain: FakeUpstream, ca: trustme.CA, tmp_path: Path
) -> None:
    upstream = make_upstream(plain, ca, tmp_path)
    adapter = upstream.session.get_adapter(upstream.url("/chat/completions"))
    assert isinstance(adapter, RememberingAdapter)

    def call(text: str) -> bytes:
        plain.enqueue(Json({"text": text}))
        return upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5)

    assert call("one") == b'{"text": "one"}'
    pools = set(map(id, adapter.pools.values()))
    assert call("two") == b'{"text": "two"}'
    assert set(map(id, adapter.pools.values())) == pools and len(pools) == 1
    assert adapter.targets == {upstream.url("/chat/completions"): "/v1/chat/completions"}
    assert plain.connections_total == 1
    old = next(iter(adapter.pools.values()))
    upstream.close()  # the session's close empties the pool manager, and the adapter forgets with it
    assert adapter.pools == {}
    assert call("three") == b'{"text": "three"}'
    assert next(iter(adapter.pools.values())) is not old
