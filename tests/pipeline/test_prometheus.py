"""Our Prometheus metrics (`pipeline.prometheus`) against prometheus_client, the reference.

The same operations go to both libraries and both texts are read back with prometheus_client's own
parser: the samples must be the same. Then the files: several real processes sum, a dead one's
gauges go and its totals stay, a file grows past its first size, a fork starts its own file, and
a reader never trips on a file cut short or filled with junk.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from claude_proxy.pipeline import prometheus
from claude_proxy.pipeline.prometheus import Registry

BUCKETS = (0.1, 0.5, 1.0, 2.5, 10.0)
LABEL_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parsed(text: str) -> Samples:
    """Every sample but `_created` (prometheus_client's creation times; the multiprocess mode has none)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def both(directory: str | None = None) -> tuple[Registry, dict[str, Any], CollectorRegistry, dict[str, Any]]:
    ours = Registry(directory)
    reference = CollectorRegistry()
    mine = {
        "c": ours.counter("t_requests", "Requests, by route", ("route", "code")),
        "g": ours.gauge("t_in_flight", "Streams open"),
        "h": ours.histogram("t_seconds", "Time taken", ("route",), BUCKETS),
        "u": ours.counter("t_plain_total", "A counter without labels"),
    }
    theirs = {
        "c": Counter("t_requests", "Requests, by route", ("route", "code"), registry=reference),
        "g": Gauge("t_in_flight", "Streams open", registry=reference),
        "h": Histogram("t_seconds", "Time taken", ("route",), buckets=BUCKETS, registry=reference),
        "u": Counter("t_plain", "A counter without labels", registry=reference),
    }
    return ours, mine, reference, theirs


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("c"), LABEL_TEXT, LABEL_TEXT, st.floats(0, 1e6, allow_nan=False)),
        st.tuples(st.just("g"), st.sampled_from(["inc", "dec", "set"]), st.floats(-1e6, 1e6, allow_nan=False)),
        st.tuples(st.just("h"), LABEL_TEXT, st.floats(0, 20, allow_nan=False)),
        st.tuples(st.just("u"), st.floats(0, 5, allow_nan=False)),
    ),
    max_size=40,
)


def apply(metrics: dict[str, Any], operation: tuple[Any, ...]) -> None:
    """The same call on either library's metric (both spell them alike)."""
    kind = operation[0]
    metric = metrics[str(kind)]
    if kind == "c":
        metric.labels(operation[1], operation[2]).inc(operation[3])
    elif kind == "g":
        getattr(metric, str(operation[1]))(operation[2])
    elif kind == "h":
        metric.labels(operation[1]).observe(operation[2])
    else:
        metric.inc(operation[1])


def same(ours: Samples, reference: Samples) -> None:
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        assert math.isclose(ours[key], value, rel_tol=1e-9, abs_tol=1e-9), key


@settings(max_examples=150, deadline=None)
@given(OPERATIONS)
def test_the_same_operations_read_back_the_same_as_prometheus_client(operations: list[tuple[Any, ...]]) -> None:
    ours, mine, reference, theirs = both()
    for operation in operations:
        apply(mine, operation)
        apply(theirs, operation)
    same(parsed(ours.exposition().decode()), parsed(generate_latest(reference).decode()))


@settings(max_examples=40, deadline=None)
@given(operations=OPERATIONS)
def test_the_file_backed_values_read_back_the_same(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[Any, ...]]
) -> None:
    directory = str(tmp_path_factory.mktemp("metrics"))
    ours, mine, reference, theirs = both(directory)
    for operation in operations:
        apply(mine, operation)
        apply(theirs, operation)
    same(parsed(ours.exposition().decode()), parsed(generate_latest(reference).decode()))
    assert [name.split("-")[0] for name in os.listdir(directory)] == [str(os.getpid())] * 2  # two files, ours


def test_families_appear_before_any_sample_and_the_help_and_type_lines_are_there() -> None:
    registry = Registry()
    registry.counter("t_requests_total", "Requests\nanswered \\ here", ("route",))
    registry.histogram("t_seconds", "Time", ("route",), BUCKETS)
    registry.gauge("t_open", "Open")
    text = registry.exposition().decode()
    assert "# HELP t_requests_total Requests\\nanswered \\\\ here\n# TYPE t_requests_total counter\n" in text
    assert "# TYPE t_seconds histogram\n" in text and "t_open 0.0\n" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["t_requests"].type == "counter" and families["t_requests"].documentation == "Requests\nanswered \\ here"
    assert families["t_seconds"].samples == [] and [s.value for s in families["t_open"].samples] == [0.0]


def test_misuse_is_refused() -> None:
    registry = Registry()
    counter = registry.counter("t_c", "c", ("a",))
    gauge = registry.gauge("t_g", "g")
    with pytest.raises(ValueError):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError):
        counter.labels("x").dec()
    with pytest.raises(ValueError):
        counter.labels("x", "y")
    with pytest.raises(ValueError):
        counter.labels(b="x")
    with pytest.raises(ValueError):
        registry.counter("t_c", "again")
    with pytest.raises(ValueError):
        registry.histogram("t_h", "h", ("le",), BUCKETS)
    assert counter.labels(a="x") is counter.labels("x")  # by name or by position, the same child
    gauge.set(3)
    gauge.dec(1.5)
    assert registry.get_sample_value("t_g") == 1.5
    assert registry.get_sample_value("t_c_total", {"a": "nobody"}) is None


# -- files shared by processes -----------------------------------------------------------------------------------


def _worker(directory: str, n: int, route: str, open_streams: int) -> None:
    registry = Registry(directory)
    requests = registry.counter("t_requests", "Requests", ("route",))
    seconds = registry.histogram("t_seconds", "Time", ("route",), BUCKETS)
    streams = registry.gauge("t_streams", "Streams open")
    for i in range(n):
        requests.labels(route).inc()
        seconds.labels(route).observe(i % 3)
    streams.inc(open_streams)
    print(os.getpid())


def run_process(directory: str, n: int, route: str, open_streams: int) -> int:
    """A real, separate interpreter writes its values and exits; its pid."""
    code = (
        "import sys; from tests.pipeline.test_prometheus import _worker; "
        f"_worker({directory!r}, {n}, {route!r}, {open_streams})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True, capture_output=True, text=True
    )
    return int(done.stdout)


def test_processes_sum_and_a_dead_ones_gauges_go_while_its_totals_stay(tmp_path: Path) -> None:
    directory = str(tmp_path)
    first = run_process(directory, 5, "a", 2)
    second = run_process(directory, 7, "a", 3)
    run_process(directory, 4, "b", 0)
    scraper = Registry(directory)  # a worker that recorded nothing yet still reports everyone's numbers
    samples = parsed(scraper.exposition().decode())
    assert samples[("t_requests_total", frozenset({("route", "a")}))] == 12
    assert samples[("t_requests_total", frozenset({("route", "b")}))] == 4
    assert samples[("t_seconds_count", frozenset({("route", "a")}))] == 12
    # 0,1,2,0,1 and 0,1,2,0,1,2,0: le=0.1 holds the zeros, le=1.0 the ones too
    assert samples[("t_seconds_bucket", frozenset({("route", "a"), ("le", "0.1")}))] == 5
    assert samples[("t_seconds_bucket", frozenset({("route", "a"), ("le", "1.0")}))] == 9
    assert samples[("t_seconds_bucket", frozenset({("route", "a"), ("le", "+Inf")}))] == 12
    assert samples[("t_seconds_sum", frozenset({("route", "a")}))] == 3 + 7
    assert samples[("t_streams", frozenset())] == 5
    prometheus.mark_dead(directory, first)
    prometheus.mark_dead(directory, first)  # twice (the hook may run again for the same pid): no error
    samples = parsed(scraper.exposition().decode())
    assert samples[("t_streams", frozenset())] == 3
    assert samples[("t_requests_total", frozenset({("route", "a")}))] == 12  # what it counted stays counted
    prometheus.mark_dead(directory, second)
    assert parsed(scraper.exposition().decode())[("t_streams", frozenset())] == 0


def test_a_new_process_with_a_dead_ones_pid_keeps_its_totals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pids wrap: a worker that gets the pid of one long dead must not overwrite what that one counted."""
    monkeypatch.setattr(prometheus, "_SERIALS", itertools.count())
    first = Registry(str(tmp_path))
    first.counter("t_requests", "Requests").inc(3)
    [old] = tmp_path.glob("*.total.cpm")
    monkeypatch.setattr(prometheus, "_SERIALS", itertools.count())  # a fresh process: its serials start again
    second = Registry(str(tmp_path))  # the same pid and serial here, as a reused pid would be
    second.counter("t_requests", "Requests").inc(4)
    assert old.exists() and len(list(tmp_path.glob("*.total.cpm"))) == 2
    assert Registry(str(tmp_path)).get_sample_value("t_requests_total") == 7


def test_a_file_grows_past_its_first_size(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path))
    counter = registry.counter("t_requests", "Requests", ("model",))
    for i in range(3000):  # ~60 bytes an entry: three times the first 64 KiB
        counter.labels(f"model-{i:05d}").inc(i)
    [total] = tmp_path.glob(f"{os.getpid()}-*.total.cpm")
    assert total.stat().st_size > prometheus.INITIAL_SIZE
    counter.labels("model-00007").inc()  # slots made before the growth still write to the right place
    (tmp_path / "elsewhere").mkdir()
    reader = Registry(str(tmp_path / "elsewhere"))  # a directory of its own: it sees only its own (empty) files
    values = _samples(Registry(str(tmp_path)).collect())  # a scrape in another registry reads every file there
    assert values[("t_requests_total", (("model", "model-00007"),))] == 8
    assert values[("t_requests_total", (("model", "model-02999"),))] == 2999
    assert len(values) == 3000
    assert [f.samples for f in reader.collect()] == []


def _samples(families: list[prometheus.Family]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(s.labels.items())): s.value for f in families for s in f.samples}


def test_a_reader_stops_cleanly_at_a_cut_or_junk() -> None:
    registry = Registry()
    registry.counter("t_requests", "Requests", ("model",)).labels("m").inc(2)
    entries = list(registry.entries())
    assert len(entries) == 2  # the family's description and the one value
    whole = _file_bytes(entries)  # the same entries as a file holds them
    assert list(prometheus.read_entries(whole)) == entries
    for cut in range(len(whole)):  # a file cut anywhere gives the whole entries before the cut, never an error
        got = list(prometheus.read_entries(whole[:cut]))
        assert got == entries[: len(got)]
    assert list(prometheus.read_entries(b"")) == []
    junk = struct.pack("=Q", 10**9) + os.urandom(512)
    list(prometheus.read_entries(junk))  # no exception, whatever it finds
    assert prometheus.collect([(b"not json", 1.0), (b'["#"]', 1.0), (b'["x", "y"]', 2.0)]) == []


def _file_bytes(entries: list[tuple[bytes, float]]) -> bytes:
    body = bytearray()
    at = 8
    for key, value in entries:
        start = at + 4
        end = start + len(key)
        end += -end % 8
        body += struct.pack("=I", len(key)) + key + b"\0" * (end - start - len(key)) + struct.pack("=d", value)
        at = end + 8
    return struct.pack("=Q", at) + bytes(body)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_writes_its_own_file(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path))
    counter = registry.counter("t_requests", "Requests", ("who",))
    counter.labels("parent").inc(2)
    counter.labels("child").inc(1)
    pid = os.fork()
    if pid == 0:  # the child: what it counts goes to a file of its own, from 0
        try:
            counter.labels("child").inc(5)
            counter.labels("parent").inc(1)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert sorted(name.split("-")[0] for name in os.listdir(tmp_path)) == sorted([str(pid)] * 2 + [str(os.getpid())] * 2)
    counter.labels("parent").inc(10)  # the parent's slots are untouched by the child's
    assert registry.get_sample_value("t_requests_total", {"who": "parent"}) == 2 + 1 + 10
    assert registry.get_sample_value("t_requests_total", {"who": "child"}) == 1 + 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_that_cannot_make_files_never_writes_over_its_parents(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path))
    counter = registry.counter("t_requests", "Requests")
    counter.inc(2)
    assert isinstance(registry.values, prometheus.FileValues)
    registry.values.directory = str(tmp_path / "gone")  # where a child would make its files: not there
    pid = os.fork()
    if pid == 0:
        try:
            counter.inc(100)  # on a private copy of the parent's map, not in the parent's file
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert registry.get_sample_value("t_requests_total") == 2
