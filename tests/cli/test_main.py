"""The real `claude-proxy` command, run as a subprocess: errors, flags, banner, signals, gunicorn."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from claude_proxy import __version__
from tests.conftest import UPSTREAM_KEY, proxy_config
from tests.support.proxy_server import CLOSE, ROOT, ProxyServer, write_config
from tests.support.upstream import FakeUpstream, Json, completion, free_port

pytestmark = pytest.mark.e2e

ENTRY_POINT = Path(sys.executable).parent / "claude-proxy"
UNSET_KEY_VAR = "CLAUDE_PROXY_TEST_KEY_THAT_IS_NEVER_SET"
PROXY_KEY = "pk-proxy-client-key-98765"
BODY = {"model": "claude-sonnet-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, Any]:
    """cwd, HOME and XDG dirs with no config file, and an environment without the proxy's variables."""
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_PROXY") and k != "XDG_CONFIG_HOME"}
    env.update(HOME=str(home), XDG_STATE_HOME=str(tmp_path / "state"), PYTHONUNBUFFERED="1")
    return {"env": env, "cwd": cwd, "home": home, "tmp": tmp_path}


def run(
    args: list[str], isolated: dict[str, Any], *, module: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "claude_proxy"] if module else [str(ENTRY_POINT)]
    return subprocess.run(
        [*command, *args], cwd=isolated["cwd"], env=isolated["env"], capture_output=True, text=True, timeout=timeout
    )


def banner_value(output: str, label: str) -> str:
    """The value on the banner line labelled `label` (e.g. "provider")."""
    match = re.search(rf"^\s*{re.escape(label)}\s{{2,}}(.+?)\s*$", output, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{output}"
    return match.group(1)


# -- errors -----------------------------------------------------------------------------------------------------


BAD = [
    ("unknown_key", ["-c", "{cfg}"], '[provider]\nname = "ollama"\nbogus = 1\n', "{cfg}: unknown key 'provider.bogus'"),
    ("bad_toml", ["-c", "{cfg}"], '[provider\nname = "ollama"\n', "{cfg}: not valid TOML: "),
    ("missing_file", ["-c", "{tmp}/nope.toml"], None, "{tmp}/nope.toml: config file not found"),
    ("no_provider", [], None, "<no config file>: no provider configured"),
    ("bad_port_flag", ["--provider", "ollama", "--port", "70000"], None, "--port must be from 0 to 65535, got 70000"),
    ("bad_workers_flag", ["--provider", "ollama", "--workers", "0"], None, "--workers must be at least 1, got 0"),
    ("unknown_preset", ["--provider", "nosuch"], None, "<no config file>: unknown provider 'nosuch'"),
]


@pytest.mark.parametrize(("args", "text", "start"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_exits_2_with_one_line(
    isolated: dict[str, Any], args: list[str], text: str | None, start: str
) -> None:
    cfg = isolated["tmp"] / "bad.toml"
    if text is not None:
        cfg.write_text(text)
    names = {"cfg": cfg, "tmp": isolated["tmp"]}
    result = run([a.format(**names) for a in args], isolated)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("claude-proxy: error: " + start.format(**names)), lines[0]


def test_config_found_through_the_environment_variable(isolated: dict[str, Any]) -> None:
    cfg = isolated["tmp"] / "env.toml"
    cfg.write_text('[provider]\nname = "ollama"\ncolour = "red"\n')
    isolated["env"]["CLAUDE_PROXY_CONFIG"] = str(cfg)
    result = run([], isolated)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert result.stderr.startswith(f"claude-proxy: error: {cfg}: unknown key 'provider.colour'")


def test_refuses_a_public_bind_address_without_proxy_keys(isolated: dict[str, Any]) -> None:
    result = run(["--provider", "ollama", "--host", "0.0.0.0", "--port", str(free_port())], isolated)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("claude-proxy: error: refusing to listen on 0.0.0.0 without proxy keys")
    assert "auth_keys" in result.stderr and "allow_unauthenticated" in result.stderr


@pytest.mark.parametrize("where", ["through_a_file", "a_directory"])
def test_a_sqlite_store_path_that_cannot_be_is_one_line_before_any_worker(isolated: dict[str, Any], where: str) -> None:
    """`[teams] path` through a file, or naming a directory: exit 2 with one line, no worker started (each
    would fail to boot, and gunicorn would stop with a traceback)."""
    (isolated["tmp"] / "afile").write_text("")
    path = isolated["tmp"] / "afile" / "teams.db" if where == "through_a_file" else isolated["tmp"]
    cfg = isolated["tmp"] / "teams.toml"
    cfg.write_text(f'[provider]\nname = "ollama"\n\n[teams]\nstore = "sqlite"\npath = "{path}"\n')
    result = run(["-c", str(cfg), "--port", str(free_port())], isolated)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    expected = (f"{isolated['tmp'] / 'afile'} is a file, not a directory" if where == "through_a_file"
                else f"{path} is a directory: give the store's file")
    assert result.stderr.startswith(f"claude-proxy: error: [teams] path: {expected}"), result.stderr


def test_workers_that_all_fail_to_boot_end_the_command_with_their_line_and_no_traceback(
    isolated: dict[str, Any],
) -> None:
    """A store file that is not a database fails each worker's boot (one line each, exit 4). With several
    workers another fails while gunicorn stops for the first, and gunicorn's stop raised its HaltServer again:
    a traceback and exit 1 (every time with four workers). Now: the workers' line, why it stopped, exit 4."""
    store = isolated["tmp"] / "teams.db"
    store.write_bytes(b"not a database" * 400)
    cfg = isolated["tmp"] / "teams.toml"
    cfg.write_text(f'[provider]\nname = "ollama"\n\n[teams]\nstore = "sqlite"\npath = "{store}"\n')
    result = run(["-c", str(cfg), "--port", str(free_port()), "--workers", "4"], isolated)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "claude-proxy: error: [teams] the SQLite store cannot be opened: sqlite: DatabaseError: file is not a" \
        " database" in result.stderr
    assert "claude-proxy: stopped: App failed to load." in result.stderr or "Reason: App failed to load." in \
        result.stderr, result.stderr


# -- informational flags -----------------------------------------------------------------------------------------


def test_show_config_paths(isolated: dict[str, Any]) -> None:
    cwd, home, xdg = isolated["cwd"], isolated["home"], isolated["tmp"] / "xdg"
    (cwd / "claude-proxy.toml").write_text('[provider]\nname = "ollama"\n')
    isolated["env"]["XDG_CONFIG_HOME"] = str(xdg)
    result = run(["--show-config-paths"], isolated)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"* {cwd / 'claude-proxy.toml'}",
        f"  {xdg / 'claude-proxy' / 'config.toml'}",
        f"  {home / '.claude-proxy.toml'}",
    ]
    explicit = isolated["tmp"] / "explicit.toml"
    result = run(["--show-config-paths", "-c", str(explicit)], isolated)
    assert result.stdout.splitlines()[0] == f"  {explicit}"
    isolated["env"]["CLAUDE_PROXY_CONFIG"] = str(explicit)
    result = run(["--show-config-paths"], isolated)
    assert result.stdout.splitlines()[:2] == [f"  {explicit}", f"* {cwd / 'claude-proxy.toml'}"]


@pytest.mark.parametrize("module", [True, False], ids=["python-m", "entry-point"])
def test_version(isolated: dict[str, Any], module: bool) -> None:
    if not module and not ENTRY_POINT.exists():
        pytest.skip(f"{ENTRY_POINT} is not installed")
    for flag in ("-V", "--version"):
        result = run([flag], isolated, module=module)
        assert (result.returncode, result.stdout, result.stderr) == (0, f"claude-proxy {__version__}\n", "")


def test_help(isolated: dict[str, Any]) -> None:
    result = run(["-h"], isolated)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: claude-proxy ")
    for option in ("--config", "--port", "--host", "--provider", "--log-file", "--workers", "--threads"):
        assert option in result.stdout
    assert "--show-config-paths" in result.stdout and "CLAUDE_PROXY_CONFIG" in result.stdout


# -- the running server ----------------------------------------------------------------------------------------


def test_banner_shows_what_matters_and_no_secret(upstream: FakeUpstream) -> None:
    config = proxy_config(upstream, server={"auth_keys": [PROXY_KEY]})
    config["provider"] = {**config["provider"], "base_url": f"http://gwuser:gw-s3cret@127.0.0.1:{upstream.port}/v1"}
    with ProxyServer(config) as server:
        output = server.output()
    assert banner_value(output, "provider") == "custom (openai)"
    assert banner_value(output, "base URL") == f"http://***@127.0.0.1:{upstream.port}/v1"
    assert banner_value(output, "listening").startswith(f"http://127.0.0.1:{server.port} ")
    assert banner_value(output, "models").startswith("2 mapped")
    assert banner_value(output, "log file") == str(server.log_file)
    assert banner_value(output, "config") == str(server.config_path)
    assert banner_value(output, "API key") == "set"
    assert f"\n  ANTHROPIC_BASE_URL=http://localhost:{server.port} claude\n" in output
    for secret in (UPSTREAM_KEY, PROXY_KEY, "gw-s3cret"):
        assert secret not in output
    assert "Traceback" not in output


def test_public_bind_starts_when_explicitly_allowed(upstream: FakeUpstream) -> None:
    config = proxy_config(upstream, host="0.0.0.0", server={"allow_unauthenticated": True})
    with ProxyServer(config) as server:
        assert requests.get(server.url + "/health", timeout=5).json()["status"] == "ok"
        output = server.output()
    assert banner_value(output, "listening").startswith(f"http://0.0.0.0:{server.port} ")
    assert f"ANTHROPIC_BASE_URL=http://localhost:{server.port} claude" in output


def test_missing_api_key_starts_warns_and_answers_401(upstream: FakeUpstream) -> None:
    assert UNSET_KEY_VAR not in os.environ
    config = proxy_config(upstream)
    config["provider"] = {"name": "openai", "base_url": upstream.url, "api_key_env": UNSET_KEY_VAR}
    seen = len(upstream.requests)
    with ProxyServer(config) as server:
        output = server.output()
        response = requests.post(server.url + "/v1/messages", json=BODY, headers=CLOSE, timeout=10)
        health = requests.get(server.url + "/health", timeout=5).json()
    assert banner_value(output, "API key").startswith(f"MISSING — set {UNSET_KEY_VAR}")
    assert response.status_code == 401
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "authentication_error"
    assert UNSET_KEY_VAR in error["error"]["message"]
    assert health["api_key_configured"] is False
    assert len(upstream.requests) == seen  # nothing was sent without a key


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_stop_cleanly(upstream: FakeUpstream, sig: int) -> None:
    server = ProxyServer(proxy_config(upstream)).start()
    session = requests.Session()  # a keep-alive connection stays open, as Claude Code's would
    try:
        assert session.post(server.url + "/v1/messages", json=BODY, timeout=10).status_code == 200
        assert server.process is not None
        server.process.send_signal(sig)
        code = server.process.wait(timeout=10)
    finally:
        session.close()
        server.stop()
    assert code == 0, server.output()
    assert "Traceback" not in server.output()


@pytest.mark.parametrize("worker", [(), ("-k", "claude_proxy.server.worker.GracefulThreadWorker")], ids=["gthread", "ours"])
def test_gunicorn_wsgi_app(upstream: FakeUpstream, tmp_path: Path, worker: tuple[str, ...]) -> None:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip(f"{gunicorn} is not installed")
    cfg = write_config(tmp_path / "config.toml", proxy_config(upstream))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_PROXY")}
    env["CLAUDE_PROXY_CONFIG"] = str(cfg)
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [str(gunicorn), "wsgi:app", "--threads", "32", "-b", f"127.0.0.1:{port}", *worker],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                health = requests.get(url + "/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.05)
        assert health.status_code == 200
        assert health.json()["provider"] == "custom"
        with requests.Session() as session:  # keep-alive: the second request rides the same connection
            for text in ("from gunicorn", "again"):
                upstream.enqueue(Json(completion(text, prompt_tokens=3, completion_tokens=2)))
                response = session.post(url + "/v1/messages", json=BODY, timeout=10)
                assert response.status_code == 200, response.text
                message = response.json()
                assert message["content"] == [{"type": "text", "text": text}]
        assert message["usage"]["input_tokens"] == 3
        assert upstream.requests[-1].json["model"] == "big-model"
        assert upstream.requests[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()


def test_gunicorn_wsgi_app_with_a_bad_config_fails_without_a_traceback(tmp_path: Path) -> None:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip(f"{gunicorn} is not installed")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[provider]\nname = "custom"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE_PROXY")}
    env["CLAUDE_PROXY_CONFIG"] = str(cfg)
    result = subprocess.run(
        [str(gunicorn), "wsgi:app", "-b", f"127.0.0.1:{free_port()}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 4  # gunicorn's "App failed to load": it stops instead of respawning workers
    assert "Traceback" not in result.stderr
    assert f"claude-proxy: error: {cfg}: provider 'custom' needs 'provider.base_url'" in result.stderr


def test_leaves_no_control_socket_and_no_unused_detector_in_workers(upstream: FakeUpstream, tmp_path: Path) -> None:
    """gunicorn ≥ 25.1 would open a control socket at one path per user, shared by every instance;
    requests' encoding detector (~3 MB per worker, with its compiled modules) is never used."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "CLAUDE_PROXY_FAST_PATHS": "1"}  # the detector item on
    with ProxyServer(proxy_config(upstream), workers=2, env=env) as server:
        upstream.enqueue(Json(completion("hello", prompt_tokens=3, completion_tokens=1)))
        assert requests.post(server.url + "/v1/messages", json=BODY, timeout=10).status_code == 200
        assert server.process is not None
        master = server.process.pid
        workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
        assert len(workers) == 2
        for pid in workers:
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "charset_normalizer" not in maps, f"worker {pid} loaded the encoding detector"
        assert "Threads:\t1\n" in Path(f"/proc/{master}/status").read_text()  # no control-socket thread
    assert not list(home.rglob("*.ctl")) and not list(runtime.rglob("*.ctl"))
    assert "control socket" not in server.output().lower()
