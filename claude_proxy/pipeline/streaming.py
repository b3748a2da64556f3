"""The two stream pumps: an OpenAI-format SSE stream translated to Anthropic events, and an Anthropic
stream relayed as it arrives. Both are generators the web edge iterates; both end every stream in
the grammar (an `error` event if it broke), release or close the upstream response, and finish the
request's outcome exactly once — also when the client hangs up (GeneratorExit).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from claude_proxy.errors import ProxyError, UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from claude_proxy.pipeline import metrics
from claude_proxy.pipeline.outcome import CLIENT_DISCONNECTED, Outcome, Recorder
from claude_proxy.translate import SSEParser, StreamTranslator, format_events
from claude_proxy.translate.errors import envelope, from_upstream_response, upstream_error_message
from claude_proxy.translate.inband import inband_error, inband_error_status
from claude_proxy.translate.overflow import upstream_overflow
from claude_proxy.translate.sse import SSEError, SSEEvent
from claude_proxy.upstream.client import PING, Upstream

INTERNAL = "claude-proxy internal error"
PING_EVENT = b'event: ping\ndata: {"type":"ping"}\n\n'


def sse(events: list[dict[str, Any]], recorder: Recorder) -> bytes:
    """Events as SSE bytes; an upstream that echoes a key into its error message has it blanked."""
    if recorder.secrets:
        for event in events:
            if event["type"] == "error":
                event["error"]["message"] = recorder.redact(event["error"]["message"])
    return format_events(events)


def is_json_response(response: Any) -> bool:
    content_type = str(getattr(response, "headers", {}).get("content-type", "")).lower()
    return content_type.split(";")[0].strip().endswith("json")


@dataclass
class Opened:
    """An OpenAI-format stream read up to its first event, before the client's 200 is committed."""

    rest: Iterator[Any]  # the body from where the first read stopped (the same iterator, not a copy)
    parser: SSEParser
    events: list[SSEEvent] = field(default_factory=list)  # parsed, not yet translated
    whole: bytearray | None = None  # a provider that ignored `stream: true`: its body so far
    pinged: bool = False  # the first read stopped at a ping interval of silence


def open_stream(response: Any, deadline: float, upstream: Upstream, estimate: Callable[[], int]) -> Opened:
    """Read the upstream stream up to its first event, so that an error there is an HTTP error.

    A 200 whose first event is an error (SGLang's `data: {"error": …}`, OpenRouter's `choices[0].error`
    chunk) raises `UpstreamHTTPError` with the status it stands for — the attempt then treats it exactly
    like that status (the one 400 recovery, a fallback chain's next target) and the client never sees a
    200. The wait is bounded by the ping interval: when the upstream stays silent that long the stream is
    committed and the pump's first bytes are a ping, so the client hears from us no later than it would
    have without the look-ahead (nothing reaches it before the first event or ping either way: the server
    sends the status line with the first body bytes). Only the first event is decoded twice; later chunks
    pass through the pump untouched.
    """
    rest = upstream.iter_body(response, deadline)
    opened = Opened(rest, SSEParser(), whole=bytearray() if is_json_response(response) else None)
    try:
        for piece in rest:
            if piece is PING:
                opened.pinged = True
                return opened
            if opened.whole is not None:
                opened.whole += piece
                continue
            opened.events = opened.parser.feed(piece)
            if any(event.data.strip() for event in opened.events):
                break
        first = _first_data(opened)
        if first is not None and "error" in first:
            try:
                payload = inband_error(orjson.loads(first))
            except orjson.JSONDecodeError:
                payload = None
            if payload is not None:
                raise inband_failure(payload, upstream.provider.name, estimate())
    except SSEError as exc:
        upstream.discard(response)
        raise UpstreamUnavailable(f"{upstream.provider.name}: {exc}") from None
    except ProxyError:
        upstream.discard(response)
        raise
    return opened


def _first_data(opened: Opened) -> str | None:
    if opened.whole is not None:
        return opened.whole.decode("utf-8", "replace") if opened.whole else None
    return next((event.data for event in opened.events if event.data.strip()), None)


def inband_failure(payload: Any, provider: str, estimate: int | None = None) -> UpstreamHTTPError:
    """An error an upstream put inside a 200, as the HTTP error it stands for (same envelope as a real one);
    a context overflow is Anthropic's 'prompt is too long' 400, so clients compact (translate/overflow.py)."""
    raw = orjson.dumps(payload)
    overflow = upstream_overflow(payload, upstream_error_message(payload) or "", estimate)
    if overflow is not None:
        return UpstreamHTTPError(400, overflow, raw=raw, content_type="application/json")
    if upstream_error_message(payload) is None:  # no message to show: say what happened, not the raw JSON
        payload = {"error": {"message": "upstream returned an error"}}
    status, body = from_upstream_response(inband_error_status(payload), orjson.dumps(payload), provider)
    return UpstreamHTTPError(status, body, raw=raw, content_type="application/json")


def translate_stream(
    opened: Opened,
    response: Any,
    translator: StreamTranslator,
    outcome: Outcome,
    deadline: float,
    upstream: Upstream,
    recorder: Recorder,
) -> Iterator[bytes]:
    """OpenAI chat-completion chunks in, Anthropic SSE out (from where `open_stream` stopped)."""
    parser = opened.parser
    first_byte: float | None = None
    disconnected = False
    # A provider that ignores `stream: true` answers with one chat.completion body: translate it whole
    # (reading it as SSE finds no events, and Claude Code would re-send the turn without streaming).
    whole = opened.whole
    metrics.stream_started()
    try:
        try:
            events = translator.ping() if opened.pinged else []
            for event in opened.events:
                events += translator.feed_data(event.data)
                if translator.ended:
                    break
            if events:
                first_byte = time.monotonic()
                yield sse(events, recorder)
            for piece in () if translator.ended else opened.rest:
                if piece is PING:
                    events = translator.ping()
                elif whole is not None:
                    whole += piece
                    events = []
                else:
                    events = []
                    for event in parser.feed(piece):
                        events += translator.feed_data(event.data)
                        if translator.ended:
                            break
                if events:
                    if first_byte is None:
                        first_byte = time.monotonic()
                    yield sse(events, recorder)
                if translator.ended:
                    break
            else:
                events = []
                if whole is not None:
                    events += _feed_whole(translator, bytes(whole), upstream.provider.name)
                for event in parser.close():
                    events += translator.feed_data(event.data)
                events += translator.finish()
                if events:
                    yield sse(events, recorder)
        except (UpstreamTimeout, UpstreamUnavailable, SSEError) as exc:
            message = exc.message if isinstance(exc, ProxyError) else f"{upstream.provider.name}: {exc}"
            # A finish_reason already seen means the answer was complete; the rest was trailing.
            events = translator.finish() if translator.finish_reason else translator.fail("api_error", message)
            yield sse(events, recorder)
        except GeneratorExit:
            disconnected = True
            raise
        except Exception as exc:  # a bug must still end the stream as the grammar says
            events = translator.fail("api_error", f"{INTERNAL}: {type(exc).__name__}")
            yield sse(events, recorder)
    finally:
        metrics.stream_ended()
        if translator.stop_reason is not None and not disconnected:
            upstream.release(response)  # complete: keep the connection for the next request
        else:
            upstream.discard(response)
        if disconnected and translator.usage is None and translator.started:
            usage, estimated = translator.usage_so_far()  # what the cancelled answer cost, not nothing
            outcome.answer(usage, None)
            outcome.usage_estimated = estimated or None
        else:
            outcome.answer(translator.usage or {}, translator.stop_reason)
        if first_byte is not None:
            outcome.ttfb_ms = round((first_byte - outcome.started) * 1000, 1)
        if translator.error:
            outcome.error_type, outcome.error = translator.error[0], recorder.redact(translator.error[1])
            outcome.upstream_error = not translator.error[1].startswith(INTERNAL)
        if disconnected and not translator.ended:
            outcome.error_type, outcome.error = CLIENT_DISCONNECTED, "client closed the connection mid-stream"
            outcome.upstream_error = False
        recorder.finish(outcome, 200)


def relay_stream(
    response: Any, outcome: Outcome, deadline: float, upstream: Upstream, recorder: Recorder
) -> Iterator[bytes]:
    """Anthropic SSE bytes through as they arrive; a broken upstream ends with an error event."""
    error: ProxyError | None = None
    complete = False
    usage = RelayedUsage()
    metrics.stream_started()
    try:
        secrets = recorder.secret_bytes
        for piece in upstream.iter_body(response, deadline):
            if piece is PING:
                yield PING_EVENT
                continue
            usage.feed(piece)
            yield recorder.redact_bytes(piece) if secrets else piece
        complete = True
    except (UpstreamTimeout, UpstreamUnavailable) as exc:
        error = exc
        yield b"\n\nevent: error\ndata: " + orjson.dumps(envelope("api_error", exc.message)) + b"\n\n"
    finally:
        metrics.stream_ended()
        if complete:
            upstream.release(response, wait=0.0)  # read to its end: keep the connection
        else:
            upstream.discard(response)
        usage.settle(outcome)
        if error is not None:
            recorder.fail(outcome, error)
        else:
            recorder.finish(outcome, 200)


class RelayedUsage:
    """The usage of a relayed Anthropic stream, read from its message_start and message_delta events.

    Only events that name `usage` are decoded; every other event is skipped by the parser alone.
    """

    def __init__(self) -> None:
        self.parser: SSEParser | None = SSEParser()
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.seen = False

    def feed(self, piece: bytes) -> None:
        if self.parser is None:
            return
        try:
            events = self.parser.feed(piece)
        except SSEError:  # not SSE we can read: relayed all the same, just not counted
            self.parser = None
            return
        for event in events:
            if '"usage"' not in event.data:
                continue
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(data, dict):
                continue
            message = data.get("message") if data.get("type") == "message_start" else data
            found = message.get("usage") if isinstance(message, dict) else None
            if isinstance(found, dict):
                self.seen = True
                self.usage.update({k: v for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool)})
            delta = data.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]

    def settle(self, outcome: Outcome) -> None:
        if self.seen:
            outcome.answer(self.usage, self.stop_reason)
            outcome.cache_write_tokens = self.usage.get("cache_creation_input_tokens")


def _feed_whole(translator: StreamTranslator, body: bytes, provider: str) -> list[dict[str, Any]]:
    """A whole chat.completion (or error body) fed to the stream translator as if it were one chunk."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        message = f"{provider}: upstream answered a streaming request with a body that is not JSON"
        return translator.fail("api_error", message)
    return translator.feed(data)
