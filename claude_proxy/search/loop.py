"""The server-side tool loop: one client request, several upstream calls, one Anthropic message.

The model is offered a `web_search` function; each call it makes is intercepted, run against the
backend, shown to the client as `server_tool_use` + `web_search_tool_result` blocks, and handed
back to the model as an assistant tool call plus a tool message, until the model answers. Each
upstream leg goes through the ordinary `StreamTranslator`; its events are re-indexed into one
stream with one `message_start`, usage summed over the legs, and one `message_delta` +
`message_stop` (or a single `error` event). Non-streaming requests run the same loop and assemble
the events into one message.

A call to one of the client's own tools ends the loop with `stop_reason: tool_use`, as Anthropic
does; a model that keeps searching past `max_uses` gets `max_uses_exceeded`, then the function is
withdrawn; a loop that still has not ended after max_uses + 2 legs ends with `pause_turn` (the
client may send the turn back to continue, as with Anthropic's own long server-tool turns).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from claude_proxy.errors import ProxyError, UpstreamUnavailable
from claude_proxy.search.backends import Backend, SearchError
from claude_proxy.translate import StreamTranslator
from claude_proxy.translate.errors import TYPE_STATUS
from claude_proxy.translate.identifiers import to_upstream_id
from claude_proxy.translate.request import RequestContext
from claude_proxy.translate.response import new_message_id, parse_arguments
from claude_proxy.translate.sse import loads
from claude_proxy.translate.websearch import (
    FUNCTION_NAME,
    Result,
    ServerSearchTool,
    annotations_of,
    block_events,
    domain_allowed,
    error_block,
    error_text,
    new_server_tool_id,
    result_block,
    results_text,
    server_tool_usage,
    server_tool_use_block,
    without_function,
)

log = logging.getLogger("claude_proxy.search")

# What one upstream call yields: chunk dicts, SSE `data` strings (so `[DONE]` keeps its meaning),
# None for "the upstream is silent, send a ping"; or one whole chat.completion dict.
Chunk = dict[str, Any] | str | None
CallUpstream = Callable[[dict[str, Any]], Iterable[Chunk] | dict[str, Any]]
Events = list[dict[str, Any]]
INTERNAL = "claude-proxy internal error"
USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass
class _Pending:
    """An intercepted `web_search` call while its arguments stream in."""

    tool_id: str
    args: list[str] = field(default_factory=list)


@dataclass
class _Leg:
    """What one upstream call produced that the next call needs."""

    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)  # assistant tool_calls entries
    replies: list[dict[str, Any]] = field(default_factory=list)  # the matching tool messages
    client_tool: bool = False
    stop_reason: str | None = None
    stop_sequence: str | None = None
    mapping: dict[int, int] = field(default_factory=dict)
    pending: dict[int, _Pending] = field(default_factory=dict)


class SearchTurn:
    """One client request whose web search server tool the proxy serves.

    `backend` runs the searches; with `backend=None` the provider searches natively (one leg, its
    `url_citation` annotations become the blocks, shown after the answer since they arrive with it).
    After the turn: `usage`, `stop_reason`, `error` (type, message) and `searches` describe it.
    """

    def __init__(
        self,
        body: dict[str, Any],
        context: RequestContext,
        tool: ServerSearchTool,
        backend: Backend | None,
        *,
        deadline: float | None = None,
        max_results: int | None = None,
        native_query: str = "",
    ) -> None:
        self.body = body
        self.context = context
        self.tool = tool
        self.backend = backend
        self.deadline = deadline
        self.max_results = max_results
        self.native_query = native_query
        self.message_id = new_message_id()
        self.searches = 0
        self.legs = 0
        self.usage: dict[str, Any] | None = None
        self.stop_reason: str | None = None
        self.error: tuple[str, str] | None = None
        self._totals = dict.fromkeys(USAGE_KEYS, 0)
        self._started = False
        self._next = 0
        self._exceeded = False
        self._native: list[Result] = []

    @property
    def max_legs(self) -> int:
        return 1 if self.backend is None else self.tool.max_uses + 2

    # -- the two ways out -----------------------------------------------------------------------

    def stream(self, call: CallUpstream, body: dict[str, Any] | None = None) -> Iterator[Events]:
        """Anthropic events, a batch at a time. The first upstream call is made now, so that its
        failure is the caller's to handle (fallback, an HTTP error) before anything is sent."""
        first = call(body or self.body)
        return self._run(first, call, body or self.body)

    def message(self, call: CallUpstream, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole turn as one Anthropic message; an upstream failure raises a ProxyError."""
        events = [e for batch in self.stream(call, body) for e in batch]
        if self.error is not None:
            error_type, text = self.error
            if error_type == "api_error":
                raise UpstreamUnavailable(text)
            raise ProxyError(text, status=TYPE_STATUS.get(error_type, 502), error_type=error_type)
        return assemble(events)

    # -- the loop -------------------------------------------------------------------------------

    def _run(self, first: Iterable[Chunk] | dict[str, Any], call: CallUpstream, body: dict[str, Any]) -> Iterator[Events]:
        chunks: Iterable[Chunk] | dict[str, Any] | None = first
        while chunks is not None:
            self.legs += 1
            leg = _Leg()
            yield from self._leg(chunks, leg)
            if self.error is not None:
                return
            if not leg.calls or leg.client_tool or self.legs >= self.max_legs:
                yield self._finish(leg)
                return
            body = self._next_body(body, leg)
            try:
                chunks = call(body)
            except ProxyError as exc:
                yield self._fail("api_error" if exc.error_type == "api_error" else exc.error_type, exc.message)
                return

    def _leg(self, chunks: Iterable[Chunk] | dict[str, Any], leg: _Leg) -> Iterator[Events]:
        translator = StreamTranslator(self.context, message_id=self.message_id)
        items: Iterable[Chunk] = [chunks] if isinstance(chunks, dict) else chunks
        iterator = iter(items)
        try:
            try:
                for item in iterator:
                    if item is None:
                        events = translator.ping()
                    elif isinstance(item, str):
                        if self.backend is None:
                            self._collect_citations_in(item)
                        events = translator.feed_data(item)
                    else:
                        if self.backend is None:
                            self._collect_citations(item)
                        events = translator.feed(item)
                    out = self._relay(events, leg)
                    if out:
                        yield out
                    if translator.ended:
                        break
                else:
                    out = self._relay(translator.finish(), leg)
                    if out:
                        yield out
            except ProxyError as exc:
                # a finish_reason already seen means the answer was complete; the rest was trailing
                events = translator.finish() if translator.finish_reason else translator.fail("api_error", exc.message)
                yield self._relay(events, leg)
            except SearchError as exc:  # pragma: no cover - searches raise nothing past _search
                yield self._relay(translator.fail("api_error", exc.message), leg)
            except ValueError as exc:  # a stream that is not SSE we can read
                yield self._relay(translator.fail("api_error", f"upstream stream unreadable: {exc}"), leg)
            except Exception as exc:  # a bug must still end the stream as the grammar says
                log.exception("web search loop failed")
                yield self._relay(translator.fail("api_error", f"{INTERNAL}: {type(exc).__name__}"), leg)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # an upstream stream left early (or the client hung up): release it now

    def _relay(self, events: Events, leg: _Leg) -> Events:
        """One leg's events, re-indexed into the turn's stream; web_search calls intercepted and run."""
        out: Events = []
        failing = any(e["type"] == "error" for e in events)  # a call cut off by the failure is not run
        for event in events:
            kind = event["type"]
            if kind == "message_start":
                if not self._started:
                    self._started = True
                    out.append(event)
            elif kind == "ping":
                out.append(event)
            elif kind == "content_block_start":
                block = event["content_block"]
                index = event["index"]
                if block["type"] == "tool_use" and block["name"] == FUNCTION_NAME and self.backend is not None:
                    leg.pending[index] = _Pending(block["id"])
                    continue
                if block["type"] == "tool_use":
                    leg.client_tool = True
                leg.mapping[index] = self._next
                self._next += 1
                out.append({**event, "index": leg.mapping[index]})
            elif kind == "content_block_delta":
                index = event["index"]
                pending = leg.pending.get(index)
                if pending is not None:
                    pending.args.append(event["delta"].get("partial_json", ""))
                    continue
                delta = event["delta"]
                if delta["type"] == "text_delta":
                    leg.text.append(delta["text"])
                elif delta["type"] == "thinking_delta":
                    leg.thinking.append(delta["thinking"])
                out.append({**event, "index": leg.mapping[index]})
            elif kind == "content_block_stop":
                index = event["index"]
                pending = leg.pending.pop(index, None)
                if pending is not None:
                    if not failing:
                        out += self._search(pending, leg)
                else:
                    out.append({**event, "index": leg.mapping[index]})
            elif kind == "message_delta":
                leg.stop_reason = event["delta"].get("stop_reason")
                leg.stop_sequence = event["delta"].get("stop_sequence")
                for key in USAGE_KEYS:
                    value = event["usage"].get(key)
                    self._totals[key] += value if isinstance(value, int) else 0
                if self.backend is None:
                    out += self._native_blocks()
            elif kind == "error":
                self.error = (event["error"]["type"], event["error"]["message"])
                out.append(event)
            # message_stop: the turn sends its own, once
        return out

    # -- one search -----------------------------------------------------------------------------

    def _search(self, pending: _Pending, leg: _Leg) -> Events:
        arguments = "".join(pending.args)
        args = parse_arguments(arguments)
        query = args.get("query")
        tool_id = new_server_tool_id()
        results: list[Result] | None = None
        code = ""
        if not isinstance(query, str) or not query.strip():
            code, query = "invalid_tool_input", query if isinstance(query, str) else ""
        elif self.searches >= self.tool.max_uses:
            code = "max_uses_exceeded"
            self._exceeded = True
        else:
            self.searches += 1
            assert self.backend is not None
            try:
                results = self.backend.search(
                    query,
                    max_results=self.max_results,
                    allowed_domains=self.tool.allowed_domains,
                    blocked_domains=self.tool.blocked_domains,
                    user_location=self.tool.user_location,
                    deadline=self.deadline,
                )
            except SearchError as exc:
                code = exc.code
                log.warning("web search failed (%s): %s", exc.code, exc.message)  # never the query
        query = query.strip()
        use = server_tool_use_block(tool_id, query, self.tool.name)
        result = result_block(tool_id, results) if results is not None else error_block(tool_id, code)
        events = block_events(self._next, use) + block_events(self._next + 1, result)
        self._next += 2
        call_id = to_upstream_id(pending.tool_id, self.context.dialect.tool_id_style)
        leg.calls.append(
            {"id": call_id, "type": "function", "function": {"name": FUNCTION_NAME, "arguments": arguments or "{}"}}
        )
        text = results_text(query, results) if results is not None else error_text(code)
        leg.replies.append({"role": "tool", "tool_call_id": call_id, "content": text})
        return events

    def _next_body(self, body: dict[str, Any], leg: _Leg) -> dict[str, Any]:
        assistant: dict[str, Any] = {"role": "assistant", "content": "".join(leg.text) or None, "tool_calls": leg.calls}
        if leg.thinking and self.context.dialect.reasoning_history == "tool_turns":
            assistant["reasoning_content"] = "".join(leg.thinking)
        out = {**body, "messages": [*body.get("messages", []), assistant, *leg.replies]}
        if self._exceeded or self.legs + 1 >= self.max_legs:
            out = without_function(out)  # the last leg must answer
        return out

    # -- native search --------------------------------------------------------------------------

    def _collect_citations_in(self, data: str) -> None:
        """Citations in one SSE payload (native turns only: the ordinary path parses chunks once)."""
        if "url_citation" in data:
            try:
                chunk = loads(data)
            except ValueError:
                return  # the translator reports the malformed chunk
            if isinstance(chunk, dict):
                self._collect_citations(chunk)

    def _collect_citations(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                part = choice.get("delta") if isinstance(choice.get("delta"), dict) else choice.get("message")
                if isinstance(part, dict) and part.get("annotations"):
                    self._native += annotations_of(part)

    def _native_blocks(self) -> Events:
        seen: set[str] = set()
        results = []
        for r in self._native:
            if r.url not in seen and domain_allowed(r.url, self.tool.allowed_domains, self.tool.blocked_domains):
                seen.add(r.url)
                results.append(r)
        self.searches = 1
        tool_id = new_server_tool_id()
        use = server_tool_use_block(tool_id, self.native_query[:500], self.tool.name)
        events = block_events(self._next, use) + block_events(self._next + 1, result_block(tool_id, results))
        self._next += 2
        return events

    # -- the end --------------------------------------------------------------------------------

    def _finish(self, leg: _Leg) -> Events:
        stop = leg.stop_reason or "end_turn"
        if leg.client_tool:
            stop = "tool_use"
        elif stop == "tool_use":
            stop = "pause_turn"  # only searches were asked for and the loop may not run another leg
        self.stop_reason = stop
        usage: dict[str, Any] = {**self._totals, "server_tool_use": server_tool_usage(self.searches)}
        self.usage = usage
        return [
            {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": leg.stop_sequence}, "usage": usage},
            {"type": "message_stop"},
        ]

    def _fail(self, error_type: str, message: str) -> Events:
        self.error = (error_type, message)
        return [{"type": "error", "error": {"type": error_type, "message": message}}]


def assemble(events: Events) -> dict[str, Any]:
    """A finished event stream as the non-streaming message it describes."""
    message: dict[str, Any] = {}
    blocks: list[dict[str, Any]] = []
    partial: dict[int, list[str]] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = dict(event["message"])
        elif kind == "content_block_start":
            block = dict(event["content_block"])
            blocks.append(block)
            if block["type"] in ("tool_use", "server_tool_use"):
                partial[event["index"]] = []
        elif kind == "content_block_delta":
            block, delta = blocks[event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[event["index"]].append(delta["partial_json"])
        elif kind == "content_block_stop" and event["index"] in partial:
            text = "".join(partial.pop(event["index"]))
            blocks[event["index"]]["input"] = json.loads(text) if text.strip() else {}
        elif kind == "message_delta":
            message["stop_reason"] = event["delta"]["stop_reason"]
            message["stop_sequence"] = event["delta"]["stop_sequence"]
            message["usage"] = dict(event["usage"])
    message["content"] = blocks
    return message
