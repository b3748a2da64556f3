"""`serve(config)`: the proxy under gunicorn with our worker class, and the start-up banner."""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from claude_proxy import __version__
from claude_proxy.config.loader import Config, ConfigError
from claude_proxy.config.network import proxy_summary
from claude_proxy.server import memory, multiproc

PROG = "claude-proxy"


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    """The bind address as a client on this machine writes it in a URL (a wildcard is reached as localhost)."""
    if is_loopback(host) or host in ("0.0.0.0", "::", "[::]", ""):
        return "localhost"
    return f"[{host.strip('[]')}]" if ":" in host else host


def _without_credentials(url: str) -> str:
    """A URL fit to print: credentials embedded in it (user:pass@, or a token as the user) are masked."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _keys_line(config: Config) -> str:
    if config.teams is not None:
        return f"stored keys (teams store {config.teams.path}){' + static' if config.auth_keys else ''}"
    return "required" if config.auth_keys else "off"


def banner(config: Config) -> str:
    p = config.provider
    url_host = _url_host(config.host)
    bind = f"[{config.host.strip('[]')}]" if ":" in config.host else config.host
    key = ("from the client" if p.api_key_from_client else "not needed") if not p.api_key else "set"
    if p.key_missing:
        key = f"MISSING — set {p.api_key_env}; requests will get 401 until you do"
    lines = [
        f"claude-proxy {__version__}",
        f"  provider    {p.name} ({p.format})",
        f"  base URL    {_without_credentials(p.base_url)}",
        f"  egress      {proxy_summary(p.network, os.environ)}",
        f"  API key     {key}",
        f"  config      {config.source or '(none: preset defaults)'}",
        f"  models      {len(config.models)} mapped"
        + ("" if len(config.models) else " (names pass through unchanged)"),
        f"  listening   http://{bind}:{config.port}  ({config.workers} workers x {config.threads} threads)",
        f"  log file    {config.log_file or '(off)'}",
        f"  proxy keys  {_keys_line(config)}",
        "",
        "Point Claude Code at it:",
        f"  ANTHROPIC_BASE_URL=http://{url_host}:{config.port} claude",
    ]
    return "\n".join(lines)


def gunicorn_options(config: Config) -> dict[str, Any]:
    host = f"[{config.host}]" if ":" in config.host else config.host
    options: dict[str, Any] = {
        "bind": f"{host}:{config.port}",
        "workers": config.workers,
        "threads": config.threads,
        "worker_class": "claude_proxy.server.worker.GracefulThreadWorker",  # gthread; refuses new connections on stop
        "timeout": 120,
        # A stopping worker (SIGTERM, or replaced on SIGHUP) lets its streams finish: as long as one may last.
        "graceful_timeout": int(max(30.0, config.timeouts.total)),
        "keepalive": 75,
        "loglevel": "warning",
        "accesslog": None,
        "errorlog": "-",
        "proc_name": PROG,
        "worker_connections": max(1000, config.threads * 4),
        "child_exit": multiproc.child_exit,  # a dead worker's streams stop counting as in flight
        # gunicorn ≥ 25.1's control socket (`gunicornc`) would be one path shared by every instance
        # of the user's ($HOME/.gunicorn/gunicorn.ctl), and an asyncio thread in the master.
        "control_socket_disable": True,
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def serve(config: Config, reload: Callable[[], Config] | None = None) -> int:
    """Serve `config`; on SIGHUP gunicorn reloads, and `reload()` (the same file and CLI overrides, read
    again) gives the config its new workers serve. A config it refuses is one log line: the workers keep
    the old one. Old workers drain (graceful_timeout): streams in flight finish on the config they began with."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.errors import HaltServer

    # Before the workers fork: they then share one metrics directory.
    metrics_dir = multiproc.setup_multiprocess()
    memory.set_up_digests_once()
    master = os.getpid()

    class Server(BaseApplication):
        proxy_config = config  # the worker reads `[server] fast_paths` from it (`switch`)

        def __init__(self) -> None:
            self.config = config
            self.previous: Config | None = None  # the last config known to load, for a worker that cannot load the new one
            self.options = gunicorn_options(config)
            self.loaded = False
            super().__init__()

        def load_config(self) -> None:
            if self.loaded and reload is not None:  # SIGHUP: gunicorn reloads its settings, we re-read ours
                self._reread()
            self.loaded = True
            for key, value in self.options.items():
                if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                    self.cfg.set(key, value)

        def _reread(self) -> None:
            assert reload is not None
            try:
                fresh = reload()
            except ConfigError as exc:
                _say(f"config reload refused, still serving the previous config: {exc}")
                return
            self.previous, self.config = self.config, fresh
            self.options = gunicorn_options(fresh)
            _say(f"config reloaded from {fresh.source or '(no file)'}: {len(fresh.models)} models mapped")

        def load(self) -> Any:
            # Imported here, in each worker after fork: the master never loads Flask, requests or
            # marshmallow (~20 MB less RSS), and no sockets are shared.
            from claude_proxy.web.app import create_app

            try:
                return create_app(self.config)
            except ConfigError as exc:  # e.g. a schema behind: one line, then 4 (gunicorn's "App failed to load")
                if self.previous is not None:  # a reloaded config only this far wrong: the old one keeps serving
                    _say(f"config reload refused in worker, still serving the previous config: {exc}")
                    return create_app(self.previous)
                _say(f"error: {exc}")
                raise SystemExit(4) from None

    if config.log_file:
        Path(config.log_file).parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # new dirs: owner only
    print(banner(config), file=sys.stderr, flush=True)
    try:
        Server().run()
    except HaltServer as halt:
        # gunicorn halts when a worker fails to boot; when another one has failed too by the time it stops,
        # its stop raises the same HaltServer again, out of `run` (a traceback after the workers' own lines).
        _say(f"stopped: {halt.reason}")
        return halt.exit_status
    finally:
        if os.getpid() == master:  # a worker's exit unwinds through here too
            multiproc.cleanup(metrics_dir)
    return 0
