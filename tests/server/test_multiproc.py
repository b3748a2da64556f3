"""The master's metrics directory: made per start, removed at exit, and a SIGKILLed master's leftovers
removed by the next start (they would otherwise pile up in the temp dir, one per crash)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from claude_proxy.server import multiproc
from tests.conftest import proxy_config
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_directories_of_dead_masters_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"{multiproc.PREFIX}{dead_pid()}-abc"
    alive = tmp_path / f"{multiproc.PREFIX}{os.getpid()}-def"
    foreign = tmp_path / "claude-proxy-metrics-notapid"
    other = tmp_path / "something-else-1"
    for d in (stale, alive, foreign, other):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"x")
    assert multiproc.remove_stale(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and alive.exists() and foreign.exists() and other.exists()


def test_setup_names_the_directory_after_the_master(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    env: dict[str, str] = {}
    path = multiproc.setup_multiprocess(env)
    assert path is not None and env[multiproc.MULTIPROC_ENV] == path
    assert Path(path).name.startswith(f"{multiproc.PREFIX}{os.getpid()}-")
    multiproc.cleanup(path)
    assert not Path(path).exists()


@pytest.mark.e2e
def test_a_sigkilled_masters_directory_is_cleaned_on_the_next_start(tmp_path: Path) -> None:
    env = {"TMPDIR": str(tmp_path)}
    with FakeUpstream() as upstream:
        first = ProxyServer(proxy_config(upstream), env=env).start()
        assert requests.get(first.url + "/health", timeout=5).ok
        assert first.process is not None
        [left] = list(tmp_path.glob(f"{multiproc.PREFIX}{first.process.pid}-*"))
        first.process.send_signal(signal.SIGKILL)  # no atexit, no cleanup (its workers exit on their own)
        first.process.wait()
        assert left.exists()  # nobody cleaned up after a SIGKILL
        with ProxyServer(proxy_config(upstream), env=env) as second:
            assert requests.get(second.url + "/health", timeout=5).ok
            assert not left.exists()
            assert second.process is not None
            assert list(tmp_path.glob(f"{multiproc.PREFIX}{second.process.pid}-*"))
        first.stop()

