"""Configuration: TOML file + environment + CLI overrides → one frozen `Config`.

Every problem is a `ConfigError` whose message names the file, the key and what was
expected, so the CLI can print one line and exit 2 instead of a traceback.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from claude_proxy.config.network import NETWORK_KEYS, NetworkError, NetworkSettings, network_settings
from claude_proxy.config.presets import PRESETS, Preset, preset
from claude_proxy.config.prices import Price, Prices, parse_price
from claude_proxy.config.teams import TeamsSettings, teams_settings
from claude_proxy.config.websearch import WebSearchConfig, WebSearchConfigError, build_web_search
from claude_proxy.routing.router import SCENARIOS, RoutingConfig
from claude_proxy.routing.targets import (
    DEFAULT_PROVIDER,
    Chain,
    ModelMap,
    parse_chain,
    provider_aliases,
    resolve_provider,
)
from claude_proxy.translate.dialect import Dialect

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_PORT = 4222
DEFAULT_HOST = "127.0.0.1"
DEFAULT_DROP = ("betas", "anthropic_beta", "context_management", "reasoning_effort")
CONFIG_ENV = "CLAUDE_PROXY_CONFIG"
AUTH_KEYS_ENV = "CLAUDE_PROXY_AUTH_KEYS"
FAST_PATHS_ENV = "CLAUDE_PROXY_FAST_PATHS"
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"1", "true", "yes", "on"})


class ConfigError(Exception):
    """A configuration problem, phrased for a person: file, key, what was expected."""


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    base_url: str
    format: str
    dialect: Dialect
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    key_required: bool = True
    api_key_from_client: bool = False
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # egress proxy, CAs, client certificate: the provider's own keys over [upstream]'s (config/network.py)
    network: NetworkSettings = field(default_factory=NetworkSettings, repr=False)

    @property
    def key_missing(self) -> bool:
        return self.key_required and not self.api_key and not self.api_key_from_client


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    read: float = 300.0  # longest silence between upstream bytes
    total: float = 600.0  # whole request, first byte to last
    ping_interval: float = 15.0


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0


@dataclass(frozen=True)
class TelemetrySettings:
    """The `[telemetry]` table; None means "as the OTEL_* environment says"."""

    enabled: bool | None = None
    endpoint: str | None = None  # OTLP/HTTP base URL (…/v1/traces is added) or a full traces URL
    service_name: str | None = None


@dataclass(frozen=True)
class Config:
    provider: ProviderConfig
    models: ModelMap = field(default_factory=ModelMap)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    drop: frozenset[str] = frozenset(DEFAULT_DROP)
    forward_unknown: bool = False
    timeouts: Timeouts = Timeouts()
    retry: RetryPolicy = RetryPolicy()
    auth_keys: tuple[str, ...] = field(default=(), repr=False)
    allow_unauthenticated: bool = False
    metrics_public: bool = False  # GET /metrics without a proxy key even when auth_keys are set
    cors_origins: tuple[str, ...] = ()
    # Behind a reverse proxy that mounts the proxy under a path (nginx `location /llm/` with
    # `X-Forwarded-Prefix /llm`): honour that header, so the usage page's links, forms and cookie
    # path carry the prefix. Off by default: only a proxy in front may set it.
    forwarded_prefix: bool = False
    max_body_bytes: int = 32 * 1024 * 1024
    log_file: str | None = None
    log_bodies: bool = False
    workers: int = 2
    threads: int = 256  # per worker: each open stream holds one (see BENCHMARKS.md, scenario 3)
    fast_paths: bool = True  # speed code on library internals (docs/internals-ledger.md); see fast_paths_enabled
    source: str | None = None
    # Several providers: `provider` is the default one (the seed's [provider] table, named "default").
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    default_provider: str = DEFAULT_PROVIDER
    routes: Mapping[str, Chain] = field(default_factory=dict)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    teams: TeamsSettings | None = None  # [teams]: stored keys, limits, usage (None = static auth_keys only)
    prices: Prices = field(default_factory=Prices)
    # [web_search]: None when the table is absent (server tools then use native search or on_missing)
    web_search: WebSearchConfig | None = None
    # [context_windows]: upstream model name or glob → its window in tokens (see context_window)
    context_windows: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.providers:
            object.__setattr__(self, "providers", {self.default_provider: self.provider})

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)

    def context_window(self, model: str) -> int | None:
        """The configured context window of an upstream model: its exact name, else the most
        specific matching glob; None when not configured (the provider's error decides then)."""
        windows = self.context_windows
        if model in windows:
            return windows[model]
        matches = [(len(k.replace("*", "").replace("?", "")), v) for k, v in windows.items() if fnmatch.fnmatchcase(model, k)]
        return max(matches)[1] if matches else None


def fast_paths_enabled(config: Config | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Whether the speed code on library internals (upstream/fastpath, server/) may run.

    `CLAUDE_PROXY_FAST_PATHS` (0/false/no/off or 1/true/yes/on) overrides `[server] fast_paths`,
    so an operator can turn it all off without editing the file; anything else in the variable
    is ignored. Without a config the default is on.
    """
    env = os.environ if env is None else env
    value = env.get(FAST_PATHS_ENV, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    return config.fast_paths if config is not None else True


def search_paths(explicit: str | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """Where a config file is looked for, in order (the first that exists wins)."""
    env = os.environ if env is None else env
    paths: list[Path] = []
    if explicit:
        paths.append(Path(explicit).expanduser())
    elif env.get(CONFIG_ENV):
        paths.append(Path(env[CONFIG_ENV]).expanduser())
    paths.append(Path.cwd() / "claude-proxy.toml")
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "darwin":
        paths.append(home / "Library" / "Application Support" / "claude-proxy" / "config.toml")
    xdg = env.get("XDG_CONFIG_HOME")
    paths.append((Path(xdg) if xdg else home / ".config") / "claude-proxy" / "config.toml")
    paths.append(home / ".claude-proxy.toml")
    return paths


def find_config_file(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    paths = search_paths(explicit, env)
    if explicit or env.get(CONFIG_ENV):
        if not paths[0].is_file():
            raise ConfigError(f"{paths[0]}: config file not found")
        return paths[0]
    return next((p for p in paths if p.is_file()), None)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


TOP_LEVEL = {
    "port",
    "host",
    "timeout",
    "provider",
    "providers",
    "models",
    "context_windows",
    "routes",
    "routing",
    "params",
    "server",
    "upstream",
    "telemetry",
    "teams",
    "prices",
    "web_search",
}
TELEMETRY_KEYS = {"enabled", "endpoint", "service_name"}
ROUTING_KEYS = {
    "long_context_threshold",
    "background_models",
    "cooldown_failures",
    "cooldown_seconds",
    "default_provider",
    "sticky_sessions",
    "sticky_ttl",
}
PROVIDER_KEYS = {
    "name", "base_url", "api_key_env", "api_key", "format", "api_key_from_client", "headers", "quirks", *NETWORK_KEYS,
}  # fmt: skip
SERVER_KEYS = {
    "auth_keys",
    "auth_keys_env",
    "allow_unauthenticated",
    "metrics_public",
    "cors_origins",
    "max_body_size",
    "log_file",
    "log_bodies",
    "workers",
    "threads",
    "ping_interval",
    "fast_paths",
    "forwarded_prefix",
}
UPSTREAM_KEYS = {
    "connect_timeout", "read_timeout", "timeout", "max_retries", "retry_base_delay", "retry_max_delay", *NETWORK_KEYS,
}  # fmt: skip
PARAMS_KEYS = {"drop", "forward_unknown", "extra"}
DIALECT_FIELDS = {f.name: f for f in fields(Dialect)}


class _Reader:
    """Typed access to one TOML table with errors that name file and key."""

    def __init__(self, where: str, table: Mapping[str, Any], prefix: str, allowed: set[str] | None) -> None:
        self.where, self.table, self.prefix = where, table, prefix
        if allowed is not None:
            for key in table:
                if key not in allowed:
                    hint = ", ".join(sorted(allowed))
                    raise ConfigError(f"{where}: unknown key '{prefix}{key}' (expected one of: {hint})")

    def _fail(self, key: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(
            f"{self.where}: '{self.prefix}{key}' must be {expected}, got {type(value).__name__} {value!r}"
        )

    def get(self, key: str, kind: type | tuple[type, ...], expected: str, default: Any = None) -> Any:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is not bool and not (isinstance(kind, tuple) and bool in kind):
            raise self._fail(key, expected, value)
        if not isinstance(value, kind):
            raise self._fail(key, expected, value)
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.get(key, (int, float), "a number", default)
        if value < minimum or (minimum == 0.0 and value <= 0 and key != "max_retries"):
            raise self._fail(key, f"a number above {minimum}", value)
        return float(value)

    def integer(self, key: str, default: int, minimum: int, maximum: int) -> int:
        value = self.get(key, int, f"an integer from {minimum} to {maximum}", default)
        if not minimum <= value <= maximum:
            raise self._fail(key, f"an integer from {minimum} to {maximum}", value)
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list, "a list of strings", None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def table_of(self, key: str) -> dict[str, Any]:
        return self.get(key, dict, "a table", {}) or {}


def _dialect(base: Dialect, quirks: Mapping[str, Any], where: str, prefix: str = "provider.") -> Dialect:
    changes: dict[str, Any] = {}
    for key, value in quirks.items():
        spec = DIALECT_FIELDS.get(key)
        if spec is None or key == "name":
            hint = ", ".join(sorted(k for k in DIALECT_FIELDS if k != "name"))
            raise ConfigError(f"{where}: unknown key '{prefix}quirks.{key}' (expected one of: {hint})")
        current = getattr(base, key)
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: '{prefix}quirks.{key}' must be true or false, got {value!r}")
        elif isinstance(current, int):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{where}: '{prefix}quirks.{key}' must be an integer, got {value!r}")
        elif isinstance(current, str):
            if not isinstance(value, str):
                raise ConfigError(f"{where}: '{prefix}quirks.{key}' must be a string, got {value!r}")
        elif isinstance(current, (tuple, frozenset)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: '{prefix}quirks.{key}' must be a list of strings, got {value!r}")
            value = frozenset(value) if isinstance(current, frozenset) else tuple(value)
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{prefix}quirks.{key}' must be a table, got {value!r}")
        changes[key] = value
    return base.with_overrides(**changes) if changes else base


def build_provider(
    table: Mapping[str, Any],
    where: str,
    env: Mapping[str, str],
    name_override: str | None = None,
    prefix: str = "provider.",
) -> ProviderConfig:
    reader = _Reader(where, table, prefix, PROVIDER_KEYS)
    name = name_override or reader.get("name", str, 'a string (a preset name or "custom")', None)
    base_url = reader.get("base_url", str, "a URL string", None)
    if not name:
        # [providers.groq] is the groq preset even when it overrides base_url (a gateway in front)
        if prefix.startswith("providers.") and preset(prefix.split(".")[1]):
            name = prefix.split(".")[1]
        elif base_url:
            name = "custom"
        else:
            names = ", ".join(PRESETS)
            raise ConfigError(f"{where}: '{prefix}name' is required (one of: {names})")
    found: Preset | None = preset(name)
    if found is None:
        if not base_url:
            names = ", ".join(PRESETS)
            raise ConfigError(f"{where}: unknown provider '{name}' and no '{prefix}base_url' (presets: {names})")
        found = PRESETS["custom"]
    if found.name == "custom" and not base_url:
        raise ConfigError(f"{where}: provider 'custom' needs '{prefix}base_url'")
    base_url = (base_url or found.base_url).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: '{prefix}base_url' must start with http:// or https://, got {base_url!r}")
    fmt = reader.get("format", str, '"openai" or "anthropic"', found.format)
    if fmt not in ("openai", "anthropic"):
        raise ConfigError(f'{where}: \'{prefix}format\' must be "openai" or "anthropic", got {fmt!r}')
    key_env = reader.get("api_key_env", str, "an environment variable name", found.api_key_env)
    api_key = reader.get("api_key", str, "a string", None) or (env.get(key_env) if key_env else None) or None
    headers = reader.table_of("headers")
    if not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}: '{prefix}headers' values must be strings")
    dialect = _dialect(found.dialect, reader.table_of("quirks"), where, prefix)
    network = _network(table, where, prefix)
    if dialect.name != found.name and found.name != "custom":
        dialect = dialect.with_overrides(name=found.name)
    return ProviderConfig(
        name=name.lower() if preset(name) else name,
        base_url=base_url,
        format=fmt,
        dialect=dialect,
        api_key=api_key,
        api_key_env=key_env,
        key_required=found.key_required,
        api_key_from_client=bool(reader.get("api_key_from_client", bool, "true or false", False)),
        headers=dict(headers),
        network=network,
    )


def _network(table: Mapping[str, Any], where: str, prefix: str) -> NetworkSettings:
    try:
        return network_settings(table, prefix)
    except NetworkError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _models(table: Mapping[str, Any], where: str, providers: Mapping[str, Any], default: str) -> ModelMap:
    chains: dict[str, Chain] = {}
    for key, value in table.items():
        try:
            chains[key] = parse_chain(value, providers, default, provider_aliases(providers, default))
        except ValueError as exc:
            raise ConfigError(f"{where}: 'models.\"{key}\"': {exc}") from None
    return ModelMap(chains, providers, default)


def _context_windows(table: Mapping[str, Any], where: str) -> dict[str, int]:
    windows: dict[str, int] = {}
    for key, value in table.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 256 <= value <= 100_000_000:
            raise ConfigError(
                f"{where}: 'context_windows.\"{key}\"' must be a number of tokens (256 to 100000000), got {value!r}"
            )
        windows[key] = value
    return windows


def _routes(table: Mapping[str, Any], where: str, providers: Mapping[str, Any], default: str) -> dict[str, Chain]:
    routes: dict[str, Chain] = {}
    for key, value in table.items():
        if key not in SCENARIOS:
            raise ConfigError(f"{where}: unknown route 'routes.{key}' (expected one of: {', '.join(SCENARIOS)})")
        try:
            routes[key] = parse_chain(value, providers, default, provider_aliases(providers, default))
        except ValueError as exc:
            raise ConfigError(f"{where}: 'routes.{key}': {exc}") from None
    return routes


def _prices(table: Mapping[str, Any], where: str, providers: Mapping[str, Any], default: str) -> Prices:
    """[prices]: "PROVIDER,MODEL", a bare model or a glob → {input, output, cache_read?, cache_write?}."""
    entries: dict[tuple[str | None, str], Price] = {}
    aliases = provider_aliases(providers, default)
    for key, value in table.items():
        owner: str | None = None
        model = key.strip()
        if "," in key:
            name, model = (part.strip() for part in key.split(",", 1))
            owner = resolve_provider(name, providers, aliases)
            if owner not in providers:
                known = ", ".join(sorted(providers))
                raise ConfigError(f"{where}: 'prices.\"{key}\"' names unknown provider {name!r} (configured: {known})")
        if not model:
            raise ConfigError(f"{where}: 'prices.\"{key}\"' has no model")
        try:
            entries[(owner, model)] = parse_price(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: 'prices.\"{key}\"': {exc}") from None
    return Prices(entries)


def _providers(
    root: _Reader, where: str, env: Mapping[str, str], cli_provider: str | None
) -> tuple[dict[str, ProviderConfig], str]:
    """[provider] (named "default") and every [providers.NAME] → (providers, default name)."""
    provider_table = root.table_of("provider")
    named = root.table_of("providers")
    routing = root.table_of("routing")
    providers: dict[str, ProviderConfig] = {}
    for name, table in named.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: 'providers.{name}' must be a table")
        if name == DEFAULT_PROVIDER and provider_table:
            raise ConfigError(f"{where}: 'providers.{name}' clashes with [provider], which is the provider called default")
        # called by its table's name in errors, headers and logs (the preset stays in its dialect)
        providers[name] = replace(build_provider(table, where, env, prefix=f"providers.{name}."), name=name)
    default = _Reader(where, routing, "routing.", None).get("default_provider", str, "a provider name", None)
    if provider_table or cli_provider or not providers:
        if not provider_table and not cli_provider:
            raise ConfigError(
                f"{where}: no provider configured: add a [provider] table or pass --provider NAME "
                f"(one of: {', '.join(PRESETS)})"
            )
        prov = build_provider(provider_table, where, env, cli_provider)
        table_name = str(provider_table.get("name") or "")
        if cli_provider and table_name and table_name.casefold() != cli_provider.casefold():
            # --provider switches presets: keep only the table's keys that are not preset-specific
            kept = {
                k: v for k, v in provider_table.items() if k in ("api_key_from_client", "headers", "quirks", *NETWORK_KEYS)
            }
            prov = build_provider(kept, where, env, cli_provider)
        providers = {DEFAULT_PROVIDER: prov, **providers}
        default = default or DEFAULT_PROVIDER
    if default is None:
        if len(providers) != 1:
            raise ConfigError(
                f"{where}: several [providers] and no [provider]: set 'routing.default_provider' to one of "
                f"{', '.join(providers)}"
            )
        default = next(iter(providers))
    default = resolve_provider(default, providers)
    if default not in providers:
        raise ConfigError(f"{where}: 'routing.default_provider' names unknown provider {default!r}")
    return providers, default


def load_config(
    path: str | None = None,
    *,
    provider: str | None = None,
    env: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
) -> Config:
    """Find, read and validate the configuration.

    `data` supplies the TOML content directly (for embedding and tests); otherwise the
    search path is used, and no file at all is fine: a `provider` preset suffices.
    """
    env = os.environ if env is None else env
    where = "<config>"
    if data is None:
        found = find_config_file(path, env)
        data = read_toml(found) if found else {}
        where = str(found) if found else "<no config file>"
    root = _Reader(where, data, "", TOP_LEVEL)
    providers, default = _providers(root, where, env, provider)

    params = _Reader(where, root.table_of("params"), "params.", PARAMS_KEYS)
    extra = params.table_of("extra")
    if extra:
        providers = {
            name: replace(p, dialect=p.dialect.with_overrides(extra_body={**p.dialect.extra_body, **extra}))
            for name, p in providers.items()
        }
    routing = _Reader(where, root.table_of("routing"), "routing.", ROUTING_KEYS)
    routing_config = RoutingConfig(
        long_context_threshold=routing.integer("long_context_threshold", RoutingConfig.long_context_threshold, 1, 10**8),
        background_models=routing.strings("background_models", RoutingConfig.background_models),
        cooldown_failures=routing.integer("cooldown_failures", RoutingConfig.cooldown_failures, 1, 1000),
        cooldown_seconds=routing.number("cooldown_seconds", RoutingConfig.cooldown_seconds),
        sticky_sessions=routing.integer("sticky_sessions", RoutingConfig.sticky_sessions, 0, 10**7),
        sticky_ttl=routing.number("sticky_ttl", RoutingConfig.sticky_ttl),
    )
    server = _Reader(where, root.table_of("server"), "server.", SERVER_KEYS)
    upstream = _Reader(where, root.table_of("upstream"), "upstream.", UPSTREAM_KEYS)
    telemetry = _Reader(where, root.table_of("telemetry"), "telemetry.", TELEMETRY_KEYS)
    shared = _network(upstream.table, where, "upstream.")
    providers = {name: replace(p, network=p.network.over(shared)) for name, p in providers.items()}

    auth_keys = list(server.strings("auth_keys"))
    auth_env = server.get("auth_keys_env", str, "an environment variable name", AUTH_KEYS_ENV)
    if env.get(auth_env):
        auth_keys += [k.strip() for k in env[auth_env].split(",") if k.strip()]

    total = upstream.number("timeout", root.number("timeout", Timeouts.total))
    web_search = None
    if "web_search" in data:
        try:
            web_search = replace(build_web_search(root.table_of("web_search"), env), network=shared)
        except WebSearchConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    max_body = server.get("max_body_size", (int, str), 'a size in bytes or a string like "32MB"', None)
    return Config(
        provider=providers[default],
        providers=providers,
        default_provider=default,
        routes=_routes(root.table_of("routes"), where, providers, default),
        routing=routing_config,
        models=_models(root.table_of("models"), where, providers, default),
        prices=_prices(root.table_of("prices"), where, providers, default),
        context_windows=_context_windows(root.table_of("context_windows"), where),
        host=root.get("host", str, "an address string", DEFAULT_HOST),
        port=root.integer("port", DEFAULT_PORT, 0, 65535),
        drop=frozenset(params.strings("drop", DEFAULT_DROP)),
        forward_unknown=params.get("forward_unknown", bool, "true or false", False),
        timeouts=Timeouts(
            connect=upstream.number("connect_timeout", Timeouts.connect),
            read=upstream.number("read_timeout", Timeouts.read),
            total=total,
            ping_interval=server.number("ping_interval", Timeouts.ping_interval),
        ),
        retry=RetryPolicy(
            max_retries=upstream.integer("max_retries", RetryPolicy.max_retries, 0, 10),
            base_delay=upstream.number("retry_base_delay", RetryPolicy.base_delay),
            max_delay=upstream.number("retry_max_delay", RetryPolicy.max_delay),
        ),
        auth_keys=tuple(auth_keys),
        allow_unauthenticated=server.get("allow_unauthenticated", bool, "true or false", False),
        metrics_public=server.get("metrics_public", bool, "true or false", False),
        cors_origins=server.strings("cors_origins"),
        forwarded_prefix=server.get("forwarded_prefix", bool, "true or false", False),
        max_body_bytes=_size(max_body, where) if max_body is not None else Config.max_body_bytes,
        log_file=server.get("log_file", str, "a file path", None),
        log_bodies=server.get("log_bodies", bool, "true or false", False),
        workers=server.integer("workers", Config.workers, 1, 64),
        threads=server.integer("threads", Config.threads, 1, 1024),
        fast_paths=server.get("fast_paths", bool, "true or false", True),
        source=None if where.startswith("<") else where,
        telemetry=TelemetrySettings(
            enabled=telemetry.get("enabled", bool, "true or false", None),
            endpoint=telemetry.get("endpoint", str, "an OTLP URL", None),
            service_name=telemetry.get("service_name", str, "a service name", None),
        ),
        teams=teams_settings(root.table_of("teams"), where, env) if "teams" in root.table else None,
        web_search=web_search,
    )


def _size(value: int | str, where: str) -> int:
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"{where}: 'server.max_body_size' must be positive, got {value}")
        return value
    text = value.strip().upper().replace(" ", "")
    for suffix, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    if text.isdigit():
        return int(text)
    raise ConfigError(f"{where}: 'server.max_body_size' must be a size like \"32MB\", got {value!r}")
