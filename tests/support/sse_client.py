"""Client-side helpers for end-to-end tests: read an Anthropic SSE body into event dicts, strictly.

The grammar itself (which events may follow which) is checked by `check_grammar` from
tests/test_translate_stream_properties.py; this module only turns wire bytes into events and
insists that every `event:` name matches its data's `type`.
"""

from __future__ import annotations

import json
from typing import Any

import requests

MESSAGE = {"model": "claude-sonnet-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]}


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """The events of a complete SSE body; AssertionError on anything that is not clean SSE."""
    text = raw.decode("utf-8")
    events: list[dict[str, Any]] = []
    assert text == "" or text.endswith("\n\n"), f"body does not end with a blank line: {text[-200:]!r}"
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            else:
                raise AssertionError(f"unexpected SSE line {line[:200]!r}")
        assert name is not None and data, f"incomplete SSE event {block[:200]!r}"
        event = json.loads("\n".join(data))
        assert event["type"] == name, f"event name {name!r} but data type {event['type']!r}"
        events.append(event)
    return events


def message_body(stream: bool = False, text: str = "hello there", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**MESSAGE, "messages": [{"role": "user", "content": text}], **extra}
    if stream:
        body["stream"] = True
    return body


def post_messages(
    base_url: str,
    body: dict[str, Any] | bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> requests.Response:
    """POST /v1/messages and read the whole answer (streamed or not)."""
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    return requests.post(base_url + "/v1/messages", headers=headers or {}, timeout=timeout, **kwargs)


def stream_events(
    base_url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, list[dict[str, Any]], requests.Response]:
    """A streaming request: (status, parsed events or [] for a non-SSE answer, the response)."""
    response = post_messages(base_url, body or message_body(stream=True), headers, timeout)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return response.status_code, parse_sse(response.content), response
    return response.status_code, [], response


def text_of(events: list[dict[str, Any]]) -> str:
    """All text deltas of a stream, joined."""
    return "".join(
        e["delta"]["text"] for e in events if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta"
    )


def assert_envelope(response: requests.Response, status: int, error_type: str) -> str:
    """The response is an Anthropic error envelope with this status and type; returns its message."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["type"] == "error", body
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    assert "Traceback" not in response.text
    return str(body["error"]["message"])
