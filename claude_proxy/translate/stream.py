"""The streaming translator: OpenAI chat-completion chunks in, Anthropic events out.

A pure state machine in the manner of h11: it never reads or writes anything. Feed it
chunks (`feed`, or raw SSE data with `feed_data`), then `finish()` at end of input or
`fail()` when the transport breaks; each call returns the events to send, as dicts.

Guarantees, whatever the input: one `message_start` first; at most one content block open
at a time; block indices 0, 1, 2… with no gaps or reuse; every started block stopped;
and the stream ends with `message_delta` + `message_stop`, or with a single `error` event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import upstream_error_message, upstream_error_type
from .identifiers import to_anthropic_id
from .request import RequestContext
from .response import (
    ERROR_FINISH_REASONS,
    closing_suffix,
    content_parts,
    convert_usage,
    find_usage,
    map_finish_reason,
    matched_stop,
    new_message_id,
    reasoning_text,
    signature_for,
    structured_text,
)
from .sse import loads

IDLE, STREAMING, DONE, FAILED = "idle", "streaming", "done", "failed"
_OPEN_TAGS = {"<think>": "</think>", "<thought>": "</thought>"}


class StreamProtocolError(Exception):
    """Raised internally when the upstream stream cannot be translated faithfully."""


@dataclass
class _Call:
    key: Any
    id: str = ""
    name: str = ""
    args: list[str] = field(default_factory=list)
    index: int | None = None  # Anthropic block index once opened
    closed: bool = False

    @property
    def arguments(self) -> str:
        return "".join(self.args)


@dataclass
class _Block:
    kind: str  # "text" | "thinking" | "tool_use"
    index: int
    call: _Call | None = None
    text: list[str] = field(default_factory=list)


class StreamTranslator:
    def __init__(self, context: RequestContext, message_id: str | None = None) -> None:
        self.context = context
        self.message_id = message_id or new_message_id()
        self.state = IDLE
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.upstream_usage: dict[str, Any] | None = None
        self.usage: dict[str, int] | None = None
        self.stop_reason: str | None = None
        self.error: tuple[str, str] | None = None
        self._block: _Block | None = None
        self._next_index = 0
        self._calls: dict[Any, _Call] = {}
        self._ids: dict[str, Any] = {}
        self._by_index: dict[int, Any] = {}
        self._last_key: Any = None
        self._anon = 0
        self._saw_tool_calls = False
        self._output_chars = 0
        self._in_think = False
        self._close_tag = ""
        self._tag_buffer = ""
        self._strip_leading = False
        self._answer_call: _Call | None = None  # the structured-output tool call, streamed as text

    # -- public API ---------------------------------------------------------------

    def usage_so_far(self) -> tuple[dict[str, int], bool]:
        """(usage, estimated) for a stream that stops before `finish` (the client hung up): the provider's
        own figures if its usage chunk already came, else the prompt and the output translated so far,
        estimated — a provider bills a cancelled stream for at least that."""
        usage = convert_usage(self.upstream_usage, self.context.dialect)
        if usage is not None:
            return usage, False
        return self._estimated_usage(minimum_output=0), True

    def _estimated_usage(self, minimum_output: int) -> dict[str, int]:
        """~4 characters per output token; the prompt as the request context counts it."""
        return {
            "input_tokens": self.context.prompt_tokens(),
            "output_tokens": max(minimum_output, self._output_chars // 4),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    @property
    def started(self) -> bool:
        return self.state != IDLE

    @property
    def ended(self) -> bool:
        return self.state in (DONE, FAILED)

    def start(self, chunk: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if self.state != IDLE:
            return []
        self.state = STREAMING
        input_tokens = self.context.prompt_tokens()
        cache_read = cache_write = 0
        early = convert_usage(find_usage(chunk), self.context.dialect) if chunk else None
        if early and early["input_tokens"] + early["cache_read_input_tokens"] + early["cache_creation_input_tokens"]:
            input_tokens = early["input_tokens"]
            cache_read, cache_write = early["cache_read_input_tokens"], early["cache_creation_input_tokens"]
        message = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.context.client_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": cache_read,
            },
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def ping(self) -> list[dict[str, Any]]:
        if self.state == IDLE:
            return self.start()
        return [] if self.ended else [{"type": "ping"}]

    def feed_data(self, data: str) -> list[dict[str, Any]]:
        """One SSE `data` payload: a JSON chunk, `[DONE]`, or an in-band error."""
        if self.ended:
            return []
        if not data.strip():
            return []  # an empty `data:` line is a keep-alive, not a chunk
        if data.strip() == "[DONE]":
            if self.finish_reason is None:
                self.finish_reason = "stop"  # an explicit end marker, not a cut-off
            return self.finish()
        try:
            chunk = loads(data)
        except ValueError:
            return self.fail("api_error", f"upstream sent a malformed stream chunk: {data[:200]!r}")
        return self.feed(chunk)

    def feed(self, chunk: Any) -> list[dict[str, Any]]:
        if self.ended:
            return []
        if isinstance(chunk, list) or not isinstance(chunk, dict):
            return self._fail_from(chunk)
        if chunk.get("error") or chunk.get("object") == "error":
            return self._fail_from(chunk)
        events = self.start(chunk)
        try:
            self._feed(chunk, events)
        except StreamProtocolError as exc:
            return events + self.fail("api_error", str(exc))
        return events

    def finish(self) -> list[dict[str, Any]]:
        """End of the upstream stream. Without a finish_reason it was cut off: an error."""
        if self.ended:
            return []
        events = self.start()
        if self.finish_reason is None:
            return events + self.fail(
                "api_error", "upstream stream ended without a finish_reason: the response was cut off"
            )
        try:
            self._flush_tags(events)
            self._flush_answer(events)
            self._close_block(events)
            self._flush_pending(events)
        except StreamProtocolError as exc:
            return events + self.fail("api_error", str(exc))
        self.stop_reason = map_finish_reason(self.finish_reason, saw_tool_calls=self._saw_tool_calls)
        if self._answer_call is not None and not self._saw_tool_calls and self.stop_reason == "tool_use":
            self.stop_reason = "end_turn"  # the answer came as the forced tool's arguments: it is text
        if self.stop_sequence and self.stop_reason == "end_turn":
            self.stop_reason = "stop_sequence"
        usage = convert_usage(self.upstream_usage, self.context.dialect) or self._estimated_usage(minimum_output=1)
        self.usage = usage
        self.state = DONE
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence},
                "usage": {
                    "input_tokens": usage["input_tokens"],
                    "output_tokens": usage["output_tokens"],
                    "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                    "cache_read_input_tokens": usage["cache_read_input_tokens"],
                },
            }
        )
        events.append({"type": "message_stop"})
        return events

    def fail(self, error_type: str, message: str) -> list[dict[str, Any]]:
        """The stream cannot go on: close what is open and end with an `error` event."""
        if self.ended:
            return []
        events = self.start()
        if self._block is not None:
            events.append({"type": "content_block_stop", "index": self._block.index})
            self._block = None
        self.state = FAILED
        self.error = (error_type, message)
        events.append({"type": "error", "error": {"type": error_type, "message": message}})
        return events

    # -- internals ----------------------------------------------------------------

    def _fail_from(self, payload: Any) -> list[dict[str, Any]]:
        message = upstream_error_message(payload) or "upstream reported an error mid-stream"
        error_type = upstream_error_type(payload) or "api_error"
        return self.start() + self.fail(error_type, f"upstream error: {message}")

    def _feed(self, chunk: dict[str, Any], events: list[dict[str, Any]]) -> None:
        usage = find_usage(chunk)
        if usage:
            self.upstream_usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            thinking = reasoning_text(delta)
            if thinking:
                self._emit("thinking", thinking, events)
            for kind, text in content_parts(delta.get("content")):
                if kind == "text" and self.context.dialect.think_tags:
                    self._tagged_text(text, events)
                else:
                    self._emit(kind, text, events)
            fragments = delta.get("tool_calls")
            if isinstance(fragments, list):
                for fragment in fragments:
                    if isinstance(fragment, dict):
                        self._tool_fragment(fragment, events)
            elif isinstance(delta.get("function_call"), dict):
                self._tool_fragment({"index": 0, "function": delta["function_call"]}, events)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                if reason.lower() in ERROR_FINISH_REASONS:
                    raise StreamProtocolError(f"upstream ended the response with finish_reason {reason!r}")
                self.finish_reason = reason
                self.stop_sequence = matched_stop(choice, self.context.stop_sequences) or self.stop_sequence

    # text and thinking

    def _emit(self, kind: str, text: str, events: list[dict[str, Any]]) -> None:
        if not text:
            return
        if kind == "text" and self._strip_leading:
            text = text.lstrip()
            if not text:
                return
            self._strip_leading = False
        block = self._block
        if block is None or block.kind != kind:
            self._close_block(events)
            self._flush_pending(events)
            block = self._open(kind, events)
        block.text.append(text)
        self._output_chars += len(text)
        if kind == "text":
            events.append({"type": "content_block_delta", "index": block.index, "delta": {"type": "text_delta", "text": text}})
        else:
            events.append(
                {"type": "content_block_delta", "index": block.index, "delta": {"type": "thinking_delta", "thinking": text}}
            )

    def _tagged_text(self, text: str, events: list[dict[str, Any]]) -> None:
        buf = self._tag_buffer + text
        while buf:
            if self._in_think:
                pos = buf.find(self._close_tag)
                if pos >= 0:
                    self._emit("thinking", buf[:pos], events)
                    buf = buf[pos + len(self._close_tag) :]
                    self._in_think = False
                    self._strip_leading = True
                    continue
                keep = _partial_suffix(buf, (self._close_tag,))
            else:
                found = [(buf.find(tag), tag) for tag in _OPEN_TAGS if tag in buf]
                if found:
                    pos, tag = min(found)
                    self._emit("text", buf[:pos], events)
                    buf = buf[pos + len(tag) :]
                    self._in_think = True
                    self._close_tag = _OPEN_TAGS[tag]
                    continue
                keep = _partial_suffix(buf, tuple(_OPEN_TAGS))
            self._emit("thinking" if self._in_think else "text", buf[: len(buf) - keep], events)
            buf = buf[len(buf) - keep :]
            break
        self._tag_buffer = buf

    def _flush_tags(self, events: list[dict[str, Any]]) -> None:
        if self._tag_buffer:
            buf, self._tag_buffer = self._tag_buffer, ""
            self._emit("thinking" if self._in_think else "text", buf, events)

    # tool calls

    def _call_for(self, fragment: dict[str, Any]) -> _Call:
        index = fragment.get("index")
        frag_id = fragment.get("id") if isinstance(fragment.get("id"), str) and fragment.get("id") else None
        if isinstance(index, int) and not isinstance(index, bool):
            key: Any = self._by_index.get(index, ("index", index))
            current = self._calls.get(key)
            function = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
            if (
                current is not None
                and frag_id
                and current.id
                and frag_id != current.id
                and function.get("name")
                and _is_object(current.arguments)
            ):
                # A gateway that numbers every call 0: a new id *with a name* after a complete
                # call is a new call (a host that merely changes ids mid-call sends no name).
                self._anon += 1
                key = ("index", index, self._anon)
                self._ids[frag_id] = key
            self._by_index[index] = key
        elif frag_id is not None:
            key = self._ids.get(frag_id, ("id", frag_id))
        elif self._last_key is not None:
            key = self._last_key
        else:
            self._anon += 1
            key = ("anon", self._anon)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Call(key)
        if frag_id and not call.id:  # keep the first id: some hosts change it mid-stream
            call.id = frag_id
            self._ids[frag_id] = key
        self._last_key = key
        return call

    def _tool_fragment(self, fragment: dict[str, Any], events: list[dict[str, Any]]) -> None:
        call = self._call_for(fragment)
        function = fragment.get("function") if isinstance(fragment.get("function"), dict) else {}
        name = function.get("name")
        if isinstance(name, str) and name and not call.name:
            call.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, (dict, list)):
            arguments = json.dumps(arguments, ensure_ascii=False)
        elif not isinstance(arguments, str):
            arguments = ""
        if call.name and call.name == self.context.structured_tool:
            self._answer_fragment(call, arguments, events)
            return
        self._saw_tool_calls = True
        if call.closed:
            if arguments.strip():
                raise StreamProtocolError(
                    f"upstream sent more arguments for tool call {call.name!r} after it was complete"
                )
            return
        if arguments:
            call.args.append(arguments)
        block = self._block
        if block is not None and block.call is call:
            if arguments:
                self._json_delta(block.index, arguments, events)
            return
        if block is not None and block.call is not None and not _is_object(block.call.arguments):
            # Interleaved with the open call: buffer until that one is a whole object.
            # Empty arguments are not "complete": they may still be on their way.
            return
        if call.name:
            self._close_block(events)
            self._open_call(call, events)

    def _answer_fragment(self, call: _Call, arguments: str, events: list[dict[str, Any]]) -> None:
        """Arguments of the structured-output tool: the answer, streamed as text deltas (or
        kept until the end when the schema's value is wrapped in an object)."""
        if self._answer_call is None:
            self._answer_call = call
            call.closed = True  # never a tool_use block, and never flushed as one
            arguments, call.args = call.arguments + arguments, []
            self._saw_tool_calls = any(c is not call and c.name != call.name for c in self._calls.values())
        elif call is not self._answer_call:
            return  # a second answer call: the first one is the answer
        if self.context.structured_wrapped:
            call.args.append(arguments)
        else:
            self._emit("text", arguments, events)

    def _flush_answer(self, events: list[dict[str, Any]]) -> None:
        call = self._answer_call
        if call is not None and self.context.structured_wrapped and call.args:
            text = structured_text(call.arguments, wrapped=True)
            call.args = []
            self._emit("text", text, events)

    def _open_call(self, call: _Call, events: list[dict[str, Any]]) -> None:
        block = self._open("tool_use", events, call)
        if call.arguments:
            self._json_delta(block.index, call.arguments, events)

    def _json_delta(self, index: int, partial: str, events: list[dict[str, Any]]) -> None:
        self._output_chars += len(partial)
        events.append(
            {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": partial}}
        )

    def _flush_pending(self, events: list[dict[str, Any]]) -> None:
        for call in list(self._calls.values()):
            if call.index is None and not call.closed:
                if not call.name:
                    raise StreamProtocolError("upstream sent a tool call without a function name")
                self._open_call(call, events)
                self._close_block(events)

    # blocks

    def _open(self, kind: str, events: list[dict[str, Any]], call: _Call | None = None) -> _Block:
        index = self._next_index
        self._next_index += 1
        block = _Block(kind, index, call)
        if kind == "text":
            content: dict[str, Any] = {"type": "text", "text": ""}
        elif kind == "thinking":
            content = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            assert call is not None
            call.index = index
            call_id = call.id or f"call_{self.message_id[-12:]}_{index}"
            name = self.context.tool_names.get(call.name, call.name)
            content = {"type": "tool_use", "id": to_anthropic_id(call_id), "name": name, "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": content})
        self._block = block
        return block

    def _close_block(self, events: list[dict[str, Any]]) -> None:
        block = self._block
        if block is None:
            return
        if block.kind == "thinking":
            events.append(
                {
                    "type": "content_block_delta",
                    "index": block.index,
                    "delta": {"type": "signature_delta", "signature": signature_for("".join(block.text))},
                }
            )
        elif block.kind == "tool_use" and block.call is not None:
            block.call.closed = True
            arguments = block.call.arguments
            if arguments.strip():
                suffix = closing_suffix(arguments)
                if suffix is None or not _is_object(arguments + suffix):
                    self._block = None
                    events.append({"type": "content_block_stop", "index": block.index})
                    raise StreamProtocolError(
                        f"upstream sent tool call {block.call.name!r} with arguments that are not a JSON object: "
                        f"{arguments[:200]!r}"
                    )
                if suffix:  # a truncated object: close it so the client can parse it
                    self._json_delta(block.index, suffix, events)
        events.append({"type": "content_block_stop", "index": block.index})
        self._block = None


def _partial_suffix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that could begin one of `tags`."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), 0, -1):
            if text.endswith(tag[:n]):
                best = max(best, n)
                break
    return best


def _is_object(text: str) -> bool:
    try:
        return isinstance(loads(text), dict)
    except ValueError:
        return False
