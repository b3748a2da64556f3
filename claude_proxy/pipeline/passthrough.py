"""Anthropic-format targets: the client's body goes through (model renamed), the answer comes back as is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from claude_proxy.errors import UpstreamHTTPError
from claude_proxy.pipeline.credentials import Credentials
from claude_proxy.pipeline.outcome import Outcome, Recorder
from claude_proxy.pipeline.reply import JSON, SSE, STREAM_HEADERS, Reply
from claude_proxy.pipeline.route import Attempt, falls_back
from claude_proxy.pipeline.streaming import relay_stream


class Passthrough:
    def __init__(self, credentials: Credentials, recorder: Recorder) -> None:
        self.credentials = credentials
        self.recorder = recorder

    def send(
        self,
        attempt: Attempt,
        path: str,
        raw: bytes,
        body: dict[str, Any],
        headers: Mapping[str, str],
        outcome: Outcome,
        stream: bool,
        deadline: float,
    ) -> Reply:
        upstream, model = attempt.upstream, attempt.target.model
        out_headers = self.credentials.anthropic_headers(headers, outcome.request_id, attempt.provider)
        if outcome.trace is not None:
            out_headers.update(outcome.trace.upstream_headers)
        if model != body["model"]:
            raw = orjson.dumps({**body, "model": model})
        try:
            response = upstream.post_json(path, raw, out_headers, stream=stream, deadline=deadline, retry=attempt.last)
        except UpstreamHTTPError as error:
            # Anthropic's own error bodies go back unmodified (Claude Code matches on their wording),
            # unless a fallback target is still to be tried.
            if error.raw and b'"error"' in error.raw and (attempt.last or not falls_back(error)):
                self.recorder.fail(outcome, error)
                text = error.raw.decode("utf-8", "replace")
                clean = self.recorder.redact(text)  # a key echoed back by the upstream stays here
                return Reply(error.status, error.raw if clean == text else clean.encode(), JSON, dict(error.headers))
            raise
        content_type = response.headers.get("content-type", JSON)
        if stream and content_type.startswith(SSE):
            relay = relay_stream(response, outcome, deadline, upstream, self.recorder)
            return Reply(response.status_code, relay, SSE, dict(STREAM_HEADERS))
        content = upstream.read(response, deadline)
        try:
            message = orjson.loads(content)
            usage = message.get("usage")
            if response.status_code == 200 and isinstance(usage, dict):
                outcome.answer(usage, message.get("stop_reason"))
                outcome.cache_write_tokens = usage.get("cache_creation_input_tokens")
        except (orjson.JSONDecodeError, AttributeError):
            pass
        self.recorder.finish(outcome, response.status_code)
        return Reply(response.status_code, content, content_type)
