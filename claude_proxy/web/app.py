"""Flask edge: the app factory and the Blueprint. Routes only — the rules live elsewhere.

Embed the proxy in an existing Flask service::

    app.register_blueprint(create_blueprint(load_config()), url_prefix="/llm")
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import is_hop_by_hop_header
from werkzeug.middleware.proxy_fix import ProxyFix

from claude_proxy.config.loader import Config, load_config
from claude_proxy.errors import InvalidRequest, NotFound, ProxyError, RequestTooLarge
from claude_proxy.pipeline import metrics
from claude_proxy.pipeline.outcome import Outcome
from claude_proxy.pipeline.proxy import Proxy
from claude_proxy.pipeline.reply import Reply
from claude_proxy.translate.errors import error_type_for_status
from claude_proxy.translate.response import random_hex
from claude_proxy.web.envelope import JOURNALLED_ENDPOINTS, NO_RETRY, error_response

log = logging.getLogger("claude_proxy")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
OPEN_ENDPOINTS = {"health", "root", "hello"}
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
# Beyond HTTP's hop-by-hop headers (werkzeug's list), these never cross the proxy either:
# cookies are not the proxy's business, and the server frames the body itself.
NEVER_FORWARDED = {"set-cookie", "content-length"}


def forwarded(name: str) -> bool:
    return not is_hop_by_hop_header(name) and name.lower() not in NEVER_FORWARDED


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    return error_response(status, error_type_for_status(status), error.description or error.name)


def _unexpected(error: Exception) -> Response:
    """Never a traceback or an HTML page: the details go to the log, the client gets an envelope."""
    log.exception("unhandled error in claude-proxy (request %s)", g.get("request_id"))
    return error_response(500, "api_error", f"claude-proxy internal error ({type(error).__name__})")


def _to_response(reply: Reply) -> Response:
    response = Response(reply.body, status=reply.status, content_type=reply.content_type)
    for key, value in reply.headers.items():
        if forwarded(key):
            response.headers[key] = value
    return response


def _read_body(limit: int) -> bytes:
    """The request body, refused past `limit`: a declared length before reading, a chunked body as soon
    as it passes the limit (Flask's per-request limit; werkzeug stops a chunked read at it, so the limit
    is set one byte higher and a body that reaches that byte is too large)."""
    length = request.content_length
    if length is not None and length > limit:
        raise RequestTooLarge(f"request body is {length} bytes; the limit is {limit} bytes")
    too_large = RequestTooLarge(f"request body exceeds the limit of {limit} bytes")
    request.max_content_length = limit + 1
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise too_large from None
    except Exception as exc:  # the client's framing broke (bad chunk size, early close): its fault, not ours
        raise InvalidRequest(f"body: could not be read ({type(exc).__name__})") from None
    if len(data) > limit:
        raise too_large
    return data


class ProxyBlueprint(Blueprint):
    """A Blueprint that carries the `Proxy` serving it (create_app puts it in `app.extensions`)."""

    proxy: Proxy
    teams: Any = None  # web.admin.TeamsEdge when [teams] is configured


def create_blueprint(config: Config, *, proxy: Proxy | None = None, name: str = "claude_proxy") -> ProxyBlueprint:
    """The proxy's routes, ready to register on any Flask app (with any url_prefix)."""
    proxy = proxy or Proxy(config)
    bp = ProxyBlueprint(name, __name__)
    bp.proxy = proxy
    auth_keys = tuple(k.encode() for k in config.auth_keys)
    origins = set(config.cors_origins)
    open_endpoints = OPEN_ENDPOINTS | ({"metrics"} if config.metrics_public else set())
    teams = _teams_edge(config, bp)

    @bp.before_request
    def _begin() -> Response | None:
        incoming = request.headers.get("x-request-id", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else "req_" + random_hex()
        if request.method == "OPTIONS" and origins:
            return _preflight()
        if teams is not None:  # stored keys beside the static ones, and admission (web/admin.py)
            return teams.begin(open_endpoints)
        endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
        if auth_keys and endpoint and endpoint not in open_endpoints:
            bearer = request.headers.get("authorization", "")
            # Either header may carry it (Claude Code sends x-api-key from ANTHROPIC_API_KEY and
            # Bearer from ANTHROPIC_AUTH_TOKEN; a user may have both set).
            presented = (
                request.headers.get("x-api-key") or "",
                bearer[7:].strip() if bearer.lower().startswith("bearer ") else "",
            )
            ok = False
            for key in auth_keys:  # every pair compared, in constant time, so timing tells nothing
                for candidate in presented:
                    ok |= hmac.compare_digest(candidate.encode(), key)
            if not ok:
                message = "invalid or missing proxy key: send it as x-api-key or Authorization: Bearer"
                if endpoint in JOURNALLED_ENDPOINTS:  # a journal line and request metrics, like any answer
                    proxy.recorder.fail(Outcome(g.request_id, endpoint),
                                        ProxyError(message, status=401, error_type="authentication_error"))
                return error_response(401, "authentication_error", message, NO_RETRY)
        return None

    def _preflight() -> Response:
        response = Response(status=204)
        origin = request.headers.get("origin", "")
        if origin in origins or "*" in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "access-control-request-headers", "content-type, x-api-key, authorization, anthropic-version"
            )
            response.headers["Access-Control-Max-Age"] = "600"
            response.headers["Vary"] = "Origin"
        return response

    @bp.after_request
    def _end(response: Response) -> Response:
        response.headers["request-id"] = g.get("request_id", "")
        origin = request.headers.get("origin")
        if origin and (origin in origins or "*" in origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    @bp.errorhandler(ProxyError)
    def _proxy_error(error: ProxyError) -> Response:
        message = error.message
        for secret in proxy.secrets:  # an upstream may echo the proxy's own key back ("Incorrect API key: sk-…")
            message = message.replace(secret, "[REDACTED]")
        return error_response(error.status, error.error_type, message, error.headers, error.details)

    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _unexpected)

    def _only(*methods: str) -> None:
        if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
            raise ProxyError(
                f"{request.method} is not allowed on {request.path} (use {', '.join(methods)})",
                status=405,
                error_type="invalid_request_error",
            )

    def _call(endpoint: str) -> Outcome:
        # g.log_fields: the key id and team (never the key) when [teams] is on; g.outcome: settled on close
        g.outcome = Outcome(g.request_id, endpoint, extra=dict(g.get("log_fields") or {}))
        return g.outcome

    @bp.route("/", methods=ALL_METHODS, endpoint="root")
    def root() -> Any:
        _only("GET")
        return {"name": "claude-proxy", "status": "ok", "provider": proxy.provider.name}

    @bp.route("/api/hello", methods=ALL_METHODS, endpoint="hello")
    def hello() -> Response:
        """Claude Code 2.1.332's reachability probe (`HEAD /api/hello`, no credentials, before its first
        request unless CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is set): answered at once, open like /."""
        _only("GET")
        return Response(b"", status=200, content_type="text/plain")

    @bp.route("/health", methods=ALL_METHODS, endpoint="health")
    def health() -> Any:
        _only("GET")
        return proxy.health()

    @bp.route("/v1/messages", methods=ALL_METHODS)
    def messages() -> Response:
        _only("POST")
        raw = _read_body(config.max_body_bytes)
        policy = bp.teams.target_policy(g.get("principal")) if bp.teams is not None else None
        return _to_response(proxy.messages(raw, request.headers, _call("messages"), policy))

    @bp.route("/v1/messages/count_tokens", methods=ALL_METHODS)
    def count_tokens() -> Response:
        _only("POST")
        raw = _read_body(config.max_body_bytes)
        return _to_response(proxy.count_tokens(raw, request.headers, _call("count_tokens")))

    @bp.route("/v1/models", methods=ALL_METHODS)
    def models() -> Response:
        _only("GET")
        return _to_response(proxy.models(request.headers, request.args))

    @bp.route("/v1/models/<path:model_id>", methods=ALL_METHODS)
    def model(model_id: str) -> Response:
        _only("GET")
        return _to_response(proxy.model(model_id, request.headers))

    @bp.route("/metrics", methods=ALL_METHODS, endpoint="metrics")
    def metrics_endpoint() -> Response:
        """Prometheus text format; behind the proxy keys unless [server] metrics_public = true."""
        _only("GET")
        body, content_type = metrics.metrics().exposition()
        return Response(body, status=200, content_type=content_type)

    @bp.route("/<path:anything>", methods=ALL_METHODS)
    def unknown(anything: str) -> Response:
        raise NotFound(f"{request.method} /{anything} is not a claude-proxy endpoint")

    return bp


def _teams_edge(config: Config, bp: ProxyBlueprint) -> Any:
    """[teams]: the stored-key door, admin API and /v1/me on this blueprint (imported only when on)."""
    if config.teams is None:
        return None
    from claude_proxy.web.admin import TeamsEdge

    edge = TeamsEdge(config, recorder=bp.proxy.recorder)
    edge.install(bp)
    bp.teams = edge
    return edge


def create_app(config: Config | None = None) -> Flask:
    """A Flask app serving only the proxy (config found the usual way if not given)."""
    config = config or load_config()
    app = Flask("claude_proxy")
    app.json.sort_keys = False  # the default provider: keeps the order the pipeline built
    bp = create_blueprint(config)
    app.register_blueprint(bp)
    app.extensions["claude_proxy"] = bp.proxy

    # Outside the blueprint too (unknown methods at routing level, errors in other handlers).
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    if config.forwarded_prefix:  # werkzeug's own fix: X-Forwarded-Prefix becomes SCRIPT_NAME, nothing else trusted
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=0, x_host=0, x_port=0, x_prefix=1)
    return app
