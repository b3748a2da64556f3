"""A scripted OpenAI-compatible model for web search tests: it calls `web_search` while the function is
offered, then answers with the line of its tool messages that holds the fact — which only the local
search service knows, so an answer carrying it proves the results reached the model."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.support.search_backends import Doc
from tests.support.upstream import (
    Json,
    RecordedRequest,
    Response,
    Stream,
    chunk,
    completion,
    tool_call_delta,
    usage_chunk,
)

FACT = "The brown pelican's pouch holds exactly 11.37 litres."  # only the search service knows this
DOCS = [
    Doc("https://birds.example/pelican", "Pelican facts", FACT, "2026-03-01"),
    Doc("https://spam.example/pelican", "Pelican deals", "Buy pelicans.", None),
    Doc("https://other.example/gull", "Gull facts", "Gulls are seabirds too.", None),
]


def call_response(stream: bool, calls: list[tuple[str, str, dict[str, Any]]], usage: tuple[int, int]) -> Response:
    if not stream:
        tool_calls = [{"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                      for cid, name, args in calls]
        return Json(completion(None, tool_calls=tool_calls, finish_reason="tool_calls",
                               prompt_tokens=usage[0], completion_tokens=usage[1]))
    items: list[Any] = [chunk(role="assistant", content="Let me search.")]
    for n, (cid, name, args) in enumerate(calls):
        text = json.dumps(args)
        items.append(chunk(tool_calls=[tool_call_delta(n, id=cid, name=name, arguments=text[:5])]))
        items.append(chunk(tool_calls=[tool_call_delta(n, arguments=text[5:])]))
    items += [chunk(finish_reason="tool_calls"), usage_chunk(*usage)]
    return Stream(items)


def answer_response(stream: bool, text: str, usage: tuple[int, int], **extra: Any) -> Response:
    if not stream:
        return Json(completion(text, prompt_tokens=usage[0], completion_tokens=usage[1]))
    words = re.findall(r"\S+\s*", text)
    items: list[Any] = [chunk(role="assistant", content="")]
    items += [chunk(w) for w in words]
    items += [chunk(finish_reason="stop", **extra), usage_chunk(*usage)]
    return Stream(items)


def searching_model(queries: Callable[[int], list[str]] | None = None) -> Callable[[RecordedRequest], Response]:
    """Searches while the web_search function is offered (queries(n) for the n-th leg), then answers
    with the fact it read in the tool messages — so the answer proves the results reached it."""

    def handler(req: RecordedRequest) -> Response:
        body = req.json
        stream = bool(body.get("stream"))
        offered = {t["function"]["name"] for t in body.get("tools") or []}
        tool_texts = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        leg = sum(1 for m in body["messages"] if m["role"] == "assistant" and m.get("tool_calls"))
        wanted = (queries or (lambda n: ["pelican facts"] if n == 0 else []))(leg)
        if "web_search" in offered and wanted:
            calls = [(f"call_{leg}_{i}", "web_search", {"query": q}) for i, q in enumerate(wanted)]
            return call_response(stream, calls, (10 + leg, 5))
        found = [line for text in tool_texts for line in text.splitlines() if "litres" in line]
        return answer_response(stream, f"According to the search: {found[0] if found else 'nothing found.'}", (30, 7))

    return handler
