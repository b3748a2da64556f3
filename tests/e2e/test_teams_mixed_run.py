"""The 10k-request mixed run on the embedded store: two `claude-proxy` instances × two workers on one
SQLite file, seven keys in two teams (and one without), three models (two priced, one not), streamed and
non-streamed requests, some streams cut by their client, and one worker SIGKILLed midway. Afterwards the
store's usage per key and model — from `claude-proxy usage --json` and from the admin API — equals the
local upstream's own tally exactly: 0 lost, 0 counted twice.

What counts, as the code decides it (claude_proxy/web/admin.py `usage_of`, pipeline/streaming.py):

- An answered request is one usage row with the tokens the upstream reported, priced from `[prices]`
  (unpriced models flagged, never free).
- A stream the client cuts is one row all the same (settled when the proxy's next write fails). What the
  upstream reported before the cut is what counts; for a translated (OpenAI-format) stream the usage chunk
  comes last, so a stream cut before it gets the proxy's estimate, flagged `estimated`: input = the
  prompt estimate the client already saw in `message_start`, output = the characters translated so far
  // 4 (a provider bills a cancelled answer for at least what it generated), priced at that. Here the
  upstream never sends its usage for those streams (it sends two pieces of text, then hangs), so both
  figures are known to the test and the estimate is asserted exactly.
- A request whose worker is SIGKILLed while it waits on the upstream never settles and is never answered:
  the upstream sees the connection go before it answers, and the store has no row for it.

The worker is killed while every in-flight request is held at the upstream and every finished one is
settled, so no request is caught between its last byte and its settlement (a window this run would
otherwise hit by chance). REQUESTS is 10 000; CLAUDE_PROXY_MIXED_REQUESTS overrides it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import proxy_config
from tests.e2e.test_teams import cli
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream, Hang, HangBeforeHeaders, Json, RecordedRequest, Stream, default_handler

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]
REQUESTS = int(os.environ.get("CLAUDE_PROXY_MIXED_REQUESTS", "10000"))
CLIENTS = 32
CUT_EVERY = 50  # every 50th request is a stream its client cuts after the first words
KEYS = 7  # k0..k5 alternate between teams alpha and beta; k6 has no team
# client model -> upstream model ([models]) and its price in USD per million tokens ([prices]);
# whole dollars per million tokens are whole micro-USD per token, so every cost here is exact
MODELS = {"claude-sonnet-4": "big-model", "claude-haiku-4": "fast-model", "claude-opus-4": "opus-model"}
PRICES = {"big-model": (3, 15), "fast-model": (1, 5)}  # opus-model: unpriced
PING = 0.2  # the proxy notices a cut stream on its next write: a ping this often


@dataclass(frozen=True)
class Answer:
    """What the upstream answered one request with: its tag, upstream model and reported usage."""

    rid: int
    tag: str
    model: str
    input: int
    output: int
    cut: bool
    sent_chars: int = 0  # a cut stream: the text the upstream sent before it hung


class Ledger:
    """The upstream's own tally: the echo answer of default_handler, its reported usage noted per request.

    `hold()` keeps new chat requests waiting before they are answered; one released after its proxy
    connection died (its worker was killed) is not answered, and noted as such."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[int, Answer] = {}  # by request tag (rid): what the upstream answered
        self.unanswered: set[int] = set()  # held, and the proxy connection was gone when released
        self.release = threading.Event()
        self.release.set()
        self.held = 0
        self.upstream: FakeUpstream | None = None

    def hold(self) -> None:
        self.release.clear()

    def __call__(self, req: RecordedRequest) -> Any:
        if not req.path.rstrip("/").endswith("/chat/completions"):
            return default_handler(req)
        found = re.match(r"r(\d+) (k\d+) ", req.json["messages"][-1]["content"])
        assert found, req.json
        rid = int(found[1])
        if not self.release.is_set():
            with self.lock:
                self.held += 1
            self.release.wait(120)
            with self.lock:
                self.held -= 1
            assert self.upstream is not None
            if self.upstream.client_gone(req):  # its worker was killed meanwhile: nobody to answer
                with self.lock:
                    self.unanswered.add(rid)
                return HangBeforeHeaders(None)
        response = default_handler(req)
        cut = " CUT " in req.json["messages"][-1]["content"]
        if cut:  # the first words, then nothing: the client leaves before any usage is reported
            assert isinstance(response, Stream)
            response = Stream([*response.items[:3], Hang()], done=False)
            reported = (0, 0)
            sent = sum(len(item["choices"][0]["delta"].get("content") or "") for item in response.items[:3]
                       if isinstance(item, dict) and item.get("choices"))
        elif isinstance(response, Json):
            reported = (response.body["usage"]["prompt_tokens"], response.body["usage"]["completion_tokens"])
        else:
            assert isinstance(response, Stream)
            usage = next(i["usage"] for i in response.items if isinstance(i, dict) and i.get("usage"))
            reported = (usage["prompt_tokens"], usage["completion_tokens"])
        with self.lock:
            assert rid not in self.answers, f"request r{rid} reached the upstream twice"
            self.answers[rid] = Answer(rid, found[2], str(req.json["model"]), *reported, cut, sent if cut else 0)
        return response


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def upstream(ledger: Ledger) -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.handler, ledger.upstream = ledger, up
        yield up


@pytest.fixture(scope="module")
def instances(upstream: FakeUpstream) -> Iterator[list[ProxyServer]]:
    store = Path(tempfile.mkdtemp(prefix="claude-proxy-teams-mixed-")) / "teams.db"
    config = proxy_config(
        upstream,
        models={"claude-haiku-*": "fast-model", "claude-opus-*": "opus-model", "*": "big-model"},
        prices={m: {"input": i, "output": o} for m, (i, o) in PRICES.items()},
        server={"ping_interval": PING},
        teams={"path": str(store), "lease_seconds": 3},
    )
    # held requests wait on the upstream for a few seconds: no read timeout (and so no retry) may fire
    config["upstream"] = {**config["upstream"], "read_timeout": 60.0}
    servers = [ProxyServer(config, workers=2, threads=48) for _ in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


class Run:
    """The clients' side: what each request saw, and how many are in flight."""

    def __init__(self, servers: list[ProxyServer], keys: list[str]) -> None:
        self.servers = servers
        self.keys = keys
        self.lock = threading.Lock()
        self.in_flight = 0
        self.seen: dict[int, str] = {}  # rid -> "ok" | "cut" | "killed"
        self.cut_input: dict[int, int] = {}  # rid -> the input tokens message_start announced (the estimate)

    def body(self, i: int) -> tuple[str, dict[str, Any]]:
        tag = f"k{i % KEYS}"
        model = list(MODELS)[(i // KEYS) % len(MODELS)]
        cut = i % CUT_EVERY == 0
        text = f"r{i} {tag} " + ("CUT " if cut else "") + "word " * (i % 9)
        return tag, {"model": model, "max_tokens": 64, "stream": cut or i % 5 < 2,
                     "messages": [{"role": "user", "content": text}]}

    def one(self, i: int) -> None:
        tag, body = self.body(i)
        data = json.dumps(body).encode()
        server = self.servers[i % 2]
        key = self.keys[int(tag[1:])]
        with self.lock:
            self.in_flight += 1
        try:
            if i % CUT_EVERY == 0:
                seen, announced = self._cut(server, key, data)
                if announced is not None:
                    self.cut_input[i] = announced
            else:
                seen = self._whole(server, key, data, body["stream"])
        finally:
            with self.lock:
                self.in_flight -= 1
        if seen == "killed" and server is not self.servers[0]:  # only the first instance loses a worker
            code = server.process.poll() if server.process is not None else None
            state = "still runs" if code is None else f"exited with {code}"
            tail = "\n".join(server.output().splitlines()[-30:])
            raise AssertionError(f"instance 1 refused request r{i} (it {state}); its output ends:\n{tail}")
        with self.lock:
            self.seen[i] = seen

    def _whole(self, server: ProxyServer, key: str, data: bytes, stream: bool) -> str:
        headers = {"x-api-key": key, "content-type": "application/json"}
        try:
            r = requests.post(server.url + "/v1/messages", data=data, headers=headers, timeout=60)
        except requests.ConnectionError:
            return "killed"
        assert r.status_code == 200, r.text
        if stream:
            assert r.text.rstrip().endswith('data: {"type":"message_stop"}'), r.text[-300:]
        else:
            assert r.json()["content"][0]["text"].startswith("echo: r")
        return "ok"

    @staticmethod
    def _cut(server: ProxyServer, key: str, data: bytes) -> tuple[str, int | None]:
        """Read up to the first text delta, then close the socket; the input tokens message_start announced."""
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.request("POST", "/v1/messages", body=data,
                         headers={"x-api-key": key, "content-type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            announced = None
            while b"content_block_delta" not in (line := response.readline()):
                assert line, "the stream ended before its first words"
                if line.startswith(b"data: ") and b'"message_start"' in line:
                    announced = json.loads(line[6:])["message"]["usage"]["input_tokens"]
            return "cut", announced
        except (ConnectionError, http.client.HTTPException):
            return "killed", None
        finally:
            conn.close()

    def done(self) -> int:
        with self.lock:
            return len(self.seen)

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(self.seen.values())


def _workers(server: ProxyServer) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _stored_rows(server: ProxyServer, admin: str) -> int:
    return int(requests.get(server.url + "/admin/v1/status", headers={"x-api-key": admin}, timeout=10)
               .json()["usage_events"])


def _wait(condition: Any, what: str, timeout: float = 30, detail: Any = None) -> None:
    """Poll `condition` until it holds; past `timeout` fail, saying `what` and (when given) `detail()`, the
    figures that did not meet."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting: {what}" + (f" ({detail()})" if detail is not None else ""))
        time.sleep(0.02)


def _settling(instances: list[ProxyServer], admin: str, finished: int) -> str:
    """What a settlement wait that timed out saw: the rows each instance counts in the one SQLite file against
    the finished requests, the /v1/messages lines each instance's request log has, and their own complaints
    about the store (a store error loses the row, and says so in the log)."""
    rows = [_stored_rows(server, admin) for server in instances]
    logged = [sum(1 for line in server.journal() if line.get("endpoint") == "messages") for server in instances]
    complaints = [line for server in instances for line in server.output().splitlines()
                  if "teams:" in line or ("settl" in line and ("could not" in line or "failed" in line))]
    return (f"usage rows counted through each instance {rows} for {finished} finished requests; "
            f"request-log lines per instance {logged}; {len(complaints)} store complaints logged"
            + (f", the last: {complaints[-1][:300]}" if complaints else ""))


def _table(rows: list[dict[str, Any]], ids: dict[str, str]) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        tag = ids.get(row["key"])
        if tag is None:
            continue
        for name in ("requests", "input_tokens", "output_tokens", "cost_micros", "estimated", "unpriced"):
            out[(tag, row["model"], name)] += int(row[name])
    return out


def test_10k_mixed_requests_with_a_worker_killed_count_every_token_once(
    instances: list[ProxyServer], ledger: Ledger
) -> None:
    cli(instances[0], "teams", "create", "alpha")
    cli(instances[0], "teams", "create", "beta")
    made = [cli(instances[0], "keys", "create", "--owner", f"mixed{n}@example.com",
                *(("--team", ("alpha", "beta")[n % 2]) if n < KEYS - 1 else ()))
            for n in range(KEYS)]
    admin = cli(instances[0], "keys", "create", "--owner", "mixed-admin@example.com", "--admin")["key"]
    run = Run(instances, [m["key"] for m in made])
    killed_pid: list[int] = []
    chaos_failed: list[BaseException] = []  # why the worker was not killed, for the test's own failure

    def kill_midway() -> None:
        try:
            hold_and_kill()
        except BaseException as exc:
            chaos_failed.append(exc)
            raise

    def hold_and_kill() -> None:
        _wait(lambda: run.done() >= REQUESTS // 2, "half the run", timeout=600)
        ledger.hold()
        try:
            # every client waits at the upstream, and every request that finished has settled
            _wait(lambda: run.in_flight == ledger.held == CLIENTS, "every client held at the upstream")
            _wait(lambda: _stored_rows(instances[1], admin) == run.done(), "every finished request settled",
                  detail=lambda: _settling(instances, admin, run.done()))
            victim = _workers(instances[0])[0]
            os.kill(victim, signal.SIGKILL)
            killed_pid.append(victim)
            _wait(lambda: victim not in _workers(instances[0]), "the arbiter to reap the killed worker")
        finally:
            ledger.release.set()

    chaos = threading.Thread(target=kill_midway, daemon=True)
    chaos.start()
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(run.one, range(REQUESTS)))
    elapsed = time.monotonic() - started
    chaos.join(30)
    assert killed_pid, f"the worker was never killed: {chaos_failed[0] if chaos_failed else 'no error'}"

    seen = run.counts()
    assert sum(seen.values()) == REQUESTS
    assert 1 <= seen["killed"] < CLIENTS  # only the victim's held requests
    assert seen["cut"] + sum(1 for i, s in run.seen.items() if s == "killed" and i % CUT_EVERY == 0) \
        == len(range(0, REQUESTS, CUT_EVERY))
    _wait(lambda: _stored_rows(instances[1], admin) == seen["ok"] + seen["cut"], "every request settled", 60,
          detail=lambda: _settling(instances, admin, seen["ok"] + seen["cut"]))

    # the upstream's view agrees with the clients': answered = seen whole or cut; never answered = killed
    assert set(ledger.answers) == {rid for rid, s in run.seen.items() if s != "killed"}
    assert ledger.unanswered == {rid for rid, s in run.seen.items() if s == "killed"}
    answered = ledger.answers

    ids = {m["id"]: f"k{n}" for n, m in enumerate(made)}
    expected: Counter[tuple[str, str, str]] = Counter()
    for a in answered.values():
        tokens_in, tokens_out = (run.cut_input[a.rid], a.sent_chars // 4) if a.cut else (a.input, a.output)
        expected[(a.tag, a.model, "requests")] += 1
        expected[(a.tag, a.model, "input_tokens")] += tokens_in
        expected[(a.tag, a.model, "output_tokens")] += tokens_out
        expected[(a.tag, a.model, "estimated")] += a.cut
        if a.model in PRICES:
            price_in, price_out = PRICES[a.model]
            expected[(a.tag, a.model, "cost_micros")] += tokens_in * price_in + tokens_out * price_out
        else:
            expected[(a.tag, a.model, "unpriced")] += 1

    stored = _table(cli(instances[1], "usage", "--since", "1h", "--by", "key", "model"), ids)
    assert +stored == +expected  # per key and model: 0 lost, 0 counted twice
    api = requests.get(instances[0].url + "/admin/v1/usage", params={"group_by": "key,model"},
                       headers={"x-api-key": admin}, timeout=10).json()["data"]
    assert +_table(api, ids) == +expected

    teams = {r["team"]: r for r in cli(instances[0], "usage", "--since", "1h", "--by", "team")}
    for n, team in enumerate(("alpha", "beta")):
        tags = {f"k{k}" for k in range(n, KEYS - 1, 2)}
        for name in ("requests", "input_tokens", "output_tokens", "cost_micros"):
            assert teams[team][name] == sum(v for (t, _, f), v in expected.items() if t in tags and f == name)
    me = requests.get(instances[1].url + "/v1/me", headers={"x-api-key": made[0]["key"]}, timeout=10).json()
    spend = {s["kind"]: round(s["month_spend_usd"] * 1e6) for s in me["scopes"]}
    assert spend["key"] == sum(v for (t, _, f), v in expected.items() if t == "k0" and f == "cost_micros")
    print(f"\n{REQUESTS} requests in {elapsed:.1f} s ({REQUESTS / elapsed:.0f}/s): {dict(seen)}")
