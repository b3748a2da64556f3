"""Optional speed code that works inside http.client/urllib3 internals (docs/internals-ledger.md).

`client.Upstream` reaches all of it through one seam, `load()`: a `FastPath` (adapter, request
templates, socket bodies) or None. None when the switch is off (`CLAUDE_PROXY_FAST_PATHS=0`,
`[server] fast_paths = false`) or when `available()` finds that the installed libraries are not
the ones this code was written against: then it logs one line and the proxy runs on the public
requests/urllib3 API only. A version skew is never an upstream error.
"""

from __future__ import annotations

import functools
import http.client
import inspect
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection as Urllib3Connection
from urllib3.connectionpool import HTTPConnectionPool

log = logging.getLogger("claude_proxy.upstream")

URLLIB3_RANGE = ((2, 2), (3, 0))  # read1 (2.2) and 2.x connection semantics
REQUESTS_FLOOR = (2, 32, 2)  # get_connection_with_tls_context, the hook the pool cache uses


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _probe_response() -> tuple[Any, Any]:
    """An http.client response and urllib3's wrapper around it, over a socketpair, as a pool makes them."""
    a, b = socket.socketpair()
    try:
        a.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        inner = http.client.HTTPResponse(b, method="POST")
        inner.begin()
        raw = urllib3.HTTPResponse(
            body=inner, headers=dict(inner.getheaders()), status=inner.status, preload_content=False,
            original_response=inner,
        )
        return inner, raw
    finally:
        a.close()
        b.close()


def _checks() -> list[tuple[str, Callable[[], bool]]]:
    """(what, check) for every private attribute or behaviour the fast path relies on."""

    def begin_reads_parse_headers() -> bool:
        code = getattr(http.client.HTTPResponse.begin, "__code__", None)
        return code is not None and "parse_headers" in code.co_names

    def urllib3_request_signature() -> bool:
        return "chunked" in inspect.signature(Urllib3Connection.request).parameters

    def pool_classes() -> bool:
        classes = getattr(urllib3.PoolManager(), "pool_classes_by_scheme", None)
        return isinstance(classes, Mapping) and {"http", "https"} <= set(classes)

    def raw_holds_http_client_response() -> bool:
        inner, raw = _probe_response()
        return getattr(raw, "_fp", None) is inner and callable(getattr(getattr(inner, "fp", None), "read1", None))

    return [
        (
            f"urllib3 {urllib3.__version__} (needs >=2.2,<3)",
            lambda: URLLIB3_RANGE[0] <= _version(urllib3.__version__)[:2] < URLLIB3_RANGE[1],
        ),
        (
            f"requests {requests.__version__} (needs >=2.32.2)",
            lambda: _version(requests.__version__) >= REQUESTS_FLOOR
            and hasattr(HTTPAdapter, "get_connection_with_tls_context"),
        ),
        ("http.client.HTTPResponse.begin looks up a global parse_headers", begin_reads_parse_headers),
        ("urllib3 HTTPConnection.request(..., chunked=)", urllib3_request_signature),
        ("urllib3 HTTPConnectionPool.ConnectionCls", lambda: hasattr(HTTPConnectionPool, "ConnectionCls")),
        ("urllib3 PoolManager.pool_classes_by_scheme", pool_classes),
        ("urllib3 HTTPResponse._fp is http.client's response, with fp.read1", raw_holds_http_client_response),
        ("urllib3 HTTPResponse.tell/connection/release_conn", lambda: all(
            hasattr(urllib3.HTTPResponse, name) for name in ("tell", "connection", "release_conn")
        )),
    ]


def problems() -> list[str]:
    """What does not hold in the installed libraries (empty when the fast path may run)."""
    found = []
    for what, check in _checks():
        try:
            ok = check()
        except Exception:  # a check that cannot even run is a mismatch, not a crash
            ok = False
        if not ok:
            found.append(what)
    return found


@functools.cache
def available() -> bool:
    """Checked once per process: True if everything the fast path touches is as expected.
    Otherwise one log line says what differs, and the public path is used from then on."""
    found = problems()
    if found:
        log.warning("upstream fast paths off (installed libraries differ: %s); using public requests/urllib3 API", "; ".join(found))
    return not found


class FastPath:
    """The one seam `client.Upstream` reaches the fast path through (one per Upstream)."""

    def __init__(self, session: requests.Session) -> None:
        # Imported only once `available()` said yes: connection.py builds on http.client's code at import.
        from claude_proxy.upstream.fastpath.adapter import RememberingAdapter, RequestTemplates
        from claude_proxy.upstream.fastpath.socketbody import SocketBody

        self.session = session
        self._adapter_class = RememberingAdapter
        self.prepare = RequestTemplates(session).prepare
        self.open_body: Callable[[requests.Response], Any] = SocketBody.open
        """A `socketbody.SocketBody` for an unread, uncompressed body on a real socket; else None."""

    def adapter(self, **kwargs: Any) -> HTTPAdapter:
        return self._adapter_class(**kwargs)

    def send(self, prepared: requests.PreparedRequest, timeout: tuple[float, float]) -> requests.Response:
        """Through the session's adapter, past `Session.send`: of what it adds, redirects are off,
        there are no hooks, and the cookies it would extract are refused anyway."""
        adapter = self.session.get_adapter(prepared.url or "")
        return adapter.send(
            prepared, stream=True, timeout=timeout, verify=self.session.verify, cert=self.session.cert, proxies={}
        )


def load(session: requests.Session, enabled: bool) -> FastPath | None:
    """A FastPath for this session, or None when switched off or not available here."""
    if not enabled or not available():
        return None
    return FastPath(session)
