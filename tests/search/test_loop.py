"""The server-side search loop end to end below the pipeline: a real local search service, a scripted
OpenAI-compatible model on a real socket, the real Upstream, and one Anthropic message out."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from claude_proxy.config.loader import ProviderConfig, RetryPolicy, Timeouts
from claude_proxy.config.websearch import WebSearchConfig
from claude_proxy.errors import InvalidRequest, ProxyError
from claude_proxy.search import SearchTurn, UpstreamCaller, WebSearch, assemble
from claude_proxy.translate import translate_request
from claude_proxy.translate.dialect import Dialect
from claude_proxy.translate.websearch import decode_snippet
from claude_proxy.upstream.client import Upstream
from tests.support.grammar import check_grammar
from tests.support.search_backends import TAVILY_KEY, SearchService
from tests.support.search_model import DOCS, FACT, answer_response, call_response, searching_model
from tests.support.upstream import FakeUpstream, Json, RecordedRequest, Response, Stream, chunk, completion

READ_TOOL = {"name": "Read", "description": "Read a file", "input_schema": {"type": "object", "properties": {
    "file_path": {"type": "string"}}, "required": ["file_path"]}}


def server_tool(**extra: Any) -> dict[str, Any]:
    return {"type": "web_search_20250305", "name": "web_search", "max_uses": 8, **extra}


def request(stream: bool, tools: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-opus-5-5",
        "max_tokens": 1000,
        "stream": stream,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Perform a web search for the query: pelican facts"}]}],
        "tools": tools if tools is not None else [server_tool()],
        "tool_choice": {"type": "auto"},
        **extra,
    }


# -- harness ------------------------------------------------------------------------------------


@pytest.fixture
def service() -> Iterator[SearchService]:
    with SearchService(DOCS) as svc:
        yield svc


@pytest.fixture
def model() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def upstream_for(model: FakeUpstream, dialect: Dialect = Dialect()) -> Upstream:
    provider = ProviderConfig(name="fake", base_url=model.url, format="openai", dialect=dialect, key_required=False)
    return Upstream(provider, Timeouts(connect=2, read=5, total=20), RetryPolicy(max_retries=0), pool_size=4)


def web_search(service: SearchService, kind: str = "searxng", **changes: Any) -> WebSearch:
    key = TAVILY_KEY if kind == "tavily" else None
    config = WebSearchConfig(backend=kind, url=service.url, url_explicit=True, api_key=key, **changes)
    return WebSearch(config)


def prepare(ws: WebSearch, body: dict[str, Any], dialect: Dialect = Dialect()) -> tuple[SearchTurn, dict[str, Any]]:
    translation = translate_request(body, model="fake-model", dialect=dialect)
    prepared = ws.prepare(body, translation, dialect, deadline=time.monotonic() + 20)
    assert prepared.turn is not None
    return prepared.turn, prepared.body


def run_stream(ws: WebSearch, model: FakeUpstream, body: dict[str, Any], dialect: Dialect = Dialect()
               ) -> tuple[list[dict[str, Any]], SearchTurn]:
    turn, first = prepare(ws, body, dialect)
    caller = UpstreamCaller(upstream_for(model, dialect), {}, time.monotonic() + 20, stream=True)
    events = [e for batch in turn.stream(caller, first) for e in batch]
    return events, turn


def run_message(ws: WebSearch, model: FakeUpstream, body: dict[str, Any], dialect: Dialect = Dialect()
                ) -> tuple[dict[str, Any], SearchTurn]:
    turn, first = prepare(ws, body, dialect)
    caller = UpstreamCaller(upstream_for(model, dialect), {}, time.monotonic() + 20, stream=False)
    return turn.message(caller, first), turn


def text_of(blocks: list[dict[str, Any]]) -> str:
    return "".join(b.get("text", "") for b in blocks if b["type"] == "text")


# -- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["searxng", "tavily"])
def test_a_streamed_turn_searches_and_answers_with_what_it_found(service: SearchService, model: FakeUpstream,
                                                                 kind: str) -> None:
    model.handler = searching_model()
    events, turn = run_stream(web_search(service, kind), model, request(stream=True))
    outcome = check_grammar(events)
    assert outcome.ending == "message"
    assert [e["type"] for e in events].count("message_start") == 1
    assert [e["type"] for e in events].count("message_stop") == 1
    kinds = [b.kind for b in outcome.blocks]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "text"]
    use, result = outcome.blocks[1], outcome.blocks[2]
    assert json.loads(use.content) == {"query": "pelican facts"} and use.name == "web_search"
    assert result.whole is not None and result.whole["content"][0]["url"] == "https://birds.example/pelican"
    assert decode_snippet(result.whole["content"][0]["encrypted_content"]) == FACT
    assert FACT in outcome.blocks[3].content  # the model could only know it from the results
    delta = outcome.message_delta
    assert delta is not None and delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["input_tokens"] == 10 + 30 and delta["usage"]["output_tokens"] == 5 + 7
    assert delta["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}
    assert service.queries == ["pelican facts"] and turn.searches == 1 and turn.stop_reason == "end_turn"
    # the second upstream call carried the assistant's call and the results as a tool message
    second = model.requests[1].json["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["function"]["name"] == "web_search"
    assert second[-2]["content"] == "Let me search."
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == second[-2]["tool_calls"][0]["id"]
    assert FACT in second[-1]["content"] and "https://birds.example/pelican" in second[-1]["content"]
    assert not any(t.get("type", "").startswith("web_search_") for t in model.requests[0].json["tools"])


def test_a_whole_turn_is_one_message(service: SearchService, model: FakeUpstream) -> None:
    model.handler = searching_model()
    message, _turn = run_message(web_search(service), model, request(stream=False))
    assert [b["type"] for b in message["content"]] == ["server_tool_use", "web_search_tool_result", "text"]
    use, result, text = message["content"]
    assert use["id"].startswith("srvtoolu_") and use["input"] == {"query": "pelican facts"}
    assert result["tool_use_id"] == use["id"] and result["content"][0]["title"] == "Pelican facts"
    assert FACT in text["text"]
    assert message["stop_reason"] == "end_turn" and message["role"] == "assistant"
    assert message["usage"]["input_tokens"] == 40 and message["usage"]["server_tool_use"]["web_search_requests"] == 1
    assert model.requests[0].json.get("stream") is None


@pytest.mark.parametrize("stream", [True, False])
def test_searching_past_max_uses_is_refused_then_the_model_mustanswer_response(service: SearchService, model: FakeUpstream,
                                                                        stream: bool) -> None:
    model.handler = searching_model(lambda n: [f"pelican facts {n}"])  # never tires of searching
    body = request(stream=stream, tools=[server_tool(max_uses=2)])
    if stream:
        events, turn = run_stream(web_search(service), model, body)
        check_grammar(events)
        blocks: list[dict[str, Any]] = assemble(events)["content"]
    else:
        message, turn = run_message(web_search(service), model, body)
        blocks = message["content"]
    results = [b["content"] for b in blocks if b["type"] == "web_search_tool_result"]
    assert len(results) == 3
    assert isinstance(results[0], list) and isinstance(results[1], list)
    assert results[2] == {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
    assert service.queries == ["pelican facts 0", "pelican facts 1"]  # the third never reached the backend
    assert turn.searches == 2 and turn.stop_reason == "end_turn"
    assert len(model.requests) == 4
    last = model.requests[3].json
    assert "tools" not in last and "tool_choice" not in last  # withdrawn: the last leg must answer
    assert "max_uses_exceeded" in last["messages"][-1]["content"]


def test_several_searches_in_one_step_each_get_their_blocks(service: SearchService, model: FakeUpstream) -> None:
    model.handler = searching_model(lambda n: ["pelican facts", "gull facts"] if n == 0 else [])
    events, turn = run_stream(web_search(service), model, request(stream=True))
    outcome = check_grammar(events)
    kinds = [b.kind for b in outcome.blocks]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "server_tool_use", "web_search_tool_result",
                     "text"]
    assert sorted(service.queries) == ["gull facts", "pelican facts"] and turn.searches == 2
    second = model.requests[1].json["messages"]
    assert [m["role"] for m in second[-3:]] == ["assistant", "tool", "tool"]
    assert len(second[-3]["tool_calls"]) == 2


@pytest.mark.parametrize(("status", "code"), [(429, "too_many_requests"), (503, "unavailable")])
def test_a_backend_failure_is_an_error_result_not_a_failed_request(service: SearchService, model: FakeUpstream,
                                                                    status: int, code: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    model.handler = searching_model()
    service.fail_next(status)
    with caplog.at_level(logging.WARNING, logger="claude_proxy.search"):
        events, turn = run_stream(web_search(service), model, request(stream=True))
    outcome = check_grammar(events)
    assert outcome.ending == "message" and turn.stop_reason == "end_turn"
    result = outcome.blocks[2].whole
    assert result is not None and result["content"] == {"type": "web_search_tool_result_error", "error_code": code}
    tool_message = model.requests[1].json["messages"][-1]
    assert tool_message["role"] == "tool" and f"Web search error ({code})" in tool_message["content"]
    assert "nothing found" in outcome.blocks[-1].content
    assert code in caplog.text and "pelican facts" not in caplog.text  # logged, but never the query


def test_a_client_tool_call_ends_the_turn_as_anthropic_does(service: SearchService, model: FakeUpstream) -> None:
    def handler(req: RecordedRequest) -> Response:
        return call_response(True, [("call_s", "web_search", {"query": "pelican facts"}),
                            ("call_r", "Read", {"file_path": "/tmp/notes"})], (10, 5))

    model.handler = handler
    events, turn = run_stream(web_search(service), model, request(stream=True, tools=[READ_TOOL, server_tool()]))
    outcome = check_grammar(events)
    assert [b.kind for b in outcome.blocks] == ["text", "server_tool_use", "web_search_tool_result", "tool_use"]
    assert outcome.blocks[3].name == "Read" and json.loads(outcome.blocks[3].content) == {"file_path": "/tmp/notes"}
    assert turn.stop_reason == "tool_use" and len(model.requests) == 1
    assert {t["function"]["name"] for t in model.requests[0].json["tools"]} == {"Read", "web_search"}


def test_an_upstream_failure_on_a_later_leg_ends_the_stream_with_an_error(service: SearchService,
                                                                          model: FakeUpstream) -> None:
    model.enqueue(call_response(True, [("call_1", "web_search", {"query": "pelican facts"})], (10, 5)),
                  Json({"error": {"message": "boom", "type": "server_error"}}, status=500))
    events, turn = run_stream(web_search(service), model, request(stream=True))
    outcome = check_grammar(events)
    assert outcome.ending == "error" and outcome.error is not None
    assert [b.kind for b in outcome.blocks] == ["text", "server_tool_use", "web_search_tool_result"]
    assert turn.error is not None
    model.enqueue(call_response(False, [("call_1", "web_search", {"query": "pelican facts"})], (10, 5)),
                  Json({"error": {"message": "boom", "type": "server_error"}}, status=500))
    with pytest.raises(ProxyError) as caught:
        run_message(web_search(service), model, request(stream=False))
    assert caught.value.status >= 500


def test_the_first_upstream_failure_is_raised_before_anything_is_sent(service: SearchService,
                                                                      model: FakeUpstream) -> None:
    model.enqueue(Json({"error": {"message": "no such model", "type": "invalid_request_error"}}, status=404))
    turn, first = prepare(web_search(service), request(stream=True))
    caller = UpstreamCaller(upstream_for(model), {}, time.monotonic() + 20, stream=True)
    with pytest.raises(ProxyError) as caught:
        turn.stream(caller, first)
    assert caught.value.status == 404 and service.queries == []


def test_domain_filters_reach_the_search(service: SearchService, model: FakeUpstream) -> None:
    model.handler = searching_model()
    body = request(stream=False, tools=[server_tool(blocked_domains=["birds.example"])])
    message, _turn = run_message(web_search(service, "tavily"), model, body)
    result = message["content"][1]["content"]
    assert result and all("birds.example" not in r["url"] for r in result)
    assert FACT not in json.dumps(message)  # the only page holding it was blocked


def test_native_search_maps_url_citations_to_the_same_blocks(model: FakeUpstream) -> None:
    dialect = Dialect(name="openrouter", native_web_search="openrouter_plugin")
    citation = {"type": "url_citation", "url_citation": {"url": "https://birds.example/pelican", "title": "Pelicans",
                                                         "content": FACT, "start_index": 0, "end_index": 10}}
    streamed = answer_response(True, "Pelicans have pouches.", (12, 4))
    assert isinstance(streamed, Stream)
    cited = chunk()
    cited["choices"][0]["delta"]["annotations"] = [citation]  # OpenRouter streams them in a delta
    streamed.items.insert(-2, cited)
    whole = completion("Pelicans have pouches.", prompt_tokens=12, completion_tokens=4)
    whole["choices"][0]["message"]["annotations"] = [citation]
    model.enqueue(streamed, Json(whole))
    ws = WebSearch(None)  # no [web_search] table: the preset's native search is used
    events, turn = run_stream(ws, model, request(stream=True), dialect)
    sent = model.requests[0].json
    assert sent["plugins"] == [{"id": "web", "max_results": 5}] and "tools" not in sent
    outcome = check_grammar(events)
    assert [b.kind for b in outcome.blocks] == ["text", "server_tool_use", "web_search_tool_result"]
    result = outcome.blocks[2].whole
    assert result is not None and result["content"][0]["url"] == "https://birds.example/pelican"
    assert decode_snippet(result["content"][0]["encrypted_content"]) == FACT
    assert json.loads(outcome.blocks[1].content)["query"] == "Perform a web search for the query: pelican facts"
    assert outcome.message_delta is not None
    assert outcome.message_delta["usage"]["server_tool_use"]["web_search_requests"] == 1
    assert turn.stop_reason == "end_turn" and len(model.requests) == 1
    message, _ = run_message(ws, model, request(stream=False), dialect)
    assert [b["type"] for b in message["content"]] == ["text", "server_tool_use", "web_search_tool_result"]
    assert message["content"][2]["content"][0]["title"] == "Pelicans"


def test_without_a_backend_the_client_is_told_what_to_configure() -> None:
    body = request(stream=True)
    translation = translate_request(body)
    with pytest.raises(InvalidRequest) as caught:
        WebSearch(None).prepare(body, translation, Dialect())
    assert "web_search_20250305" in caught.value.message and "[web_search]" in caught.value.message
    assert caught.value.status == 400 and caught.value.error_type == "invalid_request_error"
    native_elsewhere = WebSearch(WebSearchConfig(backend="native"))
    with pytest.raises(InvalidRequest, match="has no native web search"):
        native_elsewhere.prepare(body, translation, Dialect(name="deepseek"))


def test_on_missing_drop_answers_without_searching_and_says_so_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    body = request(stream=True, tools=[READ_TOOL, server_tool()], tool_choice={"type": "tool", "name": "web_search"})
    translation = translate_request(body)
    with caplog.at_level(logging.WARNING, logger="claude_proxy.search"):
        prepared = WebSearch(WebSearchConfig(backend="native", on_missing="drop")).prepare(body, translation, Dialect())
    assert prepared.turn is None and "tool_choice" not in prepared.body
    assert [t["function"]["name"] for t in prepared.body["tools"]] == ["Read"]
    assert "dropped" in caplog.text and "web_search_20250305" in caplog.text


def test_requests_without_the_server_tool_are_untouched(service: SearchService) -> None:
    body = request(stream=True, tools=[READ_TOOL])
    translation = translate_request(body)
    prepared = web_search(service).prepare(body, translation, Dialect())
    assert prepared.turn is None and prepared.body is translation.body
