"""Optional OpenTelemetry traces: one span per request, a child span per upstream attempt.

Off unless `OTEL_TRACES_EXPORTER` names `otlp` or `[telemetry] enabled = true`; then the
`opentelemetry-sdk` with its OTLP/HTTP exporter (the `[otel]` extra) sends spans where the standard
`OTEL_EXPORTER_OTLP_*` variables (or `[telemetry] endpoint`) point. A client's W3C `traceparent` is
continued, and each upstream attempt passes its own on. Attributes follow the GenAI semantic
conventions (system, request/response model, token usage, finish reason) plus route and provider;
no message content is ever put on a span. Off, nothing here runs and nothing is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from claude_proxy.config.loader import Config, TelemetrySettings

if TYPE_CHECKING:
    from claude_proxy.pipeline.outcome import Outcome
    from claude_proxy.pipeline.route import Attempt

log = logging.getLogger("claude_proxy")
SCOPE = "claude_proxy"


def wanted(settings: TelemetrySettings, env: Mapping[str, str]) -> bool:
    if settings.enabled is not None:
        return settings.enabled
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    return "otlp" in exporters and env.get("OTEL_SDK_DISABLED", "").lower() != "true"


class Tracing:
    """A tracer provider of our own (an embedding app's global provider is left alone)."""

    def __init__(self, settings: TelemetrySettings, env: Mapping[str, str]) -> None:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        exporter = _exporter(settings, env)
        name = settings.service_name or env.get("OTEL_SERVICE_NAME") or "claude-proxy"
        self.provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer(SCOPE)
        self.propagator = TraceContextTextMapPropagator()

    def start(self, outcome: Outcome, headers: Mapping[str, str]) -> None:
        from opentelemetry.trace import SpanKind

        parent = self.propagator.extract(headers)
        span = self.tracer.start_span(
            f"claude_proxy {outcome.endpoint}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"gen_ai.operation.name": "chat", "claude_proxy.request_id": outcome.request_id},
        )
        outcome.trace = RequestTrace(self, span)

    def close(self) -> None:
        self.provider.shutdown()  # flushes what is queued


class RequestTrace:
    """The spans of one request; ended by `Recorder.finish` (streams: after their last byte)."""

    def __init__(self, tracing: Tracing, span: Any) -> None:
        self.tracing = tracing
        self.span = span
        self.attempt_span: Any = None
        self.upstream_headers: dict[str, str] = {}

    def begin_attempt(self, attempt: Attempt) -> None:
        from opentelemetry.trace import SpanKind, set_span_in_context

        self.end_attempt()
        model = attempt.target.model
        self.attempt_span = self.tracing.tracer.start_span(
            f"chat {model}",
            context=set_span_in_context(self.span),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": attempt.provider.name,
                "gen_ai.request.model": model,
                "claude_proxy.provider": attempt.label,
                "claude_proxy.format": attempt.provider.format,
            },
        )
        carrier: dict[str, str] = {}
        self.tracing.propagator.inject(carrier, context=set_span_in_context(self.attempt_span))
        self.upstream_headers = carrier

    def attempt_failed(self, status: int, error_type: str) -> None:
        if self.attempt_span is not None:
            self.attempt_span.set_attribute("http.response.status_code", status)
            self.attempt_span.set_attribute("error.type", error_type)
            _error_status(self.attempt_span, error_type)
        self.end_attempt()

    def end_attempt(self) -> None:
        if self.attempt_span is not None:
            self.attempt_span.end()
            self.attempt_span = None

    def finish(self, outcome: Outcome) -> None:
        attributes = _attributes(outcome)
        if self.attempt_span is not None:  # it asked for the upstream model: keep that as its request model
            self.attempt_span.set_attributes({k: v for k, v in attributes.items() if k != "gen_ai.request.model"})
            if outcome.error_type:
                _error_status(self.attempt_span, outcome.error_type)
        self.end_attempt()
        self.span.set_attributes(attributes)
        if outcome.route:
            self.span.set_attribute("claude_proxy.route", outcome.route)
        if outcome.error_type:
            _error_status(self.span, outcome.error_type)
        self.span.end()


def _exporter(settings: TelemetrySettings, env: Mapping[str, str]) -> Any:
    """OTLP over HTTP/protobuf (the `[otel]` extra), or over gRPC when asked for and installed."""
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    endpoint = settings.endpoint
    if protocol.startswith("grpc"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint) if endpoint else GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return HttpExporter(endpoint=endpoint) if endpoint else HttpExporter()


def _attributes(outcome: Outcome) -> dict[str, Any]:
    found: dict[str, Any] = {
        "gen_ai.request.model": outcome.client_model,
        "gen_ai.response.model": outcome.upstream_model,
        "gen_ai.usage.input_tokens": outcome.input_tokens,
        "gen_ai.usage.output_tokens": outcome.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": outcome.cache_read_tokens,
        "claude_proxy.provider": outcome.provider,
        "http.response.status_code": outcome.status,
        "error.type": outcome.error_type,
    }
    if outcome.stop_reason:
        found["gen_ai.response.finish_reasons"] = [outcome.stop_reason]
    return {k: v for k, v in found.items() if v is not None}


def _error_status(span: Any, error_type: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, error_type))


def tracing_for(config: Config, env: Mapping[str, str]) -> Tracing | None:
    """Tracing when asked for and installed; otherwise None (one log line if asked for but missing)."""
    settings = config.telemetry
    if not wanted(settings, env):
        return None
    try:
        return Tracing(settings, env)
    except ImportError as exc:
        log.warning("claude-proxy: traces asked for but not installed (pip install 'claude-proxy[otel]'): %s", exc)
        return None
