"""The pure limit arithmetic, with an injected clock: GCRA bursts, refill, debt, months."""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from claude_proxy.config.teams import Rate, RateError, parse_rate
from claude_proxy.teams.limits import budget_allows, corrected, gcra, month_of, month_reset


@pytest.mark.parametrize(
    ("text", "rate"),
    [(60, Rate(60, 60)), ("100/hour", Rate(100, 3600)), ("5000/day", Rate(5000, 86400)), ("10/30s", Rate(10, 30)),
     ("7 / minute", Rate(7, 60)), ("3/hours", Rate(3, 3600))],
)
def test_rates_carry_their_period(text: int | str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("bad", ["ten", "5/fortnight", -1, True, "5/0s"])
def test_bad_rates_are_refused(bad: Any) -> None:
    with pytest.raises(RateError):
        parse_rate(bad)


def test_a_burst_of_exactly_the_limit_then_one_per_interval() -> None:
    rate, now, tat = Rate(100, 3600), 1000.0, None
    admitted = 0
    for _ in range(400):
        decision = gcra(tat, now, rate, 1)
        if decision.allowed:
            tat, admitted = decision.tat, admitted + 1
    assert admitted == 100
    refused = gcra(tat, now, rate, 1)
    assert not refused.allowed and refused.retry_after == pytest.approx(36.0)
    assert not gcra(tat, now + 35.9, rate, 1).allowed
    assert gcra(tat, now + 36.0, rate, 1).allowed


def test_a_cost_above_the_bucket_never_fits_and_zero_blocks() -> None:
    assert not gcra(None, 0.0, Rate(10, 60), 11).allowed
    assert not gcra(None, 0.0, Rate(0, 60), 1).allowed


def test_settling_moves_tokens_both_ways_but_never_before_now() -> None:
    rate = Rate(1000, 60)  # 0.06 s per token
    tat = gcra(None, 100.0, rate, 500).tat
    assert tat == pytest.approx(130.0)
    assert corrected(tat, 100.0, rate, 200) == pytest.approx(142.0)  # debt: the next request waits
    assert corrected(tat, 100.0, rate, -1000) == 100.0  # a refund cannot bank credit


def test_months_and_budget() -> None:
    t = float(calendar.timegm((2026, 12, 31, 23, 59, 59)))
    assert month_of(t) == "2026-12"
    assert month_reset(t) == float(calendar.timegm((2027, 1, 1, 0, 0, 0)))
    assert budget_allows(999_999, 0, 1_000_000)
    assert not budget_allows(900_000, 100_000, 1_000_000)
