"""Fault injection: the real proxy (gunicorn) against a real local upstream that misbehaves.

Each scenario checks what the client is told (a status + Anthropic envelope before the
stream, an `error` event after it), that the worker let go of the upstream connection, and
that the very next request succeeds. A few tests drive `Upstream` directly to see the
retry schedule (backoff, jitter, Retry-After) without waiting for it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any

import anthropic
import pytest
import requests

from claude_proxy.config.loader import RetryPolicy, Timeouts, load_config
from claude_proxy.errors import UpstreamHTTPError, UpstreamUnavailable
from claude_proxy.upstream.client import Upstream
from tests.conftest import UPSTREAM_KEY, proxy_config
from tests.support.grammar import check_grammar
from tests.support.proxy_server import ProxyServer
from tests.support.sse_client import (
    assert_envelope,
    message_body,
    parse_sse,
    post_messages,
    stream_events,
    text_of,
)
from tests.support.upstream import (
    Close,
    FakeUpstream,
    Hang,
    HangBeforeHeaders,
    Json,
    Reset,
    ResetBeforeHeaders,
    Sleep,
    Stream,
    Text,
    chunk,
    completion,
    free_port,
    usage_chunk,
)

pytestmark = pytest.mark.e2e

READ_TIMEOUT = 1.0
TOTAL_TIMEOUT = 3.0
FAULTS = {
    "upstream": {
        "max_retries": 2,
        "retry_base_delay": 0.05,
        "retry_max_delay": 1.5,
        "read_timeout": READ_TIMEOUT,
        "timeout": TOTAL_TIMEOUT,
        "connect_timeout": 1.0,
    },
    "server": {"ping_interval": 0.3},
}


def fault_config(upstream: FakeUpstream) -> dict[str, Any]:
    """The shared test config with short timeouts (merged by hand: `upstream` is also a parameter name)."""
    config = proxy_config(upstream)
    for table, values in FAULTS.items():
        config[table] = {**config[table], **values}
    return config


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream) -> Iterator[ProxyServer]:
    """One worker, so every scenario and its follow-up request hit the same process."""
    with ProxyServer(fault_config(upstream), workers=1, threads=16) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_queue(upstream: FakeUpstream) -> Iterator[None]:
    yield
    assert upstream.pending == 0, "a scripted response was not consumed"
    assert not upstream.errors, upstream.errors


def assert_recovers(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    """The worker serves the next requests normally, streamed and not."""
    status, events, _ = stream_events(proxy.url, message_body(stream=True, text="are you ok"))
    assert status == 200
    assert check_grammar(events).ending == "message"
    assert text_of(events) == "echo: are you ok"
    response = post_messages(proxy.url, message_body(text="still there"))
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "echo: still there"


def error_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    outcome = check_grammar(events)
    assert outcome.ending == "error", events[-3:]
    assert outcome.error is not None
    return outcome.error["error"]


def worker_pids(server: ProxyServer) -> list[int]:
    assert server.process is not None
    with open(f"/proc/{server.process.pid}/task/{server.process.pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fds_settle(pid: int, limit: int, timeout: float = 5.0) -> int:
    """The worker's open file count once closed client connections have been reaped (at most `timeout`)."""
    deadline = time.monotonic() + timeout
    while (count := open_fds(pid)) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


# -- the retry schedule, seen from Upstream itself -----------------------------------------


def direct(upstream: FakeUpstream, **retry: Any) -> tuple[Upstream, list[float]]:
    sleeps: list[float] = []
    config = load_config(data={"provider": {"name": "custom", "base_url": upstream.url, "api_key": UPSTREAM_KEY}})
    policy = RetryPolicy(**{"max_retries": 2, "base_delay": 0.1, "max_delay": 1.0, **retry})
    return Upstream(config.provider, Timeouts(connect=1, read=2, total=30), policy, sleep=sleeps.append), sleeps


def busy(status: int = 503, **headers: str) -> Json:
    return Json({"error": {"message": f"busy {status}", "type": "server_error"}}, status=status, headers=headers)


def test_backoff_is_exponential_with_jitter_and_capped(upstream: FakeUpstream) -> None:
    client, sleeps = direct(upstream, max_retries=4, base_delay=0.1, max_delay=0.35)
    upstream.enqueue(*[busy()] * 5)
    with pytest.raises(UpstreamHTTPError) as info:
        client.post_json("/chat/completions", b"{}")
    assert info.value.status == 503 and info.value.message.endswith("busy 503")
    assert len(sleeps) == 4  # 5 attempts in all
    assert 0.1 <= sleeps[0] <= 0.2  # base, plus up to base of jitter
    assert 0.2 <= sleeps[1] <= 0.3
    assert sleeps[2] == pytest.approx(0.35) and sleeps[3] == pytest.approx(0.35)  # capped, jitter included


def test_jitter_spreads_the_delays(upstream: FakeUpstream) -> None:
    client, sleeps = direct(upstream, max_retries=1, base_delay=0.1, max_delay=5.0)
    for _ in range(12):
        upstream.enqueue(busy(), Json(completion("ok")))
        client.read(client.post_json("/chat/completions", b"{}"), time.monotonic() + 5)
    assert len(sleeps) == 12 and len(set(sleeps)) > 6 and all(0.1 <= s <= 0.2 for s in sleeps)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "0.7"}, 0.7),
        ({"Retry-After": "1"}, 1.0),
        ({"retry-after-ms": "250", "Retry-After": "1"}, 0.25),
        ({"Retry-After": "0"}, 0.0),
    ],
)
def test_retry_after_is_honoured(upstream: FakeUpstream, headers: dict[str, str], expected: float) -> None:
    client, sleeps = direct(upstream, max_delay=2.0)
    upstream.enqueue(busy(429, **headers), Json(completion("ok")))
    client.read(client.post_json("/chat/completions", b"{}"), time.monotonic() + 5)
    assert sleeps == [pytest.approx(expected)]


def test_retry_after_as_http_date(upstream: FakeUpstream) -> None:
    client, sleeps = direct(upstream, max_delay=5.0)
    upstream.enqueue(busy(503, **{"Retry-After": formatdate(time.time() + 3, usegmt=True)}), Json(completion("ok")))
    client.read(client.post_json("/chat/completions", b"{}"), time.monotonic() + 5)
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 3.0


def test_retry_after_beyond_the_cap_is_handed_to_the_client(upstream: FakeUpstream) -> None:
    """Waiting less than asked would only earn another 429: the client gets it, and the header, now."""
    client, sleeps = direct(upstream, max_delay=2.0)
    before = len(upstream.requests)
    upstream.enqueue(busy(429, **{"Retry-After": "30"}))
    with pytest.raises(UpstreamHTTPError) as info:
        client.post_json("/chat/completions", b"{}")
    assert sleeps == [] and len(upstream.requests) - before == 1
    assert info.value.status == 429 and info.value.headers["retry-after"] == "30"


def test_x_should_retry_false_is_respected(upstream: FakeUpstream) -> None:
    client, sleeps = direct(upstream)
    upstream.enqueue(busy(503, **{"x-should-retry": "false"}))
    with pytest.raises(UpstreamHTTPError):
        client.post_json("/chat/completions", b"{}")
    assert sleeps == []


def test_no_retry_that_would_pass_the_deadline(upstream: FakeUpstream) -> None:
    client, sleeps = direct(upstream, max_delay=10.0)
    upstream.enqueue(busy(503, **{"Retry-After": "5"}))
    with pytest.raises(UpstreamHTTPError) as info:
        client.post_json("/chat/completions", b"{}", deadline=time.monotonic() + 2)
    assert sleeps == [] and info.value.status == 503


def test_529_is_retried_for_anthropic_passthrough_only(upstream: FakeUpstream) -> None:
    client, sleeps = direct(upstream)
    upstream.enqueue(busy(529))
    with pytest.raises(UpstreamHTTPError):
        client.post_json("/chat/completions", b"{}")
    assert sleeps == []
    config = load_config(
        data={"provider": {"name": "custom", "base_url": upstream.origin, "format": "anthropic", "api_key": "k"}}
    )
    sleeps2: list[float] = []
    anthropic = Upstream(config.provider, retry=RetryPolicy(base_delay=0.01), sleep=sleeps2.append)
    upstream.enqueue(busy(529), Json({"type": "message"}))
    anthropic.read(anthropic.post_json("/v1/messages", b"{}"), time.monotonic() + 5)
    assert len(sleeps2) == 1


def test_errors_carry_no_url_nor_chained_exception() -> None:
    config = load_config(
        data={"provider": {"name": "custom", "base_url": f"http://user:hunter2pass@127.0.0.1:{free_port()}/v1"}}
    )
    client = Upstream(config.provider, retry=RetryPolicy(max_retries=0))
    with pytest.raises(UpstreamUnavailable) as info:
        client.post_json("/chat/completions", b"{}")
    assert "connection refused" in info.value.message
    assert "hunter2pass" not in info.value.message and "chat/completions" not in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__


# -- the real server --------------------------------------------------------------------------


class Relay:
    """A TCP port that refuses connections until opened, then forwards them to a target port."""

    def __init__(self, target: int) -> None:
        self.port = free_port()
        self.target = target
        self.listener: socket.socket | None = None

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_connection_refused_then_the_upstream_comes_back(upstream: FakeUpstream) -> None:
    relay = Relay(upstream.port)
    config = fault_config(upstream)
    config["provider"] = {**config["provider"], "base_url": f"http://127.0.0.1:{relay.port}/v1"}
    with ProxyServer(config, workers=1, threads=8) as server:
        (worker,) = worker_pids(server)
        for stream in (False, True, False):
            response = post_messages(server.url, message_body(stream=stream))
            message = assert_envelope(response, 502, "api_error")
            assert "connection refused" in message and "custom" in message
            del response  # its socket would stay open until collected
        fds = fds_settle(worker, 0, timeout=0.5)  # after the first requests: metrics files are opened lazily
        with ThreadPoolExecutor(8) as pool:  # a crowd at a dead upstream leaves nothing behind
            statuses = list(pool.map(lambda _: post_messages(server.url, message_body()).status_code, range(16)))
        assert statuses == [502] * 16
        assert fds_settle(worker, fds) <= fds
        relay.open()
        try:
            assert_recovers(server, upstream)
        finally:
            relay.close()


@pytest.mark.parametrize("stream", [False, True])
def test_reset_before_headers_is_retried(proxy: ProxyServer, upstream: FakeUpstream, stream: bool) -> None:
    before = len(upstream.requests)
    upstream.enqueue(ResetBeforeHeaders(), ResetBeforeHeaders())
    if stream:
        status, events, _ = stream_events(proxy.url)
        assert status == 200 and check_grammar(events).ending == "message"
        assert text_of(events) == "echo: hello there"
    else:
        response = post_messages(proxy.url, message_body())
        assert response.json()["content"][0]["text"] == "echo: hello there"
    assert len(upstream.requests) - before == 3
    assert_recovers(proxy, upstream)


@pytest.mark.parametrize("stream", [False, True])
def test_reset_on_every_attempt_is_a_502(proxy: ProxyServer, upstream: FakeUpstream, stream: bool) -> None:
    before = len(upstream.requests)
    upstream.enqueue(ResetBeforeHeaders(), ResetBeforeHeaders(), ResetBeforeHeaders())
    message = assert_envelope(post_messages(proxy.url, message_body(stream=stream)), 502, "api_error")
    assert "connection" in message
    assert len(upstream.requests) - before == 3
    assert_recovers(proxy, upstream)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
@pytest.mark.parametrize("stream", [False, True])
def test_retryable_status_then_success(proxy: ProxyServer, upstream: FakeUpstream, status: int, stream: bool) -> None:
    before = len(upstream.requests)
    upstream.enqueue(busy(status))
    if stream:
        code, events, _ = stream_events(proxy.url)
        assert code == 200 and text_of(events) == "echo: hello there"
    else:
        assert post_messages(proxy.url, message_body()).json()["content"][0]["text"] == "echo: hello there"
    assert len(upstream.requests) - before == 2


@pytest.mark.parametrize(
    ("status", "error_type"), [(429, "rate_limit_error"), (500, "api_error"), (503, "overloaded_error")]
)
@pytest.mark.parametrize("stream", [False, True])
def test_final_failure_keeps_the_upstream_status_and_message(
    proxy: ProxyServer, upstream: FakeUpstream, status: int, error_type: str, stream: bool
) -> None:
    before = len(upstream.requests)
    upstream.enqueue(busy(status), busy(status), busy(status))
    message = assert_envelope(post_messages(proxy.url, message_body(stream=stream)), status, error_type)
    assert message == f"custom: busy {status}"
    assert len(upstream.requests) - before == 3  # default: 2 retries, 3 attempts in all
    assert_recovers(proxy, upstream)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_are_not_retried(proxy: ProxyServer, upstream: FakeUpstream, status: int) -> None:
    before = len(upstream.requests)
    upstream.enqueue(Json({"error": {"message": "nope"}}, status=status))
    response = post_messages(proxy.url, message_body(stream=True))
    assert response.status_code == status and response.json()["error"]["message"] == "custom: nope"
    assert len(upstream.requests) - before == 1


def test_429_retry_after_is_waited_for(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    upstream.enqueue(busy(429, **{"Retry-After": "1"}))
    status, events, _ = stream_events(proxy.url)
    assert status == 200 and check_grammar(events).ending == "message"
    first, second = upstream.requests[before:]
    assert second.time - first.time >= 0.95


def test_429_retry_after_beyond_the_cap_reaches_the_client(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    before = len(upstream.requests)
    upstream.enqueue(busy(429, **{"Retry-After": "20"}))
    response = post_messages(proxy.url, message_body(stream=True))
    assert_envelope(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == "20"
    assert len(upstream.requests) - before == 1


@pytest.mark.parametrize("stream", [False, True])
def test_hang_before_the_first_byte_is_a_504(proxy: ProxyServer, upstream: FakeUpstream, stream: bool) -> None:
    before = len(upstream.requests)
    upstream.enqueue(HangBeforeHeaders())
    message = assert_envelope(post_messages(proxy.url, message_body(stream=stream)), 504, "api_error")
    assert message == f"custom: 127.0.0.1:{upstream.port} sent no response within {READ_TIMEOUT:g}s"
    assert upstream.wait_for_disconnect(), "the proxy kept the hung connection"
    assert len(upstream.requests) - before == 1  # a timeout is not retried: the upstream may be working on it
    assert_recovers(proxy, upstream)


def test_hang_mid_stream_ends_with_an_error_event(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream([chunk(role="assistant", content=""), chunk(content="partial"), Hang()], done=False))
    status, events, _ = stream_events(proxy.url)
    assert status == 200
    error = error_event(events)
    assert error == {"type": "api_error", "message": f"custom: no data for {READ_TIMEOUT:g}s"}
    assert text_of(events) == "partial"
    assert [e["type"] for e in events].count("ping") >= 2  # the silence was filled with pings until the timeout
    assert upstream.wait_for_disconnect()
    assert_recovers(proxy, upstream)


def test_overall_deadline_mid_stream(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream([chunk(content=f"t{i} ") for i in range(40)], delay=0.2))
    started = time.monotonic()
    status, events, _ = stream_events(proxy.url)
    assert status == 200
    assert error_event(events) == {
        "type": "api_error",
        "message": f"custom: response exceeded the {TOTAL_TIMEOUT:g}s deadline",
    }
    assert 5 <= len(text_of(events).split()) < 40
    assert time.monotonic() - started < 40 * 0.2  # stopped at the deadline, not at the end
    assert upstream.wait_for_disconnect()
    assert_recovers(proxy, upstream)


def slow_json_body(pieces: int, delay: float) -> Stream:
    text = json.dumps(completion("slow"))
    step = max(1, len(text) // pieces)
    parts: list[Any] = [text[i : i + step] for i in range(0, len(text), step)]
    return Stream(parts, delay=delay, done=False, headers={"Content-Type": "application/json"})


def test_non_stream_body_hang_is_a_504(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    text = json.dumps(completion("never finished"))
    upstream.enqueue(Stream([text[:20], Hang()], done=False, headers={"Content-Type": "application/json"}))
    message = assert_envelope(post_messages(proxy.url, message_body()), 504, "api_error")
    assert message == f"custom: no data for {READ_TIMEOUT:g}s"
    assert upstream.wait_for_disconnect()
    assert_recovers(proxy, upstream)


def test_non_stream_deadline_is_a_504(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_json_body(30, 0.2))
    message = assert_envelope(post_messages(proxy.url, message_body()), 504, "api_error")
    assert message == f"custom: response exceeded the {TOTAL_TIMEOUT:g}s deadline"
    assert upstream.wait_for_disconnect()
    assert_recovers(proxy, upstream)


def test_slow_but_steady_non_stream_body_is_fine(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(slow_json_body(8, 0.15))
    assert post_messages(proxy.url, message_body()).json()["content"][0]["text"] == "slow"


def test_reset_mid_stream_ends_with_an_error_event(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream([chunk(content="half an ans"), Sleep(0.05), Reset()], done=False))
    status, events, _ = stream_events(proxy.url)
    assert status == 200
    error = error_event(events)
    assert error["type"] == "api_error" and error["message"].startswith("custom: connection broke mid-response")
    assert text_of(events) == "half an ans"
    assert_recovers(proxy, upstream)


def test_reset_after_the_finish_reason_is_a_complete_answer(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Stream([chunk(content="whole answer", finish_reason="stop"), usage_chunk(3, 2), Reset()], done=False)
    )
    status, events, _ = stream_events(proxy.url)
    outcome = check_grammar(events)
    assert status == 200 and outcome.ending == "message"
    assert outcome.message_delta is not None and outcome.message_delta["delta"]["stop_reason"] == "end_turn"
    assert text_of(events) == "whole answer"
    assert_recovers(proxy, upstream)


def test_chunked_body_closed_early_is_a_broken_connection(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream([chunk(content="cut"), Close()], done=False))  # no terminating 0-chunk
    status, events, _ = stream_events(proxy.url)
    assert status == 200
    assert error_event(events)["message"] == (
        "custom: connection broke mid-response: connection closed before the response was complete"
    )
    assert_recovers(proxy, upstream)


def test_clean_close_without_finish_reason_is_an_error(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream([chunk(content="cut")], done=False, chunked=False))  # EOF is the end of this body
    status, events, _ = stream_events(proxy.url)
    assert status == 200 and "cut off" in error_event(events)["message"]
    assert text_of(events) == "cut"
    assert_recovers(proxy, upstream)


@pytest.mark.parametrize(
    ("items", "error_type", "needle"),
    [
        (["data: {not json\n\n"], "api_error", "malformed stream chunk"),
        ([chunk(content="ok "), "data: [1, 2\n\n"], "api_error", "malformed stream chunk"),
        (["<html><body>502 Bad Gateway</body></html>\r\n"], "api_error", "cut off"),
        ([b"\xff\xfe\x00garbage\x00\n\n\x80\x81"], "api_error", "cut off"),
        (["event: message\nid: 7\nretry: 10\n: comment only\n\n"], "api_error", "cut off"),
        (  # after the first event (an error AS the first event is an HTTP error: test_first_event_error_*)
            [chunk(content="so "), {"error": {"message": "The server is overloaded", "type": "overloaded_error"}}],
            "overloaded_error",
            "overloaded",
        ),
        ([chunk(content="some "), {"error": {"message": "quota exceeded", "code": 429}}], "rate_limit_error", "quota"),
        ([chunk(content="x"), chunk(finish_reason="error")], "api_error", "finish_reason"),
        (["data: 12\n\n"], "api_error", "error"),
        (['data: "just a string"\n\n'], "api_error", "error"),
    ],
)
def test_malformed_streams_end_with_an_error_event(
    proxy: ProxyServer, upstream: FakeUpstream, items: list[Any], error_type: str, needle: str
) -> None:
    upstream.enqueue(Stream(items, done=False))
    status, events, _ = stream_events(proxy.url)
    assert status == 200
    error = error_event(events)
    assert error["type"] == error_type and needle in error["message"], error
    assert_recovers(proxy, upstream)


# -- an in-band error as the stream's first event is an HTTP error (issue 15 §6) -----------------------------------

SGLANG_TOO_LONG = {  # SGLang answers an over-long prompt with 200 and this as the only event (sglang#20027)
    "object": "error",
    "message": "The input (40000 tokens) is longer than the model's context length (32768 tokens).",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}


@pytest.mark.parametrize(
    ("items", "status", "error_type", "needle"),
    [
        # an overflow is Anthropic's wording, so every client compacts (translate/overflow.py)
        ([SGLANG_TOO_LONG], 400, "invalid_request_error", "prompt is too long: 40000 tokens > 32768 maximum"),
        (
            [{"error": {"message": "engine overloaded", "type": "BadRequestError", "code": 503}}],
            503,
            "overloaded_error",
            "engine overloaded",
        ),
        (  # OpenRouter: choices[0].error with finish_reason "error", after its processing comments
            [
                ": OPENROUTER PROCESSING\n\n",
                Sleep(0.05),
                {
                    "id": "gen-1",
                    "object": "chat.completion.chunk",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": ""},
                            "finish_reason": "error",
                            "error": {"code": 429, "message": "Provider rate limited"},
                        }
                    ],
                },
            ],
            429,
            "rate_limit_error",
            "Provider rate limited",
        ),
        ([{"error": {"message": "The server had an error", "type": "server_error"}}], 502, "api_error", "had an error"),
    ],
)
def test_first_event_error_is_an_http_error(
    proxy: ProxyServer, upstream: FakeUpstream, items: list[Any], status: int, error_type: str, needle: str
) -> None:
    upstream.enqueue(Stream(items, done=False))
    _, events, response = stream_events(proxy.url)
    assert events == []  # no 200, no stream: an envelope the SDKs raise as the matching status
    message = assert_envelope(response, status, error_type)
    assert needle in message
    assert_recovers(proxy, upstream)


def test_first_event_error_with_the_sdk(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Stream([SGLANG_TOO_LONG], done=False))
    client = anthropic.Anthropic(base_url=proxy.url, api_key="client-key", max_retries=0, timeout=10)
    with pytest.raises(anthropic.BadRequestError) as raised:
        with client.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "x"}]) as s:
            s.get_final_message()
    assert raised.value.status_code == 400
    assert "prompt is too long: 40000 tokens > 32768 maximum" in str(raised.value)


def test_a_silent_upstream_commits_the_stream_at_the_ping_interval(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    # the look-ahead waits one ping interval (0.3 s here), no longer: then the client gets its 200 and pings,
    # and an error that comes later is an `error` event as before
    upstream.enqueue(Stream([Sleep(0.8), {"error": {"message": "late failure", "type": "server_error"}}], done=False))
    started = time.monotonic()
    response = requests.post(proxy.url + "/v1/messages", json=message_body(stream=True), stream=True, timeout=10)
    headers_after = time.monotonic() - started
    assert response.status_code == 200
    assert headers_after < 0.75, headers_after
    events = parse_sse(response.content)
    assert events[0]["type"] == "message_start"
    assert any(e["type"] == "ping" for e in events)
    assert error_event(events)["message"].endswith("late failure")
    assert_recovers(proxy, upstream)


def test_first_event_ok_then_the_stream_is_unchanged(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Stream(
            [chunk("He", role="assistant"), Sleep(0.05), chunk("llo"), chunk(finish_reason="stop"), usage_chunk(5, 2)]
        )
    )
    status, events, _ = stream_events(proxy.url)
    assert status == 200
    assert check_grammar(events).ending == "message"
    assert text_of(events) == "Hello"


@pytest.mark.parametrize(
    ("response", "status", "error_type", "needle"),
    [
        (Text("{not json", content_type="application/json"), 502, "api_error", "not JSON"),
        (Text(b"\x00\xff" * 100, content_type="application/octet-stream"), 502, "api_error", "not JSON"),
        (Json([1, 2, 3]), 502, "api_error", "error"),
        (
            Json({"error": {"message": "context too long", "code": "context_length_exceeded"}}),
            400,
            "invalid_request_error",
            "prompt is too long",  # an overflow, even inside a 200, is said in Anthropic's words (clients compact)
        ),
        (Json({"choices": [{"error": {"message": "provider died"}}]}), 502, "api_error", "provider died"),
    ],
)
def test_non_stream_bad_bodies(
    proxy: ProxyServer, upstream: FakeUpstream, response: Any, status: int, error_type: str, needle: str
) -> None:
    upstream.enqueue(response)
    message = assert_envelope(post_messages(proxy.url, message_body()), status, error_type)
    assert needle in message
    assert_recovers(proxy, upstream)


def test_gigantic_chunk_is_delivered_whole(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    big = "abcdefghij" * 800_000  # 8 MB in one SSE event
    upstream.enqueue(Stream([chunk(content="<"), chunk(content=big), chunk(content=">", finish_reason="stop")]))
    status, events, _ = stream_events(proxy.url, timeout=60)
    assert status == 200 and check_grammar(events).ending == "message"
    assert text_of(events) == "<" + big + ">"
    assert_recovers(proxy, upstream)


def test_an_event_beyond_the_size_limit_is_an_error(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    huge = "z" * (17 << 20)  # past the 16 MB per-event limit, with no line break to end it
    upstream.enqueue(Stream([chunk(content="start "), "data: " + huge, Hang()], done=False))
    status, events, _ = stream_events(proxy.url, timeout=60)
    assert status == 200
    assert "exceeded" in error_event(events)["message"]
    assert text_of(events) == "start "
    assert upstream.wait_for_disconnect()
    assert_recovers(proxy, upstream)


def test_gigantic_non_stream_body(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    big = "0123456789" * 2_000_000  # 20 MB of answer
    upstream.enqueue(Json(completion(big)))
    response = post_messages(proxy.url, message_body(), timeout=60)
    assert response.status_code == 200 and response.json()["content"][0]["text"] == big
    assert_recovers(proxy, upstream)


def test_a_crowd_of_hung_requests_leaves_no_connections_behind(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    (worker,) = worker_pids(proxy)
    assert_recovers(proxy, upstream)
    fds_before, open_before = open_fds(worker), upstream.active_connections
    upstream.enqueue(*[HangBeforeHeaders()] * 12)
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda _: post_messages(proxy.url, message_body(stream=True)).status_code, range(12)))
    assert statuses == [504] * 12
    deadline = time.monotonic() + 5
    while upstream.active_connections > open_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.active_connections <= open_before
    assert fds_settle(worker, fds_before) <= fds_before
    assert_recovers(proxy, upstream)
