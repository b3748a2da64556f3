"""The upstream client in isolation (`responses` mocks the transport; `sleep=` records the back-off)."""

from __future__ import annotations

import email.utils
import errno
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
import urllib3.exceptions

from claude_proxy.config.loader import ProviderConfig, RetryPolicy, Timeouts, load_config
from claude_proxy.errors import UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from claude_proxy.translate.dialect import Dialect
from claude_proxy.upstream import retry as retry_module
from claude_proxy.upstream.client import Upstream, retry_after_seconds
from tests.support.upstream import closed_port

KEY = "sk-live-SECRETKEY1234567890"
BASE = "http://up.test/v1"
URL = BASE + "/chat/completions"
ANTHROPIC_BASE = "http://anthropic.test"
ANTHROPIC_URL = ANTHROPIC_BASE + "/v1/messages"


def provider(
    fmt: str = "openai",
    base_url: str = BASE,
    api_key: str | None = KEY,
    api_key_from_client: bool = False,
    headers: dict[str, str] | None = None,
) -> ProviderConfig:
    return ProviderConfig(
        name="anthropic" if fmt == "anthropic" else "custom",
        base_url=base_url,
        format=fmt,
        dialect=Dialect(),
        api_key=api_key,
        api_key_from_client=api_key_from_client,
        headers=headers or {},
    )


class Client:
    """An Upstream whose sleeps are recorded instead of slept."""

    def __init__(self, prov: ProviderConfig | None = None, max_retries: int = 2, **retry: float) -> None:
        self.delays: list[float] = []
        policy = RetryPolicy(
            max_retries=max_retries, base_delay=retry.get("base_delay", 0.5), max_delay=retry.get("max_delay", 8.0)
        )
        self.upstream = Upstream(
            prov or provider(), Timeouts(connect=2, read=5, total=60), policy, sleep=self.delays.append
        )

    def post(self, path: str = "/chat/completions", **kw: Any) -> requests.Response:
        return self.upstream.post_json(path, b'{"model":"m"}', {"X-Test": "1"}, **kw)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def refused(url: str = URL) -> requests.ConnectionError:
    """What requests raises for a refused connection: ConnectionError(MaxRetryError(reason=
    NewConnectionError(...) from ConnectionRefusedError)), built as urllib3 builds it."""
    cause = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    new = urllib3.exceptions.NewConnectionError(None, f"Failed to establish a new connection: {cause}")
    new.__cause__ = cause
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, url, new))


def error_body(message: str, kind: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


# -- what is retried ------------------------------------------------------------------------------------------


def test_connection_errors_are_retried_the_configured_number_of_times(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, body=refused())
    client = Client(max_retries=3)
    with pytest.raises(UpstreamUnavailable) as info:
        client.post()
    assert len(mock.calls) == 4
    assert len(client.delays) == 3
    assert info.value.status == 502
    assert info.value.message == "custom: cannot reach up.test: connection refused"


def test_a_connection_error_then_success(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, body=requests.ConnectionError("reset by peer"))
    mock.add("POST", URL, json={"ok": True})
    client = Client()
    response = client.post()
    assert response.status_code == 200
    assert client.upstream.read(response, time.monotonic() + 5) == b'{"ok": true}'
    assert len(mock.calls) == 2 and len(client.delays) == 1


def test_no_retries_when_max_retries_is_zero(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, status=503, json=error_body("busy"))
    client = Client(max_retries=0)
    with pytest.raises(UpstreamHTTPError):
        client.post()
    assert (len(mock.calls), client.delays) == (1, [])


def test_retry_false_sends_once(mock: responses.RequestsMock) -> None:
    mock.add("GET", BASE + "/models", body=requests.ConnectionError("refused"))
    client = Client()
    with pytest.raises(UpstreamUnavailable):
        client.upstream.request("GET", "/models", retry=False)
    assert (len(mock.calls), client.delays) == (1, [])


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(mock: responses.RequestsMock, status: int) -> None:
    mock.add("POST", URL, status=status, json=error_body(f"transient {status}"))
    mock.add("POST", URL, json={"ok": True})
    client = Client()
    assert client.post().status_code == 200
    assert len(mock.calls) == 2 and len(client.delays) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_persistent_failure_keeps_the_upstream_status_and_message(mock: responses.RequestsMock, status: int) -> None:
    mock.add("POST", URL, status=status, json=error_body("model is overloaded, try later"), headers={"x-req": "1"})
    client = Client(max_retries=2)
    with pytest.raises(UpstreamHTTPError) as info:
        client.post()
    assert len(mock.calls) == 3
    assert info.value.status == status
    assert info.value.message == "custom: model is overloaded, try later"
    assert info.value.error_type == {429: "rate_limit_error", 503: "overloaded_error"}[status]
    assert info.value.raw == b'{"error": {"message": "model is overloaded, try later", "type": "server_error"}}'


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(mock: responses.RequestsMock, status: int) -> None:
    mock.add(
        "POST", URL, status=status, json=error_body("bad request: messages[0] is invalid", "invalid_request_error")
    )
    client = Client()
    with pytest.raises(UpstreamHTTPError) as info:
        client.post()
    assert (len(mock.calls), client.delays) == (1, [])
    assert info.value.status == status
    assert info.value.message == "custom: bad request: messages[0] is invalid"


def test_529_is_retried_only_for_the_anthropic_format(mock: responses.RequestsMock) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    mock.add("POST", URL, status=529, json=overloaded)
    openai_client = Client()
    with pytest.raises(UpstreamHTTPError) as info:
        openai_client.post()
    assert len(mock.calls) == 1
    assert (info.value.status, info.value.error_type) == (529, "overloaded_error")

    mock.add("POST", ANTHROPIC_URL, status=529, json=overloaded)
    mock.add("POST", ANTHROPIC_URL, json={"type": "message"})
    anthropic_client = Client(provider("anthropic", ANTHROPIC_BASE))
    assert anthropic_client.post("/v1/messages").status_code == 200
    assert len(mock.calls) == 3 and len(anthropic_client.delays) == 1


def test_x_should_retry_false_stops_retrying(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, status=500, json=error_body("injected failure"), headers={"x-should-retry": "false"})
    client = Client()
    with pytest.raises(UpstreamHTTPError) as info:
        client.post()
    assert (len(mock.calls), client.delays) == (1, [])
    assert info.value.status == 500
    assert info.value.headers == {"x-should-retry": "false"}


# -- how long it waits ------------------------------------------------------------------------------------


def _delay_for(mock: responses.RequestsMock, headers: dict[str, str], max_delay: float = 8.0) -> float:
    mock.add("POST", URL, status=429, json=error_body("slow down"), headers=headers)
    mock.add("POST", URL, json={"ok": True})
    client = Client(max_delay=max_delay)
    assert client.post().status_code == 200
    [delay] = client.delays
    return delay


def test_retry_after_seconds(mock: responses.RequestsMock) -> None:
    assert _delay_for(mock, {"retry-after": "3"}) == 3.0


def test_retry_after_ms(mock: responses.RequestsMock) -> None:
    assert _delay_for(mock, {"retry-after-ms": "1500"}) == 1.5


def test_retry_after_ms_wins_over_retry_after(mock: responses.RequestsMock) -> None:
    assert _delay_for(mock, {"retry-after-ms": "250", "retry-after": "7"}) == 0.25


def test_retry_after_http_date(mock: responses.RequestsMock) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    delay = _delay_for(mock, {"retry-after": when})
    assert 3.9 <= delay <= 5.0  # the date has a resolution of one second


def test_retry_after_up_to_retry_max_delay_is_slept(mock: responses.RequestsMock) -> None:
    assert _delay_for(mock, {"retry-after": "2.5"}, max_delay=2.5) == 2.5


@pytest.mark.parametrize("headers", [{"retry-after": "120"}, {"retry-after-ms": "60000"}])
def test_a_longer_retry_after_is_never_slept_but_handed_back(
    mock: responses.RequestsMock, headers: dict[str, str]
) -> None:
    """The proxy never waits past retry_max_delay; retrying early would be refused again, so the
    client gets the failure with the upstream's hint instead."""
    mock.add("POST", URL, status=429, json=error_body("slow down"), headers=headers)
    mock.add("POST", URL, json={"ok": True})
    client = Client(max_delay=2.5)
    with pytest.raises(UpstreamHTTPError) as info:
        client.post()
    assert (len(mock.calls), client.delays) == (1, [])
    assert info.value.status == 429
    assert info.value.headers == headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "20"}, 0.02),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "later", "retry-after": "2"}, 2.0),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_a_past_http_date_means_now() -> None:
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_an_http_date_without_a_zone_is_gmt() -> None:
    when = email.utils.formatdate(time.time() + 30)[:-6] + " -0000"  # "-0000" parses to a naive datetime
    assert 28.9 <= (retry_after_seconds({"retry-after": when}) or 0) <= 30.0


def test_an_unreadable_retry_after_falls_back_to_backoff(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, status=503, json=error_body("busy"), headers={"retry-after": "in a while"})
    mock.add("POST", URL, json={"ok": True})
    client = Client(base_delay=0.5)
    assert client.post().status_code == 200
    assert len(client.delays) == 1 and 0.5 <= client.delays[0] <= 1.0


@pytest.mark.parametrize(
    ("jitter", "expected"), [("low", [0.1, 0.2, 0.4, 0.8, 1.0]), ("high", [0.2, 0.3, 0.5, 0.9, 1.0])]
)
def test_backoff_is_exponential_jittered_and_never_above_max_delay(
    mock: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, jitter: str, expected: list[float]
) -> None:
    """base 0.1, max 1.0: base·2ⁿ plus up to one base of jitter, never above the maximum."""
    monkeypatch.setattr(retry_module.random, "uniform", lambda a, b: a if jitter == "low" else b)
    mock.add("POST", URL, status=503, json=error_body("busy"))
    client = Client(max_retries=5, base_delay=0.1, max_delay=1.0)
    with pytest.raises(UpstreamHTTPError):
        client.post()
    assert client.delays == pytest.approx(expected)


def test_backoff_jitter_varies(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, body=requests.ConnectionError("refused"))
    client = Client(max_retries=8, base_delay=0.1, max_delay=100.0)
    with pytest.raises(UpstreamUnavailable):
        client.post()
    fractions = [d - 0.1 * 2**n for n, d in enumerate(client.delays)]
    assert all(0.0 <= f <= 0.1 for f in fractions)
    assert len({round(f, 6) for f in fractions}) > 1  # random, not a constant offset


def test_a_retry_that_would_pass_the_deadline_is_not_made(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, status=503, json=error_body("busy"), headers={"retry-after": "5"})
    client = Client(max_retries=3, max_delay=30.0)
    with pytest.raises(UpstreamHTTPError) as info:
        client.post(deadline=time.monotonic() + 2.0)
    assert (len(mock.calls), client.delays) == (1, [])
    assert info.value.status == 503  # the real failure, not a made-up timeout


def test_connection_error_back_off_stops_at_the_deadline(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, body=requests.ConnectionError("refused"))
    client = Client(max_retries=10, base_delay=1.0, max_delay=100.0)
    with pytest.raises(UpstreamUnavailable):
        client.post(deadline=time.monotonic() + 6.0)
    # delays of 1-2, 2-3 (then 4-5 would pass the deadline: the sleeps are recorded, not slept)
    assert len(mock.calls) == len(client.delays) + 1
    assert 1 <= len(client.delays) <= 3


def test_a_deadline_already_passed_is_a_timeout(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, json={"ok": True})
    client = Client()
    with pytest.raises(UpstreamTimeout) as info:
        client.post(deadline=time.monotonic() - 1)
    assert len(mock.calls) == 0
    assert info.value.status == 504
    assert info.value.message == "custom: no answer within the 60s deadline"


def test_timeouts_map_to_504(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(UpstreamTimeout) as info:
        Client().post()
    assert len(mock.calls) == 1  # a request that may have been processed is not sent twice
    assert info.value.message == "custom: up.test sent no response within 5s"
    mock.add("POST", BASE + "/other", body=requests.ConnectTimeout("connect timed out"))
    client = Client(max_retries=1)
    with pytest.raises(UpstreamTimeout) as info:
        client.post("/other")
    assert info.value.message == "custom: timed out connecting to up.test after 2s"
    assert len(client.delays) == 1


# -- secrets never in messages ------------------------------------------------------------------------------------


SECRET_BASE = "http://proxyuser:hunter2-password@up.test/v1"


@pytest.mark.parametrize(
    "exc",
    [
        requests.ConnectionError(f"HTTPConnectionPool: Max retries exceeded with url: {SECRET_BASE}/chat (key {KEY})"),
        requests.ConnectTimeout(f"timed out connecting to {SECRET_BASE} with Bearer {KEY}"),
        requests.ReadTimeout(f"read timeout {SECRET_BASE}?key={KEY}"),
        requests.exceptions.ChunkedEncodingError(f"broken {SECRET_BASE} {KEY}"),
        requests.exceptions.InvalidHeader(f"invalid header value Bearer {KEY} for {SECRET_BASE}"),
        requests.TooManyRedirects(f"redirected to {SECRET_BASE}"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_never_leak_the_key_or_url_credentials(mock: responses.RequestsMock, exc: Exception) -> None:
    mock.add("POST", SECRET_BASE + "/chat/completions", body=exc)
    client = Client(provider(base_url=SECRET_BASE), max_retries=1)
    with pytest.raises((UpstreamUnavailable, UpstreamTimeout)) as info:
        client.post()
    text = f"{info.value} {info.value.message} {info.value!r} {info.value.body()}"
    for secret in (KEY, "hunter2-password", "proxyuser"):
        assert secret not in text
    assert "up.test" in text


def test_a_real_refused_connection_with_credentials_in_the_url() -> None:
    base = f"http://proxyuser:hunter2-password@127.0.0.1:{closed_port()}/v1"
    client = Client(provider(base_url=base), max_retries=1, base_delay=0.01)
    with pytest.raises(UpstreamUnavailable) as info:
        client.post()
    assert info.value.message == f"custom: cannot reach 127.0.0.1:{base.rsplit(':', 1)[1][:-3]}: connection refused"
    assert (
        KEY not in str(info.value) and "hunter2-password" not in str(info.value) and "proxyuser" not in str(info.value)
    )


def test_http_errors_do_not_echo_the_key_from_the_url(mock: responses.RequestsMock) -> None:
    mock.add("POST", SECRET_BASE + "/chat/completions", status=502, body="<html>bad gateway</html>")
    client = Client(provider(base_url=SECRET_BASE), max_retries=0)
    with pytest.raises(UpstreamHTTPError) as info:
        client.post()
    assert info.value.message == "custom: HTTP 502"


# -- auth headers ---------------------------------------------------------------------------------------------


def test_openai_format_sends_a_bearer_token(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, json={})
    client = Client(provider(headers={"X-Org": "acme"}))
    client.upstream.post_json("/chat/completions", b"{}", client.upstream.auth_headers("client-key"))
    sent = mock.calls[0].request.headers
    assert sent["Authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in sent
    assert sent["X-Org"] == "acme"
    assert sent["Content-Type"] == "application/json"


def test_anthropic_format_sends_x_api_key(mock: responses.RequestsMock) -> None:
    mock.add("POST", ANTHROPIC_URL, json={})
    client = Client(provider("anthropic", ANTHROPIC_BASE))
    assert client.upstream.auth_headers() == {"x-api-key": KEY}
    client.upstream.post_json("/v1/messages", b"{}", client.upstream.auth_headers())
    sent = mock.calls[0].request.headers
    assert sent["x-api-key"] == KEY
    assert "Authorization" not in sent


@pytest.mark.parametrize(
    ("fmt", "api_key", "from_client", "client_key", "expected"),
    [
        ("openai", KEY, False, "client-key", {"Authorization": f"Bearer {KEY}"}),
        ("openai", None, False, "client-key", {}),  # the client's key is never forwarded unless asked
        ("openai", None, True, "client-key", {"Authorization": "Bearer client-key"}),
        ("openai", KEY, True, "client-key", {"Authorization": f"Bearer {KEY}"}),  # the proxy's own key wins
        ("openai", None, True, None, {}),
        ("anthropic", None, True, "sk-ant-client", {"x-api-key": "sk-ant-client"}),
        ("anthropic", None, False, "sk-ant-client", {}),
    ],
)
def test_api_key_from_client(
    fmt: str, api_key: str | None, from_client: bool, client_key: str | None, expected: dict[str, str]
) -> None:
    prov = provider(fmt, ANTHROPIC_BASE if fmt == "anthropic" else BASE, api_key, api_key_from_client=from_client)
    assert Upstream(prov).auth_headers(client_key) == expected


def test_no_key_sends_no_auth_header(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, json={})
    client = Client(provider(api_key=None))
    client.upstream.post_json("/chat/completions", b"{}", client.upstream.auth_headers())
    assert "Authorization" not in mock.calls[0].request.headers


def test_streaming_requests_ask_for_an_uncompressed_body(mock: responses.RequestsMock) -> None:
    mock.add("POST", URL, body="data: [DONE]\n\n", content_type="text/event-stream")
    client = Client()
    response = client.post(stream=True)
    assert mock.calls[0].request.headers["Accept-Encoding"] == "identity"
    assert b"".join(p for p in client.upstream.iter_body(response, time.monotonic() + 5)) == b"data: [DONE]\n\n"


def test_a_configured_key_wins_over_credentials_in_the_base_url(mock: responses.RequestsMock) -> None:
    # a gateway URL with user:pass@ gets Basic auth only when no provider key is configured
    config = load_config(
        data={"provider": {"name": "custom", "base_url": "http://u:p@127.0.0.1:9/v1", "api_key": "sk-key-123"}}, env={}
    )
    mock.add("POST", "http://u:p@127.0.0.1:9/v1/chat/completions", json={})
    upstream = Upstream(config.provider)
    upstream.post_json("/chat/completions", b"{}", upstream.auth_headers())
    assert mock.calls[0].request.headers["Authorization"] == "Bearer sk-key-123"
    upstream.post_json("/chat/completions", b"{}", {})
    assert mock.calls[1].request.headers["Authorization"] == "Basic dTpw"  # base64("u:p")
