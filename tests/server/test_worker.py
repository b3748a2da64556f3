"""The gunicorn worker's keep-alive handling, on raw sockets against the real `claude-proxy`.

A thread that finished a response waits a moment for the same client's next request; whatever
the client's timing (at once, pipelined, after a pause, or never), every request is answered,
and a lingering thread never keeps another client waiting.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from benchmarks.procfs import children, client_connections
from claude_proxy.server.switch import ENV
from tests.conftest import proxy_config
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream

BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]}
).encode()


def request_bytes(port: int, body: bytes = BODY) -> bytes:
    head = (
        f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"x-api-key: k\r\nanthropic-version: 2023-06-01\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Reader:
    """Reads Content-Length responses off one socket, keeping what arrives beyond each."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def response(self) -> tuple[int, dict[str, object]]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), json.loads(body)

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the proxy closed the connection")
        self.buf += data


@pytest.fixture(scope="module")
def one_thread(upstream: FakeUpstream) -> Iterator[ProxyServer]:
    """One worker with a single thread: a thread held by one client would starve every other."""
    with ProxyServer(proxy_config(upstream), threads=1) as server:
        yield server


def connect(server: ProxyServer) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock, Reader(sock)


def test_requests_sent_back_to_back_on_one_connection(one_thread: ProxyServer) -> None:
    sock, reader = connect(one_thread)
    with sock:
        for _ in range(30):
            sock.sendall(request_bytes(one_thread.port))
            status, message = reader.response()
            assert status == 200 and message["type"] == "message"


def test_pipelined_requests_are_answered_in_order(one_thread: ProxyServer) -> None:
    sock, reader = connect(one_thread)
    bodies = [json.dumps({**json.loads(BODY), "messages": [{"role": "user", "content": f"n{i}"}]}).encode() for i in range(3)]
    with sock:
        sock.sendall(b"".join(request_bytes(one_thread.port, body) for body in bodies))
        texts = []
        for _ in bodies:
            status, message = reader.response()
            assert status == 200
            texts.append(message["content"][0]["text"])  # type: ignore[index]
    assert texts == ["echo: n0", "echo: n1", "echo: n2"]


def test_a_request_after_a_pause_is_answered(one_thread: ProxyServer) -> None:
    sock, reader = connect(one_thread)
    with sock:
        for pause in (0.0, 0.05, 0.3, 0.0):
            time.sleep(pause)
            sock.sendall(request_bytes(one_thread.port))
            assert reader.response()[0] == 200


def test_an_idle_kept_alive_client_does_not_hold_the_only_thread(one_thread: ProxyServer) -> None:
    idle, idle_reader = connect(one_thread)
    with idle:
        idle.sendall(request_bytes(one_thread.port))
        assert idle_reader.response()[0] == 200
        # `idle` now says nothing more, and keeps its connection open
        for _ in range(5):
            other, other_reader = connect(one_thread)
            with other:
                other.settimeout(5)  # a thread stuck waiting on `idle` would leave this unanswered
                other.sendall(request_bytes(one_thread.port))
                assert other_reader.response()[0] == 200
        idle.sendall(request_bytes(one_thread.port))  # and it is still served when it speaks again
        assert idle_reader.response()[0] == 200


def test_readiness_checks_work_past_select_s_descriptor_limit() -> None:
    import resource

    from claude_proxy._poll import readable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("cannot open more than 1,024 descriptors here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [socket.socket() for _ in range(1030)]  # a busy worker's sockets
    try:
        a, b = socket.socketpair()
        with a, b:
            assert a.fileno() > 1024
            assert not readable(a, 0.01, on_error=True)
            b.send(b"x")
            assert readable(a, 0.01, on_error=False)
    finally:
        for sock in filler:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- new connections spread over the workers ---------------------------------------------------


def test_connections_arriving_one_at_a_time_are_spread_over_the_workers(upstream: FakeUpstream) -> None:
    """Kept-alive connections stay with the worker that accepted them. gunicorn's workers all
    wake for each connection and the same one usually wins (4-6 of 16 went to the other);
    waiting in line, idle workers take turns (a fast-path item: pinned on, whatever the run's switch)."""
    with ProxyServer(proxy_config(upstream), workers=2, env={ENV: "1"}) as server:
        assert server.process is not None
        workers = children(server.process.pid)
        assert len(workers) == 2
        time.sleep(1.0)  # both workers up and waiting
        for _ in range(2):
            held = []
            try:
                for _ in range(16):
                    sock, reader = connect(server)
                    held.append(sock)
                    sock.sendall(request_bytes(server.port))
                    status, message = reader.response()
                    assert status == 200 and message["type"] == "message"
                    time.sleep(0.02)  # each arrives while both workers are idle
                split = client_connections(workers, server.port)
                assert sum(split) == 16
                assert max(split) - min(split) <= 2, split
            finally:
                for sock in held:
                    sock.close()
            time.sleep(0.3)  # the closed connections are let go of before the next round


def test_a_connection_that_never_sent_a_request_does_not_hold_a_stopping_worker(upstream: FakeUpstream) -> None:
    """A browser preconnects (the usage page's Chromium did) and may keep that socket for minutes. gthread
    parks a connection after 5 s without a first request and counts it until its keepalive timeout (75 s),
    and its graceful stop waits for every counted connection: SIGTERM took the whole graceful timeout
    (30 s), then the master killed the worker. Now the stop closes it after STOP_PENDING_LINGER (2 s)."""
    server = ProxyServer(proxy_config(upstream)).start()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        time.sleep(6)  # past gthread's 5 s wait for a first request: the connection is parked
        assert server.stop(timeout=20) == 0, server.output()  # a clean exit, not a kill at the bound
        assert idle.recv(1) == b""  # the worker closed it
    finally:
        idle.close()
        server.stop()
