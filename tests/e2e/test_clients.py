"""Today's clients, for real, through the proxy against a real local upstream (a scripted agent on 127.0.0.1):
the official Python and TypeScript SDKs (tool runners with their server-side threads, `messages.parse`),
LangChain's ChatAnthropic (`with_structured_output(method="json_schema")`) and the Vercel AI SDK
(`generateText` / `streamText` with a tool, `Output.object`). Node clients are installed from the npm registry
into .cache/ (tests/support/node_clients.py) and skip with the reason where node or the registry is missing.

Threads: both SDKs' tool runners send `thread` and recover from exactly one refusal — a 400 whose
`error.details.error_code` is "thread_unsupported_request" (anthropic-sdk-python 2.16
lib/threads/_thread_state.py `ThreadState.recovers_from`/`_unsupported_features`; @anthropic-ai/sdk 1.16
src/lib/internal/threads/ThreadState.ts `unsupportedFeatures`; tool runners use "continue_unthreaded"):
they drop `thread` and re-send the whole history, for that turn and every later one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from pydantic import BaseModel

from tests.conftest import proxy_config
from tests.support.node_clients import NodeUnavailable, run_node
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream, Json, RecordedRequest, Response, Stream, chunk, completion, usage_chunk

pytestmark = pytest.mark.e2e

SAMPLES = {"string": "Ada Lovelace", "integer": 36, "number": 36, "boolean": True}


def sample(schema: dict[str, Any]) -> Any:
    """A value that satisfies a (simple) JSON schema: what a model that follows the schema would write."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: sample(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample(schema.get("items") or {"type": "string"})]
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if name := {"city": "Paris"}.get(str(schema.get("title", "")).lower()):
        return name
    return SAMPLES.get(str(kind), "x")


def agent(req: RecordedRequest) -> Response:
    """A scripted OpenAI-format model: JSON for a response_format or a forced tool, a tool call while tools are
    offered and none has run yet, then a text answer quoting the last tool result."""
    body = req.json if isinstance(req.json, dict) else {}
    messages = body.get("messages") or []
    text: str | None = None
    call: dict[str, Any] | None = None
    response_format = body.get("response_format") or {}
    forced = body.get("tool_choice")
    tools = {t["function"]["name"]: t["function"] for t in body.get("tools") or [] if t.get("type") == "function"}
    if response_format.get("type") == "json_schema":
        text = json.dumps(sample(response_format["json_schema"]["schema"]))
    elif isinstance(forced, dict) and forced.get("function", {}).get("name") in tools:
        name = forced["function"]["name"]
        call = {"name": name, "arguments": json.dumps(sample(tools[name].get("parameters") or {}))}
    elif tools and not any(m.get("role") == "tool" for m in messages):
        name, function = next(iter(tools.items()))
        arguments = {"city": "Paris"} if "city" in json.dumps(function.get("parameters")) else {}
        call = {"name": name, "arguments": json.dumps(arguments)}
    else:
        results = [m for m in messages if m.get("role") == "tool"]
        content = results[-1]["content"] if results else ""
        text = "done: " + (content if isinstance(content, str) else json.dumps(content))
    calls = [{"id": "call_1", "type": "function", "function": call}] if call else None
    finish = "tool_calls" if call else "stop"
    if not req.stream:
        return Json(completion(text or "", tool_calls=calls, finish_reason=finish, prompt_tokens=20, completion_tokens=5))
    items: list[Any] = [chunk(role="assistant", content=text or "")]
    if call:
        items.append(chunk(tool_calls=[{"index": 0, "id": "call_1", "type": "function", "function": call}]))
    items += [chunk(finish_reason=finish), usage_chunk(20, 5)]
    return Stream(items)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.handler = agent
        yield up


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream) -> Iterator[ProxyServer]:
    with ProxyServer(proxy_config(upstream)) as server:
        yield server


@pytest.fixture
def client(proxy: ProxyServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=30) as made:
        yield made  # closed: its kept-alive connections would hold the server's stop at the module's end


def refusals(proxy: ProxyServer, since: int) -> list[dict[str, Any]]:
    return [r for r in proxy.journal()[since:] if r.get("status") == 400 and "thread" in str(r.get("error", ""))]


def assert_full_history_upstream(upstream: FakeUpstream, since: int) -> None:
    """Every turn reached the model with the whole conversation: the tool turn carries its call and result."""
    sent = upstream.requests[since:]
    assert len(sent) == 2, [r.json for r in sent]
    roles = [m["role"] for m in sent[1].json["messages"]]
    assert roles[-3:] == ["user", "assistant", "tool"], roles
    assert sent[1].json["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert all("thread" not in r.json for r in sent)


# -- threads: the refusal the SDKs recover from --------------------------------------------------------------------


def test_thread_is_refused_the_way_the_sdks_recover(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    seen = len(upstream.requests)
    for thread in ({"type": "create"}, {"type": "continue", "previous_message_id": "msg_1"}):
        with pytest.raises(anthropic.BadRequestError) as raised:
            client.beta.messages.create(
                model="claude-sonnet-5-5",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"thread": thread},
                betas=["message-threads-2026-08-12"],
            )
        body = raised.value.body
        assert raised.value.status_code == 400
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["details"] == {"error_code": "thread_unsupported_request", "unsupported": ["thread"]}
    assert len(upstream.requests) == seen  # a continued turn never reaches a provider without its history


@pytest.mark.parametrize("stream", [False, True])
def test_python_sdk_tool_runner_recovers_and_keeps_the_history(
    client: anthropic.Anthropic, proxy: ProxyServer, upstream: FakeUpstream, stream: bool
) -> None:
    from anthropic import beta_tool

    calls: list[str] = []

    @beta_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    seen, journal = len(upstream.requests), len(proxy.journal())
    runner = client.beta.messages.tool_runner(
        model="claude-sonnet-5-5",
        max_tokens=200,
        tools=[get_weather],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        stream=stream,
    )
    final = runner.until_done()
    assert calls == ["Paris"]
    assert "".join(b.text for b in final.content if b.type == "text") == "done: sunny in Paris"
    assert_full_history_upstream(upstream, seen)
    assert len(refusals(proxy, journal)) == 1  # refused once, on the first turn; never threaded again


@pytest.mark.parametrize("stream", ["0", "1"])
def test_typescript_sdk_tool_runner_recovers_and_keeps_the_history(
    proxy: ProxyServer, upstream: FakeUpstream, stream: str
) -> None:
    seen, journal = len(upstream.requests), len(proxy.journal())
    try:
        out = run_node("ts_sdk.mjs", {"BASE_URL": proxy.url, "CASE": "runner", "STREAM": stream})
    except NodeUnavailable as exc:
        pytest.skip(str(exc))
    assert out["calls"] == ["Paris"]
    assert out["final"] == "done: sunny in Paris"
    assert_full_history_upstream(upstream, seen)
    assert len(refusals(proxy, journal)) == 1


# -- structured outputs (pass once output_config.format reaches the provider: the fidelity branch) ------------------


class Person(BaseModel):
    name: str
    age: int


def test_python_sdk_messages_parse(client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    message = client.messages.parse(
        model="claude-sonnet-5-5",
        max_tokens=200,
        messages=[{"role": "user", "content": "Ada Lovelace, 36"}],
        output_format=Person,
    )
    assert message.parsed_output == Person(name="Ada Lovelace", age=36)


def test_typescript_sdk_messages_parse(proxy: ProxyServer) -> None:
    try:
        out = run_node("ts_sdk.mjs", {"BASE_URL": proxy.url, "CASE": "parse"})
    except NodeUnavailable as exc:
        pytest.skip(str(exc))
    assert out["parsed"] == {"name": "Ada Lovelace", "age": 36}


def test_langchain_with_structured_output_json_schema(proxy: ProxyServer) -> None:
    chat_anthropic = pytest.importorskip("langchain_anthropic", reason="langchain-anthropic is not installed")
    chat = chat_anthropic.ChatAnthropic(
        model="claude-sonnet-4-5", base_url=proxy.url, api_key="client-key", max_retries=0, timeout=30
    )
    structured = chat.with_structured_output(Person, method="json_schema")
    assert structured.invoke("Ada Lovelace, 36") == Person(name="Ada Lovelace", age=36)


def test_langchain_tool_calling(proxy: ProxyServer) -> None:
    chat_anthropic = pytest.importorskip("langchain_anthropic", reason="langchain-anthropic is not installed")
    chat = chat_anthropic.ChatAnthropic(
        model="claude-sonnet-4-5", base_url=proxy.url, api_key="client-key", max_retries=0, timeout=30
    )

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    reply = chat.bind_tools([get_weather]).invoke("What is the weather in Paris?")
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_vercel_ai_sdk_tools(proxy: ProxyServer) -> None:
    try:
        out = run_node("vercel.mjs", {"BASE_URL": proxy.url, "CASE": "tools"})
    except NodeUnavailable as exc:
        pytest.skip(str(exc))
    assert out["calls"] == ["Paris", "Paris"]
    assert out["generate"] == {"text": "done: sunny in Paris", "steps": 2}
    assert out["stream"] == {"text": "done: sunny in Paris", "steps": 2}


def test_vercel_ai_sdk_output_object(proxy: ProxyServer) -> None:
    try:
        out = run_node("vercel.mjs", {"BASE_URL": proxy.url, "CASE": "object"})
    except NodeUnavailable as exc:
        pytest.skip(str(exc))
    assert out["object"] == {"name": "Ada Lovelace", "age": 36}
