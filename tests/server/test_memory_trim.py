"""`memory.Trimmer`: glibc's malloc_trim, at most once per interval."""

from __future__ import annotations

import ctypes

import pytest

from claude_proxy.server import memory
from claude_proxy.server.memory import Trimmer
from tests.support.clock import Clock


def test_trims_at_most_once_per_interval() -> None:
    clock = Clock()
    trimmer = Trimmer(interval=1.0, clock=clock)
    calls: list[int] = []
    trimmer.trim = lambda pad: calls.append(pad) or 1
    assert not trimmer.maybe()  # the interval starts at creation
    clock.now += 0.5
    assert not trimmer.maybe()
    clock.now += 0.6
    assert trimmer.maybe() and calls == [0]
    assert not trimmer.maybe()
    clock.now += 1.0
    assert trimmer.maybe() and calls == [0, 0] and trimmer.calls == 2


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_load_trim", lambda: None)
    clock = Clock()
    trimmer = Trimmer(interval=0.0, clock=clock)
    clock.now += 5
    assert not trimmer.maybe() and trimmer.calls == 0


def test_the_real_malloc_trim_is_found_and_called_on_glibc() -> None:
    try:
        ctypes.CDLL(None).malloc_trim  # noqa: B018
    except AttributeError:
        pytest.skip("not glibc")
    clock = Clock()
    trimmer = Trimmer(interval=1.0, clock=clock)
    assert trimmer.trim is not None
    clock.now += 1
    assert trimmer.maybe() and trimmer.calls == 1
