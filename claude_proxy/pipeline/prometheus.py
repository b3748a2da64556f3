"""Prometheus counters, gauges and histograms, summed over gunicorn's workers, and their text format.

Each worker is a process with its own memory, so a scrape answered by one worker must read the others'
numbers from somewhere they all reach: with a metrics directory, every process keeps its values in two
memory-mapped files of its own there (`<pid>-<n>.total.cpm` for counters and histograms,
`<pid>-<n>.live.cpm` for gauges; n counts the registries of the process, normally one), and the
exposition sums every file it finds. The master's `child_exit` hook deletes a dead worker's live file
(its open streams stop counting) and leaves its total file (what it counted stays counted). Without a
directory (tests, an app that embeds the proxy) the values are plain memory.

The same scheme as prometheus_client's multiprocess mode, and the same text format (0.0.4), for the
three kinds of metric the proxy uses: that library's package loads its exposition servers, `wsgiref`,
`gzip` and collectors into every worker that records a metric, ~1 MB per worker (BENCHMARKS.md,
item 35). The tests read our output with its parser.

File layout (native byte order, one writer per file, readers any process): an 8-byte header holding
the bytes used, then entries of a 4-byte key length, the UTF-8 JSON key padded so that the value that
follows is 8-byte aligned, and an 8-byte float. A writer fills an entry before it moves `used` past it,
and changes a value with one aligned 8-byte store, so a reader sees whole entries and whole values.
Keys: `["#", family, type, help, labelnames, buckets]` describes a family (so a reader needs no
registry of its own: a worker that never made the teams counters still reports them);
`[family, labelvalues]` is a counter's or gauge's value; `[family, labelvalues, i]` is the count of
histogram bucket `i` (not cumulative; the last is +Inf) and `[family, labelvalues, "sum"]` its sum.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import mmap
import os
import struct
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SUFFIX = ".cpm"
TOTAL, LIVE = "total", "live"  # the two files of a process: summed whatever became of it / while it lives
INITIAL_SIZE = 64 * 1024
_HEADER = struct.Struct("=Q")
_LENGTH = struct.Struct("=I")
_VALUE = struct.Struct("=d")


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    name: str  # without `_total` for a counter (its samples and, in the text format, its HELP and TYPE have it)
    type: str  # counter, gauge or histogram
    help: str
    samples: list[Sample] = field(default_factory=list)


# -- where values live ---------------------------------------------------------------------------------------


class MemoryValues:
    """One process's values in memory: a key's slot is its index in a list."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.values: list[float] = []

    def slot(self, key: bytes, kind: str) -> int:
        self.keys.append(key)
        self.values.append(0.0)
        return len(self.values) - 1

    def add(self, slot: int, amount: float) -> None:
        self.values[slot] += amount

    def set(self, slot: int, value: float) -> None:
        self.values[slot] = value

    def entries(self) -> Iterable[tuple[bytes, float]]:
        return zip(list(self.keys), list(self.values), strict=True)


class MappedFile:
    """The entries of one file, this process writing them through a shared memory map."""

    def __init__(self, path: str, exclusive: bool = False) -> None:
        """A new, empty file at `path`; with `exclusive`, FileExistsError when there is one already."""
        self.path: str | None = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC), 0o600)
        try:
            os.ftruncate(fd, INITIAL_SIZE)
            self.map = mmap.mmap(fd, INITIAL_SIZE)
        finally:
            os.close(fd)
        self.used = _HEADER.size
        _HEADER.pack_into(self.map, 0, self.used)
        self.values: list[float] = []
        self.offsets: list[int] = []

    def append(self, key: bytes) -> int:
        """A new entry with value 0; its slot."""
        start = self.used + _LENGTH.size
        end = start + len(key)
        end += -end % 8  # the value 8-byte aligned
        needed = end + _VALUE.size
        if needed > len(self.map):
            self._grow(needed)
        _LENGTH.pack_into(self.map, self.used, len(key))
        self.map[start : start + len(key)] = key
        _VALUE.pack_into(self.map, end, 0.0)
        self.used = needed
        _HEADER.pack_into(self.map, 0, needed)  # last: readers now see the whole entry
        self.offsets.append(end)
        self.values.append(0.0)
        return len(self.values) - 1

    def _grow(self, needed: int) -> None:
        size = len(self.map)
        while size < needed:
            size *= 2
        if self.path is None:  # detached: a bigger private map
            grown = mmap.mmap(-1, size)
            grown[: len(self.map)] = self.map[:]
        else:
            with open(self.path, "r+b") as file:
                file.truncate(size)
                grown = mmap.mmap(file.fileno(), size)
        old, self.map = self.map, grown
        old.close()

    def detach(self) -> None:
        """From now on this process's writes reach a private copy, not the file (a forked child that could
        not make files of its own: better its numbers unreported than written over its parent's)."""
        private = mmap.mmap(-1, len(self.map))
        private[:] = self.map[:]
        old, self.map, self.path = self.map, private, None
        old.close()

    def store(self, slot: int, value: float) -> None:
        self.values[slot] = value
        _VALUE.pack_into(self.map, self.offsets[slot], value)

    def close(self) -> None:
        self.map.close()


class FileValues:
    """One process's values in its two files of a shared directory (see the module's docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.files = self._open()
        self.slots: list[tuple[MappedFile, int]] = []
        self.keys: list[tuple[bytes, str]] = []
        _OPEN.add(self)

    def _open(self) -> dict[str, MappedFile]:
        """Files no one else has: a second registry of the process (an app made twice) gets a serial of its own,
        and an earlier process with the same pid (pids wrap) keeps its totals."""
        pid = os.getpid()
        while True:
            serial = next(_SERIALS)
            try:
                total = MappedFile(file_path(self.directory, pid, TOTAL, serial), exclusive=True)
            except FileExistsError:
                continue
            # A live file by that name would be a dead process's that was never marked: its gauges are void.
            return {TOTAL: total, LIVE: MappedFile(file_path(self.directory, pid, LIVE, serial))}

    def slot(self, key: bytes, kind: str) -> int:
        file = self.files[kind]
        self.slots.append((file, file.append(key)))
        self.keys.append((key, kind))
        return len(self.slots) - 1

    def reopen(self) -> None:
        """In a child just forked: files of its own, every slot from 0 (what the parent counted stays the
        parent's; the maps it shares with the parent are closed here, in the child only)."""
        try:
            fresh = self._open()
        except OSError:  # the directory is gone or full: keep the slots, on private copies
            for file in self.files.values():
                file.detach()
            return
        old, self.files = self.files, fresh
        self.slots = [(self.files[kind], self.files[kind].append(key)) for key, kind in self.keys]
        for file in old.values():
            file.close()

    def add(self, slot: int, amount: float) -> None:
        file, index = self.slots[slot]
        file.store(index, file.values[index] + amount)

    def set(self, slot: int, value: float) -> None:
        file, index = self.slots[slot]
        file.store(index, value)


_OPEN: weakref.WeakSet[FileValues] = weakref.WeakSet()
_SERIALS = itertools.count()


def _after_fork_in_child() -> None:
    for values in list(_OPEN):
        values.reopen()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _key(parts: list[Any]) -> bytes:
    """A slot's key as compact JSON. Not orjson: its bytes objects keep a 4 KiB buffer each, and a
    process holds one key per slot for as long as it lives."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode()


def file_path(directory: str, pid: int, kind: str, serial: int = 0) -> str:
    return os.path.join(directory, f"{pid}-{serial}.{kind}{SUFFIX}")


def read_entries(data: bytes) -> Iterable[tuple[bytes, float]]:
    """(key, value) of every whole entry in a file's bytes; stops at anything short or out of shape."""
    if len(data) < _HEADER.size:
        return
    used = min(_HEADER.unpack_from(data, 0)[0], len(data))
    at = _HEADER.size
    while at + _LENGTH.size <= used:
        (length,) = _LENGTH.unpack_from(data, at)
        start = at + _LENGTH.size
        end = start + length
        end += -end % 8
        if end + _VALUE.size > used:
            return
        yield data[start : start + length], _VALUE.unpack_from(data, end)[0]
        at = end + _VALUE.size


def mark_dead(directory: str, pid: int) -> None:
    """A process that has exited: its live values (gauges) stop counting, its totals stay."""
    prefix, suffix = f"{pid}-", f".{LIVE}{SUFFIX}"
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(suffix):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass


# -- metrics -------------------------------------------------------------------------------------------------


class Registry:
    """The metric families of one process, and the text format of a scrape."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self.lock = threading.Lock()  # around every change of a value, and around new slots
        self.values: MemoryValues | FileValues = FileValues(directory) if directory else MemoryValues()
        self.families: dict[str, Metric] = {}

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Metric:
        return self._add(Metric(self, "counter", name.removesuffix("_total"), help, tuple(labelnames)))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Metric:
        """A gauge whose scrape is the sum over live processes (a dead worker's open streams are not open)."""
        return self._add(Metric(self, "gauge", name, help, tuple(labelnames)))

    def histogram(self, name: str, help: str, labelnames: Sequence[str], buckets: Sequence[float]) -> Metric:
        bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        if "le" in labelnames:
            raise ValueError("a histogram's labels cannot include le")
        return self._add(Metric(self, "histogram", name, help, tuple(labelnames), bounds))

    def _add(self, metric: Metric) -> Metric:
        with self.lock:
            if metric.name in self.families:
                raise ValueError(f"metric {metric.name} is already registered")
            self.families[metric.name] = metric
            meta = ["#", metric.name, metric.type, metric.help, list(metric.labelnames), list(metric.bounds)]
            self.values.slot(_key(meta), TOTAL)
        if not metric.labelnames:
            metric.labels()  # an unlabelled metric is 0 from the start, as the text format expects
        return metric

    def entries(self) -> Iterable[tuple[bytes, float]]:
        """Every (key, value) to report: this process's, or with a directory, every process's."""
        if isinstance(self.values, MemoryValues):  # no directory: this process's values are all there is
            with self.lock:
                return list(self.values.entries())
        found: list[tuple[bytes, float]] = []
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return found
        for name in names:
            if not name.endswith(SUFFIX):
                continue
            try:
                with open(os.path.join(self.directory, name), "rb") as file:
                    data = file.read()
            except OSError:  # a dead worker's live file, deleted since the listing
                continue
            found.extend(read_entries(data))
        return found

    def collect(self) -> list[Family]:
        """The families and their samples, summed over every file."""
        return collect(self.entries())

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's value (None when there is none), labels matched exactly."""
        wanted = labels or {}
        for family in self.collect():
            for sample in family.samples:
                if sample.name == name and sample.labels == wanted:
                    return sample.value
        return None

    def exposition(self) -> bytes:
        return render(self.collect())


class Metric:
    """A metric family; `labels(...)` gives the child that holds one label set's value(s)."""

    def __init__(
        self, registry: Registry, type: str, name: str, help: str, labelnames: tuple[str, ...],
        bounds: tuple[float, ...] = (),
    ) -> None:
        self.registry = registry
        self.type = type
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self.bounds = bounds
        self.children: dict[tuple[str, ...], Child] = {}

    def labels(self, *values: Any, **named: Any) -> Child:
        if named:
            if values:
                raise ValueError("labels: by position or by name, not both")
            if set(named) != set(self.labelnames):
                raise ValueError(f"labels: {self.name} takes {list(self.labelnames)}, got {sorted(named)}")
            values = tuple(named[n] for n in self.labelnames)
        if len(values) != len(self.labelnames):
            raise ValueError(f"labels: {self.name} takes {len(self.labelnames)} values, got {len(values)}")
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            with self.registry.lock:
                child = self.children.get(key)
                if child is None:
                    child = self.children[key] = Child(self, key)
        return child

    # An unlabelled metric is its own only child.
    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.labels().dec(amount)

    def set(self, value: float) -> None:
        self.labels().set(value)

    def observe(self, value: float) -> None:
        self.labels().observe(value)


class Child:
    """One label set's slot(s); called with the registry's lock not held (slots are made under it)."""

    def __init__(self, metric: Metric, values: tuple[str, ...]) -> None:
        self.metric = metric
        registry = metric.registry
        self.lock = registry.lock
        self.values = registry.values
        labels = list(values)
        kind = LIVE if metric.type == "gauge" else TOTAL
        if metric.type == "histogram":
            self.buckets = [
                registry.values.slot(_key([metric.name, labels, i]), kind) for i in range(len(metric.bounds) + 1)
            ]
            self.slot = registry.values.slot(_key([metric.name, labels, "sum"]), kind)
        else:
            self.slot = registry.values.slot(_key([metric.name, labels]), kind)

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0 and self.metric.type == "counter":
            raise ValueError("a counter only goes up")
        with self.lock:
            self.values.add(self.slot, amount)

    def dec(self, amount: float = 1.0) -> None:
        if self.metric.type != "gauge":
            raise ValueError("only a gauge goes down")
        with self.lock:
            self.values.add(self.slot, -amount)

    def set(self, value: float) -> None:
        if self.metric.type != "gauge":
            raise ValueError("only a gauge is set")
        with self.lock:
            self.values.set(self.slot, float(value))

    def observe(self, value: float) -> None:
        bucket = self.buckets[bisect.bisect_left(self.metric.bounds, value)]  # le is inclusive
        with self.lock:
            self.values.add(bucket, 1.0)
            self.values.add(self.slot, value)


# -- reading and writing the text format ---------------------------------------------------------------------


def collect(entries: Iterable[tuple[bytes, float]]) -> list[Family]:
    """Sum the entries of every process into families, in name order (histograms made cumulative).
    A family is described by every process that made it, and the first description wins."""
    meta: dict[str, tuple[str, str, list[str], list[float]]] = {}
    sums: dict[tuple[str, tuple[str, ...], Any], float] = {}
    for raw, value in entries:
        try:
            key = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(key, list) or not key:
            continue
        if key[0] == "#" and len(key) == 6:
            meta.setdefault(key[1], (key[2], key[3], key[4], key[5]))
            continue
        if len(key) not in (2, 3) or not isinstance(key[1], list):
            continue
        index = (str(key[0]), tuple(str(v) for v in key[1]), key[2] if len(key) == 3 else None)
        sums[index] = sums.get(index, 0.0) + value
    # Every family described, samples or not: a scraper sees each one from the process's first scrape.
    families = {name: Family(name, type_, help_) for name, (type_, help_, _, _) in meta.items()}
    histograms: dict[tuple[str, tuple[str, ...]], dict[Any, float]] = {}
    for (name, values, part), value in sorted(sums.items(), key=lambda item: (item[0][0], item[0][1])):
        described = meta.get(name)
        if described is None:
            continue
        type_, _, labelnames, _ = described
        if len(values) != len(labelnames):
            continue
        family = families[name]
        labels = dict(zip(labelnames, values, strict=True))
        if type_ == "histogram":
            histograms.setdefault((name, values), {})[part] = value
        elif part is None:
            family.samples.append(Sample(name + "_total" if type_ == "counter" else name, labels, value))
    for (name, values), parts in histograms.items():
        _, _, labelnames, bounds = meta[name]
        labels = dict(zip(labelnames, values, strict=True))
        running = 0.0
        for i, bound in enumerate([*bounds, math.inf]):
            running += parts.get(i, 0.0)
            families[name].samples.append(Sample(name + "_bucket", {**labels, "le": _number(bound)}, running))
        families[name].samples.append(Sample(name + "_count", labels, running))
        families[name].samples.append(Sample(name + "_sum", labels, parts.get("sum", 0.0)))
    return [families[name] for name in sorted(families)]


def render(families: Iterable[Family]) -> bytes:
    """The text exposition format, version 0.0.4."""
    lines = []
    for family in families:
        named = family.name + "_total" if family.type == "counter" else family.name  # as 0.0.4 names a counter
        lines.append(f"# HELP {named} {_escape_help(family.help)}")
        lines.append(f"# TYPE {named} {family.type}")
        for sample in family.samples:
            if sample.labels:
                pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
                lines.append(f"{sample.name}{{{pairs}}} {_number(sample.value)}")
            else:
                lines.append(f"{sample.name} {_number(sample.value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
