"""How the proxy reaches its upstreams on a company network: egress proxy, trusted CAs, client certificate.

The `[upstream]` table sets them for every provider; a provider's own table (`[provider]`,
`[providers.NAME]`) overrides them for that provider. What is not set in any table comes from the
environment every HTTP client reads (`HTTPS_PROXY`, `NO_PROXY`, `REQUESTS_CA_BUNDLE`,
`SSL_CERT_FILE`, ...), resolved in `upstream/egress.py`. A proxy URL may carry credentials: it is
printed only through `redact_url`, and its password joins the redaction list (`url_secrets`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

NETWORK_KEYS = {"proxy", "no_proxy", "ca_bundle", "client_cert", "client_key"}


class NetworkError(ValueError):
    """A network setting that cannot work (the loader adds the file name)."""


@dataclass(frozen=True)
class NetworkSettings:
    """One table's network keys; None = not set there (the next level decides).

    `proxy = ""` means "no proxy for this one, whatever HTTPS_PROXY says". `sources` names the table
    each set key came from ("upstream", "providers.groq"), so an error can say what to change.
    """

    proxy: str | None = field(default=None, repr=False)  # may hold user:password@
    no_proxy: str | None = None
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def over(self, base: NetworkSettings) -> NetworkSettings:
        """These settings where set, `base`'s elsewhere."""
        values: dict[str, Any] = {}
        sources = dict(base.sources)
        for f in fields(self):
            if f.name == "sources":
                continue
            mine = getattr(self, f.name)
            values[f.name] = mine if mine is not None else getattr(base, f.name)
            if mine is not None:
                sources[f.name] = self.sources.get(f.name, "")
        return NetworkSettings(**values, sources=sources)

    def setting(self, key: str) -> str:
        """How an operator names the key that set this value: `[upstream] ca_bundle`."""
        return f"[{self.sources.get(key) or 'upstream'}] {key}"


def redact_url(url: str) -> str:
    """A URL fit to print: any user:password@ (or token@) masked as ***@."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The credentials a URL embeds, as they may appear in text (raw and percent-decoded)."""
    if not url:
        return ()
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return ()
    userinfo = parts.netloc.rsplit("@", 1)[0]
    found = {userinfo, unquote(userinfo)}
    if ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found |= {password, unquote(password)}
    return tuple(s for s in found if len(s) >= 4)


def _path(value: Any, key: str, prefix: str) -> str:
    if not isinstance(value, str) or not value:
        raise NetworkError(f"'{prefix}{key}' must be a file path, got {value!r}")
    path = os.path.expanduser(value)
    if not os.path.exists(path):
        raise NetworkError(f"'{prefix}{key}' names {path}, which does not exist")
    return path


def network_settings(table: Mapping[str, Any], prefix: str) -> NetworkSettings:
    """The network keys of one table (`prefix` is "upstream." or "providers.groq."), checked."""
    values: dict[str, Any] = {}
    source = prefix.rstrip(".")
    if "proxy" in table:
        proxy = table["proxy"]
        if not isinstance(proxy, str):
            raise NetworkError(f"'{prefix}proxy' must be a URL string, got {type(proxy).__name__}")
        proxy = proxy.strip()
        if proxy and not proxy.startswith(("http://", "https://")):
            raise NetworkError(
                f"'{prefix}proxy' must start with http:// or https:// (or be \"\" for no proxy), "
                f"got {redact_url(proxy)!r}"
            )
        if proxy and not urlsplit(proxy).hostname:
            raise NetworkError(f"'{prefix}proxy' has no host: {redact_url(proxy)!r}")
        values["proxy"] = proxy
    if "no_proxy" in table:
        no_proxy = table["no_proxy"]
        if isinstance(no_proxy, list) and all(isinstance(v, str) for v in no_proxy):
            no_proxy = ",".join(v.strip() for v in no_proxy)
        if not isinstance(no_proxy, str):
            raise NetworkError(f"'{prefix}no_proxy' must be a string or a list of host names, got {no_proxy!r}")
        values["no_proxy"] = no_proxy
    for key in ("ca_bundle", "client_cert", "client_key"):
        if key in table:
            values[key] = _path(table[key], key, prefix)
    if "client_key" in values and "client_cert" not in values:
        raise NetworkError(f"'{prefix}client_key' needs '{prefix}client_cert' beside it")
    return NetworkSettings(**values, sources={k: source for k in values})


def proxy_summary(settings: NetworkSettings, env: Mapping[str, str]) -> str:
    """The banner's egress line: which proxy, named by the setting or variable it came from, masked.
    (The exact per-host answer, NO_PROXY included, is `upstream/egress.py`'s; the master never loads requests.)"""
    if settings.proxy is not None:
        return f"{redact_url(settings.proxy)} ({settings.setting('proxy')})" if settings.proxy else "direct (proxy = \"\")"
    for scheme in ("https", "all"):  # the lower-case variable wins, even empty (as urllib reads them)
        name = f"{scheme}_proxy" if f"{scheme}_proxy" in env else f"{scheme.upper()}_PROXY"
        value = env.get(name, "").strip()
        if value:
            return f"{redact_url(value)} (from {name}; NO_PROXY honoured)"
    return "direct"
