"""Bad-input fuzzing: whatever the body, the answer is an Anthropic envelope (or a valid answer),
never a 500, never a traceback.

Hypothesis generates random JSON, random bytes, deep nesting, huge strings and realistic
requests with a wrong type (or nothing) at one field. Volume goes through the Flask test
client (same app, in process, real upstream on a socket); a smaller share goes through the
running gunicorn server, whose console must stay free of tracebacks.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_proxy.config.loader import load_config
from claude_proxy.translate.errors import TYPE_STATUS
from claude_proxy.web.app import create_app
from tests.conftest import proxy_config
from tests.support.fixtures import CLAUDE_CODE_FIXTURES
from tests.support.grammar import check_grammar
from tests.support.proxy_server import ProxyServer
from tests.support.sse_client import parse_sse
from tests.support.upstream import FakeUpstream

FIXTURES = CLAUDE_CODE_FIXTURES
ENDPOINTS = ("/v1/messages", "/v1/messages/count_tokens")

RICH = {
    "model": "claude-sonnet-5",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "use Bash", "signature": "sig"},
                {"type": "text", "text": "Running ls."},
                {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "a\nb"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
                {"type": "text", "text": "and now?"},
            ],
        },
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
        }
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2000},
    "metadata": {"user_id": "user_abc"},
    "stop_sequences": ["\n\nHuman:"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "stream": False,
}


def _claude_code_base() -> dict[str, Any]:
    files = sorted(FIXTURES.glob("*.json"))
    if not files:
        return copy.deepcopy(RICH)
    body = json.loads(files[-1].read_text())
    body["tools"] = body.get("tools", [])[:3]  # the full tool list is 64 KB: three keep its shape
    return body


BASES = [RICH, _claude_code_base()]


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_of(item, (*prefix, index))


PATHS = [(i, p) for i, base in enumerate(BASES) for p in paths_of(base) if p]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
DELETE = object()


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A realistic request with one field replaced by a value of a wrong (or any) type, or removed."""
    base_index, path = draw(st.sampled_from(PATHS))
    body = copy.deepcopy(BASES[base_index])
    target = body
    for step in path[:-1]:
        target = target[step]
    replacement = draw(st.one_of(st.just(DELETE), json_values))
    if replacement is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = replacement
    if draw(st.booleans()):
        body["stream"] = draw(st.sampled_from([True, False, "yes", 1, None]))
    return json.dumps(body).encode()


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=200_000))
    kind = draw(st.sampled_from(["list", "object", "content", "input"]))
    if kind == "list":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    inner = '{"x":' * min(depth, 5000) + "1" + "}" * min(depth, 5000)
    if kind == "content":
        body = (
            '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"hi","extra":'
            + inner
            + "}]}]}"
        )
    else:
        body = (
            '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":'
            '[{"type":"tool_use","id":"toolu_1","name":"Bash","input":' + inner + "}]},"
            '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]}'
        )
    return body.encode()


@st.composite
def huge_strings(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(min_value=1 << 20, max_value=6 << 20))
    char = draw(st.sampled_from(["a", "é", "\u2028", "\\", '"', "\x00", "🙂"]))
    where = draw(st.sampled_from(["content", "model", "system", "key", "tool_name"]))
    text = char * (size // len(char.encode()))
    body: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
    }
    if where == "content":
        body["messages"][0]["content"] = text
    elif where == "model":
        body["model"] = text
    elif where == "system":
        body["system"] = text
    elif where == "key":
        body[text[:100_000]] = 1
    else:
        body["tools"] = [{"name": text[:200_000], "input_schema": {"type": "object"}}]
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


random_json = json_values.map(lambda v: json.dumps(v).encode())
nan_json = st.sampled_from([b'{"model":NaN}', b'{"max_tokens":Infinity}', b"[-Infinity]", b'{"a":1,}', b"{'a':1}"])
random_bytes = st.binary(max_size=2000)
bad_utf8 = st.binary(min_size=1, max_size=200).map(lambda b: b'{"model":"' + b + b'\xff\xfe"}')
any_body = st.one_of(mutated_requests(), random_json, random_bytes, nan_json, bad_utf8, deep_nesting())


def check(status: int, content_type: str, body: bytes) -> None:
    """The contract: an Anthropic envelope with a matching status, or a well-formed answer."""
    assert status != 500 and status < 600, (status, body[:500])
    assert b"Traceback" not in body and b'File "' not in body, body[:500]
    if status >= 400:
        assert content_type.startswith("application/json"), (status, content_type)
        envelope = json.loads(body)
        assert envelope["type"] == "error", envelope
        error = envelope["error"]
        assert error["type"] in TYPE_STATUS, error
        assert isinstance(error["message"], str) and error["message"], error
        return
    assert status == 200, (status, body[:300])
    if content_type.startswith("text/event-stream"):
        events = parse_sse(body)
        check_grammar(events)
        return
    answer = json.loads(body)
    assert answer.get("type") == "message" or set(answer) == {"input_tokens"}, answer


FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    database=None,
)

# -- volume: the Flask test client --------------------------------------------------------------


@pytest.fixture(scope="module")
def client(upstream: FakeUpstream) -> Any:
    return create_app(load_config(data=proxy_config(upstream), env={})).test_client()


def post_test_client(client: Any) -> Callable[[str, bytes], None]:
    def send(path: str, body: bytes) -> None:
        response = client.post(path, data=body, content_type="application/json")
        check(response.status_code, response.content_type or "", response.get_data())

    return send


@settings(FUZZ, max_examples=400)
@given(body=any_body, path=st.sampled_from(ENDPOINTS))
def test_fuzz_test_client(client: Any, body: bytes, path: str) -> None:
    post_test_client(client)(path, body)


@settings(FUZZ, max_examples=500)
@given(body=mutated_requests())
def test_fuzz_wrong_types_at_every_field(client: Any, body: bytes) -> None:
    post_test_client(client)("/v1/messages", body)


@settings(FUZZ, max_examples=12)
@given(body=huge_strings(), path=st.sampled_from(ENDPOINTS))
def test_fuzz_huge_strings(client: Any, body: bytes, path: str) -> None:
    post_test_client(client)(path, body)


def test_every_field_of_the_bases_is_reachable() -> None:
    """The mutation strategy really covers every field (not just the top level)."""
    assert len(PATHS) > 100
    assert (0, ("messages", 2, "content", 1, "source", "media_type")) in PATHS


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" ",
        b"null",
        b"[]",
        b"{}",
        b'"string"',
        b"\xef\xbb\xbf{}",
        b'{"model": "m", "max_tokens": 1, "messages": []}',
        b'{"model": "m", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "m", "max_tokens": 1e400, "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "m", "max_tokens": 18446744073709551617, "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [null]}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use"}]}]}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "system": [1]}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": "on"}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "metadata": []}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": "x"}',
        b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
        b'{"model": ["m"], "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "m", "max_tokens": true, "messages": [{"role": "user", "content": "x"}]}',
    ],
)
def test_known_nasty_bodies(client: Any, body: bytes) -> None:
    for path in ENDPOINTS:
        post_test_client(client)(path, body)


# -- against the running server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.mark.e2e
@settings(FUZZ, max_examples=150)
@given(body=any_body, path=st.sampled_from(ENDPOINTS))
def test_fuzz_running_server(proxy: ProxyServer, session: requests.Session, body: bytes, path: str) -> None:
    response = session.post(proxy.url + path, data=body, headers={"content-type": "application/json"}, timeout=30)
    check(response.status_code, response.headers.get("content-type", ""), response.content)


@pytest.mark.e2e
@settings(FUZZ, max_examples=4)
@given(body=huge_strings())
def test_fuzz_running_server_huge(proxy: ProxyServer, session: requests.Session, body: bytes) -> None:
    response = session.post(proxy.url + "/v1/messages", data=body, timeout=60)
    check(response.status_code, response.headers.get("content-type", ""), response.content)


@pytest.mark.e2e
def test_odd_wire_requests_on_the_running_server(proxy: ProxyServer, session: requests.Session) -> None:
    url = proxy.url + "/v1/messages"
    cases = [
        session.post(url, data=b"{}", headers={"content-type": "text/plain"}, timeout=10),
        session.post(url, data=b'{"a":1}', headers={"content-type": "application/x-www-form-urlencoded"}, timeout=10),
        session.post(url, data=iter([b'{"model":', b'"m"}']), timeout=10),  # chunked
        session.post(url, data=b"\x1f\x8b\x08\x00", headers={"content-encoding": "gzip"}, timeout=10),
        session.get(url, timeout=10),
        session.put(url, data=b"{}", timeout=10),
        session.request("PROPFIND", url, timeout=10),
        session.post(proxy.url + "/v1/messages?beta=true&x=%ff", data=b"[]", timeout=10),
        session.get(proxy.url + "/v1/models/" + "a" * 5000, timeout=10),
        session.post(url, data=b"{}", headers={"x-request-id": "bad id\u00e9!" * 50}, timeout=10),
    ]
    for response in cases:
        check(response.status_code, response.headers.get("content-type", ""), response.content)
    assert cases[-1].headers["request-id"].startswith("req_")


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST /v1/messages HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
        (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_malformed_http_gets_an_envelope_too(proxy: ProxyServer, raw: bytes, status: int) -> None:
    """What gunicorn rejects before the app runs is still answered in the Anthropic format."""
    import socket

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while piece := sock.recv(65536):
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d" % status), data[:300]
    assert b"content-type: application/json" in head.lower()
    check(status, "application/json", body)


@pytest.mark.e2e
def test_the_server_console_has_no_traceback(proxy: ProxyServer) -> None:
    """Runs after the server fuzzing above (same module-scoped server)."""
    output = proxy.output()
    assert "Traceback" not in output and "unhandled error" not in output, output[-3000:]
