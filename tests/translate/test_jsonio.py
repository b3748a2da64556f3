"""The pure core's JSON helper: orjson first, the standard library after, one depth rule for both."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_proxy.translate import jsonio


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = {"x": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("depth", [0, 1, 2, 254, 255, jsonio.MAX_DEPTH - 1, jsonio.MAX_DEPTH])
def test_documents_up_to_the_limit_round_trip_past_orjsons_own_254_levels(depth: int) -> None:
    value = nested(depth)
    raw = jsonio.dumps(value)
    assert json.loads(raw) == value
    assert jsonio.loads(raw) == value
    assert not jsonio.deeper_than(value, jsonio.MAX_DEPTH)


@pytest.mark.parametrize("depth", [jsonio.MAX_DEPTH + 1, 1000, 5000])
def test_deeper_documents_are_a_recursion_error_on_every_python(depth: int) -> None:
    value = nested(depth)
    assert jsonio.deeper_than(value, jsonio.MAX_DEPTH)
    with pytest.raises(RecursionError):  # ours, or the interpreter's own first (3.11)
        jsonio.dumps(value)


@pytest.mark.parametrize("depth", [1025, 5000])
def test_reading_past_orjsons_1024_levels_is_a_recursion_error_on_every_python(depth: int) -> None:
    # Reading stops where orjson stops; between MAX_DEPTH and 1024 a body is read, then refused on
    # the way out by dumps — the same 400 either way, and no depth walk on the hot path.
    text = "[" * depth + "1" + "]" * depth
    with pytest.raises(RecursionError):
        jsonio.loads(text)


def test_the_depth_walk_counts_containers_not_scalars() -> None:
    assert not jsonio.deeper_than("x" * 10_000, 0)
    assert not jsonio.deeper_than({}, 1)
    assert jsonio.deeper_than({"a": []}, 1)
    assert not jsonio.deeper_than({"a": [], "b": {"c": 1}}, 2)
    assert jsonio.deeper_than({"a": [], "b": {"c": [2]}}, 2)


def test_the_standard_library_fallback_keeps_what_orjson_refuses() -> None:
    big = {"n": 2**70, "nan": float("nan")}
    text = jsonio.dumps(big).decode()
    assert "1180591620717411303424" in text and "NaN" in text
    assert jsonio.loads('{"n": 1180591620717411303424}') == {"n": 2**70}
