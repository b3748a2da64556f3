"""The SQLite store, for real (a file, WAL, several processes): keys, epoch, audit, admission, settlement."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.config.teams import Limits, Rate, TeamsSettings
from claude_proxy.teams.base import StoreDown
from claude_proxy.teams.gate import AuthFailure, Gate
from claude_proxy.teams.keys import hash_key, key_id_of
from claude_proxy.teams.records import Actor, Admitted, Principal, Refused, Usage
from claude_proxy.teams.schema import VERSION
from claude_proxy.teams.store import SqliteStore, StoreError
from tests.support.clock import Clock

ADMIN = Actor("test", remote_addr="127.0.0.1")


@pytest.fixture
def clock() -> Clock:
    return Clock(1_800_000_000.0)


@pytest.fixture
def gate(tmp_path: Path, clock: Clock) -> Iterator[Gate]:
    gate = Gate(TeamsSettings(path=str(tmp_path / "teams.db"), lease_seconds=30), ["static-door-key"], clock=clock)
    gate.prepare()
    yield gate
    gate.close()


def _principal(gate: Gate, key: str, headers: dict[str, str] | None = None) -> Principal:
    found = gate.authenticate([key], headers or {})
    assert isinstance(found, Principal), found
    return found


def test_keys_are_stored_only_as_their_hash(gate: Gate, tmp_path: Path) -> None:
    record, key = gate.store.create_key(owner="alice@example.com", name="laptop", actor=ADMIN)
    assert key.startswith("cpk_") and key_id_of(key) == record.id
    assert gate.store.find_key(hash_key(key)) == record
    gate.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("teams.db"))
    assert key.encode() not in raw and key.split("_", 2)[2].encode() not in raw  # the secret (it may hold "_")
    assert hash_key(key) in raw


def test_every_change_bumps_the_epoch_and_is_audited(gate: Gate) -> None:
    store = gate.store
    start = store.epoch()
    store.create_team("platform", Limits(rpm=Rate(10)), ADMIN)
    record, _ = store.create_key(owner="bob", team="platform", actor=ADMIN)
    store.update_key(record.id, {"max_concurrent": 3}, ADMIN)
    store.revoke_key(record.id, ADMIN, "lost laptop")
    assert store.epoch() == start + 4
    actions = [(a["action"], a["target_id"], a["actor"], a["remote_addr"]) for a in store.audit()]
    assert actions == [
        ("key.revoke", record.id, "test", "127.0.0.1"),
        ("key.update", record.id, "test", "127.0.0.1"),
        ("key.create", record.id, "test", "127.0.0.1"),
        ("team.create", "platform", "test", "127.0.0.1"),
    ]
    conn = sqlite3.connect(store.path)
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
    conn.close()


def test_unknown_teams_and_keys_are_clear_errors(gate: Gate) -> None:
    with pytest.raises(StoreError, match="no team named 'nope'"):
        gate.store.create_key(owner="x", team="nope", actor=ADMIN)
    with pytest.raises(StoreError, match="no key"):
        gate.store.revoke_key("missing1", ADMIN)
    gate.store.create_team("a", Limits(), ADMIN)
    with pytest.raises(StoreError, match="already exists"):
        gate.store.create_team("a", Limits(), ADMIN)


def test_authentication_results(gate: Gate, clock: Clock) -> None:
    record, key = gate.store.create_key(owner="carol", actor=ADMIN, expires_at=clock.now + 60)
    assert _principal(gate, key).key_id == record.id
    assert gate.authenticate(["cpk_AAAAAAAA_" + "x" * 43], {}) == AuthFailure("unknown")
    assert gate.authenticate(["", ""], {}) == AuthFailure("missing")
    assert _principal(gate, "static-door-key").static
    clock.now += 61
    assert gate.authenticate([key], {}) == AuthFailure("expired")
    clock.now -= 61
    gate.store.revoke_key(record.id, ADMIN)
    assert gate.authenticate([key], {}) == AuthFailure("revoked")  # the cached snapshot died with the epoch


def test_admission_rechecks_revocation_inside_its_transaction(gate: Gate) -> None:
    _, key = gate.store.create_key(owner="dave", actor=ADMIN)
    principal = _principal(gate, key)
    gate.store.revoke_key(principal.key_id, ADMIN)
    refused = gate.admit(principal, 10)
    assert isinstance(refused, Refused) and refused.limit == "revoked"


def test_a_refusal_consumes_nothing(gate: Gate) -> None:
    gate.store.create_team("t", Limits(max_concurrent=1), ADMIN)
    _, key = gate.store.create_key(owner="erin", team="t", limits=Limits(rpm=Rate(3, 3600)), actor=ADMIN)
    p = _principal(gate, key)
    first = gate.admit(p, 1)
    assert isinstance(first, Admitted)
    for _ in range(5):  # refused by the team's concurrency: the key's rpm bucket must not move
        refused = gate.admit(p, 1)
        assert isinstance(refused, Refused) and refused.limit == "concurrent" and refused.scope.kind == "team"
    gate.settle(first, Usage(input_tokens=1))
    results = [gate.admit(p, 1) for _ in range(3)]
    assert [type(r).__name__ for r in results] == ["Admitted", "Refused", "Refused"]
    for r in results:
        if isinstance(r, Admitted):
            gate.settle(r, Usage())
    third = gate.admit(p, 1)
    assert isinstance(third, Admitted)
    gate.settle(third, Usage())
    last = gate.admit(p, 1)
    assert isinstance(last, Refused) and last.limit == "rpm" and last.retry_after > 0


def test_settle_is_idempotent_and_charges_spend(gate: Gate, clock: Clock) -> None:
    _, key = gate.store.create_key(owner="fay", limits=Limits(monthly_budget_micros=1_000_000), actor=ADMIN)
    p = _principal(gate, key)
    admitted = gate.admit(p, 100)
    assert isinstance(admitted, Admitted)
    usage = Usage(input_tokens=10, output_tokens=20, cache_read_tokens=5, cache_write_tokens=1, cost_micro_usd=600_000)
    assert gate.store.settle(admitted, usage) is True
    assert gate.store.settle(admitted, usage) is False  # the same usage id twice counts once
    rows = gate.store.usage(group_by=["owner"])
    assert rows[0]["requests"] == 1 and rows[0]["cost_micros"] == 600_000 and rows[0]["cache_read_tokens"] == 5
    second = gate.admit(p, 1)
    assert isinstance(second, Admitted)
    gate.store.settle(second, Usage(cost_micro_usd=400_000))
    refused = gate.admit(p, 1)
    assert isinstance(refused, Refused) and refused.limit == "budget"
    assert "$1.00" in refused.message and "resets 2027-02-01 00:00 UTC" in refused.message


def test_leases_of_a_dead_worker_free_themselves(gate: Gate, clock: Clock) -> None:
    _, key = gate.store.create_key(owner="gus", limits=Limits(max_concurrent=2), actor=ADMIN)
    p = _principal(gate, key)
    assert all(isinstance(gate.store.admit(p, f"r{i}", 1), Admitted) for i in range(2))  # never settled
    assert isinstance(gate.store.admit(p, "r3", 1), Refused)
    clock.now += 31  # past lease_seconds
    assert isinstance(gate.store.admit(p, "r4", 1), Admitted)


def test_renewal_keeps_live_leases(gate: Gate, clock: Clock) -> None:
    _, key = gate.store.create_key(owner="hal", limits=Limits(max_concurrent=1), actor=ADMIN)
    p = _principal(gate, key)
    assert isinstance(gate.store.admit(p, "live", 1), Admitted)
    clock.now += 20
    assert gate.store.renew(["live"]) == 1
    clock.now += 20
    assert isinstance(gate.store.admit(p, "other", 1), Refused)


def test_tokens_are_reserved_then_corrected(gate: Gate) -> None:
    _, key = gate.store.create_key(owner="ida", limits=Limits(tpm=Rate(1000, 3600)), actor=ADMIN)
    p = _principal(gate, key)
    first = gate.admit(p, 100)
    assert isinstance(first, Admitted)
    gate.settle(first, Usage(input_tokens=600, output_tokens=300, cache_read_tokens=50_000))  # cache reads free
    nxt = gate.admit(p, 100)  # 900 used, 100 fits
    assert isinstance(nxt, Admitted)
    gate.settle(nxt, Usage(input_tokens=100))
    assert isinstance(gate.admit(p, 1), Refused)


def test_a_gateway_key_attributes_usage_and_limits_per_forwarded_user(gate: Gate) -> None:
    store = gate.store
    _, gw = store.create_key(owner="gateway", gateway=True, limits=Limits(rpm=Rate(1, 3600)), actor=ADMIN)
    _, plain = store.create_key(owner="plain", limits=Limits(rpm=Rate(5, 3600)), actor=ADMIN)
    alice = _principal(gate, gw, {"x-claude-gateway-user-email": "alice@example.com"})
    bob = _principal(gate, gw, {"x-claude-gateway-user-id": "user_bob"})
    assert (alice.owner, bob.owner) == ("alice@example.com", "user_bob")
    for p in (alice, bob):
        admitted = gate.admit(p, 1)
        assert isinstance(admitted, Admitted)
        gate.settle(admitted, Usage(input_tokens=1))
    assert isinstance(gate.admit(alice, 1), Refused)  # alice's own limit, not bob's
    ignored = _principal(gate, plain, {"x-claude-gateway-user-email": "mallory@example.com"})
    assert ignored.owner == "plain" and ignored.user_id is None
    owners = {r["owner"] for r in store.usage(group_by=["owner"])}
    assert owners == {"alice@example.com", "user_bob"}


def _admit_many(path: str, key: str, n: int, out: Any) -> None:
    """One process: n admissions from 16 threads (run under spawn, like a fresh worker)."""
    import os

    gate = Gate(TeamsSettings(path=path))
    p = gate.authenticate([key], {})
    assert isinstance(p, Principal)

    def one(i: int) -> bool:
        return isinstance(gate.store.admit(p, f"r{os.getpid()}-{i}", 1), Admitted)

    with ThreadPoolExecutor(16) as pool:
        out.put(sum(pool.map(one, range(n))))


def test_four_processes_admit_exactly_the_limit(gate: Gate) -> None:
    _, key = gate.store.create_key(owner="many", limits=Limits(rpm=Rate(100, 3600)), actor=ADMIN)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_admit_many, args=(gate.store.path, key, 100, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    total = sum(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(10)
    assert total == 100


def test_raising_a_limit_frees_the_difference_at_once(gate: Gate) -> None:
    record, key = gate.store.create_key(owner="jo", limits=Limits(rpm=Rate(1, 3600)), actor=ADMIN)
    p = _principal(gate, key)
    first = gate.admit(p, 1)
    assert isinstance(first, Admitted) and isinstance(gate.admit(p, 1), Refused)
    gate.store.update_key(record.id, {"rpm": Rate(3, 3600)}, ADMIN)
    p = _principal(gate, key)  # a new snapshot after the epoch moved
    assert [type(gate.admit(p, 1)).__name__ for _ in range(3)] == ["Admitted", "Admitted", "Refused"]


def test_the_wal_is_checkpointed_by_the_keeper_not_inside_a_request(tmp_path: Path) -> None:
    """SQLite's own checkpoint would run inside whichever commit crosses its threshold (a request); the
    worker's keeper thread does it instead, within a fraction of a second of the writes."""
    db = tmp_path / "teams.db"
    gate = Gate(TeamsSettings(path=str(db), lease_seconds=30))
    gate.prepare()
    try:
        _, key = gate.store.create_key(owner="wal@example.com", actor=ADMIN, limits=Limits(rpm=Rate(10**6, 60)))
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # a new connection's default
        gate.store.maintain()  # what creating the key wrote
        size = db.stat().st_size
        p = gate.authenticate([key], {}, admitting=True)
        assert isinstance(p, Principal)
        for _ in range(100):  # ~1,000 WAL pages: below the store's own threshold, so only a checkpoint grows the file
            admitted = gate.admit(p, 1)
            assert isinstance(admitted, Admitted)
            gate.settle(admitted, Usage(input_tokens=10, output_tokens=5, status=200, upstream_model="m"))
        deadline = time.monotonic() + 5
        while db.stat().st_size == size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stat().st_size > size, "the keeper never checkpointed the WAL"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("SELECT count(*) FROM usage_events").fetchone()[0] == 100
    finally:
        gate.close()


def _open_new_files(directory: str, rounds: int, together: Any, out: Any) -> None:
    """One process, like a booting worker: for each round, open that round's new file at the same moment as
    the others (the barrier) and make the schema."""
    outcomes: list[str] = []
    for n in range(rounds):
        store = SqliteStore(f"{directory}/teams{n}.db")
        together.wait(60)
        try:
            outcomes.append(f"schema {store.migrate()}")
        except StoreDown as exc:
            outcomes.append(str(exc))
        store.close()
    out.put(outcomes)


def test_a_new_instances_workers_open_the_new_file_together(tmp_path: Path) -> None:
    """Every worker of a new instance opens the file, which does not exist yet, at the same moment, and
    SQLite refuses the switch to WAL to all but one of them at once ("database is locked", without waiting
    busy_timeout). A worker that failed there failed to boot, and gunicorn then stopped the whole instance:
    ~1 open in 20 did, in CI and here."""
    rounds, workers = 40, 6
    ctx = multiprocessing.get_context("spawn")
    together, out = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_open_new_files, args=(str(tmp_path), rounds, together, out)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    outcomes = Counter(o for _ in procs for o in out.get(timeout=120))
    for proc in procs:
        proc.join(10)
    assert outcomes == {f"schema {VERSION}": rounds * workers}
    for n in range(rounds):
        with sqlite3.connect(tmp_path / f"teams{n}.db") as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writers_queue_on_the_machine_lock_and_wake_when_it_is_freed(gate: Gate, tmp_path: Path) -> None:
    """Every process of ours takes `<db>.lock` (flock) around a write: a writer behind another process's
    write sleeps in the kernel and wakes when it is released, not on SQLite's 1…100 ms busy-poll."""
    import fcntl
    import threading

    _, key = gate.store.create_key(owner="lock@example.com", actor=ADMIN)
    lock = tmp_path / "teams.db.lock"
    assert lock.exists() and lock.stat().st_mode & 0o777 == 0o600
    p = _principal(gate, key)
    done: list[float] = []
    with open(lock, "rb") as other:  # another process's open file description: its flock excludes ours
        fcntl.flock(other, fcntl.LOCK_EX)
        writer = threading.Thread(target=lambda: (gate.admit(p, 1), done.append(time.monotonic())))
        writer.start()
        time.sleep(0.3)
        assert not done  # queued behind the holder
        released = time.monotonic()
        fcntl.flock(other, fcntl.LOCK_UN)
    writer.join(5)
    assert done and done[0] - released < 0.1


def test_writes_queued_behind_another_process_go_out_together_and_stay_exact(gate: Gate, tmp_path: Path) -> None:
    """Admissions and settlements that queue while another process holds the write lock share the next
    transaction (group commit), and every limit still counts exactly: each admission reads the writes of
    those before it in the same transaction."""
    import fcntl
    import threading

    _, key = gate.store.create_key(owner="batch@example.com", actor=ADMIN,
                                   limits=Limits(rpm=Rate(15, 3600), monthly_budget_micros=10_000))
    p = _principal(gate, key)
    from claude_proxy.teams.store import SqliteStore

    assert isinstance(gate.store, SqliteStore)
    group = gate.store.group_commit
    before = group.batches
    got: list[Admitted | Refused] = []
    with open(tmp_path / "teams.db.lock", "rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        threads = [threading.Thread(target=lambda: got.append(gate.admit(p, 1))) for _ in range(40)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while group.queued < 39 and time.monotonic() < deadline:  # one leads (waiting for the lock), 39 queue
            time.sleep(0.01)
        assert group.queued == 39
        fcntl.flock(other, fcntl.LOCK_UN)
    for t in threads:
        t.join(10)
    assert sum(isinstance(d, Admitted) for d in got) == 15 and len(got) == 40
    assert group.batches - before == 2  # the leader alone, then the 39 that queued behind it
    admitted = [d for d in got if isinstance(d, Admitted)]
    settled: list[bool] = []
    with open(tmp_path / "teams.db.lock", "rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        threads = [threading.Thread(target=lambda a=a: settled.append(gate.store.settle(
            a, Usage(input_tokens=10, output_tokens=5, status=200, upstream_model="m", cost_micro_usd=100)))) for a in admitted]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while group.queued < 14 and time.monotonic() < deadline:
            time.sleep(0.01)
        fcntl.flock(other, fcntl.LOCK_UN)
    for t in threads:
        t.join(10)
    assert settled == [True] * 15
    assert gate.store.month_spend(f"k:{p.key_id}") == 1500
    assert gate.store.settle(admitted[0], Usage(status=200, cost_micro_usd=100)) is False  # still idempotent
    with sqlite3.connect(tmp_path / "teams.db") as conn:
        assert conn.execute("SELECT count(*) FROM usage_events").fetchone()[0] == 15
        assert conn.execute("SELECT count(*) FROM rl_lease").fetchone()[0] == 0


def test_admissions_queued_behind_a_foreign_writer_fail_together_then_recover(tmp_path: Path) -> None:
    """Someone else's writer (a backup, the sqlite3 shell: no flock of ours) holds the write lock past
    busy_timeout: the admissions queued meanwhile fail in one attempt per batch, each as the store being
    unavailable, instead of one busy_timeout per admission ahead of them; once it lets go, they go through."""
    import threading

    from claude_proxy.teams.base import StoreDown
    from claude_proxy.teams.store import SqliteStore

    db = tmp_path / "teams.db"
    gate = Gate(TeamsSettings(path=str(db), busy_timeout_ms=300), clock=Clock(1_800_000_000.0))
    gate.prepare()
    try:
        _, key = gate.store.create_key(owner="locked@example.com", actor=ADMIN, limits=Limits(rpm=Rate(100, 60)))
        p = _principal(gate, key)
        store = gate.store
        assert isinstance(store, SqliteStore)
        outcomes: list[object] = []

        def admit(i: int) -> None:
            try:
                outcomes.append(store.admit(p, f"r{i}", 1))
            except StoreDown as exc:
                outcomes.append(exc)

        attempts: list[int] = []
        transaction = store.group_commit.transaction

        def counted() -> Any:
            attempts.append(1)
            return transaction()

        store.group_commit.transaction = counted
        foreign = sqlite3.connect(db, isolation_level=None)
        foreign.execute("BEGIN IMMEDIATE")
        threads = [threading.Thread(target=admit, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        foreign.execute("ROLLBACK")
        foreign.close()
        assert len(outcomes) == 8 and all(isinstance(o, StoreDown) for o in outcomes), outcomes
        assert "locked" in str(outcomes[0])
        assert len(attempts) <= 3  # one BEGIN per batch (the first caller's, then the rest), none per job
        assert isinstance(store.admit(p, "after", 1), Admitted)
    finally:
        gate.close()


def test_a_worker_booting_on_a_current_schema_does_not_wait_for_the_write_lock(tmp_path: Path) -> None:
    """Every worker migrates as it boots, a respawned one while its siblings keep writing: on a schema that is
    current that is a read, so a writer holding the lock longer than busy_timeout cannot fail the boot (which
    makes gunicorn stop the whole instance)."""
    from claude_proxy.teams.store import VERSION, SqliteStore

    path = str(tmp_path / "t.db")
    first = SqliteStore(path)
    assert first.migrate() == VERSION
    first.close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # someone else's long write transaction
    try:
        booting = SqliteStore(path, busy_timeout_ms=200)
        started = time.monotonic()
        assert booting.migrate() == VERSION
        assert time.monotonic() - started < 0.15
        booting.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    behind = sqlite3.connect(path, isolation_level=None)
    behind.execute("PRAGMA user_version = 0")  # an older file: the upgrade writes, in the writers' queue
    behind.close()
    upgrading = SqliteStore(path)
    assert upgrading.migrate() == VERSION
    upgrading.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == VERSION
    check.close()


def test_pruning_folds_old_events_in_batches_ties_and_all_and_a_second_prune_finds_nothing(
    tmp_path: Path, clock: Clock
) -> None:
    """Batches of 3 events per write transaction over 11 old events, five of them in the same second (a batch's
    edge falls inside the tie): every event is folded into usage_daily exactly once, then deleted."""
    from claude_proxy.teams.rows import day_start

    gate = Gate(TeamsSettings(path=str(tmp_path / "teams.db"), event_retention_days=1), clock=clock)
    gate.prepare()
    try:
        _, key = gate.store.create_key(owner="batch@example.com", actor=ADMIN)
        p = _principal(gate, key)
        first = day_start("2027-01-10") + 3600
        for i in range(12):  # 11 on Jan 10 (i 3..7 at one instant), one on Jan 15 (kept)
            clock.now = first + (i if i < 3 else 3 if i < 8 else i) if i < 11 else day_start("2027-01-15") + 60
            admitted = gate.admit(p, 1)
            assert isinstance(admitted, Admitted)
            gate.store.settle(admitted, Usage(input_tokens=i, output_tokens=1, upstream_model="m", provider="p",
                                              cost_micro_usd=None if i % 2 else 3, status=200))
        before = gate.store.usage(group_by=["day", "model"])
        clock.now = day_start("2027-01-15") + 3600
        assert gate.store.prune_usage(batch=3, budget_s=0.0) == (3, False)  # out of time after one batch
        assert gate.store.prune_usage(batch=3) == (8, True)  # 3, then 5 (the tie), then none left: 8
        assert gate.store.prune_usage(batch=3) == (0, True)
        assert gate.store.usage(group_by=["day", "model"]) == before
        assert [(r["day"], r["requests"], r["input_tokens"], r["unpriced"]) for r in before] == [
            ("2027-01-10", 11, sum(range(11)), 5), ("2027-01-15", 1, 11, 1)]
        assert gate.store.status()["usage_events"] == 1
    finally:
        gate.close()


def test_a_version_1_file_gains_the_daily_table_in_place_and_keeps_its_events(tmp_path: Path, clock: Clock) -> None:
    from claude_proxy.teams.store import VERSION

    path = tmp_path / "teams.db"
    gate = Gate(TeamsSettings(path=str(path)), clock=clock)
    gate.prepare()
    _, key = gate.store.create_key(owner="v1@example.com", actor=ADMIN)
    admitted = gate.admit(_principal(gate, key), 1)
    assert isinstance(admitted, Admitted)
    gate.store.settle(admitted, Usage(input_tokens=4, status=200))
    gate.close()
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("DROP TABLE usage_daily")
    old.execute("PRAGMA user_version = 1")  # as the previous release left it
    old.close()
    again = Gate(TeamsSettings(path=str(path)), clock=clock)
    again.prepare()
    try:
        assert again.store.status()["schema_version"] == VERSION == 2
        assert [r["input_tokens"] for r in again.store.usage(group_by=[])] == [4]
        assert again.store.prune_usage() == (0, True)  # the new table is there to fold into
    finally:
        again.close()


def test_a_path_through_a_file_is_a_store_error_that_says_so(tmp_path: Path) -> None:
    """Not an OSError from deep inside (the CLI printed a traceback): StoreDown, one line, naming the file."""
    (tmp_path / "afile").write_text("")
    store = SqliteStore(str(tmp_path / "afile" / "teams.db"))
    with pytest.raises(StoreDown, match=f"cannot open .*: {tmp_path / 'afile'} is a file, not a directory"):
        store.migrate()
    with pytest.raises(StoreDown):  # and again: the failed open was not counted as a pooled connection
        store.migrate()
    store.close()


def test_a_lock_file_that_cannot_be_opened_is_a_store_error_that_says_so(tmp_path: Path) -> None:
    path = tmp_path / "teams.db"
    first = SqliteStore(str(path))
    first.migrate()
    first.close()
    Path(str(path) + ".lock").unlink()
    Path(str(path) + ".lock").mkdir()  # where the writers' lock file should be
    store = SqliteStore(str(path))
    store.migrate()  # current: only read
    with pytest.raises(StoreDown, match=r"cannot open .*teams\.db\.lock: Is a directory"):
        store.create_team("ops", Limits(), Actor("test"))
    store.close()


def test_an_embedding_app_gets_a_config_error_for_a_store_that_cannot_be_opened(tmp_path: Path) -> None:
    from claude_proxy.config.loader import ConfigError

    (tmp_path / "afile").write_text("")
    gate = Gate(TeamsSettings(path=str(tmp_path / "afile" / "teams.db")))
    with pytest.raises(ConfigError, match=r"\[teams\] the SQLite store cannot be opened: .* is a file, not a directory"):
        gate.prepare()
