"""End to end: the official `anthropic` SDK sends Anthropic's web search server tool to claude-proxy under
gunicorn; the proxy runs the searches against a real local search service (SearXNG's JSON API on
127.0.0.1) and a scripted OpenAI-compatible model, and answers as Anthropic would.

Needs the pipeline hook (README, "Web search"): `OpenAIAttempts.send` asks `WebSearch.prepare` and
serves a `SearchTurn` through an `UpstreamCaller`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
import requests
from anthropic.types import MessageParam, TextBlock, WebSearchTool20250305Param

from tests.conftest import proxy_config
from tests.e2e import test_claude_code as cc
from tests.support.grammar import check_grammar
from tests.support.proxy_server import ProxyServer
from tests.support.search_backends import SearchService
from tests.support.search_model import DOCS, FACT, searching_model
from tests.support.sse_client import parse_sse
from tests.support.upstream import FakeUpstream

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CC_SCENARIO = ROOT / "tests" / "support" / "cc_websearch_scenario.py"
# test_claude_code's fixtures: root, a loopback-only namespace and the CLI from npm, or a skip that says which
# is missing (`cc_claude` needs `netns`)
netns, cc_claude = cc.netns, cc.claude

SERVER_TOOL: WebSearchTool20250305Param = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
PROMPT: list[MessageParam] = [{"role": "user", "content": "Perform a web search for the query: pelican facts"}]


@pytest.fixture(scope="module")
def service() -> Iterator[SearchService]:
    with SearchService(DOCS) as svc:
        yield svc


@pytest.fixture(scope="module")
def model() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.handler = searching_model()
        yield up


@pytest.fixture(scope="module")
def proxy(model: FakeUpstream, service: SearchService) -> Iterator[ProxyServer]:
    config = proxy_config(model, web_search={"backend": "searxng", "url": service.url, "max_results": 3})
    with ProxyServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def unconfigured(model: FakeUpstream) -> Iterator[ProxyServer]:
    with ProxyServer(proxy_config(model)) as server:
        yield server


def client_for(proxy: ProxyServer) -> anthropic.Anthropic:
    """An SDK client, used in a `with` block: closed, its kept-alive connections do not hold the server's stop."""
    return anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=30)


def test_sdk_streaming_search_turn(proxy: ProxyServer, service: SearchService) -> None:
    before = len(service.queries)
    with client_for(proxy) as client, client.messages.stream(
        model="claude-opus-5-5", max_tokens=1000, messages=PROMPT, tools=[SERVER_TOOL],
    ) as stream:
        message = stream.get_final_message()
    kinds = [b.type for b in message.content]
    assert kinds == ["text", "server_tool_use", "web_search_tool_result", "text"]
    use, result = message.content[1], message.content[2]
    assert use.type == "server_tool_use" and use.id.startswith("srvtoolu_") and use.input == {"query": "pelican facts"}
    assert result.type == "web_search_tool_result" and result.tool_use_id == use.id
    assert isinstance(result.content, list) and result.content[0].url == "https://birds.example/pelican"
    answer = message.content[3]
    assert isinstance(answer, TextBlock) and FACT in answer.text
    assert message.stop_reason == "end_turn"
    assert message.usage.server_tool_use is not None and message.usage.server_tool_use.web_search_requests == 1
    assert service.queries[before:] == ["pelican facts"]


def test_sdk_non_streaming_search_turn(proxy: ProxyServer) -> None:
    with client_for(proxy) as client:
        message = client.messages.create(
            model="claude-opus-5-5", max_tokens=1000, messages=PROMPT, tools=[SERVER_TOOL],
        )
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result", "text"]
    answer = message.content[2]
    assert isinstance(answer, TextBlock) and FACT in answer.text
    assert message.usage.server_tool_use is not None and message.usage.server_tool_use.web_search_requests == 1


def test_the_raw_stream_keeps_the_grammar(proxy: ProxyServer) -> None:
    body: dict[str, Any] = {"model": "claude-opus-5-5", "max_tokens": 1000, "stream": True, "messages": PROMPT,
                            "tools": [SERVER_TOOL], "tool_choice": {"type": "auto"}}
    response = requests.post(proxy.url + "/v1/messages", json=body, timeout=30)
    assert response.status_code == 200
    events = parse_sse(response.content)
    outcome = check_grammar(events)
    assert outcome.ending == "message" and [e["type"] for e in events].count("message_start") == 1
    assert [b.kind for b in outcome.blocks][1:3] == ["server_tool_use", "web_search_tool_result"]
    assert outcome.message_delta is not None
    assert outcome.message_delta["usage"]["server_tool_use"]["web_search_requests"] == 1


def test_without_a_backend_the_client_gets_a_clear_400(unconfigured: ProxyServer) -> None:
    with client_for(unconfigured) as client, pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-opus-5-5", max_tokens=100, messages=PROMPT, tools=[SERVER_TOOL],
        )
    assert "[web_search]" in str(caught.value) and "web_search_20250305" in str(caught.value)


# -- the real Claude Code CLI -----------------------------------------------------------------------------


@pytest.mark.claude_code
def test_claude_code_websearch_answers_with_what_only_the_local_backend_knows(cc_claude: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    command = cc._in_namespace_command(sys.executable, str(CC_SCENARIO), "--claude", str(cc_claude), "--out", str(out))
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0 and out.exists(), f"scenario failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    result = json.loads(out.read_text())
    why = f"stdout={result.get('stdout', '')[:2000]}\nstderr={result.get('stderr', '')[:2000]}\n" \
          f"proxy={result.get('proxy_output', '')[-2000:]}"
    output = result["cli_json"]
    assert result["returncode"] == 0 and output is not None and output["is_error"] is False, why
    assert FACT in output["result"], why  # only the local search service held it
    assert result["search_queries"] == ["pelican pouch facts"], why
    side = [r["json"] for r in result["upstream_requests"]
            if any(t["function"]["name"] == "web_search" for t in r["json"].get("tools", []))]
    assert side, why  # the side request offered the model the web_search function, not the server tool
    assert not any(t.get("type", "").startswith("web_search_") for r in side for t in r.get("tools", []))
