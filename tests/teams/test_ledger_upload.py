"""The PostgreSQL ledger's batch upload (`record_usage`) on a real server: every column as the spool wrote
it (JSON numbers of either kind, nulls, records from before a column existed), exactly once, and the
daily aggregates and month spend fed only by rows actually inserted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from claude_proxy.teams.gate import new_usage_id
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.postgres import PostgresLedger
from tests.support.stores import PostgresServer, migrate

NOW = time.time()
DAY = time.strftime("%Y-%m-%d", time.gmtime(NOW))


@pytest.fixture
def ledger(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[tuple[PostgresLedger, str]]:
    dsn = postgres_server.database("upload_" + request.node.name[-40:].lower().replace("[", "_").replace("]", ""))
    migrate(dsn)
    led = PostgresLedger(dsn)
    yield led, dsn
    led.close()


def record(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "usage_id": new_usage_id(), "request_id": "req_1", "ts": NOW, "day": DAY, "instance": "host-a",
        "key_id": "k1", "team_id": 7, "team": "core", "owner": "ana@example.com", "endpoint": "messages",
        "client_model": "claude-sonnet-4-5", "provider": "openrouter", "upstream_model": "m1", "stream": True,
        "status": 200, "error_type": None, "input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 30,
        "cache_write_tokens": 5, "estimated": False, "cost_micros": 1500, "priced": True, "latency_ms": 812.5,
        "scopes": ["k:k1", "t:7"], "admitted_at": NOW,
    }
    base.update(over)
    return base


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def test_every_column_arrives_as_written_whatever_json_made_of_the_numbers(ledger: tuple[PostgresLedger, str]) -> None:
    led, dsn = ledger
    batch = [
        record(request_id="a", latency_ms=3),  # an integral latency (orjson reads `3` as int)
        record(request_id="b", ts=int(NOW), latency_ms=4.25, team_id=None, team=None, stream=None, status=502,
               error_type="api_error", cost_micros=None, priced=False, estimated=True),
        {k: v for k, v in record(request_id="c").items() if k not in ("instance", "latency_ms", "request_id")},
    ]
    assert led.record_usage(batch) == 3
    got = {r[0]: r[1:] for r in rows(dsn, "SELECT coalesce(request_id, '-'), ts, team_id, stream, status, error_type,"
                                          " cost_micros, priced, estimated, latency_ms, instance FROM usage_events")}
    assert got["a"] == (NOW, 7, True, 200, None, 1500, True, False, 3.0, "host-a")
    assert got["b"] == (float(int(NOW)), None, None, 502, "api_error", None, False, True, 4.25, "host-a")
    assert got["-"] == (NOW, 7, True, 200, None, 1500, True, False, None, None)


def test_uploading_again_counts_nothing_twice(ledger: tuple[PostgresLedger, str]) -> None:
    led, dsn = ledger
    first = [record(request_id=f"r{i}") for i in range(300)]
    assert led.record_usage(first) == 300
    later = [record(request_id=f"s{i}", owner="bo@example.com", cost_micros=10) for i in range(5)]
    # a crash after the upload but before the offset was saved: the same lines again, with new ones behind them
    assert led.record_usage(list(reversed(first)) + later) == 5
    assert led.record_usage(later) == 0
    assert rows(dsn, "SELECT count(*) FROM usage_events") == [(305,)]
    daily = rows(dsn, "SELECT owner, requests, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
                      " cost_micros FROM usage_daily ORDER BY owner")
    assert daily == [("ana@example.com", 300, 30_000, 6_000, 9_000, 1_500, 450_000),
                     ("bo@example.com", 5, 500, 100, 150, 25, 50)]
    spend = dict(rows(dsn, f"SELECT scope, micros FROM spend WHERE month = '{month_of(NOW)}'"))
    assert spend == {"k:k1": 450_050, "t:7": 450_050}
    by_owner = {r["owner"]: r for r in led.usage(group_by=["owner"])}
    assert by_owner["ana@example.com"]["requests"] == 300 and by_owner["bo@example.com"]["cost_micros"] == 50


def test_a_batch_bigger_than_any_old_chunk_lands_whole(ledger: tuple[PostgresLedger, str]) -> None:
    led, dsn = ledger
    batch = [record(request_id=f"r{i}", input_tokens=i) for i in range(1200)]
    assert led.record_usage(batch) == 1200
    assert rows(dsn, "SELECT count(*), sum(input_tokens) FROM usage_events") == [(1200, sum(range(1200)))]
    assert rows(dsn, "SELECT requests, input_tokens FROM usage_daily") == [(1200, sum(range(1200)))]


def test_status_counts_small_ledgers_and_estimates_big_ones_without_reading_them(
    ledger: tuple[PostgresLedger, str],
) -> None:
    """`counts()` feeds /admin/v1/status and the admin page: exact while small, the planner's estimate past
    `exact_below` (here lowered to what a test can insert), never a `count(*)` over a company's ledger."""
    led, dsn = ledger
    assert led.record_usage([record(request_id=f"r{i}") for i in range(3000)]) == 3000
    small = led.counts()
    assert small["usage_events"] == 3000 and "usage_events_estimated" not in small
    assert (small["keys"], small["teams"], small["audit_events"]) == (0, 0, 0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE usage_events")
    big = led.counts(exact_below=1000)
    assert big["usage_events_estimated"] is True
    assert 2900 <= big["usage_events"] <= 3100  # the planner's figure (exact here, right after ANALYZE)
    # growth since the statistics is seen: rows per page at ANALYZE times the pages there are now
    assert led.record_usage([record(request_id=f"s{i}") for i in range(3000)]) == 3000
    grown = led.counts(exact_below=1000)
    assert grown["usage_events_estimated"] is True and 5700 <= grown["usage_events"] <= 6300
    # with statistics that say "small", it counts
    assert led.counts(exact_below=10_000) == {"keys": 0, "teams": 0, "audit_events": 0, "usage_events": 6000}
