"""Prometheus metrics: exact counts summed over gunicorn workers, histograms, streams in flight.

The server tests run the real `claude-proxy` command with two workers: whichever worker answers
the scrape must report the totals of both (their files in the shared directory), a killed worker's
open streams must stop counting (the child_exit hook), and the private metrics directory the
command made must be gone after it stops.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from claude_proxy import load_config
from claude_proxy.pipeline import prometheus
from claude_proxy.pipeline.metrics import MAX_CLIENT_MODELS, Metrics
from claude_proxy.pipeline.outcome import Outcome
from claude_proxy.web.app import create_app
from tests.conftest import proxy_config
from tests.support.gunicorn_server import GunicornServer, wait_for_children
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import (
    FakeUpstream,
    Hang,
    HangBeforeHeaders,
    Json,
    Sleep,
    Stream,
    chunk,
    completion,
    usage_chunk,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def observe(m: Metrics, record: dict[str, Any], upstream_error: bool = False) -> None:
    """Count a journal line the way the pipeline counts its Outcome."""
    outcome = Outcome.from_record(record)
    outcome.upstream_error = upstream_error
    m.observe(outcome)


def scrape(url: str, **kwargs: Any) -> Samples:
    response = requests.get(url + "/metrics", timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def post(url: str, model: str = "claude-sonnet-5", stream: bool = False, **kwargs: Any) -> requests.Response:
    body = {"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return requests.post(url + "/v1/messages", json=body, timeout=15, **kwargs)


def metrics_dir_in(tmp: Path) -> Path:
    """The private directory the command made (its TMPDIR is `tmp`, so no other run's can match)."""
    found = list(tmp.glob("claude-proxy-metrics-*"))
    assert len(found) == 1, found
    return found[0]


def pids_with_counters(directory: Path) -> set[str]:
    """The workers that have recorded a metric: each keeps its totals in `<pid>-<n>.total.cpm` there."""
    return {p.name.split("-")[0] for p in directory.glob(f"*.{prometheus.TOTAL}{prometheus.SUFFIX}")}


# -- in-process: the observer and the endpoint's auth ------------------------------------------------------------


def sample_value(m: Metrics, name: str, **labels: str) -> float:
    return m.registry.get_sample_value(name, labels) or 0.0


def test_label_children_are_remembered_and_the_memory_of_them_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    m = Metrics()
    record = {"endpoint": "messages", "provider": "p", "status": 200, "client_model": "c", "latency_ms": 5.0}
    observe(m, record)
    remembered = dict(m.remembered_children)
    observe(m, record)
    children = m.remembered_children
    assert children.keys() == remembered.keys() and all(children[k] is v for k, v in remembered.items())
    labels = {"endpoint": "messages", "route": "", "client_model": "c", "upstream_model": "", "provider": "p"}
    assert sample_value(m, "claude_proxy_requests_total", **labels, status="200") == 2
    monkeypatch.setattr("claude_proxy.pipeline.metrics.MAX_REMEMBERED_CHILDREN", 3)
    for status in range(400, 420):
        observe(m, {**record, "status": status})
    assert len(m.remembered_children) <= 3
    assert sample_value(m, "claude_proxy_requests_total", **labels, status="419") == 1
    assert sample_value(m, "claude_proxy_requests_total", **labels, status="200") == 2  # counts kept, only the lookups went


def test_observe_counts_one_record_into_every_metric() -> None:
    m = Metrics()
    record = {
        "endpoint": "messages",
        "route": "think",
        "provider": "deepseek",
        "status": 200,
        "client_model": "claude-sonnet-5",
        "upstream_model": "deepseek-chat",
        "stream": True,
        "latency_ms": 1500.0,
        "ttfb_ms": 250.0,
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_tokens": 30,
    }
    observe(m, record)
    observe(m, {**record, "status": 429, "error_type": "rate_limit_error", "ttfb_ms": None}, upstream_error=True)
    observe(m,
        {
            "endpoint": "count_tokens",
            "provider": "deepseek",
            "status": 200,
            "client_model": "claude-sonnet-5",
            "input_tokens": 999,
            "latency_ms": 1.0,
        }
    )
    labels = {
        "endpoint": "messages",
        "route": "think",
        "client_model": "claude-sonnet-5",
        "upstream_model": "deepseek-chat",
        "provider": "deepseek",
    }
    assert sample_value(m, "claude_proxy_requests_total", **labels, status="200") == 1
    assert sample_value(m, "claude_proxy_requests_total", **labels, status="429") == 1
    token_labels = {k: v for k, v in labels.items() if k not in ("endpoint", "route")}
    # count_tokens' 999 are an estimate, not spent tokens
    assert sample_value(m, "claude_proxy_tokens_total", kind="input", **token_labels) == 200
    assert sample_value(m, "claude_proxy_tokens_total", kind="output", **token_labels) == 40
    assert sample_value(m, "claude_proxy_tokens_total", kind="cache_read", **token_labels) == 60
    hist = {"endpoint": "messages", "route": "think", "upstream_model": "deepseek-chat", "provider": "deepseek",
            "stream": "true"}
    assert sample_value(m, "claude_proxy_request_duration_seconds_count", **hist) == 2
    assert sample_value(m, "claude_proxy_request_duration_seconds_sum", **hist) == 3.0
    assert sample_value(m, "claude_proxy_request_duration_seconds_bucket", **hist, le="1.0") == 0
    assert sample_value(m, "claude_proxy_request_duration_seconds_bucket", **hist, le="2.5") == 2
    ttft = {"upstream_model": "deepseek-chat", "provider": "deepseek"}
    assert sample_value(m, "claude_proxy_time_to_first_token_seconds_count", **ttft) == 1
    assert sample_value(m, "claude_proxy_time_to_first_token_seconds_sum", **ttft) == 0.25
    assert (
        sample_value(m, "claude_proxy_upstream_errors_total", provider="deepseek", error_type="rate_limit_error") == 1
    )


def test_an_unusable_metrics_directory_leaves_the_worker_counting_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "cleaned-by-tmpfiles"
    with caplog.at_level("WARNING", logger="claude_proxy"):
        m = Metrics(str(gone))
    assert not m.multiprocess and "metrics directory" in caplog.text and str(gone) in caplog.text
    observe(m, {"endpoint": "messages", "provider": "p", "status": 200, "client_model": "c", "latency_ms": 5.0})
    assert total_of(m, "claude_proxy_requests_total") == 1
    assert b"claude_proxy_requests_total" in m.exposition()[0]


def test_only_upstream_failures_count_as_upstream_errors() -> None:
    m = Metrics()
    base = {"endpoint": "messages", "provider": "p", "client_model": "c", "upstream_model": "u", "latency_ms": 1.0}
    observe(m, {**base, "status": 400, "error_type": "invalid_request_error"})  # the client's mistake
    observe(m, {**base, "status": 200, "error_type": "client_disconnected"})
    assert total_of(m, "claude_proxy_upstream_errors_total") == 0
    # a fallback chain: two targets failed before the third answered
    failed = [
        {"provider": "a", "model": "m1", "status": 503, "error_type": "overloaded_error", "error": "a: busy"},
        {"provider": "b", "model": "m2", "status": 504, "error_type": "api_error", "error": "b: timed out"},
    ]
    observe(m, {**base, "status": 200, "provider": "c", "failed_attempts": failed})
    # the last target failed too: it is listed in failed_attempts and is the request's error — counted once
    observe(m,
        {
            **base,
            "status": 504,
            "provider": "b",
            "error_type": "api_error",
            "error": "b: timed out",
            "failed_attempts": failed,
        },
        upstream_error=True,
    )
    assert sample_value(m, "claude_proxy_upstream_errors_total", provider="a", error_type="overloaded_error") == 2
    assert sample_value(m, "claude_proxy_upstream_errors_total", provider="b", error_type="api_error") == 2
    assert total_of(m, "claude_proxy_upstream_errors_total") == 4


def total_of(m: Metrics, name: str) -> float:
    return sum(s.value for f in m.registry.collect() for s in f.samples if s.name == name)


def test_client_model_label_values_are_capped() -> None:
    m = Metrics()
    for i in range(MAX_CLIENT_MODELS + 20):
        observe(m, {"endpoint": "messages", "provider": "p", "status": 200, "client_model": f"model-{i}"})
    observe(m, {"endpoint": "messages", "provider": "p", "status": 200, "client_model": "model-0"})
    names = {
        s.labels["client_model"]
        for f in m.registry.collect()
        for s in f.samples
        if s.name == "claude_proxy_requests_total"
    }
    assert len(names) == MAX_CLIENT_MODELS + 1
    assert (
        sample_value(
            m,
            "claude_proxy_requests_total",
            endpoint="messages",
            route="",
            client_model="other",
            upstream_model="",
            provider="p",
            status="200",
        )
        == 20
    )
    assert (
        sample_value(
            m,
            "claude_proxy_requests_total",
            endpoint="messages",
            route="",
            client_model="model-0",
            upstream_model="",
            provider="p",
            status="200",
        )
        == 2
    )


@pytest.mark.parametrize(
    ("server", "headers", "status"),
    [
        ({}, {}, 200),
        ({"auth_keys": ["pk-metrics"]}, {}, 401),
        ({"auth_keys": ["pk-metrics"]}, {"x-api-key": "pk-wrong"}, 401),
        ({"auth_keys": ["pk-metrics"]}, {"Authorization": "Bearer pk-metrics"}, 200),
        ({"auth_keys": ["pk-metrics"], "metrics_public": True}, {}, 200),
    ],
)
def test_metrics_endpoint_is_behind_the_proxy_keys_unless_public(server, headers, status) -> None:
    config = load_config(data={"provider": {"name": "ollama"}, "server": server}, env={})
    client = create_app(config).test_client()
    response = client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json["type"] == "error" and response.json["error"]["type"] == "authentication_error"
    else:
        assert b"# TYPE claude_proxy_streams_in_flight gauge" in response.data
    wrong = client.post("/metrics", headers={"x-api-key": "pk-metrics"})
    assert wrong.status_code in (401, 405) and wrong.json["type"] == "error"


# -- the real command, two gunicorn workers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    tmp = tmp_path_factory.mktemp("metrics-tmp")
    with ProxyServer(proxy_config(upstream), workers=2, threads=8, env={"TMPDIR": str(tmp)}) as server:
        server.tmp = tmp  # type: ignore[attr-defined]
        yield server


def slow(prompt_tokens: int, completion_tokens: int) -> HangBeforeHeaders:
    """A completion that takes a moment, so concurrent requests overlap and land on both workers."""
    return HangBeforeHeaders(
        0.15, then=Json(completion("ok", prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))
    )


def spread(url: str, upstream: FakeUpstream, directory: Path, workers: list[int]) -> dict[str, int]:
    """Overlapping batches of requests until both workers have answered some; how many went per model."""
    sent = {"claude-sonnet-5": 0, "claude-haiku-4-5": 0}
    with ThreadPoolExecutor(8) as pool:
        for _batch in range(12):  # the second worker may still be loading the app at first
            models = ["claude-sonnet-5", "claude-haiku-4-5"] * 4
            upstream.enqueue(*[slow(7, 3) for _ in models], path="/chat/completions")
            for response in pool.map(lambda m: post(url, m), models):
                assert response.status_code == 200, response.text
            for m in models:
                sent[m] += 1
            if len(pids_with_counters(directory)) == 2:
                break
    assert pids_with_counters(directory) == {str(p) for p in workers}, "one worker served every request"
    return sent


@pytest.mark.e2e
def test_counts_are_summed_over_both_workers(served: ProxyServer, upstream: FakeUpstream) -> None:
    workers = wait_for_children(served.process.pid, 2)
    directory = metrics_dir_in(served.tmp)  # type: ignore[attr-defined]

    sent = spread(served.url, upstream, directory, workers)

    # one stream, one upstream error, one invalid request
    upstream.enqueue(Stream([chunk(content="a"), chunk(content="b", finish_reason="stop"), usage_chunk(11, 2)]))
    streamed = post(served.url, stream=True)
    assert streamed.status_code == 200 and "event: message_stop" in streamed.text
    upstream.enqueue(Json({"error": {"message": "context too long", "code": "context_length_exceeded"}}, status=400))
    assert post(served.url, "claude-haiku-4-5").status_code == 400
    invalid = requests.post(served.url + "/v1/messages", json={"model": "claude-sonnet-5"}, timeout=10)
    assert invalid.status_code == 400

    sonnet = {"client_model": "claude-sonnet-5", "upstream_model": "big-model", "provider": "custom"}
    haiku = {"client_model": "claude-haiku-4-5", "upstream_model": "fast-model", "provider": "custom"}
    n_sonnet, n_haiku = sent["claude-sonnet-5"], sent["claude-haiku-4-5"]
    for _ in range(6):  # every scrape, whichever worker answers it, reports the sum of both
        samples = scrape(served.url)
        assert total(samples, "claude_proxy_requests_total", **sonnet, status="200") == n_sonnet + 1
        assert total(samples, "claude_proxy_requests_total", **haiku, status="200") == n_haiku
        assert total(samples, "claude_proxy_requests_total", **haiku, status="400") == 1
        assert total(samples, "claude_proxy_requests_total", client_model="", status="400") == 1
        assert total(samples, "claude_proxy_requests_total") == n_sonnet + n_haiku + 3
        assert total(samples, "claude_proxy_tokens_total", **sonnet, kind="input") == 7 * n_sonnet + 11
        assert total(samples, "claude_proxy_tokens_total", **sonnet, kind="output") == 3 * n_sonnet + 2
        assert total(samples, "claude_proxy_tokens_total", **haiku, kind="input") == 7 * n_haiku
        assert total(samples, "claude_proxy_tokens_total", kind="cache_read") == 0
        assert total(samples, "claude_proxy_upstream_errors_total") == 1
        assert (
            total(samples, "claude_proxy_upstream_errors_total", provider="custom", error_type="invalid_request_error")
            == 1
        )
        durations = total(samples, "claude_proxy_request_duration_seconds_count", endpoint="messages")
        assert durations == n_sonnet + n_haiku + 3
        assert total(samples, "claude_proxy_request_duration_seconds_bucket", le="+Inf") == durations
        # each slow answer took at least 0.15 s upstream
        assert total(samples, "claude_proxy_request_duration_seconds_sum", stream="false") >= 0.15 * (
            n_sonnet + n_haiku
        )
        assert total(samples, "claude_proxy_time_to_first_token_seconds_count") == 1
        assert total(samples, "claude_proxy_streams_in_flight") == 0


def read_until_text(response: requests.Response) -> Iterator[bytes]:
    lines = response.iter_lines()
    for line in lines:
        if b"text_delta" in line:
            return lines
    raise AssertionError("no text arrived")


def hold_stream(url: str) -> requests.Response:
    """A stream whose upstream goes silent after its first words: open until the test lets go."""
    body = {
        "model": "claude-sonnet-5",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    response = requests.post(url + "/v1/messages", json=body, stream=True, timeout=15)
    read_until_text(response)
    return response


def wait_for_gauge(url: str, value: float, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    seen = -1.0
    while time.monotonic() < deadline:
        seen = total(scrape(url), "claude_proxy_streams_in_flight")
        if seen == value:
            return seen
        time.sleep(0.05)
    return seen


@pytest.mark.e2e
def test_streams_in_flight_rise_and_fall(served: ProxyServer, upstream: FakeUpstream) -> None:
    script = [chunk(content="held"), Sleep(1.5), chunk(content=".", finish_reason="stop"), usage_chunk(3, 2)]
    upstream.enqueue(Stream(list(script)), Stream(list(script)), path="/chat/completions")
    body = {
        "model": "claude-sonnet-5",
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    first = requests.post(served.url + "/v1/messages", json=body, stream=True, timeout=15)
    rest_first = read_until_text(first)
    assert {total(scrape(served.url), "claude_proxy_streams_in_flight") for _ in range(4)} == {1}
    second = requests.post(served.url + "/v1/messages", json=body, stream=True, timeout=15)
    rest_second = read_until_text(second)
    assert {total(scrape(served.url), "claude_proxy_streams_in_flight") for _ in range(4)} == {2}
    assert any(b"message_stop" in line for line in rest_first)
    assert any(b"message_stop" in line for line in rest_second)
    first.close()
    second.close()
    assert wait_for_gauge(served.url, 0) == 0


@pytest.mark.e2e
def test_a_killed_workers_streams_stop_counting_and_its_counts_stay(upstream: FakeUpstream, tmp_path: Path) -> None:
    with ProxyServer(proxy_config(upstream), workers=2, threads=8, env={"TMPDIR": str(tmp_path)}) as server:
        master = server.process.pid
        workers = set(wait_for_children(master, 2))
        directory = metrics_dir_in(tmp_path)
        for _ in range(3):
            assert post(server.url).status_code == 200
        upstream.enqueue(Stream([chunk(content="held"), Hang()], done=False))
        held = hold_stream(server.url)
        assert total(scrape(server.url), "claude_proxy_streams_in_flight") == 1
        for pid in workers:
            os.kill(pid, signal.SIGKILL)  # crashed workers never run their finally blocks
        wait_for_children(master, 2, exclude=workers)
        held.close()
        samples = scrape(server.url)
        assert total(samples, "claude_proxy_streams_in_flight") == 0
        assert total(samples, "claude_proxy_requests_total", status="200") == 3
        assert directory.is_dir()
    assert server.process.returncode == 0
    assert not directory.exists(), "the command left its metrics directory behind"


def test_scrape_output_is_valid_prometheus_text() -> None:
    m = Metrics()
    observe(m,
        {
            "endpoint": "messages",
            "provider": 'we"ird\n',
            "status": 200,
            "client_model": "claude\u00e9\\x",
            "upstream_model": "u",
            "latency_ms": 5.0,
        }
    )
    body, content_type = m.exposition()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert {
        "claude_proxy_requests",
        "claude_proxy_tokens",
        "claude_proxy_request_duration_seconds",
        "claude_proxy_time_to_first_token_seconds",
        "claude_proxy_upstream_errors",
        "claude_proxy_streams_in_flight",
    } <= set(families)
    labels = families["claude_proxy_requests"].samples[0].labels
    observe(m, {"endpoint": "messages", "provider": "p", "status": 200, "client_model": "x" * 300})
    assert (
        sample_value(
            m,
            "claude_proxy_requests_total",
            endpoint="messages",
            route="",
            client_model="x" * 100,
            upstream_model="",
            provider="p",
            status="200",
        )
        == 1
    )
    assert labels["client_model"] == "claude\u00e9\\x" and labels["provider"] == 'we"ird\n'


@pytest.mark.e2e
def test_plain_gunicorn_as_the_readme_says(upstream: FakeUpstream, tmp_path: Path) -> None:
    """`PROMETHEUS_MULTIPROC_DIR=… gunicorn -c gunicorn.conf.py wsgi:app --threads 32` with the README's hook."""
    directory = tmp_path / "multiproc"
    directory.mkdir()
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("from claude_proxy.metrics import child_exit\n")
    with GunicornServer(
        proxy_config(upstream),
        "wsgi:app",
        workers=2,
        threads=32,
        extra_args=("-c", str(conf)),
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
    ) as server:
        workers = wait_for_children(server.process.pid, 2)
        sent = spread(server.url, upstream, directory, workers)
        for _ in range(4):
            assert total(scrape(server.url), "claude_proxy_requests_total") == sum(sent.values())
        upstream.enqueue(Stream([chunk(content="held"), Hang()], done=False), path="/chat/completions")
        held = hold_stream(server.url)
        assert total(scrape(server.url), "claude_proxy_streams_in_flight") == 1
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_for_children(server.process.pid, 2, exclude=set(workers))
        held.close()
        samples = scrape(server.url)
        assert total(samples, "claude_proxy_streams_in_flight") == 0  # child_exit from gunicorn.conf.py ran
        assert total(samples, "claude_proxy_requests_total") == sum(sent.values())
    assert directory.is_dir()  # the operator's directory is theirs: left in place
