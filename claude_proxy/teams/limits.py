"""Limit arithmetic, pure (no I/O, the clock is an argument): GCRA, leases, budgets, month boundaries.

GCRA keeps one "theoretical arrival time" (TAT) per limit: a bucket of `amount` refilling continuously
at amount/period, with no window edges; a variable cost (tokens) just moves the TAT further. This is
the token bucket Anthropic documents for its own API, and the store runs it inside one transaction.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from claude_proxy.config.teams import Rate

EPSILON = 1e-9


@dataclass(frozen=True)
class Gcra:
    allowed: bool
    tat: float  # the new TAT when allowed, the old one otherwise
    retry_after: float  # seconds until the cost would fit (0 when allowed)
    remaining: int  # whole units left in the bucket after this decision


def interval(rate: Rate) -> float:
    """Seconds one unit occupies the bucket (period / amount)."""
    return rate.period_s / rate.amount if rate.amount else float("inf")


def gcra(tat: float | None, now: float, rate: Rate, cost: int) -> Gcra:
    """Admit `cost` units against `rate`? Burst = the whole amount; a cost above it can never fit."""
    base = now if tat is None or tat < now else tat
    if rate.amount <= 0:
        return Gcra(False, base, float(rate.period_s), 0)
    step = interval(rate)
    new_tat = base + cost * step
    over = new_tat - now - rate.period_s
    if over > EPSILON:
        return Gcra(False, base, max(over, 0.001), max(0, int((rate.period_s - (base - now)) / step + EPSILON)))
    return Gcra(True, new_tat, 0.0, max(0, int((rate.period_s - (new_tat - now)) / step + EPSILON)))


def corrected(tat: float, now: float, rate: Rate, delta: int) -> float:
    """The TAT after settling: `delta` units more (or fewer, when negative) than were reserved.
    Debt is allowed (the next request waits); a refund never moves the TAT below now."""
    if rate.amount <= 0:
        return tat
    return max(tat + delta * interval(rate), now) if delta < 0 else tat + delta * interval(rate)


def month_of(now: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(now))


def month_reset(now: float) -> float:
    """The first second of the next UTC month: when a monthly budget starts over."""
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)))


def budget_allows(spent_micros: int, reserved_micros: int, budget_micros: int) -> bool:
    """No admission once settled spend plus live reservations reach the budget."""
    return spent_micros + reserved_micros < budget_micros


def usd(micros: int) -> str:
    return f"${micros / 1_000_000:,.2f}"
