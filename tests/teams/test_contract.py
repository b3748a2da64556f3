"""One contract, both backends: the embedded SQLite store and PostgreSQL + Redis (real servers on free
loopback ports) must give the same answers to the gate, the admin API, the page and the CLI."""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.config.teams import Limits, Rate, TeamsSettings
from claude_proxy.teams import keys as keyfmt
from claude_proxy.teams.base import Store, StoreDown
from claude_proxy.teams.gate import Gate
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.records import Actor, Admitted, Principal, Refused, Usage, iso
from claude_proxy.teams.rows import day_start

ACTOR = Actor("test", remote_addr="127.0.0.1")
_n = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def gate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Gate]:
    if request.param == "sqlite":
        settings = TeamsSettings(path=str(tmp_path / "teams.db"))
    else:
        pg = request.getfixturevalue("postgres_server")
        rd = request.getfixturevalue("redis_server")
        from tests.support.stores import migrate

        dsn = pg.database(f"contract_{next(_n)}")
        migrate(dsn)
        rd.flush()
        monkeypatch.setenv("CLAUDE_PROXY_POSTGRES_URL", dsn)
        monkeypatch.setenv("CLAUDE_PROXY_REDIS_URL", rd.url)
        settings = TeamsSettings(store="postgres", auto_migrate=False, spool_dir=tempfile.mkdtemp(dir=tmp_path),
                                 flush_interval=0.1)
    g = Gate(settings)
    g.prepare()
    yield g
    g.close()


def flush(store: Store) -> None:
    """Usage reaches the distributed ledger through the spool: upload what is pending now."""
    spool = getattr(store, "spool", None)
    if spool is not None:
        spool.drain()


def principal(gate: Gate, **limits: Any) -> tuple[Principal, str]:
    record, key = gate.store.create_key(owner=f"u{next(_n)}@example.com", actor=ACTOR, limits=Limits(**limits))
    found = gate.authenticate([key], {})
    assert isinstance(found, Principal)
    return found, record.id


def test_closing_a_gate_stops_its_threads_and_loses_no_usage(gate: Gate) -> None:
    """`Gate.close()`, an embedding app's teardown (and every test's here): the keeper and, on PostgreSQL, the
    uploader stop (they ran on for the rest of the process, against a closed store or a stopped server), and
    what was settled before is in the ledger (PostgreSQL: the uploader's last upload, made by the close)."""
    before = set(threading.enumerate())
    closing = Gate(replace(gate.settings, flush_interval=60.0))  # PostgreSQL: no upload before the close's own
    closing.prepare()
    p, key_id = principal(closing)
    admitted = closing.admit(p, 1)
    assert isinstance(admitted, Admitted)
    closing.settle(admitted, Usage(input_tokens=7, output_tokens=3, status=200, upstream_model="m"))
    started = [t for t in threading.enumerate() if t not in before and t.name.startswith("teams-")]
    expected = {"teams-lease-keeper"} | ({"teams-usage-uploader"} if gate.store.name == "postgres" else set())
    assert {t.name for t in started} == expected
    closing.close()
    assert [t.name for t in started if t.is_alive()] == []
    rows = gate.store.usage(group_by=["key"], filters={"key": key_id})  # through the fixture's own gate
    assert [(r["requests"], r["input_tokens"], r["output_tokens"]) for r in rows] == [(1, 7, 3)]
    # a closed gate still answers (its store opens connections again on use), with no keeper or uploader again
    assert isinstance(closing.admit(p, 1), Admitted)
    assert [t.name for t in threading.enumerate() if t not in before and t.name.startswith("teams-")] == []
    closing.store.close()


def test_keys_are_stored_hashed_found_and_revoked_with_an_audit_trail(gate: Gate) -> None:
    store = gate.store
    epoch = store.epoch()
    record, key = store.create_key(owner="alice@example.com", name="laptop", actor=ACTOR)
    assert store.epoch() > epoch
    assert store.find_key(keyfmt.hash_key(key)) == store.key(record.id)
    assert store.find_key(keyfmt.hash_key(key + "x")) is None
    assert [k.id for k in store.keys(owner="alice@example.com")] == [record.id]
    before = store.epoch()
    revoked = store.revoke_key(record.id, ACTOR, "left")
    assert revoked.status(store.clock()) == "revoked" and store.epoch() > before
    failure = gate.authenticate([key], {})
    assert getattr(failure, "reason", None) == "revoked"  # the next request, through the same gate
    actions = [e["action"] for e in store.audit()]
    assert actions[:2] == ["key.revoke", "key.create"]
    assert store.audit(action="key.revoke")[0]["details"] == {"reason": "left"}


def test_teams_and_limit_changes_apply_on_the_next_request(gate: Gate) -> None:
    store = gate.store
    store.create_team("platform", Limits(rpm=Rate(2, 3600)), ACTOR)
    _, key = store.create_key(owner="bob@example.com", team="platform", actor=ACTOR)
    p = gate.authenticate([key], {})
    assert isinstance(p, Principal) and p.team_name == "platform"
    assert [type(gate.admit(p, 1)).__name__ for _ in range(3)] == ["Admitted", "Admitted", "Refused"]
    store.update_team("platform", {"rpm": Rate(3, 3600)}, ACTOR)
    p = gate.authenticate([key], {})
    assert isinstance(p, Principal)
    assert isinstance(gate.admit(p, 1), Admitted)  # the raise frees exactly one more
    assert isinstance(gate.admit(p, 1), Refused)


def test_a_rate_limit_admits_exactly_its_amount_and_refusals_consume_nothing(gate: Gate) -> None:
    p, _ = principal(gate, rpm=Rate(5, 3600))
    decisions = [gate.admit(p, 1) for _ in range(12)]
    assert sum(isinstance(d, Admitted) for d in decisions) == 5
    refused = [d for d in decisions if isinstance(d, Refused)]
    assert all(r.limit == "rpm" and r.retry_after >= 1 and "5 requests per hour" in r.message for r in refused)


def test_tokens_per_period_are_reserved_then_corrected(gate: Gate) -> None:
    p, _ = principal(gate, tpm=Rate(1000, 3600))
    for _ in range(10):  # each reserves 50 and really uses 100
        admitted = gate.admit(p, 50)
        assert isinstance(admitted, Admitted)
        gate.settle(admitted, Usage(input_tokens=60, output_tokens=40, status=200))
    refused = gate.admit(p, 50)
    assert isinstance(refused, Refused) and refused.limit == "tpm"


def test_concurrency_is_counted_by_leases_released_at_settle(gate: Gate) -> None:
    p, key_id = principal(gate, max_concurrent=2)
    first, second = gate.admit(p, 1), gate.admit(p, 1)
    assert isinstance(first, Admitted) and isinstance(second, Admitted)
    assert gate.store.in_flight(f"k:{key_id}") == 2
    third = gate.admit(p, 1)
    assert isinstance(third, Refused) and third.limit == "concurrent"
    gate.settle(first, Usage(status=200))
    assert gate.store.in_flight(f"k:{key_id}") == 1
    assert isinstance(gate.admit(p, 1), Admitted)


def test_in_flight_counts_requests_per_scope_and_overall(gate: Gate) -> None:
    """A request in a team with limits on both holds two leases; the store-wide figure (status, the
    admin page) counts it once, as each scope's figure does."""
    team = gate.store.create_team("busy", Limits(max_concurrent=5), ACTOR)
    record, key = gate.store.create_key(owner="dan@example.com", team="busy", actor=ACTOR,
                                        limits=Limits(max_concurrent=3))
    p = gate.authenticate([key], {})
    assert isinstance(p, Principal)
    held = [gate.admit(p, 1) for _ in range(2)]
    assert all(isinstance(a, Admitted) for a in held)
    assert (gate.store.in_flight(f"k:{record.id}"), gate.store.in_flight(f"t:{team.id}")) == (2, 2)
    assert gate.store.in_flight() == 2 and gate.store.status()["in_flight"] == 2
    for admitted in held:
        assert isinstance(admitted, Admitted)
        gate.settle(admitted, Usage(status=200))
    assert gate.store.in_flight() == 0 and gate.store.in_flight(f"t:{team.id}") == 0


def test_a_budget_admits_until_settled_spend_reaches_it(gate: Gate) -> None:
    p, key_id = principal(gate, monthly_budget_micros=10)
    admitted = 0
    for _ in range(6):
        decision = gate.admit(p, 1)
        if isinstance(decision, Refused):
            assert decision.limit == "budget" and "monthly budget" in decision.message
            break
        admitted += 1
        gate.settle(decision, Usage(input_tokens=1, cost_micro_usd=4, status=200))
    assert admitted == 3  # 4, 8 < 10 admit the next; 12 ≥ 10 refuses
    flush(gate.store)
    assert gate.store.month_spend(f"k:{key_id}", month_of(gate.store.clock())) == 12


def test_usage_is_idempotent_on_the_usage_id_and_groups_like_the_other_backend(gate: Gate) -> None:
    gate.store.create_team("data", Limits(), ACTOR)
    record, key = gate.store.create_key(owner="carol@example.com", team="data", actor=ACTOR)
    p = gate.authenticate([key], {})
    assert isinstance(p, Principal)
    for model in ("m1", "m1", "m2"):
        admitted = gate.admit(p, 1)
        assert isinstance(admitted, Admitted)
        usage = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=2, cache_write_tokens=1, status=200,
                      provider="prov", upstream_model=model, cost_micro_usd=7)
        gate.store.settle(admitted, usage)
        gate.store.settle(admitted, usage)  # the same request twice: one row
    flush(gate.store)
    rows = gate.store.usage(group_by=["team", "model"], filters={"key": record.id})
    assert [(r["team"], r["model"], r["requests"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
             r["cache_write_tokens"], r["cost_micros"]) for r in rows] == [
        ("data", "m1", 2, 20, 10, 4, 2, 14), ("data", "m2", 1, 10, 5, 2, 1, 7)]
    assert len(gate.store.recent(key_id=record.id)) == 3


def test_the_page_secret_is_shared_and_created_once(gate: Gate) -> None:
    first = gate.store.meta("ui_secret", lambda: "one")
    assert gate.store.meta("ui_secret", lambda: "two") == first == "one"


def test_status_names_the_store(gate: Gate) -> None:
    status = gate.store.status()
    assert status["store"] == gate.settings.store and status["keys"] == 0 and status["epoch"] is not None


def test_an_admission_under_an_old_snapshot_applies_the_change_made_since(gate: Gate) -> None:
    """Before an admission the gate reads no epoch: the admission checks the snapshot's epoch itself, so a
    principal resolved before an admin change is resolved again and admitted under what the key is now."""
    store = gate.store
    record, key = store.create_key(owner=f"u{next(_n)}@example.com", actor=ACTOR, limits=Limits(rpm=Rate(5, 3600)))
    p = gate.authenticate([key], {}, admitting=True)
    assert isinstance(p, Principal)
    assert isinstance(gate.admit(p, 1), Admitted)
    store.update_key(record.id, {"rpm": Rate(1, 3600)}, ACTOR)  # after the snapshot was taken
    refused = gate.admit(p, 1)  # the old principal: 5 per hour would admit it
    assert isinstance(refused, Refused) and refused.limit == "rpm" and "1 request per hour" in refused.message
    store.update_key(record.id, {"rpm": Rate(2, 3600)}, ACTOR)
    admitted = gate.admit(p, 1)  # the refusal consumed nothing: exactly one more
    assert isinstance(admitted, Admitted) and admitted.principal.scopes[0].limits.rpm == Rate(2, 3600)
    store.revoke_key(record.id, ACTOR, "lost laptop")
    revoked = gate.admit(p, 1)
    assert isinstance(revoked, Refused) and revoked.limit == "revoked" and "revoked" in revoked.message
    assert store.in_flight(f"k:{record.id}") == 0


def _round_trips(url: str, act: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What `act` sent Redis, as MONITOR sees it: the commands clients sent (not those a script ran)."""
    import redis

    r, marker = redis.Redis.from_url(url), redis.Redis.from_url(url)
    marker.ping()  # the marker's connection is open before MONITOR starts
    with r.monitor() as monitor:
        result = act()
        marker.ping()  # the end marker
        sent: list[str] = []
        for seen in monitor.listen():
            if seen["command"] == "PING":
                return result, sent
            if seen.get("client_type") != "lua":
                sent.append(seen["command"].split()[0].upper())
    raise AssertionError("MONITOR ended early")


@pytest.mark.parametrize("gate", ["postgres"], indirect=True)
def test_a_distributed_admission_is_one_redis_round_trip(gate: Gate) -> None:
    import os

    import redis

    url = os.environ["CLAUDE_PROXY_REDIS_URL"]
    r = redis.Redis.from_url(url)
    record, key = gate.store.create_key(owner=f"u{next(_n)}@example.com", actor=ACTOR,
                                        limits=Limits(rpm=Rate(100, 3600), max_concurrent=5,
                                                      monthly_budget_micros=10**9))
    key_id = record.id
    p = gate.authenticate([key], {}, admitting=True)
    assert isinstance(p, Principal)
    warm = gate.admit(p, 1)  # seeds the month's spend (a second call, once per month and scope)
    assert isinstance(warm, Admitted)
    gate.settle(warm, Usage(status=200))
    for _ in range(3):
        def authenticate_and_admit() -> Any:
            found = gate.authenticate([key], {}, admitting=True)  # the cached snapshot: no round trip
            assert isinstance(found, Principal)
            return gate.admit(found, 1)

        admitted, sent = _round_trips(url, authenticate_and_admit)
        assert isinstance(admitted, Admitted) and sent == ["EVALSHA"]
        gate.settle(admitted, Usage(status=200))
    # Redis restarted empty (epoch gone): seeded from the ledger, then admitted, under the same limits
    r.flushall()
    again = gate.admit(p, 1)
    assert isinstance(again, Admitted) and gate.store.in_flight(f"k:{key_id}") == 1
    assert int(r.get("cp:epoch") or -1) == gate.store.epoch()


@pytest.mark.parametrize("gate", ["postgres"], indirect=True)
def test_a_change_redis_missed_applies_within_a_second(gate: Gate) -> None:
    """An admin change commits in the ledger, then its epoch is published to Redis. If that publish is lost,
    the workers still read the ledger's epoch once a second before admitting, and push it to Redis."""
    import time

    store: Any = gate.store
    record, key = store.create_key(owner=f"u{next(_n)}@example.com", actor=ACTOR, limits=Limits(rpm=Rate(50, 3600)))
    first = gate.authenticate([key], {}, admitting=True)
    assert isinstance(first, Principal) and isinstance(gate.admit(first, 1), Admitted)
    # Committed by another instance whose publish to Redis was lost: a ledger that tells no one.
    from claude_proxy.teams.postgres import PostgresLedger

    other = PostgresLedger(os.environ["CLAUDE_PROXY_POSTGRES_URL"])
    try:
        other.update_key(record.id, {"rpm": Rate(1, 3600)}, ACTOR)
    finally:
        other.close()
    assert store.limiter.epoch() < store.ledger.epoch()  # Redis did not hear of it
    changed_at = time.monotonic()
    while True:
        p = gate.authenticate([key], {}, admitting=True)
        assert isinstance(p, Principal)
        decision = gate.admit(p, 1)
        if isinstance(decision, Refused):
            break
        assert time.monotonic() - changed_at < 1.5, "the change did not apply within a second"
        time.sleep(0.05)
    assert decision.limit == "rpm" and "1 request per hour" in decision.message
    assert store.limiter.epoch() == store.ledger.epoch()  # pushed to Redis for every other worker


def test_every_admin_change_bumps_the_epoch_once_and_is_audited(gate: Gate) -> None:
    """Each committed change makes every worker's key snapshot stale (one epoch step) and leaves one audit line;
    on PostgreSQL the new epoch is in Redis as soon as the call returns, for the other workers' next admission.
    A second revoke changes nothing: no epoch step, but it is audited too."""
    store: Any = gate.store
    team = f"epoch{next(_n)}"
    limiter = getattr(store, "limiter", None)
    made: dict[str, str] = {}

    def create_key() -> None:
        made["key"] = store.create_key(owner="e@example.com", actor=ACTOR, team=team)[0].id

    changes: list[tuple[str, Callable[[], Any]]] = [
        ("team.create", lambda: store.create_team(team, Limits(), ACTOR)),
        ("team.update", lambda: store.update_team(team, {"max_concurrent": 3}, ACTOR)),
        ("key.create", create_key),
        ("key.update", lambda: store.update_key(made["key"], {"name": "renamed", "gateway": True}, ACTOR)),
        ("key.revoke", lambda: store.revoke_key(made["key"], ACTOR, "left")),
    ]
    for action, change in changes:
        before = store.epoch()
        change()
        assert store.epoch() == before + 1, action
        if limiter is not None:
            assert limiter.epoch() == before + 1, f"{action}: not published to Redis"
        assert store.audit(limit=1)[0]["action"] == action
    assert store.key(made["key"]).gateway and store.key(made["key"]).name == "renamed"
    before = store.epoch()
    again = store.revoke_key(made["key"], ACTOR, "twice")
    assert store.epoch() == before and again.revoke_reason == "left"
    assert [e["action"] for e in store.audit(limit=2)] == ["key.revoke", "key.revoke"]


def test_fail_open_admissions_are_counted_for_the_whole_fleet_in_status(
    gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`on_store_error = "open"`: admissions the limiter could not check reach the store's count (kept by the
    worker while the store cannot take them), which `store status`, the admin API and the page show."""
    found, _ = principal(gate, rpm=Rate(1, 60))
    assert gate.store.status()["fail_open_total"] == 0 and gate.store.status()["fail_open_last_at"] is None

    def limiter_down(*args: Any, **kwargs: Any) -> Any:
        raise StoreDown(gate.store.name, "the limiter is down (test)")

    monkeypatch.setattr(gate.store, "admit", limiter_down)
    admitted = [gate.admit(found, 10) for _ in range(3)]  # rpm 1: only unchecked admissions let 3 through
    assert all(isinstance(a, Admitted) for a in admitted) and gate.fail_open == 3
    monkeypatch.setattr(gate.store, "note_fail_open", limiter_down)
    assert gate.flush_fail_open() == 0  # the store is down too: kept
    monkeypatch.undo()
    assert gate.flush_fail_open() == 3 and gate.flush_fail_open() == 0  # written once
    gate.store.note_fail_open(2, 4_102_444_800.0)  # another worker's, later (2100-01-01)
    status = gate.store.status()
    assert status["fail_open_total"] == 5 and status["fail_open_last_at"] == iso(4_102_444_800.0)
    for a in admitted:
        assert isinstance(a, Admitted)
        gate.settle(a, Usage(input_tokens=1))


def test_usage_past_the_retention_becomes_daily_totals_and_every_grouping_reads_the_same(gate: Gate) -> None:
    """`event_retention_days`: a worker's upkeep deletes the events of whole days past it, whose totals stay in
    usage_daily; usage by day, key, owner, team, model and provider, filtered or not, is what it was. Only the
    client's model of those days is gone. An event of a pruned day that arrives late still counts once."""
    day = 86400.0
    start = day_start("2026-11-01") + 10 * 3600  # 10:00 UTC
    now = [start]
    aged = Gate(replace(gate.settings, event_retention_days=2), clock=lambda: now[0])
    aged.prepare()
    try:
        aged.store.create_team("retained", Limits(), ACTOR)
        keys = []
        for owner, team in (("old1@example.com", "retained"), ("old2@example.com", None)):
            record, key = aged.store.create_key(owner=owner, team=team, actor=ACTOR)
            found = aged.authenticate([key], {})
            assert isinstance(found, Principal)
            keys.append((record.id, found))

        def answer(p: Principal, n: int, **usage: Any) -> None:
            admitted = aged.admit(p, 1)
            assert isinstance(admitted, Admitted)
            aged.settle(admitted, Usage(input_tokens=10 + n, output_tokens=n, cache_read_tokens=n % 3,
                                        cache_write_tokens=1, client_model=f"claude-{n % 2}", **usage))

        n = 0
        for offset in (0, 1, 2, 9):  # Nov 1, 2, 3 (past the retention at Nov 10 12:00) and Nov 10 (kept)
            now[0] = start + offset * day
            for _, p in keys:
                for model, cost in (("m1", 5), ("m2", None)):  # m2 is unpriced
                    n += 1
                    answer(p, n, provider="prov" if n % 4 else "other", upstream_model=model, cost_micro_usd=cost,
                           status=500 if n % 5 == 0 else 200, estimated=n % 7 == 0)
        flush(aged.store)
        queries: list[dict[str, Any]] = [
            {"group_by": ["day"]}, {"group_by": ["key"]}, {"group_by": ["owner", "model"]},
            {"group_by": ["team", "provider"]}, {"group_by": []}, {"group_by": ["day"], "filters": {"team": "retained"}},
            {"group_by": ["model"], "filters": {"key": keys[1][0], "provider": "prov"}},
            {"group_by": ["day"], "since": day_start("2026-11-02"), "until": day_start("2026-11-04")},  # Nov 2 and 3
        ]
        partial = {"group_by": ["day"], "since": day_start("2026-11-02"), "until": day_start("2026-11-03") + 9 * 3600}
        before = [aged.store.usage(**q) for q in queries]
        by_client = aged.store.usage(group_by=["client_model"])
        events = aged.store.status()["usage_events"]
        assert [r["day"] for r in aged.store.usage(**partial)] == ["2026-11-02"]
        assert aged.store.status()["usage_events_kept_from"] is None

        now[0] = start + 9 * day + 2 * 3600  # Nov 10 12:00: Nov 1-3 are past two whole days
        aged.store.maintain()  # the keeper's upkeep: the first call checks at once
        status = aged.store.status()
        assert status["usage_events"] == events - 12 and status["usage_events_kept_from"] == "2026-11-08"
        assert status["event_retention_days"] == 2
        assert [aged.store.usage(**q) for q in queries] == before
        # a range that cuts a pruned day counts the day whole (Nov 3's answers came at 10:00, after its end)
        assert [r["day"] for r in aged.store.usage(**partial)] == ["2026-11-02", "2026-11-03"]
        assert {r["client_model"]: r["requests"] for r in by_client} == {"claude-0": 8, "claude-1": 8}
        pruned_client = {r["client_model"]: r["requests"] for r in aged.store.usage(group_by=["client_model"])}
        assert pruned_client == {None: 12, "claude-0": 2, "claude-1": 2}  # the pruned days' client model is gone
        assert len(aged.store.recent(limit=100)) == 4  # single requests: only the kept days'

        # an answer of a pruned day uploaded (or settled) late: counted once, on its day
        now[0] = start + day + 60
        answer(keys[0][1], 99, provider="prov", upstream_model="m1", cost_micro_usd=5, status=200)
        flush(aged.store)
        now[0] = start + 9 * day + 2 * 3600
        late = aged.store.usage(group_by=["day"])
        assert [(r["day"], r["requests"]) for r in late] == [
            (r["day"], r["requests"] + (r["day"] == "2026-11-02")) for r in before[0]]
    finally:
        aged.close()
