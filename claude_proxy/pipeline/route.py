"""One target of a fallback chain as the pipeline serves it, and which failures move a chain on."""

from __future__ import annotations

from dataclasses import dataclass

from claude_proxy.config.loader import ProviderConfig
from claude_proxy.errors import ProxyError, UpstreamHTTPError, UpstreamTimeout, UpstreamUnavailable
from claude_proxy.routing.targets import Target
from claude_proxy.upstream.client import Upstream


@dataclass(frozen=True)
class Attempt:
    """One target of a chain, with the provider and the connection pool that serve it."""

    target: Target
    provider: ProviderConfig
    upstream: Upstream
    label: str  # the provider's name in headers, logs and metrics
    last: bool  # the chain's last target: retries (and Retry-After) apply only here


def falls_back(error: ProxyError) -> bool:
    """Failures that move a chain to its next target: the provider, not the request, is at fault."""
    if isinstance(error, (UpstreamUnavailable, UpstreamTimeout)):
        return True
    return isinstance(error, UpstreamHTTPError) and (error.status == 429 or error.status >= 500)
