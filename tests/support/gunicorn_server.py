"""Plain `gunicorn MODULE:app` servers and process-tree helpers for deployment tests.

`ProxyServer` runs the `claude-proxy` command; `GunicornServer` runs gunicorn itself the way the
README tells people to (`gunicorn wsgi:app --threads 32`), or any WSGI module (an app that
embeds the blueprint), with the config named by CLAUDE_PROXY_CONFIG.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .proxy_server import ROOT, ProxyServer, write_config


class GunicornServer(ProxyServer):
    """`python -m gunicorn TARGET --threads N --bind 127.0.0.1:PORT` run from the repository root.

    The request log is whatever the config's [server] log_file says (gunicorn has no --log-file of ours).
    """

    name = "gunicorn"

    def __init__(
        self,
        config: dict[str, Any],
        target: str = "wsgi:app",
        *,
        workers: int = 1,
        threads: int = 32,
        health_path: str = "/health",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(config, env=env)
        self.health_path = health_path
        server = dict(config.get("server") or {})
        server.setdefault("log_file", str(self.log_file))
        write_config(self.config_path, {"port": self.port, **config, "server": server})
        self.args = [
            sys.executable,
            "-m",
            "gunicorn",
            target,
            "--chdir",
            str(ROOT),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--bind",
            f"127.0.0.1:{self.port}",
            *extra_args,
        ]
        self.env["CLAUDE_PROXY_CONFIG"] = str(self.config_path)


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def wait_for_children(
    pid: int, count: int, timeout: float = 15.0, exclude: set[int] | frozenset[int] = frozenset()
) -> list[int]:
    """The children of `pid` once there are `count` of them not in `exclude` (gunicorn respawning workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in children(pid) if p not in exclude]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} has children {children(pid)}, expected {count} new ones")


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> list[int]:
    """Signal a gunicorn master and all its workers at once (a crashed host, not a graceful stop)."""
    victims = [*children(pid), pid]
    for victim in victims:
        try:
            os.kill(victim, sig)
        except ProcessLookupError:
            pass
    return victims


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until none of `pids` is alive (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return
        time.sleep(0.02)
    raise TimeoutError(f"still alive: {pids}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
