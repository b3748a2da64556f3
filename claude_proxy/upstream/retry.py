"""When to try an upstream call again, and how long to wait first.

Only failures before the first response byte are retried (the caller's body may already have
been processed otherwise); a wait the upstream asks for is honoured up to `max_delay`, and
never past the request's deadline.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from collections.abc import Callable, Mapping

from claude_proxy.config.loader import RetryPolicy

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_STATUSES_ANTHROPIC = RETRY_STATUSES | {529}  # Anthropic's "overloaded"


def retry_statuses(provider_format: str) -> frozenset[int]:
    """The HTTP statuses worth another attempt for a provider of this wire format."""
    return RETRY_STATUSES_ANTHROPIC if provider_format == "anthropic" else RETRY_STATUSES


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The upstream's wait hint in seconds; None when absent or unreadable (never raises: it is the upstream's text)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            seconds = float(value) / 1000.0
            if seconds == seconds:  # NaN is no hint
                return max(seconds, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
        return max(seconds, 0.0) if seconds == seconds else None
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):  # neither seconds nor an HTTP date
        return None
    if parsed.tzinfo is None:  # "-0000": HTTP dates are GMT
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(parsed.timestamp() - time.time(), 0.0)


def backoff(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float | None:
    """Seconds to wait before attempt `attempt + 1`; None when the upstream asked for longer than we wait."""
    if retry_after is not None:
        # retrying sooner than asked earns another refusal: the client gets it and the header
        return retry_after if retry_after <= policy.max_delay else None
    # exponential with up to one base delay of jitter, and never above the configured maximum
    delay = policy.base_delay * (2**attempt) + random.uniform(0, policy.base_delay)
    return min(delay, policy.max_delay)


def pause(
    policy: RetryPolicy, attempt: int, retry_after: float | None, deadline: float, sleep: Callable[[float], None]
) -> bool:
    """Sleep before the next attempt; False (without sleeping) if that would pass the deadline."""
    delay = backoff(policy, attempt, retry_after)
    if delay is None or time.monotonic() + delay >= deadline:
        return False
    sleep(delay)
    return True
