"""The one switch for the server's speed code: `CLAUDE_PROXY_FAST_PATHS`, then `[server] fast_paths`.

Read here rather than through `config.loader` so that `server/` decides for itself even where it
runs without a `Config` (`gunicorn wsgi:app -k claude_proxy.worker.GracefulThreadWorker`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV = "CLAUDE_PROXY_FAST_PATHS"
OFF = frozenset({"0", "false", "no", "off"})
ON = frozenset({"1", "true", "yes", "on"})


def fast_paths_enabled(config: object | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True unless the environment variable says off, or (when it is unset) the config does.

    The variable wins so an operator can turn the speed code off without editing a config file;
    an unrecognised value leaves the decision to the config rather than guessing.
    """
    value = (os.environ if environ is None else environ).get(ENV, "").strip().lower()
    if value in OFF:
        return False
    if value in ON:
        return True
    return bool(getattr(config, "fast_paths", True))
