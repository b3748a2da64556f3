"""End to end: several providers at once — real gunicorn in front of three local upstreams.

`main` and `backup` are OpenAI-format FakeUpstreams; `anth` is a FakeUpstream answering the Anthropic
Messages API (the passthrough target); `dead` is a port that refuses connections. Chains in `[models]`
combine them; each test scripts what every upstream does and checks who served the answer, what each
upstream received, the response headers and the journal record.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
import requests

from tests.support.fixtures import CLAUDE_CODE_FIXTURES
from tests.support.proxy_server import CLOSE, ProxyServer
from tests.support.upstream import (
    FakeUpstream,
    HangBeforeHeaders,
    Json,
    RecordedRequest,
    Reset,
    Response,
    Stream,
    chunk,
    closed_port,
    completion,
    usage_chunk,
)

pytestmark = pytest.mark.e2e

FIXTURES = CLAUDE_CODE_FIXTURES
MAIN_KEY = "sk-main-upstream-key-000000001"
BACKUP_KEY = "sk-backup-upstream-key-0000002"
ANTH_KEY = "sk-ant-upstream-key-000000003"
SECRETS = (MAIN_KEY, BACKUP_KEY, ANTH_KEY)
READ_TIMEOUT = 1.0
HAIKU = "claude-haiku-4-5-20251001"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def anthropic_message(text: str, model: str, input_tokens: int = 11, output_tokens: int = 3) -> dict[str, Any]:
    return {
        "id": "msg_fromanthropic01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def anthropic_sse(text: str, model: str) -> list[str]:
    """An Anthropic event stream, as raw SSE items."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {**anthropic_message("", model), "content": []}}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 3},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]


def anthropic_handler(req: RecordedRequest) -> Response:
    """The Anthropic API as the passthrough target sees it: POST /v1/messages, JSON or SSE."""
    if req.method == "POST" and req.path == "/v1/messages/count_tokens" and isinstance(req.json, dict):
        return Json({"input_tokens": 4242})
    if req.method != "POST" or req.path != "/v1/messages" or not isinstance(req.json, dict):
        return Json({"type": "error", "error": {"type": "not_found_error", "message": f"no {req.path}"}}, 404)
    model = str(req.json.get("model"))
    if req.json.get("stream"):
        return Stream(anthropic_sse(f"anthropic {model}", model), done=False)
    return Json(anthropic_message(f"anthropic {model}", model))


def overloaded(status: int = 503, headers: dict[str, str] | None = None) -> Json:
    return Json({"error": {"message": f"upstream says {status}", "type": "server_error"}}, status, headers or {})


@pytest.fixture(scope="module")
def main() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def anth() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.handler = anthropic_handler
        yield up


def routing_config(main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream, **routing: Any) -> dict[str, Any]:
    return {
        "provider": {"name": "custom", "base_url": main.url, "api_key": MAIN_KEY},
        "providers": {
            "backup": {"base_url": backup.url, "api_key": BACKUP_KEY},
            "anth": {"format": "anthropic", "base_url": anth.origin, "api_key": ANTH_KEY},
            "dead": {"base_url": f"http://127.0.0.1:{closed_port()}/v1", "api_key": "sk-dead-key-00000000004"},
        },
        "models": {
            "main-then-backup": ["main-model", "backup,backup-model"],
            "main-then-anth": ["main-model", "anth,claude-real-model"],
            "anth-then-backup": ["anth,claude-real-model", "backup,backup-model"],
            "dead-then-backup": ["dead,dead-model", "backup,backup-model"],
            "main-only": "main-model",
            "anth-only": "anth,claude-real-model",
            "claude-sonnet-*": "main-model",
            "*haiku*": "main-model",
        },
        "routes": {
            "long_context": "backup,long-model",
            "image": "anth,vision-model",
            "background": "backup,fast-model",
            "think": ["think-model", "backup,think-backup-model"],
            "subagent": "backup,subagent-model",
            "auxiliary": ["dead,dead-model", "backup,aux-model"],
            "compaction": "main-compaction-model",
        },
        "routing": {"long_context_threshold": 50_000, "cooldown_failures": 1000, **routing},
        "upstream": {"max_retries": 2, "retry_base_delay": 0.05, "read_timeout": READ_TIMEOUT},
        "server": {"ping_interval": 0.5},
    }


@pytest.fixture(scope="module")
def proxy(main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream) -> Iterator[ProxyServer]:
    with ProxyServer(routing_config(main, backup, anth)) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream) -> Iterator[None]:
    yield
    for up in (main, backup, anth):
        assert up.pending == 0, "a scripted response was not used"
        assert up.errors == []


class Sent:
    """What each upstream received during one request."""

    def __init__(self, *ups: FakeUpstream) -> None:
        self.ups = ups
        self.before = [len(up.requests) for up in ups]

    def of(self, up: FakeUpstream) -> list[RecordedRequest]:
        return up.requests[self.before[self.ups.index(up)] :]


def post(
    proxy: ProxyServer, body: dict[str, Any], headers: dict[str, str] | None = None, **kw: Any
) -> requests.Response:
    headers = {"x-api-key": "client-key", "anthropic-version": "2023-06-01", **CLOSE, **(headers or {})}
    return requests.post(proxy.url + "/v1/messages", json=body, headers=headers, timeout=20, **kw)


def ask(model: str, text: str = "hello there", stream: bool = False, **extra: Any) -> dict[str, Any]:
    body = {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": text}], **extra}
    return {**body, "stream": True} if stream else body


def record(proxy: ProxyServer, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The journal line of one request (streams write theirs when they end)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in proxy.journal() if r.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.02)


def served_by(response: requests.Response) -> tuple[str, str, str]:
    h = response.headers
    return h.get("x-claude-proxy-route", ""), h.get("x-claude-proxy-provider", ""), h.get("x-claude-proxy-model", "")


def sse_events(response: requests.Response) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def streamed_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")


# -- fallback ---------------------------------------------------------------------------------------------------------


def test_fallback_on_503(proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream) -> None:
    main.enqueue(overloaded(503))
    sent = Sent(main, backup, anth)
    response = post(proxy, ask("main-then-backup"))
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "echo: hello there"}]
    assert response.json()["model"] == "main-then-backup"
    assert served_by(response) == ("models", "backup", "backup-model")
    # the first target is tried once (no retries while a fallback is left), then the next one
    assert [r.json["model"] for r in sent.of(main)] == ["main-model"]
    assert [r.json["model"] for r in sent.of(backup)] == ["backup-model"]
    assert sent.of(anth) == []
    # each provider gets its own key, never another's
    assert sent.of(main)[0].headers["authorization"] == f"Bearer {MAIN_KEY}"
    assert sent.of(backup)[0].headers["authorization"] == f"Bearer {BACKUP_KEY}"
    rec = record(proxy, response.headers["request-id"])
    assert {k: rec[k] for k in ("status", "route", "provider", "client_model", "upstream_model")} == {
        "status": 200,
        "route": "models",
        "provider": "backup",
        "client_model": "main-then-backup",
        "upstream_model": "backup-model",
    }
    assert rec["failed_attempts"] == [
        {
            "provider": "custom",
            "model": "main-model",
            "status": 503,
            "error_type": "overloaded_error",
            "error": "custom: upstream says 503",
        }
    ]
    assert "error_type" not in rec


def test_fallback_on_429_does_not_wait_for_retry_after(
    proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream
) -> None:
    main.enqueue(Json({"error": {"message": "slow down", "type": "rate_limit_error"}}, 429, {"Retry-After": "30"}))
    backup.enqueue(Stream([chunk("from ", role="assistant"), chunk("backup", finish_reason="stop"), usage_chunk(9, 2)]))
    sent = Sent(main, backup)
    started = time.monotonic()
    response = post(proxy, ask("main-then-backup", stream=True))
    assert response.status_code == 200
    assert time.monotonic() - started < 20  # a 30 s Retry-After was not slept (the request timeout is 20 s)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert served_by(response) == ("models", "backup", "backup-model")
    events = sse_events(response)
    assert streamed_text(events) == "from backup"
    assert events[-1] == {"type": "message_stop"}
    assert (len(sent.of(main)), len(sent.of(backup))) == (1, 1)
    assert sent.of(backup)[0].json["stream"] is True
    rec = record(proxy, response.headers["request-id"])
    assert (rec["provider"], rec["upstream_model"], rec["stream"], rec["output_tokens"]) == (
        "backup",
        "backup-model",
        True,
        2,
    )
    assert [(a["provider"], a["status"], a["error_type"]) for a in rec["failed_attempts"]] == [
        ("custom", 429, "rate_limit_error")
    ]


def test_fallback_on_refused_connection(proxy: ProxyServer, backup: FakeUpstream) -> None:
    sent = Sent(backup)
    response = post(proxy, ask("dead-then-backup"))
    assert response.status_code == 200, response.text
    assert served_by(response) == ("models", "backup", "backup-model")
    assert [r.json["model"] for r in sent.of(backup)] == ["backup-model"]
    rec = record(proxy, response.headers["request-id"])
    [failed] = rec["failed_attempts"]
    assert (failed["provider"], failed["model"], failed["status"], failed["error_type"]) == (
        "dead",
        "dead-model",
        502,
        "api_error",
    )
    assert "connection refused" in failed["error"]


def test_fallback_on_a_hang_past_the_read_timeout(proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream) -> None:
    main.enqueue(HangBeforeHeaders())
    sent = Sent(main, backup)
    response = post(proxy, ask("main-then-backup", stream=True))
    assert response.status_code == 200
    assert served_by(response) == ("models", "backup", "backup-model")
    assert streamed_text(sse_events(response)) == "echo: hello there"
    assert (len(sent.of(main)), len(sent.of(backup))) == (1, 1)
    hung = sent.of(main)[0].index
    deadline = time.monotonic() + 5
    while hung not in [index for index, _ in main.disconnects]:  # the proxy hung up on the silent provider
        assert time.monotonic() < deadline, "the proxy never closed the hung connection"
        time.sleep(0.02)
    rec = record(proxy, response.headers["request-id"])
    [failed] = rec["failed_attempts"]
    assert (failed["provider"], failed["status"]) == ("custom", 504)
    assert f"sent no response within {READ_TIMEOUT:g}s" in failed["error"]


def test_no_fallback_on_400(proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream) -> None:
    main.enqueue(Json({"error": {"message": "messages: bad role", "type": "invalid_request_error"}}, 400))
    sent = Sent(main, backup)
    response = post(proxy, ask("main-then-backup"))
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": "custom: messages: bad role"}
    assert served_by(response) == ("models", "custom", "main-model")
    assert sent.of(backup) == []
    rec = record(proxy, response.headers["request-id"])
    assert (rec["status"], rec["provider"], rec["upstream_model"], rec["error_type"]) == (
        400,
        "custom",
        "main-model",
        "invalid_request_error",
    )
    assert "failed_attempts" not in rec


def test_no_switch_after_the_first_byte(proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream) -> None:
    main.enqueue(Stream([chunk("partial ", role="assistant"), Reset()]))
    sent = Sent(main, backup)
    response = post(proxy, ask("main-then-backup", stream=True))
    assert response.status_code == 200
    assert served_by(response) == ("models", "custom", "main-model")
    events = sse_events(response)
    assert streamed_text(events) == "partial "
    assert events[-1]["type"] == "error"  # the break is reported, not papered over by another provider
    assert sent.of(backup) == []
    rec = record(proxy, response.headers["request-id"])
    assert (rec["provider"], rec["error_type"]) == ("custom", "api_error")
    assert "failed_attempts" not in rec


def test_the_last_target_keeps_the_retry_policy(proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream) -> None:
    main.enqueue(overloaded(502))
    backup.enqueue(overloaded(503), Json(completion("second try")))
    sent = Sent(main, backup)
    response = post(proxy, ask("main-then-backup"))
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "second try"
    assert (len(sent.of(main)), len(sent.of(backup))) == (1, 2)
    rec = record(proxy, response.headers["request-id"])
    assert [a["provider"] for a in rec["failed_attempts"]] == ["custom"]


def test_every_target_failing_returns_the_last_error(
    proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream
) -> None:
    main.enqueue(overloaded(503))
    backup.enqueue(overloaded(500), overloaded(500), overloaded(500))
    sent = Sent(main, backup)
    response = post(proxy, ask("main-then-backup"))
    assert response.status_code == 500
    assert response.json()["type"] == "error"
    assert response.json()["error"]["message"] == "backup: upstream says 500"
    assert served_by(response) == ("models", "backup", "backup-model")
    assert (len(sent.of(main)), len(sent.of(backup))) == (1, 3)
    rec = record(proxy, response.headers["request-id"])
    assert rec["status"] == 500
    assert [(a["provider"], a["status"]) for a in rec["failed_attempts"]] == [("custom", 503), ("backup", 500)]


# -- OpenAI-format ⇄ Anthropic passthrough ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_openai_target_falls_back_to_anthropic_passthrough(
    proxy: ProxyServer, main: FakeUpstream, anth: FakeUpstream, stream: bool
) -> None:
    main.enqueue(overloaded(503))
    sent = Sent(main, anth)
    body = ask("main-then-anth", stream=stream, system="be brief", temperature=0.3)
    response = post(proxy, body)
    assert response.status_code == 200, response.text
    assert served_by(response) == ("models", "anth", "claude-real-model")
    if stream:
        events = sse_events(response)
        assert streamed_text(events) == "anthropic claude-real-model"
        assert events[0]["message"]["id"] == "msg_fromanthropic01"  # relayed, not re-made
    else:
        assert response.json() == anthropic_message("anthropic claude-real-model", "claude-real-model")
    [translated] = sent.of(main)
    assert translated.path == "/v1/chat/completions"
    assert translated.json["messages"][0] == {"role": "system", "content": "be brief"}
    # the Anthropic target got the client's original body, untranslated, with only the model swapped
    [passed] = sent.of(anth)
    assert passed.path == "/v1/messages"
    assert passed.json == {**body, "model": "claude-real-model"}
    assert passed.headers["x-api-key"] == ANTH_KEY
    assert passed.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in passed.headers
    rec = record(proxy, response.headers["request-id"])
    assert (rec["provider"], rec["upstream_model"], rec["status"]) == ("anth", "claude-real-model", 200)
    assert [a["provider"] for a in rec["failed_attempts"]] == ["custom"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_anthropic_passthrough_falls_back_to_openai_target(
    proxy: ProxyServer, anth: FakeUpstream, backup: FakeUpstream, stream: bool
) -> None:
    anth.enqueue(Json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, 529))
    sent = Sent(anth, backup)
    response = post(proxy, ask("anth-then-backup", stream=stream, system="be brief"))
    assert response.status_code == 200, response.text
    assert served_by(response) == ("models", "backup", "backup-model")
    text = streamed_text(sse_events(response)) if stream else response.json()["content"][0]["text"]
    assert text == "echo: hello there"
    assert len(sent.of(anth)) == 1
    [translated] = sent.of(backup)
    assert translated.path == "/v1/chat/completions"
    assert translated.json["model"] == "backup-model"
    assert translated.json["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    assert translated.headers["authorization"] == f"Bearer {BACKUP_KEY}"
    rec = record(proxy, response.headers["request-id"])
    assert [(a["provider"], a["status"], a["error_type"]) for a in rec["failed_attempts"]] == [
        ("anth", 529, "overloaded_error")
    ]


def test_anthropic_errors_that_do_not_fall_back_come_back_unmodified(
    proxy: ProxyServer, anth: FakeUpstream, backup: FakeUpstream
) -> None:
    raw = {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 1 > 0"}}
    anth.enqueue(Json(raw, 400))
    sent = Sent(backup)
    response = post(proxy, ask("anth-then-backup"))
    assert response.status_code == 400
    assert response.json() == raw
    assert sent.of(backup) == []


def test_an_anthropic_error_passed_back_still_counts_against_the_provider(
    proxy: ProxyServer, anth: FakeUpstream
) -> None:
    def anth_state() -> dict[str, Any]:
        return requests.get(proxy.url + "/health", timeout=5).json()["providers"]["anth"]

    before = anth_state()["consecutive_failures"]
    raw = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    anth.enqueue(Json(raw, 529), Json(raw, 529), Json(raw, 529))
    response = post(proxy, ask("anth-only"))
    assert response.status_code == 529
    assert response.json() == raw  # Anthropic's own body, unmodified (Claude Code reads it)
    assert served_by(response) == ("models", "anth", "claude-real-model")
    assert anth_state()["consecutive_failures"] == before + 1
    assert post(proxy, ask("anth-only")).status_code == 200
    assert anth_state()["consecutive_failures"] == 0


# -- scenario routes on the wire --------------------------------------------------------------------------------------


def test_claude_code_fixture_takes_the_think_route(proxy: ProxyServer, main: FakeUpstream) -> None:
    body = json.loads((FIXTURES / "cc-2.1.197-tool-turn-2-tool-result.json").read_text())
    sent = Sent(main)
    response = post(proxy, body)
    assert response.status_code == 200
    assert served_by(response) == ("think", "custom", "think-model")
    assert streamed_text(sse_events(response)).startswith("echo: ")
    assert [r.json["model"] for r in sent.of(main)] == ["think-model"]
    assert record(proxy, response.headers["request-id"])["route"] == "think"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ask(HAIKU), ("background", "backup", "fast-model")),
        (
            ask("claude-sonnet-4-5", thinking={"type": "enabled", "budget_tokens": 1024}),
            ("think", "custom", "think-model"),
        ),
        (ask("claude-sonnet-4-5", "lorem ipsum dolor sit amet " * 15_000), ("long_context", "backup", "long-model")),
        (ask("claude-sonnet-4-5"), ("models", "custom", "main-model")),
        (ask("unmapped-model"), ("default", "custom", "unmapped-model")),
        (ask("backup,gpt-x", thinking={"type": "enabled", "budget_tokens": 1024}), ("client", "backup", "gpt-x")),
    ],
    ids=["background", "think", "long-context", "models", "default", "client"],
)
def test_scenarios_on_the_wire(
    proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream, body: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    sent = Sent(main, backup)
    response = post(proxy, body)
    assert response.status_code == 200, response.text
    assert served_by(response) == expected
    up = backup if expected[1] == "backup" else main
    assert [r.json["model"] for r in sent.of(up)] == [expected[2]]
    assert sent.of(main if up is backup else backup) == []
    assert response.json()["model"] == body["model"]  # the client sees its own name back
    rec = record(proxy, response.headers["request-id"])
    assert (rec["route"], rec["provider"], rec["upstream_model"]) == expected


def test_image_route_to_anthropic(proxy: ProxyServer, anth: FakeUpstream) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    body = ask("claude-sonnet-4-5")
    body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}]
    sent = Sent(anth)
    response = post(proxy, body)
    assert response.status_code == 200, response.text
    assert served_by(response) == ("image", "anth", "vision-model")
    assert sent.of(anth)[0].json["messages"] == body["messages"]


def test_count_tokens_is_asked_where_the_message_would_go(
    proxy: ProxyServer, main: FakeUpstream, anth: FakeUpstream
) -> None:
    sent = Sent(main, anth)
    headers = {"x-api-key": "client-key", "anthropic-version": "2023-06-01"}
    exact = requests.post(
        proxy.url + "/v1/messages/count_tokens", json={**ask("anth,claude-real-model")}, headers=headers, timeout=10
    )
    assert exact.status_code == 200
    assert exact.json() == {"input_tokens": 4242}
    [counted] = sent.of(anth)
    assert (counted.path, counted.json["model"], counted.headers["x-api-key"]) == (
        "/v1/messages/count_tokens",
        "claude-real-model",
        ANTH_KEY,
    )
    estimated = requests.post(
        proxy.url + "/v1/messages/count_tokens", json=ask("main-only"), headers=headers, timeout=10
    )
    assert estimated.status_code == 200
    assert 0 < estimated.json()["input_tokens"] < 100
    assert sent.of(main) == []  # an OpenAI-format target: a local estimate, nothing sent


# -- what the proxy tells about its providers -------------------------------------------------------------------------


def test_health_lists_each_provider_without_secrets(proxy: ProxyServer, main: FakeUpstream) -> None:
    response = requests.get(proxy.url + "/health", timeout=5)
    assert response.status_code == 200
    providers = response.json()["providers"]
    assert set(providers) == {"custom", "backup", "anth", "dead"}
    assert providers["custom"]["upstream"] == f"127.0.0.1:{main.port}"
    assert providers["anth"]["format"] == "anthropic"
    assert all(p["state"] in ("up", "cooling_down") for p in providers.values())
    assert all(p["api_key_configured"] is True for p in providers.values())
    for secret in SECRETS:
        assert secret not in response.text


def test_models_lists_the_client_visible_names(proxy: ProxyServer) -> None:
    # limit=1000: what Claude Code's model discovery asks for (Anthropic's default page is 20)
    response = requests.get(proxy.url + "/v1/models?limit=1000", headers={"x-api-key": "client-key"}, timeout=5)
    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert response.json()["has_more"] is False
    mapped = ["main-then-backup", "main-then-anth", "anth-then-backup", "dead-then-backup", "main-only", "anth-only"]
    assert ids[: len(mapped)] == mapped  # [models] names first, patterns are not names
    assert "claude-sonnet-*" not in ids and "*haiku*" not in ids
    # every configured target, in the "PROVIDER,MODEL" form a client may send
    for target in (
        "backup,backup-model",
        "anth,claude-real-model",
        "backup,long-model",
        "anth,vision-model",
        "default,think-model",
    ):
        assert target in ids
    assert ids[-2:] == ["fake-model-1", "fake-model-2"]  # then what the default provider lists
    assert len(ids) == len(set(ids))
    one = requests.get(proxy.url + "/v1/models/backup,anything", headers={"x-api-key": "k"}, timeout=5)
    assert one.status_code == 200
    assert one.json()["id"] == "backup,anything"


def test_model_discovery_for_claude_codes_picker(proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream) -> None:
    """Claude Code 2.1.332 (CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1) asks GET /v1/models?limit=1000 and keeps
    ids matching /(claude|anthropic)/i: every configured name and target is there, saying what serves it."""
    listing = requests.get(proxy.url + "/v1/models?limit=1000", headers={"x-api-key": "client-key"}, timeout=5)
    entries = {m["id"]: m["display_name"] for m in listing.json()["data"]}
    picker = {i: d for i, d in entries.items() if re.search("claude|anthropic", i, re.IGNORECASE)}
    # a [models] name, its chain spelled out
    assert picker["claude-proxy/main-then-backup"] == "main-then-backup → main-model on custom, then 1 fallback(s)"
    # a route target and a [models] target, under the prefix because their own names would be filtered out
    assert picker["claude-proxy/backup,subagent-model"] == "subagent-model on backup (route subagent)"
    assert picker["claude-proxy/default,think-model"] == "think-model on custom (route think)"
    # a target that already looks like Claude is listed as itself only
    assert picker["anth,claude-real-model"] == "claude-real-model on anth ([models] main-then-anth)"
    assert "claude-proxy/anth,claude-real-model" not in entries
    for name in ("main-then-backup", "main-only", "backup,backup-model", "backup,long-model", "dead,dead-model"):
        assert "claude-proxy/" + name in picker, name
    # picking one in /model sends its id as the model: the prefix is dropped and the target serves it
    sent = Sent(main, backup)
    response = post(proxy, ask("claude-proxy/backup,subagent-model"))
    assert response.status_code == 200, response.text
    assert served_by(response) == ("client", "backup", "subagent-model")
    assert response.json()["model"] == "claude-proxy/backup,subagent-model"
    response = post(proxy, ask("claude-proxy/main-then-backup"))
    assert served_by(response) == ("models", "custom", "main-model")
    assert [r.json["model"] for r in sent.of(backup)] == ["subagent-model"]
    assert [r.json["model"] for r in sent.of(main)] == ["main-model"]
    one = requests.get(proxy.url + "/v1/models/claude-proxy/main-only", headers={"x-api-key": "k"}, timeout=5)
    assert one.json() == {
        **one.json(),
        "id": "claude-proxy/main-only",
        "display_name": "main-only → main-model on custom",
    }


def test_models_page_like_anthropic(proxy: ProxyServer) -> None:
    def get(query: str) -> requests.Response:
        return requests.get(proxy.url + "/v1/models" + query, headers={"x-api-key": "client-key"}, timeout=5)

    ids = [m["id"] for m in get("?limit=1000").json()["data"]]
    assert len(ids) > 25
    first = get("").json()  # Anthropic's default page: 20
    assert [m["id"] for m in first["data"]] == ids[:20]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, ids[0], ids[19])
    nxt = get(f"?after_id={first['last_id']}&limit=5").json()
    assert [m["id"] for m in nxt["data"]] == ids[20:25]
    last = get(f"?after_id={ids[-3]}").json()
    assert ([m["id"] for m in last["data"]], last["has_more"]) == (ids[-2:], False)
    # before_id: the page just before the cursor, has_more when more lie before it
    back = get(f"?before_id={ids[10]}&limit=4").json()
    assert ([m["id"] for m in back["data"]], back["has_more"]) == (ids[6:10], True)
    back = get(f"?before_id={ids[3]}&limit=4").json()
    assert ([m["id"] for m in back["data"]], back["has_more"], back["first_id"]) == (ids[:3], False, ids[0])
    # the official SDK pages through all of it with the default page size
    with anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=10) as client:
        assert [m.id for m in client.models.list()] == ids
    for query, needle in (
        ("?limit=0", "limit: must be an integer from 1 to 1000"),
        ("?limit=1001", "limit: must be an integer from 1 to 1000"),
        ("?limit=x", "limit: must be an integer from 1 to 1000"),
        ("?after_id=nope", "after_id: no model with id 'nope'"),
        (f"?after_id={ids[0]}&before_id={ids[5]}", "cannot be used together"),
    ):
        response = get(query)
        assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
        assert needle in response.json()["error"]["message"]


def test_metrics_carry_the_route_and_provider(proxy: ProxyServer, main: FakeUpstream) -> None:
    main.enqueue(overloaded(503))
    assert post(proxy, ask("main-then-backup")).status_code == 200
    response = requests.get(proxy.url + "/metrics", timeout=5)
    assert response.status_code == 200
    text = response.text
    requests_lines = [line for line in text.splitlines() if line.startswith("claude_proxy_requests_total{")]
    assert any(
        'provider="backup"' in line
        and 'route="models"' in line
        and 'upstream_model="backup-model"' in line
        and 'client_model="main-then-backup"' in line
        for line in requests_lines
    ), requests_lines
    assert any(
        line.startswith("claude_proxy_upstream_errors_total{") and 'provider="custom"' in line
        for line in text.splitlines()
    )


# -- cool-down ---------------------------------------------------------------------------------------------------------


def test_cooldown_skips_a_dead_provider_and_recovers(
    main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream
) -> None:
    with FakeUpstream() as flaky:
        flaky.handler = lambda req: overloaded(503)
        config = copy.deepcopy(routing_config(main, backup, anth, cooldown_failures=2, cooldown_seconds=1.5))
        config["providers"]["flaky"] = {"base_url": flaky.url, "api_key": "sk-flaky-key-000000005"}
        config["models"] = {"flaky-then-backup": ["flaky,flaky-model", "backup,backup-model"]}
        with ProxyServer(config, workers=1) as server:

            def health() -> dict[str, Any]:
                return requests.get(server.url + "/health", timeout=5).json()["providers"]["flaky"]

            for n in (1, 2):  # two failures in a row → cooling down
                response = post(server, ask("flaky-then-backup"))
                assert served_by(response) == ("models", "backup", "backup-model")
                assert len(flaky.requests) == n
            state = health()
            assert state["state"] == "cooling_down"
            assert state["consecutive_failures"] == 2
            assert 0 < state["cooldown_remaining_s"] <= 1.5

            # while it cools, the chain skips it: no request reaches it, no failed attempt is logged
            response = post(server, ask("flaky-then-backup"))
            assert served_by(response) == ("models", "backup", "backup-model")
            assert len(flaky.requests) == 2
            assert "failed_attempts" not in record(server, response.headers["request-id"])

            # the provider comes back; once the cool-down is over it is asked again and serves
            flaky.handler = None
            deadline = time.monotonic() + 10
            while health()["state"] != "up":
                assert time.monotonic() < deadline, "the cool-down never ended"
                time.sleep(0.1)
            response = post(server, ask("flaky-then-backup"))
            assert served_by(response) == ("models", "flaky", "flaky-model")
            assert response.json()["content"][0]["text"] == "echo: hello there"
            assert len(flaky.requests) == 3
            state = health()
            assert (state["state"], state["consecutive_failures"]) == ("up", 0)


def test_sdk_sees_a_fallback_as_an_ordinary_answer(proxy: ProxyServer, main: FakeUpstream) -> None:
    main.enqueue(overloaded(503))
    client = anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=20)
    with client.messages.stream(
        model="main-then-backup", max_tokens=100, messages=[{"role": "user", "content": "hi sdk"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: hi sdk"
    assert final.model == "main-then-backup"
    assert final.stop_reason == "end_turn"


def test_fallback_on_an_error_inside_a_200(
    proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream
) -> None:
    # OpenRouter can answer 200 with choices[0].error: that is the provider failing, like a 5xx
    main.enqueue(
        Json(
            {
                "id": "gen-1",
                "choices": [{"index": 0, "error": {"code": 502, "message": "provider down"}, "finish_reason": "error"}],
            }
        )
    )
    sent = Sent(main, backup, anth)
    response = post(proxy, ask("main-then-backup"))
    assert response.status_code == 200, response.text
    assert served_by(response) == ("models", "backup", "backup-model")
    assert len(sent.of(main)) == 1 and len(sent.of(backup)) == 1
    rec = record(proxy, response.headers["request-id"])
    assert rec["failed_attempts"][0]["status"] == 502
    assert "provider down" in rec["failed_attempts"][0]["error"]


@pytest.mark.parametrize(
    "first",
    [
        {
            "id": "gen-1",
            "object": "chat.completion.chunk",  # OpenRouter
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": ""},
                    "finish_reason": "error",
                    "error": {"code": 502, "message": "provider down"},
                }
            ],
        },
        {"error": {"message": "provider down: engine restarting", "type": "ServiceUnavailableError", "code": 503}},
    ],
)
def test_fallback_on_an_error_as_the_first_stream_event(
    proxy: ProxyServer, main: FakeUpstream, backup: FakeUpstream, first: dict[str, Any]
) -> None:
    # a 200 stream whose first event is an error is that error: the chain moves on, the client sees one clean stream
    main.enqueue(Stream([first], done=False))
    sent = Sent(main, backup)
    response = post(proxy, ask("main-then-backup", stream=True))
    assert response.status_code == 200, response.text
    assert served_by(response) == ("models", "backup", "backup-model")
    events = sse_events(response)
    assert streamed_text(events) == "echo: hello there"
    assert [e["type"] for e in events if e["type"] == "error"] == []
    assert len(sent.of(main)) == 1 and len(sent.of(backup)) == 1
    rec = record(proxy, response.headers["request-id"])
    assert rec["failed_attempts"][0]["status"] in (502, 503)
    assert "provider down" in rec["failed_attempts"][0]["error"]


# -- routes by what Claude Code says a request is --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "route", "provider", "model"),
    [
        ({"x-claude-code-agent-id": "acf67b0dee30cb2b7"}, "subagent", "backup", "subagent-model"),
        (
            {"X-Claude-Code-Request-Class": "subagent", "x-claude-code-agent-id": "a2"},
            "subagent",
            "backup",
            "subagent-model",
        ),
        ({"x-claude-code-request-class": "auxiliary"}, "auxiliary", "backup", "aux-model"),  # dead first: falls back
        (
            {"x-claude-code-request-class": "compaction", "x-claude-code-compaction": "manual"},
            "compaction",
            "custom",
            "main-compaction-model",
        ),
        ({"x-claude-code-request-class": "main"}, "think", "custom", "think-model"),
    ],
)
def test_routes_by_claude_codes_request_class(
    proxy: ProxyServer,
    main: FakeUpstream,
    backup: FakeUpstream,
    headers: dict[str, str],
    route: str,
    provider: str,
    model: str,
) -> None:
    # Claude Code 2.1.332 sends side requests on the main model name: only its headers tell them apart
    body = ask("claude-opus-5-5", stream=True, thinking={"type": "adaptive"})
    sent = Sent(main, backup)
    response = post(
        proxy, body, headers={**headers, "x-claude-code-session-id": "s-1", "x-claude-code-prompt-id": "p-1"}
    )
    assert response.status_code == 200, response.text
    assert served_by(response) == (route, provider, model)
    assert streamed_text(sse_events(response)) == "echo: hello there"
    upstream_for = {"backup": backup, "custom": main}[provider]
    assert [r.json["model"] for r in sent.of(upstream_for)] == [model]
    rec = record(proxy, response.headers["request-id"])
    assert (rec["route"], rec["session_id"], rec["prompt_id"]) == (route, "s-1", "p-1")


# -- a chain's missing key and its one deadline -------------------------------------------------------------------


def test_a_provider_without_a_key_is_skipped_in_a_chain(
    main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream
) -> None:
    config = routing_config(main, backup, anth)
    config["providers"]["keyless"] = {
        "name": "groq",
        "base_url": main.url,
        "api_key_env": "CLAUDE_PROXY_TEST_UNSET_KEY_VAR",
    }
    config["models"]["keyless-then-backup"] = ["keyless,keyless-model", "backup,backup-model"]
    config["models"]["keyless-only"] = "keyless,keyless-model"
    with ProxyServer(config) as server:
        sent = Sent(main, backup)
        for _ in range(2):
            response = post(server, ask("keyless-then-backup"))
            assert response.status_code == 200, response.text
            assert served_by(response) == ("models", "backup", "backup-model")
        assert (len(sent.of(main)), len(sent.of(backup))) == (0, 2)  # never sent without its key
        assert "failed_attempts" not in record(server, response.headers["request-id"])  # not the provider's fault
        # one log line per provider and process, naming the variable to set
        assert server.output().count("skipping keyless in fallback chains") in (1, 2)  # once per worker at most
        assert "CLAUDE_PROXY_TEST_UNSET_KEY_VAR" in server.output()
        # the last (here: only) target without a key is still the client's answer: 401 saying what to set
        response = post(server, ask("keyless-only"))
        assert response.status_code == 401
        assert "CLAUDE_PROXY_TEST_UNSET_KEY_VAR" in response.json()["error"]["message"]


def test_a_chain_shares_one_deadline(main: FakeUpstream, backup: FakeUpstream, anth: FakeUpstream) -> None:
    """`[upstream] timeout` bounds the whole chain: a hung first target leaves the second the rest, not a new one."""
    config = routing_config(main, backup, anth)
    config["upstream"] = {**config["upstream"], "timeout": 2.5, "read_timeout": 2.0, "max_retries": 0}
    with ProxyServer(config) as server:
        main.enqueue(HangBeforeHeaders())
        backup.enqueue(HangBeforeHeaders())
        started = time.monotonic()
        response = post(server, ask("main-then-backup"))
        took = time.monotonic() - started
        assert response.status_code == 504, response.text
        # each target alone may wait 2 s; with a deadline per target the chain would take ~4 s
        assert took < 3.5, took
        rec = record(server, response.headers["request-id"])
        assert [a["provider"] for a in rec["failed_attempts"]] == ["custom", "backup"]
