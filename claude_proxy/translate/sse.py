"""Incremental Server-Sent Events parsing and formatting (bytes in, events out; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .jsonio import dumps, loads

__all__ = ["SSEError", "SSEEvent", "SSEParser", "dumps", "format_event", "format_events", "loads"]

DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEError(ValueError):
    """The byte stream is not SSE we can read (e.g. one event beyond the size limit)."""


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Feed bytes as they arrive; get back the complete events they finish.

    Follows the WHATWG rules that matter for API streams: comment lines (":…") are
    skipped, "data:" with or without a space, multi-line data joined with "\\n",
    CRLF/LF/CR line ends, and an event is dispatched on a blank line.
    """

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buffer = b""
        self._tail: list[bytes] = []  # pieces of an unfinished line, joined once its end arrives
        self._tail_size = 0
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._size = 0
        self._max = max_event_bytes
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:  # keep a pending CR: the LF of its CRLF may still come
            return []
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        if b"\n" not in chunk and b"\r" not in chunk:  # a long line arriving in pieces: no quadratic re-joins
            self._tail.append(chunk)
            self._tail_size += len(chunk)
            if len(self._buffer) + self._tail_size + self._size > self._max:
                raise SSEError(f"an SSE event exceeded {self._max} bytes")
            return []
        data = self._buffer + b"".join(self._tail) + chunk
        self._tail, self._tail_size = [], 0
        events: list[SSEEvent] = []
        start = 0
        length = len(data)
        while start < length:
            nl = data.find(b"\n", start)
            cr = data.find(b"\r", start, nl if nl != -1 else length)
            if cr != -1:
                end, step = cr, 1
                if cr + 1 < length and data[cr + 1 : cr + 2] == b"\n":
                    step = 2
                elif cr + 1 == length:
                    self._pending_cr = True
            elif nl != -1:
                end, step = nl, 1
            else:
                break
            self._line(data[start:end], events)
            start = end + step
        self._buffer = data[start:]
        if len(self._buffer) + self._size > self._max:
            raise SSEError(f"an SSE event exceeded {self._max} bytes")
        return events

    def close(self) -> list[SSEEvent]:
        """End of input: an event still being built is dispatched (streams that just stop)."""
        events: list[SSEEvent] = []
        if self._tail:
            self._buffer += b"".join(self._tail)
            self._tail, self._tail_size = [], 0
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._dispatch(events)
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if not raw:
            self._dispatch(events)
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", "replace")
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(value)
            if self._size > self._max:
                raise SSEError(f"an SSE event exceeded {self._max} bytes")
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data:
            events.append(SSEEvent("\n".join(self._data), self._event or "message", self._id))
        self._data = []
        self._event = ""
        self._size = 0


def format_event(event: dict[str, Any]) -> bytes:
    """One Anthropic event dict as SSE bytes (the event name is its "type")."""
    return b"event: " + event["type"].encode() + b"\ndata: " + dumps(event) + b"\n\n"


def format_events(events: list[dict[str, Any]]) -> bytes:
    return b"".join(format_event(e) for e in events)
