"""A response body read from the connection's socket, past http.client.

http.client reads a chunked body a size line, a data part and a CRLF at a time, and knowing
whether the next read would block is not something it can say; under hundreds of paced streams
each extra syscall is a GIL hand-off between busy threads. Here one `recv` takes whatever has
arrived and `framing` removes the chunk framing (decided from the response's headers). At the
end of the body the connection is handed back to urllib3's pool just as http.client would leave it.

Private touches (docs/internals-ledger.md): `raw._fp` (http.client's response) for the bytes its
buffer already holds beyond the headers (`_fp.fp.read1`) and for closing it at the end of a body.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import time
from typing import Any

import requests

from claude_proxy.upstream.fastpath.framing import BodyDecoder, FramingError, decoder_from_headers, keeps_alive

READ_SIZE = 1 << 16


class SocketBody:
    """`read(timeout) -> bytes | None`, `done`, `finish(wait) -> bool`: the shape `client` reads any body through."""

    def __init__(self, raw: Any, sock: socket.socket, decoder: BodyDecoder, first: bytes, keep_alive: bool) -> None:
        self.raw = raw  # urllib3's response, not requests': it holds this body, and a cycle would outlive the request
        self.sock = sock
        self.decoder = decoder
        self.keep_alive = keep_alive
        self._first = first
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._poll: Any = select.poll()
        try:
            self._poll.register(sock, select.POLLIN)
        except (OSError, ValueError):
            self._poll = None  # closed already: the read goes straight to `recv`, which says so
        self.eof = False

    @classmethod
    def open(cls, response: requests.Response) -> SocketBody | None:
        """A SocketBody for a response nothing has read yet, or None when it must go through urllib3."""
        raw = response.raw
        sock = socket_of(raw)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if sock is None or encoding not in ("", "identity") or raw.tell():  # compressed, or urllib3 has begun
            return None
        fp = raw._fp.fp  # http.client's buffered reader: it may hold the first body bytes already
        if fp is None:
            return None
        try:  # whatever http.client's buffer already holds beyond the headers comes first
            sock.settimeout(0.0)
            first = fp.read1(READ_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            first = b""
        except (OSError, ValueError):
            first = b""  # the socket's own read below meets the same error and reports it
        method = response.request.method if response.request is not None else None
        decoder = decoder_from_headers(response.headers, response.status_code, method)
        return cls(raw, sock, decoder, first, keeps_alive(response.headers, getattr(raw, "version", 11)))

    @property
    def done(self) -> bool:
        return self.decoder.done or self.eof

    def read(self, timeout: float) -> bytes | None:
        """Payload bytes (b"" if only framing arrived), or None if nothing came within `timeout`."""
        if self._first:
            data, self._first = self._first, b""
        else:
            received = self._recv(timeout)
            if received is None:
                return None
            data = received
            if not data:
                self.eof = True
                if not self.decoder.eof_ok():
                    raise http.client.IncompleteRead(b"")
                return b""
        return self.decoder.feed(data)

    def _recv(self, timeout: float) -> bytes | None:
        """What has arrived, waiting for it first (the socket is non-blocking from `open` on).

        Waiting inside `recv` would hold its 64 KB buffer for the whole wait: with 128 quiet
        streams in a worker that is 8 MB, in heap pages earlier requests have already made
        resident. A poll holds nothing; the read then takes what is there at once.
        """
        until = time.monotonic() + timeout
        while True:
            ready = self._poll is None or (self._tls and self.sock.pending())
            if not ready and not self._poll.poll(max(0.0, timeout) * 1000):
                return None
            try:
                return self.sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                timeout = until - time.monotonic()  # only part of a TLS record so far: wait for the rest
                if timeout <= 0:
                    return None

    def abandon(self) -> None:
        """Nothing to wake: reads here never block past their own timeout."""

    def let_go(self, grace: float = 0.0) -> None:
        """Nothing to wake (see `abandon`)."""

    def finish(self, wait: float) -> bool:
        """Read the rest of a body whose answer is complete (usually only `[DONE]` and the last
        chunk) for up to `wait`; True if the connection went back to the pool."""
        until = time.monotonic() + wait
        try:
            while not self.done:
                left = until - time.monotonic()
                if left <= 0 or self.read(left) is None:
                    return False
        except (OSError, FramingError, http.client.HTTPException):
            return False
        if self.eof or self.decoder.overrun or not self.keep_alive:
            return False
        self.raw._fp.close()  # as http.client does at the end of a body: the socket stays open
        self.raw.release_conn()
        return True


def socket_of(raw: Any) -> socket.socket | None:
    """The response's socket, through urllib3's public `connection` (None once it went back to the pool)."""
    sock = getattr(raw.connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None
