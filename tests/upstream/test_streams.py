"""Streamed bodies against a real local upstream over plain HTTP and over TLS: payload, pings,
timeouts, broken bodies, and the connection going back to the pool exactly when the body ended
cleanly. Public behaviour only: the same tests pass with the fast path on (the body read from the
socket) and with `CLAUDE_PROXY_FAST_PATHS=0` (urllib3's public reads); tests/upstream/fastpath/
checks which path was taken."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from claude_proxy.config.loader import ProviderConfig, RetryPolicy, Timeouts
from claude_proxy.errors import UpstreamTimeout, UpstreamUnavailable
from claude_proxy.translate.dialect import Dialect
from claude_proxy.upstream.client import PING, Upstream
from tests.support.upstream import Close, FakeUpstream, Hang, Json, Reset, Sleep, Stream, Text, chunk

BODY = b'{"model":"m","stream":true}'


class SplittingRelay:
    """A TCP relay that passes on everything the upstream sends in two halves, 30 ms apart: TLS
    records and chunk framing then arrive in parts, as over a slow network."""

    def __init__(self, target: FakeUpstream) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = target.url.replace(f":{target.port}", f":{self.port}")
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self.target.port))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, split: bool) -> None:
        try:
            while data := source.recv(65536):
                if split and len(data) > 1:
                    sink.sendall(data[: len(data) // 2])
                    time.sleep(0.03)
                    data = data[len(data) // 2 :]
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            source.close()

    def close(self) -> None:
        self.listener.close()


def make_upstream(
    up: FakeUpstream, ca: trustme.CA, tmp_path: Path, base_url: str | None = None, **timeouts: float
) -> Upstream:
    provider = ProviderConfig(
        name="custom", base_url=base_url or up.url, format="openai", dialect=Dialect(), api_key="sk-test"
    )
    upstream = Upstream(provider, Timeouts(**{"connect": 2, "read": 5, "total": 30, **timeouts}), RetryPolicy(0))
    if up.tls is not None:
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        upstream.session.verify = str(bundle)
    return upstream


def stream(upstream: Upstream) -> requests.Response:
    return upstream.post_json("/chat/completions", BODY, stream=True)


def timed_pieces(upstream: Upstream, response: requests.Response, deadline: float = 30) -> list[tuple[float, Any]]:
    start = time.monotonic()
    return [(time.monotonic() - start, p) for p in upstream.iter_body(response, time.monotonic() + deadline)]


def sse(*items: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + requests.compat.json.dumps(i, separators=(",", ":")).encode() + b"\n\n" for i in items)


def test_a_stream_arrives_as_sent_and_the_connection_is_reused(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path)
    first, second = chunk(content="Hel"), chunk(content="lo", finish_reason="stop")
    for _ in range(3):
        up.enqueue(Stream([first, Sleep(0.4), second]))
        response = stream(upstream)
        pieces = timed_pieces(upstream, response)
        assert b"".join(p for _, p in pieces) == sse(first, second) + b"data: [DONE]\n\n"
        assert pieces[0][1] == sse(first)
        assert pieces[1][0] - pieces[0][0] >= 0.2  # the first event came before the pause, not with the rest
        upstream.release(response)
    assert up.connections_total == 1
    up.enqueue(Json({"ok": True}))
    reply = upstream.post_json("/chat/completions", b"{}")
    assert upstream.read(reply, time.monotonic() + 5) == b'{"ok": true}'
    assert up.connections_total == 1
    assert len({r.connection for r in up.requests}) == 1


def test_release_after_stopping_early_reads_the_rest_and_keeps_the_connection(
    up: FakeUpstream, ca: trustme.CA, tmp_path: Path
) -> None:
    upstream = make_upstream(up, ca, tmp_path)
    up.enqueue(Stream([chunk(content="x", finish_reason="stop"), Sleep(0.02)]))  # [DONE] and 0-chunk come later
    response = stream(upstream)
    assert next(p for p in upstream.iter_body(response, time.monotonic() + 5) if p is not PING).startswith(b"data: ")
    upstream.release(response, wait=2.0)
    up.enqueue(Json({"again": 1}))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"again": 1}'
    assert up.connections_total == 1


def test_release_gives_up_on_a_body_that_does_not_end(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path)
    up.enqueue(Stream([chunk(content="x", finish_reason="stop"), Hang()], done=False))
    response = stream(upstream)
    next(upstream.iter_body(response, time.monotonic() + 5))
    started = time.monotonic()
    upstream.release(response, wait=0.1)
    assert time.monotonic() - started < 2
    assert up.wait_for_disconnect()  # closed, not pooled with a half-read body on it
    up.enqueue(Json({"fresh": 1}))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"fresh": 1}'
    assert up.connections_total == 2


def test_a_waiting_read_holds_no_receive_buffer(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    """Waiting inside `recv(64 KB)` would keep its buffer for the whole wait: 8 MB per 128 quiet
    streams in a worker. The wait comes first; the read then takes what is there."""
    upstream = make_upstream(up, ca, tmp_path)
    first, second = chunk(content="a"), chunk(content="b", finish_reason="stop")
    up.enqueue(Stream([first, Sleep(1.0), second]))
    response = stream(upstream)
    pieces = upstream.iter_body(response, time.monotonic() + 30)
    assert next(pieces) == sse(first)
    rest: list[Any] = []
    reader = threading.Thread(target=lambda: rest.extend(pieces))
    tracemalloc.start(8)
    try:
        reader.start()
        time.sleep(0.4)  # the reader is waiting for the second chunk
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        reader.join(10)
    held = [
        trace
        for trace in snapshot.traces
        if trace.size >= 32 * 1024 and any("claude_proxy/upstream/" in frame.filename for frame in trace.traceback)
    ]
    assert held == []
    assert b"".join(p for p in rest if p is not PING) == sse(second) + b"data: [DONE]\n\n"


def test_records_and_chunks_arriving_in_parts(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    """Readable does not mean a whole TLS record (or chunk) is there: a part waits for the rest."""
    relay = SplittingRelay(up)
    try:
        upstream = make_upstream(up, ca, tmp_path, base_url=relay.url)
        events = [chunk(content=f"part {i} " * 40) for i in range(6)] + [chunk(content=".", finish_reason="stop")]
        for _ in range(2):  # the second over the pooled connection
            up.enqueue(Stream([events[0], Sleep(0.05), *events[1:]]))
            response = stream(upstream)
            pieces = [p for _, p in timed_pieces(upstream, response) if p is not PING]
            assert b"".join(pieces) == sse(*events) + b"data: [DONE]\n\n"
            assert len(pieces) > 1
            upstream.release(response)
    finally:
        relay.close()


def test_silence_is_filled_with_pings(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path, ping_interval=0.1)
    up.enqueue(Stream([chunk(content="a"), Sleep(0.45), chunk(content="b", finish_reason="stop")]))
    pieces = [p for _, p in timed_pieces(upstream, stream(upstream))]
    data_at = [i for i, p in enumerate(pieces) if p is not PING]
    pings_between = pieces[data_at[0] + 1 : data_at[1]]
    assert 2 <= len(pings_between) <= 6 and all(p is PING for p in pings_between)


def test_an_idle_upstream_times_out_after_pings(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path, ping_interval=0.1, read=0.35)
    up.enqueue(Stream([chunk(content="a"), Hang()], done=False))
    pieces: list[Any] = []
    with pytest.raises(UpstreamTimeout, match=r"no data for 0\.35s"):
        for piece in upstream.iter_body(stream(upstream), time.monotonic() + 10):
            pieces.append(piece)
    assert pieces[0] != PING and pieces.count(PING) >= 2


def test_the_overall_deadline_ends_a_trickling_stream(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path)
    up.enqueue(Stream([chunk(content=".")] * 50, delay=0.05))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match="deadline"):
        for _ in upstream.iter_body(stream(upstream), time.monotonic() + 0.4):
            pass
    assert time.monotonic() - started < 1.5


def test_a_chunked_body_cut_short_is_a_broken_connection(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path)
    up.enqueue(Stream([chunk(content="cut"), Close()], done=False))
    with pytest.raises(UpstreamUnavailable, match="connection closed before the response was complete"):
        for _ in upstream.iter_body(stream(upstream), time.monotonic() + 5):
            pass


def test_a_reset_is_a_broken_connection(up: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(up, ca, tmp_path)
    up.enqueue(Stream([chunk(content="cut"), Sleep(0.05), Reset()], done=False))
    with pytest.raises(UpstreamUnavailable, match="connection broke mid-response"):
        for _ in upstream.iter_body(stream(upstream), time.monotonic() + 5):
            pass


def test_a_close_delimited_body_ends_at_eof_and_is_not_pooled(plain: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(plain, ca, tmp_path)
    plain.enqueue(Stream([chunk(content="whole")], chunked=False))
    response = stream(upstream)
    assert b"".join(upstream.iter_body(response, time.monotonic() + 5)) == sse(chunk(content="whole")) + b"data: [DONE]\n\n"
    upstream.release(response)
    plain.enqueue(Json({"n": 2}))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"n": 2}'
    assert plain.connections_total == 2


def test_malformed_chunk_framing_is_a_broken_connection(plain: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(plain, ca, tmp_path)
    headers = {"Transfer-Encoding": "chunked", "Connection": "keep-alive"}
    plain.enqueue(Stream(["5\r\ndata:\r\nzz\r\nmore\r\n"], chunked=False, done=False, headers=headers))
    pieces: list[bytes] = []
    # the fast path names the bad size line; http.client reports it as a body cut short (IncompleteRead)
    broken = "connection broke mid-response: (malformed chunked body|connection closed before the response was complete)"
    with pytest.raises(UpstreamUnavailable, match=broken):
        for piece in upstream.iter_body(stream(upstream), time.monotonic() + 5):
            pieces.append(piece)
    assert b"".join(pieces) in (b"", b"data:")  # what came before the bad size line, at most


def test_bytes_beyond_the_content_length_are_not_part_of_the_body(
    plain: FakeUpstream, ca: trustme.CA, tmp_path: Path
) -> None:
    """(The fast path also keeps such a connection out of the pool: tests/upstream/fastpath/test_socketbody.py.)"""
    upstream = make_upstream(plain, ca, tmp_path)
    plain.enqueue(Text(b'{"a":1}GARBAGE', headers={"Content-Length": "7"}, content_type="application/json"))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"a":1}'
    plain.enqueue(Json({"b": 2}))
    assert upstream.read(upstream.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"b": 2}'


def test_a_compressed_body_is_decoded(plain: FakeUpstream, ca: trustme.CA, tmp_path: Path) -> None:
    upstream = make_upstream(plain, ca, tmp_path)
    body = b'{"compressed": true}'
    plain.enqueue(Text(gzip.compress(body), headers={"Content-Encoding": "gzip"}, content_type="application/json"))
    response = upstream.post_json("/chat/completions", b"{}")
    assert upstream.read(response, time.monotonic() + 5) == body
