"""The `claude-proxy` command: configuration → a gunicorn server (threaded workers)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from claude_proxy import __version__
from claude_proxy.config.loader import CONFIG_ENV, Config, ConfigError, load_config, read_toml, search_paths
from claude_proxy.config.teams import sqlite_path_problem
from claude_proxy.server.serve import is_loopback, serve

PROG = "claude-proxy"


def default_log_file(env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    state = Path(env.get("XDG_STATE_HOME") or Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return str(state / "claude-proxy" / "requests.jsonl")


def build_parser(help_overrides: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The main command's options; `help_overrides` (dest -> text) lets `claude-proxy run` say its own defaults."""
    helps = {
        "port": "port to listen on (default 4222)",
        "host": "address to bind (default 127.0.0.1)",
        "workers": "gunicorn worker processes (default 2)",
        **(help_overrides or {}),
    }
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve the Anthropic Messages API on top of any OpenAI-compatible provider.",
        epilog=f"Config search order: --config, ${CONFIG_ENV}, ./claude-proxy.toml, the platform config dir, "
        "~/.claude-proxy.toml.",
    )
    parser.add_argument("-c", "--config", metavar="PATH", help="config file (TOML)")
    parser.add_argument("-p", "--port", type=int, help=helps["port"])
    parser.add_argument("--host", help=helps["host"])
    parser.add_argument("--provider", metavar="NAME", help="provider preset, overrides the config")
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        help="JSONL request log (default: $XDG_STATE_HOME/claude-proxy/requests.jsonl; '-' for none)",
    )
    parser.add_argument("--workers", type=int, help=helps["workers"])
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


def check_store_path(config: Config) -> None:
    """A SQLite teams store where it cannot be: one line now, instead of every worker failing to boot."""
    teams = config.teams
    if teams is not None and teams.store == "sqlite":
        problem = sqlite_path_problem(teams.path)
        if problem:
            raise ConfigError(f"[teams] path: {problem}")


def check_exposure(config: Config) -> None:
    protected = bool(config.auth_keys) or config.teams is not None  # [teams]: stored keys are required
    if not is_loopback(config.host) and not protected and not config.allow_unauthenticated:
        raise ConfigError(
            f"refusing to listen on {config.host} without proxy keys: anyone who can reach it would spend your "
            "provider credit. Set [server] auth_keys (or CLAUDE_PROXY_AUTH_KEYS), or allow_unauthenticated = true"
        )


# Subcommands live in their own modules, each with `main(argv) -> int`.
SUBCOMMANDS = {
    "run": "claude_proxy.cli.run",  # claude-proxy run -- <claude args>
    "doctor": "claude_proxy.cli.doctor",  # checks config, key, upstream, a one-token completion
    "logs": "claude_proxy.cli.logs",  # claude-proxy logs --summary
    "keys": "claude_proxy.cli.keys",  # stored proxy keys: create|list|show|update|revoke
    "teams": "claude_proxy.cli.teams",  # teams and their limits
    "usage": "claude_proxy.cli.usage",  # usage and cost by team/key/owner/model/provider/day
    "audit": "claude_proxy.cli.audit",  # the admin trail
    "store": "claude_proxy.cli.store",  # store migrate [--sql] | status
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
        check_store_path(config)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    return serve(config, reload=lambda: _checked(resolve(args)))


def _checked(config: Config) -> Config:
    check_exposure(config)
    check_store_path(config)
    return config


def _last_good_path() -> Path:
    """Where the workers of this gunicorn (their parent, the arbiter) keep the last config that loaded."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"claude-proxy-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"last-good-{os.getppid()}.toml"


def _remember(config: Config) -> None:
    """Keep the file this worker loaded (mode 0600: it may hold keys) for a later worker whose reload fails."""
    if config.source is None:
        return
    try:
        data = Path(config.source).read_bytes()
        path = _last_good_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError:
        pass  # no snapshot: a later bad config then stops the service as before


def _last_good(provider: str | None) -> Config | None:
    try:
        path = _last_good_path()
        if not path.exists():
            return None
        return load_config(provider=provider, data=read_toml(path))
    except (OSError, ValueError, ConfigError):
        return None


def app_from_environment() -> Any:
    """The WSGI app for `gunicorn wsgi:app`: config from the normal search (or $CLAUDE_PROXY_CONFIG).

    gunicorn's HUP starts new workers, which read the config again: one that fails keeps serving the
    last config a worker of this gunicorn loaded (one log line) instead of stopping the arbiter."""
    from claude_proxy.web.app import create_app

    provider = os.environ.get("CLAUDE_PROXY_PROVIDER") or None
    try:
        config = load_config(provider=provider)
        app = create_app(config)
    except ConfigError as exc:
        previous = _last_good(provider)
        if previous is not None:
            print(f"{PROG}: config reload refused, still serving the previous config: {exc}", file=sys.stderr, flush=True)
            return create_app(previous)
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        # 4 is gunicorn's "App failed to load": the arbiter stops instead of respawning the worker forever
        raise SystemExit(4) from None
    _remember(config)
    return app
