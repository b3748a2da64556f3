"""`claude-proxy run [proxy options] -- <claude args>`: a private proxy for one Claude Code session.

Starts the proxy on a free loopback port (a child `python -m claude_proxy`, one worker), waits until /health
answers, runs `claude` with ANTHROPIC_BASE_URL pointing at it, stops the proxy when claude exits and returns
claude's exit code. The proxy runs in its own session so the terminal's Ctrl-C reaches claude (which uses it
to interrupt a turn) but not the proxy; SIGTERM/SIGHUP sent to the launcher are passed on to claude.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import IO

from claude_proxy.cli.main import PROG, build_parser, check_exposure, resolve
from claude_proxy.config.loader import Config, ConfigError, search_paths

NAME = f"{PROG} run"
CLAUDE_ENV = "CLAUDE_BIN"  # path of the claude executable, if not the one on PATH
PLACEHOLDER_KEY = "claude-proxy"  # Claude Code wants some key; the proxy uses its own provider key
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PORT_ATTEMPTS = 3


class LaunchError(Exception):
    """Something that stops the launch before claude runs (one line, exit 2)."""


def build_run_parser() -> argparse.ArgumentParser:
    """The main command's options (config, provider, log file, ...), under `claude-proxy run`."""
    parser = build_parser({  # same options, but `run` has its own defaults
        "port": "port to listen on (default: a free one)",
        "host": "address to bind (default 127.0.0.1, whatever the config says)",
        "workers": "gunicorn worker processes (default 1)",
    })
    parser.prog = NAME
    parser.usage = f"{NAME} [proxy options] [-- claude arguments]"
    parser.description = (
        "Start claude-proxy on a free local port, run Claude Code against it, and stop the proxy when Claude Code "
        "exits (its exit code is passed through). Everything after `--` goes to claude."
    )
    return parser


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(proxy options, claude arguments): claude's come after the first `--`."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def find_claude(env: dict[str, str]) -> str:
    explicit = env.get(CLAUDE_ENV, "").strip()
    if explicit:
        path = shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
        if not path:
            raise LaunchError(f"${CLAUDE_ENV} is {explicit!r}, which is not an executable file")
        return path
    path = shutil.which("claude", path=env.get("PATH"))
    if not path:
        raise LaunchError(
            "cannot find the `claude` command on PATH: install Claude Code "
            f"(npm install -g @anthropic-ai/claude-code) or set ${CLAUDE_ENV} to its path"
        )
    return path


def free_port(host: str, port: int = 0) -> int:
    """A port free on host right now: any (port 0), or a check that the given one is (gunicorn would retry 5 s)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            raise LaunchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        return int(s.getsockname()[1])


def claude_env(config: Config, base_url: str, env: dict[str, str]) -> dict[str, str]:
    """The environment for claude: the caller's, pointed at the proxy, with a key the proxy accepts."""
    env = {**env, "ANTHROPIC_BASE_URL": base_url}
    if config.auth_keys:
        env["ANTHROPIC_API_KEY"] = config.auth_keys[0]  # the proxy demands one of its keys
    elif not env.get("ANTHROPIC_API_KEY") and not env.get("ANTHROPIC_AUTH_TOKEN"):
        env["ANTHROPIC_API_KEY"] = PLACEHOLDER_KEY
    return env


def _die_with_parent() -> None:
    """In the proxy child (Linux): get SIGTERM if the launcher dies without stopping it (e.g. SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class Stopped(Exception):
    """SIGTERM/SIGHUP arrived while the proxy was starting."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signum)


class ProxyProcess:
    """The proxy as a child process in its own session; its output goes to a temporary file."""

    def __init__(self, proxy_args: list[str], config: Config, env: dict[str, str]) -> None:
        self.config = config
        host = config.host
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{config.port}"
        self.command = [
            sys.executable, "-m", "claude_proxy", *proxy_args,
            "--host", host, "--port", str(config.port), "--workers", str(config.workers),
        ]  # fmt: skip
        fd, name = tempfile.mkstemp(prefix="claude-proxy-run-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # the terminal's Ctrl-C is for claude, not for the proxy
            preexec_fn=_die_with_parent,
        )

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise LaunchError(f"the proxy exited with code {code} before it was ready")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.05)
        raise LaunchError(f"the proxy did not answer {self.url}/health within {timeout:.0f}s")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (gunicorn's graceful stop), then SIGKILL for the whole group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except OSError:
                    self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode

    def discard_log(self) -> None:
        self.log_path.unlink(missing_ok=True)


def start_proxy(proxy_args: list[str], config: Config, explicit_port: bool, env: dict[str, str]) -> ProxyProcess:
    """Start and wait for the proxy; a port taken between picking and binding is picked again."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        config = replace(config, port=free_port(config.host, config.port if explicit_port else 0))
        proxy = ProxyProcess(proxy_args, config, env)
        try:
            proxy.wait_ready()
            return proxy
        except BaseException as exc:
            if not isinstance(exc, LaunchError):  # Ctrl-C or SIGTERM while starting: leave nothing behind
                proxy.stop()
                proxy.discard_log()
                raise
            proxy.stop()
            output = proxy.output()
            proxy.discard_log()
            if not explicit_port and attempt < PORT_ATTEMPTS and "already in use" in output:
                continue
            last = [line for line in output.splitlines() if line.strip()][-5:]
            detail = ("; its last output: " + " | ".join(last)) if last else ""
            raise LaunchError(f"{exc}{detail}") from None
    raise AssertionError("unreachable")


def exit_code(returncode: int) -> int:
    """A child killed by signal N exits the launcher with 128+N, like a shell would report it."""
    return 128 - returncode if returncode < 0 else returncode


def run_claude(command: list[str], env: dict[str, str]) -> int:
    """Run claude in the foreground; pass SIGTERM/SIGHUP on to it, leave SIGINT to the terminal."""
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),  # claude gets the terminal's Ctrl-C itself
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
        signal.SIGHUP: signal.signal(signal.SIGHUP, forward),
    }
    try:
        while True:
            try:
                return exit_code(child.wait())
            except KeyboardInterrupt:  # pragma: no cover - SIGINT is ignored above; belt and braces
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    proxy_args, claude_args = split_argv(sys.argv[1:] if argv is None else argv)
    parser = build_run_parser()
    try:
        args = parser.parse_args(proxy_args)
    except SystemExit as exc:  # --help, --version, usage errors: argparse already printed
        return int(exc.code or 0)
    if args.show_config_paths:
        for path in search_paths(args.config):
            print(f"{'*' if path.is_file() else ' '} {path}")
        return 0
    env = dict(os.environ)
    try:
        config = resolve(args, env)
        # A private proxy: loopback unless --host says otherwise, one worker unless --workers does.
        config = replace(config, host=args.host or "127.0.0.1", workers=args.workers or 1)
        check_exposure(config)
        claude = find_claude(env)
    except (ConfigError, LaunchError) as exc:
        print(f"{NAME}: error: {exc}", file=sys.stderr)
        return 2
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        proxy = start_proxy(proxy_args, config, bool(args.port), env)
    except LaunchError as exc:
        print(f"{NAME}: error: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"{NAME}: proxy for {config.provider.name} on {proxy.url}", file=sys.stderr, flush=True)
    if config.provider.key_missing:
        print(
            f"{NAME}: warning: no API key for {config.provider.name}: set {config.provider.api_key_env} "
            "(requests will get 401 until you do)",
            file=sys.stderr,
            flush=True,
        )
    try:
        code = run_claude([claude, *claude_args], claude_env(proxy.config, proxy.url, env))
    except OSError as exc:
        print(f"{NAME}: error: cannot run {claude}: {exc}", file=sys.stderr)
        code = 2
    finally:
        crashed = proxy.process.poll() is not None
        proxy_code = proxy.stop()
    if crashed:
        print(f"{NAME}: the proxy exited early (code {proxy_code}); its output is in {proxy.log_path}", file=sys.stderr)
    else:
        proxy.discard_log()
    return code
