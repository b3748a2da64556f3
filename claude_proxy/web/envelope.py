"""Every error a client of the web edge sees: Anthropic's envelope, with the request id and optional details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import Response, g

from claude_proxy.pipeline.reply import JSON
from claude_proxy.translate.errors import envelope

# Routes whose refusals at the door (a bad key, a limit) still get a journal line and request metrics.
JOURNALLED_ENDPOINTS = frozenset({"messages", "count_tokens"})
# A refusal retrying cannot change (a bad key, a spent budget): Anthropic's SDKs and Claude Code read it.
NO_RETRY = {"x-should-retry": "false"}


def error_response(
    status: int,
    error_type: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Response:
    body = envelope(error_type, message, g.get("request_id"))
    if details:
        body["error"]["details"] = dict(details)
    response = Response(orjson.dumps(body), status=status, mimetype=JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
