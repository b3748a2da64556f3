"""The teams benchmark's bookkeeping (benchmarks/teams.py), without servers: the sides one may choose, the
rotation that interleaves them, the table's columns and the usage check that makes a run with refused or
unrecorded requests fail. The run itself is `python -m benchmarks.run --only teams --quick`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from benchmarks.loadgen import Result, Run
from benchmarks.run import Measured, Server
from benchmarks.teams import LOADS, Side, order, parse_sides, rows_of, table, usage_ok


def side(name: str, ok: int, sent: int) -> Side:
    s = Side(name, server=cast(Server, None), config=Path("/dev/null"), environ={}, key="k")  # never started
    s.ok, s.sent = ok, sent
    return s


def test_sides_are_a_subset_in_canonical_order() -> None:
    assert parse_sides("postgres, off") == ("off", "postgres")
    assert parse_sides("off,sqlite,postgres") == ("off", "sqlite", "postgres")
    for bad in ("", "off,mysql", ","):
        with pytest.raises(SystemExit, match="teams-sides"):
            parse_sides(bad)


def test_rounds_rotate_so_each_side_takes_each_position() -> None:
    sides = ("off", "sqlite", "postgres")
    rounds = [order(sides, n) for n in range(3)]
    for position in range(3):
        assert {r[position] for r in rounds} == set(sides)


def test_usage_must_match_the_answered_requests() -> None:
    assert usage_ok(100, side("sqlite", ok=100, sent=100))
    assert not usage_ok(99, side("sqlite", ok=100, sent=100))  # a request answered but never recorded
    assert not usage_ok(101, side("sqlite", ok=100, sent=100))  # counted twice
    assert usage_ok(101, side("postgres", ok=100, sent=102))  # a failed request may have left its row


def measured(latency_ms: float, errors: int = 0) -> Measured:
    results = [Result(float(i), latency_ms / 1000, latency_ms / 1000, 200, True, 10) for i in range(10)]
    return Measured(Run(results, errors, {}, (float("-inf"), float("inf"))), 10.0, {}, span=10.0)


def test_the_table_has_a_column_and_a_delta_per_side_and_marks_a_usage_mismatch() -> None:
    names = ("off", "sqlite", "postgres")
    latency = {"off": 1.0, "sqlite": 1.4, "postgres": 2.0}
    got: dict[str, dict[str, Any]] = {label: {n: measured(latency[n]) for n in names} for label, _, _ in LOADS}
    memory = {n: {"RSS idle, after warm-up": 100.0 + i * 20, "PSS idle, after warm-up": 70.0} for i, n in
              enumerate(names)}
    usage = {"sqlite": (40, side("sqlite", ok=40, sent=40)), "postgres": (39, side("postgres", ok=40, sent=40))}
    text = table(names, rows_of(names, got, memory, usage))
    lines = text.splitlines()
    assert lines[0] == ("| scenario | metric | teams off | SQLite | PG+Redis | SQLite − off | PG+Redis − off | "
                        "target |  |")
    p50 = next(line for line in lines if "c=1 | latency p50" in line and "non-streaming" in line)
    assert "+0.40 ms" in p50 and "+1.00 ms" in p50 and "SQLite ✅ · PG+Redis ❌" in p50
    rss = next(line for line in lines if "RSS idle" in line)
    assert "SQLite ❌ · PG+Redis ✅" in rss  # 120 MB over 105; 140 MB within 150
    usage_line = next(line for line in lines if "usage recorded" in line)
    assert "SQLite ✅ · PG+Redis ❌" in usage_line


def test_without_the_off_side_there_are_no_deltas() -> None:
    names = ("postgres",)
    got: dict[str, dict[str, Any]] = {label: {"postgres": measured(2.0)} for label, _, _ in LOADS}
    memory = {"postgres": {"RSS idle, after warm-up": 140.0, "PSS idle, after warm-up": 100.0}}
    text = table(names, rows_of(names, got, memory, {"postgres": (40, side("postgres", ok=40, sent=40))}))
    assert text.splitlines()[0] == "| scenario | metric | PG+Redis | target |  |"
    assert "PG+Redis ✅" in next(line for line in text.splitlines() if "RSS idle" in line)


def test_the_ab_comparison_alternates_and_checks_its_sides() -> None:
    """`python -m benchmarks.ab`: A then B in even rounds, B then A in odd ones; two known sides or a usage error."""
    from benchmarks.ab import main
    from benchmarks.ab import order as ab_order

    assert [ab_order(n) for n in range(4)] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    for bad in ("sqlite", "off,mysql", "off,sqlite,sqlite"):
        with pytest.raises(SystemExit):
            main(["--sides", bad])


def test_the_ab_comparison_checks_a_revision_out_beside_this_one_and_removes_it() -> None:
    import subprocess

    from benchmarks.ab import checkout
    from benchmarks.run import ROOT

    with checkout(None) as here:
        assert here == ROOT
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked source tree): nothing to check a revision out from")
    with checkout("HEAD") as tree:
        assert (tree / "claude_proxy" / "__init__.py").is_file() and tree != ROOT
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True, check=True)
        assert head.stdout == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                             check=True).stdout
    assert not tree.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert str(tree) not in listed


def test_each_postgres_side_of_the_ab_comparison_has_a_database_and_a_redis_database_of_its_own() -> None:
    """Two postgres sides on one private PostgreSQL + Redis share no keys, epoch or limits: a migrated database and a
    Redis database number each. Sides without a store get none, and start no server."""
    import psycopg
    import redis

    from benchmarks.ab import stores_for
    from tests.support.stores import require

    with stores_for(["off", "sqlite"]) as none:
        assert none == [None, None]
    try:
        with stores_for(["postgres", "sqlite", "postgres"]) as stores:
            first, middle, last = stores
            assert middle is None and first is not None and last is not None
            assert first.postgres_url != last.postgres_url and first.redis_url != last.redis_url
            versions = []
            for own in (first, last):
                with psycopg.connect(own.postgres_url) as conn:
                    versions.append(conn.execute("SELECT version_num FROM alembic_version").fetchone())
                r = redis.Redis.from_url(own.redis_url)
                r.set("cp:epoch", 7 if own is first else 9)
            assert versions[0] == versions[1] and versions[0] is not None  # both at the packaged head
            assert redis.Redis.from_url(first.redis_url).get("cp:epoch") == b"7"  # not overwritten by the other
    except SystemExit as exc:  # private_stores: a server binary is missing
        require("PostgreSQL and Redis", str(exc))


def test_awake_keeps_one_lowest_priority_busy_loop_per_core_for_the_block_only() -> None:
    """`--awake`: a busy loop per core at nice 19 while the run lasts (no vCPU halts), none left after it."""
    import os
    import time

    from benchmarks.procfs import children
    from benchmarks.run import cpus_awake

    def stat(pid: int) -> list[str]:  # the fields after the command name: state is [0], nice is [16]
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()

    before = set(children(os.getpid()))
    with cpus_awake(True):
        spinners = [p for p in children(os.getpid()) if p not in before]
        assert len(spinners) == (os.cpu_count() or 1)
        deadline = time.monotonic() + 10
        while any(stat(p)[16] != "19" for p in spinners):  # each lowers itself as its first step
            assert time.monotonic() < deadline, [stat(p)[16] for p in spinners]
            time.sleep(0.05)
        time.sleep(0.2)
        assert all(stat(p)[0] == "R" for p in spinners)  # running, not sleeping: they spin
    assert not set(children(os.getpid())) - before
    with cpus_awake(False):
        assert set(children(os.getpid())) == before
