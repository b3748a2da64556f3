"""Prompt caching and cost through the running proxy: a session sticks to the target that served it,
the provider's cache key / affinity header and breakpoints reach the upstream, and each request's cost
lands in the journal and /metrics (unpriced models counted as unpriced, never as zero)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.fixtures import CLAUDE_CODE_FIXTURES
from tests.support.proxy_server import CLOSE, ProxyServer
from tests.support.upstream import FakeUpstream, Json, completion

pytestmark = pytest.mark.e2e

MAIN_KEY = "sk-main-upstream-key-000000011"
BACKUP_KEY = "sk-backup-upstream-key-0000022"


@pytest.fixture(scope="module")
def main() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def post(server: ProxyServer, session: str | None, model: str = "claude-sonnet-5", **extra: Any) -> requests.Response:
    headers = {"anthropic-version": "2023-06-01", **CLOSE}
    if session:
        headers["x-claude-code-session-id"] = session
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], **extra}
    return requests.post(server.url + "/v1/messages", json=body, headers=headers, timeout=20)


def overloaded() -> Json:
    return Json({"error": {"message": "busy", "type": "server_error"}}, 503)


def test_a_session_sticks_to_the_target_that_served_it(main: FakeUpstream, backup: FakeUpstream) -> None:
    config = {
        "provider": {"name": "custom", "base_url": main.url, "api_key": MAIN_KEY},
        "providers": {"backup": {"base_url": backup.url, "api_key": BACKUP_KEY}},
        "models": {"claude-*": ["main-model", "backup,backup-model"]},
        "routing": {"cooldown_failures": 1000},  # main never cools down: only stickiness keeps s1 away
        "upstream": {"max_retries": 0},
    }
    with ProxyServer(config, workers=1) as server:
        main.enqueue(overloaded())
        first = post(server, "s1")
        assert first.headers["x-claude-proxy-provider"] == "backup"  # main failed once
        for _ in range(3):  # main is healthy again, but s1's cache is warm on backup
            again = post(server, "s1")
            assert again.headers["x-claude-proxy-provider"] == "backup"
        assert post(server, "s2").headers["x-claude-proxy-provider"] == "custom"  # another session: chain order
        assert post(server, None).headers["x-claude-proxy-provider"] == "custom"  # no session: chain order
        backup.enqueue(overloaded())
        moved = post(server, "s1")  # its sticky target failed: the chain moves on, and it sticks there now
        assert moved.headers["x-claude-proxy-provider"] == "custom"
        assert post(server, "s1").headers["x-claude-proxy-provider"] == "custom"


def _capture(name: str) -> dict[str, Any]:
    data = json.loads((CLAUDE_CODE_FIXTURES / name).read_text())
    return data.get("body", data)


@pytest.mark.parametrize(
    ("preset", "expect_header", "expect_body_key"),
    [("openrouter", "x-session-id", None), ("openai", None, "prompt_cache_key"), ("grok", "x-grok-conv-id", None)],
)
def test_the_providers_cache_handle_reaches_the_upstream(
    main: FakeUpstream, preset: str, expect_header: str | None, expect_body_key: str | None
) -> None:
    config = {"provider": {"name": preset, "base_url": main.url, "api_key": MAIN_KEY}}
    body = _capture("cc-2.1.332-print-cache-1h.json")
    body["stream"] = False
    with ProxyServer(config) as server:
        before = len(main.requests)
        headers = {"anthropic-version": "2023-06-01", "x-claude-code-session-id": "sess-abc-123", **CLOSE}
        for _ in range(2):
            response = requests.post(server.url + "/v1/messages", json=body, headers=headers, timeout=30)
            assert response.status_code == 200, response.text
        sent = main.requests[before:]
        assert len(sent) == 2
        if expect_header:
            values = {r.headers[expect_header] for r in sent}
            assert len(values) == 1 and "sess-abc-123" not in next(iter(values))  # stable, and never the raw id
        if expect_body_key:
            values = {r.json[expect_body_key] for r in sent}
            assert len(values) == 1 and "sess-abc-123" not in next(iter(values))
        raw = sent[0].body.decode()
        assert ("cache_control" in raw) == (preset == "openrouter")  # breakpoints only where honoured


def test_cost_in_the_journal_and_metrics(main: FakeUpstream) -> None:
    config = {
        "provider": {"name": "custom", "base_url": main.url, "api_key": MAIN_KEY},
        "models": {"claude-sonnet-*": "priced-model", "claude-haiku-*": "free-lunch-model"},
        # USD per million tokens: 1000 in + 500 out => 3.00*1000/1e6 + 15.00*500/1e6 = 0.0105
        "prices": {"priced-model": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}},
    }
    with ProxyServer(config) as server:
        for _ in range(3):
            main.enqueue(Json(completion("ok", prompt_tokens=1000, completion_tokens=500)))
            assert post(server, "s", model="claude-sonnet-5").status_code == 200
        main.enqueue(Json(completion("ok", prompt_tokens=1000, completion_tokens=500)))
        assert post(server, "s", model="claude-haiku-4-5").status_code == 200
        records = [r for r in server.journal() if r.get("endpoint") == "messages"]
        priced = [r for r in records if r["upstream_model"] == "priced-model"]
        assert [r["cost_usd"] for r in priced] == [0.0105] * 3
        assert all(r["cost_unpriced"] is False for r in priced)
        [unpriced] = [r for r in records if r["upstream_model"] == "free-lunch-model"]
        assert unpriced["cost_unpriced"] is True and "cost_usd" not in unpriced
        text = requests.get(server.url + "/metrics", timeout=5).text
        cost = [line for line in text.splitlines() if line.startswith("claude_proxy_cost_usd_total{")]
        assert any('upstream_model="priced-model"' in line and line.endswith(" 0.0315") for line in cost), cost
        assert any(line.startswith("claude_proxy_unpriced_requests_total{") for line in text.splitlines())
