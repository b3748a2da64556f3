"""The three backends against a real local search service: request shapes, results, cuts, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from claude_proxy.config.websearch import WebSearchConfig
from claude_proxy.search import Backend, Result, SearchError, WebSearch, build_backend
from claude_proxy.translate.dialect import Dialect
from tests.support.search_backends import BRAVE_KEY, TAVILY_KEY, Doc, SearchService

DOCS = [
    Doc("https://birds.example/pelican", "Pelican facts", "The brown pelican's pouch holds 11 litres of water.",
        "2026-03-01T00:00:00"),
    Doc("https://docs.birds.example/pelican-diet", "What pelicans eat", "Pelicans eat fish, mostly menhaden.", None),
    Doc("https://spam.example/pelican", "PELICAN DEALS", "Buy pelican merchandise now " * 50, None),
    Doc("https://other.example/gull", "Gull facts", "Gulls are not pelicans, but both are seabirds.", None),
]
KINDS = ("searxng", "brave", "tavily")


@pytest.fixture
def service() -> Iterator[SearchService]:
    with SearchService(DOCS) as svc:
        yield svc


def backend(service: SearchService, kind: str, **changes: object) -> Backend:
    key = {"brave": BRAVE_KEY, "tavily": TAVILY_KEY}.get(kind)
    env = {"brave": "BRAVE_API_KEY", "tavily": "TAVILY_API_KEY"}.get(kind)
    config = WebSearchConfig(backend=kind, url=service.url, url_explicit=True, api_key=key, api_key_env=env)
    if changes:
        config = WebSearchConfig(**{**config.__dict__, **changes})
    built = build_backend(config)
    assert built is not None
    return built


@pytest.mark.parametrize("kind", KINDS)
def test_each_backend_finds_what_the_service_holds(service: SearchService, kind: str) -> None:
    results = backend(service, kind).search("pelican pouch litres")
    assert results[0] == Result(
        "https://birds.example/pelican", "Pelican facts", DOCS[0].published,
        "The brown pelican's pouch holds 11 litres of water.",
    )
    assert service.recorded[-1].kind == kind and service.recorded[-1].query.startswith("pelican pouch litres")
    assert len(results) <= 5


def test_each_backend_speaks_its_own_protocol(service: SearchService) -> None:
    backend(service, "searxng").search("pelican")
    backend(service, "brave").search("pelican")
    backend(service, "tavily").search("pelican", max_results=2)
    searx, brave, tavily = service.recorded
    assert searx.params["format"] == "json" and searx.params["q"] == "pelican"
    assert brave.headers["x-subscription-token"] == BRAVE_KEY and int(brave.params["count"]) <= 20
    assert tavily.headers["authorization"] == f"Bearer {TAVILY_KEY}" and tavily.params["max_results"] == 2
    assert "x-subscription-token" not in searx.headers and "authorization" not in searx.headers


@pytest.mark.parametrize("kind", KINDS)
def test_results_are_cut_to_the_configured_size(service: SearchService, kind: str) -> None:
    results = backend(service, kind, max_result_chars=200, max_results=3).search("pelican")
    assert len(results) == 3
    assert sum(len(r.snippet) for r in results) <= 200
    assert any(r.snippet.endswith("…") for r in results)  # the long one was cut, not dropped


@pytest.mark.parametrize("kind", KINDS)
def test_domain_filters_hold_whatever_the_backend_does(service: SearchService, kind: str) -> None:
    b = backend(service, kind)
    allowed = b.search("pelican", allowed_domains=["birds.example"])
    assert {r.url for r in allowed} == {"https://birds.example/pelican", "https://docs.birds.example/pelican-diet"}
    blocked = b.search("pelican", blocked_domains=["spam.example"])
    assert blocked and all("spam.example" not in r.url for r in blocked)
    sub = b.search("pelican", allowed_domains=["docs.birds.example"])
    assert [r.url for r in sub] == ["https://docs.birds.example/pelican-diet"]


def test_domain_rules_reach_the_backends_that_take_them(service: SearchService) -> None:
    backend(service, "tavily").search("pelican", allowed_domains=["birds.example"], blocked_domains=[])
    backend(service, "brave").search("pelican", blocked_domains=["spam.example"])
    assert service.recorded[0].params["include_domains"] == ["birds.example"]
    assert "-site:spam.example" in service.recorded[1].query


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("status", "code"), [(429, "too_many_requests"), (503, "unavailable"), (500, "unavailable")])
def test_http_failures_become_anthropic_error_codes(service: SearchService, kind: str, status: int, code: str) -> None:
    service.fail_next(status)
    with pytest.raises(SearchError) as caught:
        backend(service, kind).search("pelican")
    assert caught.value.code == code


def test_tavily_plan_limits_are_rate_limits(service: SearchService) -> None:
    service.fail_next(432)
    with pytest.raises(SearchError) as caught:
        backend(service, "tavily").search("pelican")
    assert caught.value.code == "too_many_requests"


@pytest.mark.parametrize("kind", ["brave", "tavily"])
def test_a_wrong_key_is_unavailable_and_never_shown(service: SearchService, kind: str) -> None:
    secret = "sk-very-secret-search-key"
    with pytest.raises(SearchError) as caught:
        backend(service, kind, api_key=secret).search("pelican")
    assert caught.value.code == "unavailable" and secret not in str(caught.value) and "401" in caught.value.message


@pytest.mark.parametrize("kind", ["brave", "tavily"])
def test_no_key_is_unavailable_without_a_request(service: SearchService, kind: str) -> None:
    with pytest.raises(SearchError, match=r"set (BRAVE|TAVILY)_API_KEY") as caught:
        backend(service, kind, api_key=None).search("pelican")
    assert caught.value.code == "unavailable" and service.recorded == []


def test_a_query_too_long_is_refused_before_asking(service: SearchService) -> None:
    with pytest.raises(SearchError) as caught:
        backend(service, "brave").search("pelican " * 60)
    assert caught.value.code == "query_too_long" and service.recorded == []


def test_a_slow_service_times_out_as_unavailable(service: SearchService) -> None:
    service.hang(2.0)
    started = time.monotonic()
    with pytest.raises(SearchError) as caught:
        backend(service, "searxng", timeout=0.3).search("pelican")
    assert caught.value.code == "unavailable" and time.monotonic() - started < 1.8


def test_an_unreachable_service_is_unavailable(service: SearchService) -> None:
    url = service.url
    service.__exit__(None, None, None)
    config = WebSearchConfig(backend="searxng", url=url, url_explicit=True, timeout=2.0)
    built = build_backend(config)
    assert built is not None
    with pytest.raises(SearchError) as caught:
        built.search("pelican")
    assert caught.value.code == "unavailable" and url not in caught.value.message


def test_a_default_endpoint_on_a_private_address_is_refused(service: SearchService) -> None:
    # the same loopback URL, but as if it came from a default rather than from the config file
    b = backend(service, "brave", url_explicit=False)
    with pytest.raises(SearchError, match="private address") as caught:
        b.search("pelican")
    assert caught.value.code == "unavailable" and service.recorded == []
    assert backend(service, "brave").search("pelican")  # configured explicitly: used


def test_doctor_check_says_whether_search_works(service: SearchService) -> None:
    config = WebSearchConfig(backend="searxng", url=service.url, url_explicit=True)
    ok, line = WebSearch(config).check([Dialect()])
    assert ok and "searxng at 127.0.0.1" in line and "answered" in line
    service.fail_next(503)
    ok, line = WebSearch(config).check([Dialect()])
    assert not ok and "unavailable" in line
    ok, line = WebSearch(None).check([Dialect(name="openrouter", native_web_search="openrouter_plugin")])
    assert ok and "native search of openrouter" in line
    ok, line = WebSearch(None).check([Dialect(name="deepseek")])
    assert not ok and "[web_search]" in line
