"""The workers' shared metrics directory under gunicorn (master side).

Each worker is a separate process, so the `claude-proxy` command creates a private directory and
exports PROMETHEUS_MULTIPROC_DIR before the workers fork (each keeps its values in files there:
`pipeline.prometheus`), marks dead workers with the `child_exit` hook (their live gauges vanish,
their counters stay) and removes the directory when the master exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import MutableMapping
from typing import Any

from claude_proxy.pipeline.metrics import MULTIPROC_ENV, multiprocess_dir
from claude_proxy.pipeline.prometheus import mark_dead

PREFIX = "claude-proxy-metrics-"  # then the master's pid, so a later start can tell a dead master's leftovers


def setup_multiprocess(env: MutableMapping[str, str] | None = None) -> str | None:
    """Before workers fork: make a private metrics directory and export it.

    Returns the directory this call created (the caller removes it at exit with `cleanup`),
    or None when the operator already set PROMETHEUS_MULTIPROC_DIR (theirs to manage).
    """
    env = os.environ if env is None else env
    theirs = multiprocess_dir(env)
    if theirs:
        os.makedirs(theirs, exist_ok=True)
        return None
    remove_stale(tempfile.gettempdir())
    path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
    env[MULTIPROC_ENV] = path
    return path


def remove_stale(parent: str) -> list[str]:
    """Remove the metrics directories of masters that died without cleaning up (SIGKILL, OOM):
    ours (same user), named with a master pid that no longer runs. Returns what was removed."""
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(PREFIX):
            continue
        pid_text = name[len(PREFIX) :].split("-", 1)[0]
        path = os.path.join(parent, name)
        try:
            if not pid_text.isdigit() or os.stat(path).st_uid != os.getuid() or _running(int(pid_text)):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def cleanup(path: str | None) -> None:
    """Remove a directory made by `setup_multiprocess` (master only, at exit)."""
    if path:
        shutil.rmtree(path, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn `child_exit` hook: a dead worker's live gauges (streams in flight) stop counting."""
    path = multiprocess_dir()
    if path:
        mark_dead(path, worker.pid)
