"""Prompt-caching rules of the wire: which session a request belongs to, the cache key sent for it,
and the breakpoints a provider may receive.

A provider's prefix cache only pays when one conversation keeps landing where its prefix is
cached, so the upstream needs a stable per-session handle. Claude Code names its session in the
`X-Claude-Code-Session-Id` header and in `metadata.user_id` (a JSON string with `session_id` since
2.1.x, `user_…_account_…_session_<uuid>` before). That id is never sent upstream as it is: only a
salted SHA-256 of it, so a provider sees a stable opaque key, never a user's or device's identifier.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

SESSION_HEADER = "x-claude-code-session-id"
_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{8,128})$")
_SESSION_MAX = 256
_KEY_SALT = b"claude-proxy/prompt-cache/v1\x00"


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if value and len(value) <= _SESSION_MAX and value.isprintable() else None


def session_from_metadata(metadata: Any) -> str | None:
    """The session part of `metadata.user_id` (JSON form or the older underscore form)."""
    if not isinstance(metadata, Mapping):
        return None
    user = metadata.get("user_id")
    if not isinstance(user, str) or not user:
        return None
    if user.startswith("{"):
        try:
            parsed = json.loads(user)
        except ValueError:
            return None
        return _clean(parsed.get("session_id")) if isinstance(parsed, dict) else None
    match = _LEGACY_SESSION.search(user)
    return _clean(match.group(1)) if match else None


def session_id(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str | None:
    """The Claude Code session a request belongs to: the header first (Claude Code's documented
    handle for proxies), then `metadata.user_id`'s session part; None when neither names one."""
    if headers is not None:
        found = _clean(headers.get(SESSION_HEADER) or headers.get("X-Claude-Code-Session-Id"))
        if found:
            return found
    return session_from_metadata(body.get("metadata"))


def cache_key(session: str) -> str:
    """A stable, opaque key for one session: the same session always gets the same key, two
    sessions never share one, and the raw id cannot be read back from it."""
    return "cpx-" + hashlib.sha256(_KEY_SALT + session.encode()).hexdigest()[:40]


def cache_mark(control: Any, keep_ttl: bool) -> dict[str, Any] | None:
    """The `cache_control` to forward for a block's own, or None when it has none."""
    if not isinstance(control, Mapping):
        return None
    mark: dict[str, Any] = {"type": str(control.get("type") or "ephemeral")}
    ttl = control.get("ttl")
    if keep_ttl and isinstance(ttl, str) and ttl:
        mark["ttl"] = ttl
    return mark


def long_ttl(body: Mapping[str, Any]) -> bool:
    """Whether the client asked for hour-long caching (`ttl: "1h"` on any breakpoint, as Claude
    Code does under ENABLE_PROMPT_CACHING_1H=1)."""
    for control in _controls(body):
        if isinstance(control, Mapping) and control.get("ttl") == "1h":
            return True
    return False


def _controls(body: Mapping[str, Any]) -> list[Any]:
    found = [body.get("cache_control")]
    system = body.get("system")
    if isinstance(system, list):
        found.extend(b.get("cache_control") for b in system if isinstance(b, Mapping))
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            found.extend(b.get("cache_control") for b in content if isinstance(b, Mapping))
    return [c for c in found if c]


def limit_breakpoints(messages: list[dict[str, Any]], limit: int) -> None:
    """Drop forwarded breakpoints beyond the provider's `limit`, in place. The first (the stable
    system prefix) and the last ones (the growing conversation) are kept: those are what a
    prefix cache can reuse on the next turn."""
    marked = [
        part
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if isinstance(part, dict) and "cache_control" in part
    ]
    if len(marked) <= limit:
        return
    keep = {id(p) for p in ([marked[0]] if limit > 1 else []) + marked[len(marked) - (limit - 1 if limit > 1 else 1) :]}
    for part in marked:
        if id(part) not in keep:
            del part["cache_control"]
