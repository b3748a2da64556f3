"""The pure body decoders: every way the bytes can be split on the wire gives the same payload."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claude_proxy.upstream.fastpath.framing import (
    MAX_LINE,
    ChunkedDecoder,
    FramingError,
    LengthDecoder,
    UntilCloseDecoder,
    decoder_for,
)


def chunked(*parts: bytes, ext: bytes = b"", trailer: bytes = b"", eol: bytes = b"\r\n") -> bytes:
    body = b"".join(b"%x%s%s%s%s" % (len(p), ext, eol, p, eol) for p in parts)
    return body + b"0" + ext + eol + trailer + eol


BODIES = {
    "one chunk": (chunked(b'data: {"a":1}\n\n'), b'data: {"a":1}\n\n'),
    "several chunks": (chunked(b"data: x\n\n", b"data: yy\n\n", b"data: [DONE]\n\n"), b"data: x\n\ndata: yy\n\ndata: [DONE]\n\n"),
    "extensions": (chunked(b"hello", b" world", ext=b";name=value"), b"hello world"),
    "trailers": (chunked(b"abc", trailer=b"X-Trailer: 1\r\nX-Other: two\r\n"), b"abc"),
    "bare LF": (chunked(b"abc", b"def", eol=b"\n"), b"abcdef"),
    "upper-case hex, 4 KB": (b"1000\r\n" + b"z" * 4096 + b"\r\n0\r\n\r\n", b"z" * 4096),
    "padded size": (b"3 \r\nabc\r\n0\r\n\r\n", b"abc"),
    "CR and LF inside data": (chunked(b"a\r\nb\n\r", b"\r\n"), b"a\r\nb\n\r\r\n"),
    "empty body": (b"0\r\n\r\n", b""),
}


def feed_all(decoder: ChunkedDecoder, pieces: list[bytes]) -> tuple[bytes, list[bool]]:
    out, done_after = b"", []
    for piece in pieces:
        out += decoder.feed(piece)
        done_after.append(decoder.done)
    return out, done_after


@pytest.mark.parametrize("name", BODIES)
def test_every_two_way_split_decodes_the_same(name: str) -> None:
    wire, payload = BODIES[name]
    for cut in range(len(wire) + 1):
        decoder = ChunkedDecoder()
        out, done_after = feed_all(decoder, [wire[:cut], wire[cut:]])
        assert out == payload, cut
        assert done_after[-1] and not decoder.overrun
        assert done_after[0] == (cut == len(wire)), cut  # done only once the last byte is in


@pytest.mark.parametrize("name", BODIES)
def test_byte_by_byte_is_done_exactly_at_the_last_byte(name: str) -> None:
    wire, payload = BODIES[name]
    decoder = ChunkedDecoder()
    out, done_after = feed_all(decoder, [wire[i : i + 1] for i in range(len(wire))])
    assert out == payload
    assert done_after == [False] * (len(wire) - 1) + [True]


def test_three_way_splits_of_a_multi_chunk_body() -> None:
    wire, payload = BODIES["several chunks"]
    for a in range(len(wire) + 1):
        for b in range(a, len(wire) + 1):
            out, done_after = feed_all(ChunkedDecoder(), [wire[:a], wire[a:b], wire[b:]])
            assert out == payload and done_after[-1], (a, b)


@given(
    parts=st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
)
def test_any_payload_any_split(parts: list[bytes], cuts: list[int]) -> None:
    wire = chunked(*parts)
    points = sorted({min(c, len(wire)) for c in cuts})
    pieces = [wire[i:j] for i, j in zip([0, *points], [*points, len(wire)], strict=True)]
    decoder = ChunkedDecoder()
    out, _ = feed_all(decoder, pieces)
    assert out == b"".join(parts) and decoder.done and not decoder.overrun


def test_a_whole_body_in_one_chunk_is_returned_without_copying() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5\r\n") == b""
    data = b"hello"
    assert decoder.feed(data) is data


def test_bytes_after_the_end_are_an_overrun() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(chunked(b"abc") + b"HTTP/1.1 200 OK\r\n") == b"abc"
    assert decoder.done and decoder.overrun


def test_eof_is_fine_only_after_the_end() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"3\r\nabc\r\n")
    assert not decoder.eof_ok()
    decoder.feed(b"0\r\n\r\n")
    assert decoder.eof_ok()


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nabc\r\n",  # not hex
        b"\r\nabc\r\n",  # empty size
        b"0x3\r\nabc\r\n",  # int() would take it; HTTP does not
        b"+3\r\nabc\r\n",
        b"1_0\r\nabc\r\n",
        b"-1\r\n",
        b"11111111111111111\r\n",  # 17 hex digits
        b"3\r\nabcdef\r\n",  # data longer than its size
    ],
)
def test_bad_framing_is_an_error(wire: bytes) -> None:
    with pytest.raises(FramingError):
        ChunkedDecoder().feed(wire)


def test_an_endless_size_line_is_an_error_not_a_memory_sink() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"1" * 10)
    with pytest.raises(FramingError, match="too long"):
        for _ in range(MAX_LINE // 1000 + 2):
            decoder.feed(b";" + b"x" * 999)


def test_length_decoder() -> None:
    decoder = LengthDecoder(10)
    assert decoder.feed(b"12345") == b"12345" and not decoder.done
    assert not decoder.eof_ok()
    assert decoder.feed(b"67890") == b"67890" and decoder.done and not decoder.overrun
    assert decoder.eof_ok()


def test_length_decoder_overrun_and_empty() -> None:
    decoder = LengthDecoder(3)
    assert decoder.feed(b"abcdef") == b"abc" and decoder.done and decoder.overrun
    assert LengthDecoder(0).done


def test_until_close_decoder() -> None:
    decoder = UntilCloseDecoder()
    assert decoder.feed(b"abc") == b"abc" and not decoder.done and decoder.eof_ok()


def test_decoder_for_picks_by_framing() -> None:
    assert isinstance(decoder_for(True, None), ChunkedDecoder)
    assert isinstance(decoder_for(False, 5), LengthDecoder)
    assert isinstance(decoder_for(False, None), UntilCloseDecoder)
