"""The Anthropic stream grammar, as a checker: one message_start, blocks one at a time with matching
indexes and delta kinds, one message_delta with a known stop reason, one message_stop (or an error)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"}
DELTA_KINDS = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"}, "tool_use": {"input_json_delta"},
               "server_tool_use": {"input_json_delta"}, "web_search_tool_result": set()}
SERVER_TOOL_ID = re.compile(r"^srvtoolu_[a-zA-Z0-9_]+$")
SEARCH_ERROR_CODES = {"invalid_tool_input", "unavailable", "max_uses_exceeded", "too_many_requests", "query_too_long",
                      "request_too_large"}



@dataclass
class Block:
    index: int
    kind: str
    tool_id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    signed: bool = False
    whole: dict[str, Any] | None = None  # a block that arrives complete in its start (web_search_tool_result)

    @property
    def content(self) -> str:
        return "".join(self.parts)


@dataclass
class Outcome:
    ending: str  # "message" or "error"
    blocks: list[Block]
    message_delta: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def check_grammar(events: list[dict[str, Any]]) -> Outcome:
    """Validate one stream of Anthropic events; return what it said."""
    assert events, "no events at all"
    assert events[0]["type"] == "message_start", events[0]
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["role"] == "assistant"
    blocks: list[Block] = []
    open_block: Block | None = None
    ending: Outcome | None = None
    n = len(events)
    i = 1
    while i < n:
        event = events[i]
        kind = event["type"]
        assert ending is None, f"event after the end: {event}"
        if kind == "ping":
            assert event == {"type": "ping"}
        elif kind == "content_block_start":
            assert open_block is None, f"block {event['index']} started while {open_block} is open"
            assert event["index"] == len(blocks), f"index {event['index']}, expected {len(blocks)}"
            cb = event["content_block"]
            if cb["type"] == "text":
                assert cb == {"type": "text", "text": ""}
                open_block = Block(event["index"], "text")
            elif cb["type"] == "thinking":
                assert cb == {"type": "thinking", "thinking": "", "signature": ""}
                open_block = Block(event["index"], "thinking")
            elif cb["type"] == "tool_use":
                assert set(cb) == {"type", "id", "name", "input"} and cb["input"] == {}
                assert TOOL_ID.match(cb["id"]), cb["id"]
                assert isinstance(cb["name"], str) and cb["name"]
                open_block = Block(event["index"], "tool_use", cb["id"], cb["name"])
            elif cb["type"] == "server_tool_use":
                assert set(cb) == {"type", "id", "name", "input"} and cb["input"] == {}, cb
                assert SERVER_TOOL_ID.match(cb["id"]), cb["id"]
                open_block = Block(event["index"], "server_tool_use", cb["id"], cb["name"])
            elif cb["type"] == "web_search_tool_result":
                _check_search_result(cb, blocks)
                open_block = Block(event["index"], "web_search_tool_result", cb["tool_use_id"], whole=cb)
            else:
                raise AssertionError(f"unknown block type {cb}")
            blocks.append(open_block)
        elif kind == "content_block_delta":
            assert open_block is not None and event["index"] == open_block.index, f"delta for a closed block: {event}"
            delta = event["delta"]
            assert delta["type"] in DELTA_KINDS[open_block.kind], f"{delta['type']} in a {open_block.kind} block"
            assert not open_block.signed, "delta after signature_delta"
            if delta["type"] == "text_delta":
                assert isinstance(delta["text"], str) and delta["text"]
                open_block.parts.append(delta["text"])
            elif delta["type"] == "thinking_delta":
                assert isinstance(delta["thinking"], str) and delta["thinking"]
                open_block.parts.append(delta["thinking"])
            elif delta["type"] == "signature_delta":
                assert isinstance(delta["signature"], str) and delta["signature"]
                open_block.signed = True
            else:
                assert isinstance(delta["partial_json"], str)
                open_block.parts.append(delta["partial_json"])
        elif kind == "content_block_stop":
            assert open_block is not None and event == {"type": "content_block_stop", "index": open_block.index}
            if i + 1 < n and events[i + 1]["type"] != "error":  # a normal close, not the one before an error
                if open_block.kind == "thinking":
                    assert open_block.signed, "thinking block closed without a signature"
                if open_block.kind in ("tool_use", "server_tool_use"):
                    value = json.loads(open_block.content) if open_block.content.strip() else {}
                    assert isinstance(value, dict), open_block.content
            open_block = None
        elif kind == "message_delta":
            assert open_block is None, "message_delta with a block open"
            assert i + 2 == n and events[i + 1] == {"type": "message_stop"}, "message_delta must be followed by the end"
            delta = event["delta"]
            assert delta["stop_reason"] in STOP_REASONS
            assert delta["stop_sequence"] is None or isinstance(delta["stop_sequence"], str)
            usage = dict(event["usage"])
            server = usage.pop("server_tool_use", None)  # present when a server tool was offered
            assert set(usage) == {"input_tokens", "output_tokens", "cache_creation_input_tokens",
                                  "cache_read_input_tokens"}
            assert all(isinstance(v, int) and v >= 0 for v in usage.values())
            if server is not None:
                assert set(server) == {"web_search_requests", "web_fetch_requests"}, server
                assert all(isinstance(v, int) and v >= 0 for v in server.values())
            ending = Outcome("message", blocks, message_delta=event)
            i += 1  # the message_stop
        elif kind == "error":
            assert open_block is None, "error with a block open"
            assert set(event) == {"type", "error"} and set(event["error"]) == {"type", "message"}
            assert isinstance(event["error"]["message"], str) and event["error"]["message"]
            ending = Outcome("error", blocks, error=event)
        else:
            raise AssertionError(f"unexpected event {event}")
        i += 1
    assert ending is not None, "the stream never ended"
    return ending


def _check_search_result(cb: dict[str, Any], blocks: list[Block]) -> None:
    """A web_search_tool_result answers the server_tool_use just before it, with results or an error."""
    assert set(cb) == {"type", "tool_use_id", "content"}, cb
    assert blocks and blocks[-1].kind == "server_tool_use" and blocks[-1].tool_id == cb["tool_use_id"], cb
    content = cb["content"]
    if isinstance(content, dict):
        assert content["type"] == "web_search_tool_result_error" and content["error_code"] in SEARCH_ERROR_CODES
        return
    assert isinstance(content, list)
    for item in content:
        assert item["type"] == "web_search_result" and set(item) == {"type", "url", "title", "encrypted_content",
                                                                     "page_age"}, item
        assert item["url"].startswith(("http://", "https://")) and isinstance(item["title"], str)
        assert isinstance(item["encrypted_content"], str)
        assert item["page_age"] is None or isinstance(item["page_age"], str)
