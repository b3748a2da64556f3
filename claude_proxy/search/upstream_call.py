"""`call_upstream` for the search loop: one OpenAI-format request through the provider's `Upstream`.

Sends the request when called (so an HTTP error raises before the loop yields anything) and
returns the stream's `data` payloads (None for a silent interval, so the client gets a ping), or
the whole chat.completion when not streaming. The response is released or closed when the
iterator ends or is closed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from claude_proxy.errors import UpstreamUnavailable
from claude_proxy.translate import SSEParser
from claude_proxy.upstream.client import PING, Upstream

PATH = "/chat/completions"


class UpstreamCaller:
    def __init__(
        self,
        upstream: Upstream,
        headers: Mapping[str, str],
        deadline: float,
        *,
        stream: bool,
        retry: bool = True,
    ) -> None:
        self.upstream = upstream
        self.headers = dict(headers)
        self.deadline = deadline
        self.stream = stream
        self.retry = retry

    def __call__(self, body: dict[str, Any]) -> Iterator[str | dict[str, Any] | None] | dict[str, Any]:
        response = self.upstream.post_json(
            PATH, orjson.dumps(body), self.headers, stream=self.stream, deadline=self.deadline, retry=self.retry
        )
        if not self.stream:
            return self._whole(self.upstream.read(response, self.deadline))
        return self._chunks(response)

    def _whole(self, content: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(f"{self.upstream.provider.name}: upstream answered with a body that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamUnavailable(f"{self.upstream.provider.name}: upstream answered with a body that is not an object")
        return data

    def _chunks(self, response: Any) -> Iterator[str | dict[str, Any] | None]:
        parser = SSEParser()
        content_type = str(getattr(response, "headers", {}).get("content-type", "")).lower()
        # a provider that ignores `stream: true` answers with one chat.completion body
        whole: bytearray | None = bytearray() if content_type.split(";")[0].strip().endswith("json") else None
        complete = False
        try:
            for piece in self.upstream.iter_body(response, self.deadline):
                if piece is PING:
                    yield None
                elif whole is not None:
                    whole += piece
                else:
                    for event in parser.feed(piece):
                        yield event.data
            if whole is not None:
                yield self._whole(bytes(whole))
            for event in parser.close():
                yield event.data
            complete = True
        finally:
            if complete:
                self.upstream.release(response)  # read to its end: keep the connection
            else:
                self.upstream.discard(response)
