"""Giving freed heap memory back to the operating system.

glibc's malloc keeps what a burst of requests freed inside its arenas, and a worker's RSS then
stays at the highest concurrency it has ever seen (plus fragmentation), however quiet it is now.
`malloc_trim` hands the free pages back. It costs a walk over the free lists, so a worker calls
it at most once per `interval`, from its main loop rather than from request threads.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable


def _load_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter itself runs on
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


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
