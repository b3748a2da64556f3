"""A real local search service on 127.0.0.1 speaking SearXNG's, Brave's and Tavily's JSON APIs.

One threaded HTTP server answers all three shapes from one small corpus, records every query it is
asked, and can be told to fail the next searches with a status (429, 503…) or to hang::

    with SearchService(docs=[Doc("https://pelican.example/facts", "Pelican facts", "…")]) as svc:
        svc.url                    # base URL for SearXNG / Brave / Tavily alike
        svc.queries                # [("searxng", "pelican facts", {...params...}), ...]
        svc.fail_next(429)         # the next search answers 429

Shapes: SearXNG `GET /search?q=&format=json` → {"query", "number_of_results", "results": [{url, title,
content, engine, publishedDate, …}]} (403 without format=json, as an instance without the json format);
Brave `GET /res/v1/web/search?q=&count=` with X-Subscription-Token → {"type": "search", "web":
{"results": [{title, url, description, age, page_age, extra_snippets}]}} (401 without the key);
Tavily `POST /search` {query, max_results, include_domains, exclude_domains} with Bearer key →
{"query", "results": [{title, url, content, score, published_date}], "response_time"} (401 without).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BRAVE_KEY = "brave-test-key-0123456789"
TAVILY_KEY = "tvly-test-key-0123456789"


@dataclass(frozen=True)
class Doc:
    url: str
    title: str
    content: str
    published: str | None = None


@dataclass
class Recorded:
    kind: str
    query: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class SearchService:
    def __init__(self, docs: list[Doc], brave_key: str = BRAVE_KEY, tavily_key: str = TAVILY_KEY) -> None:
        self.docs = list(docs)
        self.brave_key = brave_key
        self.tavily_key = tavily_key
        self.recorded: list[Recorded] = []
        self._failures: list[int] = []
        self._hang = 0.0
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                service._handle(self, "GET")

            def do_POST(self) -> None:
                service._handle(self, "POST")

        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # request threads are joined on close: none may outlive the test (a late one leaves garbage behind)
        self.server.daemon_threads = False
        self.server.block_on_close = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> SearchService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # a hanging answer ends now
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def queries(self) -> list[str]:
        with self._lock:
            return [r.query for r in self.recorded]

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self._failures.extend(statuses)

    def hang(self, seconds: float) -> None:
        self._hang = seconds

    # -- serving --------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        if method == "GET" and parts.path == "/search":
            kind, query, payload = "searxng", params.get("q", ""), params
        elif method == "GET" and parts.path == "/res/v1/web/search":
            kind, query, payload = "brave", params.get("q", ""), params
        elif method == "POST" and parts.path == "/search":
            payload = json.loads(raw or b"{}")
            kind, query = "tavily", str(payload.get("query", ""))
        else:
            return self._send(h, 404, {"error": "not found"})
        with self._lock:
            self.recorded.append(Recorded(kind, query, payload, headers))
            failure = self._failures.pop(0) if self._failures else None
        if self._hang:
            self._stop.wait(self._hang)
        if failure is not None:
            return self._send(h, failure, {"error": {"message": f"failing on purpose with {failure}"}})
        if kind == "searxng":
            if params.get("format") != "json":
                return self._send(h, 403, {"error": "json format not enabled"})
            hits = self._match(query)
            return self._send(h, 200, {
                "query": query,
                "number_of_results": len(hits),
                "results": [
                    {"url": d.url, "title": d.title, "content": d.content, "engine": "local", "engines": ["local"],
                     "parsed_url": list(urlsplit(d.url)), "template": "default.html", "positions": [n + 1],
                     "score": 1.0 / (n + 1), "category": "general", "publishedDate": d.published}
                    for n, d in enumerate(hits)
                ],
                "answers": [], "corrections": [], "infoboxes": [], "suggestions": [], "unresponsive_engines": [],
            })
        if kind == "brave":
            if headers.get("x-subscription-token") != self.brave_key:
                return self._send(h, 401, {"type": "ErrorResponse", "error": {"code": "SUBSCRIPTION_TOKEN_INVALID"}})
            if len(query) > 400:
                return self._send(h, 422, {"type": "ErrorResponse", "error": {"detail": "Query is too long."}})
            hits = self._match(query)[: int(params.get("count", 20))]
            return self._send(h, 200, {
                "type": "search",
                "query": {"original": query},
                "web": {"type": "search", "results": [
                    {"title": d.title, "url": d.url, "description": d.content, "age": "2 days ago",
                     "page_age": d.published, "extra_snippets": [], "meta_url": {"hostname": urlsplit(d.url).hostname}}
                    for d in hits
                ]},
            })
        if headers.get("authorization") != f"Bearer {self.tavily_key}":
            return self._send(h, 401, {"detail": {"error": "Unauthorized: missing or invalid API key."}})
        hits = self._match(query)
        include = payload.get("include_domains") or []
        exclude = payload.get("exclude_domains") or []
        hits = [d for d in hits if (not include or any(_host_in(d.url, x) for x in include))
                and not any(_host_in(d.url, x) for x in exclude)][: int(payload.get("max_results", 5))]
        return self._send(h, 200, {
            "query": query, "answer": None, "images": [], "response_time": 0.01,
            "results": [{"title": d.title, "url": d.url, "content": d.content, "score": 0.9,
                         "raw_content": None, "published_date": d.published} for d in hits],
        })

    def _match(self, query: str) -> list[Doc]:
        words = [w.lower() for w in query.split() if not w.lower().startswith(("site:", "-site:", "(site:", "or"))]
        words = [w.strip("()") for w in words]
        scored = []
        for doc in self.docs:
            text = f"{doc.title} {doc.content} {doc.url}".lower()
            score = sum(1 for w in words if w in text)
            if score:
                scored.append((-score, self.docs.index(doc), doc))
        return [d for _s, _i, d in sorted(scored)]

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.send_header("Connection", "close")  # each request thread ends with its answer (joined on close)
            h.end_headers()
            h.close_connection = True
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client gave up waiting (the timeout tests)


def _host_in(url: str, domain: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host == domain or host.endswith("." + domain)
