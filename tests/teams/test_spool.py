"""The usage spool on its own (local files, an upload function standing in for the ledger): what it counts
as pending matches the bytes on disk through appends, rotation, uploads and adoption, and the bound drops
new records, counted, instead of filling the disk."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.teams.base import StoreDown
from claude_proxy.teams.spool import Spool, dir_backlog


class Ledger:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.down = False

    def upload(self, batch: Sequence[dict[str, Any]]) -> int:
        if self.down:
            raise StoreDown("postgres", "down")
        fresh = [r for r in batch if r["usage_id"] not in {g["usage_id"] for g in self.got}]
        self.got.extend(fresh)
        return len(fresh)


def on_disk(directory: Path) -> int:
    """Bytes in spool files not yet uploaded, as the files and their offsets say."""
    return dir_backlog(str(directory))


@pytest.fixture
def spool() -> Iterator[Callable[..., Spool]]:
    """Spools drained by the test (an hour between the uploader's own rounds); each stopped at the end, so no
    uploader thread outlives its test."""
    made: list[Spool] = []
    uploaders = lambda: sum(t.name == "teams-usage-uploader" for t in threading.enumerate())  # noqa: E731
    before = uploaders()

    def make(directory: Path, ledger: Ledger, **kw: Any) -> Spool:
        made.append(Spool(str(directory), ledger.upload, instance="t", flush_interval=3600, **kw))
        return made[-1]

    yield make
    for s in made:
        s.stop()
    assert uploaders() == before


def test_pending_bytes_follow_appends_rotation_and_uploads(tmp_path: Path, spool: Callable[..., Spool]) -> None:
    ledger = Ledger()
    s = spool(tmp_path, ledger, rotate_bytes=2_000)
    for i in range(40):
        assert s.append({"usage_id": f"u{i:03}", "pad": "x" * 60})
        assert s.pending_bytes() == on_disk(tmp_path)
    assert len(list(tmp_path.glob("*.jsonl"))) >= 2  # rotated at least once
    ledger.down = True
    try:
        s.drain()
    except StoreDown:
        pass
    assert s.pending_bytes() == on_disk(tmp_path) > 0  # nothing left the disk while the ledger was down
    ledger.down = False
    assert s.drain() == 40
    assert sorted(r["usage_id"] for r in ledger.got) == [f"u{i:03}" for i in range(40)]  # files in any order
    assert s.pending_bytes() == on_disk(tmp_path) == 0
    assert s.append({"usage_id": "later"})
    assert s.pending_bytes() == on_disk(tmp_path) > 0


def test_past_its_bound_new_records_are_dropped_and_counted(tmp_path: Path, spool: Callable[..., Spool]) -> None:
    ledger = Ledger()
    seen: list[str] = []
    s = spool(tmp_path, ledger, max_bytes=1_000, events=lambda name, labels: seen.append(name))
    kept = [s.append({"usage_id": f"u{i}", "pad": "y" * 80}) for i in range(30)]
    assert kept.count(True) == 9 and not any(kept[9:])  # ~100 bytes a line: 9 fit under 1,000
    assert s.dropped == 21 and seen.count("spool_dropped") == 21
    assert s.pending_bytes() == on_disk(tmp_path) <= 1_000
    assert s.drain() == 9
    assert s.append({"usage_id": "room-again"})  # uploaded lines free the bound


def test_a_dead_process_file_is_adopted_with_its_size_and_uploaded(tmp_path: Path, spool: Callable[..., Spool]) -> None:
    script = ("import sys; from claude_proxy.teams.spool import Spool\n"
              "s = Spool(sys.argv[1], lambda b: 0, instance='dead', flush_interval=3600)\n"
              "[s.append({'usage_id': f'd{i}'}) for i in range(5)]\n"
              "import os; os._exit(0)\n")  # gone without uploading: its file's lock goes with it
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    ledger = Ledger()
    heir = spool(tmp_path, ledger)
    assert heir.append({"usage_id": "h0"})
    assert heir.drain() == 6  # adopts the dead file first
    assert sorted(r["usage_id"] for r in ledger.got) == ["d0", "d1", "d2", "d3", "d4", "h0"]
    assert heir.pending_bytes() == on_disk(tmp_path) == 0
    assert not [p for p in tmp_path.glob("dead-*.jsonl")]  # uploaded, then removed
