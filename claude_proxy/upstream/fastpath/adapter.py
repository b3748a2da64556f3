"""The fast path's requests adapter and request templates.

For every request requests parses the URL (twice), looks for a proxy, builds the pool key and
merges the session's settings; an upstream's URLs are a handful, fixed at start, and never
proxied (`trust_env` is off), so each of those answers is worked out once and remembered.
Everything here goes through requests' documented subclass hooks (`init_poolmanager`,
`get_connection_with_tls_context`, `request_url`) and public objects; what it plugs in
(`connection.POOL_CLASSES`) is where the private touches are.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from claude_proxy.upstream.fastpath.connection import POOL_CLASSES


class RememberingAdapter(HTTPAdapter):
    """`HTTPAdapter` that remembers, per URL, the pool and the request target it worked out.

    `close()` (the session's) forgets them with the pool manager's pools.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pools: dict[tuple[Any, ...], Any] = {}
        self.targets: dict[str, str] = {}

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
        pool = self.pools.get(key)
        if pool is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self.pools[key] = pool
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        if proxies or not isinstance(request.url, str):
            return str(super().request_url(request, proxies))
        target = self.targets.get(request.url)
        if target is None:
            target = self.targets[request.url] = str(super().request_url(request, proxies))
        return target

    def close(self) -> None:
        self.pools.clear()
        super().close()


class RequestTemplates:
    """Prepared requests per (method, URL), copied for each call: URL parsing and merging the
    session's settings happen once, not per request (they were a sixth of the proxy's CPU per call)."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._templates: dict[tuple[str, str], requests.PreparedRequest] = {}
        self._lock = threading.Lock()

    def prepare(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> requests.PreparedRequest:
        template = self._templates.get((method, url))
        if template is None:
            template = self.session.prepare_request(requests.Request(method, url))
            with self._lock:
                self._templates[(method, url)] = template
        prepared = template.copy()
        prepared.headers.update(headers)
        prepared.prepare_body(body, None)
        return prepared
