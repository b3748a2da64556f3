"""Whether a socket has something to read, within a timeout.

poll, not select: a busy worker's descriptors (hundreds of threads, their upstream sockets,
kept-alive clients) pass select's limit of 1024. Its own module so the gunicorn worker can use
it without importing `requests`.
"""

from __future__ import annotations

import select
from typing import Any


def readable(sock: Any, timeout: float, on_error: bool) -> bool:
    """True once `sock` is readable within `timeout` seconds; `on_error` if it cannot be polled."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    except (OSError, ValueError):
        return on_error
