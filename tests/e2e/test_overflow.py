"""Context overflow through the running proxy: answered in Anthropic's words (so clients compact),
before an upstream call when a window is configured, and never turned into a max_tokens lesson."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import proxy_config
from tests.support.proxy_server import CLOSE, ProxyServer
from tests.support.upstream import FakeUpstream, Json

pytestmark = pytest.mark.e2e


def ask(server: ProxyServer, text: str, max_tokens: int = 4000) -> requests.Response:
    body = {"model": "claude-sonnet-5", "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}
    return requests.post(server.url + "/v1/messages", json=body, headers=CLOSE, timeout=20)


def test_a_configured_window_answers_before_any_upstream_call(upstream: FakeUpstream) -> None:
    with ProxyServer(proxy_config(upstream, context_windows={"big-model": 2000})) as server:
        before = len(upstream.requests)
        response = ask(server, "word " * 20_000)
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert message.startswith("prompt is too long: ") and message.endswith(" tokens > 2000 maximum")
        assert len(upstream.requests) == before  # nothing spent upstream
        assert ask(server, "short").status_code == 200  # under the window: served


def test_a_provider_overflow_is_anthropics_wording_and_teaches_nothing(upstream: FakeUpstream) -> None:
    overflow = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    with ProxyServer(proxy_config(upstream)) as server:
        before = len(upstream.requests)
        upstream.enqueue(Json(overflow, 400), path="/chat/completions")
        response = ask(server, "hello", max_tokens=4000)
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "prompt is too long: 9000 tokens > 8192 maximum"
        assert len(upstream.requests) == before + 1  # no retry with a smaller max_tokens
        assert ask(server, "hello again", max_tokens=4000).status_code == 200
        assert upstream.requests[-1].json["max_tokens"] == 4000  # not clamped by a "lesson"


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_overflow_without_a_maximum_takes_the_configured_window(upstream: FakeUpstream, stream: bool) -> None:
    # Ollama's wording has no window in it; Claude Code needs "N tokens > M maximum" to size its
    # compaction, so the model's [context_windows] entry supplies M (the estimate being under it here).
    ollama = {"error": {"message": "prompt too long; exceeded max context length by 120 tokens", "type": "api_error"}}
    with ProxyServer(proxy_config(upstream, context_windows={"big-model": 100_000})) as server:
        upstream.enqueue(Json(ollama, 400), path="/chat/completions")
        body = {"model": "claude-sonnet-5", "max_tokens": 4000, "stream": stream,
                "messages": [{"role": "user", "content": "word " * 500}]}
        response = requests.post(server.url + "/v1/messages", json=body, headers=CLOSE, timeout=20)
        assert response.status_code == 400
        assert response.json()["error"] == {
            "type": "invalid_request_error", "message": "prompt is too long: 100001 tokens > 100000 maximum"
        }
    with ProxyServer(proxy_config(upstream)) as server:  # no window configured: the estimate, no maximum
        upstream.enqueue(Json(ollama, 400), path="/chat/completions")
        response = ask(server, "word " * 500)
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert message.startswith("prompt is too long: ") and message.endswith(" tokens > model's maximum context")


def test_an_overflow_inside_a_200_body_is_a_400_too(upstream: FakeUpstream) -> None:
    message = "This endpoint's maximum context length is 8192 tokens. However, you requested about 9000 tokens."
    body = {"error": {"message": message, "code": 400}}  # OpenRouter's in-band form
    with ProxyServer(proxy_config(upstream)) as server:
        upstream.enqueue(Json(body, 200), path="/chat/completions")
        response = ask(server, "hello")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"].startswith("prompt is too long: ")


def test_a_thread_is_refused_the_way_the_sdks_recover_from(upstream: FakeUpstream) -> None:
    with ProxyServer(proxy_config(upstream)) as server:
        before = len(upstream.requests)
        body = {
            "model": "claude-sonnet-5",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "thread": {"type": "create"},
        }
        response = requests.post(server.url + "/v1/messages", json=body, headers=CLOSE, timeout=20)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["details"] == {"error_code": "thread_unsupported_request", "unsupported": ["thread"]}
        assert len(upstream.requests) == before
