"""The self-check: on libraries that differ from what the fast path was written against, it turns
itself off with one log line and the proxy keeps answering through the public API."""

from __future__ import annotations

import http.client
import logging
import time
from collections.abc import Iterator

import pytest
import urllib3
from urllib3.connectionpool import HTTPConnectionPool

from claude_proxy.config.loader import ProviderConfig, RetryPolicy, Timeouts
from claude_proxy.translate.dialect import Dialect
from claude_proxy.upstream import fastpath
from claude_proxy.upstream.client import PING, Upstream
from tests.support.upstream import FakeUpstream, Json, Sleep, Stream, chunk


@pytest.fixture(autouse=True)
def fresh_check() -> Iterator[None]:
    fastpath.available.cache_clear()
    yield
    fastpath.available.cache_clear()  # the next test sees the real libraries again


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def make(up: FakeUpstream) -> Upstream:
    provider = ProviderConfig(name="custom", base_url=up.url, format="openai", dialect=Dialect(), api_key="sk-test")
    return Upstream(provider, Timeouts(connect=2, read=5, total=30, ping_interval=0.1), RetryPolicy(0), fast_paths=True)


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "claude_proxy.upstream" and r.levelno >= logging.WARNING]


def test_the_installed_libraries_pass() -> None:
    assert fastpath.problems() == []
    assert fastpath.available()


def test_an_old_urllib3_turns_the_fast_path_off_with_one_line_and_requests_are_still_served(
    up: FakeUpstream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib3, "__version__", "1.26.20")
    caplog.set_level(logging.INFO, logger="claude_proxy.upstream")
    first, second = make(up), make(up)  # checked once per process, not per Upstream
    assert first.fast is None and second.fast is None
    [line] = warnings(caplog)
    assert "fast paths off" in line.getMessage() and "urllib3 1.26.20" in line.getMessage()

    up.enqueue(Stream([chunk(content="Hel"), Sleep(0.35), chunk(content="lo", finish_reason="stop")]))
    response = first.post_json("/chat/completions", b'{"stream":true}', stream=True)
    pieces = list(first.iter_body(response, time.monotonic() + 10))
    text = b"".join(p for p in pieces if p is not PING)
    assert b'"Hel"' in text and b'"lo"' in text and text.endswith(b"data: [DONE]\n\n")
    assert PING in pieces  # silence still becomes pings on the public path
    first.release(response)
    up.enqueue(Json({"ok": True}))
    assert first.read(first.post_json("/chat/completions", b"{}"), time.monotonic() + 5) == b'{"ok": true}'
    assert up.connections_total == 1
    assert len(warnings(caplog)) == 1


def test_a_missing_private_is_named(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delattr(HTTPConnectionPool, "ConnectionCls")
    assert fastpath.problems() == ["urllib3 HTTPConnectionPool.ConnectionCls"]
    assert not fastpath.available()
    assert len(warnings(caplog)) == 1


def test_a_check_that_cannot_run_is_a_mismatch_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("a changed constructor")

    monkeypatch.setattr(urllib3, "HTTPResponse", broken)
    assert any("HTTPResponse._fp" in p for p in fastpath.problems())


def test_begin_that_no_longer_reads_a_global_parse_headers_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def begin(self: http.client.HTTPResponse) -> None:  # a rewritten begin that parses headers some other way
        return None

    monkeypatch.setattr(http.client.HTTPResponse, "begin", begin)
    assert "http.client.HTTPResponse.begin looks up a global parse_headers" in fastpath.problems()


def test_switched_off_the_check_does_not_run_or_log(
    up: FakeUpstream, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib3, "__version__", "1.26.20")
    provider = ProviderConfig(name="custom", base_url=up.url, format="openai", dialect=Dialect(), api_key="sk-test")
    assert Upstream(provider, fast_paths=False).fast is None
    assert warnings(caplog) == []
