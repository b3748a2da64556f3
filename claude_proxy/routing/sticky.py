"""Cache-sticky routing: a session keeps going to the target that served it last.

A provider's prompt cache is warm only where the session's previous request went. Within a
fallback chain, once a request fell over to the second target (or was served by it for any
reason), moving back to the first would re-send the whole prefix uncached, so the chain is
reordered to try that target first while it is healthy.

Per process: each gunicorn worker remembers the sessions it served (a session whose requests
land on two workers may be routed differently by each). Bounded (least recently used sessions
are forgotten first) and aged out after `ttl` seconds, longer than any provider keeps a cache.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from claude_proxy.routing.targets import Chain, Target

DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_TTL_SECONDS = 3600.0


class StickyMap:
    """(session, chain) → the target that last served it; thread-safe, bounded, expiring."""

    def __init__(
        self,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_sessions = max_sessions
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[tuple[str, Chain], tuple[Target, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session: str, chain: Chain) -> Target | None:
        key = (session, chain)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            target, stamp = found
            if self.clock() - stamp > self.ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return target

    def record(self, session: str, chain: Chain, target: Target) -> None:
        if self.max_sessions <= 0:
            return
        key = (session, chain)
        with self._lock:
            self._entries[key] = (target, self.clock())
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_sessions:
                self._entries.popitem(last=False)

    def forget(self, session: str, chain: Chain) -> None:
        with self._lock:
            self._entries.pop((session, chain), None)


def sticky_first(ordered: Sequence[Target], sticky: Target | None) -> list[Target]:
    """`ordered` with `sticky` moved to the front when it is among them (a target left out of
    `ordered`, e.g. because its provider is cooling down, stays left out)."""
    targets = list(ordered)
    if sticky is None or sticky not in targets or targets[0] == sticky:
        return targets
    targets.remove(sticky)
    return [sticky, *targets]
