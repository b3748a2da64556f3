"""A search backend is reached the way providers are: through the company's egress proxy (from
[upstream] or HTTPS_PROXY/HTTP_PROXY/NO_PROXY), trusting the configured CAs — a real tinyproxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from claude_proxy.config.loader import load_config
from claude_proxy.config.network import NetworkSettings
from claude_proxy.config.websearch import WebSearchConfig
from claude_proxy.search import Backend, SearchError, build_backend
from tests.config.test_web_search_config import BASE
from tests.support.forward_proxy import Tinyproxy, require_tinyproxy
from tests.support.search_backends import BRAVE_KEY, Doc, SearchService

DOCS = [Doc("https://birds.example/pelican", "Pelican facts", "The brown pelican's pouch holds 11 litres.", None)]
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy", "no_proxy")


@pytest.fixture(scope="module")
def tinyproxy() -> Iterator[Tinyproxy]:
    require_tinyproxy()
    with Tinyproxy() as proxy:
        yield proxy


@pytest.fixture
def service() -> Iterator[SearchService]:
    with SearchService(DOCS) as svc:
        yield svc


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def searxng(service: SearchService, **changes: object) -> Backend:
    config = WebSearchConfig(**{**WebSearchConfig(backend="searxng", url=service.url, url_explicit=True).__dict__, **changes})
    built = build_backend(config)
    assert built is not None
    return built


def test_the_upstream_proxy_setting_carries_the_searches(service: SearchService, tinyproxy: Tinyproxy) -> None:
    before = len(tinyproxy.requests(service.port))
    found = searxng(service, network=NetworkSettings(proxy=tinyproxy.url)).search("pelican pouch")
    assert [r.url for r in found] == ["https://birds.example/pelican"]
    assert len(tinyproxy.requests(service.port)) == before + 1


def test_http_proxy_from_the_environment_carries_the_searches(
    service: SearchService, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", tinyproxy.url)
    before = len(tinyproxy.requests(service.port))
    assert searxng(service).search("pelican")
    assert len(tinyproxy.requests(service.port)) == before + 1


def test_no_proxy_and_an_empty_proxy_setting_go_direct(
    service: SearchService, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    before = len(tinyproxy.requests(service.port))
    assert searxng(service, network=NetworkSettings(no_proxy="127.0.0.1")).search("pelican")
    assert searxng(service, network=NetworkSettings(proxy="")).search("pelican")
    assert len(tinyproxy.requests(service.port)) == before
    assert len(service.recorded) == 2


def test_behind_a_proxy_the_proxy_resolves_a_default_endpoints_name(service: SearchService, tinyproxy: Tinyproxy) -> None:
    # Direct, a default endpoint on a loopback address is refused (tests/search/test_backends.py); behind
    # an egress proxy this host may not resolve public names at all, so the proxy's answer counts.
    config = WebSearchConfig(backend="brave", url=service.url, url_explicit=False, api_key=BRAVE_KEY,
                             api_key_env="BRAVE_API_KEY", network=NetworkSettings(proxy=tinyproxy.url))
    built = build_backend(config)
    assert built is not None
    assert built.search("pelican")
    direct = build_backend(WebSearchConfig(**{**config.__dict__, "network": NetworkSettings()}))
    assert direct is not None
    with pytest.raises(SearchError, match="private address"):
        direct.search("pelican")


def test_a_proxy_that_is_down_is_an_unavailable_search_not_a_failed_request(service: SearchService) -> None:
    with Tinyproxy() as gone:
        url = gone.url
    with pytest.raises(SearchError) as caught:
        searxng(service, network=NetworkSettings(proxy=url)).search("pelican")
    assert caught.value.code == "unavailable"
    assert service.recorded == []


def test_the_loader_gives_web_search_the_upstream_network_settings() -> None:
    config = load_config(
        data={
            **BASE,
            "upstream": {"proxy": "http://user:pw@proxy.corp.example:3128", "no_proxy": "search.corp.example"},
            "web_search": {"backend": "searxng", "url": "http://search.corp.example:8080"},
        },
        env={},
    )
    assert config.web_search is not None
    assert config.web_search.network.proxy == "http://user:pw@proxy.corp.example:3128"
    assert config.web_search.network.no_proxy == "search.corp.example"
    assert "pw" not in repr(config.web_search)
