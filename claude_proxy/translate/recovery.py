"""Second chances for requests a provider rejects over a parameter it could have told us about.

Claude Code asks for 32k–128k output tokens and the proxy asks for streamed usage; many
providers answer such requests with a 400 that names their limit instead of clamping. Rather
than fail the user's turn, the request is adjusted once — and the limit remembered by the
caller — so the next request goes through first time. A context-window overflow is not such a
limit: it is reported to the client (translate.overflow), never learned as a max_tokens clamp.
"""

from __future__ import annotations

import re
from typing import Any

from .overflow import parse_overflow

_NUMBER = re.compile(r"(?<![\w.])\d{3,7}(?![\w.])")
MIN_SENSIBLE_LIMIT = 256
TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")


def token_field(body: dict[str, Any]) -> str | None:
    return next((f for f in TOKEN_FIELDS if isinstance(body.get(f), int)), None)


def limit_from_message(message: str, requested: int) -> int | None:
    """The provider's max-tokens limit as stated in its error, if the error is about that.
    A context-window error is never one: its numbers are window and prompt sizes."""
    if parse_overflow(message) is not None:
        return None
    lowered = message.lower()
    if "max_tokens" not in lowered and "max_completion_tokens" not in lowered and "maximum" not in lowered:
        return None
    if "token" not in lowered:
        return None
    numbers = [int(n) for n in _NUMBER.findall(message.replace(",", ""))]
    below = [n for n in numbers if MIN_SENSIBLE_LIMIT <= n < requested]
    return max(below) if below else None


def recover(body: dict[str, Any], message: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A changed body to try once more after a 400 with `message`, and what changed; None if
    nothing in the message is something we can fix."""
    lowered = message.lower()
    if "stream_options" in lowered and "stream_options" in body:
        changed = {k: v for k, v in body.items() if k != "stream_options"}
        return changed, {"dropped": "stream_options"}
    field = token_field(body)
    overflow = parse_overflow(message)
    if overflow is not None:
        # The prompt fits and only prompt + max_tokens does not (vLLM, SGLang): ask once for what
        # fits beside this prompt. Never remembered — the next prompt is longer. A prompt that
        # does not fit is the client's to compact: no retry at all.
        room = overflow.completion_room
        if field is not None and room is not None and MIN_SENSIBLE_LIMIT <= room < body[field]:
            return {**body, field: room}, {"max_tokens_fit": room}
        return None
    if field is not None:
        limit = limit_from_message(message, body[field])
        if limit is not None:
            return {**body, field: limit}, {"max_tokens_limit": limit}
    return None
