"""Anthropic error envelopes, and reading the many shapes of upstream error bodies."""

from __future__ import annotations

import json
from typing import Any

STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_type_for_status(status: int) -> str:
    if status in STATUS_TYPES:
        return STATUS_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def envelope(error_type: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def upstream_error_message(payload: Any) -> str | None:
    """The human message inside an upstream error body, whatever its shape."""
    if isinstance(payload, list) and payload:
        return upstream_error_message(payload[0])
    if not isinstance(payload, dict):
        return None
    err = payload.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        msg = err.get("message") or err.get("msg")
        raw = (err.get("metadata") or {}).get("raw") if isinstance(err.get("metadata"), dict) else None
        if isinstance(msg, str) and msg:
            if isinstance(raw, str) and raw and raw not in msg:
                return f"{msg} ({raw[:500]})"
            return msg
        if err.get("type"):
            return str(err["type"])
    if isinstance(payload.get("message"), str):
        return payload["message"]
    detail = payload.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail[:5])
    return None


def upstream_error_type(payload: Any) -> str | None:
    """An Anthropic error type named by an upstream body (used for in-stream errors)."""
    if isinstance(payload, list) and payload:
        return upstream_error_type(payload[0])
    if not isinstance(payload, dict):
        return None
    err = payload.get("error")
    candidates: list[Any] = []
    if isinstance(err, dict):
        candidates = [err.get("type"), err.get("code"), err.get("status")]
    candidates += [payload.get("type"), payload.get("code")]
    for value in candidates:
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return error_type_for_status(int(value))
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in TYPE_STATUS:
                return lowered
            if "rate" in lowered or "quota" in lowered:
                return "rate_limit_error"
            if "overload" in lowered or "unavailable" in lowered or "capacity" in lowered:
                return "overloaded_error"
            if "auth" in lowered or "key" in lowered:
                return "authentication_error"
            if "invalid" in lowered or "bad_request" in lowered or "context_length" in lowered:
                return "invalid_request_error"
    return None


def from_upstream_response(
    status: int, body: bytes, provider: str = "upstream", estimate: int | None = None
) -> tuple[int, dict[str, Any]]:
    """An upstream HTTP error → (status for the client, Anthropic envelope). A context overflow
    becomes Anthropic's 400 `prompt is too long: N tokens > M maximum`, whatever the provider's
    wording and status (some send 413 or 422), so clients compact instead of failing."""
    from .overflow import upstream_overflow  # overflow builds its envelopes with this module
    payload: Any = None
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        payload = None
    message = upstream_error_message(payload)
    if not message:
        text = body.decode("utf-8", "replace").strip() if body else ""
        message = text[:1000] if text and not text.lstrip().startswith("<") else f"HTTP {status}"
    if 400 <= status < 500:
        overflow = upstream_overflow(payload, message, estimate)
        if overflow is not None:
            return 400, overflow
    client_status = status if 400 <= status <= 599 else 502
    error_type = error_type_for_status(client_status)
    return client_status, envelope(error_type, f"{provider}: {message}")


THREAD_TYPES = ("create", "continue")


def thread_refusal(body: Any) -> dict[str, Any] | None:
    """The 400 for a request that asks for a server-side message thread, which the proxy cannot
    hold (a `continue` carries only the new turn: forwarding it would lose the history), else None.

    The official SDKs recover from exactly this: anthropic-sdk-python 2.16
    (lib/threads/_thread_state.py, `ThreadState.recovers_from` / `_unsupported_features`) catches
    any APIStatusError whose body has `error.details.error_code == "thread_unsupported_request"`
    (`unsupported` may list anything, even values it does not know, or be absent) and, when the
    thread's `unsupported_request_behavior` is "continue_unthreaded" — what tool runners use —
    drops `thread` from that turn and every later one and re-sends the full history. A thread made
    with the default behavior "error" raises it to the caller instead. So both `create` and
    `continue` are refused: refusing the first turn stops threading before any turn is lost.
    (The TypeScript SDK's thread code was not in the snapshot checked; the wire shape is shared.)
    """
    if not isinstance(body, dict):
        return None
    thread = body.get("thread")
    if not isinstance(thread, dict) or thread.get("type") not in THREAD_TYPES:
        return None
    refusal = envelope(
        "invalid_request_error",
        "thread: this proxy cannot hold server-side message threads; send the full conversation without `thread`",
    )
    refusal["error"]["details"] = {"error_code": "thread_unsupported_request", "unsupported": ["thread"]}
    return refusal
