"""One switch for all the speed code on library internals: `CLAUDE_PROXY_FAST_PATHS` over
`[server] fast_paths`, read through `fast_paths_enabled`, which the upstream and server/ share."""

from __future__ import annotations

import pytest

from claude_proxy.config.loader import ConfigError, ProviderConfig, fast_paths_enabled, load_config
from claude_proxy.translate.dialect import Dialect
from claude_proxy.upstream.client import Upstream

PROVIDER = {"provider": {"name": "custom", "base_url": "http://127.0.0.1:9/v1"}}


def config(**server: object) -> object:
    return load_config(data={**PROVIDER, "server": server}, env={})


def test_on_by_default() -> None:
    assert fast_paths_enabled(config(), env={}) is True
    assert fast_paths_enabled(None, env={}) is True


def test_the_config_key_turns_it_off() -> None:
    assert fast_paths_enabled(config(fast_paths=False), env={}) is False


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("false", False), (" OFF ", False), ("no", False)])
def test_the_environment_turns_it_off_over_the_config(value: str, expected: bool) -> None:
    assert fast_paths_enabled(config(fast_paths=True), env={"CLAUDE_PROXY_FAST_PATHS": value}) is expected


@pytest.mark.parametrize("value", ["1", "true", "on", "yes"])
def test_the_environment_turns_it_on_over_the_config(value: str) -> None:
    assert fast_paths_enabled(config(fast_paths=False), env={"CLAUDE_PROXY_FAST_PATHS": value}) is True


def test_an_unreadable_environment_value_leaves_the_config_in_charge() -> None:
    assert fast_paths_enabled(config(fast_paths=False), env={"CLAUDE_PROXY_FAST_PATHS": "maybe"}) is False
    assert fast_paths_enabled(config(), env={"CLAUDE_PROXY_FAST_PATHS": ""}) is True


def test_a_wrong_type_in_the_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"server\.fast_paths"):
        config(fast_paths="no")


def test_the_upstream_follows_the_environment_when_not_told(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = ProviderConfig(name="custom", base_url="http://127.0.0.1:9/v1", format="openai", dialect=Dialect())
    monkeypatch.setenv("CLAUDE_PROXY_FAST_PATHS", "0")
    assert Upstream(provider).fast is None
    monkeypatch.setenv("CLAUDE_PROXY_FAST_PATHS", "1")
    assert Upstream(provider).fast is not None
    assert Upstream(provider, fast_paths=False).fast is None  # an explicit choice wins


def test_the_config_switch_reaches_every_upstream_of_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_proxy.pipeline.proxy import Proxy

    monkeypatch.delenv("CLAUDE_PROXY_FAST_PATHS", raising=False)
    data = {
        "provider": {"name": "custom", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test-000000000000"},
        "providers": {"second": {"base_url": "http://127.0.0.1:9/v1", "api_key": "sk-test-000000000001"}},
    }
    for on in (True, False):
        proxy = Proxy(load_config(data={**data, "server": {"fast_paths": on}}, env={}))
        try:
            assert {bool(u.fast) for u in proxy.upstreams.values()} == {on}
        finally:
            proxy.close()
