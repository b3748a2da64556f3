"""How a server process is set up to stay small: `memory.defer_charset_detection` (requests'
encoding detector stays unloaded until something uses it) and `memory.defer_redis_asyncio` (redis-py's
asyncio client likewise, for the PostgreSQL + Redis store's workers).

The detector cases run in a fresh interpreter (the function changes `sys.modules` for the whole
process), with warnings turned into errors so requests' dependency check would fail loudly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import requests

from claude_proxy.server.switch import ENV
from tests.conftest import proxy_config
from tests.support.gunicorn_server import GunicornServer
from tests.support.proxy_server import ROOT, ProxyServer
from tests.support.upstream import FakeUpstream


def run(code: str, fast: str = "1") -> str:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, ENV: fast},  # the item under test is on, whatever the run's switch says
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_requests_imports_without_loading_the_detector_or_warning() -> None:
    out = run(
        """
        import sys
        from claude_proxy.server.memory import defer_charset_detection
        assert defer_charset_detection() is True
        import requests
        import claude_proxy.web.app
        loaded = sorted(m for m in sys.modules if m.startswith("charset_normalizer."))
        print(loaded, requests.__version__ != "")
        """
    )
    assert out == "[] True"


def test_the_switch_leaves_the_detector_as_requests_loads_it() -> None:
    out = run(
        """
        import sys
        from claude_proxy.server.memory import defer_charset_detection
        print(defer_charset_detection())
        import requests
        print(type(sys.modules["charset_normalizer"]).__name__, "charset_normalizer.api" in sys.modules)
        """,
        fast="0",
    )
    assert out.splitlines() == ["False", "module True"]


def test_the_detector_loads_when_an_encoding_is_guessed() -> None:
    out = run(
        """
        import sys
        from claude_proxy.server.memory import defer_charset_detection
        defer_charset_detection()
        import requests
        response = requests.models.Response()
        response._content = "déjà vu, café".encode()
        response.encoding = None  # no charset declared: requests guesses
        print(response.apparent_encoding, response.text, "charset_normalizer.api" in sys.modules)
        """
    )
    assert out == "utf-8 déjà vu, café True"


def test_submodules_and_attributes_still_import() -> None:
    out = run(
        """
        from claude_proxy.server.memory import defer_charset_detection
        defer_charset_detection()
        import requests
        from charset_normalizer.api import from_bytes
        print(from_bytes(b"plain ascii").best().encoding)
        import sys, charset_normalizer
        print(charset_normalizer.detect(b"plain ascii")["encoding"], type(sys.modules["charset_normalizer"]).__name__)
        """
    )
    assert out.splitlines() == ["ascii", "ascii module"]  # the first use put the real module in place


def test_too_late_once_requests_is_imported() -> None:
    out = run(
        """
        import sys, requests
        from claude_proxy.server.memory import defer_charset_detection
        print(defer_charset_detection(), type(sys.modules["charset_normalizer"]).__name__)
        """
    )
    assert out == "False module"


def test_probes_for_dunder_names_load_nothing() -> None:
    out = run(
        """
        import sys
        from claude_proxy.server.memory import defer_charset_detection
        defer_charset_detection()
        import charset_normalizer
        print(hasattr(charset_normalizer, "__file__"), hasattr(charset_normalizer, "__wrapped__"),
              charset_normalizer.__version__ != "", "charset_normalizer.api" in sys.modules)
        """
    )
    assert out == "False False True False"


def test_redis_imports_without_its_asyncio_client_and_the_store_uses_the_sync_one() -> None:
    out = run(
        """
        import sys
        from claude_proxy.server.memory import defer_redis_asyncio
        assert defer_redis_asyncio() is True
        import redis
        from claude_proxy.teams.redis_limits import RedisLimiter
        client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.1)
        loaded = sorted(m for m in sys.modules if m.startswith("redis.asyncio.") and m.split(".")[2] in
                        ("client", "cluster", "connection", "sentinel"))
        print(loaded, type(sys.modules["redis.asyncio"]).__name__, type(client).__name__)
        """
    )
    assert out == "[] _DeferredModule Redis"


def test_the_first_use_of_redis_asyncio_loads_the_real_package() -> None:
    out = run(
        """
        import sys
        from claude_proxy.server.memory import defer_redis_asyncio
        defer_redis_asyncio()
        import redis
        import redis.asyncio as aioredis
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
        print(type(client).__module__, type(sys.modules["redis.asyncio"]).__name__, redis.asyncio.Redis is aioredis.Redis)
        """
    )
    assert out == "redis.asyncio.client module True"


def test_the_switch_and_an_earlier_import_leave_redis_as_it_loads() -> None:
    off = run(
        """
        import sys
        from claude_proxy.server.memory import defer_redis_asyncio
        print(defer_redis_asyncio())
        import redis
        print(type(sys.modules["redis.asyncio"]).__name__, "redis.asyncio.client" in sys.modules)
        """,
        fast="0",
    )
    assert off.splitlines() == ["False", "module True"]
    late = run(
        """
        import sys, redis
        from claude_proxy.server.memory import defer_redis_asyncio
        print(defer_redis_asyncio(), type(sys.modules["redis.asyncio"]).__name__)
        """
    )
    assert late == "False module"


FORK_PROBE = """
import os, sys
import ssl  # as gunicorn's master has it

def libcrypto_kib():
    total, current = 0, ""
    for line in open("/proc/self/smaps"):
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            current = head[5] if len(head) > 5 else ""
        elif head and head[0] == "Rss:" and "libcrypto" in current:
            total += int(head[1])
    return total

if sys.argv[1] == "set-up":
    from claude_proxy.server.memory import set_up_digests_once
    set_up_digests_once()
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # a worker: what hashlib's import and a key's hash fault in
    before = libcrypto_kib()
    import hashlib
    hashlib.sha256(b"cpk_k1_secret").digest()
    os.write(write, str(libcrypto_kib() - before).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 64).decode())
"""


def _forked_worker_touches(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FORK_PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_set_up_in_the_parent_spares_each_forked_worker_most_libcrypto_pages() -> None:
    """`memory.set_up_digests_once` in the parent, as the master runs it: a forked child's `import hashlib`
    and first SHA-256 fault in a fraction of the libcrypto pages they do without it (file pages are not
    copied at a fork; measured here: ~0.7 MB against ~2.3 MB)."""
    without, with_set_up = _forked_worker_touches("plain"), _forked_worker_touches("set-up")
    assert without > 0, "this interpreter's OpenSSL is not a shared libcrypto"
    assert with_set_up < without / 2, (with_set_up, without)


def _serves_one(server: ProxyServer) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    reply = requests.post(server.url + "/v1/messages", json=body, timeout=10,
                          headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert reply.status_code == 200


def test_the_master_runs_the_set_up_before_it_forks(upstream: FakeUpstream) -> None:
    """`claude-proxy` runs `memory.set_up_digests_once` in its master: `_hashlib` is loaded there (a gunicorn
    master of its own never loads it), and the workers it forks serve."""
    with ProxyServer(proxy_config(upstream), workers=1) as server:
        assert server.process is not None
        _serves_one(server)
        assert "_hashlib" in Path(f"/proc/{server.process.pid}/maps").read_text()


def test_under_your_own_gunicorn_the_readme_line_does_the_same(upstream: FakeUpstream, tmp_path: Path) -> None:
    """The README's line for a gunicorn config file: gunicorn runs it in the master, so `gunicorn -c … wsgi:app`
    gets the same set-up (without it the master of plain gunicorn never loads `_hashlib`)."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from claude_proxy.server.memory import set_up_digests_once; set_up_digests_once()\n")
    with GunicornServer(proxy_config(upstream), extra_args=("-c", str(conf))) as server:
        assert server.process is not None
        _serves_one(server)
        assert "_hashlib" in Path(f"/proc/{server.process.pid}/maps").read_text()
