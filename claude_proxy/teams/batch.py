"""Group commit: the writes that queue while one transaction runs go out together in the next one.

Every admission and settlement of the embedded store is a write transaction behind one machine-wide
lock. Taken one by one under load, each pays the lock hand-offs (a thread lock, then `flock`) and a
BEGIN/COMMIT of its own, and threads spend most of a request queued for the lock rather than working
(measured: 10 ms per write at 16 concurrent streams, against ~0.1 ms of work). Here the first thread
to arrive leads: it runs its own work and that of every thread that queued meanwhile in one
transaction, in arrival order, then hands the lead to the first thread that queued after it took the
batch. A caller still gets its own result (or exception)
only once its work is committed, so what a caller sees is exactly what it saw one transaction at a time:
each job reads the writes of the jobs before it, in the same transaction.

If one job fails, nothing of the batch was committed: that job gets its error and the others run again
together without it, so one job's error (a bug, a constraint) is that job's only. No I/O of its own: the
transaction is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar, cast

C = TypeVar("C")  # what a transaction hands the jobs (a connection)
T = TypeVar("T")

_PENDING = object()


class _Job:
    __slots__ = ("error", "lead", "result", "wake", "work")

    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work
        self.wake = threading.Lock()  # held until the job is done, or its thread is handed the lead
        self.wake.acquire()
        self.result: Any = _PENDING
        self.error: BaseException | None = None
        self.lead = False


class GroupCommit(Generic[C]):
    """Runs jobs in shared transactions opened by `transaction` (a context manager that commits on a
    clean exit and rolls back on an exception). `batches` counts transactions tried and `jobs` the jobs
    handed in, for tests and the curious."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[C]], *, max_batch: int = 256) -> None:
        self.transaction = transaction
        self.max_batch = max_batch  # a bound on how long the lock is held at once
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._leading = False  # invariant: the queue is empty whenever no thread leads
        self.batches = 0
        self.jobs = 0

    @property
    def queued(self) -> int:
        """Jobs waiting for a batch (not counting one that is running)."""
        with self._lock:
            return len(self._queue)

    @property
    def idle(self) -> bool:
        """No thread leads and nothing waits."""
        with self._lock:
            return not self._leading and not self._queue

    def run(self, work: Callable[[C], T]) -> T:
        job = _Job(work)  # the queue holds jobs of every result type
        with self._lock:
            self._queue.append(job)
            lead = not self._leading
            self._leading = True
        if not lead:
            job.wake.acquire()
            lead = job.lead
        if lead:
            self._lead(job)
        if job.error is not None:
            raise job.error
        return cast(T, job.result)  # what this job's own work returned

    def _lead(self, me: _Job) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            self._commit(batch)
        finally:
            for job in batch:
                if job.result is _PENDING and job.error is None:  # the leader was interrupted (e.g. SystemExit)
                    job.error = RuntimeError("the write batch was interrupted: this job's write was not committed")
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._leading = False
                else:
                    successor.lead = True
            for job in batch:
                if job is not me:
                    job.wake.release()
            if successor is not None:
                successor.wake.release()

    def _commit(self, batch: list[_Job]) -> None:
        """One transaction for the batch. A job that raises gets its own error and the others go again
        together without it (nothing of the first try was committed); a transaction that fails around
        the jobs (it cannot begin — the store is locked past its timeout — or cannot commit) fails them
        all at once, so a store that is down costs each caller one wait, not one per job before it."""
        self.jobs += len(batch)
        pending = list(batch)
        while pending:
            self.batches += 1
            running: _Job | None = None
            try:
                with self.transaction() as tx:
                    for job in pending:
                        running = job
                        job.result = job.work(tx)
                    running = None
                return
            except BaseException as exc:
                for job in pending:  # rolled back: no job of this try is done
                    job.result = _PENDING
                if not isinstance(exc, Exception):
                    raise  # the leader is being stopped: `_lead` wakes the jobs it carried with an error
                if running is None:
                    for job in pending:
                        job.error = exc
                    return
                running.error = exc
                pending = [job for job in pending if job is not running]
