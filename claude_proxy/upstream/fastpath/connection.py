"""The upstream's connections: urllib3's, with a request's head and body in one send, and a
response's headers read without the `email` parser on the common path.

Every proxied call is one request and one response on a kept-alive connection, so what
`http.client` does per call is paid on every token a team generates:

- urllib3 writes the head (`endheaders`) and then the body, two `send`s: two syscalls, two
  TCP segments (`TCP_NODELAY` is on), and a GIL hand-off around each. Here the head waits for
  the body and both go in one `sendall`.
- `http.client` parses every response's headers with the `email` package's feed parser (about
  a sixth of the whole upstream call). Headers that are plainly `Name: value` lines, which is
  what every provider sends, are read straight into the same `HTTPMessage` the parser would
  build; anything else (folded lines, a line without a colon, a missing blank line) goes
  through the standard parser, so its answers and its defects are unchanged.

Only the header parser differs: the response's `begin` is the standard library's own code.
`requests` and urllib3 stay in charge of pooling, timeouts, retries and errors.
"""

from __future__ import annotations

import http.client
import io
import re
import types
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

MAX_LINE = 65536  # http.client's limits for one header line and for the number of lines (where it
MAX_HEADERS = 100  # has none of its own: its `_MAXLINE` / `_MAXHEADERS` are read per call, as apps raise them)

# A header line the `email` parser would read as exactly one `name: value` header: a name of
# visible characters other than ':', a colon, and a value with no line break inside.
_PLAIN_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r?\n")
_END = (b"\r\n", b"\n")


def read_header_lines(fp: Any, max_headers: int | None = None) -> list[bytes]:
    """The header block's lines up to and including the blank line, with http.client's limits."""
    max_line = getattr(http.client, "_MAXLINE", MAX_LINE)
    max_headers = max_headers or getattr(http.client, "_MAXHEADERS", MAX_HEADERS)
    lines: list[bytes] = []
    while True:
        line = fp.readline(max_line + 1)
        if len(line) > max_line:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > max_headers:
            raise http.client.HTTPException(f"got more than {max_headers} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def plain_headers(lines: list[bytes], message_class: type[Any] = http.client.HTTPMessage) -> Any | None:
    """The message the `email` parser makes of `lines`, or None where only it knows the answer."""
    if not lines or lines[-1] not in _END:
        return None
    message = message_class()
    parse = message.policy.header_source_parse  # compat32's: what the parser itself does with a header
    for line in lines[:-1]:
        if not _PLAIN_LINE.fullmatch(line):
            return None
        message.set_raw(*parse([line.decode("iso-8859-1")]))
    message.set_payload("")
    return message


def parse_headers(fp: Any, _class: type[Any] = http.client.HTTPMessage, **options: Any) -> Any:
    """`http.client.parse_headers`, without the `email` parser for plain header blocks."""
    lines = read_header_lines(fp, options.get("_max_headers"))
    message = plain_headers(lines, _class)
    if message is None:
        return http.client.parse_headers(io.BytesIO(b"".join(lines)), _class, **options)
    return message


def _begin_with(header_parser: Any) -> Any:
    """`HTTPResponse.begin`, the standard library's code as it is, reading headers with `header_parser`."""
    begin = http.client.HTTPResponse.begin
    names = {**vars(http.client), "parse_headers": header_parser}
    return types.FunctionType(begin.__code__, names, begin.__name__, begin.__defaults__, begin.__closure__)


class LeanHTTPResponse(http.client.HTTPResponse):
    begin = _begin_with(parse_headers)


class _OneSend:
    """A request's head held back until its body, then both in one `sendall`."""

    response_class = LeanHTTPResponse
    _held: bytes | None = None

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **options: Any) -> None:
        if not isinstance(body, bytes) or options.get("chunked"):
            return super().request(method, url, body, headers, **options)
        self._held = b""
        try:
            super().request(method, url, body, headers, **options)
        except BaseException:
            self._held = None  # the request failed: no half of it goes out
            raise
        held, self._held = self._held, None
        if held:  # the head of a request with an empty body
            super().send(held)

    def send(self, data: Any) -> None:
        if self._held is not None and isinstance(data, bytes):
            if not self._held:
                self._held = data  # the head: wait for the body
                return
            data, self._held = self._held + data, None  # one body chunk (bytes): nothing more to hold
        super().send(data)


class LeanHTTPConnection(_OneSend, HTTPConnection):
    pass


class LeanHTTPSConnection(_OneSend, HTTPSConnection):
    pass


class LeanHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = LeanHTTPConnection


class LeanHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = LeanHTTPSConnection


POOL_CLASSES = {"http": LeanHTTPConnectionPool, "https": LeanHTTPSConnectionPool}
