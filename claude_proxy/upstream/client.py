"""The one door out: a pooled `requests` session, retries before the first byte, timeouts,
and streaming reads that forward bytes as soon as they arrive.

Nothing else in the package imports `requests`.
"""

from __future__ import annotations

import datetime
import email.utils
import http.cookiejar
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import ReadTimeoutError

from claude_proxy._poll import readable
from claude_proxy.config.loader import ProviderConfig, RetryPolicy, Timeouts
from claude_proxy.errors import UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from claude_proxy.translate.errors import from_upstream_response
from claude_proxy.upstream.fastpath.connection import POOL_CLASSES
from claude_proxy.upstream.fastpath.framing import BodyDecoder, FramingError, decoder_for

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_STATUSES_ANTHROPIC = RETRY_STATUSES | {529}
MAX_ERROR_BODY = 1 << 20
READ_SIZE = 1 << 16
PING = object()  # yielded by `iter_body` when the upstream has been silent for a ping interval

# Client headers that may cross to an upstream (everything else stays with the proxy).
FORWARD_TO_ANTHROPIC = ("anthropic-version", "anthropic-beta")
PASS_BACK_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")


def host_of(url: str) -> str:
    """The host:port of a URL without any credentials it might embed."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def _reason(exc: BaseException) -> str:
    """A short, secret-free description of a transport failure (never str(exc): it has URLs)."""
    text = repr(exc).lower()
    for needle, reason in (
        ("refused", "connection refused"),
        ("reset", "connection reset"),
        ("broken pipe", "connection closed"),
        ("name or service", "host name could not be resolved"),
        ("nodename", "host name could not be resolved"),
        ("temporary failure in name", "host name could not be resolved"),
        ("certificate", "TLS certificate error"),
        ("ssl", "TLS error"),
        ("incompleteread", "connection closed before the response was complete"),
        ("before the response was complete", "connection closed before the response was complete"),
        ("framingerror", "malformed chunked body"),
        ("remotedisconnected", "connection closed without a response"),
        ("protocolerror", "connection broken"),
        ("network is unreachable", "network unreachable"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The upstream's wait hint in seconds; None when absent or unreadable (never raises: it is the upstream's text)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            seconds = float(value) / 1000.0
            if seconds == seconds:  # NaN is no hint
                return max(seconds, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(seconds, 0.0) if seconds == seconds else None
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):  # neither seconds nor an HTTP date
        return None
    if parsed.tzinfo is None:  # "-0000": HTTP dates are GMT
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(parsed.timestamp() - time.time(), 0.0)


class RememberingAdapter(HTTPAdapter):
    """`HTTPAdapter` that remembers, per URL, the pool and the request target it worked out.

    For every request requests parses the URL (twice), looks for a proxy and builds the pool key;
    an upstream's URLs are a handful, fixed at start, and never proxied (`trust_env` is off).
    `close()` (the session's) forgets them with the pool manager's pools.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pools: dict[tuple[Any, ...], Any] = {}
        self._targets: dict[str, str] = {}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Pools of `connection.LeanHTTPConnection`s: one send per request, headers read without `email`."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(POOL_CLASSES)

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (request.url, verify, cert if not isinstance(cert, list) else tuple(cert))
        pool = self._pools.get(key)
        if pool is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pools[key] = pool
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        if proxies or not isinstance(request.url, str):
            return str(super().request_url(request, proxies))
        target = self._targets.get(request.url)
        if target is None:
            target = self._targets[request.url] = str(super().request_url(request, proxies))
        return target

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """requests' Response around urllib3's, minus the cookie jar requests parses Set-Cookie
        into for every response: the proxy keeps no upstream cookies (see `Upstream`)."""
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        self._pools.clear()
        super().close()


class Upstream:
    """One per process (per worker): thread-safe, its connection pool sized to the threads."""

    def __init__(
        self,
        provider: ProviderConfig,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        pool_size: int = 64,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.timeouts = timeouts
        self.retry = retry
        self.sleep = sleep
        self.session = requests.Session()
        self.session.trust_env = False  # an upstream is named by config, not by HTTP_PROXY
        # No cookie jar: an upstream's Set-Cookie must not ride along on other clients' requests.
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = RememberingAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0, pool_block=False)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.host = host_of(provider.base_url)
        self._lock = threading.Lock()
        self._templates: dict[tuple[str, str], requests.PreparedRequest] = {}

    def close(self) -> None:
        self.session.close()

    # -- requests -------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.provider.base_url + path

    def _prepare(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> requests.PreparedRequest:
        """A prepared request from a per-endpoint template: URL parsing and merging the session's
        settings happen once, not per request (they were a sixth of the proxy's CPU per call)."""
        template = self._templates.get((method, path))
        if template is None:
            template = self.session.prepare_request(requests.Request(method, self.url(path)))
            with self._lock:
                self._templates[(method, path)] = template
        prepared = template.copy()
        prepared.headers.update(headers)
        prepared.prepare_body(body, None)
        return prepared

    def _send(self, prepared: requests.PreparedRequest, timeout: tuple[float, float]) -> requests.Response:
        """Through the session's adapter, past `Session.send`: of what it adds, redirects are off,
        there are no hooks, and the cookies it would extract are refused anyway."""
        adapter = self.session.get_adapter(prepared.url or "")
        return adapter.send(
            prepared, stream=True, timeout=timeout, verify=self.session.verify, cert=self.session.cert, proxies={}
        )

    def auth_headers(self, client_key: str | None = None) -> dict[str, str]:
        key = self.provider.api_key or (client_key if self.provider.api_key_from_client else None)
        if not key:
            return {}
        if self.provider.format == "anthropic":
            return {"x-api-key": key}
        return {"Authorization": f"Bearer {key}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        deadline: float | None = None,
        retry: bool = True,
        timeout: float | None = None,
    ) -> requests.Response:
        """Send, retrying what is safe to retry; returns a 2xx/3xx response with headers read.

        Raises UpstreamHTTPError (status + Anthropic envelope), UpstreamTimeout or
        UpstreamUnavailable. The body of a streamed response is left unread.
        """
        deadline = deadline or time.monotonic() + self.timeouts.total
        all_headers = {"Content-Type": "application/json", **self.provider.headers, **(headers or {})}
        if stream:
            all_headers["Accept-Encoding"] = "identity"  # compressed SSE would be buffered by the decoder
        retry_statuses = RETRY_STATUSES_ANTHROPIC if self.provider.format == "anthropic" else RETRY_STATUSES
        attempts = 1 + (self.retry.max_retries if retry else 0)
        read_timeout = timeout or self.timeouts.read
        for attempt in range(attempts):
            last = attempt == attempts - 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(f"{self.provider.name}: no answer within the {self.timeouts.total:g}s deadline")
            try:
                response = self._send(
                    self._prepare(method, path, all_headers, body),
                    (min(self.timeouts.connect, remaining), min(read_timeout, remaining)),
                )
            except requests.ConnectTimeout:
                error: Exception = UpstreamTimeout(
                    f"{self.provider.name}: timed out connecting to {self.host} after {self.timeouts.connect:g}s"
                )
                if last or not self._pause(attempt, None, deadline):
                    raise error from None
                continue
            except requests.ReadTimeout:
                raise UpstreamTimeout(
                    f"{self.provider.name}: {self.host} sent no response within {min(read_timeout, remaining):g}s"
                ) from None
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                error = UpstreamUnavailable(f"{self.provider.name}: cannot reach {self.host}: {_reason(exc)}")
                if last or not self._pause(attempt, None, deadline):
                    raise error from None
                continue
            except requests.RequestException as exc:
                raise UpstreamUnavailable(
                    f"{self.provider.name}: request to {self.host} failed: {_reason(exc)}"
                ) from None

            if response.status_code < 400:
                response.request.body = None  # sent: not held (tens of KB) for the life of a stream
                return response
            status = response.status_code
            wait = retry_after_seconds(response.headers)
            failure = self._http_error(response)
            if status in retry_statuses and not last and failure.headers.get("x-should-retry") != "false":
                if self._pause(attempt, wait, deadline):
                    continue
            raise failure
        raise AssertionError("unreachable")  # pragma: no cover

    def _http_error(self, response: requests.Response) -> UpstreamHTTPError:
        try:
            body = b""
            for piece in response.iter_content(READ_SIZE):
                body += piece
                if len(body) > MAX_ERROR_BODY:
                    break
        except (requests.RequestException, Urllib3HTTPError, OSError):
            pass
        finally:
            response.close()
        status, envelope = from_upstream_response(response.status_code, body, self.provider.name)
        headers = {k: v for k in PASS_BACK_HEADERS if (v := response.headers.get(k))}
        return UpstreamHTTPError(
            status, envelope, headers, raw=body[:MAX_ERROR_BODY], content_type=response.headers.get("content-type", "")
        )

    def _pause(self, attempt: int, retry_after: float | None, deadline: float) -> bool:
        """Sleep before the next attempt; False if that would pass the deadline."""
        if retry_after is not None:
            if retry_after > self.retry.max_delay:
                return False  # retrying sooner than asked earns another refusal: the client gets it and the header
            delay = retry_after
        else:
            # exponential with up to one base delay of jitter, and never above the configured maximum
            delay = self.retry.base_delay * (2**attempt) + random.uniform(0, self.retry.base_delay)
            delay = min(delay, self.retry.max_delay)
        if time.monotonic() + delay >= deadline:
            return False
        self.sleep(delay)
        return True

    def post_json(
        self, path: str, payload: bytes, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        return self.request("POST", path, body=payload, headers=headers, **kw)

    # -- reading bodies -----------------------------------------------------------------

    def read(self, response: requests.Response, deadline: float, limit: int = 256 << 20) -> bytes:
        """A whole (non-streamed) body, with the same timeouts and error mapping as streams."""
        parts: list[bytes] = []
        size = 0
        try:
            for piece in self.iter_body(response, deadline):
                if piece is PING:
                    continue
                parts.append(piece)
                size += len(piece)
                if size > limit:
                    raise UpstreamUnavailable(f"{self.provider.name}: response larger than {limit} bytes")
        except BaseException:
            response.close()
            raise
        self.release(response, wait=0.0)  # read to its end: the connection goes back to the pool
        return b"".join(parts)

    def release(self, response: requests.Response, wait: float = 0.05) -> None:
        """Done with a stream whose answer is complete: its connection goes back to the pool if
        the rest of the body (usually just the chunked terminator after `[DONE]`) is there or
        arrives within `wait`; otherwise it is closed. Without this every stream costs a new
        connection (and TLS handshake) to the provider."""
        body = SocketBody.open(response)
        if body is not None:
            try:
                body.finish(wait)
            finally:
                response.close()  # closes the connection unless `finish` handed it back
            return
        raw = response.raw
        http_response = getattr(raw, "_fp", None)
        sock = _socket_of(raw)
        try:
            if sock is not None:
                sock.settimeout(wait)  # nothing below may hold the thread longer than that
            until = time.monotonic() + wait
            for _ in range(8):
                fp = getattr(http_response, "fp", None)
                if sock is None or fp is None or http_response is None or http_response.isclosed():
                    break
                if _would_block(http_response, fp, sock) and not readable(sock, max(0.0, until - time.monotonic()), on_error=True):
                    break
                if not raw.read1(READ_SIZE, decode_content=True):
                    break
        except (Urllib3HTTPError, OSError, ValueError, AttributeError):
            pass
        finally:
            response.close()  # a no-op for the connection once urllib3 has put it back in the pool

    # -- streaming reads -------------------------------------------------------------

    def iter_body(self, response: requests.Response, deadline: float) -> Iterator[Any]:
        """Body bytes as they arrive (one read, whatever is available), or PING after a
        silence of `ping_interval`. Raises UpstreamTimeout / UpstreamUnavailable."""
        body = SocketBody.open(response)
        if body is not None:
            return self._iter_socket(body, deadline)
        return self._iter_buffered(response, deadline)

    def _iter_socket(self, body: SocketBody, deadline: float) -> Iterator[Any]:
        """The common case: one blocking `recv` with a timeout per arrival (a poll and a read,
        the GIL let go once for each), all that arrived at once translated and written together."""
        idle_limit = self.timeouts.read
        ping_every = self.timeouts.ping_interval
        last_heard = last_data = time.monotonic()
        while not body.done:
            now = time.monotonic()
            if now >= deadline:
                raise UpstreamTimeout(f"{self.provider.name}: response exceeded the {self.timeouts.total:g}s deadline")
            if now - last_data >= idle_limit:
                raise UpstreamTimeout(f"{self.provider.name}: no data for {idle_limit:g}s")
            wait = min(ping_every - (now - last_heard), idle_limit - (now - last_data), deadline - now)
            if wait <= 0:
                last_heard = now
                yield PING
                continue
            try:
                data = body.read(wait)
            except (OSError, FramingError) as exc:
                raise UpstreamUnavailable(
                    f"{self.provider.name}: connection broke mid-response: {_reason(exc)}"
                ) from None
            if data is None:  # the wait ran out: the loop decides between a ping and a timeout
                continue
            last_heard = last_data = time.monotonic()
            if data:
                yield data

    def _iter_buffered(self, response: requests.Response, deadline: float) -> Iterator[Any]:
        """Through urllib3 and http.client, for bodies `SocketBody` does not take (compressed,
        already partly read, or a response without a socket, such as a test double)."""
        raw = response.raw
        sock = _socket_of(raw)
        http_response = getattr(raw, "_fp", None)
        fp = getattr(http_response, "fp", None)
        idle_limit = self.timeouts.read
        ping_every = self.timeouts.ping_interval
        last_data = time.monotonic()
        blocked = False  # the last look found nothing buffered; nothing was read since, so it still holds
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise UpstreamTimeout(f"{self.provider.name}: response exceeded the {self.timeouts.total:g}s deadline")
            if sock is not None and fp is not None and (blocked or _would_block(http_response, fp, sock)):
                blocked = False
                wait = min(ping_every, idle_limit - (now - last_data), deadline - now)
                if wait > 0 and not readable(sock, wait, on_error=True):  # an error: let the read raise it
                    if time.monotonic() - last_data >= idle_limit:
                        raise UpstreamTimeout(f"{self.provider.name}: no data for {idle_limit:g}s")
                    yield PING
                    blocked = True  # still nothing read: no need to look again before waiting
                    continue
            try:
                data = raw.read1(READ_SIZE, decode_content=True)
            except ReadTimeoutError:
                raise UpstreamTimeout(f"{self.provider.name}: no data for {idle_limit:g}s") from None
            except (Urllib3HTTPError, OSError, ValueError, AttributeError) as exc:
                raise UpstreamUnavailable(
                    f"{self.provider.name}: connection broke mid-response: {_reason(exc)}"
                ) from None
            if not data:
                return
            # Drain what has already arrived (a read returns one HTTP chunk at most), so events
            # that came together are translated together and go to the client in one write.
            parts = [data]
            size = len(data)
            ended = False
            while size < READ_SIZE and sock is not None and fp is not None:
                if _would_block(http_response, fp, sock):
                    blocked = True
                    break
                try:
                    more = raw.read1(READ_SIZE, decode_content=True)
                except (Urllib3HTTPError, OSError, ValueError, AttributeError):
                    break  # the next read in the outer loop raises the mapped error
                if not more:
                    ended = True
                    break
                parts.append(more)
                size += len(more)
            last_data = time.monotonic()
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            if ended:
                return


class SocketBody:
    """A response body read from the connection's socket, past http.client.

    http.client reads a chunked body a size line, a data part and a CRLF at a time, and knowing
    whether the next read would block costs two `settimeout` calls and a failed `recv`; under
    hundreds of paced streams each of those syscalls is a GIL hand-off between busy threads. Here
    one `recv` takes whatever has arrived and `framing` removes the chunk framing. At the end of
    the body the connection is handed back to urllib3's pool just as http.client would leave it.
    """

    def __init__(self, raw: Any, sock: socket.socket, decoder: BodyDecoder, first: bytes) -> None:
        self.raw = raw  # urllib3's response, not requests': it holds this body, and a cycle would outlive the request
        self.sock = sock
        self.decoder = decoder
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
        """The response's SocketBody (made on first use), or None when it must go through urllib3."""
        body = response.__dict__.get("_claude_proxy_body")
        if body is not None or response.__dict__.get("_claude_proxy_buffered"):
            return body
        raw = response.raw
        http_response = getattr(raw, "_fp", None)
        fp = getattr(http_response, "fp", None)
        sock = _socket_of(raw)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if (
            sock is None
            or fp is None
            or encoding not in ("", "identity")
            or getattr(raw, "_fp_bytes_read", 0)  # urllib3 has begun reading
            or (getattr(http_response, "chunked", False) and getattr(http_response, "chunk_left", None) is not None)
            or getattr(raw, "_has_decoded_content", False)
        ):
            response.__dict__["_claude_proxy_buffered"] = True
            return None
        # Whatever http.client's buffer already holds beyond the headers comes first.
        try:
            sock.settimeout(0.0)
            first = fp.read1(READ_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            first = b""
        except (OSError, ValueError):
            first = b""  # the socket's own read below meets the same error and reports it
        decoder = decoder_for(bool(getattr(http_response, "chunked", False)), getattr(http_response, "length", None))
        body = cls(raw, sock, decoder, first)
        response.__dict__["_claude_proxy_body"] = body
        return body

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
                    raise ConnectionError("connection closed before the response was complete")
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

    def finish(self, wait: float) -> bool:
        """Read the rest of a body whose answer is complete (usually only `[DONE]` and the last
        chunk) for up to `wait`; True if the connection went back to the pool."""
        until = time.monotonic() + wait
        try:
            while not self.done:
                left = until - time.monotonic()
                if left <= 0 or self.read(left) is None:
                    return False
        except (OSError, FramingError):
            return False
        raw = self.raw
        http_response = getattr(raw, "_fp", None)
        if self.eof or self.decoder.overrun or getattr(http_response, "will_close", True):
            return False
        http_response.close()  # as http.client does at the end of a body: the socket stays open
        raw.release_conn()
        return True


def _socket_of(raw: Any) -> socket.socket | None:
    connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _would_block(http_response: Any, fp: Any, sock: socket.socket) -> bool:
    """Whether the next read would have to wait for the network.

    Looks only at bytes already received (Python's buffer, the TLS layer), so a silent
    upstream can be answered with a ping instead of a blocked read. For chunked bodies a
    chunk's trailing CRLF alone is not "data": reading on would block on the next size line.
    """
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    previous = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        buffered = fp.peek(1)
    except (BlockingIOError, ssl.SSLWantReadError, TimeoutError, InterruptedError):
        return True
    except (OSError, ValueError):
        return False  # let the real read raise the real error
    finally:
        try:
            sock.settimeout(previous)
        except OSError:
            pass
    if not buffered:
        return True
    if not getattr(http_response, "chunked", False):
        return False
    left = getattr(http_response, "chunk_left", None)
    if left:
        return False
    return buffered.count(b"\n") < (1 if left is None else 2)
