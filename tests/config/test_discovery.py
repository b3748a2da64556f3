"""`/v1/models` entries from the configuration, paged as Anthropic pages them (issue 15)."""

from __future__ import annotations

import pytest

from claude_proxy.config.discovery import configured_models, page_models
from claude_proxy.config.loader import load_config

CONFIG = load_config(
    data={
        "providers": {
            "deepseek": {"api_key": "k"},
            "groq": {"api_key": "k"},
        },
        "models": {
            "claude-opus-5-5": "deepseek,deepseek-reasoner",
            "claude-sonnet-5-5": ["groq,llama-3.3-70b", "deepseek,deepseek-chat"],
            "claude-*": "deepseek,deepseek-chat",
        },
        "routes": {"background": "groq,llama-3.1-8b"},
        "routing": {"default_provider": "deepseek"},
    },
    env={},
)


def test_every_name_and_target_is_listed_with_who_serves_it() -> None:
    entries = configured_models(CONFIG)
    assert [(e["id"], e["display_name"]) for e in entries] == [
        ("claude-opus-5-5", "claude-opus-5-5 → deepseek-reasoner on deepseek"),
        ("claude-sonnet-5-5", "claude-sonnet-5-5 → llama-3.3-70b on groq, then 1 fallback(s)"),
        ("deepseek,deepseek-reasoner", "deepseek-reasoner on deepseek ([models] claude-opus-5-5)"),
        ("groq,llama-3.3-70b", "llama-3.3-70b on groq ([models] claude-sonnet-5-5)"),
        ("deepseek,deepseek-chat", "deepseek-chat on deepseek ([models] claude-sonnet-5-5)"),
        ("groq,llama-3.1-8b", "llama-3.1-8b on groq (route background)"),
    ]
    assert all(e["type"] == "model" and e["created_at"] for e in entries)


IDS = [f"m{i}" for i in range(50)]
ENTRIES = [{"id": i} for i in IDS]


def ids(page: dict) -> list[str]:
    return [e["id"] for e in page["data"]]


def test_default_page_is_twenty_like_anthropic() -> None:
    page = page_models(ENTRIES, {})
    assert ids(page) == IDS[:20] and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == ("m0", "m19")


def test_after_id_and_before_id() -> None:
    page = page_models(ENTRIES, {"after_id": "m19", "limit": "20"})
    assert ids(page) == IDS[20:40] and page["has_more"] is True
    last = page_models(ENTRIES, {"after_id": "m39", "limit": "20"})
    assert ids(last) == IDS[40:] and last["has_more"] is False
    before = page_models(ENTRIES, {"before_id": "m30", "limit": "10"})
    assert ids(before) == IDS[20:30] and before["has_more"] is True
    first = page_models(ENTRIES, {"before_id": "m5", "limit": "10"})
    assert ids(first) == IDS[:5] and first["has_more"] is False


def test_claude_codes_limit_1000() -> None:
    page = page_models(ENTRIES, {"limit": "1000"})
    assert ids(page) == IDS and page["has_more"] is False


def test_empty_list() -> None:
    assert page_models([], {}) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten"])
def test_bad_limits_are_refused(limit: str) -> None:
    with pytest.raises(ValueError):
        page_models(ENTRIES, {"limit": limit})
