"""The gunicorn worker the `claude-proxy` command runs: gthread, with two changes.

- A firmer graceful stop. On SIGTERM gunicorn's threaded worker stops accepting but keeps
  its listening socket open until in-flight requests finish, so a new client's connection
  is completed by the kernel and then waits unanswered in the backlog for up to the
  graceful timeout. This worker closes its listening sockets as soon as it stops accepting:
  new connections are refused at once, while in-flight streams still run to their end.
- A stopping worker closes connections that never sent a request (a browser's preconnect, kept
  open for minutes) after `STOP_PENDING_LINGER`. gthread parks such a connection after 5 s
  without data and counts it until its keepalive timeout (75 s), and its graceful stop waits
  for every counted connection: one open usage page held each stop for the whole graceful
  timeout, and then the master killed the worker.
- HTTP that never reaches the app (a malformed request line, a URI or headers over
  gunicorn's limits) is answered with an Anthropic error envelope instead of an HTML page.
- A kept-alive connection whose next request is already on its way is served by the same
  thread. gunicorn hands every finished keep-alive connection back to its main thread (a pipe
  write, an epoll registration, a wake-up, a thread-pool submit and another wake-up, each a GIL
  hand-off) even when the client sends its next request a few hundred microseconds later, as
  Claude Code's tool loops, nginx's upstream keep-alive and load generators do.
- A response's head goes out in the same `send` as its first body bytes (`CoalescingResponse`):
  gunicorn sends them separately, a second syscall and TCP segment for every answer.
- Threads end after `THREAD_IDLE_TIMEOUT` without work (`threadpool.ElasticThreadPool`): gthread's
  pool keeps every thread it ever started, so a worker stayed at the most threads it ever ran.
- Idle workers take turns at new connections (`_wait_in_line`): gunicorn's all woke for each
  one and mostly the same worker won, so kept-alive connections piled up on one worker's GIL.
- Freed heap memory goes back to the operating system (`memory.Trimmer`, once a second from
  the main loop), so a worker's RSS follows its current load, not the largest it has seen; and
  `requests`' encoding detector, which the proxy never uses, is loaded only if something does.

Each departure that leans on gunicorn's internals is an item of docs/internals-ledger.md
("server/"), checked against the installed gunicorn when a worker starts (`selfcheck`): an item
whose ground is missing is off, with one log line. `CLAUDE_PROXY_FAST_PATHS=0` (or
`[server] fast_paths = false`) turns every speed item off (`switch`).
"""

from __future__ import annotations

import select
import selectors
import time
from typing import Any

import orjson
from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.gthread import ThreadWorker

from claude_proxy._poll import readable
from claude_proxy.server import selfcheck
from claude_proxy.server.switch import fast_paths_enabled
from claude_proxy.server.threadpool import ElasticThreadPool
from claude_proxy.translate.errors import envelope, error_type_for_status

# How long a thread waits for a kept-alive client's next request before handing the connection
# back to gunicorn's main loop: about the round trip of a client that answers at once.
KEEPALIVE_LINGER = 0.002

# Linux: of the workers waiting on a listening socket, only one is woken for a new connection.
EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)

# How long a stopping worker keeps a connection that has not sent a request yet: one on its way
# is still served (gunicorn 27.0.1 gives its kept-alive connections the same 2 s on a stop).
STOP_PENDING_LINGER = 2.0

# How long a request thread waits for work before it ends (`threadpool.ElasticThreadPool`).
THREAD_IDLE_TIMEOUT = 10.0


def write_envelope(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's `util.write_error`, speaking the Anthropic error format."""
    body = orjson.dumps(envelope(error_type_for_status(status), message or reason))
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class _Captured:
    """Stands in for the socket while gunicorn formats the response head, to keep the bytes."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


class _Prefixed:
    """The socket, with `head` going out in front of the next `sendall`."""

    def __init__(self, sock: Any, head: bytes) -> None:
        self.sock = sock
        self.head = head

    def sendall(self, data: bytes) -> None:
        head, self.head = self.head, b""
        self.sock.sendall(head + data)

    def __getattr__(self, name: str) -> Any:
        """Any other use of the socket gets it as it is, the head sent first."""
        if self.head:
            head, self.head = self.head, b""
            self.sock.sendall(head)
        return getattr(self.sock, name)


class CoalescingResponse(wsgi.Response):
    """gunicorn's response writer, with the head sent together with the first body bytes.

    gunicorn sends the status line and headers in one `send` and the body in another: two
    syscalls (each a GIL hand-off between busy threads) and two TCP segments for every
    non-streamed answer. gunicorn itself sends the head only on the first body write, so holding
    it until then changes nothing a client can see.
    """

    _head = b""
    _direct = False  # sendfile writes past `_emit_body`: the head goes straight out then

    def send_headers(self) -> None:
        if self.headers_sent or self._direct:
            return super().send_headers()
        sock, captured = self.sock, _Captured()
        self.sock = captured
        try:
            super().send_headers()  # gunicorn's own formatting, into `captured`
        finally:
            self.sock = sock
        self._head = captured.data

    def _with_head(self, send: Any, *args: Any) -> Any:
        if not self._head:
            return send(*args)
        sock = self.sock
        prefixed = self.sock = _Prefixed(sock, self._head)
        self._head = b""
        try:
            return send(*args)
        finally:
            self.sock = sock
            if prefixed.head:  # nothing was sent after all: the head goes alone
                sock.sendall(prefixed.head)

    def _emit_body(self, data: bytes) -> None:
        self._with_head(super()._emit_body, data)

    def sendfile(self, respiter: Any) -> Any:
        if self._head:
            head, self._head = self._head, b""
            self.sock.sendall(head)
        self._direct = True
        try:
            return super().sendfile(respiter)
        finally:
            self._direct = False

    def close(self) -> None:
        if not self.headers_sent:  # no body at all (HEAD, 204, an empty iterator): the head alone
            self.send_headers()
        self._with_head(super().close)


class GracefulThreadWorker(ThreadWorker):
    # The ledger items (`selfcheck.ITEMS`) this worker runs; decided once in `init_process`.
    items: frozenset[str] = frozenset()
    linger = False  # "keepalive_linger", read on every request: a plain attribute
    turn_taking = False

    def init_process(self) -> None:
        from claude_proxy.server.memory import (  # the master has no heap of requests to trim
            Trimmer,
            defer_charset_detection,
            defer_redis_asyncio,
        )

        config = getattr(self.app, "proxy_config", None)  # `serve()`'s; None under `gunicorn wsgi:app`
        fast = fast_paths_enabled(config)
        self.items, note = selfcheck.active(fast)
        if note:
            self.log.warning(note)
        defer_charset_detection(config)  # before the app (and with it requests) is loaded
        defer_redis_asyncio(config)  # before the teams store (and with it redis) is loaded
        if "envelope_errors" in self.items:
            util.write_error = write_envelope  # this process only: the worker is ours after the fork
        if "coalescing_response" in self.items:
            wsgi.Response = CoalescingResponse
        self.linger = "keepalive_linger" in self.items
        self.turn_taking = "turn_taking" in self.items
        self.trimmer = Trimmer()
        super().init_process()

    def notify(self) -> None:
        super().notify()  # the main loop's once-per-wake-up call: a good place for housekeeping
        self.trimmer.maybe()

    def set_accept_enabled(self, enabled: bool) -> None:
        """gunicorn ≥ 24 only (older ones never call it; `selfcheck` then has both items off)."""
        accepting = self._accepting
        super().set_accept_enabled(enabled)
        if enabled and not accepting and self.turn_taking:
            for listener in self.sockets:
                self._wait_in_line(listener)
        if enabled or self.alive:
            return  # below: shutting down, not at worker_connections
        if "firm_stop" in self.items:
            for listener in self.sockets:
                listener.close()
        if "stop_pending" in self.items:
            self._cap_pending(time.monotonic() + STOP_PENDING_LINGER)

    def _cap_pending(self, deadline: float) -> None:
        """Connections parked before their first request close by `deadline` (gthread's
        `murder_pending`, run by its stop loop, closes them); the deque stays sorted by timeout."""
        for conn in self.pending_conns:
            conn.timeout = min(conn.timeout, deadline)

    def handle(self, conn: Any) -> Any:
        keep = super().handle(conn)
        if not self.linger:
            return keep
        while keep is True and self.alive and not self._others_waiting():
            if not conn.parser.unreader.buf.getvalue() and not readable(conn.sock, KEEPALIVE_LINGER, on_error=False):
                break  # quiet: the main loop watches it, without holding a thread
            keep = super().handle(conn)
        return keep

    def accept(self, *args: Any) -> None:
        """gthread's `accept`, whichever shape the installed gunicorn calls (`(listener)` from 24,
        `(server, listener)` before): a fixed signature crash-looped every worker on 22/23."""
        if not self.turn_taking:
            super().accept(*args)
            return
        listener = args[-1]
        held = self.nr_conns
        super().accept(listener)
        if self.nr_conns > held and self._accepting:
            self._wait_in_line(listener)  # to the back: the next connection goes to another worker

    def _wait_in_line(self, listener: Any) -> None:
        """Wait on `listener` exclusively, behind the workers already waiting on it.

        gunicorn's workers all wait on the listening socket and all are woken for each new
        connection; the kernel wakes them newest registration first, and whichever runs first
        takes it, so connections arriving one at a time went mostly to one worker (10-12 of 16)
        and kept-alive ones stay where they landed. Registered exclusively, one waiting worker
        is woken per connection, the first in line (a busy worker, not waiting, is passed over),
        and a worker that has taken one joins the back of the line: idle workers take turns.
        """
        epoll = getattr(self.poller, "_selector", None)
        if not EPOLLEXCLUSIVE or not isinstance(self.poller, selectors.EpollSelector) or epoll is None:
            return  # not Linux's epoll: gunicorn's own registration stays
        fd = listener.fileno()
        try:
            epoll.unregister(fd)  # the selector's own entry for it stays: the callback is unchanged
            epoll.register(fd, select.EPOLLIN | EPOLLEXCLUSIVE)
        except OSError:  # EINVAL on kernels before 4.5: back to a plain registration
            try:
                epoll.register(fd, select.EPOLLIN)
            except OSError:
                pass

    def get_thread_pool(self) -> ElasticThreadPool:
        return ElasticThreadPool(self.cfg.threads, idle_timeout=THREAD_IDLE_TIMEOUT, name="request")

    def _others_waiting(self) -> bool:
        """Connections queued for a thread come first: no lingering then."""
        return bool(self.tpool.pending())

