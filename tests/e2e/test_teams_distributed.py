"""Teams on PostgreSQL + Redis: two `claude-proxy` instances × two workers sharing both stores, counted
exactly, with Redis SIGKILLed and restarted empty and PostgreSQL stopped and started mid-run.

The same exactness tests as the embedded store (imported from test_teams and run here against this
module's fixtures), then the faults only a distributed store has. Real servers on free loopback ports.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from claude_proxy.teams.spool import dir_backlog
from tests.conftest import proxy_config
from tests.e2e.test_teams import (  # noqa: F401 - collected again here, against this module's fixtures
    BODY,
    PRICES,
    STATIC_KEY,
    Holder,
    _csrf,
    cli,
    post,
    test_a_budgeted_key_is_refused_an_unpriced_model_before_any_upstream_call,
    test_a_concurrency_limit_of_5_gives_an_upstream_peak_of_exactly_5,
    test_a_gateway_key_attributes_usage_to_the_forwarded_user,
    test_a_limit_of_100_per_hour_admits_exactly_100_of_400_across_2x2,
    test_a_sigkilled_workers_lease_frees_itself,
    test_admin_api_needs_an_admin_key_and_changes_apply_everywhere,
    test_admin_api_teams_usage_me_and_in_flight_agree_with_the_upstream,
    test_revocation_applies_on_the_next_request_on_every_worker,
    test_the_usage_page_signs_in_with_a_key_and_revocation_ends_the_session,
    test_unknown_keys_get_401_and_static_keys_keep_working,
    test_usage_is_recorded_once_per_request_and_queryable,
)
from tests.support.proxy_server import ProxyServer
from tests.support.stores import PostgresServer, RedisServer, migrate
from tests.support.upstream import FakeUpstream, RecordedRequest, Response, _message_text

pytestmark = pytest.mark.e2e
LEASE_SECONDS = 3
MIXED_REQUESTS = int(os.environ.get("CLAUDE_PROXY_MIXED_REQUESTS", "10000"))  # the figure (~45 s here)


class Tally(Holder):
    """The upstream's own count: tokens it reported per tag ("k<n>") and model, as default_handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.tally: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, req: RecordedRequest) -> Response:
        response = super().__call__(req)
        if req.path.rstrip("/").endswith("/chat/completions") and isinstance(req.json, dict):
            messages = [m for m in req.json.get("messages") or [] if isinstance(m, dict)]
            texts = [_message_text(m.get("content")) for m in messages]
            users = [_message_text(m.get("content")) for m in messages if m.get("role") == "user"]
            tag = re.match(r"(k\d+)", users[-1] if users else "")
            if tag:
                key = (tag[1], str(req.json.get("model")))
                with self.lock:
                    self.tally[(*key, "requests")] += 1
                    self.tally[(*key, "input")] += max(1, sum(len(t.split()) for t in texts))
                    self.tally[(*key, "output")] += len(re.findall(r"\S+\s*", "echo: " + users[-1]))
        return response


@pytest.fixture(scope="module")
def holder() -> Tally:
    return Tally()


@pytest.fixture(scope="module")
def store_kind() -> str:
    return "postgres"


@pytest.fixture(scope="module")
def store_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="claude-proxy-teams-dist-"))


@pytest.fixture(scope="module")
def upstream(holder: Tally) -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        up.handler = holder
        yield up


@pytest.fixture(scope="module")
def stores(postgres_server: PostgresServer, redis_server: RedisServer) -> Iterator[tuple[PostgresServer, RedisServer]]:
    dsn = postgres_server.database("teams_e2e")
    migrate(dsn)
    redis_server.flush()
    saved = {k: os.environ.get(k) for k in ("CLAUDE_PROXY_POSTGRES_URL", "CLAUDE_PROXY_REDIS_URL")}
    os.environ["CLAUDE_PROXY_POSTGRES_URL"], os.environ["CLAUDE_PROXY_REDIS_URL"] = dsn, redis_server.url
    yield postgres_server, redis_server
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def teams_table(store_dir: Path, name: str, **extra: Any) -> dict[str, Any]:
    return {"store": "postgres", "lease_seconds": LEASE_SECONDS, "spool_dir": str(store_dir / f"spool-{name}"),
            "flush_interval": 0.2, "instance": name, **extra}


@pytest.fixture(scope="module")
def instances(upstream: FakeUpstream, store_dir: Path, stores: Any) -> Iterator[list[ProxyServer]]:
    servers = [ProxyServer(proxy_config(upstream, server={"ping_interval": 0.5, "auth_keys": [STATIC_KEY]},
                                        teams=teams_table(store_dir, f"i{n}", metrics_per_key=n == 0), prices=PRICES),
                           workers=2, threads=48)
               for n in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def backlog(store_dir: Path) -> int:
    return sum(dir_backlog(str(d)) for d in store_dir.glob("spool-*"))


def wait_drained(store_dir: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while backlog(store_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backlog(store_dir) == 0, "the usage spool did not drain"


@pytest.mark.heavy
def test_mixed_run_with_redis_killed_and_postgres_restarted_counts_every_token_once(
    instances: list[ProxyServer], holder: Tally, stores: tuple[PostgresServer, RedisServer], store_dir: Path
) -> None:
    pg, rd = stores
    cli(instances[0], "teams", "create", "alpha")
    cli(instances[0], "teams", "create", "beta")
    made = [cli(instances[0], "keys", "create", "--owner", f"mix{i}@example.com", "--team", ("alpha", "beta")[i % 2])
            for i in range(6)]
    for m in made:  # every key seen once by every worker before the outages (cached snapshots)
        for server in instances:
            for _ in range(4):
                post(server, m["key"], {**BODY, "messages": [{"role": "user", "content": "warm up"}]})
    wait_drained(store_dir)
    holder.tally.clear()
    models = ("claude-sonnet-4", "claude-haiku-4")
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    done = [0]

    def one(i: int) -> None:
        tag = i % len(made)
        body = {**BODY, "model": models[(i // 7) % 2], "stream": i % 5 < 3,
                "messages": [{"role": "user", "content": f"k{tag} " + "word " * (i % 9)}]}
        r = requests.post(instances[i % 2].url + "/v1/messages", json=body, headers={"x-api-key": made[tag]["key"]},
                          timeout=60)
        _ = r.content
        with lock:
            statuses[r.status_code] += 1
            done[0] += 1

    def faults() -> None:
        def at(fraction: float) -> None:
            while done[0] < MIXED_REQUESTS * fraction:
                time.sleep(0.01)
        at(0.2)
        rd.kill()
        at(0.3)
        rd.start()  # empty: buckets full, leases gone, epoch and spend re-seeded from PostgreSQL
        at(0.5)
        pg.stop()
        at(0.75)
        pg.start()

    chaos = threading.Thread(target=faults)
    chaos.start()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(MIXED_REQUESTS)))
    chaos.join(60)
    assert statuses == Counter({200: MIXED_REQUESTS})  # known keys served through both outages
    wait_drained(store_dir)
    ids = {m["id"]: f"k{i}" for i, m in enumerate(made)}
    rows = cli(instances[1], "usage", "--since", "1h", "--by", "key", "model")
    stored: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        if row["key"] in ids:
            stored[(ids[row["key"]], row["model"], "requests")] += row["requests"]
            stored[(ids[row["key"]], row["model"], "input")] += row["input_tokens"]
            stored[(ids[row["key"]], row["model"], "output")] += row["output_tokens"]
    # the warm-up requests (4 per key per instance, "warm up") are in the store too: take them out
    for tag in ids.values():
        stored[(tag, "big-model", "requests")] -= 8
        stored[(tag, "big-model", "input")] -= 8 * 2
        stored[(tag, "big-model", "output")] -= 8 * 3
    assert +stored == +holder.tally  # per key and model: 0 lost, 0 double-counted


def test_unknown_keys_get_503_while_postgres_is_down_never_401(
    instances: list[ProxyServer], stores: tuple[PostgresServer, RedisServer]
) -> None:
    pg, _ = stores
    # an admin key, so that /admin/v1/status (which names the worker that answered) can show it reached every
    # worker before the outage: which worker accepts a connection is the kernel's choice (with the fast paths
    # off, gunicorn's own turn-taking too), and a worker that never saw the key rightly answers 503
    known = cli(instances[0], "keys", "create", "--owner", "known@example.com", "--admin")["key"]
    for server in instances:
        _every_workers_status(server, known)
        for _ in range(2):
            assert post(server, known).status_code == 200
    pg.stop()
    try:
        for server in instances:
            r = post(server, "cpk_BBBBBBBB_" + "q" * 43)
            assert r.status_code == 503 and r.json()["error"]["type"] == "overloaded_error"
            assert post(server, known).status_code == 200
    finally:
        pg.start()


def test_the_usage_page_says_the_store_is_down_and_keeps_the_session_while_postgres_is_down(
    instances: list[ProxyServer], stores: tuple[PostgresServer, RedisServer]
) -> None:
    """A ledger outage is a 503 page saying so — never a signed-out session, a JSON error or a traceback —
    and the same cookie shows the page again once PostgreSQL is back."""
    pg, _ = stores
    made = cli(instances[0], "keys", "create", "--owner", "outage@example.com")
    session = requests.Session()
    deadline = time.monotonic() + 20
    while True:  # an earlier outage may still hold some worker's ledger breaker open (each has its own)
        form = _page_when_up(session, instances[0])
        signed = session.post(instances[0].url + "/ui/login", data={"key": made["key"], "csrf": _csrf(form.text)})
        if signed.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert signed.status_code == 200 and "outage@example.com" in signed.text, signed.text[:500]
    cookie = session.cookies["cp_session"]
    pg.stop()
    try:
        for server in instances:
            down = session.get(server.url + "/ui/")
            assert down.status_code == 503 and down.headers["content-type"].startswith("text/html"), down.text[:500]
            assert "The usage store is unavailable; try again shortly." in down.text and "Traceback" not in down.text
            assert "set-cookie" not in down.headers and session.cookies["cp_session"] == cookie
            assert "default-src 'none'" in down.headers["content-security-policy"]
            fresh = requests.Session()  # signing in needs the ledger too: the same page, not a 500
            fresh.cookies.clear()
            refused = fresh.post(server.url + "/ui/login", data={"key": made["key"], "csrf": "x"})
            assert refused.status_code in (400, 503) and "Traceback" not in refused.text
    finally:
        pg.start()
    back = _page_when_up(session, instances[1])
    assert "outage@example.com" in back.text  # the same cookie, signed in again


def _page_when_up(session: requests.Session, server: ProxyServer, timeout: float = 20) -> requests.Response:
    """GET /ui/ until the page answers 200: after PostgreSQL returns, a worker's ledger breaker lets a probe
    through only after its cool-down (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        page = session.get(server.url + "/ui/")
        if page.status_code == 200 or time.monotonic() > deadline:
            assert page.status_code == 200, page.text[:500]
            return page
        assert page.status_code == 503, page.text[:500]
        time.sleep(0.2)


def _status(server: ProxyServer, admin: str) -> dict[str, Any]:
    return requests.get(server.url + "/admin/v1/status", headers={"x-api-key": admin}, timeout=10).json()


def _every_workers_status(server: ProxyServer, admin: str, workers: int = 2) -> dict[int, dict[str, Any]]:
    """/admin/v1/status from each worker, by pid: the last each gave (a status call counts in the figures of the
    calls after it). A status is the answering worker's own, and which worker accepts a new connection is the
    kernel's choice (with the fast paths off, gunicorn's turn-taking too): 16 calls once all went to one
    worker, and the other's figures were missing from a sum."""
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 15
    while len(found) < workers and time.monotonic() < deadline:
        status = _status(server, admin)
        found[status["worker_pid"]] = status
    assert len(found) == workers, f"only workers {sorted(found)} of {server.url} answered in 15 s"
    return found


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_hung_redis_fails_open_or_closed_and_the_breaker_bounds_the_stalls(
    policy: str, upstream: FakeUpstream, store_dir: Path, stores: tuple[PostgresServer, RedisServer]
) -> None:
    _, rd = stores
    config = proxy_config(upstream, server={"ping_interval": 0.5},
                          teams=teams_table(store_dir, f"fail-{policy}", on_store_error=policy))
    with ProxyServer(config, workers=2, threads=32) as server:
        key = cli(server, "keys", "create", "--owner", f"{policy}@example.com", "--rpm", "1000/hour")["key"]
        admin = cli(server, "keys", "create", "--owner", f"admin-{policy}@example.com", "--admin")["key"]
        for _ in range(8):
            assert post(server, key).status_code == 200
        before = {pid: s["breakers"]["redis"] for pid, s in _every_workers_status(server, admin).items()}
        session = requests.Session()
        form = session.get(server.url + "/ui/")
        signed = session.post(server.url + "/ui/login", data={"key": key, "csrf": _csrf(form.text)})
        assert re.search(r"<td>key [^<]+</td>.*?<td>0</td></tr>", signed.text, re.S), signed.text[-3000:]
        fleet_before = cli(server, "store", "status")["fail_open_total"]  # the ledger is shared by the two runs
        rd.pause()  # SIGSTOP: connections hang instead of being refused
        try:
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda _: post(server, key).status_code, range(200)))
            after = _every_workers_status(server, admin)
            # the usage page still shows what the ledger knows; the live in-flight figure is "-", not a guess
            page = session.get(server.url + "/ui/")
            assert page.status_code == 200 and f"{policy}@example.com" in page.text, page.text[:500]
            assert re.search(r"<td>key [^<]+</td>.*?<td>-</td></tr>", page.text, re.S), page.text[-3000:]
        finally:
            rd.resume()
        if policy == "open":
            assert codes == [200] * 200
            assert sum(s["worker_fail_open"] for s in after.values()) == 200
            metrics = requests.get(server.url + "/metrics", headers={"x-api-key": admin}).text
            assert re.search(r'claude_proxy_store_fail_open_total\{store="redis"\} 200\.0', metrics), metrics[-2000:]
            # the fleet's count, in the ledger: what `store status` (acting on the store) and the page show
            deadline = time.monotonic() + 10
            expected = fleet_before + 200
            while (status := cli(server, "store", "status"))["fail_open_total"] < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            assert status["fail_open_total"] == expected and status["fail_open_last_at"], status
            admin_page = requests.Session()
            form = admin_page.get(server.url + "/ui/")
            signed = admin_page.post(server.url + "/ui/login", data={"key": admin, "csrf": _csrf(form.text)})
            assert f"<th>fail_open_total</th><td>{expected}</td>" in signed.text, signed.text[-3000:]
        else:
            assert codes == [503] * 200
            time.sleep(0.5)  # two of the keepers' ticks: nothing to write
            assert cli(server, "store", "status")["fail_open_total"] == fleet_before
        for pid, s in after.items():
            breaker = s["breakers"]["redis"]
            assert breaker["trips"] >= 1 and breaker["skipped"] >= 1
            if pid in before:
                # calls that reached the hung server: 3 to open it, plus those already in flight when it opened
                # (at most the 8 client threads), plus one probe per 5 s cool-down — never one per request
                assert breaker["attempts"] - before[pid]["attempts"] <= 3 + 8 + 3
