"""`TargetPolicy`: which targets of a chain may serve a request (teams: budgeted keys only on priced models)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from claude_proxy.config.loader import ConfigError, load_config
from claude_proxy.config.teams import teams_settings
from claude_proxy.pipeline.route import Attempt, PolicyRefusal, TargetPolicy
from claude_proxy.routing.targets import Target
from claude_proxy.upstream.client import Upstream

CONFIG = load_config(data={"provider": {"name": "ollama"}}, env={})
PROVIDER = CONFIG.providers[next(iter(CONFIG.providers))]
UPSTREAM = Upstream(PROVIDER, fast_paths=False)  # never called: the policy only reads the targets


def chain(*models: str) -> list[Attempt]:
    return [Attempt(Target("main", m), PROVIDER, UPSTREAM, "main", last=n == len(models) - 1)
            for n, m in enumerate(models)]


def policy(priced: set[str], told: list[int]) -> TargetPolicy:
    def refusal(targets: Sequence[tuple[str, str]]) -> str:
        return "unpriced: " + ", ".join(f"{p},{m}" for p, m in targets)

    return TargetPolicy(lambda provider, model: model in priced, refusal, lambda: told.append(1))


def test_a_chain_keeps_its_allowed_targets_in_order_and_the_last_of_them_is_last() -> None:
    told: list[int] = []
    kept = policy({"a", "c"}, told).check(chain("a", "b", "c", "d"))
    assert [(a.target.model, a.last) for a in kept] == [("a", False), ("c", True)]
    assert told == []
    whole = chain("a", "c")
    assert policy({"a", "c"}, told).check(whole) == whole  # nothing refused: the chain as it was


def test_a_chain_with_no_allowed_target_is_a_403_naming_every_target_said_once() -> None:
    told: list[int] = []
    with pytest.raises(PolicyRefusal) as refused:
        policy({"x"}, told).check(chain("a", "b"))
    assert (refused.value.status, refused.value.error_type) == (403, "permission_error")
    assert refused.value.message == "unpriced: main,a, main,b"
    assert told == [1]


def test_unpriced_is_deny_by_default_and_checked() -> None:
    assert teams_settings({}, "c.toml", {"HOME": "/h"}).unpriced == "deny"
    assert teams_settings({"unpriced": "allow"}, "c.toml", {"HOME": "/h"}).unpriced == "allow"
    with pytest.raises(ConfigError, match=r"c.toml: 'teams.unpriced' must be \"deny\""):
        teams_settings({"unpriced": "maybe"}, "c.toml", {"HOME": "/h"})
