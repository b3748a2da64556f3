"""The usage spool: finished requests go to a local append-only file first, then to the ledger in batches.

Recording costs one `os.write` of one JSON line (O_APPEND) after the last byte; nothing waits on the
database. Each worker appends to its own file and holds an exclusive `flock` on it for its lifetime,
so a file whose lock can be taken belongs to a dead process: a sibling adopts and uploads it.

Nothing is removed from one place before it is committed in the other: a batch is uploaded
(idempotent on the usage id), then its byte offset is recorded in `<file>.offset`. A crash between the
two re-uploads the batch, which the ledger ignores (ON CONFLICT DO NOTHING). When the ledger is down the
lines wait on disk and drain when it returns; past `max_bytes` of backlog new records are dropped and
counted, never silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from claude_proxy.teams.base import StoreDown

log = logging.getLogger("claude_proxy.teams")

BATCH = 500
ROTATE_BYTES = 4 * 1024 * 1024
READ_CHUNK = 1024 * 1024

Upload = Callable[[Sequence[dict[str, Any]]], int]
Events = Callable[[str, dict[str, str]], None]


class _File:
    """One spool file this process holds the lock of (its own, a retired one, or an adopted one)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.offset_path = path.with_name(path.name + ".offset")
        self.end = self.size()  # kept by `append` for our own file (the only writer): no fstat per request
        try:
            self.offset = int(self.offset_path.read_text() or 0)
        except (OSError, ValueError):
            self.offset = 0

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def commit(self, offset: int) -> None:
        tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.offset_path)
        self.offset = offset

    def remove(self) -> None:
        for p in (self.path, self.offset_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        os.close(self.fd)


class Spool:
    def __init__(self, directory: str, upload: Upload, *, instance: str = "", flush_interval: float = 1.0,
                 max_bytes: int = 256 * 1024 * 1024, events: Events | None = None,
                 rotate_bytes: int = ROTATE_BYTES) -> None:
        self.dir = Path(directory)
        self.upload = upload
        self.instance = instance or os.uname().nodename
        self.flush_interval = flush_interval
        self.max_bytes = max_bytes
        self.rotate_bytes = rotate_bytes
        self.events = events or (lambda name, labels: None)
        self._lock = threading.Lock()  # appends and rotation
        self._drain_lock = threading.Lock()  # one drainer at a time
        self._own: _File | None = None
        self._retired: list[_File] = []
        self._adopted: dict[str, _File] = {}
        self._pid = 0
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._appended = 0
        self.uploaded = 0
        self.dropped = 0
        self.last_error: str | None = None

    # -- writing ---------------------------------------------------------------------------------------------------

    def _open_own(self) -> _File:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{self.instance}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        path = self.dir / name
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held for this process's lifetime: "I am alive"
        return _File(path, fd)

    def append(self, record: dict[str, Any]) -> bool:
        """Write one record (one line). False when it was dropped: the backlog is over its bound."""
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            if self._pid != os.getpid():  # first use in this process (after the fork): its own file and thread
                self._own, self._retired, self._adopted, self._pid = None, [], {}, os.getpid()
                self._start()
            if self.pending_bytes() + len(line) > self.max_bytes:
                self.dropped += 1
                self.events("spool_dropped", {})
                log.error("teams: usage spool is over %d bytes; a usage record was dropped", self.max_bytes)
                return False
            if self._own is None:
                self._own = self._open_own()
            self._own.end += os.write(self._own.fd, line)
            self._appended += 1
            if self._own.end >= self.rotate_bytes:
                self._retired.append(self._own)
                self._own = None
        if self._appended % BATCH == 0:
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the uploader in this process (also adopts files left by dead processes)."""
        with self._lock:
            if self._pid != os.getpid():
                self._own, self._retired, self._adopted, self._pid = None, [], {}, os.getpid()
            self._start()

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._thread_pid == os.getpid():
            return
        self._thread_pid = os.getpid()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="teams-usage-uploader", daemon=True)
        self._thread.start()

    # -- uploading ---------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.flush_interval
        while True:
            self._wake.wait(backoff)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.drain()
                backoff = self.flush_interval
            except StoreDown as exc:
                self.last_error = str(exc)
                backoff = min(max(backoff * 2, self.flush_interval), 5.0)
            except Exception:  # pragma: no cover - the uploader never dies
                log.exception("teams: usage upload failed")
                backoff = 5.0

    def drain(self) -> int:
        """Upload every complete line not yet uploaded (own, retired and adopted files). StoreDown when the
        ledger is down: what was not committed stays on disk for the next round."""
        with self._drain_lock:
            self._adopt()
            total = 0
            with self._lock:
                files = [f for f in (self._own,) if f is not None] + list(self._retired)
            for f in files + list(self._adopted.values()):
                total += self._drain_file(f)
            with self._lock:
                for f in list(self._retired):
                    if f.offset >= f.size():
                        self._retired.remove(f)
                        f.remove()
            for name, f in list(self._adopted.items()):
                if f.offset >= f.size():
                    del self._adopted[name]
                    f.remove()
            return total

    def _drain_file(self, f: _File) -> int:
        total = 0
        while True:
            chunk = os.pread(f.fd, READ_CHUNK, f.offset)
            end = chunk.rfind(b"\n")
            if end < 0:
                return total
            lines = chunk[: end + 1].splitlines(keepends=True)
            for start in range(0, len(lines), BATCH):
                part = lines[start : start + BATCH]
                batch = []
                for raw in part:
                    with contextlib.suppress(orjson.JSONDecodeError):  # a torn line from a crash mid-write
                        batch.append(orjson.loads(raw))
                inserted = self.upload(batch)
                f.commit(f.offset + sum(len(raw) for raw in part))
                self.uploaded += inserted
                total += inserted
                self.events("spool_uploaded", {"n": str(inserted)})

    def _adopt(self) -> None:
        """Take over files whose owner is gone (their flock can be taken)."""
        if not self.dir.is_dir():
            return
        mine = {f.path.name for f in (self._own, *self._retired) if f is not None} | set(self._adopted)
        for path in sorted(self.dir.glob("*.jsonl")):
            if path.name in mine:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # its owner is alive, or a sibling adopted it first
                continue
            if not path.exists():  # removed between listing and locking: someone finished it
                os.close(fd)
                continue
            self._adopted[path.name] = _File(path, fd)
            log.info("teams: adopted usage spool %s", path.name)

    def pending_bytes(self) -> int:
        """Bytes written by this process (and adopted) but not yet in the ledger (from the sizes kept in
        memory: only this process writes its files, and an adopted file's writer is gone)."""
        files = [f for f in (self._own, *self._retired, *self._adopted.values()) if f is not None]
        return sum(max(0, f.end - f.offset) for f in files)

    def backlog(self) -> dict[str, Any]:
        return {"pending_bytes": self.pending_bytes(), "uploaded": self.uploaded, "dropped": self.dropped,
                "adopted_files": len(self._adopted), "last_error": self.last_error}

    def stop(self) -> None:
        """Stop this process's uploader (it finishes the batch it is uploading), then upload what is left."""
        thread = self._thread
        self._stopping.set()
        self._wake.set()
        if thread is not None and self._thread_pid == os.getpid() and thread is not threading.current_thread():
            thread.join(10)
        self.close()

    def close(self) -> None:
        """Upload what is left if the ledger answers (a clean shutdown leaves no backlog behind)."""
        with contextlib.suppress(StoreDown):
            self.drain()


def dir_backlog(directory: str) -> int:
    """Bytes not yet uploaded across every spool file in a directory (for status pages and tests)."""
    total = 0
    for path in Path(directory).glob("*.jsonl"):
        try:
            offset_text = path.with_name(path.name + ".offset").read_text()
        except OSError:
            offset_text = "0"
        with contextlib.suppress(OSError, ValueError):
            total += max(0, path.stat().st_size - int(offset_text or 0))
    return total

