"""`[models]` resolution: exact names, then the most specific glob, then `*`, else the name unchanged."""

from __future__ import annotations

import pytest

from claude_proxy.config.loader import load_config
from claude_proxy.routing.targets import ModelMap

MAP = ModelMap(
    {
        "*": "default-model",
        "claude-*": "claude-family",
        "*haiku*": "haiku-anywhere",
        "claude-haiku-*": "haiku-model",
        "claude-haiku-4-5-20251001": "haiku-exact",
        "claude-opus-4-?": "opus-single-digit",
    }
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # an exact entry beats every pattern, even a more literal-rich one
        ("claude-haiku-4-5-20251001", "haiku-exact"),
        # the most specific matching pattern wins over less specific ones, whatever the table order
        ("claude-haiku-4-5", "haiku-model"),
        ("my-haiku-model", "haiku-anywhere"),
        ("claude-sonnet-5", "claude-family"),
        ("claude-opus-4-8", "opus-single-digit"),
        ("claude-opus-4-10", "claude-family"),  # `?` is exactly one character
        # `*` catches everything else
        ("gpt-4o", "default-model"),
    ],
)
def test_resolution_order(name: str, expected: str) -> None:
    assert MAP.resolve(name) == expected


def test_unmapped_names_pass_through() -> None:
    models = ModelMap({"claude-sonnet-*": "deepseek-chat", "claude-opus-4-8": "deepseek-reasoner"})
    assert models.resolve("claude-sonnet-5") == "deepseek-chat"
    assert models.resolve("claude-opus-4-8") == "deepseek-reasoner"
    assert models.resolve("claude-haiku-4-5") == "claude-haiku-4-5"
    assert models.lookup("claude-haiku-4-5") is None
    assert ModelMap().resolve("anything") == "anything"


def test_matching_is_case_sensitive_and_whole_name() -> None:
    models = ModelMap({"claude-*": "x"})
    assert models.resolve("Claude-sonnet") == "Claude-sonnet"
    assert models.resolve("my-claude-sonnet") == "my-claude-sonnet"


def test_exact_names_and_length() -> None:
    assert MAP.exact_names == ["claude-haiku-4-5-20251001"]
    assert len(MAP) == 6


def test_config_models_table_resolves_through_the_same_rules() -> None:
    config = load_config(
        data={
            "provider": {"name": "openrouter"},
            "models": {"*": "z-ai/glm-4.6", "claude-opus-*": "moonshotai/kimi-k2", "claude-opus-4-8": "exact"},
        },
        env={},
    )
    assert config.models.resolve("claude-opus-4-8") == "exact"
    assert config.models.resolve("claude-opus-4-1") == "moonshotai/kimi-k2"
    assert config.models.resolve("claude-sonnet-5") == "z-ai/glm-4.6"


def test_a_client_may_name_a_provider_in_any_case() -> None:
    from claude_proxy.routing.targets import Target, client_target

    providers = {"default", "OpenRouter"}
    assert client_target("openrouter,x/y", providers) == Target("OpenRouter", "x/y")
    assert client_target("DEEPSEEK,deepseek-chat", providers, {"deepseek": "default"}) == Target("default", "deepseek-chat")
    assert client_target("nobody,x", providers) is None
