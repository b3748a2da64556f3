"""A real forward (egress) proxy for tests: Debian's `tinyproxy`, on a free port with its own config and log.

The log (LogLevel Connect) has one `Request (...): CONNECT host:port HTTP/1.1` line per tunnel, so a
test can say whether a call went through the proxy or around it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .upstream import free_port


def require_tinyproxy() -> str:
    """Its path; skipped with a reason when missing (a failure under CI=true, where it must be installed)."""
    path = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None)
    if path is None:
        message = "tinyproxy is not installed (apt-get install -y tinyproxy)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class Tinyproxy:
    """`tinyproxy -d -c CONF` in the foreground; `user`/`password` turn on Basic proxy authentication."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.binary = require_tinyproxy()
        self.dir = Path(tempfile.mkdtemp(prefix="tinyproxy-test-"))
        self.port = free_port()
        self.log = self.dir / "tinyproxy.log"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.log}"',
            "LogLevel Connect",
            "MaxClients 200",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
        ]  # no ConnectPort line: CONNECT to any port (the test upstreams use free ports)
        if user and password:
            lines.append(f"BasicAuth {user} {password}")
        self.conf = self.dir / "tinyproxy.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.user, self.password = user, password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user and self.password else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Tinyproxy:
        out = (self.dir / "stdout.log").open("wb")
        self.process = subprocess.Popen([self.binary, "-d", "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + timeout
        import socket

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {self.process.returncode}: {(self.dir / 'stdout.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("tinyproxy did not start listening")

    def connects(self, port: int | None = None) -> list[str]:
        """The CONNECT request lines it logged (to `port` only, if given)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        found = [line for line in text.splitlines() if "Request (" in line and ": CONNECT " in line]
        return [line for line in found if port is None or f"CONNECT 127.0.0.1:{port} " in line]

    def requests(self, port: int) -> list[str]:
        """The plain (http://, absolute-URI) request lines it logged for 127.0.0.1:`port`."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "Request (" in line and f"http://127.0.0.1:{port}/" in line]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> Tinyproxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
