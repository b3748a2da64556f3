"""A streamed body read through urllib3's public API only (`raw.read1`), for when the fast path is
off or does not take a response (compressed, a test double, the self-check said no).

http.client buffers what it reads ahead, and nothing public says whether the next `read1` would
wait for the network; a poll of the socket cannot see that buffer. So the blocking reads run on a
helper thread, and the stream waits for them with a timeout: silence becomes pings, and the idle
limit and the deadline hold, without touching any library's insides. It costs a thread per stream
and a queue hand-off per read, which is why the fast path exists.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

READ_SIZE = 1 << 16


class PublicBody:
    """`read(timeout) -> bytes | None`, `done`, `finish(wait) -> bool`, like the fast path's SocketBody."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.done = False
        self._queue: queue.SimpleQueue[bytes | BaseException] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _pump(self) -> None:
        try:
            while True:
                data = self.raw.read1(READ_SIZE, decode_content=True)
                self._queue.put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread, which maps it
            self._queue.put(exc)

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
            self._thread = threading.Thread(target=self._pump, name="claude-proxy-body", daemon=True)
            self._thread.start()
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
        connection back in its pool itself); otherwise the reading thread is woken and let go."""
        until = time.monotonic() + wait
        try:
            while not self.done:
                if self.read(max(0.0, until - time.monotonic())) is None:
                    break
        except Exception:
            return False
        if not self.done:
            self.abandon()
        return self.done

    def abandon(self) -> None:
        """Wake a read blocked on the socket, so its thread ends now rather than at the read timeout."""
        if self._thread is None or not self._thread.is_alive():
            return
        sock = getattr(self.raw.connection, "sock", None)
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
