"""A company network for real: the claude-proxy command behind Debian's tinyproxy (a CONNECT tunnel),
in front of a TLS upstream whose certificate comes from a test CA (trustme), with mutual TLS.

Proxy from HTTPS_PROXY or [upstream] proxy (with credentials that never show), NO_PROXY going
around it, the CA from every setting that can name it, a client certificate, and errors that name
the host and the setting to change.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme

from tests.conftest import UPSTREAM_KEY, proxy_config
from tests.support.forward_proxy import Tinyproxy, TlsFront, require_tinyproxy
from tests.support.gunicorn_server import GunicornServer
from tests.support.proxy_server import CLOSE, ProxyServer, write_config
from tests.support.upstream import FakeUpstream, Json, Sleep, Stream, chunk, usage_chunk

pytestmark = pytest.mark.e2e

PROXY_PASSWORD = "tunnel-pass-8f3k2"
# The proxy process sees none of the machine's own proxy or CA settings unless a test gives them
# (removed, not emptied: an empty lower-case https_proxy would hide HTTPS_PROXY, as in urllib).
MACHINE = {
    name
    for name in (
        "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    )
}  # fmt: skip


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "company-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tls_upstream(ca: trustme.CA) -> Iterator[FakeUpstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with FakeUpstream(tls=context) as server:
        yield server


@pytest.fixture(scope="module")
def tinyproxy() -> Iterator[Tinyproxy]:
    require_tinyproxy()
    with Tinyproxy() as proxy:
        yield proxy


class Server(ProxyServer):
    """The claude-proxy command with none of this machine's proxy/CA variables, plus the test's `env`."""

    def __init__(self, config: dict[str, Any], *, env: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(config, env=env, **kw)
        self.env = {k: v for k, v in self.env.items() if k not in MACHINE or k in (env or {})}


def config_for(upstream: FakeUpstream, table: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """`proxy_config` with these [upstream] keys added."""
    config = proxy_config(upstream)
    config["upstream"] = {**config["upstream"], **(table or {}), **keys}
    return config


def completion(text: str = "hi from upstream") -> Json:
    return Json(
        {
            "id": "c1",
            "object": "chat.completion",
            "model": "big-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )


def paced_stream(pause: float = 1.0) -> Stream:
    return Stream([chunk("Hel", role="assistant"), Sleep(pause), chunk("lo", finish_reason="stop"), usage_chunk(3, 2)])


def ask(proxy: ProxyServer, stream: bool = False, model: str = "claude-sonnet-5") -> requests.Response:
    body = {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    return requests.post(
        proxy.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01", **CLOSE}, timeout=20,
        stream=stream,
    )


def text_arrivals(response: requests.Response) -> list[tuple[float, str]]:
    """(seconds since the headers, text) for every text delta, as the client reads them."""
    start = time.monotonic()
    found = []
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            event = json.loads(line[6:])
            if event.get("type") == "content_block_delta" and event["delta"].get("type") == "text_delta":
                found.append((time.monotonic() - start, event["delta"]["text"]))
    return found


def check_both_ways(proxy: ProxyServer, upstream: FakeUpstream) -> None:
    """A non-streamed answer, then a stream whose first text arrives before the upstream's pause ends."""
    upstream.enqueue(completion())
    response = ask(proxy)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "hi from upstream"
    upstream.enqueue(paced_stream(1.0))
    response = ask(proxy, stream=True)
    assert response.status_code == 200
    arrivals = text_arrivals(response)
    assert "".join(t for _, t in arrivals) == "Hello"
    first, last = arrivals[0][0], arrivals[-1][0]
    assert first < 0.7, f"the first text waited for the rest of the stream ({arrivals})"  # incremental through the tunnel
    assert last - first >= 0.8, arrivals


def test_https_proxy_from_the_environment_tunnels_both_kinds_of_request(
    tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, ca_file: str
) -> None:
    before = len(tinyproxy.connects(tls_upstream.port))
    config = config_for(tls_upstream, {"ca_bundle": ca_file, "max_retries": 0})
    with Server(config, env={"HTTPS_PROXY": tinyproxy.url}) as proxy:
        check_both_ways(proxy, tls_upstream)
    assert len(tinyproxy.connects(tls_upstream.port)) > before  # the calls went through the tunnel


def test_lower_case_https_proxy_counts_too(tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, ca_file: str) -> None:
    before = len(tinyproxy.connects(tls_upstream.port))
    config = config_for(tls_upstream, {"ca_bundle": ca_file})
    with Server(config, env={"https_proxy": tinyproxy.url}) as proxy:
        tls_upstream.enqueue(completion())
        assert ask(proxy).status_code == 200
    assert len(tinyproxy.connects(tls_upstream.port)) > before


def test_no_proxy_goes_around_the_proxy(tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, ca_file: str) -> None:
    before = len(tinyproxy.connects(tls_upstream.port))
    config = config_for(tls_upstream, {"ca_bundle": ca_file})
    env = {"HTTPS_PROXY": tinyproxy.url, "NO_PROXY": "localhost,127.0.0.1"}
    with Server(config, env=env) as proxy:
        check_both_ways(proxy, tls_upstream)
    assert len(tinyproxy.connects(tls_upstream.port)) == before  # not one CONNECT


def test_no_proxy_in_the_config_wins_over_the_environment(
    tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, ca_file: str
) -> None:
    before = len(tinyproxy.connects(tls_upstream.port))
    config = config_for(tls_upstream, {"ca_bundle": ca_file, "no_proxy": ["127.0.0.1"]})
    with Server(config, env={"HTTPS_PROXY": tinyproxy.url}) as proxy:
        tls_upstream.enqueue(completion())
        assert ask(proxy).status_code == 200
    assert len(tinyproxy.connects(tls_upstream.port)) == before


def test_upstream_proxy_setting_with_credentials_that_never_show(
    tls_upstream: FakeUpstream, ca_file: str, tmp_path: Path
) -> None:
    with Tinyproxy(user="builder", password=PROXY_PASSWORD) as authed:
        config = config_for(tls_upstream, {"proxy": authed.url, "ca_bundle": ca_file})
        # the environment names another proxy (nothing listens there): the setting wins
        with Server(config, env={"HTTPS_PROXY": "http://127.0.0.1:9"}) as proxy:
            check_both_ways(proxy, tls_upstream)
            banner = proxy.output()
            journal = proxy.log_file.read_text()
        assert authed.connects(tls_upstream.port)
        assert PROXY_PASSWORD not in banner and PROXY_PASSWORD not in journal
        assert f"***@127.0.0.1:{authed.port}" in banner  # the banner says which proxy, masked

        # a wrong password: the proxy refuses the tunnel; the error names the proxy, never the password
        wrong = authed.url.replace(PROXY_PASSWORD, "wrong-pass-77x")
        config = config_for(tls_upstream, {"proxy": wrong, "ca_bundle": ca_file, "max_retries": 0})
        with Server(config, env={}) as proxy:
            response = ask(proxy)
            output = proxy.output()
            journal = proxy.log_file.read_text()
        assert response.status_code >= 500
        message = response.json()["error"]["message"]
        assert f"through the proxy http://***@127.0.0.1:{authed.port}" in message, message
        assert "[upstream] proxy" in message
        for text in (message, output, journal):
            assert "wrong-pass-77x" not in text and PROXY_PASSWORD not in text


def _front_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.mark.parametrize("where", ["setting", "HTTPS_PROXY"])
def test_an_https_proxy_is_spoken_to_in_tls_and_tunnels_both_kinds_of_request(
    tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, ca: trustme.CA, ca_file: str, where: str
) -> None:
    """`https://` egress proxy: TLS to the proxy (its certificate from the company CA too), CONNECT inside
    it, TLS to the upstream inside the tunnel; streams still arrive piece by piece."""
    before = len(tinyproxy.connects(tls_upstream.port))
    with TlsFront(tinyproxy.port, _front_context(ca)) as front:
        table = {"ca_bundle": ca_file, "max_retries": 0, **({"proxy": front.url} if where == "setting" else {})}
        env = {"HTTPS_PROXY": front.url} if where == "HTTPS_PROXY" else {}
        with Server(config_for(tls_upstream, table), env=env) as proxy:
            check_both_ways(proxy, tls_upstream)
            banner = proxy.output()
        assert front.handshakes >= 1 and front.refused == 0
    assert len(tinyproxy.connects(tls_upstream.port)) > before  # through the tunnel behind the TLS front
    assert f"https://127.0.0.1:{front.port}" in banner  # the banner names the proxy as configured


def test_an_https_proxy_with_credentials_gets_them_inside_tls_and_never_shows_them(
    tls_upstream: FakeUpstream, ca: trustme.CA, ca_file: str
) -> None:
    """Basic proxy credentials in an `https://` proxy URL travel inside the TLS session to the proxy (the
    proxy behind the TLS front checks them) and are masked in the banner, the journal and errors."""
    with Tinyproxy(user="builder", password=PROXY_PASSWORD) as authed, TlsFront(authed.port, _front_context(ca)) as front:
        url = f"https://builder:{PROXY_PASSWORD}@127.0.0.1:{front.port}"
        config = config_for(tls_upstream, {"proxy": url, "ca_bundle": ca_file, "max_retries": 0})
        with Server(config, env={}) as proxy:
            check_both_ways(proxy, tls_upstream)
            banner, journal = proxy.output(), proxy.log_file.read_text()
        assert authed.connects(tls_upstream.port) and front.handshakes >= 1
        assert PROXY_PASSWORD not in banner and PROXY_PASSWORD not in journal
        assert f"https://***@127.0.0.1:{front.port}" in banner

        wrong = url.replace(PROXY_PASSWORD, "wrong-pass-77x")  # the proxy refuses the tunnel: said, never the password
        with Server(config_for(tls_upstream, {"proxy": wrong, "ca_bundle": ca_file, "max_retries": 0}), env={}) as proxy:
            response = ask(proxy)
            output, journal = proxy.output(), proxy.log_file.read_text()
        message = response.json()["error"]["message"]
        assert response.status_code >= 500 and f"through the proxy https://***@127.0.0.1:{front.port}" in message, message
        for text in (message, output, journal):
            assert "wrong-pass-77x" not in text and PROXY_PASSWORD not in text


def test_an_https_proxy_with_an_untrusted_certificate_is_refused_with_a_clear_error(
    tls_upstream: FakeUpstream, tinyproxy: Tinyproxy, ca_file: str
) -> None:
    """The proxy's own certificate is checked against the trusted CAs like the upstream's: from another
    CA the call fails before any CONNECT, is not retried (the same certificate would come back), and the
    error names the proxy, the setting that named it and the setting to change."""
    before = len(tinyproxy.connects(tls_upstream.port))
    with TlsFront(tinyproxy.port, _front_context(trustme.CA())) as front:
        config = config_for(tls_upstream, {"ca_bundle": ca_file, "max_retries": 2, "proxy": front.url})
        with Server(config, env={}) as proxy:
            response = ask(proxy)
        assert (front.refused, front.handshakes) == (1, 0)
    assert response.status_code >= 500, response.text
    message = response.json()["error"]["message"]
    assert f"TLS with the proxy https://127.0.0.1:{front.port} (from [upstream] proxy) failed" in message, message
    assert "TLS certificate error" in message and "set [upstream] ca_bundle" in message, message
    assert len(tinyproxy.connects(tls_upstream.port)) == before


@pytest.mark.parametrize("where", ["upstream", "provider", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_the_company_ca_from_each_setting(tls_upstream: FakeUpstream, ca_file: str, where: str) -> None:
    env: dict[str, str] = {}
    config = proxy_config(tls_upstream)
    if where == "upstream":
        config["upstream"] = {**config["upstream"], "ca_bundle": ca_file}
    elif where == "provider":
        config["provider"] = {**config["provider"], "ca_bundle": ca_file}
    else:
        env[where] = ca_file
    with Server(config, env=env) as proxy:
        check_both_ways(proxy, tls_upstream)


def test_an_untrusted_certificate_names_the_host_and_the_setting(tls_upstream: FakeUpstream) -> None:
    config = config_for(tls_upstream, {"max_retries": 2})
    with Server(config, env={}) as proxy:
        before = len(tls_upstream.requests)
        response = ask(proxy)
        journal = proxy.log_file.read_text()
    assert response.status_code >= 500
    message = response.json()["error"]["message"]
    assert f"TLS with 127.0.0.1:{tls_upstream.port} failed" in message, message
    assert "TLS certificate error" in message and "[upstream] ca_bundle" in message, message
    assert UPSTREAM_KEY not in message and UPSTREAM_KEY not in journal
    assert len(tls_upstream.requests) == before  # no request crossed an untrusted connection


@pytest.fixture(scope="module")
def mtls_upstream(ca: trustme.CA) -> Iterator[FakeUpstream]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
    with FakeUpstream(tls=context) as server:
        yield server


def test_mutual_tls_with_a_client_certificate(
    mtls_upstream: FakeUpstream, tinyproxy: Tinyproxy, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    client = ca.issue_cert("claude-proxy@example.com")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    key.write_bytes(client.private_key_pem.bytes())

    without = config_for(mtls_upstream, {"ca_bundle": ca_file, "max_retries": 0})
    with Server(without, env={}) as proxy:
        response = ask(proxy)
    assert response.status_code >= 500
    message = response.json()["error"]["message"]
    assert f"127.0.0.1:{mtls_upstream.port}" in message and "client_cert" in message, message

    upstream_table: dict[str, Any] = {"ca_bundle": ca_file, "client_cert": str(cert), "client_key": str(key)}
    with Server(config_for(mtls_upstream, upstream_table), env={}) as proxy:
        check_both_ways(proxy, mtls_upstream)
    # and through the tunnel: the client certificate is presented inside it
    before = len(tinyproxy.connects(mtls_upstream.port))
    with Server(config_for(mtls_upstream, upstream_table), env={"HTTPS_PROXY": tinyproxy.url}) as proxy:
        check_both_ways(proxy, mtls_upstream)
    assert len(tinyproxy.connects(mtls_upstream.port)) > before


def test_a_missing_ca_file_is_a_config_error(tls_upstream: FakeUpstream, tmp_path: Path) -> None:
    config = config_for(tls_upstream, {"ca_bundle": str(tmp_path / "nope.pem")})
    proxy = Server(config, env={})
    with pytest.raises(RuntimeError, match=r"'upstream.ca_bundle' names .*nope.pem, which does not exist"):
        proxy.start(timeout=10)


# -- reload without a restart ------------------------------------------------------------------------------------


def wait_for(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sighup_reloads_the_config_while_streams_in_flight_finish(upstream: FakeUpstream) -> None:
    def answer(request: Any) -> Any:
        model = request.json["model"]
        return paced_stream(3.0) if request.json.get("stream") else completion(f"answered by {model}")

    upstream.handler = answer
    try:
        config = proxy_config(upstream, models={"*": "old-model"})
        with Server(config, env={}) as proxy:
            pid = proxy.process.pid if proxy.process else 0
            assert ask(proxy).json()["content"][0]["text"] == "answered by old-model"

            # a stream begins on the old config and is in its upstream pause when the reload happens
            streamed = ask(proxy, stream=True)
            lines = streamed.iter_lines()
            first_text = next(line for line in lines if b"text_delta" in line)
            assert b"Hel" in first_text
            write_config(proxy.config_path, {**config, "port": proxy.port, "models": {"*": "new-model"}})
            os.kill(pid, signal.SIGHUP)
            assert wait_for(lambda: "config reloaded" in proxy.output()), proxy.output()

            # new requests get the new mapping (once the new worker answers)
            assert wait_for(lambda: ask(proxy).json()["content"][0]["text"] == "answered by new-model"), proxy.output()
            rest = b"\n".join(lines)
            assert b'"lo"' in rest and b"message_stop" in rest, rest  # the old stream finished, whole
            models = [r.json["model"] for r in upstream.requests if r.json and r.json.get("stream")]
            assert models[-1] == "old-model"  # on the config it started with

            # a broken config is refused with one line; the new mapping keeps serving
            proxy.config_path.write_text("[models\n")
            os.kill(pid, signal.SIGHUP)
            assert wait_for(lambda: "config reload refused" in proxy.output()), proxy.output()
            time.sleep(0.5)
            assert proxy.output().count("config reload refused") == 1, proxy.output()
            for _ in range(3):
                response = ask(proxy)
                assert response.status_code == 200, response.text
                assert response.json()["content"][0]["text"] == "answered by new-model"
            assert proxy.process is not None and proxy.process.poll() is None
    finally:
        upstream.handler = None


def test_gunicorn_hup_with_a_broken_config_keeps_serving_the_last_good_one(upstream: FakeUpstream) -> None:
    upstream.handler = lambda request: completion(f"answered by {request.json['model']}")
    try:
        config = proxy_config(upstream, models={"*": "first-model"})
        with GunicornServer(config, env={}) as server:
            pid = server.process.pid if server.process else 0
            assert ask(server).json()["content"][0]["text"] == "answered by first-model"
            text = server.config_path.read_text()

            server.config_path.write_text("[models\n")  # broken: gunicorn's HUP must not stop the service
            os.kill(pid, signal.SIGHUP)
            assert wait_for(lambda: "config reload refused" in server.output()), server.output()
            time.sleep(0.5)
            assert server.output().count("config reload refused") == 1, server.output()  # one worker, one line
            assert server.process is not None and server.process.poll() is None, server.output()
            assert ask(server).json()["content"][0]["text"] == "answered by first-model"

            server.config_path.write_text(text.replace('"first-model"', '"second-model"'))
            os.kill(pid, signal.SIGHUP)
            assert wait_for(lambda: ask(server).json()["content"][0]["text"] == "answered by second-model"), server.output()
    finally:
        upstream.handler = None


def test_a_reload_to_a_sqlite_store_path_that_cannot_be_is_refused(upstream: FakeUpstream, tmp_path: Path) -> None:
    """SIGHUP with a config whose `[teams] path` runs through a file: one line naming it, and the config before
    keeps serving (the check `claude-proxy` makes at start, made again on reload)."""
    upstream.handler = lambda request: completion(f"answered by {request.json['model']}")
    try:
        config = proxy_config(upstream, models={"*": "first-model"})
        with ProxyServer(config) as proxy:
            pid = proxy.process.pid if proxy.process else 0
            assert ask(proxy).json()["content"][0]["text"] == "answered by first-model"
            (tmp_path / "afile").write_text("")
            teams = {"store": "sqlite", "path": str(tmp_path / "afile" / "teams.db")}
            write_config(proxy.config_path, {**config, "port": proxy.port, "teams": teams})
            os.kill(pid, signal.SIGHUP)
            assert wait_for(lambda: "config reload refused" in proxy.output()), proxy.output()
            assert f"[teams] path: {tmp_path / 'afile'} is a file, not a directory" in proxy.output(), proxy.output()
            assert ask(proxy).json()["content"][0]["text"] == "answered by first-model"
            assert proxy.process is not None and proxy.process.poll() is None
    finally:
        upstream.handler = None
