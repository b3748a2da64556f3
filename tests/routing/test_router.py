"""Routing without sockets: which route and chain `Router.plan` picks for Claude Code's real request
bodies, the cool-down of `ProviderHealth` on an injected clock, and config errors that name table and key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.config.loader import Config, ConfigError, load_config
from claude_proxy.routing.router import REQUEST_CLASSES, SCENARIOS, Plan, ProviderHealth, Router, RoutingConfig
from claude_proxy.routing.targets import Target, client_target, parse_chain, parse_target
from claude_proxy.translate.tokens import estimate_input_tokens
from tests.support.clock import Clock
from tests.support.fixtures import CLAUDE_CODE_FIXTURES

ALL_FIXTURES = sorted(CLAUDE_CODE_FIXTURES.glob("*.json"))


def _is_main_loop(path: Path) -> bool:
    """Claude Code's main agent loop: thinking on, no image, no server tool (not a title or WebSearch side request)."""
    body = json.loads(path.read_text())
    body = body.get("body", body)
    text = json.dumps(body.get("messages", []))
    return (
        (body.get("thinking") or {}).get("type") == "adaptive"
        and '"type": "image"' not in text
        and '"type": "document"' not in text
        and not any(str(t.get("type", "")).startswith("web_search") for t in body.get("tools") or [])
        and "server_tool_use" not in text
    )


FIXTURES = [path for path in ALL_FIXTURES if _is_main_loop(path)]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
HAIKU = "claude-haiku-4-5-20251001"  # Claude Code's small/fast model (titles, summaries, quota probes)

# Every route configured, each on a different provider or model, so a plan says which one fired.
ROUTED: dict[str, Any] = {
    "provider": {"name": "deepseek", "api_key": "sk-deepseek-secret-000"},
    "providers": {
        "groq": {"api_key": "gsk_groqsecret0000"},
        "openrouter": {"api_key": "sk-or-routersecret000"},
        "anth": {"format": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "sk-ant-secret00000"},
    },
    "models": {
        "claude-opus-*": ["deepseek-reasoner", "openrouter,deepseek/deepseek-r1"],
        "claude-sonnet-*": "deepseek-chat",
        "*haiku*": "groq,llama-3.1-8b-instant",
    },
    "routes": {
        "long_context": "openrouter,google/gemini-2.5-pro",
        "image": "anth,claude-sonnet-4-5",
        "background": ["groq,llama-3.1-8b-instant", "deepseek-chat"],
        "think": ["deepseek-reasoner", "openrouter,deepseek/deepseek-r1"],
    },
    "routing": {"long_context_threshold": 60_000},
}


def _config(data: dict[str, Any], **routing: Any) -> Config:
    data = copy.deepcopy(data)
    data.setdefault("routing", {}).update(routing)
    return load_config(data=data, env={})


def _router(config: Config) -> Router:
    return Router(config.models, config.routes, config.providers, config.default_provider, config.routing)


def _fixture(path: Path) -> dict[str, Any]:
    body = json.loads(path.read_text())
    return body.get("body", body) if isinstance(body, dict) else body


def _with_image(body: dict[str, Any], in_tool_result: bool = False) -> dict[str, Any]:
    body = copy.deepcopy(body)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    if in_tool_result:
        body["messages"] += [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [image]}]},
        ]
    else:
        body["messages"] += [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}]
    return body


def _plain(model: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}], **extra}


T = Target


def test_the_fixtures_are_claude_codes_main_loop_requests() -> None:
    """What the expectations below rest on: opus, adaptive thinking, ~22k tokens, no image."""
    assert len(FIXTURES) >= 3
    assert {p.name for p in FIXTURES} >= {
        "cc-2.1.197-tool-turn-1.json",
        "cc-2.1.332-tool-turn-1.json",
        "cc-2.1.332-thinking-tool-turn-2.json",
    }
    for path in FIXTURES:
        body = _fixture(path)
        assert body["model"].startswith("claude-opus-")
        assert body["thinking"]["type"] == "adaptive"
        assert 5_000 < estimate_input_tokens(body) < 60_000  # 2.1.332 defers most tool schemas: 7-14k


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixtures_choose_each_scenario(path: Path) -> None:
    router = _router(_config(ROUTED))
    body = _fixture(path)
    think = (T("default", "deepseek-reasoner"), T("openrouter", "deepseek/deepseek-r1"))

    # As sent: Claude Code's main loop thinks (adaptive) → think.
    plan = router.plan(body)
    assert (plan.route, plan.chain) == ("think", think)

    # The same request with a pasted screenshot → image (image beats background and think).
    for image_body in (_with_image(body), _with_image(body, in_tool_result=True)):
        plan = router.plan(image_body)
        assert (plan.route, plan.chain) == ("image", (T("anth", "claude-sonnet-4-5"),))

    # Claude Code's small/fast model → background, even though the body says thinking.
    plan = router.plan({**body, "model": HAIKU})
    assert (plan.route, plan.chain) == (
        "background",
        (T("groq", "llama-3.1-8b-instant"), T("default", "deepseek-chat")),
    )

    # Thinking switched off → no scenario; the [models] chain for opus.
    for thinking in ({"type": "disabled"}, None):
        plain = {k: v for k, v in body.items() if k != "thinking"}
        if thinking:
            plain["thinking"] = thinking
        plan = router.plan(plain)
        assert (plan.route, plan.chain) == ("models", think)

    # Over the long-context threshold → long_context, which beats image and background too.
    long_router = _router(_config(ROUTED, long_context_threshold=estimate_input_tokens(body) - 1))
    for variant in (body, _with_image(body), {**body, "model": HAIKU}):
        plan = long_router.plan(variant)
        assert (plan.route, plan.chain) == ("long_context", (T("openrouter", "google/gemini-2.5-pro"),))

    # A client that names "PROVIDER,MODEL" gets exactly that, whatever else the request is.
    for variant in (body, _with_image(body)):
        plan = long_router.plan({**variant, "model": "groq,qwen/qwen3-32b"})
        assert (plan.route, plan.chain) == ("client", (T("groq", "qwen/qwen3-32b"),))


# -- routes by what Claude Code says a request is (its headers) -------------------------------------------------

CLASS_ROUTED: dict[str, Any] = {
    **ROUTED,
    "routes": {
        **ROUTED["routes"],
        "subagent": "groq,qwen/qwen3-32b",
        "auxiliary": ["groq,llama-3.1-8b-instant", "deepseek-chat"],
        "compaction": "openrouter,google/gemini-2.5-flash",
    },
}


class CaseInsensitive(dict[str, str]):
    """Request headers as the web edge hands them over (werkzeug's are case-insensitive)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


def _captured(name: str) -> tuple[dict[str, Any], CaseInsensitive]:
    """A captured Claude Code request: its body and the headers it was sent with."""
    captured = json.loads((CLAUDE_CODE_FIXTURES.parent / "claude-code-headers.json").read_text())["fixtures"][name]
    return _fixture(CLAUDE_CODE_FIXTURES / name), CaseInsensitive({k.lower(): v for k, v in captured["headers"]})


@pytest.mark.parametrize(
    ("name", "route"),
    [
        ("cc-2.1.332-subagent-request.json", "subagent"),  # x-claude-code-agent-id, no hint headers
        ("cc-2.1.332-interactive-compact.json", "compaction"),  # x-claude-code-request-class: compaction
        ("cc-2.1.332-gateway-hint-headers.json", "think"),  # request class "main": the usual rules
        ("cc-2.1.332-interactive-post-compact.json", "think"),
        ("cc-2.1.332-tool-turn-1.json", "think"),  # no hint headers at all
    ],
)
def test_claude_codes_own_headers_choose_the_route(name: str, route: str) -> None:
    router = _router(_config(CLASS_ROUTED))
    body, headers = _captured(name)
    plan = router.plan(body, headers)
    assert plan.route == route
    assert plan.chain == _config(CLASS_ROUTED).routes.get(route, plan.chain)
    assert router.plan(body).route == "think"  # the same body without its headers: Claude Code's main loop


def test_request_class_header_values_and_precedence() -> None:
    router = _router(_config(CLASS_ROUTED))
    body = _plain("claude-opus-5-5", thinking={"type": "adaptive"})
    plan = router.plan(body, CaseInsensitive({"x-claude-code-request-class": "auxiliary"}))
    assert (plan.route, plan.chain) == ("auxiliary", (T("groq", "llama-3.1-8b-instant"), T("default", "deepseek-chat")))
    assert router.plan(body, CaseInsensitive({"x-claude-code-request-class": "Subagent"})).route == "subagent"
    # the class header beats the agent id (a subagent's own compaction is a compaction)
    both = CaseInsensitive({"x-claude-code-request-class": "compaction", "x-claude-code-agent-id": "a1"})
    assert router.plan(body, both).route == "compaction"
    # main, unknown classes and an empty agent id fall through to the usual rules
    for headers in (
        {"x-claude-code-request-class": "main"},
        {"x-claude-code-request-class": "side_reply"},
        {"x-claude-code-agent-id": ""},
        {},
    ):
        assert router.plan(body, CaseInsensitive(headers)).route == "think"
    # what a request needs beats what it is: an image or a long context keeps its capable route
    image = _with_image(body)
    assert router.plan(image, CaseInsensitive({"x-claude-code-agent-id": "a1"})).route == "image"
    long_body = _plain("claude-opus-5-5", "word " * 400)
    long_router = _router(_config(CLASS_ROUTED, long_context_threshold=estimate_input_tokens(long_body) - 1))
    compaction = CaseInsensitive({"x-claude-code-request-class": "compaction"})
    assert long_router.plan(long_body, compaction).route == "long_context"
    # what it is beats what it looks like: a haiku-named subagent request is a subagent request
    haiku = CaseInsensitive({"x-claude-code-agent-id": "a1"})
    assert router.plan({**body, "model": HAIKU}, haiku).route == "subagent"
    # the client naming PROVIDER,MODEL still wins over everything
    assert router.plan({**body, "model": "groq,x"}, haiku).route == "client"
    # a class with no route configured is skipped
    assert _router(_config(ROUTED)).plan(body, haiku).route == "think"


def test_long_context_is_strictly_above_the_threshold() -> None:
    body = _plain("claude-sonnet-4-5", "word " * 3000)
    tokens = estimate_input_tokens(body)
    assert _router(_config(ROUTED, long_context_threshold=tokens)).plan(body).route == "models"
    assert _router(_config(ROUTED, long_context_threshold=tokens - 1)).plan(body).route == "long_context"


def test_a_long_request_over_the_default_threshold() -> None:
    config = _config({k: v for k, v in ROUTED.items() if k != "routing"})
    assert config.routing.long_context_threshold == 60_000
    body = _plain("claude-sonnet-4-5", "lorem ipsum dolor sit amet " * 20_000)
    assert estimate_input_tokens(body) > 60_000
    assert _router(config).plan(body).route == "long_context"
    assert _router(config).plan(_plain("claude-sonnet-4-5")).route == "models"


def test_thinking_enabled_and_adaptive_both_think() -> None:
    router = _router(_config(ROUTED))
    for thinking in ({"type": "enabled", "budget_tokens": 2048}, {"type": "adaptive"}):
        assert router.plan(_plain("claude-sonnet-4-5", thinking=thinking)).route == "think"
    assert router.plan(_plain("claude-sonnet-4-5", thinking={"type": "disabled"})).route == "models"


def test_background_globs_are_configurable() -> None:
    router = _router(_config(ROUTED, background_models=["claude-3-5-haiku*", "*-mini"]))
    assert router.plan(_plain("claude-3-5-haiku-20241022")).route == "background"
    assert router.plan(_plain("gpt-4o-mini")).route == "background"
    # "*haiku*" is no longer a background pattern: the [models] entry serves it
    plan = router.plan(_plain(HAIKU))
    assert (plan.route, plan.chain) == ("models", (T("groq", "llama-3.1-8b-instant"),))


def test_unconfigured_routes_are_skipped() -> None:
    only_think = {**ROUTED, "routes": {"think": "openrouter,deepseek/deepseek-r1"}}
    router = _router(_config(only_think, long_context_threshold=10))
    body = _with_image(_fixture(FIXTURES[0]))
    body["model"] = HAIKU
    # long, image, haiku and thinking: only think is configured, so think it is
    assert router.plan(body).route == "think"
    body.pop("thinking")
    plan = router.plan(body)
    assert (plan.route, plan.chain) == ("models", (T("groq", "llama-3.1-8b-instant"),))


def test_unmatched_names_pass_through_to_the_default_provider() -> None:
    no_models = {k: v for k, v in ROUTED.items() if k != "models"}
    router = _router(_config(no_models))
    plan = router.plan(_plain("claude-sonnet-4-5"))
    assert (plan.route, plan.chain) == ("default", (T("default", "claude-sonnet-4-5"),))
    # a comma name whose first part is no provider is just a model name
    plan = router.plan(_plain("nobody,some-model"))
    assert (plan.route, plan.chain) == ("default", (T("default", "nobody,some-model"),))


def test_default_provider_can_be_a_named_provider() -> None:
    data = {k: v for k, v in ROUTED.items() if k not in ("provider", "models", "routes")}
    config = _config(data, default_provider="groq")
    assert config.default_provider == "groq"
    assert config.provider is config.providers["groq"]
    plan = _router(config).plan(_plain("llama-3.3-70b-versatile"))
    assert (plan.route, plan.chain) == ("default", (T("groq", "llama-3.3-70b-versatile"),))


def test_client_target_and_parse() -> None:
    providers = {"default", "groq"}
    assert client_target("groq,moonshotai/kimi-k2:free", providers) == T("groq", "moonshotai/kimi-k2:free")
    assert client_target(" groq , m ", providers) == T("groq", "m")
    assert client_target("groq,", providers) is None
    assert client_target("other,m", providers) is None
    assert client_target("claude-opus-4-8", providers) is None
    assert parse_target("deepseek-chat", providers) == T("default", "deepseek-chat")
    assert parse_target("openrouter/x:y", providers) == T("default", "openrouter/x:y")
    assert parse_chain(["a", "groq,b"], providers) == (T("default", "a"), T("groq", "b"))
    assert str(T("groq", "b")) == "groq,b"


# -- ProviderHealth: cool-down on an injected clock --------------------------------------------------------------------


def test_cooldown_after_consecutive_failures_and_recovery() -> None:
    clock = Clock()
    health = ProviderHealth(RoutingConfig(cooldown_failures=2, cooldown_seconds=30.0), clock=clock)
    chain = (T("a", "m1"), T("b", "m2"))
    assert health.order(chain) == list(chain)
    assert health.state("a") == {"state": "up", "consecutive_failures": 0}

    health.failure("a")
    assert health.order(chain) == list(chain)  # one failure is not a pattern
    assert health.state("a") == {"state": "up", "consecutive_failures": 1}
    health.failure("a")
    assert health.cooling("a") and not health.cooling("b")
    assert health.order(chain) == [T("b", "m2")]
    assert health.state("a") == {"state": "cooling_down", "consecutive_failures": 2, "cooldown_remaining_s": 30.0}

    clock.now += 29.9
    assert health.order(chain) == [T("b", "m2")]
    clock.now += 0.1
    assert not health.cooling("a")
    assert health.order(chain) == list(chain)  # tried again: the cool-down is over
    assert health.state("a")["state"] == "up"

    # Still failing after the cool-down: the count went on, so one more failure cools it again.
    health.failure("a")
    assert health.state("a")["state"] == "cooling_down"
    clock.now += 30.0
    health.success("a")
    assert health.state("a") == {"state": "up", "consecutive_failures": 0}
    health.failure("a")
    assert health.state("a") == {"state": "up", "consecutive_failures": 1}


def test_a_success_between_failures_resets_the_count() -> None:
    health = ProviderHealth(RoutingConfig(cooldown_failures=2), clock=Clock())
    health.failure("a")
    health.success("a")
    health.failure("a")
    assert not health.cooling("a")


def test_when_every_provider_cools_all_are_tried_anyway() -> None:
    health = ProviderHealth(RoutingConfig(cooldown_failures=1, cooldown_seconds=60.0), clock=Clock())
    chain = (T("a", "m1"), T("b", "m2"))
    health.failure("a")
    health.failure("b")
    assert health.order(chain) == list(chain)
    assert health.order((T("a", "m1"),)) == [T("a", "m1")]


# -- configuration --------------------------------------------------------------------------------------------------


def test_config_builds_providers_routes_and_chains() -> None:
    config = _config(ROUTED, cooldown_failures=5, cooldown_seconds=12.5, background_models=["*haiku*", "*mini*"])
    assert list(config.providers) == ["default", "groq", "openrouter", "anth"]
    assert config.default_provider == "default"
    assert config.provider is config.providers["default"]
    assert config.provider.name == "deepseek"
    groq, router, anth = config.providers["groq"], config.providers["openrouter"], config.providers["anth"]
    # a [providers.NAME] table whose NAME is a preset is that preset
    assert (groq.name, groq.base_url, groq.dialect.name) == ("groq", "https://api.groq.com/openai/v1", "groq")
    assert (router.name, router.base_url) == ("openrouter", "https://openrouter.ai/api/v1")
    assert (anth.name, anth.format, anth.base_url) == ("anth", "anthropic", "http://127.0.0.1:9")
    assert anth.dialect.name == "custom"
    assert config.routes == {
        "long_context": (T("openrouter", "google/gemini-2.5-pro"),),
        "image": (T("anth", "claude-sonnet-4-5"),),
        "background": (T("groq", "llama-3.1-8b-instant"), T("default", "deepseek-chat")),
        "think": (T("default", "deepseek-reasoner"), T("openrouter", "deepseek/deepseek-r1")),
    }
    assert set(config.routes) == set(SCENARIOS) - set(REQUEST_CLASSES.values())
    assert set(_config(CLASS_ROUTED).routes) == set(SCENARIOS)  # the header routes load like the others
    assert config.models.chain("claude-opus-4-8") == (
        T("default", "deepseek-reasoner"),
        T("openrouter", "deepseek/deepseek-r1"),
    )
    assert config.models.resolve("claude-opus-4-8") == "deepseek-reasoner"
    assert config.routing == RoutingConfig(
        long_context_threshold=60_000,
        background_models=("*haiku*", "*mini*"),
        cooldown_failures=5,
        cooldown_seconds=12.5,
    )


def test_a_preset_named_provider_table_keeps_its_preset_with_a_base_url_override() -> None:
    config = load_config(
        data={"providers": {"groq": {"base_url": "https://gateway.example/groq/v1", "api_key": "gsk_x0000000"}}},
        env={},
    )
    groq = config.providers["groq"]
    assert config.default_provider == "groq"
    assert (groq.name, groq.base_url, groq.dialect.name) == ("groq", "https://gateway.example/groq/v1", "groq")


def test_provider_keys_come_from_each_providers_variable() -> None:
    data = copy.deepcopy(ROUTED)
    data["providers"]["groq"] = {}
    config = load_config(data=data, env={"GROQ_API_KEY": "gsk_fromenv000"})
    assert config.providers["groq"].api_key == "gsk_fromenv000"
    assert config.providers["groq"].api_key_env == "GROQ_API_KEY"


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(data=data, env={})
    return str(info.value)


BASE = {"provider": {"name": "deepseek", "api_key": "k"}, "providers": {"groq": {"api_key": "g"}}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # a target naming an unknown provider, in [models] and in [routes]
        (
            {"models": {"claude-*": ["deepseek-chat", "nope,x"]}},
            "<config>: 'models.\"claude-*\"': target 'nope,x' names unknown provider 'nope' "
            "(configured: default, groq)",
        ),
        (
            {"routes": {"think": "nope,x"}},
            "<config>: 'routes.think': target 'nope,x' names unknown provider 'nope' (configured: default, groq)",
        ),
        # an empty chain
        (
            {"routes": {"background": []}},
            "<config>: 'routes.background': a fallback chain must list at least one target",
        ),
        (
            {"models": {"claude-*": []}},
            "<config>: 'models.\"claude-*\"': a fallback chain must list at least one target",
        ),
        ({"routes": {"think": ""}}, "<config>: 'routes.think': a target must not be empty"),
        ({"routes": {"think": "groq,"}}, "<config>: 'routes.think': target 'groq,' has no model after the comma"),
        ({"routes": {"think": 3}}, "<config>: 'routes.think': expected a target string or a list of targets, got int"),
        (
            {"routes": {"think": ["a", 3]}},
            "<config>: 'routes.think': a fallback chain must be a list of target strings",
        ),
        # a route that isn't one of the scenarios
        (
            {"routes": {"coding": "deepseek-chat"}},
            "<config>: unknown route 'routes.coding' (expected one of: long_context, image, compaction, subagent, auxiliary, background, think)",
        ),
        # [routing]
        (
            {"routing": {"threshold": 5}},
            "<config>: unknown key 'routing.threshold' (expected one of: background_models, cooldown_failures, "
            "cooldown_seconds, default_provider, long_context_threshold, sticky_sessions, sticky_ttl)",
        ),
        (
            {"routing": {"default_provider": "nope"}},
            "<config>: 'routing.default_provider' names unknown provider 'nope'",
        ),
        (
            {"routing": {"default_provider": 5}},
            "<config>: 'routing.default_provider' must be a provider name, got int 5",
        ),
        (
            {"routing": {"long_context_threshold": "big"}},
            "<config>: 'routing.long_context_threshold' must be an integer from 1 to 100000000, got str 'big'",
        ),
        (
            {"routing": {"background_models": "*haiku*"}},
            "<config>: 'routing.background_models' must be a list of strings, got str '*haiku*'",
        ),
        (
            {"routing": {"cooldown_failures": 0}},
            "<config>: 'routing.cooldown_failures' must be an integer from 1 to 1000, got int 0",
        ),
        (
            {"routing": {"cooldown_seconds": -1}},
            "<config>: 'routing.cooldown_seconds' must be a number above 0.0, got int -1",
        ),
        # [providers.NAME]
        ({"providers": {"groq": "gsk"}}, "<config>: 'providers.groq' must be a table"),
        (
            {"providers": {"default": {"name": "groq"}}},
            "<config>: 'providers.default' clashes with [provider], which is the provider called default",
        ),
        ({"providers": {"mine": {"api_key": "x"}}}, "<config>: 'providers.mine.name' is required (one of: "),
        ({"providers": {"groq": {"model": "x"}}}, "<config>: unknown key 'providers.groq.model' (expected one of: "),
        (
            {"providers": {"mine": {"name": "custom"}}},
            "<config>: provider 'custom' needs 'providers.mine.base_url'",
        ),
        (
            {"providers": {"groq": {"format": "gemini"}}},
            "<config>: 'providers.groq.format' must be \"openai\" or \"anthropic\", got 'gemini'",
        ),
        (
            {"providers": {"groq": {"quirks": {"think_tag": True}}}},
            "<config>: unknown key 'providers.groq.quirks.think_tag' (expected one of: ",
        ),
        (
            {"providers": {"groq": {"quirks": {"think_tags": "yes"}}}},
            "<config>: 'providers.groq.quirks.think_tags' must be true or false, got 'yes'",
        ),
    ],
)
def test_config_errors_name_table_and_key(extra: dict[str, Any], message: str) -> None:
    data = copy.deepcopy(BASE)
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if key == "providers" else value
    assert _error(data).startswith(message)


def test_several_providers_need_a_default() -> None:
    data = {"providers": {"groq": {"api_key": "g"}, "openrouter": {"api_key": "o"}}}
    assert _error(data) == (
        "<config>: several [providers] and no [provider]: set 'routing.default_provider' to one of groq, openrouter"
    )
    config = load_config(data={**data, "routing": {"default_provider": "openrouter"}}, env={})
    assert config.default_provider == "openrouter"
    # a single [providers.NAME] is the default by itself
    assert load_config(data={"providers": {"groq": {"api_key": "g"}}}, env={}).default_provider == "groq"


def test_a_seed_config_is_one_provider_called_default() -> None:
    config = load_config(data={"provider": {"name": "deepseek", "api_key": "k"}, "models": {"*": "x"}}, env={})
    assert list(config.providers) == ["default"]
    assert config.routes == {}
    assert config.models.chain("claude-opus-4-8") == (T("default", "x"),)
    assert config.routing == RoutingConfig()


def test_the_readme_routing_example_loads_and_routes_as_described() -> None:
    from claude_proxy.config.loader import tomllib  # tomli below Python 3.11

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Routing: several providers", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config(data=tomllib.loads(block), env={})
    assert list(config.providers) == ["default", "groq", "openrouter", "gemini"]
    assert [p.name for p in config.providers.values()] == ["deepseek", "groq", "openrouter", "gemini"]
    assert set(config.routes) == {"background", "long_context", "image"}
    router = _router(config)
    main_loop = _fixture(FIXTURES[0])
    plan = router.plan(main_loop)  # no think route: [models] decides the main loop
    assert (plan.route, plan.chain) == (
        "models",
        (T("default", "deepseek-reasoner"), T("openrouter", "deepseek/deepseek-r1")),
    )
    plan = router.plan({**main_loop, "model": HAIKU})
    assert (plan.route, plan.chain[0]) == ("background", T("groq", "llama-3.1-8b-instant"))
    assert router.plan(_plain("claude-sonnet-4-5", "word " * 70_000)).chain[0] == T("gemini", "gemini-2.5-pro")
    assert router.plan(_with_image(main_loop)).chain == (T("openrouter", "qwen/qwen2.5-vl-72b-instruct"),)
    assert router.plan(_plain("openrouter,moonshotai/kimi-k2")).route == "client"


def test_the_example_config_routing_block_loads_when_uncommented() -> None:
    from claude_proxy.config.loader import tomllib  # tomli below Python 3.11

    text = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    head, block = text.split("# -- Several providers at once", 1)
    lines = [line[2:] for line in block.splitlines()[4:] if line.startswith("# ") and not line.startswith("# -")]
    data = tomllib.loads(head + "\n" + "\n".join(line for line in lines if not line.startswith(" ")))
    config = load_config(data=data, env={})
    assert list(config.providers) == ["default", "groq", "deepseek", "claude"]
    assert config.providers["claude"].format == "anthropic"
    assert config.routes["image"] == (T("claude", "claude-sonnet-4-5"),)
    assert config.routes["think"] == (T("deepseek", "deepseek-reasoner"), T("default", "deepseek/deepseek-r1"))
    assert config.routing == RoutingConfig()


def test_the_default_provider_answers_to_its_preset_name_too() -> None:
    config = load_config(
        data={
            "provider": {"name": "deepseek", "api_key": "k"},
            "providers": {"groq": {"api_key": "g"}},
            "models": {"*opus*": ["deepseek,deepseek-reasoner", "groq,llama"]},
        },
        env={},
    )
    assert config.models.chain("claude-opus-4-8") == (Target("default", "deepseek-reasoner"), Target("groq", "llama"))
    router = Router(config.models, config.routes, config.providers, config.default_provider, config.routing)
    plan = router.plan({"model": "deepseek,deepseek-chat", "max_tokens": 1, "messages": []})
    assert plan == Plan("client", (Target("default", "deepseek-chat"),))


def test_no_alias_when_a_named_provider_has_the_presets_name() -> None:
    config = load_config(
        data={
            "provider": {"name": "groq", "api_key": "k"},
            "providers": {"groq": {"api_key": "g"}},
            "models": {"x": "groq,m"},
        },
        env={},
    )
    assert config.models.chain("x") == (Target("groq", "m"),)
