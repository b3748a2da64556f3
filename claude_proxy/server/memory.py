"""Keeping a worker's resident memory down: freed heap goes back, unused libraries stay unloaded.

glibc's malloc keeps what a burst of requests freed inside its arenas, and a worker's RSS then
stays at the highest concurrency it has ever seen (plus fragmentation), however quiet it is now.
`malloc_trim` hands the free pages back. It costs a walk over the free lists, so a worker calls
it at most once per `interval`, from its main loop rather than from request threads.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import os
import sys
import time
import types
from collections.abc import Callable
from typing import Any


def _load_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS, Windows)."""
    import ctypes  # here: only a worker, which has a heap of requests to trim, loads it

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter itself runs on
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class Trimmer:
    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.trim = _load_trim()
        self.last = clock()
        self.calls = 0

    def maybe(self) -> bool:
        """Trim if `interval` has passed since the last time; True if it did."""
        if self.trim is None:
            return False
        now = self.clock()
        if now - self.last < self.interval:
            return False
        self.last = now
        self.trim(0)
        self.calls += 1
        return True


def set_up_digests_once() -> None:
    """In the master, before the workers fork: OpenSSL's digests set up once for all of them.

    Importing `hashlib` initialises OpenSSL's digest tables, and the first SHA-256 (every worker
    computes them: key hashes, prompt-cache keys, tool ids) fetches and activates its provider. A
    worker that does either itself faults in ~2.3 MB of libcrypto's code and read-only data: file
    pages are not copied at a fork, so each process counts the ones it touches. Done here, a worker's
    import touches nothing new and its first hash ~0.7 MB (the hashing path itself): libcrypto resident
    per worker 2.3 -> 0.5 MB, 1.2 MB with [teams] (BENCHMARKS.md, item 34). No library internals: only
    the import and one hash.
    """
    import hashlib

    hashlib.sha256(b"claude-proxy").digest()


class _DeferredModule(types.ModuleType):
    """Stands in for a module in `sys.modules` until something uses it, then loads the real one."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # probes (`__file__`, `__wrapped__`, ...) load nothing
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer_charset_detection(config: object | None = None) -> bool:
    """Load `charset_normalizer` on first use instead of when `requests` is imported.

    `requests` imports it to guess the encoding of bodies that declare none, which only
    `Response.text` and `apparent_encoding` do; the proxy reads bytes and never asks. Loaded, it
    costs ~3 MB per worker (plus `unicodedata` and the CJK codecs). Only for a process that is
    ours to shape, before it imports `requests`: True if the stand-in is in place. A speed item of
    the ledger: off with the fast paths.
    """
    from claude_proxy.server.switch import fast_paths_enabled

    if not fast_paths_enabled(config):
        return False
    name = "charset_normalizer"
    if "requests" in sys.modules or name in sys.modules:
        return False
    spec = importlib.machinery.PathFinder.find_spec(name)
    try:
        version = importlib.metadata.version("charset-normalizer")
    except importlib.metadata.PackageNotFoundError:
        return False  # nothing to defer: requests falls back by itself
    if spec is None or spec.submodule_search_locations is None:
        return False
    stand_in = _DeferredModule(name)
    stand_in.__version__ = version  # what requests' import-time compatibility check reads
    stand_in.__path__ = list(spec.submodule_search_locations)  # `import charset_normalizer.api` still works
    sys.modules[name] = stand_in
    return True


def defer_redis_asyncio(config: object | None = None) -> bool:
    """Load redis-py's asyncio client on first use instead of when `redis` is imported.

    `redis/__init__` imports `redis.asyncio` (the asyncio client, its cluster, connection and sentinel
    classes) whatever the caller uses; the PostgreSQL + Redis store uses the synchronous client only.
    Deferred, a worker of that store is ~1.5 MB smaller. `from redis import asyncio` binds the stand-in
    without using it; the first attribute anyone reads loads the real package (its submodules import
    through the stand-in's `__path__` meanwhile). Only before `redis` is imported: True if the stand-in is
    in place. A speed item of the ledger: off with the fast paths.
    """
    from claude_proxy.server.switch import fast_paths_enabled

    if not fast_paths_enabled(config):
        return False
    name = "redis.asyncio"
    if "redis" in sys.modules or name in sys.modules:
        return False
    spec = importlib.machinery.PathFinder.find_spec("redis")
    if spec is None or not spec.submodule_search_locations:
        return False  # not installed (a SQLite or teams-off worker): nothing to defer
    package = os.path.join(next(iter(spec.submodule_search_locations)), "asyncio")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        return False  # a redis-py without the subpackage: nothing to defer
    stand_in = _DeferredModule(name)
    stand_in.__path__ = [package]
    sys.modules[name] = stand_in
    return True
