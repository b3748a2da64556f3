"""What the pipeline hands back to the web edge: a status, a body (bytes or a stream of bytes), headers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from claude_proxy.errors import InvalidRequest

JSON = "application/json"
SSE = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Reply:
    status: int
    body: bytes | Iterator[bytes]
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(payload), JSON, dict(headers or {}))


def decode_json(raw: bytes) -> Any:
    """The request body as JSON, or an InvalidRequest that says what is wrong with it."""
    if not raw.strip():
        raise InvalidRequest("body: the request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)  # validates UTF-8 itself: no separate decoding pass on the happy path
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidRequest(f"body: not valid UTF-8 (byte {bad.start})") from None
        raise InvalidRequest(f"body: not valid JSON: {exc}") from None


def too_deep() -> InvalidRequest:
    return InvalidRequest("body: JSON nested too deeply to process")
