"""Cache-sticky routing: within a chain, a session goes back to the target that served it last
while that target's provider is healthy; bounded, expiring, per chain, thread-safe."""

from __future__ import annotations

import threading

from claude_proxy.config.loader import load_config
from claude_proxy.routing.router import ProviderHealth, RoutingConfig
from claude_proxy.routing.sticky import StickyMap, sticky_first
from claude_proxy.routing.targets import Target

A, B, C = Target("a", "m1"), Target("b", "m2"), Target("c", "m3")
CHAIN = (A, B, C)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def health(sticky_sessions: int = 10_000, sticky_ttl: float = 3600.0) -> tuple[ProviderHealth, Clock]:
    clock = Clock()
    config = RoutingConfig(
        cooldown_failures=1, cooldown_seconds=30.0, sticky_sessions=sticky_sessions, sticky_ttl=sticky_ttl
    )
    return ProviderHealth(config, clock=clock), clock


def test_without_a_session_or_a_record_the_chain_order_stands() -> None:
    h, _ = health()
    assert h.order(CHAIN) == [A, B, C]
    assert h.order(CHAIN, session="s1") == [A, B, C]
    h.served(CHAIN, None, B)  # no session: nothing remembered
    assert len(h.sticky) == 0


def test_the_target_that_served_the_session_comes_first_while_healthy() -> None:
    h, clock = health()
    h.failure("a")  # a fails: the request falls over to b, which answers
    h.served(CHAIN, "s1", B)
    clock.now += 31  # a has cooled down and is healthy again…
    assert not h.cooling("a")
    assert h.order(CHAIN, session="s1") == [B, A, C]  # …but s1's cache is warm on b
    assert h.order(CHAIN, session="s2") == [A, B, C]  # another session is not affected
    assert h.order(CHAIN) == [A, B, C]


def test_a_cooling_sticky_target_is_skipped_and_the_next_one_takes_over() -> None:
    h, _ = health()
    h.served(CHAIN, "s1", B)
    h.failure("b")
    assert h.order(CHAIN, session="s1") == [A, C]
    h.served(CHAIN, "s1", A)
    h.success("b")
    assert h.order(CHAIN, session="s1") == [A, B, C]


def test_all_cooling_tries_the_whole_chain_in_order() -> None:
    h, _ = health()
    h.served(CHAIN, "s1", C)
    for provider in ("a", "b", "c"):
        h.failure(provider)
    assert h.order(CHAIN, session="s1") == [A, B, C]


def test_stickiness_is_per_chain() -> None:
    h, _ = health()
    background = (Target("c", "small"), Target("a", "small"))
    h.served(CHAIN, "s1", C)
    h.served(background, "s1", Target("a", "small"))  # the session's haiku-class side requests
    assert h.order(CHAIN, session="s1") == [C, A, B]
    assert h.order(background, session="s1") == [Target("a", "small"), Target("c", "small")]
    h.served((A,), "s1", A)  # a one-target chain has nothing to reorder: not remembered
    assert len(h.sticky) == 2


def test_entries_expire_after_the_ttl() -> None:
    h, clock = health(sticky_ttl=600.0)
    h.served(CHAIN, "s1", B)
    clock.now += 599
    assert h.order(CHAIN, session="s1")[0] == B
    clock.now += 599  # a read refreshes recency, not age: recorded 1198 s ago
    assert h.order(CHAIN, session="s1")[0] == A
    assert len(h.sticky) == 0


def test_least_recently_used_sessions_are_forgotten_first() -> None:
    sticky = StickyMap(max_sessions=2, ttl=3600, clock=Clock())
    sticky.record("s1", CHAIN, B)
    sticky.record("s2", CHAIN, C)
    assert sticky.get("s1", CHAIN) == B  # s1 used: s2 is now the oldest
    sticky.record("s3", CHAIN, A)
    assert len(sticky) == 2
    assert sticky.get("s2", CHAIN) is None
    assert sticky.get("s1", CHAIN) == B and sticky.get("s3", CHAIN) == A
    sticky.forget("s1", CHAIN)
    assert sticky.get("s1", CHAIN) is None


def test_zero_sessions_turns_stickiness_off() -> None:
    h, _ = health(sticky_sessions=0)
    h.served(CHAIN, "s1", C)
    assert h.order(CHAIN, session="s1") == [A, B, C]


def test_sticky_first_leaves_unknown_or_excluded_targets_out() -> None:
    assert sticky_first([A, B], Target("z", "m")) == [A, B]
    assert sticky_first([A, C], B) == [A, C]
    assert sticky_first([A, B], A) == [A, B]
    assert sticky_first([A, B, C], C) == [C, A, B]
    assert sticky_first([], None) == []


def test_threads_recording_at_once_stay_within_the_bound() -> None:
    sticky = StickyMap(max_sessions=100, ttl=3600)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(500):
                session = f"s{n}-{i}"
                sticky.record(session, CHAIN, B)
                sticky.get(session, CHAIN)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(sticky) == 100


def test_config_sets_the_bound_and_the_ttl() -> None:
    config = load_config(
        data={"provider": {"name": "openai"}, "routing": {"sticky_sessions": 50, "sticky_ttl": 120}}, env={}
    )
    assert config.routing.sticky_sessions == 50 and config.routing.sticky_ttl == 120.0
    assert ProviderHealth(config.routing).sticky.max_sessions == 50
