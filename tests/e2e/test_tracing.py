"""Traces for real: the claude-proxy command under gunicorn exports OTLP/HTTP to a local receiver.

One span per request with a child per upstream attempt, GenAI attributes, the client's traceparent
continued and each attempt's passed upstream, no message content; switched on by the OTEL_*
variables or a [telemetry] table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import proxy_config
from tests.support.otlp import OTLPReceiver
from tests.support.proxy_server import CLOSE, ProxyServer
from tests.support.upstream import FakeUpstream, Json, Stream, chunk, usage_chunk

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
SECRET_TEXT = "the-secret-prompt-text-1234"
SERVER, CLIENT = 2, 3  # OTLP span kinds


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


def otel_env(receiver: OTLPReceiver) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "proxy-under-test",
    }


def ask(proxy: ProxyServer, stream: bool = False, model: str = "claude-sonnet-5", trace: str = TRACE_ID) -> requests.Response:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": SECRET_TEXT}],
        "stream": stream,
    }
    headers = {"traceparent": f"00-{trace}-{CLIENT_SPAN}-01", "anthropic-version": "2023-06-01", **CLOSE}
    return requests.post(proxy.url + "/v1/messages", json=body, headers=headers, timeout=20)


def test_a_request_is_one_span_with_a_child_per_attempt(upstream: FakeUpstream, receiver: OTLPReceiver) -> None:
    with ProxyServer(proxy_config(upstream), env=otel_env(receiver)) as proxy:
        before = len(upstream.requests)
        response = ask(proxy)
        assert response.status_code == 200, response.text
        spans = receiver.wait_for(2, TRACE_ID)
        [request_span] = [s for s in spans if s.kind == SERVER]
        [attempt] = [s for s in spans if s.kind == CLIENT]
        assert request_span.parent_id == CLIENT_SPAN  # the client's trace continued
        assert attempt.parent_id == request_span.span_id
        assert request_span.service == "proxy-under-test"
        assert attempt.name == "chat big-model"
        assert attempt.attributes["gen_ai.system"] == "custom"
        assert attempt.attributes["gen_ai.request.model"] == "big-model"
        for span in (request_span, attempt):
            assert span.attributes["gen_ai.response.model"] == "big-model"
            assert span.attributes["gen_ai.usage.input_tokens"] > 0
            assert span.attributes["gen_ai.usage.output_tokens"] > 0
            assert span.attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
            assert span.attributes["http.response.status_code"] == 200
        assert request_span.attributes["gen_ai.request.model"] == "claude-sonnet-5"
        assert request_span.attributes["claude_proxy.route"] in ("models", "default")
        assert request_span.attributes["claude_proxy.provider"] == "custom"
        # the upstream got the attempt's own traceparent: same trace, the attempt span as parent
        [sent] = upstream.requests[before:]
        assert sent.headers["traceparent"] == f"00-{TRACE_ID}-{attempt.span_id}-01"
        # nothing of the message content is exported
        assert not any(SECRET_TEXT.encode() in body for body in receiver.bodies)


def test_a_stream_span_ends_after_the_last_byte_with_its_usage(upstream: FakeUpstream, receiver: OTLPReceiver) -> None:
    trace = "5bf92f3577b34da6a3ce929d0e0e4737"
    with ProxyServer(proxy_config(upstream), env=otel_env(receiver)) as proxy:
        upstream.enqueue(
            Stream([chunk(content="Hel"), chunk(content="lo", finish_reason="stop"), usage_chunk(12, 2)]),
            path="/chat/completions",
        )
        response = ask(proxy, stream=True, trace=trace)
        assert response.status_code == 200 and "message_stop" in response.text
        spans = receiver.wait_for(2, trace)
        [request_span] = [s for s in spans if s.kind == SERVER]
        assert request_span.attributes["gen_ai.usage.input_tokens"] == 12
        assert request_span.attributes["gen_ai.usage.output_tokens"] == 2


def test_a_fallback_chain_shows_each_attempt(upstream: FakeUpstream, receiver: OTLPReceiver) -> None:
    trace = "6bf92f3577b34da6a3ce929d0e0e4738"
    with FakeUpstream() as backup:
        config = proxy_config(
            upstream,
            providers={"backup": {"base_url": backup.url, "api_key": "sk-backup-key-000000000"}},
            models={"claude-*": ["big-model", "backup,backup-model"]},
        )
        with ProxyServer(config, env=otel_env(receiver)) as proxy:
            upstream.enqueue(Json({"error": {"message": "overloaded", "type": "server_error"}}, 503))
            upstream.enqueue(Json({"error": {"message": "overloaded", "type": "server_error"}}, 503))
            upstream.enqueue(Json({"error": {"message": "overloaded", "type": "server_error"}}, 503))
            response = ask(proxy, trace=trace)
            assert response.status_code == 200, response.text
            spans = receiver.wait_for(3, trace)
            attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.name)
            assert [s.name for s in attempts] == ["chat backup-model", "chat big-model"]
            failed = next(s for s in attempts if s.name == "chat big-model")
            assert failed.attributes["http.response.status_code"] == 503
            assert failed.status_code == 2  # STATUS_CODE_ERROR


def test_the_telemetry_table_switches_traces_on(upstream: FakeUpstream, receiver: OTLPReceiver) -> None:
    trace = "7bf92f3577b34da6a3ce929d0e0e4739"
    config = proxy_config(upstream, telemetry={"enabled": True, "endpoint": receiver.url, "service_name": "from-toml"})
    with ProxyServer(config, env={"OTEL_BSP_SCHEDULE_DELAY": "50"}) as proxy:
        assert ask(proxy, trace=trace).status_code == 200
        spans = receiver.wait_for(2, trace)
        assert {s.service for s in spans} == {"from-toml"}


def test_without_otel_settings_nothing_is_exported(upstream: FakeUpstream, receiver: OTLPReceiver) -> None:
    trace = "8bf92f3577b34da6a3ce929d0e0e4730"
    with ProxyServer(proxy_config(upstream)) as proxy:
        before = len(upstream.requests)
        assert ask(proxy, trace=trace).status_code == 200
        [sent] = upstream.requests[before:]
        assert "traceparent" not in {k.lower() for k in sent.headers}
    assert receiver.wait_for(1, trace, timeout=1.0) == []
