"""Behind nginx: Debian's nginx load-balancing two instances, run from the shipped docs/nginx.conf.

One instance is the `claude-proxy` command, the other `gunicorn wsgi:app --threads 32` exactly as
the README says. nginx runs unprivileged-style from a temporary directory (`daemon off`, its pid,
logs and temp paths inside it) on a free loopback port.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import pytest
import requests

from tests.conftest import proxy_config
from tests.support.gunicorn_server import GunicornServer, kill_tree, wait_gone
from tests.support.proxy_server import ROOT, ProxyServer
from tests.support.upstream import FakeUpstream, Json, Sleep, Stream, chunk, completion, free_port, usage_chunk

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.e2e,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
]

SNIPPET = ROOT / "docs" / "nginx.conf"


def site_config(port: int, a: int, b: int) -> str:
    """docs/nginx.conf with the test's ports: the shipped snippet itself is what runs."""
    text = SNIPPET.read_text()
    for old, new in (
        ("server 127.0.0.1:4222 ", f"server 127.0.0.1:{a} "),
        ("server 127.0.0.1:4223 ", f"server 127.0.0.1:{b} "),
        ("    listen 80;\n", f"    listen 127.0.0.1:{port};\n"),
    ):
        assert text.count(old) == 1, f"docs/nginx.conf no longer contains {old!r} exactly once"
        text = text.replace(old, new)
    return text


def main_config(directory: Path, site: str, buffered_port: int) -> str:
    """The top-level nginx.conf around the snippet: everything nginx writes stays in `directory`."""
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    d = directory
    return f"""
daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
{user}
events {{ worker_connections 256; }}
http {{
    log_format ids '$status $request_method $request_uri rid=$claude_proxy_request_id up=$upstream_addr';
    access_log {d}/access.log ids;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

{site}

    # Test only: a careless location — nginx's default proxy_buffering on, and gzip for everything
    # (gzip holds a buffered response back until its buffer fills). claude-proxy's
    # X-Accel-Buffering: no must still make its streams flow.
    server {{
        listen 127.0.0.1:{buffered_port};
        gzip on;
        gzip_types text/event-stream application/json;
        location / {{
            proxy_pass http://claude_proxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class Nginx:
    directory: Path
    port: int
    buffered_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def buffered_url(self) -> str:
        return f"http://127.0.0.1:{self.buffered_port}"

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""

    def access_log(self) -> list[str]:
        path = self.directory / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_nginx(directory: Path, a: int, b: int) -> Nginx:
    assert NGINX is not None
    port, buffered_port = free_port(), free_port()
    conf = directory / "nginx.conf"
    conf.write_text(main_config(directory, site_config(port, a, b), buffered_port))
    check = subprocess.run(
        [NGINX, "-t", "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen(
        [NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nginx = Nginx(directory, port, buffered_port, process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{nginx.error_log()}")
        try:
            if requests.get(nginx.url + "/health", timeout=1).status_code == 200:
                return nginx
        except requests.RequestException:
            pass
        time.sleep(0.05)
    nginx.stop()
    raise RuntimeError(f"nginx did not come up:\n{nginx.error_log()}")


@dataclass
class Stack:
    nginx: Nginx
    a: ProxyServer  # the claude-proxy command
    b: GunicornServer  # gunicorn wsgi:app --threads 32

    def close(self) -> None:
        self.nginx.stop()
        self.a.stop()
        self.b.stop()


def start_stack(upstream: FakeUpstream, directory: Path) -> Stack:
    # TMPDIR: the metrics directory of an instance the test kills (no cleanup) stays in the test's tmp.
    a = ProxyServer(proxy_config(upstream), workers=1, threads=16, env={"TMPDIR": str(directory)}).start()
    try:
        b = GunicornServer(proxy_config(upstream), "wsgi:app", threads=32).start()
    except Exception:
        a.stop()
        raise
    try:
        nginx = start_nginx(directory, a.port, b.port)
    except Exception:
        a.stop()
        b.stop()
        raise
    return Stack(nginx, a, b)


@pytest.fixture(scope="module")
def stack(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_stack(upstream, tmp_path_factory.mktemp("nginx"))
    yield s
    s.close()


_clients: list[anthropic.Anthropic] = []


def sdk(url: str) -> anthropic.Anthropic:
    """The official SDK pointed at nginx (closed at the end of the module)."""
    client = anthropic.Anthropic(base_url=url, api_key="client-key", max_retries=0, timeout=20)
    _clients.append(client)
    return client


@pytest.fixture(autouse=True, scope="module")
def _close_clients() -> Iterator[None]:
    yield
    for client in _clients:
        client.close()


def message(stream: bool = False, text: str = "hi") -> dict[str, object]:
    return {
        "model": "claude-sonnet-5",
        "max_tokens": 20,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }


def text_arrivals(url: str, headers: dict[str, str] | None = None) -> tuple[list[tuple[float, str]], list[str]]:
    """(seconds since the request, text) for each text delta, and the event names in order."""
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    events: list[str] = []
    with requests.post(
        url + "/v1/messages", json=message(stream=True), headers=headers, stream=True, timeout=20
    ) as response:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(b"event:"):
                events.append(line[6:].strip().decode())
            if line.startswith(b"data:") and b"text_delta" in line:
                arrivals.append((time.monotonic() - started, json.loads(line[5:])["delta"]["text"]))
    return arrivals, events


GAP = 1.2  # the pause the upstream takes between the two halves of its answer


def paused_stream() -> Stream:
    return Stream(
        [chunk(content="first"), Sleep(GAP), chunk(content=" second", finish_reason="stop"), usage_chunk(5, 2)]
    )


@pytest.mark.parametrize("which", ["proxy_buffering off", "buffering and gzip on, X-Accel-Buffering: no"])
def test_stream_arrives_through_nginx_incrementally(stack: Stack, upstream: FakeUpstream, which: str) -> None:
    upstream.enqueue(paused_stream(), path="/chat/completions")
    url = stack.nginx.url if which == "proxy_buffering off" else stack.nginx.buffered_url
    arrivals, events = text_arrivals(url)
    assert [text for _, text in arrivals] == ["first", " second"]
    # "first" reached the client before the upstream's pause was over, not together with " second"
    assert arrivals[1][0] - arrivals[0][0] >= GAP * 0.75, arrivals
    assert events[-2:] == ["message_delta", "message_stop"]


def test_sdk_streams_and_creates_through_nginx(stack: Stack, upstream: FakeUpstream) -> None:
    client = sdk(stack.nginx.url)
    upstream.enqueue(Json(completion("plain answer", prompt_tokens=12, completion_tokens=3)), path="/chat/completions")
    created = client.messages.create(**message())  # type: ignore[arg-type]
    assert created.content[0].text == "plain answer" and created.usage.input_tokens == 12
    upstream.enqueue(paused_stream(), path="/chat/completions")
    with client.messages.stream(
        model="claude-sonnet-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "first second" and final.stop_reason == "end_turn"


def test_request_ids_survive_nginx(stack: Stack, upstream: FakeUpstream) -> None:
    # No id from the client: nginx makes one ($request_id, 32 hex digits) and everyone uses it.
    upstream.enqueue(Json(completion("x")), path="/chat/completions")
    response = requests.post(stack.nginx.url + "/v1/messages", json=message(text="id-probe-1"), timeout=20)
    assert response.status_code == 200
    rid = response.headers["request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid), rid  # nginx's, not the proxy's own req_… id
    sent = next(r for r in reversed(upstream.requests) if b"id-probe-1" in r.body)
    assert sent.headers["x-request-id"] == rid  # passed on to the provider
    journals = stack.a.journal() + stack.b.journal()
    assert [r["status"] for r in journals if r["request_id"] == rid] == [200]  # in the proxy's log
    # and nginx's (it logs once the response is done, which can be a moment after the client has it)
    deadline = time.monotonic() + 5
    while not any(f"rid={rid} " in line for line in stack.nginx.access_log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(f"rid={rid} " in line for line in stack.nginx.access_log())

    # An id the client sent is kept end to end, for streams too.
    upstream.enqueue(paused_stream(), path="/chat/completions")
    with requests.post(
        stack.nginx.url + "/v1/messages",
        json=message(stream=True),
        stream=True,
        timeout=20,
        headers={"X-Request-Id": "client-trace-42"},
    ) as streamed:
        assert streamed.headers["request-id"] == "client-trace-42"
        assert "message_stop" in streamed.text
    assert upstream.requests[-1].headers["x-request-id"] == "client-trace-42"

    # Error envelopes carry it as well.
    bad = requests.post(
        stack.nginx.url + "/v1/messages", json={"model": "x"}, timeout=20, headers={"X-Request-Id": "client-trace-43"}
    )
    assert bad.status_code == 400
    assert bad.headers["request-id"] == "client-trace-43" and bad.json()["request_id"] == "client-trace-43"


def test_both_instances_serve(stack: Stack, upstream: FakeUpstream) -> None:
    before_a, before_b = len(stack.a.journal()), len(stack.b.journal())
    for i in range(6):
        upstream.enqueue(Json(completion(f"answer {i}")), path="/chat/completions")
        response = requests.post(stack.nginx.url + "/v1/messages", json=message(), timeout=20)
        assert response.json()["content"][0]["text"] == f"answer {i}"
    served_a, served_b = len(stack.a.journal()) - before_a, len(stack.b.journal()) - before_b
    assert served_a + served_b == 6
    assert served_a >= 2 and served_b >= 2, (served_a, served_b)  # round robin


def test_a_killed_instance_fails_no_request(upstream: FakeUpstream, tmp_path: Path) -> None:
    stack = start_stack(upstream, tmp_path)
    try:
        for _ in range(4):  # warm both instances (and nginx's keep-alive connections to them)
            assert requests.get(stack.nginx.url + "/v1/models", timeout=20).status_code == 200
        victim, survivor = stack.a, stack.b
        wait_gone(kill_tree(victim.process.pid))  # SIGKILL the master and its workers: a crash
        victim.process.wait(5)
        time.sleep(0.2)  # the kernel's FINs reach nginx's idle connections (in-flight requests could not be saved)
        before = len(survivor.journal())
        client = sdk(stack.nginx.url)
        for i in range(8):
            upstream.enqueue(Json(completion(f"after {i}")), path="/chat/completions")
            created = client.messages.create(**message())  # type: ignore[arg-type]
            assert created.content[0].text == f"after {i}"
            upstream.enqueue(
                paused_stream() if i == 0 else Stream([chunk(content=f"s{i}", finish_reason="stop")]),
                path="/chat/completions",
            )
            with client.messages.stream(
                model="claude-sonnet-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                assert stream.get_final_message().stop_reason == "end_turn"
            assert (
                client.messages.count_tokens(
                    model="claude-sonnet-5", messages=[{"role": "user", "content": "hi"}]
                ).input_tokens
                > 0
            )
            assert requests.get(stack.nginx.url + "/v1/models", timeout=20).status_code == 200
        assert len(survivor.journal()) - before == 8 * 3  # messages, stream, count_tokens: all on the survivor
        refused = "connect() failed (111: Connection refused) while connecting to upstream"
        log = stack.nginx.error_log()
        assert refused in log and f"127.0.0.1:{victim.port}" in log  # nginx did try the dead one, and moved on

        # Nothing left: nginx's own 502 is an Anthropic envelope, which clients understand and retry.
        wait_gone(kill_tree(survivor.process.pid))
        survivor.process.wait(5)
        down = requests.post(stack.nginx.url + "/v1/messages", json=message(), timeout=20)
        assert down.status_code == 502
        assert down.headers["content-type"].startswith("application/json")
        assert down.json()["type"] == "error" and down.json()["error"]["type"] == "api_error"
    finally:
        stack.close()
