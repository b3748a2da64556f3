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

from .dialect import DEFAULT_DIALECT, Dialect
from .errors import envelope, error_type_for_status, from_upstream_response
from .request import RequestContext, Translation, anthropic_to_openai, translate_request
from .response import openai_to_anthropic
from .sse import SSEEvent, SSEParser, format_event, format_events
from .stream import StreamTranslator
from .tokens import estimate_input_tokens

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
