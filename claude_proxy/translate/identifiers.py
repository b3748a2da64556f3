"""Tool ids and tool names that both sides can accept, mapped deterministically.

Everything here is a pure function of its input, so a follow-up request maps an id or a
name back without the proxy keeping any per-conversation state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import string

ANTHROPIC_ID = re.compile(r"[A-Za-z0-9_-]+")
ALNUM9 = re.compile(r"[A-Za-z0-9]{9}")
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]+")
ENCODED_PREFIX = "toolu_cpx"
_BASE62 = string.digits + string.ascii_letters


def to_anthropic_id(upstream_id: str) -> str:
    """An upstream tool id as a valid Anthropic id; invalid ones are encoded reversibly."""
    if upstream_id and ANTHROPIC_ID.fullmatch(upstream_id) and not upstream_id.startswith(ENCODED_PREFIX):
        return upstream_id
    raw = base64.urlsafe_b64encode(upstream_id.encode()).decode().rstrip("=")
    return ENCODED_PREFIX + raw


def to_upstream_id(anthropic_id: str, style: str = "any") -> str:
    """The id to send upstream for an id the client echoes back."""
    original = anthropic_id
    if anthropic_id.startswith(ENCODED_PREFIX):
        encoded = anthropic_id[len(ENCODED_PREFIX):]
        try:
            original = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            original = anthropic_id
    if style == "alnum9" and not ALNUM9.fullmatch(original):
        return _base62_digest(original, 9)
    return original


def _base62_digest(text: str, length: int) -> str:
    number = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    out = []
    for _ in range(length):
        number, rem = divmod(number, 62)
        out.append(_BASE62[rem])
    return "".join(out)


def to_upstream_tool_name(name: str, max_len: int = 64) -> str:
    """A tool name the provider accepts ([A-Za-z0-9_-], at most max_len), deterministic."""
    if TOOL_NAME.fullmatch(name) and len(name) <= max_len:
        return name
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", name) or "tool"
    if len(clean) <= max_len and clean == name:
        return clean
    suffix = "_" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return (clean[: max(max_len - len(suffix), 0)] + suffix)[-max_len:]


def tool_name_map(names: list[str], max_len: int = 64) -> dict[str, str]:
    """upstream name → client name, for the names that had to change."""
    out: dict[str, str] = {}
    for name in names:
        upstream = to_upstream_tool_name(name, max_len)
        if upstream != name:
            out[upstream] = name
    return out
