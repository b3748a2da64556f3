"""`claude-proxy doctor`: is this setup going to work? A short PASS/WARN/FAIL report, a fix per problem.

Checks, in order: the config (found and valid, or a preset alone); each provider's API key (where it
comes from — never the key); the provider answers GET /models (how many, and whether every mapped
model is among them); and a one-token completion through the real pipeline (translation, quirks,
routing and fallbacks, exactly as Claude Code's requests go), non-streamed and streamed, timed.
Exit status 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

import orjson

from claude_proxy.cli.main import PROG, build_parser, resolve
from claude_proxy.config.loader import Config, ConfigError, ProviderConfig, RetryPolicy, Timeouts, fast_paths_enabled
from claude_proxy.errors import ProxyError, UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from claude_proxy.pipeline.journal import Journal, redact
from claude_proxy.pipeline.outcome import Outcome
from claude_proxy.routing.targets import DEFAULT_PROVIDER
from claude_proxy.upstream.client import host_of

NAME = f"{PROG} doctor"
PROBE_MODEL = "claude-sonnet-5"  # what Claude Code sends for its main model (mapped like any request)
PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    secrets: tuple[str, ...] = ()

    def add(self, status: str, name: str, detail: str, fix: str = "") -> Check:
        check = Check(status, name, redact(detail, self.secrets), redact(fix, self.secrets))
        self.checks.append(check)
        return check

    @property
    def failed(self) -> bool:
        return any(c.status == FAIL for c in self.checks)

    def render(self) -> str:
        width = max([len(c.name) for c in self.checks] + [10])
        lines = [f"{NAME}", ""]
        for c in self.checks:
            lines.append(f"{c.status}  {c.name.ljust(width)}  {c.detail}")
            if c.fix:
                lines.append(f"{'':4}  {'':{width}}  fix: {c.fix}")
        counts = {s: sum(1 for c in self.checks if c.status == s) for s in (PASS, WARN, FAIL)}
        lines += [
            "",
            f"{counts[PASS]} passed, {counts[WARN]} warning{'s' if counts[WARN] != 1 else ''}, {counts[FAIL]} failed",
        ]
        return "\n".join(lines)


class _Capture(Journal):
    """A journal that keeps the outcomes in memory: the doctor reads what the pipeline did."""

    def __init__(self) -> None:
        super().__init__(None)
        self.outcomes: list[Outcome] = []

    def write(self, record: dict[str, Any]) -> None:
        self.outcomes.append(Outcome.from_record(record))


def build_doctor_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    parser.prog = NAME
    parser.description = (
        "Check the configuration, the provider key (never printed), that the provider answers and lists the "
        "mapped models, and that a one-token completion works; print a fix for each problem."
    )
    parser.add_argument(
        "--model", default=PROBE_MODEL, help=f"client model name to try the completion with (default {PROBE_MODEL})"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the provider (default 30)")
    return parser


def _label(config: Config, key: str) -> str:
    provider = config.providers[key]
    return provider.name if key == DEFAULT_PROVIDER or key == config.default_provider else key


def _key_where(provider: ProviderConfig) -> str:
    """Where the key came from, for a fix line: the variable, or the config file."""
    if provider.api_key_env and os.environ.get(provider.api_key_env):
        return f"${provider.api_key_env}"
    return "api_key in the config" if provider.api_key else f"${provider.api_key_env or 'YOUR_KEY_VARIABLE'}"


def _preset_env(provider: ProviderConfig) -> str | None:
    from claude_proxy.config.presets import preset

    found = preset(provider.name)
    return found.api_key_env if found else None


def _set_key_fix(provider: ProviderConfig) -> str:
    if provider.api_key_env:
        return f"export {provider.api_key_env}=... (then restart the proxy)"
    return 'name the variable in the provider table (api_key_env = "MY_KEY"), export MY_KEY=... and restart'


def check_config(args: argparse.Namespace, report: Report) -> Config | None:
    try:
        config = resolve(args)
    except ConfigError as exc:
        text = str(exc)
        if "no provider configured" in text:
            fix = f"pass --provider NAME, or write a config file ({PROG} --show-config-paths lists where it is looked for)"
        elif "config file not found" in text:
            fix = f"check the path ({PROG} --show-config-paths lists where a config is looked for)"
        else:
            fix = "correct the key named above (config.example.toml documents every key)"
        report.add(FAIL, "config", text, fix)
        return None
    where = config.source or f"no config file: preset '{config.provider.name}' defaults"
    mappings = len(config.models)
    detail = f"{where}: provider {config.provider.name} ({config.provider.format}), {mappings} model mapping" + (
        "" if mappings == 1 else "s"
    )
    if len(config.providers) > 1:
        detail += f", {len(config.providers)} providers"
    report.add(PASS, "config", detail)
    return config


def check_key(config: Config, key: str, report: Report, env: Mapping[str, str]) -> bool:
    """True when requests can authenticate (so a completion is worth trying)."""
    provider = config.providers[key]
    name = "api key" if len(config.providers) == 1 else f"api key ({_label(config, key)})"
    if not provider.key_required and not provider.api_key:
        if provider.api_key_env and provider.api_key_env != _preset_env(provider):
            # the operator named a variable on purpose: requests now go without a key
            report.add(
                WARN, name, f"${provider.api_key_env} is not set: requests go without a key", _set_key_fix(provider)
            )
        else:
            report.add(PASS, name, "not needed for this provider")
        return True
    if provider.api_key:
        if provider.api_key_env and env.get(provider.api_key_env) == provider.api_key:
            report.add(PASS, name, f"set (from ${provider.api_key_env})")
        else:
            report.add(PASS, name, "set (from api_key in the config file; an environment variable is safer)")
        return True
    if provider.api_key_from_client:
        report.add(
            WARN,
            name,
            "none configured: each client's own key is sent upstream (api_key_from_client)",
            "the completion check below cannot run without a client key",
        )
        return False
    missing = f"missing: ${provider.api_key_env} is not set" if provider.api_key_env else "missing: no key configured"
    report.add(FAIL, name, missing, _set_key_fix(provider))
    return False


def _list_models(config: Config, key: str, timeout: float) -> list[str]:
    from claude_proxy.upstream.client import Upstream

    provider = config.providers[key]
    upstream = Upstream(
        provider, config.timeouts, RetryPolicy(max_retries=0), pool_size=1, fast_paths=fast_paths_enabled(config)
    )
    try:
        headers = upstream.auth_headers(None)
        path = "/models"
        if provider.format == "anthropic":
            headers["anthropic-version"] = "2023-06-01"
            path = "/v1/models"
        response = upstream.request(
            "GET", path, headers=headers, retry=False, deadline=time.monotonic() + timeout, timeout=timeout
        )
        data = orjson.loads(upstream.read(response, time.monotonic() + timeout) or b"{}")
    finally:
        upstream.close()
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list):
        items = data.get("models", []) if isinstance(data, dict) else []
    return [str(m["id"]) for m in items if isinstance(m, dict) and m.get("id")]


def _mapped_models(config: Config) -> dict[str, dict[str, list[str]]]:
    """provider key → upstream model → the client names / routes that lead to it."""
    out: dict[str, dict[str, list[str]]] = {}
    sources = [(name, chain) for name, chain in config.models.entries.items()]
    sources += [(f"route {name}", chain) for name, chain in config.routes.items()]
    for source, chain in sources:
        for target in chain:
            out.setdefault(target.provider, {}).setdefault(target.model, []).append(source)
    return out


def check_prices(config: Config, report: Report) -> None:
    """With a [prices] table, every configured upstream model should have a price: requests on
    one without are logged as unpriced (their cost unknown, not zero)."""
    if not config.prices:
        return
    missing = [
        f"{provider},{model}"
        for provider, models in _mapped_models(config).items()
        for model in models
        if config.prices.find(provider, model) is None
    ]
    if missing:
        report.add(
            WARN,
            "prices",
            f"{len(missing)} configured model{'s' if len(missing) != 1 else ''} without a price: {', '.join(missing)}",
            'add them to [prices], e.g. "PROVIDER,MODEL" = { input = 3.0, output = 15.0 } (USD per million tokens)',
        )
    else:
        report.add(PASS, "prices", "every configured model has a price")


def check_web_search(config: Config, report: Report) -> None:
    """Whether Claude Code's WebSearch can run: a [web_search] backend that answers, or native search."""
    from claude_proxy.search import WebSearch

    search = WebSearch(config.web_search, pool_size=1)
    try:
        ok, detail = search.check([p.dialect for p in config.providers.values()])
    finally:
        search.close()
    fix = "" if ok else "set [web_search] backend and url (README: Web search); or on_missing = \"drop\""
    report.add(PASS if ok else WARN, "web search", detail.removeprefix("web search: "), fix)


def _probe_upstream(config: Config, key: str, report: Report, timeout: float) -> list[str]:
    """GET /models: the listed ids ([] when it failed, reported)."""
    provider = config.providers[key]
    label = _label(config, key)
    name = "upstream" if len(config.providers) == 1 else f"upstream ({label})"
    path = "/v1/models" if provider.format == "anthropic" else "/models"
    try:
        listed = _list_models(config, key, timeout)
    except UpstreamUnavailable as exc:
        report.add(
            FAIL,
            name,
            exc.message,
            f"check base_url ({provider.base_url}) and that {host_of(provider.base_url)} is running and "
            "reachable from this machine (HTTP(S)_PROXY variables are not used)",
        )
        return []
    except UpstreamTimeout as exc:
        report.add(FAIL, name, exc.message, f"check the network path to {host_of(provider.base_url)}")
        return []
    except UpstreamHTTPError as exc:
        if exc.status in (401, 403):
            report.add(
                FAIL,
                name,
                f"GET {path} was refused (HTTP {exc.status}): {exc.message}",
                f"the provider rejected the key: check that {_key_where(provider)} holds a valid {label} key",
            )
        elif exc.status in (404, 405):
            report.add(
                WARN,
                name,
                f"{provider.base_url} has no model list (HTTP {exc.status} on GET {path})",
                "if completions work below, ignore this; otherwise check that base_url is the API root (…/v1)",
            )
        else:
            report.add(
                FAIL,
                name,
                f"GET {path} failed (HTTP {exc.status}): {exc.message}",
                "the provider is failing: try again later or check its status page",
            )
        return []
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        report.add(
            WARN,
            name,
            f"GET {path} did not answer with a JSON model list",
            "check that base_url is the provider's API root (…/v1)",
        )
        return []
    report.add(
        PASS, name, f"{provider.base_url} answered GET {path}: {len(listed)} model{'s' if len(listed) != 1 else ''}"
    )
    return listed


def check_upstream(config: Config, key: str, report: Report, timeout: float) -> None:
    check_models(config, key, _probe_upstream(config, key, report, timeout), report)


def check_models(config: Config, key: str, listed: list[str], report: Report) -> None:
    """Every mapped model among the provider's list; no mapping at all is worth a warning."""
    label = _label(config, key)
    if key == config.default_provider and not len(config.models) and not config.routes:
        example = listed[0] if listed else "<model>"
        report.add(
            WARN,
            "models",
            "no [models] mapping: Claude Code's model names (claude-sonnet-…) reach the provider unchanged",
            f'map them to the provider\'s models, e.g. [models] "claude-*" = "{example}"',
        )
    if not listed:
        return
    mapped = _mapped_models(config).get(key, {})
    missing = {model: sources for model, sources in mapped.items() if model not in listed}
    for model, sources in missing.items():
        close = difflib.get_close_matches(model, listed, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "pick one from its /models list"
        report.add(
            WARN,
            "models",
            f"'{model}' (for {', '.join(repr(s) for s in sources)}) is not in {label}'s list of {len(listed)}",
            f"check the name in [models]; {hint} (some providers serve unlisted models)",
        )
    if mapped and not missing:
        report.add(PASS, "models", f"all {len(mapped)} mapped model{'s' if len(mapped) != 1 else ''} listed by {label}")


def _completion_fix(error: ProxyError, config: Config, model: str) -> str:
    status, text = error.status, error.message
    provider = config.provider
    if status == 401 and "has no API key" in text:
        return _set_key_fix(provider)
    if status == 401:
        return f"the provider rejected the key: check that {_key_where(provider)} holds a valid key"
    if status == 402:
        return "the provider account needs credit or a payment method"
    if status == 403:
        return f"the key has no access to '{model}': pick another model in [models] or enable it for the key"
    if status == 404:
        return f"the provider does not know '{model}': map the model in [models] to one it lists"
    if status == 429:
        return "rate limited or out of quota: wait, or check the plan's limits"
    if status in (400, 422):
        return "the provider rejected the request: a quirk may need changing ([provider.quirks], see dialect.py)"
    if status == 504 or isinstance(error, UpstreamTimeout):
        return "the provider did not answer in time: check the network, or raise [upstream] timeouts"
    return "the provider is failing or unreachable: check base_url and the provider's status"


def _drain(body: Any) -> tuple[bytes, str | None]:
    """A streamed reply's bytes and the message of its error event, if it had one."""
    data = body if isinstance(body, bytes) else b"".join(body)
    for block in data.split(b"\n\n"):
        if b"event: error" in block:
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    try:
                        return data, str(orjson.loads(line[5:])["error"]["message"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        return data, "the stream ended with an error event"
    return data, None


def check_completion(config: Config, report: Report, client_model: str, timeout: float) -> None:
    from claude_proxy.pipeline.proxy import Proxy

    journal = _Capture()
    probe = replace(
        config,
        log_file=None,
        retry=RetryPolicy(max_retries=0),
        timeouts=Timeouts(
            connect=min(config.timeouts.connect, timeout), read=timeout, total=timeout, ping_interval=timeout + 1
        ),
    )
    proxy = Proxy(probe, journal=journal)
    body = {"model": client_model, "max_tokens": 1, "messages": [{"role": "user", "content": "Say OK."}]}
    try:
        timings: list[float] = []
        for stream in (False, True):
            started = time.monotonic()
            raw = orjson.dumps({**body, "stream": stream})
            try:
                reply = proxy.messages(raw, {}, Outcome(f"doctor-{int(stream)}", "messages"))
                _, stream_error = _drain(reply.body) if stream else (b"", None)
            except ProxyError as error:
                last = journal.outcomes[-1] if journal.outcomes else None
                provider = (last.provider if last else None) or config.provider.name
                where = f"{provider} {(last.upstream_model if last else None) or client_model}"
                kind = "streamed" if stream else "one-token"
                report.add(
                    FAIL,
                    "completion",
                    f"{kind} request to {where} failed (HTTP {error.status}): {error.message}",
                    _completion_fix(error, config, str(last.upstream_model if last else None)),
                )
                return
            if stream_error:
                report.add(
                    FAIL,
                    "completion",
                    f"the streamed answer broke off: {stream_error}",
                    "the provider's stream is not what the proxy expects: check [provider.quirks]",
                )
                return
            timings.append((time.monotonic() - started) * 1000)
        outcome = journal.outcomes[-1]
        for failed in outcome.failed_attempts or []:
            report.add(
                WARN,
                "fallback",
                f"{failed['provider']} {failed['model']} failed (HTTP {failed['status']}): {failed['error']}",
                "the next target of the chain answered; fix or remove the failing one",
            )
        report.add(
            PASS,
            "completion",
            f"{client_model} → {outcome.provider} {outcome.upstream_model}: "
            f"answered in {timings[0]:.0f} ms (streamed: {timings[1]:.0f} ms)",
        )
    finally:
        proxy.close()


def run(argv: Sequence[str], out: IO[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = build_doctor_parser().parse_args(list(argv))
    report = Report()
    config = check_config(args, report)
    if config is not None:
        report.secrets = tuple(
            k
            for k in (config.provider.api_key, *(p.api_key for p in config.providers.values()), *config.auth_keys)
            if k
        )
        keys_ok = True
        for key in config.providers:
            keys_ok = check_key(config, key, report, env) and keys_ok
        for key in config.providers:
            check_upstream(config, key, report, args.timeout)
        check_prices(config, report)
        if keys_ok:
            check_completion(config, report, args.model, args.timeout)
        else:
            report.add(WARN, "completion", "skipped: no usable API key", "fix the key first, then run the doctor again")
        check_web_search(config, report)
    print(report.render(), file=out, flush=True)
    return 1 if report.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdout)
