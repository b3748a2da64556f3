"""Transport failures are named by exception type and errno, from the chain requests and urllib3
build, never from the exception's text (which carries URLs and credentials)."""

from __future__ import annotations

import errno
import http.client
import socket
import ssl

import pytest
import requests
import urllib3.exceptions

from claude_proxy.upstream.failures import chain, reason
from claude_proxy.upstream.fastpath.framing import FramingError

SECRET = "http://user:hunter2@up.test/v1?key=sk-live-SECRET"


def wrapped(cause: BaseException, outer: type[requests.RequestException] = requests.ConnectionError) -> BaseException:
    """requests' exception around urllib3's MaxRetryError around `cause`, as a failed send raises it."""
    return outer(urllib3.exceptions.MaxRetryError(None, SECRET, cause))


def with_cause(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


CASES = [
    (wrapped(with_cause(urllib3.exceptions.NewConnectionError(None, "x"), ConnectionRefusedError(errno.ECONNREFUSED, "r"))), "connection refused"),
    (wrapped(with_cause(urllib3.exceptions.NameResolutionError("up.test", None, socket.gaierror(-2, "n")), socket.gaierror(-2, "n"))), "host name could not be resolved"),
    (wrapped(urllib3.exceptions.SSLError(ssl.SSLCertVerificationError(1, "verify failed")), requests.exceptions.SSLError), "TLS certificate error"),
    (wrapped(urllib3.exceptions.SSLError(ssl.SSLError(1, "wrong version")), requests.exceptions.SSLError), "TLS error"),
    (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(errno.ECONNRESET, "p"))), "connection reset"),
    (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", http.client.RemoteDisconnected("r"))), "connection closed without a response"),
    (urllib3.exceptions.ProtocolError("Connection broken", http.client.IncompleteRead(b"")), "connection closed before the response was complete"),
    (urllib3.exceptions.ProtocolError("x", urllib3.exceptions.InvalidChunkLength(urllib3.HTTPResponse(b""), b"zz")), "malformed chunked body"),
    (FramingError("bad chunk size line"), "malformed chunked body"),
    (http.client.IncompleteRead(b""), "connection closed before the response was complete"),
    (OSError(errno.ENETUNREACH, "n"), "network unreachable"),
    (wrapped(with_cause(urllib3.exceptions.NewConnectionError(None, "x"), OSError(errno.EHOSTUNREACH, "h"))), "host unreachable"),
    (BrokenPipeError(errno.EPIPE, "b"), "connection closed"),
    (requests.exceptions.ChunkedEncodingError(urllib3.exceptions.ProtocolError("Response ended prematurely")), "connection broken"),
    (requests.ConnectionError(SECRET), "connection failed"),
]


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=[c[1] + f"-{i}" for i, c in enumerate(CASES)])
def test_failures_are_named_by_type(exc: BaseException, expected: str) -> None:
    assert reason(exc) == expected


def test_the_text_of_an_exception_is_never_read() -> None:
    assert reason(ValueError("connection refused: ssl certificate reset")) == "ValueError"
    assert reason(requests.ConnectionError("Name or service not known")) == "connection failed"


def test_names_carry_no_secrets() -> None:
    for exc, _ in CASES:
        assert "hunter2" not in reason(exc) and "SECRET" not in reason(exc)


def test_the_chain_follows_causes_contexts_reasons_and_args_without_looping() -> None:
    inner = ConnectionResetError(errno.ECONNRESET, "r")
    outer = urllib3.exceptions.ProtocolError("broken", inner)
    inner.__context__ = outer  # a cycle
    assert list(chain(outer)) == [outer, inner]
