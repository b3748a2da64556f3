"""A circuit breaker per store: after `threshold` consecutive errors the store is skipped for
`cool_down` seconds (deciding in well under a millisecond), then one probe goes through.

Same shape as routing.ProviderHealth, kept separate because it guards a store, not a provider. Its
counters (attempts, short-circuits, trips) are what the tests read to prove a hung store cannot
add seconds to every request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Breaker:
    def __init__(self, threshold: int = 3, cool_down: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cool_down = cool_down
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self.attempts = 0  # calls let through to the store
        self.skipped = 0  # calls refused without touching the store
        self.trips = 0  # times it opened

    def allow(self) -> bool:
        """May a call go to the store now? While open only one probe passes, once the cool-down is over."""
        with self._lock:
            if self._failures < self.threshold:
                self.attempts += 1
                return True
            if self.clock() >= self._open_until and not self._probing:
                self._probing = True
                self.attempts += 1
                return True
            self.skipped += 1
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._failures >= self.threshold:
                if self._failures == self.threshold:
                    self.trips += 1
                self._open_until = self.clock() + self.cool_down

    @property
    def open(self) -> bool:
        with self._lock:
            return self._failures >= self.threshold

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"open": self._failures >= self.threshold, "consecutive_failures": self._failures,
                    "attempts": self.attempts, "skipped": self.skipped, "trips": self.trips}
