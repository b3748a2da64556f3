"""One attempt at an OpenAI-format target: translate the client's body afresh, send it, recover once
from a 400 that names a limit we can honour, and turn the answer (streamed or whole) into Anthropic's."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from claude_proxy import __version__
from claude_proxy.config.loader import Config
from claude_proxy.errors import InvalidRequest, UpstreamHTTPError, UpstreamUnavailable
from claude_proxy.pipeline import metrics
from claude_proxy.pipeline.credentials import Credentials
from claude_proxy.pipeline.outcome import CLIENT_DISCONNECTED, Outcome, Recorder
from claude_proxy.pipeline.reply import SSE, STREAM_HEADERS, Reply, json_reply
from claude_proxy.pipeline.route import Attempt
from claude_proxy.pipeline.streaming import Opened, inband_failure, open_stream, sse, translate_stream
from claude_proxy.search.plan import WebSearch
from claude_proxy.translate import StreamTranslator, openai_to_anthropic, translate_request
from claude_proxy.translate.errors import envelope, thread_refusal
from claude_proxy.translate.inband import inband_error
from claude_proxy.translate.overflow import overflow_error, with_window
from claude_proxy.translate.recovery import recover, token_field
from claude_proxy.translate.request import KNOWN_FIELDS
from claude_proxy.translate.response import new_message_id

if TYPE_CHECKING:  # the search loop's pieces load when a search runs (search/__init__.py)
    from claude_proxy.search import SearchTurn, UpstreamCaller

MAX_LEARNED = 1024  # (provider, model) pairs come from clients: keep the memory bounded


class Lessons:
    """What 400s taught us per (provider, upstream model), applied up front to later requests; per process."""

    def __init__(self) -> None:
        self._learned: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def apply(self, body: dict[str, Any], key: tuple[str, str]) -> dict[str, Any]:
        learned = self._learned.get(key)
        if not learned:
            return body
        if learned.get("dropped") == "stream_options":
            body = {k: v for k, v in body.items() if k != "stream_options"}
        limit, field = learned.get("max_tokens_limit"), token_field(body)
        if limit and field and body[field] > limit:
            body = {**body, field: limit}
        return body

    def learn(self, key: tuple[str, str], note: dict[str, Any]) -> None:
        with self._lock:
            if len(self._learned) >= MAX_LEARNED:
                self._learned.clear()
            self._learned.setdefault(key, {}).update(note)


class OpenAIAttempts:
    """Serves one chain target whose provider speaks OpenAI Chat Completions."""

    def __init__(self, config: Config, credentials: Credentials, recorder: Recorder) -> None:
        self.config = config
        self.credentials = credentials
        self.recorder = recorder
        self.lessons = Lessons()
        self.web_search = WebSearch(config.web_search, pool_size=config.threads)

    def send(
        self,
        attempt: Attempt,
        body: dict[str, Any],
        headers: Mapping[str, str],
        outcome: Outcome,
        stream: bool,
        deadline: float,
        session: str | None = None,
    ) -> Reply:
        provider, upstream, model = attempt.provider, attempt.upstream, attempt.target.model
        refusal = thread_refusal(body)  # a server-side thread cannot be held here: the SDKs' recoverable 400
        if refusal is not None:
            raise InvalidRequest(refusal["error"]["message"], details=refusal["error"]["details"])
        auth = self.credentials.openai_headers(headers, provider, upstream)
        forward = {}
        if self.config.forward_unknown:
            forward = {k: v for k, v in body.items() if k not in KNOWN_FIELDS and k not in self.config.drop}
        translation = translate_request(body, model=model, dialect=provider.dialect, forward=forward, session=session)
        window = self.config.context_window(model)
        too_long = overflow_error(translation.context.prompt_tokens(), window) if window else None
        if too_long is not None:  # answered as Anthropic would, so the client compacts; no upstream call spent
            raise InvalidRequest(too_long["error"]["message"])
        out_headers = {**auth, "X-Request-Id": outcome.request_id, "User-Agent": f"claude-proxy/{__version__}"}
        if stream:
            out_headers["Accept"] = SSE
        out_headers.update(translation.headers)  # cache affinity (x-session-id, x-grok-conv-id, …)
        if outcome.trace is not None:
            out_headers.update(outcome.trace.upstream_headers)
        key = (attempt.target.provider, model)
        prepared = self.web_search.prepare(body, translation, provider.dialect, deadline)
        out_body = self.lessons.apply(prepared.body, key)
        if prepared.turn is not None:  # a web_search server tool the proxy serves (search/loop.py)
            from claude_proxy.search.upstream_call import UpstreamCaller

            caller = UpstreamCaller(upstream, out_headers, deadline, stream=stream, retry=attempt.last)
            return self._search_reply(prepared.turn, caller, out_body, outcome, stream)
        second_chance = True
        opened: Opened | None = None
        while True:
            try:
                response = upstream.post_json(
                    "/chat/completions",
                    orjson.dumps(out_body),
                    out_headers,
                    stream=stream,
                    deadline=deadline,
                    retry=attempt.last,
                )
                if stream:  # an error as the first event is an HTTP error: read it before committing the 200
                    opened = open_stream(response, deadline, upstream, translation.context.prompt_tokens)
                break
            except UpstreamHTTPError as error:
                numbered = with_window(error.message, window, translation.context.prompt_tokens())
                if numbered is not None:  # the provider gave no numbers: the estimate, and the window if configured
                    raise UpstreamHTTPError(400, envelope("invalid_request_error", numbered), error.headers,
                                            raw=error.raw, content_type=error.content_type) from None
                # A 400 that names a limit we can honour (max_tokens, stream_options) gets one more try.
                fix = recover(out_body, error.message) if second_chance and error.status in (400, 422) else None
                if fix is None:
                    raise
                second_chance = False
                out_body, note = fix
                self.lessons.learn(key, note)
                outcome.adjusted = note
        if opened is not None:
            translation.context.prompt_tokens()  # now, so the stream does not hold the request body
            translator = StreamTranslator(translation.context, message_id=new_message_id())
            pump = translate_stream(opened, response, translator, outcome, deadline, upstream, self.recorder)
            return Reply(200, pump, SSE, dict(STREAM_HEADERS))
        content = upstream.read(response, deadline)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(f"{provider.name}: upstream answered with a body that is not JSON") from None
        payload = inband_error(data) if isinstance(data, dict) else (data or {"error": "upstream returned an error"})
        if payload is not None:
            outcome.upstream_error = True
            # an error inside a 200 (OpenRouter) is the upstream's error like any other: same fallback rules
            raise inband_failure(payload, provider.name, translation.context.prompt_tokens())
        message = openai_to_anthropic(data, translation.context, message_id=new_message_id())
        outcome.answer(message["usage"], message["stop_reason"])
        self.recorder.finish(outcome, 200)
        return json_reply(message)

    def _search_reply(
        self, turn: SearchTurn, caller: UpstreamCaller, body: dict[str, Any], outcome: Outcome, stream: bool
    ) -> Reply:
        """A request whose web search server tool the proxy serves: several upstream calls, one answer."""
        if not stream:
            message = turn.message(caller, body)
            outcome.answer(message["usage"], message["stop_reason"])
            self.recorder.finish(outcome, 200)
            return json_reply(message)
        batches = turn.stream(caller, body)  # the first upstream call happens here: its failure falls back
        return Reply(200, self._search_pump(turn, batches, outcome), SSE, dict(STREAM_HEADERS))

    def _search_pump(
        self, turn: SearchTurn, batches: Iterator[list[dict[str, Any]]], outcome: Outcome
    ) -> Iterator[bytes]:
        disconnected = False
        metrics.stream_started()
        try:
            for batch in batches:
                yield sse(batch, self.recorder)
        except GeneratorExit:
            disconnected = True
            raise
        finally:
            metrics.stream_ended()
            outcome.answer(turn.usage or {}, turn.stop_reason)
            if turn.error:
                outcome.error_type, outcome.error = turn.error[0], self.recorder.redact(turn.error[1])
            if disconnected and turn.stop_reason is None:
                outcome.error_type, outcome.error = CLIENT_DISCONNECTED, "client closed the connection mid-stream"
            self.recorder.finish(outcome, 200)
