"""`worker.CoalescingResponse`: the same bytes as gunicorn's own response writer, in fewer sends.

Each case drives gunicorn's `Response` and ours through the same WSGI calls, over sockets that
record every `sendall`, and compares what went out.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi

from claude_proxy.server import selfcheck
from claude_proxy.server.worker import CoalescingResponse

# The item is off (selfcheck) on a gunicorn without `Response._emit_body` (before 27): nothing to test.
needs_emit_body = pytest.mark.skipif(
    bool(selfcheck.ITEMS_BY_NAME["coalescing_response"].missing()),
    reason="coalescing_response is off on this gunicorn (Response._emit_body arrived in 27)",
)


@dataclass
class Recorder:
    sends: list[bytes] = field(default_factory=list)

    def sendall(self, data: bytes) -> None:
        self.sends.append(bytes(data))


@dataclass
class FakeRequest:
    method: str = "GET"
    version: tuple[int, int] = (1, 1)
    headers: list[tuple[str, str]] = field(default_factory=list)

    def should_close(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(util, "http_date", lambda *a: "Tue, 24 Nov 2026 12:00:00 GMT")


def drive(cls: Any, method: str, status: str, headers: list[tuple[str, str]], body: list[bytes]) -> list[bytes]:
    sock = Recorder()
    response = cls(FakeRequest(method=method), sock, Config())
    response.start_response(status, headers)
    for item in body:
        response.write(item)
    response.close()
    return sock.sends


CASES = {
    "content-length": ("POST", "200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")], [b'{"ok":true}'], 1),
    "two writes": ("POST", "200 OK", [("Content-Length", "10")], [b"hello", b"world"], 2),
    "chunked stream": ("POST", "200 OK", [("Content-Type", "text/event-stream")], [b"event: a\n\n", b"event: b\n\n"], 3),
    "HEAD": ("HEAD", "200 OK", [("Content-Length", "11")], [b'{"ok":true}'], 1),
    "no content": ("DELETE", "204 No Content", [], [], 1),
    "empty body": ("GET", "200 OK", [("Content-Length", "0")], [], 1),
}


@needs_emit_body
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_same_bytes_with_the_head_in_the_first_send(case: str) -> None:
    method, status, headers, body, expected_sends = CASES[case]
    theirs = drive(wsgi.Response, method, status, headers, body)
    ours = drive(CoalescingResponse, method, status, headers, body)
    assert b"".join(ours) == b"".join(theirs)
    assert len(ours) == expected_sends
    assert ours[0].startswith(b"HTTP/1.1 " + status.encode())
    if body and method != "HEAD":
        assert len(theirs) == len(ours) + 1  # the head no longer goes alone
        assert ours[0].endswith(body[0] if "Content-Length" in dict(headers) else body[0] + b"\r\n")


def test_a_file_goes_out_after_the_head_by_sendfile(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"x" * 5000)
    outputs = []
    for cls in (wsgi.Response, CoalescingResponse):
        ours, theirs = socket.socketpair()
        with ours, theirs, path.open("rb") as handle:
            response = cls(FakeRequest(), ours, Config())
            response.start_response("200 OK", [("Content-Length", "5000")])
            response.write_file(wsgi.FileWrapper(handle))
            response.close()
            ours.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := theirs.recv(65536):
                received += chunk
        outputs.append(received)
    assert outputs[0] == outputs[1]
    assert outputs[1].endswith(b"\r\n\r\n" + b"x" * 5000)


@needs_emit_body
def test_other_socket_calls_during_a_write_get_the_head_first() -> None:
    """Should gunicorn's body writer ever use the socket for more than `sendall`, nothing is lost."""

    class Sock(Recorder):
        def send(self, data: bytes) -> int:
            self.sends.append(b"send:" + bytes(data))
            return len(data)

    class Writer(CoalescingResponse):
        def _emit_body(self, data: bytes) -> None:
            self._with_head(lambda: self.sock.send(data))

    sock = Sock()
    response = Writer(FakeRequest(), sock, Config())
    response.start_response("200 OK", [("Content-Length", "2")])
    response.write(b"hi")
    response.close()
    assert len(sock.sends) == 2
    assert sock.sends[0].startswith(b"HTTP/1.1 200 OK\r\n") and sock.sends[0].endswith(b"\r\n\r\n")
    assert sock.sends[1] == b"send:hi"
