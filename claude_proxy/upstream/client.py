"""The one door out: a pooled `requests` session, retries before the first byte, timeouts,
and streaming reads that forward bytes as soon as they arrive.

Built on requests' and urllib3's public API only; the optional speed code that works inside
their internals (and http.client's) is reached through one seam, `fastpath.load()`, which is
None when switched off or when the installed libraries are not the ones it was written for.
Nothing else in the package imports `requests`.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import ssl
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3HTTPError
from urllib3.exceptions import ReadTimeoutError

from claude_proxy.config.loader import ProviderConfig, RetryPolicy, Timeouts, fast_paths_enabled
from claude_proxy.config.network import redact_url
from claude_proxy.errors import UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from claude_proxy.translate.errors import from_upstream_response
from claude_proxy.upstream import fastpath
from claude_proxy.upstream.body import PublicBody
from claude_proxy.upstream.egress import Egress, egress_for
from claude_proxy.upstream.failures import chain, reason
from claude_proxy.upstream.fastpath.framing import FramingError
from claude_proxy.upstream.retry import pause, retry_after_seconds, retry_statuses

__all__ = ["FORWARD_TO_ANTHROPIC", "PING", "Upstream", "host_of", "retry_after_seconds"]

MAX_ERROR_BODY = 1 << 20
READ_SIZE = 1 << 16
PING = object()  # yielded by `iter_body` when the upstream has been silent for a ping interval

# Client headers that may cross to an upstream (everything else stays with the proxy).
FORWARD_TO_ANTHROPIC = ("anthropic-version", "anthropic-beta")
PASS_BACK_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")

# What a body read can raise for a broken connection (urllib3's, the socket's, http.client's, framing).
BROKEN = (Urllib3HTTPError, OSError, http.client.HTTPException, FramingError, ValueError)


class Body(Protocol):
    """A response body as the reads below see it: `fastpath.socketbody.SocketBody` or `body.PublicBody`."""

    @property
    def done(self) -> bool: ...

    def read(self, timeout: float) -> bytes | None: ...

    def finish(self, wait: float) -> bool: ...

    def abandon(self) -> None: ...

    def let_go(self, grace: float = ...) -> None: ...


def host_of(url: str) -> str:
    """The host:port of a URL without any credentials it might embed."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


class Upstream:
    """One per process (per worker): thread-safe, its connection pool sized to the threads.

    `fast_paths`: None follows `CLAUDE_PROXY_FAST_PATHS` (on unless it says off); callers holding a
    `Config` pass `fast_paths_enabled(config)` so `[server] fast_paths` counts too.
    """

    def __init__(
        self,
        provider: ProviderConfig,
        timeouts: Timeouts = Timeouts(),
        retry: RetryPolicy = RetryPolicy(),
        pool_size: int = 64,
        sleep: Callable[[float], None] = time.sleep,
        fast_paths: bool | None = None,
    ) -> None:
        self.provider = provider
        self.timeouts = timeouts
        self.retry = retry
        self.sleep = sleep
        self.session = requests.Session()
        # trust_env off: requests would read ~/.netrc too and let it replace the provider's auth header.
        # The environment's proxies and CAs are honoured through `egress` instead, resolved once.
        self.session.trust_env = False
        self.egress: Egress = egress_for(provider)
        self.proxies: dict[str, str] = dict(self.egress.proxies)
        self.session.verify = self.egress.verify
        self.session.cert = self.egress.cert
        # No cookie jar: an upstream's Set-Cookie must not ride along on other clients' requests.
        self.session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        enabled = fast_paths_enabled() if fast_paths is None else fast_paths
        # Through a proxy the fast path steps aside (docs/internals-ledger.md, "Proxied upstreams"):
        # urllib3's proxy pools are its own, and an https:// proxy wraps TLS in TLS, not a socket.
        self.fast = fastpath.load(self.session, enabled and not self.proxies)
        options: dict[str, Any] = {"pool_connections": 4, "pool_maxsize": pool_size, "max_retries": 0, "pool_block": False}
        adapter = self.fast.adapter(**options) if self.fast else HTTPAdapter(**options)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.host = host_of(provider.base_url)
        self._bodies: weakref.WeakKeyDictionary[requests.Response, Body] = weakref.WeakKeyDictionary()

    def close(self) -> None:
        self.session.close()

    # -- requests -------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.provider.base_url + path

    def _send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout: tuple[float, float]
    ) -> requests.Response:
        if self.fast:
            return self.fast.send(self.fast.prepare(method, self.url(path), headers, body), timeout)
        # Headers after the URL's own auth, so a configured key wins over user:pass@ in base_url.
        prepared = self.session.prepare_request(requests.Request(method, self.url(path)))
        prepared.headers.update(headers)
        prepared.prepare_body(body, None)
        return self.session.send(
            prepared, stream=True, timeout=timeout, allow_redirects=False, proxies=self.proxies
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
        statuses = retry_statuses(self.provider.format)
        attempts = 1 + (self.retry.max_retries if retry else 0)
        read_timeout = timeout or self.timeouts.read
        for attempt in range(attempts):
            last = attempt == attempts - 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(f"{self.provider.name}: no answer within the {self.timeouts.total:g}s deadline")
            try:
                response = self._send(
                    method, path, all_headers, body, (min(self.timeouts.connect, remaining), min(read_timeout, remaining))
                )
            except requests.ConnectTimeout:
                error: Exception = UpstreamTimeout(
                    f"{self.provider.name}: timed out connecting to {self.host} after {self.timeouts.connect:g}s"
                )
                if last or not pause(self.retry, attempt, None, deadline, self.sleep):
                    raise error from None
                continue
            except requests.ReadTimeout:
                raise UpstreamTimeout(
                    f"{self.provider.name}: {self.host} sent no response within {min(read_timeout, remaining):g}s"
                ) from None
            except requests.exceptions.SSLError as exc:  # not transient: a retry meets the same certificate
                raise UpstreamUnavailable(self._tls_failure(exc)) from None
            except requests.exceptions.ProxyError as exc:
                via = f"the proxy {redact_url(self.egress.proxy or '')} (from {self.egress.proxy_from})"
                if any(isinstance(e, ssl.SSLError) for e in chain(exc)):  # TLS with an https:// proxy itself
                    raise UpstreamUnavailable(self._tls_failure(exc, via)) from None
                error = UpstreamUnavailable(f"{self.provider.name}: cannot reach {self.host} through {via}: {reason(exc)}")
                if last or not pause(self.retry, attempt, None, deadline, self.sleep):
                    raise error from None
                continue
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                if any(isinstance(e, ssl.SSLError) for e in chain(exc)):
                    raise UpstreamUnavailable(self._tls_failure(exc)) from None
                error = UpstreamUnavailable(f"{self.provider.name}: cannot reach {self.host}: {reason(exc)}")
                if last or not pause(self.retry, attempt, None, deadline, self.sleep):
                    raise error from None
                continue
            except requests.RequestException as exc:
                raise UpstreamUnavailable(
                    f"{self.provider.name}: request to {self.host} failed: {reason(exc)}"
                ) from None

            if response.status_code < 400:
                response.request.body = None  # sent: not held (tens of KB) for the life of a stream
                return response
            status = response.status_code
            wait = retry_after_seconds(response.headers)
            failure = self._http_error(response)
            if status in statuses and not last and failure.headers.get("x-should-retry") != "false":
                if pause(self.retry, attempt, wait, deadline, self.sleep):
                    continue
            raise failure
        raise AssertionError("unreachable")  # pragma: no cover

    def _tls_failure(self, exc: BaseException, peer: str = "") -> str:
        """A TLS failure that names the peer (the host, or an https:// proxy) and the setting to change (from
        the error's type, never its text). The proxy's certificate is checked against the same trusted CAs."""
        untrusted = any(isinstance(e, ssl.SSLCertVerificationError) for e in chain(exc))
        return (
            f"{self.provider.name}: TLS with {peer or self.host} failed ({reason(exc)}): "
            f"{self.egress.tls_hint(untrusted)}"
        )

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

    def post_json(
        self, path: str, payload: bytes, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> requests.Response:
        return self.request("POST", path, body=payload, headers=headers, **kw)

    # -- reading bodies -----------------------------------------------------------------

    def body_reader(self, response: requests.Response) -> Body | None:
        """The reader serving `response`'s body once reading began (the fast path's or the public one), if any:
        which path a response took, for diagnostics and tests."""
        return self._bodies.get(response)

    def _body(self, response: requests.Response) -> Body:
        """The response's body reader, made on first use: the fast path's if it takes it, else the public one."""
        body = self._bodies.get(response)
        if body is None:
            body = self.fast.open_body(response) if self.fast else None
            if body is None:
                body = PublicBody(response.raw)
                # `response.close()` alone cannot wake its helper thread: once the response is
                # dropped (closed or released), the helper is let go.
                weakref.finalize(response, body.abandon)
            self._bodies[response] = body
        return body

    def read(self, response: requests.Response, deadline: float, limit: int = 256 << 20) -> bytes:
        """A whole (non-streamed) body, with the same timeouts and error mapping as streams."""
        parts: list[bytes] = []
        size = 0
        fast = self.fast.open_body(response) if self.fast and response not in self._bodies else None
        try:
            if fast is None:
                pieces: Iterator[Any] = self._read_public(response, deadline)
            else:
                self._bodies[response] = fast
                pieces = self._iter(fast, deadline)
            for piece in pieces:
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

    def _read_public(self, response: requests.Response, deadline: float) -> Iterator[bytes]:
        """Blocking `raw.read1`s, each bounded by the idle limit and the deadline (no pings wanted here)."""
        raw = response.raw
        idle_limit = self.timeouts.read
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(f"{self.provider.name}: response exceeded the {self.timeouts.total:g}s deadline")
            sock = getattr(raw.connection, "sock", None)
            if sock is not None:
                sock.settimeout(min(idle_limit, remaining))
            try:
                data = raw.read1(READ_SIZE, decode_content=True)
            except ReadTimeoutError:
                raise self._silent(deadline, idle_limit) from None
            except BROKEN as exc:
                raise self._broke(exc) from None
            if not data:
                return
            yield data

    def release(self, response: requests.Response, wait: float = 0.05) -> None:
        """Done with a stream whose answer is complete: its connection goes back to the pool if
        the rest of the body (usually just the chunked terminator after `[DONE]`) is there or
        arrives within `wait`; otherwise it is closed. Without this every stream costs a new
        connection (and TLS handshake) to the provider."""
        body = self._bodies.pop(response, None)
        try:
            if body is not None:
                body.finish(wait)
        finally:
            response.close()  # closes the connection unless it went back to the pool

    def discard(self, response: requests.Response) -> None:
        """Done with a stream before its end (a client hung up, an error midway): the connection
        is closed, never pooled. On the public path `response.close()` alone would leave the
        helper thread blocked in `recv` on a descriptor of its own, holding the connection open
        until garbage collection; so the helper is woken and waited for first."""
        body = self._bodies.pop(response, None)
        try:
            if body is not None:
                body.abandon()
        finally:
            response.close()

    # -- streaming reads -------------------------------------------------------------

    def _silent(self, deadline: float, idle_limit: float) -> UpstreamTimeout:
        """A read that timed out: the whole-response deadline, or the provider went quiet too long."""
        if time.monotonic() >= deadline:
            return UpstreamTimeout(f"{self.provider.name}: response exceeded the {self.timeouts.total:g}s deadline")
        return UpstreamTimeout(f"{self.provider.name}: no data for {idle_limit:g}s")

    def _broke(self, exc: BaseException) -> UpstreamUnavailable:
        return UpstreamUnavailable(f"{self.provider.name}: connection broke mid-response: {reason(exc)}")

    def iter_body(self, response: requests.Response, deadline: float) -> Iterator[Any]:
        """Body bytes as they arrive (one read, whatever is available), or PING after a
        silence of `ping_interval`. Raises UpstreamTimeout / UpstreamUnavailable."""
        return self._iter(self._body(response), deadline)

    def _iter(self, body: Body, deadline: float) -> Iterator[Any]:
        """One wait per arrival, bounded by the next ping, the idle limit and the deadline; all
        that arrived at once goes out together."""
        try:
            yield from self._arrivals(body, deadline)
        except GeneratorExit:  # the caller stopped early: it will release or close the response next
            body.let_go()
            raise

    def _arrivals(self, body: Body, deadline: float) -> Iterator[Any]:
        idle_limit = self.timeouts.read
        ping_every = self.timeouts.ping_interval
        last_heard = last_data = time.monotonic()
        while not body.done:
            now = time.monotonic()
            if now >= deadline:
                body.abandon()
                raise UpstreamTimeout(f"{self.provider.name}: response exceeded the {self.timeouts.total:g}s deadline")
            if now - last_data >= idle_limit:
                body.abandon()
                raise UpstreamTimeout(f"{self.provider.name}: no data for {idle_limit:g}s")
            wait = min(ping_every - (now - last_heard), idle_limit - (now - last_data), deadline - now)
            if wait <= 0:
                last_heard = now
                yield PING
                continue
            try:
                data = body.read(wait)
            except ReadTimeoutError:  # the socket's own timeout (idle limit or deadline) on the public path
                raise self._silent(deadline, idle_limit) from None
            except BROKEN as exc:
                raise self._broke(exc) from None
            if data is None:  # the wait ran out: the loop decides between a ping and a timeout
                continue
            last_heard = last_data = time.monotonic()
            if data:
                yield data
