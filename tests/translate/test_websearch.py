"""The pure web search wire rules: the offered function, the blocks, their stream events, domains, history."""

from __future__ import annotations

import json
from typing import Any

from claude_proxy.translate import translate_request
from claude_proxy.translate.dialect import Dialect
from claude_proxy.translate.websearch import (
    DEFAULT_MAX_USES,
    Result,
    ServerSearchTool,
    annotations_of,
    apply_native,
    block_events,
    decode_snippet,
    domain_allowed,
    drop_tool_choice_for,
    encode_snippet,
    error_block,
    find_server_tool,
    history_text,
    new_server_tool_id,
    offer_function,
    result_block,
    server_tool_use_block,
    without_function,
)

SERVER_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3,
               "allowed_domains": ["example.com"], "user_location": {"type": "approximate", "country": "GB"}}
CLIENT_TOOL = {"name": "Read", "description": "read", "input_schema": {"type": "object", "properties": {}}}


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **extra}


def tool_of(source: dict[str, Any]) -> ServerSearchTool:
    tool = find_server_tool(source)
    assert tool is not None
    return tool


def test_the_server_tool_is_found_with_its_limits() -> None:
    tool = find_server_tool(body(tools=[CLIENT_TOOL, SERVER_TOOL]))
    assert tool is not None
    assert (tool.name, tool.type, tool.max_uses) == ("web_search", "web_search_20250305", 3)
    assert tool.allowed_domains == ("example.com",) and tool.blocked_domains == ()
    assert tool.user_location == {"type": "approximate", "country": "GB"}
    assert find_server_tool(body(tools=[CLIENT_TOOL])) is None
    bare = find_server_tool(body(tools=[{"type": "web_search_20260209", "name": "web_search"}]))
    assert bare is not None and bare.max_uses == DEFAULT_MAX_USES


def test_the_model_is_offered_a_web_search_function_in_place_of_the_server_tool() -> None:
    source = body(tools=[CLIENT_TOOL, SERVER_TOOL], tool_choice={"type": "tool", "name": "web_search"})
    translated = translate_request(source)
    assert [t["function"]["name"] for t in translated.body["tools"]] == ["Read"]  # the server tool never travels
    out = offer_function(translated.body, source, tool_of(source), Dialect())
    names = [t["function"]["name"] for t in out["tools"]]
    assert names == ["Read", "web_search"]
    function = out["tools"][1]["function"]
    assert function["parameters"]["required"] == ["query"] and function["description"]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}
    assert "tools" in translated.body and len(translated.body["tools"]) == 1  # not mutated
    only = body(tools=[SERVER_TOOL], tool_choice={"type": "auto"})
    out = offer_function(translate_request(only).body, only, tool_of(only), Dialect())
    assert out["tool_choice"] == "auto" and len(out["tools"]) == 1


def test_withdrawing_the_function_leaves_the_client_tools() -> None:
    source = body(tools=[CLIENT_TOOL, SERVER_TOOL], tool_choice={"type": "any"})
    offered = offer_function(translate_request(source).body, source, tool_of(source), Dialect())
    out = without_function(offered)
    assert [t["function"]["name"] for t in out["tools"]] == ["Read"] and out["tool_choice"] == "auto"
    only = body(tools=[SERVER_TOOL], tool_choice={"type": "any"})
    out = without_function(offer_function(translate_request(only).body, only, tool_of(only), Dialect()))
    assert "tools" not in out and "tool_choice" not in out


def test_dropping_the_tool_drops_a_tool_choice_that_names_it() -> None:
    source = body(tools=[CLIENT_TOOL, SERVER_TOOL], tool_choice={"type": "tool", "name": "web_search"})
    translated = translate_request(source).body
    assert translated["tool_choice"]["function"]["name"] == "web_search"  # would name a function nobody offers
    assert "tool_choice" not in drop_tool_choice_for(translated, tool_of(source), source)


def test_blocks_and_their_stream_events_look_like_anthropics() -> None:
    tool_id = new_server_tool_id()
    assert tool_id.startswith("srvtoolu_") and len(tool_id) > 20 and tool_id != new_server_tool_id()
    use = server_tool_use_block(tool_id, "pelican facts")
    assert use == {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": "pelican facts"}}
    events = block_events(4, use)
    assert events[0] == {"type": "content_block_start", "index": 4,
                         "content_block": {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {}}}
    assert json.loads(events[1]["delta"]["partial_json"]) == {"query": "pelican facts"}
    assert events[1]["delta"]["type"] == "input_json_delta" and events[2] == {"type": "content_block_stop", "index": 4}
    result = result_block(tool_id, [Result("https://a.example/x", "A", "2 days ago", "snippet é")])
    assert result["content"][0]["page_age"] == "2 days ago"
    assert decode_snippet(result["content"][0]["encrypted_content"]) == "snippet é"
    assert block_events(5, result) == [{"type": "content_block_start", "index": 5, "content_block": result},
                                       {"type": "content_block_stop", "index": 5}]
    assert error_block(tool_id, "too_many_requests")["content"] == {
        "type": "web_search_tool_result_error", "error_code": "too_many_requests"}
    assert error_block(tool_id, "bogus")["content"]["error_code"] == "unavailable"


def test_only_our_encrypted_content_is_decoded() -> None:
    assert decode_snippet(encode_snippet("")) == ""
    assert decode_snippet("EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y") is None
    assert decode_snippet("cpxws1.!!!not base64") is None
    assert decode_snippet(None) is None


def test_domain_rules_follow_anthropics() -> None:
    assert domain_allowed("https://docs.example.com/a", ["example.com"], [])
    assert domain_allowed("https://example.com/", ["example.com"], [])
    assert not domain_allowed("https://notexample.com/", ["example.com"], [])
    assert not domain_allowed("https://api.example.com/", ["docs.example.com"], [])
    assert domain_allowed("https://example.com/blog/post", ["example.com/blog"], [])
    assert not domain_allowed("https://example.com/blogger", ["example.com/blog"], [])
    assert not domain_allowed("https://x.bad.org/p", [], ["bad.org"])
    assert domain_allowed("https://good.org/p", [], ["bad.org"])
    assert domain_allowed("https://anything.net", [], [])


def test_server_blocks_in_history_become_text_the_model_reads() -> None:
    tool_id = new_server_tool_id()
    history = body(messages=[
        {"role": "user", "content": "pelicans?"},
        {"role": "assistant", "content": [
            server_tool_use_block(tool_id, "pelican facts"),
            result_block(tool_id, [Result("https://birds.example/p", "Pelicans", "2026-01-02", "The pouch holds 11 litres.")]),
            {"type": "text", "text": "They have big pouches."},
        ]},
        {"role": "user", "content": "more"},
    ])
    messages = translate_request(history).body["messages"]
    assistant = messages[1]
    assert assistant["role"] == "assistant"
    text = assistant["content"]
    assert '[searched the web for "pelican facts"]' in text
    assert "Pelicans <https://birds.example/p>" in text and "The pouch holds 11 litres." in text
    assert "Published: 2026-01-02" in text and text.endswith("They have big pouches.")
    assert history_text(error_block(tool_id, "max_uses_exceeded")) == "[web search failed: max_uses_exceeded]"


def test_native_search_asks_openrouters_web_plugin_and_reads_its_citations() -> None:
    source = body(tools=[{**SERVER_TOOL, "blocked_domains": ["spam.example"], "allowed_domains": []}])
    tool = find_server_tool(source)
    assert tool is not None
    translated = translate_request(source).body
    assert apply_native(translated, tool, Dialect(), 5) is translated  # no native search: unchanged
    out = apply_native(translated, tool, Dialect(native_web_search="openrouter_plugin"), 4)
    assert out["plugins"] == [{"id": "web", "max_results": 4, "exclude_domains": ["spam.example"]}]
    message = {"content": "x", "annotations": [
        {"type": "url_citation", "url_citation": {"url": "https://a.example", "title": "A", "content": "aa",
                                                  "start_index": 0, "end_index": 1}},
        {"type": "file", "file": {}},
    ]}
    assert annotations_of(message) == [Result("https://a.example", "A", None, "aa")]
