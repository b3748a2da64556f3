"""JSON in and out for the pure core, said once: orjson where it is installed and able (it reads a
streamed chunk in a third of the time and writes 10× faster), Python's `json` where it is not.

orjson refuses some things `json` handles — NaN and Infinity, lone surrogates, integers past 64
bits, nesting past 254 levels — so each helper falls back per call, not per process.

How deep a document may nest is the proxy's own rule (MAX_DEPTH), not whatever the running
Python's recursion happens to allow: 3.11's `json` gives up near 1,000 levels and 3.13's does not,
so without the rule the same body would be a 400 on one interpreter and a 200 on the next. The
check runs only where the standard library writes (orjson refuses 255+ levels itself), and walks
only output longer than 2 × MAX_DEPTH characters, so the common case pays nothing.
"""

from __future__ import annotations

import json
from typing import Any

try:  # optional: the core runs on the standard library alone
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without orjson
    _orjson = None

FALLBACK_ERRORS = (TypeError, ValueError)  # orjson's JSONDecodeError/JSONEncodeError are ValueErrors

MAX_DEPTH = 512  # nesting levels of arrays and objects; deeper raises RecursionError on every Python


def deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest more than `limit` levels; iterative, so it never recurses itself."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _too_deep() -> RecursionError:
    return RecursionError(f"JSON nested deeper than {MAX_DEPTH} levels")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Raises TypeError/ValueError (or RecursionError) for what neither can write."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value)
        except FALLBACK_ERRORS:
            pass
    return _within_limit(json.dumps(value, separators=(",", ":"), ensure_ascii=False), value).encode()


def dumps_text(value: Any) -> str:
    """`json.dumps(value, ensure_ascii=False)` — the spaced form tool-call arguments have always had
    upstream — under the same depth rule as `dumps`."""
    return _within_limit(json.dumps(value, ensure_ascii=False), value)


def _within_limit(written: str, value: Any) -> str:
    # Nesting d levels takes at least 2d characters, so short output needs no walk at all.
    if len(written) > 2 * MAX_DEPTH and deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    return written


def loads(text: str | bytes) -> Any:
    """A JSON document; integers past 64 bits come back as floats from orjson, exact from `json`."""
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except FALLBACK_ERRORS:
            pass
    value = json.loads(text)
    if deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    return value
