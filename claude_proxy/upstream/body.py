"""A streamed body read through urllib3's public API only (`raw.read1`), for when the fast path is
off or does not take a response (compressed, a test double, the self-check said no).

http.client buffers what it reads ahead, and nothing public says whether the next `read1` would
wait for the network; a poll of the socket cannot see that buffer. So the blocking reads run on a
helper thread, and the stream waits for them with a timeout: silence becomes pings, and the idle
limit and the deadline hold, without touching any library's insides. It costs a thread per stream
and a queue hand-off per read, which is why the fast path exists.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from typing import Any

READ_SIZE = 1 << 16
JOIN_LIMIT = 2.0  # after a shutdown the helper's read returns at once; this only bounds a surprise


class PublicBody:
    """`read(timeout) -> bytes | None`, `done`, `finish(wait) -> bool`, like the fast path's SocketBody."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.done = False
        self._queue: queue.SimpleQueue[bytes | BaseException] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # A second descriptor of the same socket: `response.close()` closes the first while the
        # helper may sit in `recv`, which a close from another thread does not wake; a shutdown
        # through this one does (`abandon`). Closed as soon as the helper is done.
        self._wake: socket.socket | None = None
        self._ended = False
        self._finished = False
        self._clean = False
        self._lock = threading.Lock()

    def _start(self) -> None:
        sock = getattr(self.raw.connection, "sock", None)
        if isinstance(sock, socket.socket):
            try:  # a plain socket on a duplicate descriptor: an SSLSocket has no dup(), and a shutdown needs no TLS
                self._wake = socket.socket(fileno=os.dup(sock.fileno()))
            except OSError:
                self._wake = None
        self._thread = threading.Thread(target=self._pump, name="claude-proxy-body", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while True:
                data = self.raw.read1(READ_SIZE, decode_content=True)
                if not data:
                    self._end()  # before the reader can hand the connection to another request
                self._queue.put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread, which maps it
            self._end()
            self._queue.put(exc)

    def _end(self) -> None:
        with self._lock:
            self._ended = True
            if self._wake is not None:
                self._wake.close()
                self._wake = None

    def _take(self, item: bytes | BaseException) -> bytes:
        if isinstance(item, BaseException):
            self.done = True
            raise item
        if not item:
            self.done = True
        return item

    def read(self, timeout: float) -> bytes | None:
        """What arrived (everything already read, joined), b"" at the end, or None after `timeout`."""
        if self.done:
            return b""
        if self._thread is None:
            self._start()
        try:
            first = self._take(self._queue.get(timeout=max(timeout, 0.0)))
        except queue.Empty:
            return None
        parts = [first]
        size = len(first)
        while first and size < READ_SIZE:  # events that came together are translated together
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, BaseException):
                self._queue.put(item)  # raised on the next read: these bytes go out first
                break
            more = self._take(item)
            if not more:
                break
            parts.append(more)
            size += len(more)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def finish(self, wait: float) -> bool:
        """Read to the end for up to `wait`: True if the body ended cleanly (urllib3 then put the
        connection back in its pool itself); otherwise the helper is woken and let go, so the
        caller may close the response. Called again, it gives the same answer."""
        if self._finished:
            return self._clean
        self._finished = True
        until = time.monotonic() + wait
        try:
            while not self.done:
                if self.read(max(0.0, until - time.monotonic())) is None:
                    break
            self._clean = self.done
        except Exception:
            self._clean = False
        if not self.done:
            self.abandon()
        return self._clean

    def let_go(self, grace: float = 0.05) -> None:
        """The stream stopped reading before the end; `release()` or `response.close()` comes next.
        Both must find the helper gone: http.client's reader is not for two threads (closing it
        under a running read made urllib3 pool a half-read connection). So the rest of the body
        gets `grace` to arrive (a complete answer's last chunk usually has), else the helper is
        woken and waited for."""
        if self._thread is not None:
            self.finish(grace)

    def abandon(self) -> None:
        """Wake a read blocked on the socket (a shutdown through our own descriptor) and wait for
        the helper to end, so nothing reads the response once this returns."""
        with self._lock:
            if not self._ended and self._wake is not None:
                try:
                    self._wake.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_LIMIT)
