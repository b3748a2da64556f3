"""The usage page (/ui/) in a real headless Chromium, driven by Selenium, against a real claude-proxy
(gunicorn, two workers) with `[teams]` on and `[prices]` set, in front of a local upstream — on each
teams backend: the embedded SQLite file, and PostgreSQL + Redis (usage uploaded from the workers'
spools in batches; every figure is read once the upload is done).

What a person does: signs in with a key through the form, reads their usage (the numbers must be the
store's), an admin reads the team view, signs out; a revoked key's session ends on the next page load;
a wrong key gets a plain error. The raw key never shows in the page source or in a cookie.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import proxy_config
from tests.support.browser import chromium, console_errors, require_chromium, submit
from tests.support.gunicorn_server import GunicornServer
from tests.support.proxy_server import ProxyServer
from tests.support.teams_backend import BACKENDS, TeamsBackend, backend_for
from tests.support.upstream import FakeUpstream, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# WebDriver's locator strategies (selenium's `By` values), spelled out so this module imports without
# selenium: the `browser` fixture then skips with the reason, or fails under CI=true.
NAME, XPATH, TAG, CLASS = "name", "xpath", "tag name", "class name"

BODY = {"model": "claude-sonnet-4", "max_tokens": 16, "messages": [{"role": "user", "content": "hello there"}]}
# USD per million tokens for the upstream model: "hello there" is 2 prompt tokens and "echo: hello there"
# 3 completion tokens at the local upstream, so each request costs 2·3000 + 3·15000 µUSD = $0.051.
PRICE = {"input": 3000, "output": 15000}
REQUEST_COST_MICROS = 2 * 3000 + 3 * 15000
CREATED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _chromium_present() -> None:
    """Skip (or fail under CI=true) before any server starts when there is no browser to drive."""
    require_chromium()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> TeamsBackend:
    """Every test below runs once per teams backend; the servers of one backend share its store."""
    return backend_for(request, request.param, "ui")


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, backend: TeamsBackend) -> Iterator[ProxyServer]:
    config = proxy_config(upstream, teams=backend.table("proxy"), prices={"big-model": PRICE},
                          server={"forwarded_prefix": True})  # for the nginx-under-/llm test; off elsewhere
    with ProxyServer(config, workers=2, env=backend.env) as server:
        yield server


@pytest.fixture(scope="module")
def embedded(upstream: FakeUpstream, backend: TeamsBackend) -> Iterator[GunicornServer]:
    """The proxy's blueprint inside a host Flask app under /llm (tests/support/embedded_app.py), same store."""
    config = proxy_config(upstream, teams=backend.table("embedded"), prices={"big-model": PRICE})
    with GunicornServer(config, "tests.support.embedded_app:app", threads=8, health_path="/llm/health",
                        env=backend.env) as server:
        yield server


@pytest.fixture(scope="module")
def browser(proxy: ProxyServer, embedded: GunicornServer) -> Iterator[Any]:
    """Needs the servers so it quits before they stop (and their stop never waits on its open connections)."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser: Any, proxy: ProxyServer) -> Iterator[Any]:
    """The browser, signed out (no cookies) before and after the test."""
    browser.delete_all_cookies()
    yield browser
    browser.delete_all_cookies()


def cli(server: ProxyServer, *args: str) -> Any:
    """The real `claude-proxy` command on the server's store (its env carries the PostgreSQL/Redis DSNs)."""
    out = subprocess.run(
        [sys.executable, "-m", "claude_proxy", *args, "--json", "-c", str(server.config_path)],
        capture_output=True, text=True, timeout=30, env=server.env,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    if isinstance(data, dict) and "key" in data:
        CREATED.append(data["key"])
    return data


def spend(server: ProxyServer, key: str, n: int) -> None:
    for i in range(n):
        body = {**BODY, "stream": True} if i % 2 else BODY
        r = requests.post(server.url + "/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)
        assert r.status_code == 200, r.text


def settled_usage(server: ProxyServer, key_id: str, requests_expected: int) -> dict[str, Any]:
    """The store's row for this key once every request has settled (settlement runs after the last byte)
    and, on PostgreSQL, been uploaded from the workers' spools: polled, with a deadline."""
    deadline, rows = time.monotonic() + 15, []
    while time.monotonic() < deadline:
        rows = cli(server, "usage", "--key", key_id, "--by", "key", "model")
        if rows and rows[0]["requests"] == requests_expected:
            return dict(rows[0])
        time.sleep(0.05)
    raise AssertionError(f"usage for {key_id} never reached {requests_expected} requests: {rows}")


def open_ui(driver: Any, server: ProxyServer, prefix: str = "") -> None:
    driver.get(f"{server.url}{prefix}/ui/")
    assert_clean(driver)


def sign_in(driver: Any, server: ProxyServer, key: str, prefix: str = "") -> None:
    open_ui(driver, server, prefix)
    field = driver.find_element(NAME, "key")
    assert field.get_attribute("type") == "password"
    field.send_keys(key)
    submit(driver, "//button[normalize-space()='Sign in']")
    assert_clean(driver)


def sign_out(driver: Any) -> None:
    submit(driver, "//button[normalize-space()='Sign out']")
    assert_clean(driver)


def assert_clean(driver: Any) -> None:
    """No raw key (nor its secret part) in the page or any cookie; no server error page or traceback."""
    source = driver.page_source
    cookies = json.dumps(driver.get_cookies())
    for key in CREATED:
        secret = key.split("_", 2)[2]
        assert key not in source and secret not in source, "a raw key is in the page"
        assert key not in cookies and secret not in cookies, "a raw key is in a cookie"
    assert "Traceback" not in source and "Internal Server Error" not in source, source[:2000]
    assert driver.title == "claude-proxy usage", source[:2000]
    # the CSP lets the page's own (nonce'd) style through, and nothing the page asks for fails to load
    # (but for the sign-in page's own 401 after a wrong key)
    refused = "/ui/login - Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"
    assert [e for e in console_errors(driver) if not e.endswith(refused)] == []


def table_after(driver: Any, heading: str) -> list[dict[str, str]]:
    """The rows of the first table after the <h2> starting with `heading`, as {column: cell text}."""
    table = driver.find_element(XPATH, f"//h2[starts-with(normalize-space(), '{heading}')]/following-sibling::table[1]")
    rows = table.find_elements(TAG, "tr")
    header = [th.text.strip() for th in rows[0].find_elements(TAG, "th")]
    out = []
    for row in rows[1:]:
        cells = [td.text.strip() for td in row.find_elements(TAG, "td")]
        out.append(dict(zip(header, cells, strict=False)))
    return out


def session_cookie(driver: Any) -> dict[str, Any] | None:
    return next((c for c in driver.get_cookies() if c["name"] == "cp_session"), None)


def test_a_user_signs_in_sees_their_own_usage_as_the_store_has_it_and_signs_out(
    page: Any, proxy: ProxyServer
) -> None:
    cli(proxy, "teams", "create", "web", "--budget", "50")
    made = cli(proxy, "keys", "create", "--owner", "reader@example.com", "--team", "web", "--budget", "5",
               "--name", "laptop")
    other = cli(proxy, "keys", "create", "--owner", "someone-else@example.com", "--team", "web")
    spend(proxy, made["key"], 4)
    spend(proxy, other["key"], 1)  # someone else's usage must not show as the reader's
    row = settled_usage(proxy, made["id"], 4)
    settled_usage(proxy, other["id"], 1)  # in the team's spend below
    assert row["cost_micros"] == 4 * REQUEST_COST_MICROS and row["unpriced"] == 0

    sign_in(page, proxy, made["key"])
    cookie = session_cookie(page)
    assert cookie is not None and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui/"
    body = page.find_element(TAG, "body").text
    assert f"Signed in as reader@example.com (key {made['id']}, team web, user)" in body

    scopes = {r["scope"]: r for r in table_after(page, "This month")}
    assert set(scopes) == {"key laptop", "team web"}
    dollars = f"${row['cost_micros'] / 1e6:.2f}"  # $0.20: the key's spend as the store sums it
    assert (scopes["key laptop"]["spend"], scopes["key laptop"]["budget"]) == (dollars, "$5.00")
    team_micros = 5 * REQUEST_COST_MICROS
    assert (scopes["team web"]["spend"], scopes["team web"]["budget"]) == (f"${team_micros / 1e6:.2f}", "$50.00")

    usage = table_after(page, "Usage by model and day")
    assert len(usage) == 1, usage
    shown = usage[0]
    assert shown["model"] == row["model"] == "big-model"
    for column in ("requests", "errors", "estimated", "input_tokens", "output_tokens", "cache_read_tokens",
                   "unpriced"):
        assert int(shown[column]) == row[column], (column, shown, row)
    assert (row["requests"], row["input_tokens"], row["output_tokens"]) == (4, 4 * 2, 4 * 3)
    assert shown["cost_usd"] == f"{row['cost_micros'] / 1e6:.4f}" == "0.2040"

    keys = table_after(page, "Your keys")
    assert [(k["id"], k["name"], k["status"]) for k in keys] == [(f"cpk_{made['id']}_…", "laptop", "active")]
    assert "Admin:" not in page.page_source  # a user key sees no team view
    assert "someone-else@example.com" not in page.page_source

    sign_out(page)
    assert page.find_elements(NAME, "key") and session_cookie(page) is None
    open_ui(page, proxy)  # signed out for good: the next load is the sign-in form
    assert page.find_elements(NAME, "key") and "reader@example.com" not in page.page_source


# What the admin's store table says on each backend when both stores answer.
STORE_ROWS = {
    "sqlite": {"store": "sqlite", "journal_mode": "wal"},
    "postgres": {"store": "postgres", "ledger": "up", "limiter": "redis", "limiter_state": "up",
                 "breakers.postgres.open": "False", "breakers.redis.open": "False", "spool.dropped": "0",
                 "spool.last_error": "-"},
}


def test_an_admin_key_sees_the_team_view(page: Any, proxy: ProxyServer, backend: TeamsBackend) -> None:
    admin = cli(proxy, "keys", "create", "--owner", "boss@example.com", "--admin")
    cli(proxy, "teams", "create", "ops", "--budget", "20")
    worker = cli(proxy, "keys", "create", "--owner", "worker@example.com", "--team", "ops")
    spend(proxy, worker["key"], 2)
    row = settled_usage(proxy, worker["id"], 2)

    sign_in(page, proxy, admin["key"])
    assert "Signed in as boss@example.com" in page.find_element(TAG, "body").text
    teams = {t["team"]: t for t in table_after(page, "Admin: teams")}
    assert teams["ops"]["month spend"] == f"${row['cost_micros'] / 1e6:.2f}" and teams["ops"]["budget"] == "$20.00"
    top = {t["key"]: t for t in table_after(page, "Admin: top keys this month")}
    assert top[worker["id"]]["owner"] == "worker@example.com"
    assert int(top[worker["id"]]["requests"]) == 2 and top[worker["id"]]["cost_usd"] == f"{row['cost_micros'] / 1e6:.4f}"
    by_model = table_after(page, "Admin: by provider and model")
    total = cli(proxy, "usage", "--by", "provider", "model")
    assert [(r["provider"], r["model"], int(r["requests"]), r["cost_usd"]) for r in by_model] == [
        (t["provider"], t["model"], t["requests"], f"{t['cost_micros'] / 1e6:.4f}") for t in total
    ]
    table = page.find_element(XPATH, "//h2[normalize-space()='Admin: store']/following-sibling::table[1]")
    store = {r.find_element(TAG, "th").text.strip(): r.find_element(TAG, "td").text.strip()
             for r in table.find_elements(TAG, "tr")}
    assert {k: store.get(k) for k in STORE_ROWS[backend.name]} == STORE_ROWS[backend.name], store
    status = requests.get(proxy.url + "/admin/v1/status", headers={"x-api-key": admin["key"]}, timeout=10).json()
    assert int(store["keys"]) == status["keys"] and int(store["usage_events"]) == status["usage_events"]
    assert not any(v.startswith("{") for v in store.values()), store  # one figure a row, no dict printed in a cell
    audit = table_after(page, "Admin: audit")
    assert any(e["action"] == "key.create" and e["target"] == worker["id"] for e in audit), audit
    sign_out(page)
    assert session_cookie(page) is None


def test_a_revoked_keys_session_ends_on_the_next_page_load(page: Any, proxy: ProxyServer) -> None:
    made = cli(proxy, "keys", "create", "--owner", "leaver@example.com")
    sign_in(page, proxy, made["key"])
    assert "Signed in as leaver@example.com" in page.find_element(TAG, "body").text
    assert session_cookie(page) is not None
    cli(proxy, "keys", "revoke", made["id"], "--reason", "left")
    open_ui(page, proxy)
    assert page.find_elements(NAME, "key"), "the sign-in form is back"
    assert "leaver@example.com" not in page.page_source
    assert session_cookie(page) is None  # the stale cookie was cleared, not just ignored
    sign_in(page, proxy, made["key"])  # and the revoked key cannot sign in again
    assert "That key is not valid." in page.find_element(CLASS, "err").text
    assert session_cookie(page) is None


@pytest.mark.parametrize(
    "wrong",
    [
        "cpk_AAAAAAAA_" + "z" * 43,  # well-formed, unknown
        "not-a-key",
        "<script>alert(1)</script>",
        "ключ '\" OR 1=1 --",  # (chromedriver types only the Basic Multilingual Plane)
        "x" * 1500,
    ],
    ids=["unknown", "malformed", "markup", "unicode-and-quotes", "very-long"],
)
def test_a_wrong_key_shows_an_error_never_a_stack_trace(page: Any, proxy: ProxyServer, wrong: str) -> None:
    sign_in(page, proxy, wrong)
    assert page.find_element(CLASS, "err").text == "That key is not valid."
    assert page.find_elements(NAME, "key") and session_cookie(page) is None
    assert "<script>alert" not in page.page_source and wrong not in page.page_source


def test_an_empty_key_shows_an_error_too(page: Any, proxy: ProxyServer) -> None:
    open_ui(page, proxy)
    submit(page, "//button[normalize-space()='Sign in']")
    assert_clean(page)
    assert page.find_element(CLASS, "err").text == "That key is not valid."


def check_page_under_prefix(page: Any, proxy: ProxyServer, front: Any, owner: str, name: str) -> None:
    """A request through `front` under /llm, then the page there: the form posts under the prefix, sign-in
    lands on /llm/ui/, the cookie is scoped to it, and the usage shown is the store's."""
    made = cli(proxy, "keys", "create", "--owner", owner, "--name", name)
    r = requests.post(front.url + "/llm/v1/messages", json=BODY, headers={"x-api-key": made["key"]}, timeout=30)
    assert r.status_code == 200, r.text
    row = settled_usage(proxy, made["id"], 1)
    open_ui(page, front, "/llm")
    assert page.find_element(XPATH, "//form").get_attribute("action") == front.url + "/llm/ui/login"
    sign_in(page, front, made["key"], "/llm")
    assert page.current_url == front.url + "/llm/ui/"
    assert f"Signed in as {owner}" in page.find_element(TAG, "body").text
    cookie = session_cookie(page)
    assert cookie is not None and cookie["path"] == "/llm/ui/" and cookie["httpOnly"] is True
    [shown] = table_after(page, "Usage by model and day")
    assert (int(shown["requests"]), shown["cost_usd"]) == (1, f"{row['cost_micros'] / 1e6:.4f}")


def test_the_page_works_under_a_url_prefix(page: Any, proxy: ProxyServer, embedded: GunicornServer,
                                           tmp_path: Path) -> None:
    """Embedded under /llm in a host app: forms post under the prefix, the cookie is scoped to it."""
    check_page_under_prefix(page, proxy, embedded, "prefixed@example.com", "host app")
    shot = tmp_path / "usage-page.png"  # for a person to look at when this fails
    assert page.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    sign_out(page)
    assert page.current_url == embedded.url + "/llm/ui/" and session_cookie(page) is None
    assert page.find_elements(NAME, "key")


class Behind:
    """nginx serving the proxy under /llm/ (X-Forwarded-Prefix), the way a company mounts it on a shared host."""

    def __init__(self, url: str) -> None:
        self.url = url


@pytest.fixture(scope="module")
def nginx_llm(proxy: ProxyServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Behind]:
    from tests.e2e.test_nginx import NGINX, Nginx, main_config

    if NGINX is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    directory = tmp_path_factory.mktemp("nginx-llm")
    port = free_port()
    site = f"""
    upstream claude_proxy {{ server 127.0.0.1:{proxy.port}; }}
    map $http_x_request_id $claude_proxy_request_id {{ default $http_x_request_id; "" $request_id; }}
    server {{
        listen 127.0.0.1:{port};
        location /llm/ {{
            proxy_pass http://claude_proxy/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Prefix /llm;
            proxy_buffering off;
        }}
    }}
"""
    conf = directory / "nginx.conf"
    conf.write_text(main_config(directory, site, free_port()))
    process = subprocess.Popen([NGINX, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nginx = Nginx(directory, port, 0, process)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, nginx.error_log()
            try:
                if requests.get(f"{nginx.url}/llm/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, nginx.error_log()
            time.sleep(0.05)
        yield Behind(nginx.url)
    finally:
        nginx.stop()


def test_the_page_works_behind_nginx_under_a_prefix(page: Any, proxy: ProxyServer, nginx_llm: Behind) -> None:
    """nginx `location /llm/` with X-Forwarded-Prefix and `[server] forwarded_prefix = true`: links,
    forms and the cookie carry /llm, so the browser never leaves the prefix nginx serves."""
    check_page_under_prefix(page, proxy, nginx_llm, "behind@example.com", "behind nginx")
    sign_out(page)
    assert page.current_url == nginx_llm.url + "/llm/ui/" and session_cookie(page) is None


def test_without_forwarded_prefix_the_header_is_not_trusted() -> None:
    """Only a proxy in front may name the prefix: with the setting off (the default) a client's header changes nothing."""
    from claude_proxy.config.loader import load_config
    from claude_proxy.web.app import create_app

    for on, action in ((False, 'action="/ui/login"'), (True, 'action="/llm/ui/login"')):
        data = {"provider": {"name": "custom", "base_url": "http://127.0.0.1:9", "api_key": "k"},
                "teams": {"path": str(Path(tempfile.mkdtemp(prefix="claude-proxy-prefix-")) / "teams.db")},
                "server": {"forwarded_prefix": on}}
        client = create_app(load_config(data=data, env={})).test_client()
        html = client.get("/ui/", headers={"X-Forwarded-Prefix": "/llm"}).get_data(as_text=True)
        assert action in html, html[:500]
