"""The pure translation core: Anthropic Messages ⇄ OpenAI Chat Completions.

No Flask, no requests, no I/O — dicts in, dicts (and SSE bytes) out::

    from claude_proxy.translate import translate_request, openai_to_anthropic, StreamTranslator

    t = translate_request(anthropic_body, model="gpt-4o")
    upstream_body = t.body                     # send this to /chat/completions
    message = openai_to_anthropic(completion, t.context)

    stream = StreamTranslator(t.context)
    for data in sse_data_payloads:             # each `data:` of the upstream stream
        for event in stream.feed_data(data):
            ...                                # Anthropic events, as dicts
    events = stream.finish()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dialect import DEFAULT_DIALECT, Dialect
    from .errors import envelope, error_type_for_status, from_upstream_response
    from .request import RequestContext, Translation, anthropic_to_openai, translate_request
    from .response import openai_to_anthropic
    from .sse import SSEEvent, SSEParser, format_event, format_events
    from .stream import StreamTranslator
    from .tokens import estimate_input_tokens

# Loaded on first use: the gunicorn master reads config (which needs only `dialect`) and never
# translates, and every module it imports is resident memory in it and in each worker it forks.
_HOME = {
    "DEFAULT_DIALECT": "dialect",
    "Dialect": "dialect",
    "envelope": "errors",
    "error_type_for_status": "errors",
    "from_upstream_response": "errors",
    "RequestContext": "request",
    "Translation": "request",
    "anthropic_to_openai": "request",
    "translate_request": "request",
    "openai_to_anthropic": "response",
    "SSEEvent": "sse",
    "SSEParser": "sse",
    "format_event": "sse",
    "format_events": "sse",
    "StreamTranslator": "stream",
    "estimate_input_tokens": "tokens",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "DEFAULT_DIALECT",
    "Dialect",
    "RequestContext",
    "SSEEvent",
    "SSEParser",
    "StreamTranslator",
    "Translation",
    "anthropic_to_openai",
    "envelope",
    "error_type_for_status",
    "estimate_input_tokens",
    "format_event",
    "format_events",
    "from_upstream_response",
    "openai_to_anthropic",
    "translate_request",
]
