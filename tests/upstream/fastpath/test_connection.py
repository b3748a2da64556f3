"""The upstream's connections (`claude_proxy.upstream.fastpath.connection`): response headers parsed exactly as
`http.client` parses them (compared with it on hand-picked and random header blocks), and a
request's head and body written in one send, over real loopback sockets."""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3

from claude_proxy.config.loader import ProviderConfig
from claude_proxy.translate.dialect import Dialect
from claude_proxy.upstream.client import Upstream
from claude_proxy.upstream.fastpath.connection import (
    MAX_HEADERS,
    LeanHTTPConnection,
    LeanHTTPConnectionPool,
    LeanHTTPResponse,
    LeanHTTPSConnectionPool,
    parse_headers,
    plain_headers,
)
from tests.support.upstream import FakeUpstream, Json


def stdlib(block: bytes) -> Any:
    return http.client.parse_headers(io.BytesIO(block))


def ours(block: bytes) -> Any:
    return parse_headers(io.BytesIO(block))


def same_message(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    assert a.items() == b.items()
    assert [type(d) for d in a.defects] == [type(d) for d in b.defects]
    assert a.get_payload() == b.get_payload()
    assert {k: v for k, v in vars(a).items() if k != "defects"} == {k: v for k, v in vars(b).items() if k != "defects"}


def outcome(parse: Any, block: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(block)
    except http.client.HTTPException as exc:
        return "error", (type(exc), str(exc))


def assert_same(block: bytes) -> None:
    kind, theirs = outcome(stdlib, block)
    kind2, mine = outcome(ours, block)
    assert kind == kind2, block
    if kind == "ok":
        same_message(theirs, mine)
    else:
        assert theirs == mine


# -- header parsing -------------------------------------------------------------------------

TYPICAL = (
    b"Content-Type: application/json\r\nContent-Length: 512\r\nDate: Tue, 24 Nov 2026 15:00:00 GMT\r\n"
    b"x-request-id: req_abc\r\nopenai-processing-ms: 41\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\n"
    b"Connection: keep-alive\r\n\r\n"
)

BLOCKS = [
    TYPICAL,
    b"\r\n",  # no headers at all
    b"\n",
    b"",  # the connection closed before any header
    b"Content-Length: 3\n\n",  # bare LF line ends
    b"X-Empty:\r\n\r\n",
    b"X-Spaces:    padded value   \r\n\r\n",  # leading spaces go, trailing ones stay
    b"X-Tab:\tvalue\r\n\r\n",
    b"X-Latin: caf\xe9 \xff\r\n\r\n",  # not UTF-8: read as ISO-8859-1, as http.client does
    b"X-Colons: a:b:c\r\n\r\n",
    b"X-Folded: first\r\n  second\r\n\r\n",  # obsolete line folding: the email parser's business
    b"X-Folded: first\r\n\tsecond\r\nX-After: 1\r\n\r\n",
    b"Not a header line\r\nX-After: 1\r\n\r\n",
    b"From someone\r\n\r\n",
    b": no name\r\n\r\n",
    b"X-Space-Name : v\r\n\r\n",
    b"X-Cr: a\rb\r\n\r\n",  # a lone CR inside a value
    b"X-No-End: 1\r\n",  # EOF before the blank line
    b"X-One: 1\r\nX-Two: 2",
    b"\r\nX-After-Blank: 1\r\n",
    "X-Unicode: \u00e9t\u00e9\r\n\r\n".encode("latin-1"),
    b"X-Big: " + b"v" * 60000 + b"\r\n\r\n",
    b"X-Too-Long: " + b"v" * 70000 + b"\r\n\r\n",
    b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(MAX_HEADERS - 1)) + b"\r\n",
    b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(MAX_HEADERS + 5)) + b"\r\n",
]


@pytest.mark.parametrize("block", BLOCKS, ids=range(len(BLOCKS)))
def test_headers_are_parsed_as_http_client_parses_them(block: bytes) -> None:
    assert_same(block)


def test_plain_blocks_take_the_fast_path_and_others_do_not() -> None:
    def lines(block: bytes) -> list[bytes]:
        return io.BytesIO(block).readlines()

    assert plain_headers(lines(TYPICAL)) is not None
    assert plain_headers(lines(b"\r\n")) is not None
    for unusual in (b"X-Folded: a\r\n b\r\n\r\n", b"junk\r\n\r\n", b"X-No-End: 1\r\n", b"X-Cr: a\rb\r\n\r\n"):
        assert plain_headers(lines(unusual)) is None


def test_headers_after_the_block_are_left_for_the_body() -> None:
    fp = io.BytesIO(b"Content-Length: 4\r\n\r\nbody")
    message = parse_headers(fp)
    assert message["content-length"] == "4"
    assert fp.read() == b"body"


def test_random_header_blocks_match_http_client() -> None:
    rng = random.Random(20261124)
    pieces = [b"X-A", b"Content-Type", b":", b": ", b" ", b"\t", b"\r", b"\n", b"\r\n", b"v", b"\xe9", b"From ", b"=", b";"]
    for _ in range(3000):
        block = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        if rng.random() < 0.7:
            block += b"\r\n\r\n"
        assert_same(block)


def test_random_header_lines_match_http_client() -> None:
    """Blocks of mostly well-formed lines, now and then one with a character out of place."""
    rng = random.Random(4222)
    name_chars = [bytes([c]) for c in range(0x21, 0x7F) if c != 0x3A] + [b" ", b"\t", b":", b"\xe9"]
    value_chars = [bytes([c]) for c in range(0x20, 0x7F)] + [b"\t", b"\xe9", b"\xff", b"\r", b"\x00"]
    fast = 0
    for _ in range(2000):
        lines = []
        for _ in range(rng.randint(0, 8)):
            name = b"".join(rng.choice(name_chars[:80] if rng.random() < 0.9 else name_chars) for _ in range(6))
            value = b"".join(rng.choice(value_chars[:95] if rng.random() < 0.9 else value_chars) for _ in range(9))
            lines.append(name + rng.choice([b": ", b":", b":  \t"]) + value + rng.choice([b"\r\n"] * 9 + [b"\n"]))
        block = b"".join(lines) + (b"\r\n" if rng.random() < 0.95 else b"")
        assert_same(block)
        fast += lines != [] and plain_headers(io.BytesIO(block).readlines()) is not None
    assert fast > 500  # both paths were exercised


def test_a_response_reads_status_headers_and_body_as_before() -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    a, b = socket.socketpair()
    with a, b:
        a.sendall(raw)
        a.shutdown(socket.SHUT_WR)
        response = LeanHTTPResponse(b, method="POST")
        response.begin()
        assert (response.status, response.reason, response.version) == (200, "OK", 11)
        assert response.chunked and response.getheader("content-type") == "application/json"
        assert isinstance(response.msg, http.client.HTTPMessage)
        assert response.read() == b"hello"


# -- one send per request -------------------------------------------------------------------


class Recording:
    """A connected socket that notes each `sendall`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.fixture
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def connected(server: FakeUpstream) -> tuple[LeanHTTPConnection, Recording]:
    conn = LeanHTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.connect()
    recording = Recording(conn.sock)
    conn.sock = recording
    return conn, recording


def test_head_and_body_go_out_in_one_send(server: FakeUpstream) -> None:
    server.enqueue(Json({"ok": True}))
    conn, recording = connected(server)
    body = b'{"model":"m","messages":[]}'
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.data) == {"ok": True}
    assert len(recording.sent) == 1
    assert recording.sent[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert recording.sent[0].endswith(b"\r\n\r\n" + body)
    assert server.requests[0].body == body
    conn.close()


def test_an_empty_body_still_sends_the_head(server: FakeUpstream) -> None:
    server.enqueue(Json({"ok": True}))
    conn, recording = connected(server)
    conn.request("POST", "/v1/x", body=b"")
    assert conn.getresponse().status == 200
    assert len(recording.sent) == 1 and b"Content-Length: 0\r\n" in recording.sent[0]
    conn.close()


def test_other_bodies_are_sent_as_urllib3_sends_them(server: FakeUpstream) -> None:
    server.enqueue(Json({"ok": True}))
    server.enqueue(Json({"ok": True}))
    conn, recording = connected(server)
    conn.request("POST", "/v1/x", body=iter([b"ab", b"cd"]))  # chunked
    assert conn.getresponse().data and server.requests[0].body == b"abcd"
    assert len(recording.sent) == 4  # head, two chunks, the last chunk
    recording.sent.clear()
    conn.request("GET", "/v1/models")
    assert conn.getresponse().data and len(recording.sent) == 1
    conn.close()


def test_a_request_that_fails_while_being_written_sends_nothing(server: FakeUpstream) -> None:
    conn, recording = connected(server)
    with pytest.raises(ValueError):
        conn.request("POST", "/v1/x", body=b"{}", headers={"X-Bad": "a\r\nInjected: 1"})
    assert recording.sent == []
    conn.close()


def test_the_upstream_client_uses_these_connections(server: FakeUpstream) -> None:
    provider = ProviderConfig(name="custom", base_url=server.url, api_key="sk-test", format="openai", dialect=Dialect())
    upstream = Upstream(provider, fast_paths=True)  # the switch is tested in test_selfcheck.py
    try:
        server.enqueue(Json({"id": "x"}))
        response = upstream.post_json("/chat/completions", b'{"model":"m"}', {"X-Request-Id": "req_1"})
        assert json.loads(upstream.read(response, deadline=time.monotonic() + 5)) == {"id": "x"}
        adapter = upstream.session.get_adapter(server.url)
        pool = adapter.poolmanager.connection_from_url(server.url)
        assert isinstance(pool, LeanHTTPConnectionPool) and pool.ConnectionCls is LeanHTTPConnection
        assert adapter.poolmanager.pool_classes_by_scheme["https"] is LeanHTTPSConnectionPool
        assert server.requests[0].headers["x-request-id"] == "req_1"
    finally:
        upstream.close()
    # nothing changed outside the proxy's own sessions (an embedding app's requests keep urllib3's pools)
    assert type(requests.adapters.HTTPAdapter().poolmanager.connection_from_url(server.url)) is urllib3.HTTPConnectionPool


def test_reading_headers_this_way_imports_nothing_more_of_email() -> None:
    """`email.policy` (with the header registry and its parser) would cost every worker memory."""
    import subprocess
    import sys

    code = (
        "import sys, io, claude_proxy.upstream.client as u, claude_proxy.upstream.fastpath.connection as c\n"
        "assert c.parse_headers(io.BytesIO(b'A: 1\\r\\n\\r\\n'))['a'] == '1'\n"
        "print(sorted(m for m in sys.modules if m in ('email.policy', 'email.headerregistry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_limits_an_application_raised_in_http_client_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    block = b"".join(b"X-H%d: %d\r\n" % (i, i) for i in range(150)) + b"\r\n"
    with pytest.raises(http.client.HTTPException):
        ours(block)
    monkeypatch.setattr(http.client, "_MAXHEADERS", 200, raising=False)
    assert_same(block)
    assert len(ours(block)) == 150


# -- the same bytes as urllib3 ------------------------------------------------------------


class StockRecording(urllib3.connection.HTTPConnection):
    """urllib3's own connection, noting the bytes it sends (the reference for ours)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[bytes] = []

    def send(self, data: Any) -> None:
        self.sent.append(bytes(data))
        super().send(data)


def test_one_send_carries_the_bytes_urllib3_sends(server: FakeUpstream) -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-one", "X-Count": 7, "X-Raw": b"bytes"}
    stock = StockRecording("127.0.0.1", server.port, timeout=5)
    conn, recording = connected(server)
    for n in range(3):
        for _ in range(2):
            server.enqueue(Json({"ok": True}))
        request_headers = {**headers, "X-Request-Id": f"req_{n}"}
        stock.request("POST", "/v1/chat/completions", body=b"{}", headers=request_headers)
        assert stock.getresponse().status == 200
        conn.request("POST", "/v1/chat/completions", body=b"{}", headers=request_headers)
        assert conn.getresponse().status == 200
        assert recording.sent[-1] == b"".join(stock.sent[-2:])  # same head and body; ours in one send
    stock.close()
    conn.close()
