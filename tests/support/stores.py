"""Private PostgreSQL and Redis servers for tests: free loopback ports, temporary directories, and
kill / stop / start for fault tests. Never a system-wide service on a standard port.

Binaries come from Debian's packages (`redis-server`, `postgresql`). Where one is missing the test
skips with a reason — except under CI=true (or CLAUDE_PROXY_REQUIRE_SERVERS=1), where it fails, so
CI cannot pass without running them. PostgreSQL refuses to run as root: when the tests run as root,
the data directory is chowned to `postgres` and initdb/pg_ctl run through `runuser -u postgres --`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .upstream import free_port


def require(what: str, why: str) -> None:
    """Skip (with the reason) — or fail, when CI demands the servers."""
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("CLAUDE_PROXY_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{what} is required under CI: {why}")
    pytest.skip(f"{what} unavailable: {why}")


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class RedisServer:
    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                                       else None)
        if self.binary is None:
            require("redis-server", "install Debian's redis-server package")
        self.dir = Path(tempfile.mkdtemp(prefix="claude-proxy-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert self.binary is not None
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--protected-mode", "yes", "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL: everything in it is gone (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: a hung Redis (connections accepted by the kernel, never answered)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            require("PostgreSQL", "install Debian's postgresql package (initdb, pg_ctl)")
        self.bin = Path(found[-1]).parent
        self.root = os.geteuid() == 0
        if self.root and shutil.which("runuser") is None:
            require("PostgreSQL", "running as root needs runuser to start it as the postgres user")
        self.dir = Path(tempfile.mkdtemp(prefix="claude-proxy-pg-"))
        self.data = self.dir / "data"
        self.sockets = self.dir / "run"
        self.port = free_port()
        self.initialised = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)

    def start(self) -> PostgresServer:
        if not self.initialised:
            self.sockets.mkdir(parents=True, exist_ok=True)
            if self.root:
                shutil.chown(self.dir, "postgres")
                shutil.chown(self.sockets, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
            self.initialised = True
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.sockets}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "pg.log"), "-w", "-t", "30",
                  "start")
        _wait_port(self.port)
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def database(self, name: str) -> str:
        """A fresh database on this server; its DSN."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def migrate(dsn: str) -> None:
    """Apply the packaged alembic revisions to `dsn` (what `claude-proxy store migrate` does)."""
    from alembic import command

    from claude_proxy.cli.store import alembic_config

    command.upgrade(alembic_config(dsn), "head")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.cleanup()
