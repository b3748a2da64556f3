"""Client model name → upstream model, by exact name or glob pattern."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping


def _specificity(pattern: str) -> tuple[int, int]:
    literal = sum(1 for ch in pattern if ch not in "*?[]")
    return (literal, -pattern.count("*"))


class ModelMap:
    """Exact names win; then the most specific matching pattern (most literal characters);
    names nothing matches pass through unchanged."""

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self.entries: dict[str, str] = dict(entries or {})
        self._exact = {k: v for k, v in self.entries.items() if not _is_pattern(k)}
        self._patterns = sorted(
            ((k, v) for k, v in self.entries.items() if _is_pattern(k)),
            key=lambda kv: _specificity(kv[0]),
            reverse=True,
        )

    def resolve(self, name: str) -> str:
        target = self.lookup(name)
        return name if target is None else target

    def lookup(self, name: str) -> str | None:
        if name in self._exact:
            return self._exact[name]
        for pattern, target in self._patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return target
        return None

    @property
    def exact_names(self) -> list[str]:
        return list(self._exact)

    def __len__(self) -> int:
        return len(self.entries)


def _is_pattern(key: str) -> bool:
    return any(ch in key for ch in "*?[")
