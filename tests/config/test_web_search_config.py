"""The [web_search] table: defaults per backend, keys from the environment, clear errors."""

from __future__ import annotations

import re

import pytest

from claude_proxy.config import Config, ConfigError, load_config
from claude_proxy.config.presets import PRESETS

BASE = {"provider": {"name": "deepseek"}}


def load(table: dict[str, object], env: dict[str, str] | None = None) -> Config:
    return load_config(data={**BASE, "web_search": table}, env=env or {})


def test_no_table_means_no_backend() -> None:
    assert load_config(data=BASE, env={}).web_search is None


def test_searxng_needs_its_url_and_no_key() -> None:
    with pytest.raises(ConfigError, match=re.escape("'web_search.url' is required for backend 'searxng'")):
        load({"backend": "searxng"})
    ws = load({"backend": "searxng", "url": "http://127.0.0.1:8888/"}).web_search
    assert ws is not None and ws.url == "http://127.0.0.1:8888" and ws.url_explicit and not ws.key_missing
    assert (ws.max_results, ws.on_missing) == (5, "error")


def test_brave_and_tavily_default_to_their_public_endpoint_and_key_variable() -> None:
    ws = load({"backend": "brave"}, {"BRAVE_API_KEY": "bk"}).web_search
    assert ws is not None and ws.url == "https://api.search.brave.com" and not ws.url_explicit
    assert ws.api_key == "bk" and ws.api_key_env == "BRAVE_API_KEY" and "bk" not in repr(ws)
    ws = load({"backend": "tavily", "api_key_env": "MY_TAVILY", "max_results": 8, "max_result_chars": 1000},
              {"MY_TAVILY": "tk"}).web_search
    assert ws is not None and ws.url == "https://api.tavily.com" and ws.api_key == "tk"
    assert (ws.max_results, ws.max_result_chars) == (8, 1000)
    missing = load({"backend": "tavily"}).web_search
    assert missing is not None and missing.key_missing


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"backend": "google"}, "'web_search.backend' must be one of"),
        ({"backend": "brave", "max_results": 0}, "'web_search.max_results' must be an integer from 1 to 20"),
        ({"backend": "brave", "on_missing": "ignore"}, "'web_search.on_missing' must be"),
        ({"backend": "brave", "url": "ftp://x"}, "must be an http:// or https:// URL"),
        ({"backend": "brave", "url": "https://u:p@x"}, "must not embed credentials"),
        ({"backend": "brave", "colour": 1}, "unknown key 'web_search.colour'"),
        ({"backend": "brave", "timeout": True}, "'web_search.timeout' must be"),
    ],
)
def test_mistakes_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(table)


def test_the_preset_table_says_who_has_native_search() -> None:
    native = {name for name, p in PRESETS.items() if p.dialect.native_web_search}
    assert native == {"openrouter"}
    ws = load({"backend": "native", "on_missing": "drop"}).web_search
    assert ws is not None and not ws.runs_searches and ws.url is None
