"""A host Flask application that embeds claude-proxy under /llm (run: `gunicorn tests.support.embedded_app:app`).

It is what an existing service looks like: its own routes, its own JSON 404, and a
`before_request` hook that demands the host's session token. The proxy's routes are exempted
from that hook by blueprint name — they have their own auth (`[server] auth_keys`, sent by
Claude Code as x-api-key) and must answer errors as Anthropic envelopes, not as host errors.
The config comes from the normal search ($CLAUDE_PROXY_CONFIG).
"""

from __future__ import annotations

import hmac
import os

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from claude_proxy import create_blueprint, load_config

HOST_TOKEN = os.environ.get("HOST_APP_TOKEN", "host-session-token")
PROXY_BLUEPRINT = "claude_proxy"  # create_blueprint's default name

app = Flask(__name__)
app.register_blueprint(create_blueprint(load_config()), url_prefix="/llm")


@app.before_request
def require_host_session() -> Response | tuple[Response, int] | None:
    """The host's auth, for the host's routes only: the proxy under /llm checks its own keys."""
    if request.blueprint == PROXY_BLUEPRINT or request.endpoint in ("index", "static"):
        return None
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(presented.encode(), HOST_TOKEN.encode()):
        return jsonify(detail="host: login required"), 403
    return None


@app.get("/")
def index() -> dict[str, str]:
    return {"service": "host-app"}


@app.get("/api/items")
def items() -> dict[str, list[int]]:
    return {"items": [1, 2, 3]}


@app.post("/api/items")
def add_item() -> tuple[dict[str, object], int]:
    return {"added": request.get_json(force=True)}, 201


@app.errorhandler(HTTPException)
def host_error(error: HTTPException) -> tuple[Response, int]:
    """The host's own error format (the proxy's blueprint handles its errors itself)."""
    return jsonify(detail=f"host: {error.name.lower()}"), error.code or 500
