"""The request pipeline, free of any web framework: bytes in, a `Reply` out.

validate (schemas) → translate.request → upstream → translate.sse/stream → Reply.
The Flask blueprint only turns HTTP into calls here and `Reply` back into HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from claude_proxy import __version__
from claude_proxy.config.loader import Config, ProviderConfig
from claude_proxy.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    ProxyError,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from claude_proxy.pipeline import metrics
from claude_proxy.pipeline.journal import Journal, redact
from claude_proxy.pipeline.validate import validate_messages_request
from claude_proxy.routing.router import ProviderHealth, Router
from claude_proxy.routing.targets import DEFAULT_PROVIDER, Target, client_target
from claude_proxy.translate import SSEParser, StreamTranslator, format_events, openai_to_anthropic, translate_request
from claude_proxy.translate.errors import TYPE_STATUS, envelope, upstream_error_message, upstream_error_type
from claude_proxy.translate.recovery import recover, token_field
from claude_proxy.translate.request import KNOWN_FIELDS
from claude_proxy.translate.response import new_message_id
from claude_proxy.translate.sse import SSEError
from claude_proxy.translate.tokens import estimate_input_tokens
from claude_proxy.upstream.client import FORWARD_TO_ANTHROPIC, PING, Upstream, host_of

JSON = "application/json"
SSE = "text/event-stream"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MODELS_CACHE_SECONDS = 300.0
UPSTREAM_ERRORS = (UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable)


@dataclass
class Reply:
    status: int
    body: bytes | Iterator[bytes]
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, orjson.dumps(payload), JSON, dict(headers or {}))


def decode_json(raw: bytes) -> Any:
    """The request body as JSON, or an InvalidRequest that says what is wrong with it."""
    if not raw.strip():
        raise InvalidRequest("body: the request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)  # validates UTF-8 itself: no separate decoding pass on the happy path
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidRequest(f"body: not valid UTF-8 (byte {bad.start})") from None
        raise InvalidRequest(f"body: not valid JSON: {exc}") from None


def too_deep() -> InvalidRequest:
    return InvalidRequest("body: JSON nested too deeply to process")


@dataclass
class Call:
    """What the journal records about one request."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.monotonic)
    record: dict[str, Any] = field(default_factory=dict)
    upstream_error: bool = False  # the failure came from the provider (metrics: upstream_errors_total)


@dataclass(frozen=True)
class Attempt:
    """One target of a chain, with the provider and the connection pool that serve it."""

    target: Target
    provider: ProviderConfig
    upstream: Upstream
    label: str  # the provider's name in headers, logs and metrics
    last: bool  # the chain's last target: retries (and Retry-After) apply only here


def falls_back(error: ProxyError) -> bool:
    """Failures that move a chain to its next target: the provider, not the request, is at fault."""
    if isinstance(error, (UpstreamUnavailable, UpstreamTimeout)):
        return True
    return isinstance(error, UpstreamHTTPError) and (error.status == 429 or error.status >= 500)


class Proxy:
    def __init__(self, config: Config, upstream: Upstream | None = None, journal: Journal | None = None) -> None:
        self.config = config
        self.provider = config.provider
        self.upstream = upstream or Upstream(config.provider, config.timeouts, config.retry, pool_size=config.threads)
        self.upstreams: dict[str, Upstream] = {
            name: self.upstream
            if name == config.default_provider
            else Upstream(provider, config.timeouts, config.retry, pool_size=config.threads)
            for name, provider in config.providers.items()
        }
        self.router = Router(config.models, config.routes, config.providers, config.default_provider, config.routing)
        self.health_of = ProviderHealth(config.routing)
        provider_keys = [p.api_key for p in config.providers.values()]
        secrets = tuple(k for k in (config.provider.api_key, *provider_keys, *config.auth_keys) if k)
        self.journal = journal or Journal(config.log_file, secrets=secrets, log_bodies=config.log_bodies)
        self.secrets = secrets
        self._models_cache: tuple[float, list[str]] = (0.0, [])
        # (provider, upstream model) → adjustments a 400 taught us (see translate.recovery); per process
        self._learned: dict[tuple[str, str], dict[str, Any]] = {}

    def close(self) -> None:
        for upstream in {id(u): u for u in self.upstreams.values()}.values():
            upstream.close()
        self.journal.close()

    def label(self, name: str) -> str:
        provider = self.config.providers[name]
        # [provider] shows as its preset ("deepseek") unless a [providers.deepseek] is also configured
        if name == DEFAULT_PROVIDER and provider.name not in self.config.providers:
            return provider.name
        return name

    # -- helpers ---------------------------------------------------------------------

    def _client_key(self, headers: Mapping[str, str]) -> str | None:
        """The client's own provider key (x-api-key, else Bearer); never one of the proxy's keys."""
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        for key in (headers.get("x-api-key"), bearer):
            if key and key not in self.config.auth_keys:  # the proxy's own door key stays here
                return key
        return None

    def _upstream_auth(
        self, headers: Mapping[str, str], provider: ProviderConfig | None = None, upstream: Upstream | None = None
    ) -> dict[str, str]:
        provider = provider or self.provider
        upstream = upstream or self.upstream
        client_key = self._client_key(headers)
        if provider.key_missing or (
            provider.api_key_from_client and not provider.api_key and not client_key and provider.key_required
        ):
            var = provider.api_key_env or "the provider's key variable"
            raise AuthenticationFailed(
                f"claude-proxy has no API key for provider '{provider.name}': set the environment variable "
                f"{var} (or api_key in its provider table) and restart the proxy"
            )
        return upstream.auth_headers(client_key)

    def _finish(self, call: Call, status: int, **fields: Any) -> None:
        record = {
            "request_id": call.request_id,
            "endpoint": call.endpoint,
            "provider": self.provider.name,
            "status": status,
            "latency_ms": round((time.monotonic() - call.started) * 1000, 1),
            **call.record,
            **fields,
        }
        self.journal.write(record)
        metrics.observe(record, call.upstream_error)

    def fail(self, call: Call, error: ProxyError) -> None:
        call.upstream_error = call.upstream_error or isinstance(error, UPSTREAM_ERRORS)
        self._finish(call, error.status, error_type=error.error_type, error=redact(error.message, self.secrets))

    # -- POST /v1/messages -----------------------------------------------------------

    def messages(self, raw: bytes, headers: Mapping[str, str], call: Call) -> Reply:
        try:
            try:
                return self._messages(raw, headers, call)
            except RecursionError:  # JSON nested deeper than Python recurses (orjson reads 1024 levels)
                raise too_deep() from None
        except ProxyError as error:
            self.fail(call, error)
            raise

    def _validated(self, raw: bytes, call: Call, count_tokens: bool = False) -> dict[str, Any]:
        body = decode_json(raw)
        problems = validate_messages_request(body, count_tokens=count_tokens)
        if problems:
            raise InvalidRequest(
                "; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
            )
        call.record["client_model"] = body["model"]
        if self.config.log_bodies:
            call.record["request_body"] = body
        return body

    def _messages(self, raw: bytes, headers: Mapping[str, str], call: Call) -> Reply:
        body = self._validated(raw, call)
        stream = bool(body.get("stream"))
        plan = self.router.plan(body)
        call.record.update(route=plan.route, stream=stream)
        targets = self.health_of.order(plan.chain)
        failed: list[dict[str, Any]] = []
        for n, target in enumerate(targets):
            provider = self.config.providers[target.provider]
            attempt = Attempt(
                target,
                provider,
                self.upstreams[target.provider],
                self.label(target.provider),
                last=n == len(targets) - 1,
            )
            call.record.update(provider=attempt.label, upstream_model=target.model)
            served = {
                "x-claude-proxy-route": plan.route,
                "x-claude-proxy-provider": attempt.label,
                "x-claude-proxy-model": target.model,
            }
            try:
                reply = self._attempt(attempt, raw, body, headers, call, stream)
            except ProxyError as error:
                if falls_back(error):
                    self.health_of.failure(target.provider)
                    failed.append(
                        {
                            "provider": attempt.label,
                            "model": target.model,
                            "status": error.status,
                            "error_type": error.error_type,
                            "error": redact(error.message, self.secrets),
                        }
                    )
                    call.record["failed_attempts"] = failed
                    if not attempt.last:
                        continue
                error.headers.update(served)  # an error too says which target it came from
                raise
            # an Anthropic error passed back unmodified (the last target's 429/5xx) is still a failure
            if reply.status == 429 or reply.status >= 500:
                self.health_of.failure(target.provider)
            else:
                self.health_of.success(target.provider)
            reply.headers.update(served)
            return reply
        raise AssertionError("unreachable: a chain has at least one target")  # pragma: no cover

    def _apply_learned(self, body: dict[str, Any], key: tuple[str, str]) -> dict[str, Any]:
        """What an earlier 400 taught us about this provider and model, applied up front."""
        learned = self._learned.get(key)
        if not learned:
            return body
        if learned.get("dropped") == "stream_options":
            body = {k: v for k, v in body.items() if k != "stream_options"}
        limit, field = learned.get("max_tokens_limit"), token_field(body)
        if limit and field and body[field] > limit:
            body = {**body, field: limit}
        return body

    def _attempt(
        self, attempt: Attempt, raw: bytes, body: dict[str, Any], headers: Mapping[str, str], call: Call, stream: bool
    ) -> Reply:
        """One target, translated afresh from the client's original body."""
        provider, upstream, model = attempt.provider, attempt.upstream, attempt.target.model
        if provider.format == "anthropic":
            return self._passthrough("/v1/messages", raw, body, model, headers, call, stream, attempt)
        auth = self._upstream_auth(headers, provider, upstream)
        forward = {}
        if self.config.forward_unknown:
            forward = {k: v for k, v in body.items() if k not in KNOWN_FIELDS and k not in self.config.drop}
        translation = translate_request(body, model=model, dialect=provider.dialect, forward=forward)
        deadline = time.monotonic() + self.config.timeouts.total
        out_headers = {**auth, "X-Request-Id": call.request_id, "User-Agent": f"claude-proxy/{__version__}"}
        if stream:
            out_headers["Accept"] = SSE
        learned_key = (attempt.target.provider, model)
        out_body = self._apply_learned(translation.body, learned_key)
        second_chance = True
        while True:
            try:
                response = upstream.post_json(
                    "/chat/completions",
                    orjson.dumps(out_body),
                    out_headers,
                    stream=stream,
                    deadline=deadline,
                    retry=attempt.last,
                )
                break
            except UpstreamHTTPError as error:
                # A 400 that names a limit we can honour (max_tokens, stream_options) gets one more try.
                fix = recover(out_body, error.message) if second_chance and error.status in (400, 422) else None
                if fix is None:
                    raise
                second_chance = False
                out_body, note = fix
                if len(self._learned) >= 1024:  # model names come from clients: keep this bounded
                    self._learned.clear()
                self._learned.setdefault(learned_key, {}).update(note)
                call.record["adjusted"] = note
        if stream:
            translation.context.prompt_tokens()  # now, so the stream does not hold the request body
            translator = StreamTranslator(translation.context, message_id=new_message_id())
            return Reply(200, self._stream(response, translator, call, deadline, upstream), SSE, dict(STREAM_HEADERS))
        content = upstream.read(response, deadline)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamUnavailable(f"{provider.name}: upstream answered with a body that is not JSON") from None
        if not isinstance(data, dict) or data.get("error") or _choice_error(data):
            payload_error = data if not isinstance(data, dict) or data.get("error") else _choice_error(data)
            message = upstream_error_message(payload_error) or "upstream returned an error"
            error_type = upstream_error_type(payload_error) or "api_error"
            status = 502 if error_type == "api_error" else TYPE_STATUS.get(error_type, 502)
            call.upstream_error = True
            # an error inside a 200 (OpenRouter) is the upstream's error like any other: same fallback rules
            raise UpstreamHTTPError(status, envelope(error_type, f"{provider.name}: {message}"))
        message = openai_to_anthropic(data, translation.context, message_id=new_message_id())
        usage = message["usage"]
        self._finish(
            call,
            200,
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cache_read_tokens=usage["cache_read_input_tokens"],
            stop_reason=message["stop_reason"],
        )
        return json_reply(message)

    def _stream(
        self, response: Any, translator: StreamTranslator, call: Call, deadline: float, upstream: Upstream
    ) -> Iterator[bytes]:
        parser = SSEParser()
        first_byte: float | None = None
        disconnected = False
        # A provider that ignores `stream: true` answers with one chat.completion body: translate it whole
        # (reading it as SSE finds no events, and Claude Code would re-send the turn without streaming).
        whole: bytearray | None = bytearray() if _is_json_response(response) else None
        metrics.stream_started()
        try:
            try:
                for piece in upstream.iter_body(response, deadline):
                    if piece is PING:
                        events = translator.ping()
                    elif whole is not None:
                        whole += piece
                        events = []
                    else:
                        events = []
                        for event in parser.feed(piece):
                            events += translator.feed_data(event.data)
                            if translator.ended:
                                break
                    if events:
                        if first_byte is None:
                            first_byte = time.monotonic()
                        yield self._sse(events)
                    if translator.ended:
                        break
                else:
                    events = []
                    if whole is not None:
                        events += _feed_whole(translator, bytes(whole), upstream.provider.name)
                    for event in parser.close():
                        events += translator.feed_data(event.data)
                    events += translator.finish()
                    if events:
                        yield self._sse(events)
            except (UpstreamTimeout, UpstreamUnavailable, SSEError) as exc:
                message = exc.message if isinstance(exc, ProxyError) else f"{upstream.provider.name}: {exc}"
                # A finish_reason already seen means the answer was complete; the rest was trailing.
                events = translator.finish() if translator.finish_reason else translator.fail("api_error", message)
                yield self._sse(events)
            except GeneratorExit:
                disconnected = True
                raise
            except Exception as exc:  # a bug must still end the stream as the grammar says
                events = translator.fail("api_error", f"claude-proxy internal error: {type(exc).__name__}")
                yield self._sse(events)
        finally:
            metrics.stream_ended()
            if translator.stop_reason is not None and not disconnected:
                upstream.release(response)  # complete: keep the connection for the next request
            else:
                response.close()
            usage = translator.usage or {}
            fields: dict[str, Any] = {
                "input_tokens": usage.get("input_tokens"),
                "output_tokens": usage.get("output_tokens"),
                "cache_read_tokens": usage.get("cache_read_input_tokens"),
                "stop_reason": translator.stop_reason,
            }
            if first_byte is not None:
                fields["ttfb_ms"] = round((first_byte - call.started) * 1000, 1)
            if translator.error:
                fields["error_type"], fields["error"] = translator.error[0], redact(translator.error[1], self.secrets)
                call.upstream_error = not translator.error[1].startswith("claude-proxy internal error")
            if disconnected and not translator.ended:
                fields["error_type"], fields["error"] = "client_disconnected", "client closed the connection mid-stream"
                call.upstream_error = False
            self._finish(call, 200, **fields)

    def _sse(self, events: list[dict[str, Any]]) -> bytes:
        """Events as SSE bytes; an upstream that echoes a key into its error message has it blanked."""
        for event in events:
            if event["type"] == "error" and self.secrets:
                event["error"]["message"] = redact(event["error"]["message"], self.secrets)
        return format_events(events)

    # -- Anthropic passthrough -------------------------------------------------------

    def _passthrough_headers(
        self, headers: Mapping[str, str], call: Call, provider: ProviderConfig | None = None
    ) -> dict[str, str]:
        provider = provider or self.provider
        client_key = self._client_key(headers)
        key = provider.api_key or (client_key if provider.api_key_from_client else None)
        if not key and provider.key_required:
            self._upstream_auth(headers, provider)  # raises with the helpful message
        out = {"x-api-key": key} if key else {}
        for name in FORWARD_TO_ANTHROPIC:
            if headers.get(name):
                out[name] = headers[name]
        out.setdefault("anthropic-version", "2023-06-01")
        out["X-Request-Id"] = call.request_id
        return out

    def _passthrough(
        self,
        path: str,
        raw: bytes,
        body: dict[str, Any],
        upstream_model: str,
        headers: Mapping[str, str],
        call: Call,
        stream: bool,
        attempt: Attempt | None = None,
    ) -> Reply:
        provider = attempt.provider if attempt else self.provider
        upstream = attempt.upstream if attempt else self.upstream
        last = attempt.last if attempt else True
        out_headers = self._passthrough_headers(headers, call, provider)
        if upstream_model != body["model"]:
            raw = orjson.dumps({**body, "model": upstream_model})
        deadline = time.monotonic() + self.config.timeouts.total
        try:
            response = upstream.post_json(path, raw, out_headers, stream=stream, deadline=deadline, retry=last)
        except UpstreamHTTPError as error:
            # Anthropic's own error bodies go back unmodified (Claude Code matches on their wording),
            # unless a fallback target is still to be tried.
            if error.raw and b'"error"' in error.raw and (last or not falls_back(error)):
                self.fail(call, error)
                text = error.raw.decode("utf-8", "replace")
                clean = redact(text, self.secrets)  # a key echoed back by the upstream stays here
                return Reply(error.status, error.raw if clean == text else clean.encode(), JSON, dict(error.headers))
            raise
        content_type = response.headers.get("content-type", JSON)
        if stream and content_type.startswith(SSE):
            return Reply(
                response.status_code, self._relay(response, call, deadline, upstream), SSE, dict(STREAM_HEADERS)
            )
        content = upstream.read(response, deadline)
        fields: dict[str, Any] = {}
        try:
            usage = orjson.loads(content).get("usage") or {}
            fields = {"input_tokens": usage.get("input_tokens"), "output_tokens": usage.get("output_tokens")}
        except (orjson.JSONDecodeError, AttributeError):
            pass
        self._finish(call, response.status_code, **fields)
        return Reply(response.status_code, content, content_type)

    def _relay(self, response: Any, call: Call, deadline: float, upstream: Upstream) -> Iterator[bytes]:
        """Anthropic SSE bytes through as they arrive; a broken upstream ends with an error event."""
        error: ProxyError | None = None
        complete = False
        metrics.stream_started()
        try:
            for piece in upstream.iter_body(response, deadline):
                yield b'event: ping\ndata: {"type":"ping"}\n\n' if piece is PING else piece
            complete = True
        except (UpstreamTimeout, UpstreamUnavailable) as exc:
            error = exc
            yield b"\n\nevent: error\ndata: " + orjson.dumps(envelope("api_error", exc.message)) + b"\n\n"
        finally:
            metrics.stream_ended()
            if complete:
                upstream.release(response, wait=0.0)  # read to its end: keep the connection
            else:
                response.close()
            if error is not None:
                self.fail(call, error)
            else:
                self._finish(call, 200)

    # -- other endpoints --------------------------------------------------------------

    def count_tokens(self, raw: bytes, headers: Mapping[str, str], call: Call) -> Reply:
        try:
            body = self._validated(raw, call, count_tokens=True)
            # counted where the message would go: an Anthropic target counts exactly, others are estimated
            target = self.health_of.order(self.router.plan(body).chain)[0]
            provider = self.config.providers[target.provider]
            call.record.update(provider=self.label(target.provider), upstream_model=target.model)
            if provider.format == "anthropic":
                attempt = Attempt(target, provider, self.upstreams[target.provider], self.label(target.provider), True)
                return self._passthrough(
                    "/v1/messages/count_tokens", raw, body, target.model, headers, call, False, attempt
                )
            try:
                tokens = estimate_input_tokens(body)
            except RecursionError:
                raise too_deep() from None
        except ProxyError as error:
            self.fail(call, error)
            raise
        self._finish(call, 200, input_tokens=tokens)
        return json_reply({"input_tokens": tokens})

    def upstream_model_ids(self, headers: Mapping[str, str]) -> list[str]:
        """The upstream's model list, cached; never raises (an empty list if unreachable)."""
        stamp, cached = self._models_cache
        if time.monotonic() - stamp < MODELS_CACHE_SECONDS:
            return cached
        ids: list[str] = []
        try:
            auth = (
                self._passthrough_headers(headers, Call("models", "models"))
                if self.provider.format == "anthropic"
                else self._upstream_auth(headers)
            )
            path = "/v1/models" if self.provider.format == "anthropic" else "/models"
            response = self.upstream.request(
                "GET", path, headers=auth, retry=False, deadline=time.monotonic() + 5.0, timeout=5.0
            )
            data = orjson.loads(self.upstream.read(response, time.monotonic() + 5.0))
            ids = [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]
        except Exception:
            ids = []
        self._models_cache = (time.monotonic(), ids)
        return ids

    def models(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        # the names a client can send: [models] names, every configured target as "PROVIDER,MODEL" (when
        # there is more than one provider to choose from), then what the default provider lists
        chains = [*self.config.models.entries.values(), *self.config.routes.values()]
        targets = [str(t) for chain in chains for t in chain] if len(self.config.providers) > 1 else []
        names = list(dict.fromkeys(self.config.models.exact_names + targets + self.upstream_model_ids(headers)))
        data = [_model_object(n) for n in names]
        if query.get("after_id") in names:
            data = data[names.index(query["after_id"]) + 1 :]
        if query.get("before_id") in names:
            data = data[: names.index(query["before_id"])]
        try:
            limit = max(1, min(int(query.get("limit", 1000)), 1000))
        except ValueError:
            raise InvalidRequest("limit: must be an integer from 1 to 1000") from None
        page = data[:limit]
        return json_reply(
            {
                "data": page,
                "has_more": len(data) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    def model(self, model_id: str, headers: Mapping[str, str]) -> Reply:
        known = (
            self.config.models.lookup(model_id) is not None
            or client_target(model_id, self.config.providers, self.router.aliases) is not None
            or model_id in self.upstream_model_ids(headers)
        )
        if not known:
            raise NotFound(f"model '{model_id}' is not mapped by claude-proxy nor listed by the upstream")
        return json_reply(_model_object(model_id))

    def health(self) -> dict[str, Any]:
        providers = {
            self.label(name): {
                "format": provider.format,
                "upstream": host_of(provider.base_url),
                "api_key_configured": not provider.key_missing,
                **self.health_of.state(name),
            }
            for name, provider in self.config.providers.items()
        }
        return {
            "status": "ok",
            "version": __version__,
            "provider": self.provider.name,
            "format": self.provider.format,
            "upstream": host_of(self.provider.base_url),
            "api_key_configured": not self.provider.key_missing,
            "models_mapped": len(self.config.models),
            "providers": providers,
        }


def _is_json_response(response: Any) -> bool:
    content_type = str(getattr(response, "headers", {}).get("content-type", "")).lower()
    return content_type.split(";")[0].strip().endswith("json")


def _feed_whole(translator: StreamTranslator, body: bytes, provider: str) -> list[dict[str, Any]]:
    """A whole chat.completion (or error body) fed to the stream translator as if it were one chunk."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        message = f"{provider}: upstream answered a streaming request with a body that is not JSON"
        return translator.fail("api_error", message)
    return translator.feed(data)


def _choice_error(data: dict[str, Any]) -> Any:
    for choice in data.get("choices") or []:
        if isinstance(choice, dict) and choice.get("error"):
            return {"error": choice["error"]}
    return None


def _model_object(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
