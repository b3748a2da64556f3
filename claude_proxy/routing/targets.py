"""Client model names → targets: which provider, which upstream model.

A target is written "PROVIDER,MODEL" (comma, as claude-code-router writes it: model names
contain "/" and ":"), or a bare "MODEL" for the default provider. A `[models]` value may be
one target or a list of them — a fallback chain, tried in order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_PROVIDER = "default"


@dataclass(frozen=True)
class Target:
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider},{self.model}"


Chain = tuple[Target, ...]


def parse_target(
    text: str, providers: Collection[str], default: str = DEFAULT_PROVIDER, aliases: Mapping[str, str] | None = None
) -> Target:
    """ "PROVIDER,MODEL" or "MODEL"; raises ValueError naming what is wrong.

    `aliases` lets the default provider be named by its preset too ("deepseek,deepseek-chat").
    """
    text = text.strip()
    if not text:
        raise ValueError("a target must not be empty")
    if "," in text:
        provider, model = (part.strip() for part in text.split(",", 1))
        provider = resolve_provider(provider, providers, aliases)
        if provider not in providers:
            known = ", ".join(sorted(providers)) or "none"
            raise ValueError(f"target {text!r} names unknown provider {provider!r} (configured: {known})")
        if not model:
            raise ValueError(f"target {text!r} has no model after the comma")
        return Target(provider, model)
    return Target(default, text)


def parse_chain(
    value: Any, providers: Collection[str], default: str = DEFAULT_PROVIDER, aliases: Mapping[str, str] | None = None
) -> Chain:
    """A target string or a non-empty list of them → a chain."""
    if isinstance(value, str):
        return (parse_target(value, providers, default, aliases),)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("a fallback chain must list at least one target")
        if not all(isinstance(v, str) for v in value):
            raise ValueError("a fallback chain must be a list of target strings")
        return tuple(parse_target(v, providers, default, aliases) for v in value)
    raise ValueError(f"expected a target string or a list of targets, got {type(value).__name__}")


# Claude Code's /model picker keeps only gateway ids that match /(claude|anthropic)/i (2.1.332, its
# gateway model discovery); a name that does not is listed again under this prefix, which the router drops.
DISCOVERY_PREFIX = "claude-proxy/"


def unprefixed(name: str) -> str:
    """A model name as the client means it: "claude-proxy/X" (picked in Claude Code's /model) is X."""
    return name[len(DISCOVERY_PREFIX) :] if name.startswith(DISCOVERY_PREFIX) else name


def client_target(name: str, providers: Collection[str], aliases: Mapping[str, str] | None = None) -> Target | None:
    """A model name the client sent as "PROVIDER,MODEL" selects that target directly."""
    if "," not in name:
        return None
    provider, model = (part.strip() for part in name.split(",", 1))
    provider = resolve_provider(provider, providers, aliases)
    return Target(provider, model) if provider in providers and model else None


def resolve_provider(name: str, providers: Collection[str], aliases: Mapping[str, str] | None = None) -> str:
    """A provider as written in a target → its configured name; case does not matter ("OpenRouter")."""
    aliases = aliases or {}
    if name in providers:
        return name
    if name in aliases:
        return aliases[name]
    folded = name.casefold()
    for known in (*providers, *aliases):
        if known.casefold() == folded:
            return aliases.get(known, known)
    return name


def provider_aliases(providers: Mapping[str, Any], default: str = DEFAULT_PROVIDER) -> dict[str, str]:
    """The seed's [provider] is called "default"; its preset name works too when nothing else has it."""
    provider = providers.get(default)
    name = getattr(provider, "name", None)
    if default == DEFAULT_PROVIDER and isinstance(name, str) and name and name not in providers:
        return {name: default}
    return {}


def _specificity(pattern: str) -> tuple[int, int]:
    literal = sum(1 for ch in pattern if ch not in "*?[]")
    return (literal, -pattern.count("*"))


def _is_pattern(key: str) -> bool:
    return any(ch in key for ch in "*?[")


class ModelMap:
    """Exact names win; then the most specific matching pattern (most literal characters);
    names nothing matches pass through unchanged to the default provider."""

    def __init__(
        self,
        entries: Mapping[str, Any] | None = None,
        providers: Collection[str] = (DEFAULT_PROVIDER,),
        default: str = DEFAULT_PROVIDER,
    ) -> None:
        self.default = default
        self.entries: dict[str, Chain] = {
            name: value if _is_chain(value) else parse_chain(value, providers, default)
            for name, value in (entries or {}).items()
        }
        self._exact = {k: v for k, v in self.entries.items() if not _is_pattern(k)}
        self._patterns = sorted(
            ((k, v) for k, v in self.entries.items() if _is_pattern(k)),
            key=lambda kv: _specificity(kv[0]),
            reverse=True,
        )

    def chain(self, name: str) -> Chain | None:
        if name in self._exact:
            return self._exact[name]
        for pattern, chain in self._patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return chain
        return None

    def lookup(self, name: str) -> str | None:
        """The first target's upstream model, or None when the name is not mapped."""
        chain = self.chain(name)
        return chain[0].model if chain else None

    def resolve(self, name: str) -> str:
        target = self.lookup(name)
        return name if target is None else target

    @property
    def exact_names(self) -> list[str]:
        return list(self._exact)

    def __len__(self) -> int:
        return len(self.entries)


def _is_chain(value: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and all(isinstance(t, Target) for t in value)
