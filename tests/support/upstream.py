"""A real, scriptable OpenAI-compatible HTTP/1.1 server for tests.

``FakeUpstream`` listens on 127.0.0.1 (free port) and serves requests from a hand-written HTTP/1.1 parser
running on raw sockets, so that every byte on the wire is under the test's control: chunked SSE streams
flushed item by item, truncated bodies, TCP resets, hangs before or after the headers.

Typical use::

    with FakeUpstream() as up:
        up.enqueue(Stream([chunk("Hel"), Sleep(0.1), chunk("lo", finish_reason="stop"), usage_chunk(3, 2)]))
        ...  # point the code under test at up.url
        assert up.requests[0].json["stream"] is True

Queued responses are served FIFO; when the queue is empty ``up.handler`` (or ``default_handler``) answers.
"""

from __future__ import annotations

import itertools
import json
import re
import select
import socket
import ssl
import struct
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Close",
    "FakeUpstream",
    "Handler",
    "Hang",
    "HangBeforeHeaders",
    "Headers",
    "Json",
    "RecordedRequest",
    "Reset",
    "ResetBeforeHeaders",
    "Response",
    "Sleep",
    "Stream",
    "StreamItem",
    "Text",
    "chunk",
    "closed_port",
    "completion",
    "default_handler",
    "free_port",
    "tool_call_delta",
    "usage_chunk",
]

HOST = "127.0.0.1"
POLL_INTERVAL = 0.02  # how often waits check for client EOF / server stop
_SELECT_INTERVAL = 0.05  # how often blocking reads/accepts check for server stop
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION_RE = re.compile(r"HTTP/1\.[01]")


# --------------------------------------------------------------------------------------------------------------------
# Stream items and responses
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sleep:
    """Stream item: pause for ``seconds`` (client disconnects are detected meanwhile)."""

    seconds: float


@dataclass(frozen=True)
class Hang:
    """Stream item: stop writing; keep the connection open until the client goes away or the server stops."""


@dataclass(frozen=True)
class Reset:
    """Stream item: abort the TCP connection with RST (SO_LINGER 0)."""


@dataclass(frozen=True)
class Close:
    """Stream item: close the connection cleanly (FIN) right now; for chunked bodies the 0-chunk is never sent."""


StreamItem = dict[str, Any] | str | bytes | Sleep | Hang | Reset | Close


@dataclass
class Json:
    """A JSON response with Content-Length."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Text:
    """A plain (or any ``content_type``) response with Content-Length."""

    body: str | bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"


@dataclass
class Stream:
    """An SSE response (``text/event-stream``).

    Items: dict -> ``data: <json>\\n\\n``; str/bytes -> written verbatim; ``Sleep``/``Hang``/``Reset``/``Close`` ->
    control actions. ``delay`` is slept before every item (and before the final ``[DONE]``). With ``done`` a
    ``data: [DONE]\\n\\n`` is appended. ``chunked=True``: ``Transfer-Encoding: chunked``, one chunk per item, flushed
    immediately (empty items are skipped, they would terminate the body); ``chunked=False``: ``Connection: close``,
    raw bytes, then close.
    """

    items: list[StreamItem] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    done: bool = True
    chunked: bool = True


@dataclass
class HangBeforeHeaders:
    """Read the request, then send nothing for ``seconds`` (``None``: until the client leaves or the server stops).

    Afterwards ``then`` is served if given, otherwise the connection is closed without a response.
    """

    seconds: float | None = None
    then: Response | None = None


@dataclass
class ResetBeforeHeaders:
    """Read the request, then abort the connection with RST."""


Response = Json | Text | Stream | HangBeforeHeaders | ResetBeforeHeaders
Handler = Callable[["RecordedRequest"], Response]


# --------------------------------------------------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------------------------------------------------


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping (iterates lower-cased names; repeats joined with ``", "``)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self.raw: list[tuple[str, str]] = list(items)
        self._data: dict[str, str] = {}
        for name, value in self.raw:
            key = name.lower()
            self._data[key] = f"{self._data[key]}, {value}" if key in self._data else value

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Headers({self._data!r})"


@dataclass
class RecordedRequest:
    """One request as received by the server."""

    index: int
    method: str
    path: str
    query: str
    headers: Headers
    body: bytes
    time: float
    connection: int
    http_version: str = "HTTP/1.1"
    json: Any = None

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (with replacement)."""
        return self.body.decode("utf-8", "replace")

    @property
    def params(self) -> dict[str, list[str]]:
        """The parsed query string."""
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def stream(self) -> bool:
        """Whether the JSON body asks for streaming (``"stream": true``)."""
        return isinstance(self.json, dict) and self.json.get("stream") is True


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------------------


def chunk(
    content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    model: str = "fake-model",
    role: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` whose delta holds only the given keys (``reasoning`` -> ``reasoning_content``)."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    body.update(extra)
    return body


def tool_call_delta(
    index: int = 0, id: str | None = None, name: str | None = None, arguments: str | None = None
) -> dict[str, Any]:
    """One streamed tool-call fragment for ``chunk(tool_calls=[...])`` (``type`` is added when ``id`` is given)."""
    call: dict[str, Any] = {"index": index}
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    function: dict[str, Any] = {}
    if name is not None:
        function["name"] = name
    if arguments is not None:
        function["arguments"] = arguments
    if function:
        call["function"] = function
    return call


def _usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def usage_chunk(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, model: str = "fake-model"
) -> dict[str, Any]:
    """The final usage chunk of a stream (``choices: []``)."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [],
        "usage": _usage(prompt_tokens, completion_tokens, cached_tokens),
    }


def completion(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str | None = "stop",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    reasoning: str | None = None,
    model: str = "fake-model",
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` body."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


def _error(status: int, message: str, code: str) -> Json:
    return Json({"error": {"message": message, "type": "invalid_request_error", "code": code}}, status=status)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def default_handler(req: RecordedRequest) -> Response:
    """Echo chat completions (``"echo: <last user text>"``, JSON or SSE), list models, 404 otherwise."""
    path = req.path.rstrip("/")
    if req.method == "GET" and path.endswith("/models"):
        models = [{"id": "fake-model-1", "object": "model"}, {"id": "fake-model-2", "object": "model"}]
        return Json({"object": "list", "data": models})
    if req.method != "POST" or not path.endswith("/chat/completions"):
        return _error(404, f"no route for {req.method} {req.path}", "not_found")
    if not isinstance(req.json, dict):
        return _error(400, "request body is not a JSON object", "invalid_json")
    messages = req.json.get("messages")
    messages = messages if isinstance(messages, list) else []
    texts = [_message_text(m.get("content")) for m in messages if isinstance(m, dict)]
    users = [_message_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    answer = f"echo: {users[-1] if users else ''}"
    model = str(req.json.get("model") or "fake-model")
    prompt_tokens = max(1, sum(len(t.split()) for t in texts))
    pieces = re.findall(r"\S+\s*", answer)
    if not req.stream:
        return Json(completion(answer, prompt_tokens=prompt_tokens, completion_tokens=len(pieces), model=model))
    items: list[StreamItem] = [chunk(role="assistant", content="", model=model)]
    items += [chunk(piece, model=model) for piece in pieces]
    items.append(chunk(finish_reason="stop", model=model))
    items.append(usage_chunk(prompt_tokens, len(pieces), model=model))
    return Stream(items)


# --------------------------------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------------------------------

_reserved_sockets: list[socket.socket] = []


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (inherently racy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (kept bound, never listening, for the whole process)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    _reserved_sockets.append(s)
    return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    """The request could not be parsed; answer 400 and close."""


class _ClientGone(Exception):
    """The client closed or reset the connection."""


class _Stopping(Exception):
    """The server is shutting down."""


def _encode_item(item: StreamItem) -> bytes:
    if isinstance(item, dict):
        return b"data: " + json.dumps(item, separators=(",", ":")).encode() + b"\n\n"
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    raise TypeError(f"unsupported stream item: {item!r}")


class _Connection:
    """One accepted client socket: buffered reading, request parsing, writes and waits."""

    def __init__(self, server: FakeUpstream, cid: int, sock: socket.socket) -> None:
        self.server = server
        self.cid = cid
        self.sock = sock
        self.buf = bytearray()
        self.current: RecordedRequest | None = None
        self._gone_recorded = False
        self._peek_sock: socket.socket | None = None  # with TLS: the TCP socket, to see EOF under the TLS layer

    def start_tls(self, context: ssl.SSLContext) -> bool:
        """Wrap the connection in TLS (server side); False if the handshake failed."""
        self._peek_sock = self.sock.dup()
        try:
            self.sock.settimeout(5)
            tls = context.wrap_socket(self.sock, server_side=True)
            tls.settimeout(None)
        except (OSError, ValueError):
            self.close()
            return False
        self.sock = tls
        self.server._replace(self.cid, tls)
        return True

    # -- reading -----------------------------------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False on EOF."""
        while True:
            if self.server._stop.is_set():
                raise _Stopping
            try:
                pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
                readable, _, _ = ([self.sock], [], []) if pending else select.select([self.sock], [], [], _SELECT_INTERVAL)
                if not readable:
                    continue
                data = self.sock.recv(65536)
            except (OSError, ValueError) as exc:
                raise _Stopping if self.server._stop.is_set() else _ClientGone from exc
            if not data:
                return False
            self.buf += data
            return True

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise _ClientGone
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _read_line(self) -> bytes:
        while (idx := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > _MAX_HEAD:
                raise _BadRequest("line too long")
            if not self._fill():
                raise _ClientGone
        line = bytes(self.buf[:idx])
        del self.buf[: idx + 2]
        return line

    def read_request(self) -> tuple[RecordedRequest, bool] | None:
        """Parse the next request; returns ``(request, keep_alive)`` or None on a clean EOF between requests."""
        self.current = None
        arrival: float | None = None
        while True:
            while self.buf.startswith(b"\r\n"):
                del self.buf[:2]
            if self.buf and arrival is None:
                arrival = time.monotonic()
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > _MAX_HEAD:
                raise _BadRequest("request head too large")
            if not self._fill():
                if self.buf:
                    raise _ClientGone
                return None
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _TOKEN_RE.fullmatch(parts[0]) or not _VERSION_RE.fullmatch(parts[2]) or not parts[1]:
            raise _BadRequest(f"bad request line: {lines[0]!r}")
        method, target, version = parts
        pairs: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN_RE.fullmatch(name):
                raise _BadRequest(f"bad header line: {line!r}")
            pairs.append((name, value.strip(" \t")))
        headers = Headers(pairs)
        body = self._read_body(headers)
        split = urlsplit(target)
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
        req = self.server._record(
            method=method,
            path=split.path or "/",
            query=split.query,
            headers=headers,
            body=body,
            time=arrival if arrival is not None else time.monotonic(),
            connection=self.cid,
            http_version=version,
        )
        return req, keep_alive

    def _read_body(self, headers: Headers) -> bytes:
        if "transfer-encoding" in headers:
            if headers["transfer-encoding"].split(",")[-1].strip().lower() != "chunked":
                raise _BadRequest("unsupported transfer-encoding")
            self._maybe_continue(headers)
            return self._read_chunked_body()
        raw_length = headers.get("content-length", "0").strip()
        values = {v.strip() for v in raw_length.split(",")}
        if len(values) != 1 or not raw_length.split(",")[0].strip().isdigit():
            raise _BadRequest(f"bad content-length: {raw_length!r}")
        length = int(values.pop())
        if length > _MAX_BODY:
            raise _BadRequest("body too large")
        if length:
            self._maybe_continue(headers)
        return self._read_exact(length)

    def _maybe_continue(self, headers: Headers) -> None:
        if headers.get("expect", "").lower() == "100-continue" and not self.buf:
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_chunked_body(self) -> bytes:
        body = bytearray()
        while True:
            size_text = self._read_line().split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise _BadRequest(f"bad chunk size: {size_text!r}") from exc
            if size == 0:
                while self._read_line():  # trailers
                    pass
                return bytes(body)
            if len(body) + size > _MAX_BODY:
                raise _BadRequest("body too large")
            body += self._read_exact(size)
            if self._read_exact(2) != b"\r\n":
                raise _BadRequest("bad chunk terminator")

    # -- writing and waiting -----------------------------------------------------------------------------------------

    def _gone(self) -> None:
        """Record a client disconnect during the current response (once per request)."""
        if self.current is not None and not self._gone_recorded and not self.server._stop.is_set():
            self._gone_recorded = True
            self.server._record_disconnect(self.current.index)

    def send(self, data: bytes) -> None:
        """Write all of ``data`` now; raises ``_ClientGone``/``_Stopping`` on failure."""
        try:
            self.sock.sendall(data)
        except (OSError, ValueError) as exc:
            if self.server._stop.is_set():
                raise _Stopping from exc
            self._gone()
            raise _ClientGone from exc

    def pause(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: forever) watching for client EOF; False if the client left or the server stops."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            if self.server._stop.is_set():
                return False
            timeout = POLL_INTERVAL
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                timeout = min(timeout, remaining)
            try:
                readable, _, _ = select.select([self.sock], [], [], timeout)
                peek = (self._peek_sock or self.sock).recv(1, socket.MSG_PEEK) if readable else None
            except (OSError, ValueError):
                peek = b""
            if peek == b"":
                self._gone()
                return False
            if peek:
                time.sleep(timeout)  # client sent more data (pipelining); keep waiting

    def begin(self, req: RecordedRequest) -> None:
        self.current = req
        self._gone_recorded = False

    def close(self, reset: bool = False) -> None:
        """Close the socket (gracefully, or with RST); idempotent and safe against a concurrent server stop."""
        if not self.server._forget(self.cid):
            return  # already closed by FakeUpstream.stop()
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_WR)
                self.sock.setblocking(False)
                while self.sock.recv(65536):  # drain unread input so close() sends FIN, not RST
                    pass
        except OSError:
            pass
        finally:
            self.sock.close()
            if self._peek_sock is not None:
                self._peek_sock.close()
            self.server._notify()


def _status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n"


def _head(status: int, defaults: dict[str, str], extra: Mapping[str, Any]) -> tuple[bytes, bool]:
    """Build a response head; returns it and whether it asks to close the connection."""
    merged = {k.lower(): (k, str(v)) for k, v in defaults.items()}
    merged.update({k.lower(): (k, str(v)) for k, v in extra.items()})
    closing = merged.get("connection", ("", ""))[1].lower() == "close"
    text = _status_line(status) + "".join(f"{k}: {v}\r\n" for k, v in merged.values()) + "\r\n"
    return text.encode(), closing


class FakeUpstream:
    """Scriptable OpenAI-compatible HTTP server on 127.0.0.1; use as a context manager."""

    def __init__(self, host: str = HOST, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.tls = tls  # a server-side context: the upstream speaks HTTPS
        self.handler: Handler | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._queue: deque[tuple[str | None, Response | Handler]] = deque()
        self._claimed: dict[int, tuple[str | None, Response | Handler] | None] = {}
        self._requests: list[RecordedRequest] = []
        self._disconnects: list[tuple[int, float]] = []
        self._disconnects_seen = 0
        self._errors: list[str] = []
        self._conns: dict[int, socket.socket] = {}
        self._conn_ids = itertools.count(1)
        self._connections_total = 0
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind a free port and start accepting in a background thread."""
        if self._listener is not None:
            raise RuntimeError("FakeUpstream already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._port = int(listener.getsockname()[1])
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"fake-upstream-{self._port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self, timeout: float = 0.8) -> None:
        """Stop accepting, close every client connection and join the worker threads (bounded by ``timeout``)."""
        if self._listener is None or self._stop.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        self._listener.close()
        with self._cond:
            for sock in self._conns.values():
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            leftovers = list(self._conns.values())
            self._conns.clear()
            self._cond.notify_all()
        for sock in leftovers:  # workers stuck in a user handler: close their sockets anyway
            sock.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], _SELECT_INTERVAL)
                if not readable:
                    continue
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                continue
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                if self._stop.is_set():
                    sock.close()
                    return
                cid = next(self._conn_ids)
                self._conns[cid] = sock
                self._connections_total += 1
                self._threads = [t for t in self._threads if t.is_alive()]
                thread = threading.Thread(
                    target=self._serve, args=(_Connection(self, cid, sock),), name=f"fake-upstream-conn-{cid}"
                )
                thread.daemon = True
                self._threads.append(thread)
                thread.start()
                self._cond.notify_all()

    # -- public API --------------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port."""
        return self._port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self._port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (an OpenAI-style base URL)."""
        return f"{self.origin}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of all requests received so far, in arrival order."""
        with self._cond:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (IndexError if none)."""
        with self._cond:
            return self._requests[-1]

    @property
    def disconnects(self) -> list[tuple[int, float]]:
        """Snapshot of ``(request_index, time.monotonic())`` for each client that left mid-response."""
        with self._cond:
            return list(self._disconnects)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of exceptions raised by handlers / bad scripted responses."""
        with self._cond:
            return list(self._errors)

    @property
    def active_connections(self) -> int:
        """Number of currently open client connections."""
        with self._cond:
            return len(self._conns)

    @property
    def connections_total(self) -> int:
        """Number of client connections accepted since start."""
        with self._cond:
            return self._connections_total

    def enqueue(self, *responses: Response | Handler, path: str | None = None) -> None:
        """Queue responses (or callables ``req -> Response``) served FIFO to the next requests.

        With ``path`` the entries only match requests whose path ends with it (e.g. ``"/chat/completions"``).
        """
        with self._cond:
            self._queue.extend((path, r) for r in responses)

    @property
    def pending(self) -> int:
        """Number of queued responses not yet served."""
        with self._cond:
            return len(self._queue)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least ``n`` requests were received."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0) -> bool:
        """Block until a disconnect not yet seen by a previous successful call is recorded (then mark all seen)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._disconnects) > self._disconnects_seen, timeout):
                return False
            self._disconnects_seen = len(self._disconnects)
            return True

    def client_gone(self, req: RecordedRequest) -> bool:
        """Whether the client that sent ``req`` has closed its connection (EOF already seen, no waiting):
        a handler that held a request can tell whether anyone is left to answer."""
        with self._cond:
            sock = self._conns.get(req.connection)
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until no client connection is open."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._conns, timeout)

    # -- internals ---------------------------------------------------------------------------------------------------

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _replace(self, cid: int, sock: socket.socket) -> None:
        with self._cond:
            if cid in self._conns:
                self._conns[cid] = sock

    def _forget(self, cid: int) -> bool:
        """Drop a connection from the open set; True if the caller now owns closing it."""
        with self._cond:
            return self._conns.pop(cid, None) is not None

    def _record(self, **fields: Any) -> RecordedRequest:
        with self._cond:
            req = RecordedRequest(index=len(self._requests), json=_parse_json(fields["body"]), **fields)
            self._requests.append(req)
            # The queued answer is claimed with the record, under one lock: requests get answers
            # in the order they were recorded, whichever handler thread runs first afterwards.
            entry = next((e for e in self._queue if e[0] is None or req.path.endswith(e[0])), None)
            if entry is not None:
                self._queue.remove(entry)
            self._claimed[req.index] = entry
            self._cond.notify_all()
            return req

    def _record_disconnect(self, index: int) -> None:
        with self._cond:
            self._disconnects.append((index, time.monotonic()))
            self._cond.notify_all()

    def _record_error(self, text: str) -> None:
        with self._cond:
            self._errors.append(text)
            self._cond.notify_all()

    def _pick(self, req: RecordedRequest) -> Response:
        with self._cond:
            entry = self._claimed.pop(req.index, None)
        if entry is None:
            return (self.handler or default_handler)(req)
        response = entry[1]
        return response(req) if callable(response) else response

    def _serve(self, conn: _Connection) -> None:
        reset = False
        if self.tls is not None and not conn.start_tls(self.tls):
            return
        try:
            while not self._stop.is_set():
                try:
                    parsed = conn.read_request()
                except _BadRequest as exc:
                    body = f"bad request: {exc}\n".encode()
                    defaults = {"Content-Type": "text/plain", "Content-Length": str(len(body)), "Connection": "close"}
                    conn.send(_head(400, defaults, {})[0] + body)
                    return
                if parsed is None:
                    return
                req, keep_alive = parsed
                conn.begin(req)
                try:
                    response = self._pick(req)
                    if not isinstance(response, Response):
                        raise TypeError(f"handler returned {response!r}, expected one of {Response}")
                except Exception:  # any handler bug becomes a 500 and is recorded
                    tb = traceback.format_exc()
                    self._record_error(tb)
                    response = Text(tb, status=500, headers={"Connection": "close"})
                outcome = self._respond(conn, req, response, keep_alive)
                if outcome == "reset":
                    reset = True
                if outcome != "keep":
                    return
        except (_ClientGone, _Stopping):
            pass
        except Exception:  # a worker must never take the server down
            self._record_error(traceback.format_exc())
        finally:
            conn.close(reset=reset)

    def _respond(self, conn: _Connection, req: RecordedRequest, response: Response, keep_alive: bool) -> str:
        """Write ``response``; returns ``"keep"``, ``"close"`` or ``"reset"``."""
        connection = {} if keep_alive else {"Connection": "close"}
        if isinstance(response, Json | Text):
            if isinstance(response, Json):
                body, ctype = json.dumps(response.body).encode(), "application/json"
            else:
                raw = response.body
                body, ctype = (raw.encode() if isinstance(raw, str) else bytes(raw)), response.content_type
            defaults = {"Content-Type": ctype, "Content-Length": str(len(body)), **connection}
            head, closing = _head(response.status, defaults, response.headers)
            conn.send(head if req.method == "HEAD" else head + body)
            return "close" if closing or not keep_alive else "keep"
        if isinstance(response, Stream):
            return self._stream(conn, response, keep_alive)
        if isinstance(response, HangBeforeHeaders):
            if not conn.pause(response.seconds) or response.then is None:
                return "close"
            return self._respond(conn, req, response.then, keep_alive)
        if isinstance(response, ResetBeforeHeaders):
            return "reset"
        raise TypeError(f"unsupported response: {response!r}")

    def _stream(self, conn: _Connection, response: Stream, keep_alive: bool) -> str:
        defaults = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if response.chunked:
            defaults["Transfer-Encoding"] = "chunked"
            if not keep_alive:
                defaults["Connection"] = "close"
        else:
            defaults["Connection"] = "close"
        head, closing = _head(response.status, defaults, response.headers)
        conn.send(head)
        items: list[StreamItem] = [*response.items, "data: [DONE]\n\n"] if response.done else list(response.items)
        for item in items:
            if response.delay > 0 and not conn.pause(response.delay):
                return "close"
            if isinstance(item, Sleep):
                if not conn.pause(item.seconds):
                    return "close"
            elif isinstance(item, Hang):
                conn.pause(None)
                return "close"
            elif isinstance(item, Reset):
                return "reset"
            elif isinstance(item, Close):
                return "close"
            elif data := _encode_item(item):
                conn.send(b"%x\r\n%s\r\n" % (len(data), data) if response.chunked else data)
        if not response.chunked:
            return "close"
        conn.send(b"0\r\n\r\n")
        return "close" if closing or not keep_alive else "keep"
