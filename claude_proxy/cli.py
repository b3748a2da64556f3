"""The `claude-proxy` command: configuration → a gunicorn server (threaded workers)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import __version__, metrics
from .config import CONFIG_ENV, Config, ConfigError, load_config, search_paths

PROG = "claude-proxy"


def default_log_file(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    state = Path(env.get("XDG_STATE_HOME") or Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return str(state / "claude-proxy" / "requests.jsonl")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the Anthropic Messages API on top of any OpenAI-compatible provider.",
        epilog=f"Config search order: --config, ${CONFIG_ENV}, ./claude-proxy.toml, the platform config dir, "
        "~/.claude-proxy.toml.",
    )
    parser.add_argument("-c", "--config", metavar="PATH", help="config file (TOML)")
    parser.add_argument("-p", "--port", type=int, help="port to listen on (default 4222)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--provider", metavar="NAME", help="provider preset, overrides the config")
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        help="JSONL request log (default: $XDG_STATE_HOME/claude-proxy/requests.jsonl; '-' for none)",
    )
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, help="threads per worker = concurrent requests each (default 256)")
    parser.add_argument("--show-config-paths", action="store_true", help="print the config search paths and exit")
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    return parser


def resolve(args: argparse.Namespace, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    config = load_config(args.config, provider=args.provider, env=env)
    changes: dict[str, Any] = {}
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port must be from 0 to 65535, got {args.port}")
        changes["port"] = args.port
    if args.host:
        changes["host"] = args.host
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {args.workers}")
        changes["workers"] = args.workers
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {args.threads}")
        changes["threads"] = args.threads
    if args.log_file:
        changes["log_file"] = None if args.log_file == "-" else args.log_file
    elif config.log_file is None:
        changes["log_file"] = default_log_file(env)
    return replace(config, **changes) if changes else config


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config) -> None:
    if not is_loopback(config.host) and not config.auth_keys and not config.allow_unauthenticated:
        raise ConfigError(
            f"refusing to listen on {config.host} without proxy keys: anyone who can reach it would spend your "
            "provider credit. Set [server] auth_keys (or CLAUDE_PROXY_AUTH_KEYS), or allow_unauthenticated = true"
        )


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
        f"  API key     {key}",
        f"  config      {config.source or '(none: preset defaults)'}",
        f"  models      {len(config.models)} mapped"
        + ("" if len(config.models) else " (names pass through unchanged)"),
        f"  listening   http://{bind}:{config.port}  ({config.workers} workers x {config.threads} threads)",
        f"  log file    {config.log_file or '(off)'}",
        f"  proxy keys  {'required' if config.auth_keys else 'off'}",
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
        "worker_class": "claude_proxy.worker.GracefulThreadWorker",  # gthread; refuses new connections on stop
        "timeout": 120,
        "graceful_timeout": 30,
        "keepalive": 75,
        "loglevel": "warning",
        "accesslog": None,
        "errorlog": "-",
        "proc_name": PROG,
        "worker_connections": max(1000, config.threads * 4),
        "child_exit": metrics.child_exit,  # a dead worker's streams stop counting as in flight
        # gunicorn ≥ 25.1's control socket (`gunicornc`) would be one path shared by every instance
        # of the user's ($HOME/.gunicorn/gunicorn.ctl), and an asyncio thread in the master.
        "control_socket_disable": True,
    }
    if os.path.isdir("/dev/shm"):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def reexecute_tuned() -> None:
    """Start over in this same process with `memory.MALLOC_TUNABLES`, which glibc reads only at
    start-up; returns only when there is nothing to change or the exec fails."""
    from .memory import tuned_environment

    env = tuned_environment(os.environ)
    if env is None or not sys.orig_argv:
        return
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError:
        pass  # runs untuned


def serve(config: Config) -> int:
    from gunicorn.app.base import BaseApplication

    reexecute_tuned()  # the config is known good by now: its errors are reported once

    # Before anything imports prometheus_client: workers then share one metrics directory.
    metrics_dir = metrics.setup_multiprocess()
    master = os.getpid()

    class Server(BaseApplication):  # type: ignore[misc]
        def __init__(self) -> None:
            self.options = gunicorn_options(config)
            super().__init__()

        def load_config(self) -> None:
            for key, value in self.options.items():
                if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                    self.cfg.set(key, value)

        def load(self) -> Any:
            # Imported here, in each worker after fork: the master never loads Flask, requests or
            # marshmallow (~20 MB less RSS), and no sockets are shared.
            from .app import create_app

            return create_app(config)

    if config.log_file:
        Path(config.log_file).parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # new dirs: owner only
    print(banner(config), file=sys.stderr, flush=True)
    try:
        Server().run()
    finally:
        if os.getpid() == master:  # a worker's exit unwinds through here too
            metrics.cleanup(metrics_dir)
    return 0


# Subcommands live in their own modules, each with `main(argv) -> int`.
SUBCOMMANDS = {
    "run": "claude_proxy.launcher",  # claude-proxy run -- <claude args>
    "doctor": "claude_proxy.doctor",  # checks config, key, upstream, a one-token completion
    "logs": "claude_proxy.logsummary",  # claude-proxy logs --summary
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show_config_paths:
        for path in search_paths(args.config):
            print(f"{'*' if path.is_file() else ' '} {path}")
        return 0
    try:
        config = resolve(args)
        check_exposure(config)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return serve(config)


def app_from_environment() -> Any:
    """The WSGI app for `gunicorn wsgi:app`: config from the normal search (or $CLAUDE_PROXY_CONFIG)."""
    from .app import create_app

    try:
        config = load_config(provider=os.environ.get("CLAUDE_PROXY_PROVIDER") or None)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        # 4 is gunicorn's "App failed to load": the arbiter stops instead of respawning the worker forever
        raise SystemExit(4) from None
    return create_app(config)
