"""A thread pool that gives threads back: started on demand, stopped after a while without work.

`concurrent.futures.ThreadPoolExecutor`, gunicorn's gthread pool, keeps every thread it has ever
started. A worker that once served 128 streams at the same moment keeps 128 threads for good, each
with its stack and its share of the heap, and a long run's RSS creeps up with every new high of
concurrency, however brief (a burst of reconnects, uneven accept between workers). Here a thread
that has had nothing to do for `idle_timeout` seconds ends.

The bookkeeping, all under one lock: `_idle` counts threads waiting for work that no submitted
item has been promised to yet. `submit` promises its item to an idle thread if there is one,
otherwise starts a thread for it, otherwise (at `max_workers`) leaves it queued and counts it in
`_unpromised`, which the next thread to finish takes instead of becoming idle. A waiting thread
that times out ends only while `_idle` is positive: then no queued item is counting on it.

Starting a thread blocks the starter until the new thread runs (`Thread.start` waits for it), and
under load that is a wait for the GIL, twice. gunicorn submits from its accept loop, so a burst of
64 connections used to start 64 threads one after another on that loop, each accept waiting for
the last start (BENCHMARKS.md, seventh round). So `submit` starts a thread itself only when no
start-up is under way; otherwise it counts the item in `_wanted`, and threads that are starting up
start those (up to `FAN_OUT` each, before taking work), so the accept loop goes back to accepting.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from itertools import count
from typing import Any

FAN_OUT = 2  # threads a new thread starts for items still waiting for one

_Item = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class ElasticThreadPool(Executor):
    def __init__(self, max_workers: int, idle_timeout: float = 10.0, name: str = "pool") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._unpromised = 0
        self._wanted = 0  # items promised a thread that a starting thread will start
        self._starting = 0  # threads started whose start-up duty (starting `_wanted` ones) is not done
        self._shutdown = False
        self._numbers = count(1)

    @property
    def threads(self) -> int:
        """Threads alive now (busy or waiting)."""
        return len(self._threads)

    def pending(self) -> int:
        """Items submitted and not yet taken by a thread."""
        return self._queue.qsize()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if self._idle:
                self._idle -= 1
            elif len(self._threads) + self._wanted < self.max_workers:
                if self._starting:
                    self._wanted += 1  # a thread starting up now starts one for it
                    return future
                thread = self._new_thread()
                try:
                    thread.start()
                except RuntimeError:  # no more threads to be had (ulimit, memory)
                    self._threads.discard(thread)
                    self._starting -= 1
                    if not self._threads:
                        future.cancel()  # stays queued, but will never run
                        raise
                    self._unpromised += 1  # a running thread takes it when it is free
            else:
                self._unpromised += 1
        return future

    def _new_thread(self) -> threading.Thread:
        """A thread for one promised item (lock held); it starts others still wanted when it runs."""
        thread = threading.Thread(target=self._run, name=f"{self.name}-{next(self._numbers)}", daemon=True)
        self._threads.add(thread)
        self._starting += 1
        return thread

    def _start_wanted(self) -> None:
        """Start up to FAN_OUT threads for items still waiting for one, then end the start-up duty."""
        for _ in range(FAN_OUT):
            with self._lock:
                if not self._wanted or self._shutdown:
                    break
                self._wanted -= 1
                thread = self._new_thread()
            try:
                thread.start()
            except RuntimeError:  # no more threads: the item waits for a running thread
                with self._lock:
                    self._threads.discard(thread)
                    self._starting -= 1
                    self._unpromised += 1
        with self._lock:
            self._starting -= 1
            if self._wanted and not self._starting and not self._shutdown:
                # the last starter ends while items still wait (a start failed): start one more here
                self._wanted -= 1
                thread = self._new_thread()
            else:
                thread = None
        if thread is not None:
            try:
                thread.start()
            except RuntimeError:
                with self._lock:
                    self._threads.discard(thread)
                    self._starting -= 1
                    self._unpromised += 1

    def _run(self) -> None:
        self._start_wanted()
        while True:
            try:
                item = self._queue.get(timeout=self.idle_timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nothing queued is counting on this thread
                        self._idle -= 1
                        self._threads.discard(threading.current_thread())
                        return
                continue  # promised to an item on its way into the queue
            if item is None:  # shutdown: one sentinel per thread
                with self._lock:
                    self._threads.discard(threading.current_thread())
                return
            future, fn, args, kwargs = item
            del item
            if not future.set_running_or_notify_cancel():
                self._free()
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # the future carries it, as ThreadPoolExecutor's do
                self._free()
                future.set_exception(exc)
            else:
                self._free()  # before the result: whoever waits for it may submit again at once
                future.set_result(result)
                del result
            del future, fn, args, kwargs  # nothing of the last item is kept while waiting

    def _free(self) -> None:
        with self._lock:
            if self._unpromised:
                self._unpromised -= 1  # an item queued while every thread was busy: this one takes it
            else:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                if cancel_futures:
                    while True:
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if item is not None:
                            item[0].cancel()
                for _ in range(len(self._threads)):
                    self._queue.put(None)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                # A fan-out starter creates a thread under the lock and starts it after: one may
                # still be starting. Join it once it has started; skip it if its start failed.
                while thread.ident is None:
                    with self._lock:
                        if thread not in self._threads:
                            break
                    time.sleep(0.001)
                else:
                    thread.join()
