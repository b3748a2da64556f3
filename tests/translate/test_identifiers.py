"""Tool ids and tool names: exact, deterministic, reversible where promised."""

from __future__ import annotations

import pytest

from claude_proxy.translate.identifiers import (
    ALNUM9,
    ANTHROPIC_ID,
    TOOL_NAME,
    to_anthropic_id,
    to_upstream_id,
    to_upstream_tool_name,
    tool_name_map,
)

KIMI_ID = "functions.Bash:0"
KIMI_ENCODED = "toolu_cpxZnVuY3Rpb25zLkJhc2g6MA"
LONG_NAME = "mcp__some_server__" + "x" * 60  # 78 characters
LONG_NAME_UPSTREAM = "mcp__some_server__" + "x" * 37 + "_862e5532"


@pytest.mark.parametrize("upstream", ["call_abc123", "toolu_01ABC", "tk85n1k4m", "chatcmpl-tool-0f3a", "a_b-c"])
def test_valid_ids_pass_through_both_ways(upstream: str) -> None:
    assert to_anthropic_id(upstream) == upstream
    assert to_upstream_id(upstream) == upstream


def test_kimi_id_is_encoded_reversibly() -> None:
    assert to_anthropic_id(KIMI_ID) == KIMI_ENCODED
    assert ANTHROPIC_ID.fullmatch(KIMI_ENCODED)
    assert to_upstream_id(KIMI_ENCODED) == KIMI_ID


@pytest.mark.parametrize(
    "upstream",
    ["functions.get_weather:12", "call 1", "id/with/slashes", "ünïcødé", "x=y&z", "toolu_cpxAlreadyPrefixed"],
)
def test_round_trip_of_awkward_ids(upstream: str) -> None:
    encoded = to_anthropic_id(upstream)
    assert ANTHROPIC_ID.match(encoded)
    assert encoded.startswith("toolu_cpx")
    assert to_upstream_id(encoded) == upstream


def test_id_that_looks_encoded_is_itself_encoded() -> None:
    # Otherwise "toolu_cpxfoo" would be decoded on the way back and change.
    assert to_anthropic_id("toolu_cpxfoo") == "toolu_cpxdG9vbHVfY3B4Zm9v"
    assert to_upstream_id("toolu_cpxdG9vbHVfY3B4Zm9v") == "toolu_cpxfoo"


def test_empty_id_round_trips() -> None:
    assert to_anthropic_id("") == "toolu_cpx"
    assert to_upstream_id("toolu_cpx") == ""


def test_undecodable_encoded_id_is_kept() -> None:
    # "_w" decodes to one non-UTF-8 byte: not one of ours, so it goes upstream untouched.
    assert to_upstream_id("toolu_cpx_w") == "toolu_cpx_w"


def test_alnum9_style() -> None:
    assert to_upstream_id("toolu_01ABC", "alnum9") == "3DAWIQ32q"
    assert to_upstream_id("abc123XYZ", "alnum9") == "abc123XYZ"  # already valid for Mistral
    # encoded ids are decoded first, so both spellings of one call give one id
    assert to_upstream_id(KIMI_ENCODED, "alnum9") == "lkLI1OEfW"
    assert to_upstream_id(KIMI_ID, "alnum9") == "lkLI1OEfW"


def test_alnum9_is_deterministic_and_distinct() -> None:
    ids = [f"call_{n:024d}" for n in range(200)]
    mapped = [to_upstream_id(i, "alnum9") for i in ids]
    assert mapped == [to_upstream_id(i, "alnum9") for i in ids]
    assert len(set(mapped)) == len(ids)
    assert all(len(m) == 9 and m.isascii() and m.isalnum() for m in mapped)


@pytest.mark.parametrize("name", ["Bash", "mcp__github__create_issue", "a" * 64, "Tool-Name_2"])
def test_valid_tool_names_are_kept(name: str) -> None:
    assert to_upstream_tool_name(name) == name


def test_long_tool_name_is_shortened_deterministically() -> None:
    assert len(LONG_NAME) == 78
    assert to_upstream_tool_name(LONG_NAME) == LONG_NAME_UPSTREAM
    assert len(LONG_NAME_UPSTREAM) == 64
    assert to_upstream_tool_name("a" * 65) == "a" * 55 + "_635361c4"


def test_names_sharing_a_long_prefix_stay_distinct() -> None:
    a = to_upstream_tool_name("p" * 70 + "_alpha")
    b = to_upstream_tool_name("p" * 70 + "_beta")
    assert a != b
    assert len(a) == len(b) == 64


def test_invalid_characters_are_replaced_and_hashed() -> None:
    assert to_upstream_tool_name("my.tool") == "my_tool_bca2c361"
    assert to_upstream_tool_name("") == "tool_e3b0c442"


def test_custom_max_len() -> None:
    assert to_upstream_tool_name("abcdefghijklmnop", 12) == "abc_f39dac6c"
    # Never longer than asked, even when the hash suffix alone does not fit.
    assert to_upstream_tool_name("abcdefghij", 8) == "72399361"


def test_tool_name_map_lists_only_changed_names() -> None:
    assert tool_name_map(["Bash", LONG_NAME, "my.tool"]) == {
        LONG_NAME_UPSTREAM: LONG_NAME,
        "my_tool_bca2c361": "my.tool",
    }
    assert tool_name_map(["Bash", "Read"]) == {}


@pytest.mark.parametrize("name", ["Bash\n", "Bash\r\n", "\nBash"])
def test_a_line_break_is_never_part_of_a_kept_name(name: str) -> None:
    assert TOOL_NAME.fullmatch(to_upstream_tool_name(name))
    assert ANTHROPIC_ID.fullmatch(to_anthropic_id(name))
    assert to_upstream_id(to_anthropic_id(name)) == name  # still reversible
    assert ALNUM9.fullmatch(to_upstream_id("abcdefghi\n", style="alnum9"))
