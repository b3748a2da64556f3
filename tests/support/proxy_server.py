"""Run the real proxy — the `claude-proxy` command under gunicorn — for end-to-end tests."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import requests

from .upstream import free_port

ROOT = Path(__file__).resolve().parents[2]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """A dict of {top-level key or table name: value or dict} as a TOML file."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    for name, table in tables:
        lines.append(f"\n[{name}]")
        for key, value in table.items():
            if isinstance(value, dict):
                continue
            lines.append(f"{toml_value(key) if not key.isidentifier() else key} = {toml_value(value)}")
        for key, value in table.items():
            if isinstance(value, dict):
                lines.append(f"\n[{name}.{key}]")
                lines.extend(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items())
    path.write_text("\n".join(lines) + "\n")
    return path


# Headers for a helper whose test keeps its response while the server stops: requests (urllib3 2) keeps
# a finished response's socket open as long as the response object lives, and gunicorn gives a kept-alive
# connection up to 2 s on a stop (gthread's STOP_KEEPALIVE_LINGER), so every such test paid 2 s at its end.
# Tests of keep-alive itself, and the module-scoped servers, keep their connections.
CLOSE = {"connection": "close"}


class ProxyServer:
    """`claude-proxy -c CONFIG` in a subprocess: real gunicorn, real sockets."""

    name = "claude-proxy"
    health_path = "/health"

    def __init__(
        self,
        config: dict[str, Any],
        *,
        workers: int = 1,
        threads: int = 16,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="claude-proxy-test-"))
        self.port = int(config.get("port") or free_port())
        config = {"port": self.port, **config}
        self.config_path = write_config(self.dir / "claude-proxy.toml", config)
        self.log_file = self.dir / "requests.jsonl"
        self.args = [
            sys.executable,
            "-m",
            "claude_proxy",
            "-c",
            str(self.config_path),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--log-file",
            str(self.log_file),
            *extra_args,
        ]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.exit_told = False  # its exit was ours (stop) or already reported (start): stop() says nothing more
        self.stderr_path = self.dir / "stderr.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ProxyServer:
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            self.args, cwd=self.dir, env=self.env, stdout=self._stderr, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.exit_told = True
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not become healthy:\n{self.output()}")

    def output(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def worker_pids(self, timeout: float = 10.0) -> list[int]:
        """The gunicorn master's children (its workers), once it has forked at least one."""
        assert self.process is not None
        master = self.process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            if kids:
                return [int(pid) for pid in kids]
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no worker after {timeout} s")

    def journal(self) -> list[dict[str, Any]]:
        import json

        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line.strip()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        told, self.exit_told = self.exit_told, True
        code = self.process.poll()
        # Exited on its own (a signal a test sent gives a negative code), e.g. gunicorn halting on a worker that
        # failed to boot: every test after it sees only "connection refused", so say why, with its output.
        if code is not None and code > 0 and not told:
            tail = "\n".join(self.output().splitlines()[-40:])
            warnings.warn(f"{self.name} on port {self.port} exited by itself with {code} before the test stopped it; "
                          f"its output ends:\n{tail}", RuntimeWarning, stacklevel=2)
        if code is None:
            gc.collect()  # connections the test dropped but the collector has not closed yet would hold the stop
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._stderr.close()
        return self.process.returncode

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
