"""Transport failures named by exception type (and errno), never by the text of the exception.

requests wraps urllib3's errors, which wrap the socket's (`ConnectionError(MaxRetryError(reason=
NewConnectionError(...)))`, `ProtocolError("...", ConnectionResetError(...))`); the name comes
from the most telling exception anywhere in that chain, in the order of `TABLE`, as httpx maps
errors at its boundaries. The text of an exception is never used: it carries URLs (with any
credentials in them) and sometimes headers.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
from collections.abc import Iterator

import requests
import urllib3.exceptions

from claude_proxy.upstream.fastpath.framing import FramingError

# (exception types, errno values, reason), most specific first: the first row that matches any
# exception in the chain names the failure.
TABLE: tuple[tuple[tuple[type[BaseException], ...], frozenset[int], str], ...] = (
    ((ssl.SSLCertVerificationError,), frozenset(), "TLS certificate error"),
    ((ssl.SSLError, urllib3.exceptions.SSLError, requests.exceptions.SSLError), frozenset(), "TLS error"),
    ((urllib3.exceptions.NameResolutionError, socket.gaierror), frozenset(), "host name could not be resolved"),
    ((ConnectionRefusedError,), frozenset({errno.ECONNREFUSED}), "connection refused"),
    ((http.client.RemoteDisconnected,), frozenset(), "connection closed without a response"),  # before Reset: a subclass
    ((ConnectionResetError,), frozenset({errno.ECONNRESET}), "connection reset"),
    ((BrokenPipeError, ConnectionAbortedError), frozenset({errno.EPIPE, errno.ECONNABORTED}), "connection closed"),
    ((), frozenset({errno.ENETUNREACH}), "network unreachable"),
    ((), frozenset({errno.EHOSTUNREACH}), "host unreachable"),
    ((FramingError, urllib3.exceptions.InvalidChunkLength), frozenset(), "malformed chunked body"),
    (
        (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead),
        frozenset(),
        "connection closed before the response was complete",
    ),
    (
        (urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError, http.client.HTTPException),
        frozenset(),
        "connection broken",
    ),
    ((urllib3.exceptions.NewConnectionError, requests.exceptions.ConnectionError), frozenset(), "connection failed"),
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps: causes, contexts, urllib3's `reason`, exceptions among `args`."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = (current.__cause__, getattr(current, "reason", None), *current.args, current.__context__)
        todo.extend(w for w in wrapped if isinstance(w, BaseException))


def reason(exc: BaseException) -> str:
    """A short, secret-free name for a transport failure (the exception's class name if no row matches)."""
    found = list(chain(exc))
    for types, errnos, text in TABLE:
        for candidate in found:
            if types and isinstance(candidate, types):
                return text
            if errnos and isinstance(candidate, OSError) and candidate.errno in errnos:
                return text
    return type(exc).__name__
