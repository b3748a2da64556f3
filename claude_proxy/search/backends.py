"""Search backends behind one interface: SearXNG (self-hosted JSON API), Brave Search, Tavily.

Each turns a query into at most `max_results` `Result`s, cut to `max_result_chars` of text per
search, and every failure into a `SearchError` carrying the Anthropic error code the client sees
in a `web_search_tool_result_error` — a failed search is a result, never a failed request.
Keys come from the variable `api_key_env` names and never appear in an error or a log line.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from claude_proxy.config.websearch import WebSearchConfig
from claude_proxy.translate.websearch import Result, domain_allowed
from claude_proxy.upstream.egress import Egress, egress_for_url

log = logging.getLogger("claude_proxy.search")

MAX_BODY = 8 << 20  # a results page is tens of KB; anything near this is not a search answer


class SearchError(Exception):
    """A search that failed; `code` is Anthropic's `web_search_tool_result_error` error_code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backend:
    """One configured search service. Thread-safe: one pooled session shared by all requests."""

    kind = "base"

    def __init__(self, config: WebSearchConfig, pool_size: int = 16) -> None:
        self.config = config
        self.base_url = (config.url or "").rstrip("/")
        self.session = requests.Session()
        # Like the upstream: trust_env off (no ~/.netrc), and the egress proxy, CAs and client
        # certificate worked out once from [upstream] and the environment and given to every send.
        self.session.trust_env = False
        self.egress: Egress = egress_for_url(self.base_url, config.network) if self.base_url else Egress()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._address_checked = config.url_explicit
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # -- the interface --------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        max_results: int | None = None,
        allowed_domains: Sequence[str] = (),
        blocked_domains: Sequence[str] = (),
        user_location: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> list[Result]:
        """The top results for `query`, filtered by the domain rules and cut to size."""
        query = query.strip()
        if not query:
            raise SearchError("invalid_tool_input", "the search query is empty")
        if len(query) > self.config.max_query_chars:
            raise SearchError("query_too_long", f"the query has {len(query)} characters (limit {self.config.max_query_chars})")
        if self.config.key_missing:
            raise SearchError("unavailable", f"no {self.kind} API key: set {self.config.api_key_env}")
        self._check_address()
        wanted = max_results or self.config.max_results
        timeout = self.config.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise SearchError("unavailable", "no time left for the search before the request's deadline")
        raw = self._search(query, wanted, tuple(allowed_domains), tuple(blocked_domains), user_location or {}, timeout)
        kept = [r for r in raw if r.url.startswith(("http://", "https://"))
                and domain_allowed(r.url, allowed_domains, blocked_domains)]
        return cut(dedupe(kept)[:wanted], self.config.max_result_chars)

    def _search(
        self,
        query: str,
        max_results: int,
        allowed: tuple[str, ...],
        blocked: tuple[str, ...],
        location: Mapping[str, Any],
        timeout: float,
    ) -> list[Result]:
        raise NotImplementedError

    # -- shared plumbing ------------------------------------------------------------------------

    def _check_address(self) -> None:
        """A default endpoint that resolves to a private or loopback address is refused (checked once).
        Behind an egress proxy the proxy resolves the name (the host here may not be able to)."""
        if self._address_checked or self.egress.proxies:
            return
        with self._lock:
            if self._address_checked:
                return
            host = urlsplit(self.base_url).hostname or ""
            try:
                infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            except OSError:
                raise SearchError("unavailable", f"{self.kind}: the search host name could not be resolved") from None
            for info in infos:
                address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
                if not address.is_global:
                    raise SearchError(
                        "unavailable",
                        f"{self.kind}: the default endpoint resolves to a private address; set web_search.url "
                        "explicitly to use it",
                    )
            self._address_checked = True

    def _request(self, method: str, url: str, timeout: float, **kwargs: Any) -> Any:
        """The JSON answer of one request; every failure a SearchError without URL, key or body."""
        try:
            response = self.session.request(
                method, url, timeout=(min(timeout, 10.0), timeout), stream=True,
                proxies=dict(self.egress.proxies), verify=self.egress.verify, cert=self.egress.cert, **kwargs,
            )
        except requests.Timeout:
            raise SearchError("unavailable", f"{self.kind}: the search service did not answer in time") from None
        except requests.exceptions.SSLError:
            raise SearchError("unavailable", f"{self.kind}: TLS to the search service failed ({self.egress.tls_hint(True)})") from None
        except requests.RequestException as exc:
            raise SearchError("unavailable", f"{self.kind}: could not reach the search service ({type(exc).__name__})") from None
        try:
            status = response.status_code
            if status != 200:
                raise status_error(self.kind, status, _peek(response))
            body = response.raw.read(MAX_BODY + 1, decode_content=True)
            if len(body) > MAX_BODY:
                raise SearchError("unavailable", f"{self.kind}: the search answer is too large")
        except requests.RequestException:
            raise SearchError("unavailable", f"{self.kind}: the search answer broke off") from None
        except OSError:
            raise SearchError("unavailable", f"{self.kind}: the search answer broke off") from None
        finally:
            response.close()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SearchError("unavailable", f"{self.kind}: the search service answered with something that is not JSON") from None


def _peek(response: Any) -> str:
    try:
        return response.raw.read(4096, decode_content=True).decode("utf-8", "replace").lower()
    except Exception:  # an error body we cannot read is no worse than one we did not ask for
        return ""


def status_error(kind: str, status: int, body: str) -> SearchError:
    """An HTTP error status as Anthropic's error code (the body only steers the code, never shown)."""
    if status == 429 or status in (432, 433):  # Tavily: 432/433 are plan / pay-as-you-go limits
        return SearchError("too_many_requests", f"{kind}: the search service is rate-limiting (HTTP {status})")
    if status in (400, 413, 414, 422) and ("long" in body or "length" in body or status in (413, 414)):
        return SearchError("query_too_long", f"{kind}: the search service refused the query as too long (HTTP {status})")
    if status in (401, 403):
        return SearchError("unavailable", f"{kind}: the search service refused the key or the request (HTTP {status})")
    return SearchError("unavailable", f"{kind}: the search service answered HTTP {status}")


def dedupe(results: list[Result]) -> list[Result]:
    seen: set[str] = set()
    out = []
    for r in results:
        if r.url not in seen:
            seen.add(r.url)
            out.append(r)
    return out


def cut(results: list[Result], budget: int) -> list[Result]:
    """Snippets cut so one search's text stays within `budget` characters, shared fairly."""
    out = []
    left = budget
    for n, r in enumerate(results):
        share = max(left // (len(results) - n), 0)
        snippet = r.snippet if len(r.snippet) <= share else r.snippet[: max(share - 1, 0)].rstrip() + "…"
        left -= len(snippet)
        title = r.title if len(r.title) <= 300 else r.title[:299] + "…"
        out.append(Result(r.url, title, r.page_age, snippet))
    return out


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _site_terms(allowed: tuple[str, ...], blocked: tuple[str, ...]) -> str:
    """Domain rules as query operators, for engines that read them (results are filtered anyway)."""
    terms = []
    if allowed:
        sites = [f"site:{d.split('/')[0]}" for d in allowed]
        terms.append(sites[0] if len(sites) == 1 else "(" + " OR ".join(sites) + ")")
    terms += [f"-site:{d.split('/')[0]}" for d in blocked]
    return " ".join(terms)


class SearXNG(Backend):
    """GET {url}/search?q=…&format=json (the instance must list `json` in search.formats, else 403)."""

    kind = "searxng"

    def _search(self, query: str, max_results: int, allowed: tuple[str, ...], blocked: tuple[str, ...],
                location: Mapping[str, Any], timeout: float) -> list[Result]:
        sites = _site_terms(allowed, blocked)
        params = {"q": f"{query} {sites}" if sites else query, "format": "json", "pageno": "1"}
        headers = {"Accept": "application/json"}
        if self.config.api_key:  # an instance behind a bearer-token gateway
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        data = self._request("GET", f"{self.base_url}/search", timeout, params=params, headers=headers)
        items = data.get("results") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise SearchError("unavailable", "searxng: the answer has no results list")
        return [
            Result(_text(i.get("url")), _text(i.get("title")) or _text(i.get("url")),
                   _text(i.get("publishedDate")) or None, _text(i.get("content")))
            for i in items if isinstance(i, dict)
        ]


class Brave(Backend):
    """GET {url}/res/v1/web/search?q=…&count=… with X-Subscription-Token."""

    kind = "brave"

    def _search(self, query: str, max_results: int, allowed: tuple[str, ...], blocked: tuple[str, ...],
                location: Mapping[str, Any], timeout: float) -> list[Result]:
        sites = _site_terms(allowed, blocked)
        q = f"{query} {sites}" if sites else query
        params: dict[str, str] = {"q": q[: self.config.max_query_chars], "count": str(min(max_results * 2, 20))}
        country = location.get("country")
        if isinstance(country, str) and len(country) == 2:
            params["country"] = country.upper()
        headers = {"Accept": "application/json", "X-Subscription-Token": self.config.api_key or ""}
        data = self._request("GET", f"{self.base_url}/res/v1/web/search", timeout, params=params, headers=headers)
        web = data.get("web") if isinstance(data, dict) else None
        items = web.get("results") if isinstance(web, dict) else []
        if not isinstance(items, list):
            raise SearchError("unavailable", "brave: the answer has no web results list")
        out = []
        for i in items:
            if not isinstance(i, dict):
                continue
            snippet = _text(i.get("description"))
            extra = i.get("extra_snippets")
            if isinstance(extra, list):
                snippet = "\n".join([snippet, *(_text(e) for e in extra)]).strip()
            age = _text(i.get("page_age")) or _text(i.get("age")) or None
            out.append(Result(_text(i.get("url")), _text(i.get("title")) or _text(i.get("url")), age, snippet))
        return out


class Tavily(Backend):
    """POST {url}/search with a JSON body and `Authorization: Bearer <key>`."""

    kind = "tavily"

    def _search(self, query: str, max_results: int, allowed: tuple[str, ...], blocked: tuple[str, ...],
                location: Mapping[str, Any], timeout: float) -> list[Result]:
        payload: dict[str, Any] = {"query": query, "max_results": min(max_results, 20), "search_depth": "basic"}
        if allowed:
            payload["include_domains"] = list(allowed)
        if blocked:
            payload["exclude_domains"] = list(blocked)
        country = location.get("country")
        if isinstance(country, str) and country:
            payload["country"] = country  # Tavily boosts results from this country (general topic)
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.config.api_key or ''}"}
        data = self._request("POST", f"{self.base_url}/search", timeout, json=payload, headers=headers)
        items = data.get("results") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise SearchError("unavailable", "tavily: the answer has no results list")
        return [
            Result(_text(i.get("url")), _text(i.get("title")) or _text(i.get("url")),
                   _text(i.get("published_date")) or None, _text(i.get("content")))
            for i in items if isinstance(i, dict)
        ]


BACKEND_CLASSES: dict[str, type[Backend]] = {"searxng": SearXNG, "brave": Brave, "tavily": Tavily}


def build_backend(config: WebSearchConfig | None, pool_size: int = 16) -> Backend | None:
    """The backend the config names; None for "native" or no [web_search] table."""
    if config is None or not config.runs_searches:
        return None
    return BACKEND_CLASSES[config.backend](config, pool_size)
