"""One exception family for everything a client can be told went wrong.

Each carries an HTTP status and an Anthropic error type; the app turns any of them into
the Anthropic envelope (before a stream) or an `error` event (during one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claude_proxy.translate.errors import envelope, error_type_for_status


class ProxyError(Exception):
    status = 500
    error_type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.details = dict(details) if details else None  # `error.details` (e.g. an error_code SDKs act on)
        self.message = message
        if status is not None:
            self.status = status
            self.error_type = error_type or error_type_for_status(status)
        elif error_type is not None:
            self.error_type = error_type
        self.headers = dict(headers or {})

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        found = envelope(self.error_type, self.message, request_id)
        if self.details:
            found["error"]["details"] = self.details
        return found


class InvalidRequest(ProxyError):
    status, error_type = 400, "invalid_request_error"


class AuthenticationFailed(ProxyError):
    status, error_type = 401, "authentication_error"


class MissingProviderKey(AuthenticationFailed):
    """The proxy has no key for a provider: a fallback chain skips that target instead of failing."""


class NotFound(ProxyError):
    status, error_type = 404, "not_found_error"


class RequestTooLarge(ProxyError):
    status, error_type = 413, "request_too_large"


class UpstreamUnavailable(ProxyError):
    """Could not reach the upstream, or it broke before answering."""

    status, error_type = 502, "api_error"


class UpstreamTimeout(ProxyError):
    status, error_type = 504, "api_error"


class UpstreamHTTPError(ProxyError):
    """The upstream answered with an error status; the body is already an envelope."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any],
        headers: Mapping[str, str] | None = None,
        raw: bytes = b"",
        content_type: str = "",
    ) -> None:
        err = body.get("error") or {}
        super().__init__(
            str(err.get("message", "")), status=status, error_type=str(err.get("type", "api_error")), headers=headers
        )
        self.raw = raw  # the upstream's own bytes, for passthrough ("return errors unmodified")
        self.content_type = content_type
