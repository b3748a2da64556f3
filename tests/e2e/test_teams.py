"""Teams end to end: two `claude-proxy` instances × two gunicorn workers on one SQLite file, counted exactly.

Keys come from the real CLI; requests go through real sockets to a local upstream that can hold its
answers and counts its own peak concurrency. Counts, never timings. test_teams_distributed.py runs
most of these tests again on PostgreSQL + Redis (its own `instances` and `store_kind` fixtures).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from claude_proxy.config.teams import TeamsSettings
from claude_proxy.teams.gate import Gate
from claude_proxy.teams.records import Admitted, Principal, Usage
from tests.conftest import proxy_config
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream, RecordedRequest, Response, default_handler

STATIC_KEY = "static-door-key-for-teams-tests"
BODY = {"model": "claude-sonnet-4", "max_tokens": 16, "messages": [{"role": "user", "content": "hello there"}]}
LEASE_SECONDS = 3
CREATED_KEYS: list[str] = []
# USD per million tokens for the upstream model: "hello there" is 2 prompt tokens and "echo: hello there"
# 3 completion tokens at the local upstream, so each BODY request costs 2·3000 + 3·15000 µUSD = $0.051.
PRICES = {"big-model": {"input": 3000, "output": 15000}}
REQUEST_COST_MICROS = 2 * 3000 + 3 * 15000
# What /admin/v1/status says on each backend when every store answers (test_teams_distributed: "postgres").
STORE_STATUS: dict[str, dict[str, Any]] = {
    "sqlite": {"store": "sqlite", "journal_mode": "wal"},
    "postgres": {"store": "postgres", "ledger": "up", "limiter": "redis", "limiter_state": "up"},
}


class Holder:
    """An upstream handler that can hold answers until released, and counts how many it held at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.release = threading.Event()
        self.release.set()

    def hold(self) -> None:
        with self.lock:
            self.active = self.peak = 0
        self.release.clear()

    def __call__(self, req: RecordedRequest) -> Response:
        if req.path.rstrip("/").endswith("/chat/completions"):
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                self.release.wait(60)
            finally:
                with self.lock:
                    self.active -= 1
        return default_handler(req)


@pytest.fixture(scope="module")
def holder() -> Holder:
    return Holder()


@pytest.fixture(scope="module")
def store_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="claude-proxy-teams-"))


@pytest.fixture(scope="module")
def store_kind() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def upstream(holder: Holder) -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.handler = holder
        yield up


@pytest.fixture(scope="module")
def instances(upstream: FakeUpstream, store_dir: Path) -> Iterator[list[ProxyServer]]:
    config = proxy_config(
        upstream,
        server={"ping_interval": 0.5, "auth_keys": [STATIC_KEY]},
        teams={"path": str(store_dir / "teams.db"), "lease_seconds": LEASE_SECONDS},
        prices=PRICES,
    )
    per_key = {**config, "teams": {**config["teams"], "metrics_per_key": True}}
    servers = [ProxyServer(per_key if n == 0 else config, workers=2, threads=48) for n in range(2)]  # key metrics on 0
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def cli(server: ProxyServer, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "claude_proxy", *args, "--json", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    if isinstance(data, dict) and "key" in data:
        CREATED_KEYS.append(data["key"])
    return data


def post(server: ProxyServer, key: str, body: dict[str, Any] | None = None, **headers: str) -> requests.Response:
    return requests.post(server.url + "/v1/messages", json=body or BODY, headers={"x-api-key": key, **headers},
                         timeout=60)


def get_me(server: ProxyServer, key: str) -> Any:
    """GET /v1/me for `key`: its scopes with live headroom and in-flight counts."""
    r = requests.get(server.url + "/v1/me", headers={"x-api-key": key}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def many(servers: list[ProxyServer], key: str, n: int, threads: int = 64) -> list[requests.Response]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: post(servers[i % len(servers)], key), range(n)))


def settled(server: ProxyServer, key_id: str, n: int, timeout: float = 15) -> dict[str, Any]:
    """The key's usage row once its `n` requests are in the store — settlement runs after the last byte,
    and on PostgreSQL the record reaches the ledger from the worker's spool in a batch: polled, with a deadline."""
    deadline, rows = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        rows = cli(server, "usage", "--key", key_id, "--by", "key")
        if rows and rows[0]["requests"] == n:
            return dict(rows[0])
        time.sleep(0.05)
    raise AssertionError(f"usage for {key_id} never reached {n} requests: {rows}")


def chat_requests(upstream: FakeUpstream) -> int:
    return sum(1 for r in upstream.requests if r.path.rstrip("/").endswith("/chat/completions"))


def test_a_limit_of_100_per_hour_admits_exactly_100_of_400_across_2x2(
    instances: list[ProxyServer], upstream: FakeUpstream
) -> None:
    key = cli(instances[0], "keys", "create", "--owner", "rpm@example.com", "--rpm", "100/hour")["key"]
    before = chat_requests(upstream)
    responses = many(instances, key, 400)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100 and statuses.count(429) == 300
    assert chat_requests(upstream) - before == 100  # refused requests never reached the upstream
    for r in responses:
        if r.status_code == 429:
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert int(r.headers["retry-after"]) >= 1
            assert "100 requests per hour" in r.json()["error"]["message"]


def test_a_concurrency_limit_of_5_gives_an_upstream_peak_of_exactly_5(
    instances: list[ProxyServer], holder: Holder
) -> None:
    key = cli(instances[1], "keys", "create", "--owner", "conc@example.com", "--max-concurrent", "5")["key"]
    holder.hold()
    try:
        with ThreadPoolExecutor(40) as pool:
            futures = [pool.submit(post, instances[i % 2], key) for i in range(40)]
            refused = [f.result() for f in futures if _done_soon(f)]
            deadline = time.monotonic() + 30
            while len(refused) < 35 and time.monotonic() < deadline:
                refused = [f.result() for f in futures if f.done()]
                time.sleep(0.05)
            assert len(refused) == 35 and all(r.status_code == 429 for r in refused)
            assert holder.active == 5
            holder.release.set()
            answered = [f.result() for f in futures]
        assert sum(r.status_code == 200 for r in answered) == 5
        assert holder.peak == 5
        # a lease is released when its request settles, just after the client has its last byte: wait for
        # that (well inside LEASE_SECONDS, so a lease that leaked and only expires would still fail here)
        deadline = time.monotonic() + 1.0
        while (busy := [s["in_flight"] for s in get_me(instances[0], key)["scopes"] if s["kind"] == "key"]) != [0]:
            assert time.monotonic() < deadline, f"leases still held after the requests ended: {busy}"
            time.sleep(0.02)
        assert all(r.status_code == 200 for r in many(instances, key, 5, threads=5))  # leases were released
    finally:
        holder.release.set()


def _done_soon(future: Any) -> bool:
    return future.done()


def test_revocation_applies_on_the_next_request_on_every_worker(instances: list[ProxyServer]) -> None:
    created = cli(instances[0], "keys", "create", "--owner", "leaver@example.com")
    key = created["key"]
    assert all(r.status_code == 200 for r in many(instances, key, 16, threads=8))
    cli(instances[1], "keys", "revoke", created["id"], "--reason", "left the company")
    after = many(instances, key, 40, threads=8)
    assert [r.status_code for r in after] == [401] * 40
    assert all(r.headers.get("x-should-retry") == "false" for r in after)
    assert "revoked" in after[0].json()["error"]["message"]


def test_unknown_keys_get_401_and_static_keys_keep_working(instances: list[ProxyServer]) -> None:
    r = post(instances[0], "cpk_AAAAAAAA_" + "z" * 43)
    assert r.status_code == 401 and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["type"] == "authentication_error"
    assert post(instances[1], STATIC_KEY).status_code == 200
    assert requests.get(instances[0].url + "/v1/me", headers={"x-api-key": STATIC_KEY}).json()["static"] is True


def test_a_spent_budget_is_429_not_to_be_retried_with_its_reset_time(
    instances: list[ProxyServer], store_dir: Path
) -> None:
    created = cli(instances[0], "keys", "create", "--owner", "spender@example.com", "--budget", "1")
    key = created["key"]
    assert post(instances[0], key).status_code == 200
    # spend the budget through the store, as another worker settling a priced request would
    gate = Gate(TeamsSettings(path=str(store_dir / "teams.db")))
    principal = gate.authenticate([key], {})
    assert isinstance(principal, Principal)
    admitted = gate.admit(principal, 1)
    assert isinstance(admitted, Admitted)
    gate.settle(admitted, Usage(input_tokens=1, cost_micro_usd=1_000_000))
    gate.close()
    for server in instances:
        r = post(server, key)
        assert r.status_code == 429 and r.headers["x-should-retry"] == "false"
        error = r.json()["error"]
        assert error["type"] == "rate_limit_error" and error["details"]["error_code"] == "budget_exhausted"
        assert "monthly budget of $1.00 is spent; resets " in error["message"] and "UTC" in error["message"]
    # each refusal has its line in the request log, with the key's id (design §2.12)
    refused = [line for s in instances for line in s.journal() if line.get("key_id") == created["id"]
               and line["status"] == 429]
    assert len(refused) == len(instances) and all(line["error_type"] == "rate_limit_error" for line in refused)


def test_usage_is_recorded_once_per_request_and_queryable(instances: list[ProxyServer]) -> None:
    cli(instances[0], "teams", "create", "platform")
    created = cli(instances[0], "keys", "create", "--owner", "user@example.com", "--team", "platform")
    key = created["key"]
    stream = {**BODY, "stream": True}
    for i in range(6):
        r = post(instances[i % 2], key, stream if i % 2 else BODY)
        assert r.status_code == 200
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # settlement runs after the last byte, off the client's path
        rows = cli(instances[1], "usage", "--key", created["id"], "--by", "key", "team", "model")
        if rows and rows[0]["requests"] == 6:
            break
        time.sleep(0.05)
    assert len(rows) == 1
    row = rows[0]
    assert (row["key"], row["team"], row["model"], row["requests"], row["estimated"]) == (
        created["id"], "platform", "big-model", 6, 0,
    )
    # as the upstream reported them: "hello there" is 2 prompt tokens, "echo: hello there" 3 completion tokens
    assert (row["input_tokens"], row["output_tokens"]) == (6 * 2, 6 * 3)
    journal = [line for s in instances for line in s.journal() if line.get("key_id") == created["id"]]
    assert len(journal) == 6 and all(line["team"] == "platform" for line in journal)
    assert sum(line["input_tokens"] for line in journal) == row["input_tokens"]


def test_a_budgeted_key_is_refused_an_unpriced_model_before_any_upstream_call(
    instances: list[ProxyServer], upstream: FakeUpstream
) -> None:
    """[teams] unpriced = "deny" (the default): a key with a monthly budget may only use priced models, since an
    unpriced answer's cost could never be charged. `claude-haiku-*` goes to `fast-model`, which [prices] leaves
    unpriced: 403 before any upstream call, journalled and counted; a key without a budget is served on it."""
    a, b = instances
    budgeted = cli(a, "keys", "create", "--owner", "priced@example.com", "--name", "capped", "--budget", "5")
    free = cli(a, "keys", "create", "--owner", "free@example.com", "--name", "uncapped")
    haiku = {**BODY, "model": "claude-haiku-4"}
    before = chat_requests(upstream)
    refused = post(b, budgeted["key"], haiku)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["type"] == "permission_error", error
    assert error["message"] == ("fast-model on custom has no price in this proxy's [prices], and key capped has a "
                                "monthly budget: a budgeted key can only use priced models"), error
    assert chat_requests(upstream) == before  # nothing reached the upstream
    assert post(a, budgeted["key"]).status_code == 200  # a priced model: served
    assert post(a, free["key"], haiku).status_code == 200  # no budget: served (and recorded as unpriced)
    assert chat_requests(upstream) == before + 2
    line = [r for r in b.journal() if r.get("key_id") == budgeted["id"]][-1]
    assert (line["status"], line["error_type"], line["client_model"]) == (403, "permission_error", "claude-haiku-4")
    metrics = requests.get(b.url + "/metrics", headers={"x-api-key": STATIC_KEY}, timeout=10).text
    assert re.search(r'^claude_proxy_limit_refusals_total\{limit="unpriced",scope="key"\} [1-9]', metrics, re.M), metrics


def test_a_gateway_key_attributes_usage_to_the_forwarded_user(instances: list[ProxyServer]) -> None:
    gw = cli(instances[0], "keys", "create", "--owner", "gateway", "--gateway", "--rpm", "2/hour")
    plain = cli(instances[0], "keys", "create", "--owner", "plain-owner", "--rpm", "50/hour")
    for user in ("alice@example.com", "bob@example.com"):
        for _ in range(2):
            assert post(instances[1], gw["key"], **{"x-claude-gateway-user-email": user}).status_code == 200
    limited = post(instances[0], gw["key"], **{"x-claude-gateway-user-email": "alice@example.com"})
    assert limited.status_code == 429 and "user alice@example.com" in limited.json()["error"]["message"]
    assert post(instances[0], plain["key"], **{"x-claude-gateway-user-email": "mallory@example.com"}).status_code == 200
    deadline, owners = time.monotonic() + 10, {}
    while time.monotonic() < deadline:
        owners = {r["owner"]: r["requests"] for r in cli(instances[0], "usage", "--by", "owner")}
        if owners.get("plain-owner") == 1 and owners.get("bob@example.com") == 2:
            break
        time.sleep(0.05)
    assert owners["alice@example.com"] == 2 and owners["bob@example.com"] == 2 and owners["plain-owner"] == 1
    assert "mallory@example.com" not in owners and "gateway" not in owners


def test_admin_api_needs_an_admin_key_and_changes_apply_everywhere(instances: list[ProxyServer], store_kind: str
                                                                   ) -> None:
    admin = cli(instances[0], "keys", "create", "--owner", "root@example.com", "--admin")["key"]
    user = cli(instances[0], "keys", "create", "--owner", "someone@example.com")["key"]
    denied = requests.get(instances[0].url + "/admin/v1/keys", headers={"x-api-key": user})
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    made = requests.post(instances[0].url + "/admin/v1/keys", headers={"x-api-key": admin},
                         json={"owner": "api@example.com", "limits": {"rpm": "1/hour"}})
    assert made.status_code == 201
    CREATED_KEYS.append(made.json()["key"])
    new_key, new_id = made.json()["key"], made.json()["id"]
    assert post(instances[1], new_key).status_code == 200
    assert post(instances[0], new_key).status_code == 429
    patched = requests.patch(instances[1].url + f"/admin/v1/keys/{new_id}", headers={"x-api-key": admin},
                             json={"limits": {"rpm": "100/hour"}})
    assert patched.status_code == 200
    assert post(instances[0], new_key).status_code == 200  # the limit change applied on the next request
    revoked = requests.post(instances[0].url + f"/admin/v1/keys/{new_id}/revoke", headers={"x-api-key": admin},
                            json={"reason": "test"})
    assert revoked.json()["status"] == "revoked"
    assert post(instances[1], new_key).status_code == 401
    trail = requests.get(instances[1].url + "/admin/v1/audit?action=key.update", headers={"x-api-key": admin})
    events = [e for e in trail.json()["data"] if e["target_id"] == new_id]
    assert events and events[0]["remote_addr"] == "127.0.0.1" and events[0]["actor_key_id"] != new_id
    me = requests.get(instances[0].url + "/v1/me", headers={"x-api-key": user}).json()
    assert me["owner"] == "someone@example.com" and me["role"] == "user"
    status = requests.get(instances[0].url + "/admin/v1/status", headers={"x-api-key": admin}).json()
    assert {k: status.get(k) for k in STORE_STATUS[store_kind]} == STORE_STATUS[store_kind], status


def _workers(server: ProxyServer) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_a_sigkilled_workers_lease_frees_itself(instances: list[ProxyServer], holder: Holder) -> None:
    key = cli(instances[0], "keys", "create", "--owner", "crash@example.com", "--max-concurrent", "1")["key"]
    holder.hold()
    try:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(lambda: _post_quietly(instances[0], key))
            deadline = time.monotonic() + 10
            while holder.active < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert holder.active == 1
            assert post(instances[1], key).status_code == 429  # the lease is live
            for pid in _workers(instances[0]):
                os.kill(pid, signal.SIGKILL)
            held.result(timeout=30)
        holder.release.set()
        # nobody settles or renews that lease any more: it expires within LEASE_SECONDS, then admits again
        deadline = time.monotonic() + LEASE_SECONDS + 10
        codes: list[int] = []
        while time.monotonic() < deadline:
            codes.append(post(instances[1], key).status_code)
            if codes[-1] == 200:
                break
            time.sleep(0.2)
        assert codes[-1] == 200 and set(codes[:-1]) <= {429}
    finally:
        holder.release.set()
    _wait_healthy(instances[0])


def _post_quietly(server: ProxyServer, key: str) -> int:
    try:
        return post(server, key).status_code
    except requests.RequestException:
        return -1


def _wait_healthy(server: ProxyServer) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if len(_workers(server)) == 2 and requests.get(server.url + "/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError("gunicorn did not respawn its workers")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match[1]


def test_the_usage_page_signs_in_with_a_key_and_revocation_ends_the_session(instances: list[ProxyServer]) -> None:
    made = cli(instances[0], "keys", "create", "--owner", "page@example.com", "--admin")
    assert post(instances[0], made["key"]).status_code == 200
    settled(instances[1], made["id"], 1)  # the page's usage table shows it (PostgreSQL: once uploaded)
    session = requests.Session()
    form = session.get(instances[1].url + "/ui/")
    csp = form.headers["content-security-policy"]
    assert form.status_code == 200 and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "<script" not in form.text and 'name="key"' in form.text
    forged = session.post(instances[1].url + "/ui/login", data={"key": made["key"], "csrf": "forged"})
    assert forged.status_code == 400 and "cp_session" not in session.cookies
    signed = session.post(instances[1].url + "/ui/login", data={"key": made["key"], "csrf": _csrf(form.text)},
                          allow_redirects=False)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui/" in cookie
    assert made["key"] not in cookie and made["key"].split("_", 2)[2] not in cookie
    view = session.get(instances[0].url + "/ui/")  # the other instance: the cookie secret is shared
    assert "page@example.com" in view.text and "Admin: teams" in view.text and "big-model" in view.text
    cli(instances[0], "keys", "revoke", made["id"])
    after = session.get(instances[0].url + "/ui/")
    assert 'name="key"' in after.text and "page@example.com" not in after.text


def team_cost(instances: list[ProxyServer], team: str, timeout: float = 5.0) -> float:
    """`claude_proxy_team_cost_usd_total` of `team`, summed over its series on every instance's /metrics
    (once it stops changing: the counter moves as each answer settles)."""
    series = re.compile(r"^claude_proxy_team_cost_usd_total\{([^}]*)\} (\S+)$", re.M)
    deadline, last = time.monotonic() + timeout, -1.0
    while True:
        total = 0.0
        for server in instances:
            text = requests.get(server.url + "/metrics", headers={"x-api-key": STATIC_KEY}, timeout=10).text
            total += sum(float(v) for labels, v in series.findall(text) if f'team="{team}"' in labels)
        if total == last or time.monotonic() > deadline:
            return total
        last = total
        time.sleep(0.2)


def key_series(server: ProxyServer, key_id: str) -> dict[str, float]:
    """The `claude_proxy_key_*` series of `key_id` on one instance's /metrics ([teams] metrics_per_key), by
    metric and kind ("key_cost_usd" or "key_tokens:input", ...)."""
    text = requests.get(server.url + "/metrics", headers={"x-api-key": STATIC_KEY}, timeout=10).text
    out: dict[str, float] = {}
    for name, labels, value in re.findall(r"^claude_proxy_(key_\w+)_total\{([^}]*)\} (\S+)$", text, re.M):
        if f'key_id="{key_id}"' in labels:
            kind = re.search(r'kind="(\w+)"', labels)
            name = f"{name}:{kind[1]}" if kind else name
            out[name] = out.get(name, 0.0) + float(value)
    return out


def _admin(server: ProxyServer, admin: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + path, headers={"x-api-key": admin}, timeout=10, **kwargs)


def test_admin_api_teams_usage_me_and_in_flight_agree_with_the_upstream(
    instances: list[ProxyServer], holder: Holder, upstream: FakeUpstream
) -> None:
    """Teams, keys, usage, audit, status and /v1/me over HTTP, each call on either instance: in-flight
    counts while requests are held at the upstream, then usage and spend equal to what the upstream
    reported once the records are in the store."""
    a, b = instances
    admin = cli(a, "keys", "create", "--owner", "lead@example.com", "--admin")["key"]
    made = _admin(a, admin, "POST", "/admin/v1/teams", json={"name": "api-team", "limits": {"max_concurrent": 10}})
    assert made.status_code == 201 and made.json()["limits"]["max_concurrent"] == 10, made.text
    patched = _admin(b, admin, "PATCH", "/admin/v1/teams/api-team",
                     json={"display_name": "API team", "limits": {"monthly_budget_usd": 30}})
    assert patched.status_code == 200 and patched.json()["display_name"] == "API team", patched.text
    assert "api-team" in [t["name"] for t in _admin(b, admin, "GET", "/admin/v1/teams").json()["data"]]
    created = _admin(b, admin, "POST", "/admin/v1/keys",
                     json={"owner": "member@example.com", "team": "api-team", "name": "ci", "limits": {"max_concurrent": 3}})
    assert created.status_code == 201, created.text
    CREATED_KEYS.append(created.json()["key"])
    key, key_id = created.json()["key"], created.json()["id"]
    listed = _admin(a, admin, "GET", "/admin/v1/keys?team=api-team").json()["data"]
    assert [k["id"] for k in listed] == [key_id] and "key" not in listed[0]

    before = chat_requests(upstream)
    holder.hold()  # two requests in flight, one through each instance, held at the upstream
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(post, server, key) for server in instances]
            deadline = time.monotonic() + 10
            while holder.active < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert holder.active == 2
            me = requests.get(b.url + "/v1/me", headers={"x-api-key": key}, timeout=10).json()
            assert [(s["kind"], s["in_flight"]) for s in me["scopes"]] == [("key", 2), ("team", 2)], me
            assert _admin(a, admin, "GET", f"/admin/v1/keys/{key_id}").json()["in_flight"] == 2
            assert _admin(b, admin, "GET", "/admin/v1/teams/api-team").json()["in_flight"] == 2
            status = _admin(a, admin, "GET", "/admin/v1/status").json()
            assert status["in_flight"] == 2, status  # requests in flight, not leases (each holds a key and a team one)
            holder.release.set()
            assert [f.result().status_code for f in futures] == [200, 200]
    finally:
        holder.release.set()
    assert chat_requests(upstream) - before == 2

    row = settled(a, key_id, 2)
    cost = 2 * REQUEST_COST_MICROS
    assert (row["requests"], row["input_tokens"], row["output_tokens"], row["cost_micros"]) == (2, 2 * 2, 2 * 3, cost)
    usage = _admin(b, admin, "GET", "/admin/v1/usage?group_by=team,key,model&team=api-team").json()["data"]
    assert [(u["team"], u["key"], u["model"], u["requests"], u["input_tokens"], u["output_tokens"], u["cost_micros"],
             u["unpriced"], u["estimated"]) for u in usage] == [("api-team", key_id, "big-model", 2, 4, 6, cost, 0, 0)]
    me = requests.get(a.url + "/v1/me", headers={"x-api-key": key}, timeout=10).json()
    assert [(s["kind"], s["in_flight"], s["month_spend_usd"]) for s in me["scopes"]] == [
        ("key", 0, cost / 1e6), ("team", 0, cost / 1e6)], me
    # /metrics: each instance sums its own workers (one answer each here); the fleet's sum is the ledger's cost
    assert team_cost(instances, "api-team") == pytest.approx(cost / 1e6)
    # [teams] metrics_per_key, on for the first instance only: its one answer under the key; none on the other
    assert key_series(a, key_id) == pytest.approx(
        {"key_cost_usd": REQUEST_COST_MICROS / 1e6, "key_tokens:input": 2, "key_tokens:output": 3})
    assert key_series(b, key_id) == {}
    team = _admin(b, admin, "GET", "/admin/v1/teams/api-team").json()
    assert (team["in_flight"], team["month_spend_usd"], team["limits"]["monthly_budget_usd"]) == (0, cost / 1e6, 30.0)
    assert _admin(a, admin, "GET", "/admin/v1/status").json()["in_flight"] == 0
    trail = _admin(a, admin, "GET", "/admin/v1/audit?action=team.update").json()["data"]
    assert [(e["target_id"], e["details"]["display_name"]) for e in trail if e["target_id"] == "api-team"] == [
        ("api-team", "API team")]
    # the CLI, on the same store, says the same
    shown = cli(b, "teams", "show", "api-team")
    assert (shown["month_spend_usd"], shown["in_flight"], shown["keys"]) == (cost / 1e6, 0, [key_id])
    assert cli(a, "audit", "--action", "team.create")[0]["target_id"] == "api-team"

    # pages: keys in creation order and audit events newest first, each page from either instance
    every = _admin(a, admin, "GET", "/admin/v1/keys?status=all&limit=1000").json()
    assert not every["has_more"] and every["last_id"] == every["data"][-1]["id"]
    paged, after, pages = [], "", 0
    while True:
        page = _admin(instances[pages % 2], admin, "GET", f"/admin/v1/keys?status=all&limit=2&after={after}").json()
        paged += [k["id"] for k in page["data"]]
        pages += 1
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert paged == [k["id"] for k in every["data"]] and pages == (len(paged) + 1) // 2
    trail = _admin(b, admin, "GET", "/admin/v1/audit?limit=1000").json()["data"]
    first = _admin(a, admin, "GET", "/admin/v1/audit?limit=3").json()
    second = _admin(b, admin, "GET", f"/admin/v1/audit?limit=3&after={first['last_id']}").json()
    assert [e["id"] for e in first["data"] + second["data"]] == [e["id"] for e in trail[:6]] and first["has_more"]
    cut = trail[2]["time"]  # `to`: only what came before that event's time
    before_cut = _admin(a, admin, "GET", f"/admin/v1/audit?limit=1000&to={cut}").json()["data"]
    assert [e["id"] for e in before_cut] == [e["id"] for e in trail if e["time"] < cut]
    bad = _admin(a, admin, "GET", "/admin/v1/audit?limit=0")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_zz_no_raw_key_anywhere_on_disk_or_in_logs(instances: list[ProxyServer], store_dir: Path) -> None:
    assert len(CREATED_KEYS) >= 10
    files = [p for d in (store_dir, *(s.dir for s in instances)) for p in d.rglob("*") if p.is_file()]
    assert any(p.name == "teams.db-wal" or p.name == "teams.db" for p in files)
    metrics = requests.get(instances[0].url + "/metrics", headers={"x-api-key": STATIC_KEY}).text
    assert "claude_proxy_limit_refusals_total" in metrics and "claude_proxy_auth_total" in metrics
    blobs = [p.read_bytes() for p in files] + [metrics.encode()]
    for key in CREATED_KEYS:
        secret = key.split("_", 2)[2].encode()  # cpk_<id>_<secret>: the secret itself may hold "_"
        assert len(secret) >= 40
        assert not any(key.encode() in b or secret in b for b in blobs), "a raw key was written somewhere"
