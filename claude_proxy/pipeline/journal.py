"""The request journal: one JSON line per request, never a key, bodies only when asked."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any

import orjson

# Shapes of API keys, each with the text any match must contain: a line without it is not
# scanned (three regex passes per journal line were a measurable share of a request's CPU).
_KEY_SHAPES = [
    (re.compile(r"sk-(?:or-|ant-|proj-)?[A-Za-z0-9_\-]{8,}"), "[REDACTED]", ("sk-",), False),
    (re.compile(r"(?:gsk|fw|xai)_[A-Za-z0-9]{8,}"), "[REDACTED]", ("gsk_", "fw_", "xai_"), False),
    (re.compile(r"cpk_[A-Za-z0-9]{8}_[A-Za-z0-9_\-]{8,}"), "[REDACTED]", ("cpk_",), False),  # stored proxy keys
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"), r"\1[REDACTED]", ("bearer",), True),
]


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Text with known secrets and anything shaped like an API key replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    lowered = None
    for pattern, replacement, hints, any_case in _KEY_SHAPES:
        if any_case:
            lowered = lowered if lowered is not None else text.lower()
            haystack = lowered
        else:
            haystack = text
        if any(hint in haystack for hint in hints):
            text = pattern.sub(replacement, text)
            lowered = None
    return text


class Journal:
    """Append-only JSONL writer, safe across threads; the file is created mode 0600."""

    def __init__(self, path: str | None, secrets: tuple[str, ...] = (), log_bodies: bool = False) -> None:
        self.path = path
        self.secrets = tuple(s for s in secrets if s)
        self.log_bodies = log_bodies
        self._lock = threading.Lock()
        self._fd: int | None = None
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.chmod(path, 0o600)
            except OSError:
                pass

    def write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
        record = {"time": stamp, **record}
        try:
            line = orjson.dumps(record, default=str).decode()
        except (RecursionError, ValueError, TypeError):
            # a logged body too deep (or with integers too big) for orjson: json, or without the body
            try:
                line = json.dumps(record, ensure_ascii=False, default=str)
            except (RecursionError, ValueError, TypeError):
                record["request_body"] = "[omitted: not serialisable]"
                line = json.dumps(record, ensure_ascii=False, default=str)
        line = redact(line, self.secrets) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
