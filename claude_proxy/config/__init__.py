"""What the operator asked for: TOML + environment + flags → one frozen `Config`.

`loader` reads and checks the file; `presets` is the table of known providers (data, not code).
"""

from claude_proxy.config.loader import (
    CONFIG_ENV,
    Config,
    ConfigError,
    ProviderConfig,
    RetryPolicy,
    Timeouts,
    load_config,
    search_paths,
)
from claude_proxy.config.websearch import WebSearchConfig

__all__ = [
    "CONFIG_ENV",
    "Config",
    "ConfigError",
    "ProviderConfig",
    "RetryPolicy",
    "Timeouts",
    "WebSearchConfig",
    "load_config",
    "search_paths",
]
