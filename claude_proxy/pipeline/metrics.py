"""Prometheus metrics: one observer fed by the request journal's records, correct under gunicorn.

Every request ends in `Recorder.finish` with one `Outcome` (status, models, tokens, latency, time to
first byte, error type); `observe()` turns it into counters and histograms, the journal writes the
same object, so the metrics and the JSONL log can never disagree. Streams in flight are counted by
the stream pump (`pipeline.streaming`).

Under gunicorn each worker is a separate process with its own memory: the `claude-proxy` command
creates a private directory and exports PROMETHEUS_MULTIPROC_DIR (the variable prometheus_client's
users know) before the workers fork; each worker keeps its values in files there, and a scrape sums
them (`pipeline.prometheus`). The `child_exit` hook marks dead workers (their live gauges vanish,
their counters stay) and the master removes the directory when it exits. Without that variable
(tests, an embedding app) the values live in the process's memory.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from claude_proxy.pipeline import prometheus

if TYPE_CHECKING:
    from claude_proxy.pipeline.outcome import Outcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NAMESPACE = "claude_proxy"
# Client-chosen model names become label values: cap how many distinct ones a process records
# (each is a time series forever) and how long they may be; the rest are counted as "other".
MAX_CLIENT_MODELS = 100
MAX_LABEL_LENGTH = 100
MAX_REMEMBERED_CHILDREN = 4096
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
TOKEN_KINDS = (
    ("input", "input_tokens"),
    ("output", "output_tokens"),
    ("cache_read", "cache_read_tokens"),
    ("cache_write", "cache_write_tokens"),
)
log = logging.getLogger("claude_proxy")


def multiprocess_dir(env: Mapping[str, str] | None = None) -> str | None:
    """The directory the workers share their values in, when there is one."""
    env = os.environ if env is None else env
    return env.get(MULTIPROC_ENV) or env.get(MULTIPROC_ENV.lower()) or None


class Metrics:
    """The metric objects of this process (one instance, see `metrics()`)."""

    def __init__(self, directory: str | None = None) -> None:
        # This process's own registry (files in the shared directory under gunicorn), whatever else
        # an embedding app registers with prometheus_client.
        shared = directory or multiprocess_dir()
        try:
            self.registry = prometheus.Registry(shared)
        except OSError as exc:  # the directory is gone (a tmp cleaner) or not ours to write: still serve
            log.warning("claude-proxy: metrics directory %s unusable (%s): this worker's /metrics counts "
                        "its own requests only", shared, exc.strerror or exc)
            self.registry = prometheus.Registry(None)
        self.multiprocess = self.registry.directory is not None
        model_labels = ("endpoint", "route", "client_model", "upstream_model", "provider")
        ns = NAMESPACE + "_"
        self.requests = self.registry.counter(
            ns + "requests",
            "Requests answered, by endpoint, route, client model, upstream model, provider and HTTP status",
            (*model_labels, "status"),
        )
        self.duration = self.registry.histogram(
            ns + "request_duration_seconds",
            "Time from request to the last byte of the answer",
            ("endpoint", "route", "upstream_model", "provider", "stream"),
            LATENCY_BUCKETS,
        )
        self.ttft = self.registry.histogram(
            ns + "time_to_first_token_seconds",
            "Time from request to the first streamed event carrying content",
            ("upstream_model", "provider"),
            TTFT_BUCKETS,
        )
        self.tokens = self.registry.counter(
            ns + "tokens",
            "Tokens reported by the upstream (kind: input, output, cache_read, cache_write)",
            ("kind", "client_model", "upstream_model", "provider"),
        )
        self.cost = self.registry.counter(
            ns + "cost_usd",
            "What answers cost in USD, from the [prices] table (requests on unpriced models are not in it)",
            ("provider", "upstream_model"),
        )
        self.unpriced = self.registry.counter(
            ns + "unpriced_requests",
            "Answers on a model the [prices] table has no price for (their cost is unknown, not zero)",
            ("provider", "upstream_model"),
        )
        self.upstream_errors = self.registry.counter(
            ns + "upstream_errors",
            "Failures that came from the upstream (HTTP errors, timeouts, broken streams), by error type",
            ("provider", "error_type"),
        )
        self.streams_in_flight = self.registry.gauge(
            ns + "streams_in_flight", "Streamed answers currently being relayed (summed over live workers)"
        )
        self._client_models: set[str] = set()
        self._lock = threading.Lock()
        self._children: dict[tuple[Any, ...], Any] = {}

    @property
    def remembered_children(self) -> Mapping[tuple[Any, ...], Any]:
        """The label children `_child` holds on to (a read-only view; bounded by MAX_REMEMBERED_CHILDREN)."""
        return MappingProxyType(self._children)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: `labels` converts and checks the values on every
        call; a proxy sees the same few label sets over and over."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_REMEMBERED_CHILDREN:
                self._children.clear()  # label sets are bounded, but never let this grow without end
            child = self._children[key] = metric.labels(*labels)
        return child

    def _client_model(self, name: Any) -> str:
        if not isinstance(name, str) or not name:
            return ""
        name = name[:MAX_LABEL_LENGTH]
        with self._lock:
            if name in self._client_models:
                return name
            if len(self._client_models) >= MAX_CLIENT_MODELS:
                return "other"
            self._client_models.add(name)
            return name

    def observe(self, outcome: Outcome) -> None:
        """Count one finished request from its outcome (the same one the journal writes)."""
        endpoint = outcome.endpoint
        provider = outcome.provider or ""
        route = _label(outcome.route)
        client_model = self._client_model(outcome.client_model)
        upstream_model = _label(outcome.upstream_model)
        status = str(outcome.status or "")
        self._child(self.requests, endpoint, route, client_model, upstream_model, provider, status).inc()
        latency = outcome.latency_ms
        if latency is not None:
            stream = "true" if outcome.stream else "false"
            self._child(self.duration, endpoint, route, upstream_model, provider, stream).observe(latency / 1000.0)
        if outcome.ttfb_ms is not None:
            self._child(self.ttft, upstream_model, provider).observe(outcome.ttfb_ms / 1000.0)
        if endpoint == "messages":  # count_tokens' numbers are local estimates, nothing was spent
            for kind, attribute in TOKEN_KINDS:
                value = getattr(outcome, attribute)
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    self._child(self.tokens, kind, client_model, upstream_model, provider).inc(value)
            cost = outcome.extra.get("cost_usd") if outcome.extra else None
            if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
                self._child(self.cost, provider, upstream_model).inc(cost)
            elif outcome.extra and outcome.extra.get("cost_unpriced") is True:
                self._child(self.unpriced, provider, upstream_model).inc()
        # Targets of a fallback chain that failed before the one that answered (or failed last).
        failed = outcome.failed_attempts or []
        for attempt in failed:
            self.upstream_errors.labels(_label(attempt.get("provider")), _label(attempt.get("error_type"))).inc()
        final_listed = bool(failed) and (failed[-1].get("error_type"), failed[-1].get("error")) == (
            outcome.error_type,
            outcome.error,
        )
        if outcome.upstream_error and outcome.error_type and not final_listed:
            self.upstream_errors.labels(provider, _label(outcome.error_type)).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format for a scrape, summed over all workers when they share a directory."""
        return self.registry.exposition(), prometheus.CONTENT_TYPE


def _label(value: Any) -> str:
    return str(value)[:MAX_LABEL_LENGTH] if value else ""


_instance: Metrics | None = None
_instance_lock = threading.Lock()


def metrics() -> Metrics:
    """This process's metrics, created on first use (after gunicorn forked the worker)."""
    global _instance
    if _instance is None:
        with _instance_lock:
            if _instance is None:
                _instance = Metrics()
    return _instance


def observe(outcome: Outcome) -> None:
    """Count a finished request; never lets a metrics problem fail the request."""
    try:
        metrics().observe(outcome)
    except Exception:  # pragma: no cover - metrics must not break serving
        log.exception("claude-proxy: recording metrics failed")


def stream_started() -> None:
    try:
        metrics().streams_in_flight.inc()
    except Exception:  # pragma: no cover
        log.exception("claude-proxy: recording metrics failed")


def stream_ended() -> None:
    try:
        metrics().streams_in_flight.dec()
    except Exception:  # pragma: no cover
        log.exception("claude-proxy: recording metrics failed")
