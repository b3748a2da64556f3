"""`rows.day_start`: the same second as `strptime` gave, without loading `_strptime` in a worker."""

from __future__ import annotations

import calendar
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_proxy.teams.rows import day_start


@given(st.dates(min_value=date(1970, 1, 1), max_value=date(9999, 12, 31)))
def test_every_day_starts_where_strptime_says(day: date) -> None:
    text = day.isoformat()
    assert day_start(text) == float(calendar.timegm(time.strptime(text, "%Y-%m-%d")))
    if day < date.max:
        assert day_start((day + timedelta(days=1)).isoformat()) - day_start(text) == 86400


@pytest.mark.parametrize("text", ["2024-1-01", "20240101", "2024-02-30", "2024-W01-1", "", "2024-01-01T00:00", "x" * 10])
def test_anything_but_a_real_day_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        day_start(text)


def test_it_loads_no_strptime() -> None:
    code = "import sys; from claude_proxy.teams.rows import day_start; day_start('2026-12-05'); print('_strptime' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
