"""Where one provider's connections go, and whom they trust: resolved once per `Upstream`.

The session keeps `trust_env` off: with it on, requests would also read ~/.netrc and let it replace
the provider's auth header. Instead, what the environment says about proxies and CAs is read here
through requests' public helpers (`get_environ_proxies`, `should_bypass_proxies`, which honour
HTTPS_PROXY/HTTP_PROXY/ALL_PROXY/NO_PROXY in either case, lower case first, as curl does) and
handed to every send explicitly. A provider's URL is fixed, so the answer is worked out once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from requests.utils import get_environ_proxies, should_bypass_proxies

from claude_proxy.config.loader import ConfigError, ProviderConfig
from claude_proxy.config.network import NetworkSettings, redact_url

# Where requests (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) and OpenSSL (SSL_CERT_FILE, SSL_CERT_DIR) look, in that order.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@dataclass(frozen=True)
class Egress:
    proxies: Mapping[str, str] = field(default_factory=dict, repr=False)  # {scheme: proxy URL}, {} = direct
    proxy_from: str = ""  # the setting or variable that named the proxy ("" when direct)
    verify: str | bool = True  # a CA file/dir, or True for requests' own (certifi) bundle
    verify_from: str = "the default CA bundle (certifi)"
    cert: tuple[str, str] | str | None = None
    cert_from: str = ""

    @property
    def proxy(self) -> str | None:
        return next(iter(self.proxies.values()), None)

    def describe(self) -> list[tuple[str, str]]:
        """(what, value) lines for the banner and the doctor, with credentials masked."""
        proxy = f"{redact_url(self.proxy)} (from {self.proxy_from})" if self.proxy else "none (direct)"
        lines = [("egress proxy", proxy), ("trusted CAs", f"{self.verify if self.verify is not True else 'default'} (from {self.verify_from})")]
        if self.cert:
            lines.append(("client cert", f"{self.cert[0] if isinstance(self.cert, tuple) else self.cert} (from {self.cert_from})"))
        return lines

    def tls_hint(self, untrusted: bool) -> str:
        """What a TLS failure tells the operator to change (setting names and paths, never a key)."""
        if untrusted:
            return (
                f"its certificate is not signed by a CA trusted here (CAs from {self.verify_from}): "
                "set [upstream] ca_bundle, or the provider's own ca_bundle, to the CA file that signed it"
            )
        cert = f"client certificate from {self.cert_from}" if self.cert else "no client certificate is configured"
        return (
            f"{cert}; if the host requires mutual TLS set [upstream] client_cert and client_key "
            f"(or the provider's own); CAs from {self.verify_from}"
        )


def _proxy_variable(scheme: str, value: str, env: Mapping[str, str]) -> str:
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        if env.get(name, "").strip() == value.strip():
            return name
    return f"{scheme.upper()}_PROXY"


def _proxies(url: str, settings: NetworkSettings, env: Mapping[str, str]) -> tuple[dict[str, str], str]:
    scheme = urlsplit(url).scheme
    if settings.proxy is not None:
        if not settings.proxy or should_bypass_proxies(url, no_proxy=settings.no_proxy):
            return {}, ""
        return {scheme: settings.proxy}, settings.setting("proxy")
    found = get_environ_proxies(url, no_proxy=settings.no_proxy)
    proxy = found.get(scheme) or found.get("all")
    if not proxy:
        return {}, ""
    if not proxy.startswith(("http://", "https://")):
        raise ConfigError(
            f"{_proxy_variable(scheme, proxy, env)} is {redact_url(proxy)!r}: only http:// and https:// proxies are supported"
        )
    return {scheme: proxy}, _proxy_variable(scheme, proxy, env)


def _verify(settings: NetworkSettings, env: Mapping[str, str]) -> tuple[str | bool, str]:
    if settings.ca_bundle:
        return settings.ca_bundle, settings.setting("ca_bundle")
    for name in CA_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            if not os.path.exists(value):
                raise ConfigError(f"{name} names {value}, which does not exist (set [upstream] ca_bundle or fix {name})")
            return value, name
    return True, "the default CA bundle (certifi)"


def egress_for(provider: ProviderConfig, env: Mapping[str, str] | None = None) -> Egress:
    """The proxy, CAs and client certificate for `provider` (its settings over [upstream]'s over the environment)."""
    return egress_for_url(provider.base_url, provider.network, env)


def egress_for_url(url: str, settings: NetworkSettings, env: Mapping[str, str] | None = None) -> Egress:
    """The same answer for any other service the proxy calls (a web search backend): `settings` over the environment."""
    env = os.environ if env is None else env
    proxies, proxy_from = _proxies(url, settings, env)
    verify, verify_from = _verify(settings, env)
    cert: tuple[str, str] | str | None = None
    if settings.client_cert:
        cert = (settings.client_cert, settings.client_key) if settings.client_key else settings.client_cert
    return Egress(proxies, proxy_from, verify, verify_from, cert, settings.setting("client_cert") if cert else "")
