"""A real forward (egress) proxy for tests: Debian's `tinyproxy`, on a free port with its own config and log.

The log (LogLevel Connect) has one `Request (...): CONNECT host:port HTTP/1.1` line per tunnel, so a
test can say whether a call went through the proxy or around it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
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


class TlsFront:
    """An HTTPS proxy made of a real one: TLS (the test's certificate) on a free port, in front of a
    plain proxy such as tinyproxy, every byte relayed both ways. A company's `https://` egress proxy is
    this: the client speaks TLS to the proxy itself, then CONNECT, then TLS to the upstream inside it."""

    def __init__(self, target_port: int, context: ssl.SSLContext) -> None:
        self.target_port = target_port
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0  # TLS sessions the front completed
        self.refused = 0  # handshakes that failed (a client that did not trust the certificate)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tls-front", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(10)
            tls = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            self.refused += 1
            raw.close()
            return
        self.handshakes += 1
        try:
            inner = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            tls.close()
            return
        tls.settimeout(None)
        inner.settimeout(None)
        back = threading.Thread(target=_pump, args=(inner, tls), daemon=True)
        back.start()
        _pump(tls, inner)
        back.join(10)
        tls.close()
        inner.close()

    def __enter__(self) -> TlsFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Bytes from src to dst until either side closes; then both are shut."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
