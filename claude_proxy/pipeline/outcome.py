"""One request's outcome, typed: what the journal writes, metrics count, `logs` summarises and `doctor` reads.

Every step of the pipeline fills in the one `Outcome` of its request; `Recorder.finish` then writes
it once to the journal and to the metrics, so the log line and the counters can never disagree.
The journal's JSON keys are these field names — nowhere else are they spelled out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypedDict

from claude_proxy.config.prices import Prices, cost_fields
from claude_proxy.errors import ProxyError, UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from claude_proxy.pipeline import metrics
from claude_proxy.pipeline.journal import Journal, redact

if TYPE_CHECKING:
    from claude_proxy.pipeline.tracing import RequestTrace

UPSTREAM_ERRORS = (UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable)
CLIENT_DISCONNECTED = "client_disconnected"


class FailedAttempt(TypedDict):
    """A target of a fallback chain that failed before the one that answered (or failed last)."""

    provider: str
    model: str
    status: int
    error_type: str
    error: str


@dataclass
class Outcome:
    """What happened to one request. Fields left at None are not written to the journal."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.monotonic)
    time: str | None = None  # wall time of the journal line (set by the journal; read back by `logs`)
    provider: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    client_model: str | None = None
    route: str | None = None
    stream: bool | None = None
    upstream_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    stop_reason: str | None = None
    ttfb_ms: float | None = None
    error_type: str | None = None
    error: str | None = None
    failed_attempts: list[FailedAttempt] | None = None
    adjusted: dict[str, Any] | None = None
    session_id: str | None = None
    prompt_id: str | None = None
    request_body: Any = None
    # the failure came from the provider (metrics: upstream_errors_total); not written to the journal
    upstream_error: bool = False
    # an answer was translated: its usage and stop reason are journalled even where unknown (null)
    answered: bool = False
    # the usage is the proxy's estimate, not the provider's (a stream the client cut before its usage came)
    usage_estimated: bool | None = None
    # the request's spans when traces are on (pipeline.tracing); ended with the outcome
    trace: RequestTrace | None = None
    # fields a feature adds to the journal line (e.g. cost, key id); kept apart from the typed ones
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The journal line: the set fields, in declaration order, then `extra`."""
        always = _ANSWER if self.answered else ()
        line = {
            f.name: value
            for f in fields(self)
            if f.name not in _NOT_JOURNALLED and ((value := getattr(self, f.name)) is not None or f.name in always)
        }
        line.update(self.extra)
        return line

    def answer(self, usage: Mapping[str, Any], stop_reason: str | None) -> None:
        """The usage and stop reason of a translated answer (Anthropic usage keys)."""
        self.answered = True
        self.input_tokens = usage.get("input_tokens")
        self.output_tokens = usage.get("output_tokens")
        self.cache_read_tokens = usage.get("cache_read_input_tokens")
        self.cache_write_tokens = usage.get("cache_creation_input_tokens")
        self.stop_reason = stop_reason

    def usage(self) -> dict[str, Any]:
        """The answer's usage under Anthropic's keys (what prices are applied to)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
        }

    def price(self, prices: Prices) -> None:
        """`cost_usd` / `cost_unpriced` on the journal line of an answered request, when a
        [prices] table is configured; a failed request (nothing answered) gets neither."""
        if not prices or self.endpoint != "messages" or (self.input_tokens is None and self.output_tokens is None):
            return
        self.extra.update(cost_fields(prices.cost(self.provider, self.upstream_model, self.usage())))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Outcome:
        """A journal line read back (`claude-proxy logs`, `doctor`); unknown keys land in `extra`."""
        known = {k: v for k, v in record.items() if k in _JOURNALLED}
        outcome = cls(request_id=str(record.get("request_id") or ""), endpoint=str(record.get("endpoint") or ""))
        for key, value in known.items():
            setattr(outcome, key, value)
        outcome.extra = {k: v for k, v in record.items() if k not in _JOURNALLED}
        return outcome

    def failed(self, attempt: FailedAttempt) -> None:
        self.failed_attempts = [*(self.failed_attempts or ()), attempt]


_NOT_JOURNALLED = {"started", "upstream_error", "answered", "trace", "extra"}
_ANSWER = ("input_tokens", "output_tokens", "cache_read_tokens", "stop_reason")
_JOURNALLED = {f.name for f in fields(Outcome)} - _NOT_JOURNALLED


class Recorder:
    """Ends a request: its outcome to the journal and the metrics, once, with secrets blanked."""

    def __init__(
        self, journal: Journal, secrets: tuple[str, ...], default_provider: str, prices: Prices | None = None
    ) -> None:
        self.journal = journal
        self.secrets = secrets
        self.prices = prices or Prices()
        self.secret_bytes = tuple(s.encode() for s in secrets if len(s) >= 4)
        self.default_provider = default_provider

    def finish(self, outcome: Outcome, status: int) -> None:
        outcome.status = status
        if outcome.provider is None:
            outcome.provider = self.default_provider
        outcome.latency_ms = round((time.monotonic() - outcome.started) * 1000, 1)
        outcome.price(self.prices)
        self.journal.write(outcome.record())
        metrics.observe(outcome)
        if outcome.trace is not None:
            outcome.trace.finish(outcome)

    def fail(self, outcome: Outcome, error: ProxyError) -> None:
        outcome.upstream_error = outcome.upstream_error or isinstance(error, UPSTREAM_ERRORS)
        outcome.error_type, outcome.error = error.error_type, self.redact(error.message)
        self.finish(outcome, error.status)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def redact_bytes(self, data: bytes) -> bytes:
        """Relayed bytes with the proxy's own keys blanked (an upstream may echo one into an error event)."""
        for secret in self.secret_bytes:
            if secret in data:
                data = data.replace(secret, b"[REDACTED]")
        return data
