"""The [prices] table and the cost of a request, in integer micro-USD, exact over many requests."""

from __future__ import annotations

import random
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from claude_proxy.config.loader import ConfigError, load_config
from claude_proxy.config.prices import Price, Prices, cost_fields, format_usd, micro_usd, parse_price

TABLE = {
    "openai,gpt-5.1": {"input": 1.25, "output": 10, "cache_read": 0.125},
    "gpt-5.1": {"input": 99, "output": 99},
    "openrouter,anthropic/claude-*": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
    "openrouter,anthropic/claude-haiku-*": {"input": 1, "output": 5, "cache_read": 0.1, "cache_write": 1.25},
    "deepseek-*": {"input": "0.27", "output": "1.10", "cache_read": "0.07"},
}


def config(prices: dict[str, Any]) -> Any:
    return load_config(
        data={
            "providers": {
                "openai": {"api_key": "k"},
                "openrouter": {"api_key": "k"},
                "deepseek": {"api_key": "k"},
            },
            "routing": {"default_provider": "openai"},
            "prices": prices,
        },
        env={},
    )


def usage(inp: int = 0, out: int = 0, read: int = 0, write: int = 0) -> dict[str, int]:
    return {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": read, "cache_creation_input_tokens": write}


def test_prices_are_exact_integers_and_cache_prices_default_to_input() -> None:
    price = parse_price({"input": 0.075, "output": "0.3"})
    assert price == Price(input=75_000, output=300_000, cache_read=75_000, cache_write=75_000)
    assert parse_price({"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}) == Price(
        3_000_000, 15_000_000, 300_000, 3_750_000
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"input": 1}, "needs 'output'"),
        ({"output": 1}, "needs 'input'"),
        ({"input": -1, "output": 1}, "'input' must be a number of USD per million tokens, 0 or more"),
        ({"input": 1, "output": True}, "'output' must be a number"),
        ({"input": "abc", "output": 1}, "'input' must be a number"),
        ({"input": 0.0000001, "output": 1}, "'input' has more than six decimals"),
        ({"input": 1, "output": 1, "cached": 1}, "unknown key 'cached'"),
        (3.0, "must be a table"),
    ],
)
def test_bad_prices_are_one_clear_error(table: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_price(table)
    with pytest.raises(ConfigError, match=re.escape("'prices.\"gpt-5.1\"': " + message)):
        config({"gpt-5.1": table})


def test_unknown_provider_in_a_key() -> None:
    with pytest.raises(ConfigError, match=re.escape("'prices.\"nope,gpt-5\"' names unknown provider 'nope'")):
        config({"nope,gpt-5": {"input": 1, "output": 1}})


def test_lookup_exact_qualified_then_bare_then_the_most_specific_glob() -> None:
    prices = config(TABLE).prices
    assert prices.find("openai", "gpt-5.1") == parse_price(TABLE["openai,gpt-5.1"])
    assert prices.find("openrouter", "gpt-5.1") == parse_price(TABLE["gpt-5.1"])  # the bare key: any provider
    assert prices.find("openrouter", "anthropic/claude-haiku-4.5") == parse_price(TABLE["openrouter,anthropic/claude-haiku-*"])
    assert prices.find("openrouter", "anthropic/claude-sonnet-4.5") == parse_price(TABLE["openrouter,anthropic/claude-*"])
    assert prices.find("openai", "anthropic/claude-sonnet-4.5") is None  # the glob is OpenRouter's only
    assert prices.find("deepseek", "deepseek-chat") == parse_price(TABLE["deepseek-*"])
    assert prices.find("deepseek", "unknown") is None
    assert prices.find("deepseek", None) is None
    assert not config({}).prices and Prices().find("a", "b") is None


def test_preset_names_reach_the_default_provider() -> None:
    loaded = load_config(
        data={"provider": {"name": "deepseek", "api_key": "k"}, "prices": {"deepseek,deepseek-chat": {"input": 1, "output": 2}}},
        env={},
    )
    assert loaded.prices.find("default", "deepseek-chat") == Price(1_000_000, 2_000_000, 1_000_000, 1_000_000)


def test_one_request_to_the_micro_dollar() -> None:
    sonnet = parse_price(TABLE["openrouter,anthropic/claude-*"])
    # 1,000 in × $3 + 500 out × $15 + 100,000 read × $0.30 + 20,000 write × $3.75, per million
    assert sonnet.cost_micro_usd(usage(1000, 500, 100_000, 20_000)) == 3000 + 7500 + 30_000 + 75_000
    cheap = parse_price({"input": 0.075, "output": 0.3})
    assert cheap.cost_micro_usd(usage(6)) == 0  # 0.45 micro-USD rounds down
    assert cheap.cost_micro_usd(usage(10)) == 1  # 0.75 rounds up
    assert cheap.cost_micro_usd(usage(20, 5)) == 3  # 1.5 + 1.5 = 3.0 exactly, rounded once
    assert cheap.cost_micro_usd({"input_tokens": None, "output_tokens": True, "cache_read_input_tokens": -5}) == 0


def test_cost_over_many_requests_is_exact_to_the_micro_dollar() -> None:
    """10,000 random answers: the per-request integer costs, their sum, and the sum read back from
    the journal's float cost_usd all equal an independent Decimal computation."""
    prices = config(TABLE).prices
    rng = random.Random(17)
    targets = [("openai", "gpt-5.1"), ("openrouter", "anthropic/claude-sonnet-4.5"), ("openrouter", "anthropic/claude-haiku-4.5"),
               ("deepseek", "deepseek-chat")]
    decimals = {key: {k: Decimal(str(v)) for k, v in value.items()} for key, value in TABLE.items()}
    source = {
        ("openai", "gpt-5.1"): "openai,gpt-5.1",
        ("openrouter", "anthropic/claude-sonnet-4.5"): "openrouter,anthropic/claude-*",
        ("openrouter", "anthropic/claude-haiku-4.5"): "openrouter,anthropic/claude-haiku-*",
        ("deepseek", "deepseek-chat"): "deepseek-*",
    }
    total = expected_total = from_journal = 0
    for _ in range(10_000):
        provider, model = rng.choice(targets)
        u = usage(rng.randrange(0, 200_000), rng.randrange(0, 32_000), rng.randrange(0, 900_000), rng.randrange(0, 60_000))
        p = decimals[source[(provider, model)]]
        exact = (
            u["input_tokens"] * p["input"]
            + u["output_tokens"] * p["output"]
            + u["cache_read_input_tokens"] * p.get("cache_read", p["input"])
            + u["cache_creation_input_tokens"] * p.get("cache_write", p["input"])
        )  # tokens × USD per million = micro-USD
        expected = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        cost = prices.cost(provider, model, u)
        assert cost == expected
        total += cost
        expected_total += expected
        fields = cost_fields(cost)
        assert fields["cost_unpriced"] is False
        from_journal += micro_usd(fields["cost_usd"]) or 0
    assert total == expected_total == from_journal
    assert format_usd(total).startswith("$") and format_usd(1_234_567) == "$1.234567" and format_usd(5) == "$0.000005"


def test_unpriced_is_never_zero() -> None:
    prices = config(TABLE).prices
    assert prices.cost("openai", "gpt-4o", usage(100, 100)) is None
    assert cost_fields(None) == {"cost_unpriced": True}
    assert micro_usd(None) is None and micro_usd(True) is None


def test_the_example_prices_table_loads_when_uncommented() -> None:
    from pathlib import Path

    from claude_proxy.config.loader import tomllib

    text = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    head = text.split("# -- Several providers at once", 1)[0]
    lines, inside = [], False  # uncomment the [prices] block only (other tables have commented examples too)
    for line in head.splitlines():
        inside = line.startswith("# [prices]") or (inside and line.startswith('# "'))
        lines.append(line[2:] if inside else line)
    loaded = load_config(data=tomllib.loads("\n".join(lines)), env={})
    assert len(loaded.prices.entries) == 3
    assert loaded.prices.find("default", "anthropic/claude-sonnet-4.5") == Price(3_000_000, 15_000_000, 300_000, 3_750_000)
    assert loaded.prices.find("default", "deepseek/deepseek-chat") == Price(270_000, 1_100_000, 70_000, 270_000)
