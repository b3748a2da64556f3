"""One target of a fallback chain as the pipeline serves it, and which failures move a chain on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


@dataclass(frozen=True)
class TargetPolicy:
    """Which targets of a chain may serve this request (teams: a key with a budget only on priced models).
    Targets it refuses are left out of the chain; when none is left the request is refused with 403
    before any upstream call."""

    allows: Callable[[str, str], bool]  # (provider as labelled, upstream model) → may serve
    refusal: Callable[[Sequence[tuple[str, str]]], str]  # the refused (provider, model) pairs → the message
    refused: Callable[[], None] = lambda: None  # told once per refused request (metrics)

    def check(self, attempts: Sequence[Attempt]) -> list[Attempt]:
        """The attempts it allows, the last of them marked last; PolicyRefusal if none."""
        allowed = [a for a in attempts if self.allows(a.label, a.target.model)]
        if not allowed:
            self.refused()
            raise PolicyRefusal(self.refusal([(a.label, a.target.model) for a in attempts]))
        if len(allowed) == len(attempts):
            return list(attempts)
        return [Attempt(a.target, a.provider, a.upstream, a.label, last=n == len(allowed) - 1)
                for n, a in enumerate(allowed)]


class PolicyRefusal(ProxyError):
    status, error_type = 403, "permission_error"


def falls_back(error: ProxyError) -> bool:
    """Failures that move a chain to its next target: the provider, not the request, is at fault."""
    if isinstance(error, (UpstreamUnavailable, UpstreamTimeout)):
        return True
    return isinstance(error, UpstreamHTTPError) and (error.status == 429 or error.status >= 500)
