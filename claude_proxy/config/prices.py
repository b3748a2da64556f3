"""What a request cost: the `[prices]` table and integer arithmetic on Anthropic usage.

Prices are written in USD per million tokens (as providers publish them) and kept as integer
pico-USD per token (× 10^6), so a price with up to six decimals is exact and a request's cost
is a sum of integer products, rounded once (half up) to whole micro-USD. Summing those over many
requests never drifts the way float dollars do.

Keys are like `[models]`: "PROVIDER,MODEL", a bare upstream model (any provider), or a glob of
either. Exact keys win (provider-qualified first), then the most specific glob. A model no key
matches has no price: its requests are counted as unpriced, never as free.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

PICO_PER_MICRO = 10**6
FIELDS = ("input", "output", "cache_read", "cache_write")
# Anthropic usage key for each price field (input_tokens excludes both kinds of cache tokens).
USAGE_KEYS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_write": "cache_creation_input_tokens",
}


@dataclass(frozen=True)
class Price:
    """Pico-USD per token (= USD per million tokens × 10^6) for each kind of token."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    def cost_micro_usd(self, usage: Mapping[str, Any]) -> int:
        """The cost of one answer's Anthropic usage, in whole micro-USD (half up)."""
        pico = sum(_tokens(usage.get(USAGE_KEYS[name])) * getattr(self, name) for name in FIELDS)
        return (pico + PICO_PER_MICRO // 2) // PICO_PER_MICRO


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _pico(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"'{name}' must be a number of USD per million tokens, got {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"'{name}' must be a number of USD per million tokens, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"'{name}' must be a number of USD per million tokens, 0 or more, got {value!r}")
    scaled = amount * PICO_PER_MICRO
    if scaled != scaled.to_integral_value():
        raise ValueError(f"'{name}' has more than six decimals: {value!r}")
    return int(scaled)


def parse_price(table: Any) -> Price:
    """`{input, output, cache_read?, cache_write?}` in USD per million tokens. A missing cache
    price is the input price (no discount is assumed that the table does not state)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"must be a table like {{input = 3.0, output = 15.0}}, got {table!r}")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (expected: {', '.join(FIELDS)})")
    for required in ("input", "output"):
        if required not in table:
            raise ValueError(f"needs '{required}' (USD per million tokens)")
    values = {name: _pico(table[name], name) for name in FIELDS if name in table}
    values.setdefault("cache_read", values["input"])
    values.setdefault("cache_write", values["input"])
    return Price(**values)


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _literal(text: str) -> int:
    return sum(1 for ch in text if ch not in "*?[]")


@dataclass(frozen=True)
class Prices:
    """The `[prices]` table: (provider or None for any, model or glob) → price."""

    entries: Mapping[tuple[str | None, str], Price] = field(default_factory=dict)

    def __post_init__(self) -> None:
        exact = {k: v for k, v in self.entries.items() if not _is_pattern(k[1])}
        patterns = sorted(
            ((k, v) for k, v in self.entries.items() if _is_pattern(k[1])),
            key=lambda kv: (_literal(kv[0][1]), kv[0][0] is not None, -kv[0][1].count("*")),
            reverse=True,
        )
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_patterns", patterns)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def find(self, provider: str | None, model: str | None) -> Price | None:
        if not model:
            return None
        exact: dict[tuple[str | None, str], Price] = self.__dict__["_exact"]
        found = exact.get((provider, model)) or exact.get((None, model))
        if found is not None:
            return found
        for (owner, pattern), price in self.__dict__["_patterns"]:
            if (owner is None or owner == provider) and fnmatch.fnmatchcase(model, pattern):
                return price
        return None

    def cost(self, provider: str | None, model: str | None, usage: Mapping[str, Any]) -> int | None:
        """Micro-USD for one answer, or None when the model has no price."""
        price = self.find(provider, model)
        return None if price is None else price.cost_micro_usd(usage)


def cost_fields(micro_usd: int | None) -> dict[str, Any]:
    """The journal fields for a cost: `cost_usd` (float USD) and `cost_unpriced`."""
    if micro_usd is None:
        return {"cost_unpriced": True}
    return {"cost_usd": micro_usd / PICO_PER_MICRO, "cost_unpriced": False}


def micro_usd(cost_usd: Any) -> int | None:
    """A journal's `cost_usd` back to integer micro-USD (for summing without float drift)."""
    if isinstance(cost_usd, bool) or not isinstance(cost_usd, (int, float)):
        return None
    return round(cost_usd * PICO_PER_MICRO)


def format_usd(micro: int) -> str:
    """Micro-USD as dollars with six decimals, exactly (no float on the way)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), PICO_PER_MICRO)
    return f"{sign}${whole}.{frac:06d}"
