"""Which key goes upstream: the provider's own, or the client's where the provider takes it from the client.

The proxy's own door keys (`[server] auth_keys`, and stored `cpk_…` keys) are never forwarded.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from claude_proxy.config.loader import ProviderConfig
from claude_proxy.errors import MissingProviderKey
from claude_proxy.teams.keys import key_id_of
from claude_proxy.upstream.client import FORWARD_TO_ANTHROPIC, Upstream


class Credentials:
    def __init__(self, door_keys: Collection[str]) -> None:
        self.door_keys = door_keys

    def client_key(self, headers: Mapping[str, str]) -> str | None:
        """The client's own provider key (x-api-key, else Bearer); never one of the proxy's keys."""
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        for key in (headers.get("x-api-key"), bearer):
            # the proxy's own door keys (static, or stored cpk_… keys) stay here
            if key and key not in self.door_keys and key_id_of(key) is None:
                return key
        return None

    def openai_headers(self, headers: Mapping[str, str], provider: ProviderConfig, upstream: Upstream) -> dict[str, str]:
        """Auth headers for an OpenAI-format provider, or AuthenticationFailed saying which variable to set."""
        client_key = self.client_key(headers)
        if provider.key_missing or (
            provider.api_key_from_client and not provider.api_key and not client_key and provider.key_required
        ):
            raise missing_key(provider)
        return upstream.auth_headers(client_key)

    def anthropic_headers(self, headers: Mapping[str, str], request_id: str, provider: ProviderConfig) -> dict[str, str]:
        """Headers for an Anthropic-format target: its key, the client's anthropic-* headers, our request id."""
        client_key = self.client_key(headers)
        key = provider.api_key or (client_key if provider.api_key_from_client else None)
        if not key and provider.key_required and (provider.key_missing or provider.api_key_from_client):
            raise missing_key(provider)
        out = {"x-api-key": key} if key else {}
        for name in FORWARD_TO_ANTHROPIC:
            if headers.get(name):
                out[name] = headers[name]
        out.setdefault("anthropic-version", "2023-06-01")
        out["X-Request-Id"] = request_id
        return out


def missing_key(provider: ProviderConfig) -> MissingProviderKey:
    var = provider.api_key_env or "the provider's key variable"
    return MissingProviderKey(
        f"claude-proxy has no API key for provider '{provider.name}': set the environment variable "
        f"{var} (or api_key in its provider table) and restart the proxy"
    )
