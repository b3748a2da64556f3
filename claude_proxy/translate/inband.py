"""Errors an upstream puts inside a 200: which payloads are errors, and which HTTP status each stands for."""

from __future__ import annotations

from typing import Any

from .errors import TYPE_STATUS, upstream_error_type


def inband_error(chunk: Any) -> Any:
    """The error payload an upstream put inside a 200 (a streamed chunk or a whole body), or None.

    Shapes: a bare `{"error": …}` (OpenAI, vLLM, SGLang), the flat `{"object": "error", …}` (older vLLM,
    Mistral), a JSON array (Gemini compat), and OpenRouter's `choices[i].error` next to
    `finish_reason: "error"` (spec/provider-quirks.md §0.9).
    """
    if isinstance(chunk, list):
        return chunk if chunk else None
    if not isinstance(chunk, dict):
        return None
    if chunk.get("error") or chunk.get("object") == "error":
        return chunk
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("error"):
            return {"error": choice["error"]}
    return None


def inband_error_status(payload: Any) -> int:
    """The HTTP status an in-band error stands for: its own numeric code when it names one (OpenRouter's
    `code: 502`, vLLM's `code: 400`), else its type's; an unnamed failure is the upstream's (502)."""
    first = payload[0] if isinstance(payload, list) and payload else payload
    if isinstance(first, dict):
        err = first.get("error")
        for value in (*((err.get("code"), err.get("status")) if isinstance(err, dict) else ()), first.get("code")):
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
                return value
    error_type = upstream_error_type(payload) or "api_error"
    return 502 if error_type == "api_error" else TYPE_STATUS.get(error_type, 502)
