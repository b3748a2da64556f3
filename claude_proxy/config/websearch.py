"""The `[web_search]` table: which search backend runs Anthropic's `web_search_*` server tool.

Claude Code's WebSearch (and any SDK user) sends the server tool and expects the API to run the
searches; on an OpenAI-format provider the proxy runs them against one of these backends, or asks
the provider's own search (`backend = "native"`, where the preset says the provider has one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from claude_proxy.config.network import NetworkSettings

BACKENDS = ("searxng", "brave", "tavily", "native")
ON_MISSING = ("error", "drop")
WEB_SEARCH_KEYS = {"backend", "url", "api_key_env", "max_results", "max_result_chars", "timeout", "on_missing"}


@dataclass(frozen=True)
class BackendPreset:
    """What a search service needs by default: its public endpoint and the variable holding its key."""

    url: str | None  # None: no public endpoint, `url` is required (SearXNG is self-hosted)
    api_key_env: str | None
    key_required: bool
    max_query_chars: int  # longer queries are answered with `query_too_long` without a request


# Sources: SearXNG "Search API" (GET /search?q=…&format=json, no key, self-hosted);
# Brave Search API (GET https://api.search.brave.com/res/v1/web/search, header X-Subscription-Token,
# `q` at most 400 characters / 50 words); Tavily (POST https://api.tavily.com/search, Bearer key).
BACKEND_PRESETS: dict[str, BackendPreset] = {
    "searxng": BackendPreset(None, None, key_required=False, max_query_chars=1000),
    "brave": BackendPreset("https://api.search.brave.com", "BRAVE_API_KEY", key_required=True, max_query_chars=400),
    "tavily": BackendPreset("https://api.tavily.com", "TAVILY_API_KEY", key_required=True, max_query_chars=400),
}


@dataclass(frozen=True)
class WebSearchConfig:
    backend: str = "native"
    url: str | None = None
    # True when `url` came from the config file: only then may it point at a private or loopback
    # address (a default endpoint that resolves there is refused, the usual SSRF guard).
    url_explicit: bool = False
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    max_results: int = 5
    max_result_chars: int = 4000  # all results' text of one search together
    timeout: float = 15.0
    on_missing: str = "error"
    # [upstream]'s egress proxy, CAs and client certificate: a search service is reached the way
    # providers are (the loader fills it in; config/network.py)
    network: NetworkSettings = field(default_factory=NetworkSettings, repr=False)

    @property
    def runs_searches(self) -> bool:
        """The proxy runs the searches itself (as opposed to asking the provider's native search)."""
        return self.backend in BACKEND_PRESETS

    @property
    def key_missing(self) -> bool:
        preset = BACKEND_PRESETS.get(self.backend)
        return bool(preset and preset.key_required and not self.api_key)

    @property
    def max_query_chars(self) -> int:
        preset = BACKEND_PRESETS.get(self.backend)
        return preset.max_query_chars if preset else 1000


class WebSearchConfigError(ValueError):
    """A `[web_search]` problem; the loader adds the file name."""


def build_web_search(table: Mapping[str, Any], env: Mapping[str, str]) -> WebSearchConfig:
    """`[web_search]` → WebSearchConfig (raises WebSearchConfigError naming the key)."""
    for key in table:
        if key not in WEB_SEARCH_KEYS:
            raise WebSearchConfigError(
                f"unknown key 'web_search.{key}' (expected one of: {', '.join(sorted(WEB_SEARCH_KEYS))})"
            )
    backend = _get(table, "backend", str, f"one of {', '.join(repr(b) for b in BACKENDS)}", "native")
    if backend not in BACKENDS:
        raise WebSearchConfigError(f"'web_search.backend' must be one of {', '.join(BACKENDS)}, got {backend!r}")
    on_missing = _get(table, "on_missing", str, '"error" or "drop"', "error")
    if on_missing not in ON_MISSING:
        raise WebSearchConfigError(f"'web_search.on_missing' must be \"error\" or \"drop\", got {on_missing!r}")
    preset = BACKEND_PRESETS.get(backend)
    url = _get(table, "url", str, "a URL string", None)
    explicit = url is not None
    if url is None and preset is not None:
        if preset.url is None:
            raise WebSearchConfigError(
                f"'web_search.url' is required for backend {backend!r} (the base URL of your instance, "
                "e.g. \"http://127.0.0.1:8888\")"
            )
        url = preset.url
    if url is not None:
        url = url.rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebSearchConfigError(f"'web_search.url' must be an http:// or https:// URL, got {url!r}")
        if parts.username or parts.password:
            raise WebSearchConfigError("'web_search.url' must not embed credentials: use api_key_env")
    key_env = _get(table, "api_key_env", str, "an environment variable name", preset.api_key_env if preset else None)
    max_results = _get(table, "max_results", int, "an integer from 1 to 20", 5)
    if not 1 <= max_results <= 20:
        raise WebSearchConfigError(f"'web_search.max_results' must be an integer from 1 to 20, got {max_results!r}")
    max_chars = _get(table, "max_result_chars", int, "an integer from 200 to 100000", 4000)
    if not 200 <= max_chars <= 100_000:
        raise WebSearchConfigError(
            f"'web_search.max_result_chars' must be an integer from 200 to 100000, got {max_chars!r}"
        )
    timeout = _get(table, "timeout", (int, float), "a number of seconds", 15.0)
    if timeout <= 0:
        raise WebSearchConfigError(f"'web_search.timeout' must be a number above 0, got {timeout!r}")
    return WebSearchConfig(
        backend=backend,
        url=url,
        url_explicit=explicit,
        api_key=(env.get(key_env) or None) if key_env else None,
        api_key_env=key_env,
        max_results=max_results,
        max_result_chars=max_chars,
        timeout=float(timeout),
        on_missing=on_missing,
    )


def _get(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], expected: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise WebSearchConfigError(f"'web_search.{key}' must be {expected}, got {type(value).__name__} {value!r}")
    return value
