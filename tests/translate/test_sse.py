"""SSE parsing and formatting, byte-exact, at every chunk boundary."""

from __future__ import annotations

import json

import pytest

from claude_proxy.translate.sse import SSEError, SSEEvent, SSEParser, format_event, format_events, loads

# Every framing feature in one stream: comments, "data:" without a space, CRLF, lone CR,
# multi-line data, event/id lines, unknown fields, an id that persists, a field with no colon.
STREAM = (
    b": OPENROUTER PROCESSING\n"
    b"\n"
    b'data: {"a":1}\n'
    b"\n"
    b'data:{"b":2}\r\n'
    b"\r\n"
    b"data: line1\r"
    b"data: line2\r"
    b"\r"
    b"event: custom\n"
    b"id: 42\n"
    b"retry: 1000\n"
    b"data:  two spaces\n"
    b"\n"
    b": keep-alive\r\n"
    b"data: after id\n"
    b"\n"
    b"data\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent('{"a":1}'),
    SSEEvent('{"b":2}'),
    SSEEvent("line1\nline2"),
    SSEEvent(" two spaces", "custom", "42"),
    SSEEvent("after id", "message", "42"),
    SSEEvent("", "message", "42"),
    SSEEvent("[DONE]", "message", "42"),
]


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[SSEEvent]:
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events + parser.close()


def test_whole_stream() -> None:
    assert feed_all(SSEParser(), [STREAM]) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert feed_all(SSEParser(), [STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_every_split_point() -> None:
    for cut in range(len(STREAM) + 1):
        assert feed_all(SSEParser(), [STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_every_pair_of_split_points() -> None:
    n = len(STREAM)
    for a in range(0, n + 1, 3):
        for b in range(a, n + 1, 5):
            assert feed_all(SSEParser(), [STREAM[:a], STREAM[a:b], STREAM[b:]]) == EXPECTED, (a, b)


def test_empty_chunks_between_cr_and_lf() -> None:
    # A CRLF split by an empty read must stay one line end, not become a blank line.
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("a\nb")]


def test_empty_chunks_everywhere() -> None:
    chunks: list[bytes] = []
    for i in range(len(STREAM)):
        chunks += [b"", STREAM[i : i + 1]]
    assert feed_all(SSEParser(), chunks) == EXPECTED


def test_events_are_returned_as_soon_as_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\n") == []
    assert parser.feed(b"\n") == [SSEEvent("x")]
    assert parser.feed(b"data: y\n\ndata: z") == [SSEEvent("y")]
    assert parser.close() == [SSEEvent("z")]


def test_close_dispatches_a_final_event_without_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"last":true}\n') == []
    assert parser.close() == [SSEEvent('{"last":true}')]


def test_close_dispatches_an_unterminated_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: e\ndata: par") == []
    assert parser.close() == [SSEEvent("par", "e")]


def test_close_with_nothing_pending() -> None:
    parser = SSEParser()
    assert parser.close() == []
    assert parser.feed(b": only a comment\n\n") == []
    assert parser.close() == []


def test_event_name_resets_after_dispatch() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: one\ndata: a\n\ndata: b\n\n") == [SSEEvent("a", "one"), SSEEvent("b")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b"\n\n\r\n\r\revent: lonely\n\n") == []
    assert parser.feed(b"data: x\n\n") == [SSEEvent("x")]


def test_utf8_split_inside_a_character() -> None:
    raw = 'data: héllo ✓\n\n'.encode()
    for cut in range(len(raw) + 1):
        assert feed_all(SSEParser(), [raw[:cut], raw[cut:]]) == [SSEEvent("héllo ✓")]


def test_size_limit_on_one_data_line() -> None:
    parser = SSEParser(max_event_bytes=10)
    assert parser.feed(b"data: 0123456789\n\n") == [SSEEvent("0123456789")]
    with pytest.raises(SSEError, match="exceeded 10 bytes"):
        parser.feed(b"data: 0123456789a\n")


def test_size_limit_across_data_lines() -> None:
    parser = SSEParser(max_event_bytes=10)
    assert parser.feed(b"data: 12345\n") == []
    with pytest.raises(SSEError):
        parser.feed(b"data: 678901\n")


def test_size_limit_on_an_unterminated_line() -> None:
    parser = SSEParser(max_event_bytes=10)
    with pytest.raises(SSEError):
        for _ in range(20):
            parser.feed(b"xx")


def test_size_counts_per_event() -> None:
    parser = SSEParser(max_event_bytes=10)
    events = []
    for _ in range(50):
        events += parser.feed(b"data: 012345678\n\n")
    assert events == [SSEEvent("012345678")] * 50


def test_format_event_exact_bytes() -> None:
    assert format_event({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 'héllo ✓ "q"\n'}}
    assert format_event(delta) == (
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"h\xc3\xa9llo '
        b'\xe2\x9c\x93 \\"q\\"\\n"}}\n\n'
    )


def test_format_events_concatenates() -> None:
    events = [{"type": "message_stop"}, {"type": "error", "error": {"type": "api_error", "message": "x"}}]
    assert format_events(events) == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"x"}}\n\n'
    )
    assert format_events([]) == b""


def test_format_then_parse_round_trip() -> None:
    events = [{"type": "ping"}, {"type": "content_block_stop", "index": 3}]
    parsed = feed_all(SSEParser(), [format_events(events)])
    assert parsed == [
        SSEEvent('{"type":"ping"}', "ping"),
        SSEEvent('{"type":"content_block_stop","index":3}', "content_block_stop"),
    ]


# -- the JSON in a data line ------------------------------------------------------------------

CHUNK_PAYLOADS = [
    '{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}',
    '{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\": 1}"}}]}}]}',
    '{"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15},"choices":[]}',
    '{"a":1,"a":2}',  # the last of a duplicated key wins, in both
    '{"x":"\\ud83d\\ude00 \\u00e9 \\u0000"}',
    '{"score": -0.0, "big": 1e400, "small": 5e-324}',
    '{"nan": NaN, "inf": [Infinity, -Infinity]}',  # refused by orjson: read by json
    '"\\ud800 lone surrogate"',  # refused by orjson: read by json
    '  [1, 2.5e-3, true, false, null]  ',
]


@pytest.mark.parametrize("payload", CHUNK_PAYLOADS)
def test_payloads_read_as_pythons_json_reads_them(payload: str) -> None:
    ours, theirs = loads(payload), json.loads(payload)
    assert repr(ours) == repr(theirs)  # repr: NaN compares unequal to itself, and -0.0 == 0.0
    assert repr(loads(payload.encode("utf-8", "surrogatepass"))) == repr(theirs)  # bytes as well as text


@pytest.mark.parametrize("payload", ['{"a":', "[DONE", '{"a":1}}', "", "{'a': 1}"])
def test_malformed_payloads_raise_value_error(payload: str) -> None:
    with pytest.raises(ValueError):
        loads(payload)
