"""The `thread` refusal the official SDKs recover from (issue 15)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from claude_proxy.translate.errors import thread_refusal

BASE: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("thread", [{"type": "create"}, {"type": "continue", "previous_message_id": "msg_1"}])
def test_threads_are_refused_with_the_recoverable_details(thread: dict[str, Any]) -> None:
    refusal = thread_refusal({**BASE, "thread": thread})
    assert refusal is not None
    assert refusal["type"] == "error"
    assert refusal["error"]["type"] == "invalid_request_error"
    assert refusal["error"]["details"] == {"error_code": "thread_unsupported_request", "unsupported": ["thread"]}


@pytest.mark.parametrize("body", [BASE, {**BASE, "thread": None}, {**BASE, "thread": {"type": "other"}}, [], "x"])
def test_requests_without_a_thread_are_not_refused(body: Any) -> None:
    assert thread_refusal(body) is None


def test_the_python_sdks_thread_state_recovers_from_it() -> None:
    """Run the SDK's own recovery decision on our envelope (no network: the decision is pure)."""
    threads = pytest.importorskip("anthropic.lib.threads._thread_state")
    refusal = thread_refusal({**BASE, "thread": {"type": "create"}})
    error = SimpleNamespace(body=refusal)  # the SDK reads only `body` of the APIStatusError
    assert threads._unsupported_features(error) == ["thread"]
    assert threads._replay_reason(error) is None  # not mistaken for a lost thread to replay
