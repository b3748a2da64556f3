"""`claude-proxy run -- <claude args>` with a fake `claude` (a Python script) against the real proxy and upstream.

The fake claude talks to ANTHROPIC_BASE_URL like the real one would, reports what it saw as one JSON line and
exits with a chosen code, so every promise of the launcher is checked from the outside: the proxy is up before
claude starts, claude gets the base URL and a key, its arguments and exit code pass through, the proxy is gone
afterwards, and Ctrl-C / SIGTERM do what a terminal user expects.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.cli import run as launcher
from claude_proxy.cli.run import claude_env, exit_code, split_argv
from claude_proxy.config.loader import load_config
from tests.conftest import proxy_config
from tests.support.proxy_server import write_config
from tests.support.upstream import FakeUpstream, Json, completion

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

FAKE_CLAUDE = """\
#!{python}
import json, os, signal, sys, time, urllib.request

base = os.environ["ANTHROPIC_BASE_URL"]
mode = os.environ.get("FAKE_CLAUDE_MODE", "call")
got = []
if mode == "wait":  # like the TUI: Ctrl-C interrupts the turn, the session goes on
    signal.signal(signal.SIGINT, lambda *_: got.append("SIGINT"))
    signal.signal(signal.SIGTERM, lambda *_: got.append("SIGTERM"))
    print("ready", base, flush=True)
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
if mode == "die":
    print("ready", base, flush=True)
    time.sleep(20)
body = json.dumps({{"model": "claude-sonnet-5", "max_tokens": 50, "messages": [{{"role": "user", "content": "hi"}}]}})
request = urllib.request.Request(
    base + "/v1/messages", data=body.encode(), method="POST",
    headers={{"content-type": "application/json", "x-api-key": os.environ.get("ANTHROPIC_API_KEY", ""),
             "anthropic-version": "2023-06-01"}},
)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
except urllib.error.HTTPError as exc:
    answer = {{"status": exc.code, "body": json.loads(exc.read())}}
print(json.dumps({{"argv": sys.argv[1:], "base_url": base, "key": os.environ.get("ANTHROPIC_API_KEY"),
                  "token": os.environ.get("ANTHROPIC_AUTH_TOKEN"), "answer": answer, "signals": got}}), flush=True)
sys.exit(int(os.environ.get("FAKE_CLAUDE_EXIT", "3")))
"""


@pytest.fixture
def fake_claude(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "claude"
    script.write_text(FAKE_CLAUDE.format(python=sys.executable))
    script.chmod(0o755)
    return bin_dir


@pytest.fixture
def config_file(tmp_path: Path, upstream: FakeUpstream) -> Path:
    return write_config(tmp_path / "claude-proxy.toml", proxy_config(upstream))


def launcher_env(bin_dir: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    else:
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run_launcher(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "claude_proxy", "run", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def report(stdout: str) -> dict[str, Any]:
    """The fake claude's JSON line."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def refuses(base_url: str) -> bool:
    """True once nothing listens at base_url any more."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def test_runs_claude_against_the_proxy_and_passes_its_exit_code(
    fake_claude: Path, config_file: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Json(completion("Hi from upstream", prompt_tokens=11, completion_tokens=4)))
    journal = tmp_path / "requests.jsonl"
    done = run_launcher(
        ["-c", str(config_file), "--log-file", str(journal), "--", "-p", "say hi", "--output-format", "json"],
        launcher_env(fake_claude),
    )
    assert done.returncode == 3, done.stderr
    seen = report(done.stdout)
    assert seen["argv"] == ["-p", "say hi", "--output-format", "json"]
    assert seen["base_url"].startswith("http://127.0.0.1:")
    assert seen["key"] == "claude-proxy"  # a placeholder: Claude Code insists on some key
    assert seen["answer"]["content"] == [{"type": "text", "text": "Hi from upstream"}]
    assert (seen["answer"]["usage"]["input_tokens"], seen["answer"]["usage"]["output_tokens"]) == (11, 4)
    assert refuses(seen["base_url"])  # the proxy stopped with claude
    assert f"proxy for custom on {seen['base_url']}" in done.stderr
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(e["endpoint"], e["status"]) for e in entries] == [("messages", 200)]
    assert upstream.last_request.json["model"] == "big-model"


def test_keeps_the_callers_key_and_zero_exit(fake_claude: Path, config_file: Path, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("ok")))
    env = launcher_env(fake_claude, ANTHROPIC_API_KEY="user-key", FAKE_CLAUDE_EXIT="0")
    done = run_launcher(["-c", str(config_file), "--log-file", "-"], env)
    assert done.returncode == 0, done.stderr
    seen = report(done.stdout)
    assert (seen["argv"], seen["key"]) == ([], "user-key")


def test_gives_claude_a_proxy_key_when_the_proxy_demands_one(
    fake_claude: Path, tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = write_config(tmp_path / "keys.toml", proxy_config(upstream, server={"auth_keys": ["proxy-key-1"]}))
    upstream.enqueue(Json(completion("authorised")))
    done = run_launcher(["-c", str(config), "--log-file", "-"], launcher_env(fake_claude, ANTHROPIC_API_KEY="x"))
    assert done.returncode == 3, done.stderr
    seen = report(done.stdout)
    assert seen["key"] == "proxy-key-1"
    assert seen["answer"]["content"][0]["text"] == "authorised"


def test_warns_when_the_provider_key_is_missing(fake_claude: Path, tmp_path: Path, upstream: FakeUpstream) -> None:
    provider = {"name": "openai", "base_url": upstream.url, "api_key_env": "CLAUDE_PROXY_TEST_UNSET_KEY"}
    config = write_config(tmp_path / "nokey.toml", {**proxy_config(upstream), "provider": provider})
    seen_before = len(upstream.requests)
    done = run_launcher(["-c", str(config), "--log-file", "-"], launcher_env(fake_claude))
    assert done.returncode == 3, done.stderr
    assert (
        "claude-proxy run: warning: no API key for openai: set CLAUDE_PROXY_TEST_UNSET_KEY "
        "(requests will get 401 until you do)"
    ) in done.stderr.splitlines()
    answer = report(done.stdout)["answer"]
    assert answer["status"] == 401 and answer["body"]["error"]["type"] == "authentication_error"
    assert len(upstream.requests) == seen_before  # nothing was sent without a key


def test_claude_missing(config_file: Path, tmp_path: Path) -> None:
    done = run_launcher(["-c", str(config_file), "--log-file", "-", "--", "-p", "hi"], launcher_env(None))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "claude-proxy run: error: cannot find the `claude` command on PATH: install Claude Code "
        "(npm install -g @anthropic-ai/claude-code) or set $CLAUDE_BIN to its path"
    ]
    bogus = launcher_env(None, CLAUDE_BIN=str(tmp_path / "nope"))
    done = run_launcher(["-c", str(config_file), "--log-file", "-"], bogus)
    assert done.returncode == 2
    assert "$CLAUDE_BIN is" in done.stderr and "not an executable file" in done.stderr


def test_claude_bin_overrides_path(fake_claude: Path, config_file: Path, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("ok")))
    env = launcher_env(None, CLAUDE_BIN=str(fake_claude / "claude"))
    done = run_launcher(["-c", str(config_file), "--log-file", "-", "--", "--version"], env)
    assert done.returncode == 3, done.stderr
    assert report(done.stdout)["argv"] == ["--version"]


def test_bad_config_is_one_line_and_exit_2(fake_claude: Path, tmp_path: Path) -> None:
    done = run_launcher(["-c", str(tmp_path / "missing.toml")], launcher_env(fake_claude))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("claude-proxy run: error: "), done.stderr


def test_port_in_use_is_exit_2(fake_claude: Path, config_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = run_launcher(["-c", str(config_file), "--log-file", "-", "--port", str(port)], launcher_env(fake_claude))
    assert done.returncode == 2
    assert done.stdout == ""  # claude never ran
    assert done.stderr.strip().splitlines() == [
        f"claude-proxy run: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_proxy_that_dies_while_starting_is_exit_2(
    fake_claude: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, with a 'python' that exits at once: claude must not run, the error is one line."""
    fake_python = fake_claude.parent / "python-that-fails"
    fake_python.write_text("#!/bin/sh\necho 'ImportError: no module named claude_proxy' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake_python))
    monkeypatch.setenv("PATH", f"{fake_claude}{os.pathsep}{os.environ['PATH']}")
    assert launcher.main(["-c", str(config_file), "--log-file", "-", "--", "-p", "hi"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "claude-proxy run: error: the proxy exited with code 1 before it was ready; "
        "its last output: ImportError: no module named claude_proxy"
    ]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """The launcher in its own process group, as a terminal would run it (so the test can 'press Ctrl-C')."""
    command = [sys.executable, "-m", "claude_proxy", "run", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
    )


def _wait_ready(process: subprocess.Popen[str]) -> str:
    """Wait for the fake claude's `ready <base_url>` line; the base URL."""
    assert process.stdout is not None
    line = process.stdout.readline().split()
    assert line[:1] == ["ready"], (line, process.stderr.read() if process.stderr else "")
    return line[1]


def test_ctrl_c_goes_to_claude_not_to_the_proxy(fake_claude: Path, config_file: Path, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("still here")))
    env = launcher_env(fake_claude, FAKE_CLAUDE_MODE="wait", FAKE_CLAUDE_EXIT="0")
    process = _start(["-c", str(config_file), "--log-file", "-"], env)
    try:
        _wait_ready(process)
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C: the whole foreground group
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    seen = report(stdout)
    assert seen["signals"] == ["SIGINT"]
    assert seen["answer"]["content"][0]["text"] == "still here"  # the proxy survived the Ctrl-C
    assert refuses(seen["base_url"])


def test_sigterm_is_forwarded_to_claude(fake_claude: Path, config_file: Path, upstream: FakeUpstream) -> None:
    upstream.enqueue(Json(completion("bye")))
    env = launcher_env(fake_claude, FAKE_CLAUDE_MODE="wait", FAKE_CLAUDE_EXIT="5")
    process = _start(["-c", str(config_file), "--log-file", "-"], env)
    try:
        _wait_ready(process)
        process.send_signal(signal.SIGTERM)  # only the launcher, e.g. from a supervisor
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 5, stderr
    seen = report(stdout)
    assert seen["signals"] == ["SIGTERM"]
    assert refuses(seen["base_url"])


def test_claude_killed_by_a_signal_exits_128_plus_n(fake_claude: Path, config_file: Path) -> None:
    env = launcher_env(fake_claude, FAKE_CLAUDE_MODE="die")
    process = _start(["-c", str(config_file), "--log-file", "-"], env)
    try:
        _wait_ready(process)
        process.send_signal(signal.SIGTERM)  # forwarded; the fake claude does not catch it this time
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "proxy exited early" not in stderr


def test_proxy_dies_with_a_killed_launcher(fake_claude: Path, config_file: Path) -> None:
    """SIGKILL leaves the launcher no chance to clean up: the proxy must still not outlive it (Linux)."""
    env = launcher_env(fake_claude, FAKE_CLAUDE_MODE="die")
    process = _start(["-c", str(config_file), "--log-file", "-"], env)
    try:
        base_url = _wait_ready(process)
        assert not refuses(base_url)
        process.kill()
        process.wait(10)
        deadline = time.monotonic() + 20
        while not refuses(base_url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert refuses(base_url)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the fake claude, still sleeping in the launcher's group
        process.wait(10)


def test_helpers() -> None:
    assert split_argv(["-c", "x.toml", "--", "-p", "hi", "--", "x"]) == (["-c", "x.toml"], ["-p", "hi", "--", "x"])
    assert split_argv(["--provider", "openai"]) == (["--provider", "openai"], [])
    assert exit_code(3) == 3 and exit_code(-signal.SIGKILL) == 137


def test_claude_env_keeps_an_auth_token(config_file: Path) -> None:
    config = load_config(str(config_file), env={})
    env = claude_env(config, "http://127.0.0.1:1", {"ANTHROPIC_AUTH_TOKEN": "tok", "HOME": "/h"})
    assert env == {"ANTHROPIC_AUTH_TOKEN": "tok", "HOME": "/h", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}
