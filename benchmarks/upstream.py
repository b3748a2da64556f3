"""A fast OpenAI-compatible upstream for benchmarks: asyncio (uvloop when installed), HTTP/1.1 keep-alive.

`POST …/chat/completions` answers a completion, or — with `"stream": true` — an SSE stream of
N content chunks, a finish chunk, a usage chunk and `data: [DONE]`, chunked like real providers.
N and the delay between chunks come from the model name, so the proxy needs no special
config: `bench-c200-d0` = 200 chunks, no delay; `bench-c100-d20` = 100 chunks, 20 ms apart.
Any other model: 20 chunks, no delay. `GET /stats`: connections accepted and requests served.

Run: `python -m benchmarks.upstream --port 9999` (prints "ready PORT" when listening).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from functools import lru_cache

import orjson

MODEL = re.compile(r"c(\d+)-d(\d+(?:\.\d+)?)")
USAGE = {
    "prompt_tokens": 7000,
    "completion_tokens": 200,
    "total_tokens": 7200,
    "prompt_tokens_details": {"cached_tokens": 6000},
}


def stream_shape(model: str) -> tuple[int, float]:
    match = MODEL.search(model)
    if not match:
        return 20, 0.0
    return int(match.group(1)), float(match.group(2)) / 1000.0


def _chunk(model: str, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    payload: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    payload["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        payload["usage"] = usage
    data = b"data: " + orjson.dumps(payload) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


@lru_cache(maxsize=64)
def stream_pieces(model: str, n: int) -> tuple[bytes, tuple[bytes, ...], bytes]:
    """(first chunk, n content chunks, the tail: finish + usage + [DONE] + end of body), pre-encoded."""
    first = _chunk(model, {"role": "assistant", "content": ""})
    body = tuple(_chunk(model, {"content": f"word{i % 10} "}) for i in range(n))
    done = b"data: [DONE]\n\n"
    tail = (
        _chunk(model, {}, "stop")
        + _chunk(model, None, usage=USAGE)
        + b"%x\r\n%s\r\n" % (len(done), done)
        + b"0\r\n\r\n"
    )
    return first, body, tail


@lru_cache(maxsize=64)
def completion(model: str) -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "Hello from the benchmark upstream. " * 8},
                }
            ],
            "usage": USAGE,
        }
    )


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


STATS = {"connections": 0, "requests": 0}


class Connection(asyncio.Protocol):
    """One client connection: requests parsed from the buffer, answered in order."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        STATS["connections"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.process()

    def process(self) -> None:
        while not self.busy and not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, path = head[0].split(" ")[:2]
            self.handle(method, path, body)

    def respond(self, status: str, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status.encode(), len(payload), payload)
        )

    def handle(self, method: str, path: str, body: bytes) -> None:
        if method == "GET" and path == "/stats":  # for run.py: are connections reused?
            self.respond("200 OK", orjson.dumps(STATS))
            return
        STATS["requests"] += 1
        if method == "GET" and path.endswith("/models"):
            self.respond("200 OK", b'{"object":"list","data":[{"id":"bench","object":"model"}]}')
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            self.respond("404 Not Found", b'{"error":{"message":"not found","type":"not_found"}}')
            return
        try:
            request = orjson.loads(body)
            model = str(request.get("model", "bench"))
        except (orjson.JSONDecodeError, AttributeError):
            self.respond("400 Bad Request", b'{"error":{"message":"bad json","type":"invalid_request_error"}}')
            return
        if not request.get("stream"):
            self.respond("200 OK", completion(model))
            return
        n, delay = stream_shape(model)
        first, chunks, tail = stream_pieces(model, n)
        assert self.transport is not None
        if delay <= 0:
            write = self.transport.write
            write(STREAM_HEAD + first)
            for piece in chunks:  # one write per chunk, as a real server flushes each event
                write(piece)
            write(tail)
            return
        self.busy = True
        asyncio.get_running_loop().create_task(self.paced(first, chunks, tail, delay))

    async def paced(self, first: bytes, chunks: tuple[bytes, ...], tail: bytes, delay: float) -> None:
        assert self.transport is not None
        try:
            self.transport.write(STREAM_HEAD + first)
            for piece in chunks:
                await asyncio.sleep(delay)
                if self.closed:
                    return
                self.transport.write(piece)
            self.transport.write(tail)
        finally:
            self.busy = False
        self.process()


def install_fast_loop() -> str:
    """uvloop when it is installed (the `bench` extra), else the standard loop; returns which."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    except ImportError:
        return "asyncio"


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, host, port, backlog=4096, reuse_address=True)
    sock = server.sockets[0]
    print(f"ready {sock.getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    install_fast_loop()
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
