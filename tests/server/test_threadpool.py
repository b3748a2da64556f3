"""`threadpool.ElasticThreadPool`: gunicorn's request threads, started on demand and ended when idle."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import CancelledError

import pytest

from claude_proxy.server.threadpool import ElasticThreadPool


def wait_until(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_runs_work_and_returns_results_and_exceptions() -> None:
    pool = ElasticThreadPool(4)
    try:
        assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(5) == 5
        failing = pool.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(5)
    finally:
        pool.shutdown()


def test_threads_start_only_as_needed_and_one_is_reused_when_free() -> None:
    pool = ElasticThreadPool(8, idle_timeout=30)
    try:
        assert pool.threads == 0
        for _ in range(20):  # one after the other: the same thread each time
            pool.submit(time.sleep, 0).result(5)
        assert pool.threads == 1
    finally:
        pool.shutdown()


def test_never_more_threads_than_max_and_queued_work_waits_for_a_free_one() -> None:
    pool = ElasticThreadPool(3, idle_timeout=30)
    release = threading.Event()
    running = threading.Semaphore(0)

    def hold() -> str:
        running.release()
        release.wait(5)
        return threading.current_thread().name

    try:
        futures = [pool.submit(hold) for _ in range(7)]
        for _ in range(3):
            assert running.acquire(timeout=5)
        assert not running.acquire(timeout=0.1)  # the other four wait: every thread is busy
        assert pool.threads == 3 and pool.pending() == 4
        release.set()
        names = {f.result(5) for f in futures}
        assert len(names) == 3
        assert pool.threads == 3 and pool.pending() == 0
    finally:
        release.set()
        pool.shutdown()


def test_idle_threads_end_after_the_timeout_and_new_work_starts_new_ones() -> None:
    pool = ElasticThreadPool(8, idle_timeout=0.1)
    release = threading.Event()
    try:
        futures = [pool.submit(release.wait, 5) for _ in range(5)]
        assert wait_until(lambda: pool.threads == 5)
        release.set()
        assert all(f.result(5) for f in futures)
        assert wait_until(lambda: pool.threads == 0, timeout=3)
        assert pool.submit(lambda: "again").result(5) == "again"
        assert pool.threads == 1
    finally:
        pool.shutdown()


def test_a_busy_thread_is_not_ended_by_the_idle_timeout() -> None:
    pool = ElasticThreadPool(2, idle_timeout=0.05)
    try:
        future = pool.submit(time.sleep, 0.4)  # longer than the idle timeout, but not idle
        time.sleep(0.2)
        assert pool.threads == 1
        assert future.result(5) is None
    finally:
        pool.shutdown()


def test_work_promised_to_a_thread_that_times_out_meanwhile_still_runs() -> None:
    """Submitting right as idle threads time out: every item still runs, none waits for long."""
    pool = ElasticThreadPool(4, idle_timeout=0.01)
    try:
        for _ in range(300):
            time.sleep(random.uniform(0, 0.02))  # around the idle timeout, on both sides
            batch = [pool.submit(lambda: 1) for _ in range(random.randint(1, 6))]
            assert sum(f.result(2) for f in batch) == len(batch)
    finally:
        pool.shutdown()


def test_under_random_load_everything_runs_within_the_limit() -> None:
    pool = ElasticThreadPool(6, idle_timeout=0.02)
    lock = threading.Lock()
    active = peak = 0

    def work(n: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(random.uniform(0, 0.01))
        with lock:
            active -= 1
        return n

    try:
        futures = []
        for i in range(600):
            futures.append(pool.submit(work, i))
            if i % 50 == 0:
                time.sleep(0.05)  # long enough for some threads to end
        assert [f.result(10) for f in futures] == list(range(600))
        assert 1 <= peak <= 6
        assert pool.threads <= 6
    finally:
        pool.shutdown()


def test_shutdown_waits_for_running_work_and_refuses_new() -> None:
    pool = ElasticThreadPool(2, idle_timeout=30)
    done = []
    futures = [pool.submit(lambda i=i: time.sleep(0.1) or done.append(i)) for i in range(4)]
    pool.shutdown(wait=True)
    assert sorted(done) == [0, 1, 2, 3] and all(f.done() for f in futures)
    assert pool.threads == 0
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 1)


def test_shutdown_can_cancel_what_has_not_started() -> None:
    pool = ElasticThreadPool(1, idle_timeout=30)
    started = threading.Event()
    release = threading.Event()
    first = pool.submit(lambda: started.set() or release.wait(5))
    assert started.wait(5)
    queued = [pool.submit(lambda: "never") for _ in range(3)]
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert first.result(5) is True
    for future in queued:
        with pytest.raises(CancelledError):
            future.result(5)
    assert wait_until(lambda: pool.threads == 0)


def test_no_thread_to_be_had_is_an_error_for_the_caller_and_the_work_never_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = ElasticThreadPool(2)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    ran = []
    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError):
            pool.submit(ran.append, 1)
    assert pool.threads == 0
    assert pool.submit(lambda: "later").result(5) == "later"  # the refused item was cancelled, not run
    pool.shutdown()
    assert ran == []


def test_rejects_a_pool_without_threads() -> None:
    with pytest.raises(ValueError):
        ElasticThreadPool(0)


def test_a_burst_is_started_by_the_pools_own_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn submits from its accept loop: a burst must not make that loop start every thread.

    The first thread the loop starts is held before it runs until the whole burst is submitted, so every
    other submit meets a start-up under way (on a loaded machine that thread could otherwise finish its
    start-up between two submits, and the loop would rightly start the next one itself)."""
    starters: list[str] = []
    held: set[str] = set()  # threads the submitting loop started: they wait for the burst to be submitted
    burst_submitted = threading.Event()
    real_start, real_run = threading.Thread.start, threading.Thread.run

    def start(self: threading.Thread) -> None:
        starters.append(threading.current_thread().name)
        if threading.current_thread() is threading.main_thread():
            held.add(self.name)
        real_start(self)

    def run(self: threading.Thread) -> None:
        if self.name in held:
            burst_submitted.wait(10)
        real_run(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    monkeypatch.setattr(threading.Thread, "run", run)
    pool = ElasticThreadPool(max_workers=64, name="burst")
    barrier = threading.Barrier(33)
    try:
        futures = [pool.submit(barrier.wait, 10) for _ in range(32)]
        burst_submitted.set()
        barrier.wait(10)  # all 32 run at the same time: every item got a thread
        for future in futures:
            future.result(5)
        assert pool.threads == 32
        assert starters.count(threading.current_thread().name) == 1, starters  # the rest: pool threads fanning out
    finally:
        pool.shutdown()


def test_items_queued_during_a_start_up_are_all_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """Submits racing the start-up chain at every step: each item runs exactly once, none is stranded."""
    pool = ElasticThreadPool(max_workers=8, idle_timeout=0.05, name="race")
    ran: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        with lock:
            ran.append(n)

    try:
        for round_ in range(50):
            futures = [pool.submit(work, round_ * 100 + i) for i in range(20)]
            for future in futures:
                future.result(5)
        assert sorted(ran) == sorted(r * 100 + i for r in range(50) for i in range(20))
        assert pool.threads <= 8
    finally:
        pool.shutdown()


def test_shutdown_right_after_a_burst_joins_threads_still_being_fanned_out() -> None:
    # A burst makes running threads start more outside the lock; a shutdown at that moment used to
    # join a thread not yet started ("cannot join thread before it is started").
    for _ in range(200):
        pool = ElasticThreadPool(32, idle_timeout=30)
        futures = [pool.submit(time.sleep, 0) for _ in range(24)]
        pool.shutdown(wait=True)
        assert all(f.done() for f in futures)
        assert not [t for t in threading.enumerate() if t.name.startswith(pool.name + "-")]
