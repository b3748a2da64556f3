"""A local token estimate for count_tokens and for message_start before the upstream says.

Not a tokenizer: a word/punctuation heuristic that tracks BPE tokenizers far better than
characters/4 on code and JSON, and counts every part of a request that costs tokens.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from .jsonio import dumps

# The estimate counts the pieces of this pattern: an ASCII-letter run is 1 + (len - 1) // 6
# tokens, 1-3 digits 1, any other non-space character 1, and a whitespace run 1 only when it
# is longer than one character and holds a newline. `text_tokens` computes exactly that count
# with bytes.translate/count (C loops) instead of a Python loop over every piece: that loop
# was most of the proxy's CPU per request on Claude Code's 30 KB-1 MB bodies.
_PIECES = re.compile(r"[A-Za-z]+|\d{1,3}|\s+|[^\sA-Za-z\d]")
IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 1500
MESSAGE_OVERHEAD = 4
TOOL_OVERHEAD = 12
_SEPARATOR = "\x00"  # joins texts counted together: 1 token of its own, never merges neighbours


def _json_text(value: Any) -> str:
    """JSON text to count tokens in (compact; spacing would count nothing). Past the depth
    limit this raises RecursionError, which count_tokens answers with a 400."""
    return dumps(value).decode()


def _class_of(code: int) -> str:
    """The character class that decides pieces: a(scii letter), 0 (digit), n(ewline), s(pace), x (other)."""
    char = chr(code)
    if char.isascii() and char.isalpha():
        return "a"
    if char.isdecimal():  # what re's \d matches in str patterns
        return "0"
    if char == "\n":
        return "n"
    return "s" if char.isspace() else "x"  # str.isspace is re's \s


def _table(keep: str, mark: str, rest: str = " ") -> bytes:
    return bytes(ord(mark) if _class_of(i) == keep else ord(rest) for i in range(256))


_LETTERS = _table("a", "a")
_DIGITS = _table("0", "0")
_SPACES = bytes(ord({"n": "n", "s": "s"}.get(_class_of(i), "x")) for i in range(256))
_NOT_OTHER = bytes(i for i in range(128) if _class_of(i) != "x")
_SINGLE_NEWLINE = re.compile(rb"xn(?=x)")


def _ascii_classes(error: UnicodeError) -> tuple[str, int]:
    """Encode error handler: each non-ASCII character becomes an ASCII one of the same class."""
    assert isinstance(error, UnicodeEncodeError)
    chars = error.object[error.start : error.end]
    return "".join(" " if c.isspace() else "0" if c.isdecimal() else "." for c in chars), error.end


codecs.register_error("claude_proxy.token_classes", _ascii_classes)


def _runs(marked: bytes, mark: bytes, every: int) -> int:
    """Pieces from maximal runs of `mark` (other bytes are spaces): 1 per run + 1 per `every` chars after its first."""
    padded = b" " + marked
    runs = padded.count(b" " + mark)
    if not runs:
        return 0
    return runs + padded.replace(b" " + mark, b"  ").count(mark * every)


def text_tokens(text: str) -> int:
    data = text.encode("ascii", "claude_proxy.token_classes")
    count = len(data.translate(None, _NOT_OTHER))  # "other" characters: one each
    count += _runs(data.translate(_LETTERS), b"a", 6)
    digits = data.translate(_DIGITS)
    if b"0" in digits:
        count += _runs(digits, b"0", 3)
    if b"\n" in data:
        spaces = b"x" + data.translate(_SPACES) + b"x"
        with_newline = spaces.translate(None, b"s").count(b"xn")  # whitespace runs holding a newline
        count += with_newline - len(_SINGLE_NEWLINE.findall(spaces))  # … less those that are one "\n" alone
    return count


# Claude Code re-sends the same system prompt, tool definitions and history on every turn:
# long texts' counts are remembered by (length, hash), so a turn costs only its new text.
_CACHE: dict[tuple[int, int], int] = {}
CACHE_MIN_CHARS = 256
CACHE_MAX_ENTRIES = 8192


def texts_tokens(texts: list[str]) -> int:
    """The sum of text_tokens over `texts`: long ones from the cache, the rest counted in one pass."""
    total = 0
    fresh: list[str] = []
    for text in texts:
        if len(text) < CACHE_MIN_CHARS:
            fresh.append(text)
            continue
        key = (len(text), hash(text))
        count = _CACHE.get(key)
        if count is None:
            count = text_tokens(text)
            if len(_CACHE) >= CACHE_MAX_ENTRIES:
                _CACHE.clear()  # bounded; a rare full recount is cheaper than LRU bookkeeping per text
            _CACHE[key] = count
        total += count
    if fresh:
        total += text_tokens(_SEPARATOR.join(fresh)) - (len(fresh) - 1)
    return total


def _block_tokens(block: Any, texts: list[str]) -> int:
    """The fixed tokens of one content block; its texts are appended to `texts` to be counted."""
    if isinstance(block, str):
        texts.append(block)
        return 0
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        texts.append(str(block.get("text", "")))
        return 0
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            texts.append(str(source.get("data", "")))
            return 0
        if source.get("type") == "content":
            return sum(_block_tokens(b, texts) for b in source.get("content") or [])
        data = source.get("data") or ""
        # ~ 3 KB of PDF per page as a rough guide; at least one page.
        return PDF_PAGE_TOKENS * max(1, len(data) * 3 // 4 // 3000)
    if kind == "thinking":
        texts.append(str(block.get("thinking", "")))
        return 0
    if kind in ("tool_use", "server_tool_use"):
        texts.append(str(block.get("name", "")))
        texts.append(_json_text(block.get("input", {})))
        return 8
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return 8 + sum(_block_tokens(b, texts) for b in content)
        texts.append(str(content or ""))
        return 8
    texts.append(_json_text(block))
    return 0


def _content_tokens(content: Any, texts: list[str]) -> int:
    if isinstance(content, str):
        texts.append(content)
        return 0
    if isinstance(content, list):
        return sum(_block_tokens(b, texts) for b in content)
    return 0


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Estimated input tokens of an Anthropic Messages request body."""
    texts: list[str] = []
    total = 0
    system = body.get("system")
    if system:
        total += _content_tokens(system, texts) + MESSAGE_OVERHEAD
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"), texts)
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            total += TOOL_OVERHEAD
            texts.append(str(tool.get("name", "")))
            texts.append(str(tool.get("description", "")))
            texts.append(_json_text(tool.get("input_schema", {})))
    return max(total + texts_tokens(texts), 1)


def estimate_output_tokens(text_len: int) -> int:
    return max(1, text_len // 4) if text_len else 0
