"""Group commit (teams/batch.py): jobs queued behind a running transaction share the next one, each caller
gets its own result or error, and a failed batch never takes a healthy job down with it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from claude_proxy.teams.batch import GroupCommit


class Ledger:
    """A transactional list: a transaction's writes are seen by its later jobs, kept on commit, gone on error."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.transactions = 0
        self.open_gate = threading.Event()
        self.open_gate.set()
        self.entered = threading.Event()
        self.fail_begin = False
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[list[str]]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.entered.set()
            self.open_gate.wait(10)
            if self.fail_begin:
                raise ConnectionError("the store is down")
            self.transactions += 1
            view = list(self.committed)
            yield view
            self.committed = view  # commit
        finally:
            with self._lock:
                self.active -= 1


Work = Callable[[list[str]], object]


def _append(name: str) -> Callable[[list[str]], list[str]]:
    def work(view: list[str]) -> list[str]:
        seen = list(view)
        view.append(name)
        return seen

    return work


def _boom(view: list[str]) -> None:
    view.append("half-written")
    raise ValueError("this job is broken")


def _queue_behind_a_held_transaction(ledger: Ledger, batch: GroupCommit[list[str]], works: list[Work],
                                     results: dict[int, object], errors: dict[int, BaseException]) -> None:
    """The first job holds the transaction open until every other job has queued behind it."""
    ledger.open_gate.clear()

    def call(i: int) -> None:
        try:
            results[i] = batch.run(works[i])
        except BaseException as exc:  # an interrupted leader's KeyboardInterrupt too
            errors[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert ledger.entered.wait(5)
    threads = [first]
    for i in range(1, len(works)):
        t = threading.Thread(target=call, args=(i,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while batch.queued < i and time.monotonic() < deadline:  # arrival order is queue order
            time.sleep(0.001)
    ledger.open_gate.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a caller was never woken"


def test_one_caller_gets_its_own_result_in_one_transaction() -> None:
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction)
    assert batch.run(_append("a")) == []
    assert batch.run(_append("b")) == ["a"]
    assert ledger.committed == ["a", "b"] and ledger.transactions == 2 and batch.batches == 2


def test_jobs_queued_behind_a_transaction_share_the_next_one_in_arrival_order() -> None:
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction)
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    names = [f"j{i}" for i in range(12)]
    _queue_behind_a_held_transaction(ledger, batch, [_append(n) for n in names], results, errors)
    assert not errors
    assert ledger.committed == names
    assert ledger.transactions == 2  # the first alone, then the eleven that queued behind it
    for i in range(12):  # each job saw exactly the jobs before it, inside the shared transaction
        assert results[i] == names[:i]
    assert ledger.most_active == 1  # never two transactions at once
    assert batch.jobs == 12 and batch.idle


def test_a_failing_job_fails_alone_and_the_others_are_committed_once() -> None:
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction)
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    works = [_append("first"), _append("x"), _boom, _append("y")]
    _queue_behind_a_held_transaction(ledger, batch, works, results, errors)
    assert set(errors) == {2} and isinstance(errors[2], ValueError)
    assert ledger.committed == ["first", "x", "y"]  # the broken job's half-write rolled back; no job twice
    assert results[3] == ["first", "x"]
    assert batch.batches == 3  # the first alone; the three that queued; the two healthy ones again, together


def test_a_transaction_that_cannot_begin_fails_every_job_of_its_batch() -> None:
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction)
    ledger.fail_begin = True
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    _queue_behind_a_held_transaction(ledger, batch, [_append(f"j{i}") for i in range(5)], results, errors)
    assert not results and sorted(errors) == [0, 1, 2, 3, 4]
    assert all(isinstance(e, ConnectionError) for e in errors.values())
    ledger.fail_begin = False
    assert batch.run(_append("later")) == []  # nothing stuck: the next caller leads again
    assert ledger.committed == ["later"]


def test_a_batch_is_bounded_and_the_rest_go_in_the_next() -> None:
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction, max_batch=4)
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    names = [f"j{i}" for i in range(10)]
    _queue_behind_a_held_transaction(ledger, batch, [_append(n) for n in names], results, errors)
    assert not errors and ledger.committed == names
    assert ledger.transactions == 4  # 1 + 4 + 4 + 1


def test_many_threads_hammering_lose_nothing_and_never_overlap() -> None:
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction)
    names = [f"t{t}-{i}" for t in range(16) for i in range(200)]

    def worker(t: int) -> None:
        for i in range(200):
            batch.run(_append(f"t{t}-{i}"))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(ledger.committed) == sorted(names)
    assert ledger.most_active == 1
    assert batch.jobs == len(names) and batch.batches == ledger.transactions <= len(names)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_a_leader_interrupted_mid_batch_fails_the_jobs_it_carried_and_hands_on(exc: type[BaseException]) -> None:
    """A worker told to exit while it leads a batch: its own exception goes up its thread, the jobs it carried
    are woken with an error (rolled back, never half-done), and the next caller leads as usual."""
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction)

    def interrupted(view: list[str]) -> None:
        view.append("never committed")
        raise exc()

    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    _queue_behind_a_held_transaction(ledger, batch, [_append("a"), interrupted, _append("c")], results, errors)
    assert results == {0: []}
    assert isinstance(errors[1], exc)
    assert isinstance(errors[2], RuntimeError) and "interrupted" in str(errors[2])
    assert batch.run(_append("after")) == ["a"]
    assert ledger.committed == ["a", "after"] and batch.idle


def test_no_job_is_reported_done_when_its_batch_was_rolled_back() -> None:
    """The leader's batch ran one job, then the next one interrupted it: the first job's write was rolled
    back with the rest, so its caller must not hear that it succeeded."""
    ledger = Ledger()
    batch = GroupCommit(ledger.transaction)

    def interrupted(view: list[str]) -> None:
        raise KeyboardInterrupt

    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    _queue_behind_a_held_transaction(ledger, batch, [_append("a"), _append("b"), interrupted], results, errors)
    assert results == {0: []} and ledger.committed == ["a"]
    assert isinstance(errors[1], KeyboardInterrupt)  # b's thread led the batch the interruption broke
    assert isinstance(errors[2], RuntimeError)


def test_a_store_that_fails_at_commit_costs_each_caller_one_try() -> None:
    """A transaction that cannot commit (or begin) fails its whole batch at once: no job is tried again alone,
    so callers queued behind a store that is down wait for one attempt, not one per job ahead of them."""
    ledger = Ledger()
    attempts: list[int] = []

    @contextlib.contextmanager
    def failing_commit() -> Iterator[list[str]]:
        with ledger.transaction() as view:
            attempts.append(len(view))
            yield view
            raise OSError("disk I/O error at COMMIT")

    batch = GroupCommit(failing_commit)
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    _queue_behind_a_held_transaction(ledger, batch, [_append(f"j{i}") for i in range(6)], results, errors)
    assert not results and all(isinstance(e, OSError) for e in errors.values()) and len(errors) == 6
    assert len(attempts) == 2 == batch.batches  # the first caller's, then one for the five that queued
    assert ledger.committed == []
