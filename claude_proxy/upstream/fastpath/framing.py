"""HTTP/1.1 response body framing as pure decoders: bytes in as they arrive, payload out.

`socketbody.py` reads streamed bodies straight from the socket (one `recv` per arrival instead of
http.client's size-line/data/CRLF reads, and no probing whether a read would block), so the
framing http.client would have undone is undone here. No I/O: every split of the input gives the
same payload, which is what the tests check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_LINE = 64 << 10  # a chunk-size or trailer line longer than this is not HTTP
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class FramingError(ValueError):
    """The body is not valid HTTP/1.1 framing: the connection cannot be trusted further."""


class BodyDecoder:
    """Common surface: `feed(bytes) -> payload`, `done`, `eof_ok()`, `overrun`."""

    done = False
    overrun = False  # bytes arrived after the body ended: the connection must not be reused

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def eof_ok(self) -> bool:
        """Whether the peer closing the connection now ends the body rather than cutting it."""
        return self.done


class ChunkedDecoder(BodyDecoder):
    """`Transfer-Encoding: chunked`, tolerant of bare LF line ends; extensions and trailers ignored."""

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0
        self._line = b""

    def feed(self, data: bytes) -> bytes:
        if self._line:
            data = self._line + data
            self._line = b""
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._left, end - pos)
                out.append(data if take == end else data[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
                continue
            if state == _DONE:
                self.overrun = True
                break
            eol = data.find(b"\n", pos)
            if eol < 0:
                self._line = data[pos:]
                if len(self._line) > MAX_LINE:
                    raise FramingError("chunk framing line too long")
                break
            line = data[pos:eol]
            pos = eol + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if state == _SIZE:
                size_text = line.split(b";", 1)[0].strip(b" \t")
                if not _HEX.fullmatch(size_text):
                    raise FramingError(f"bad chunk size line {line[:40]!r}")
                self._left = int(size_text, 16)
                self._state = _DATA if self._left else _TRAILER
            elif state == _DATA_END:
                if line:
                    raise FramingError("chunk data longer than its size")
                self._state = _SIZE
            elif not line:  # _TRAILER: an empty line ends the body
                self._state = _DONE
                self.done = True
        return out[0] if len(out) == 1 else b"".join(out)


class LengthDecoder(BodyDecoder):
    """`Content-Length: N`."""

    def __init__(self, length: int) -> None:
        self._left = length
        self.done = length == 0

    def feed(self, data: bytes) -> bytes:
        if len(data) <= self._left:
            self._left -= len(data)
            self.done = not self._left
            return data
        self.overrun = True
        data, self._left, self.done = data[: self._left], 0, True
        return data


class UntilCloseDecoder(BodyDecoder):
    """No length and not chunked: the body is everything until the server closes."""

    def feed(self, data: bytes) -> bytes:
        return data

    def eof_ok(self) -> bool:
        return True


def decoder_for(chunked: bool, length: int | None) -> BodyDecoder:
    if chunked:
        return ChunkedDecoder()
    if length is not None:
        return LengthDecoder(length)
    return UntilCloseDecoder()


def _tokens(value: str | None) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def decoder_from_headers(headers: Mapping[str, str], status: int, method: str | None = None) -> BodyDecoder:
    """The body's framing decided from the response head (RFC 9112 §6.3), as http.client decides it."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return LengthDecoder(0)
    codings = _tokens(headers.get("transfer-encoding"))
    if codings:
        return ChunkedDecoder() if codings[-1] == "chunked" else UntilCloseDecoder()
    lengths = {v.strip() for v in (headers.get("content-length") or "").split(",") if v.strip()}
    if len(lengths) == 1:
        (text,) = lengths
        if text.isdigit():
            return LengthDecoder(int(text))
    return UntilCloseDecoder()  # no length, or one that cannot be trusted: the body ends at close


def keeps_alive(headers: Mapping[str, str], version: int) -> bool:
    """Whether the connection may carry another request after this body (http.client's `will_close`, negated)."""
    connection = _tokens(headers.get("connection"))
    if "close" in connection:
        return False
    if version >= 11:
        return True
    return "keep-alive" in connection or "keep-alive" in _tokens(headers.get("proxy-connection")) or bool(
        headers.get("keep-alive")
    )
