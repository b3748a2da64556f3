"""claude-proxy: run Claude Code (or any Anthropic Messages client) on any OpenAI-compatible provider."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from claude_proxy.config.loader import Config, ConfigError, load_config

if TYPE_CHECKING:  # Flask is imported only when an app is made
    from flask import Flask

    from claude_proxy.web.app import ProxyBlueprint


def create_app(config: Config | None = None) -> Flask:
    """The Flask app (imported lazily so the pure core never pulls in Flask)."""
    from claude_proxy.web.app import create_app as _create_app

    return _create_app(config)


def create_blueprint(config: Config, **kwargs: Any) -> ProxyBlueprint:
    """The proxy's routes as a Blueprint for an existing Flask app (see `web.app.create_blueprint`)."""
    from claude_proxy.web.app import create_blueprint as _create_blueprint

    return _create_blueprint(config, **kwargs)


__all__ = ["Config", "ConfigError", "__version__", "create_app", "create_blueprint", "load_config"]
