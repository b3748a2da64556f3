"""An asyncio HTTP/1.1 load generator: keep-alive connections, closed loop, per-request timings.

Protocol-based (no StreamReader), with uvloop when installed, so one process drives tens of
thousands of requests or stream chunks a second; `run.py` reports its CPU share next to the
proxy's, so a saturated load generator would show.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Check = Callable[[int, bytes], bool]


@dataclass
class Result:
    start: float
    ttfb: float  # seconds from sending to the first byte of the response body
    total: float  # seconds from sending to the end of the body
    status: int
    ok: bool
    size: int


class ResponseParser:
    """Incremental HTTP/1.1 response parser: content-length or chunked bodies."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.reset()

    def reset(self) -> None:
        self.head_done = False
        self.status = 0
        self.length: int | None = None
        self.chunked = False
        self.close = False
        self.body: list[bytes] = []
        self.chunk_left = -1  # -1: expecting a size line
        self.first_body: float | None = None
        self.done = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        self._parse()

    def _mark(self) -> None:
        if self.first_body is None:
            self.first_body = time.perf_counter()

    def _parse(self) -> None:
        buf = self.buffer
        if not self.head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            self.status = int(lines[0].split(b" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    self.chunked = True
                elif name == b"connection" and b"close" in value.lower():
                    self.close = True
            del buf[: end + 4]
            self.head_done = True
        if self.chunked:
            pos = 0
            while True:
                if self.chunk_left < 0:
                    nl = buf.find(b"\r\n", pos)
                    if nl < 0:
                        break
                    size = int(bytes(buf[pos:nl]).split(b";")[0], 16)
                    if size == 0:
                        if len(buf) < nl + 4:
                            break
                        pos = nl + 4
                        self.done = True
                        break
                    self.chunk_left = size
                    pos = nl + 2
                if len(buf) - pos < self.chunk_left + 2:
                    break
                self._mark()
                self.body.append(bytes(buf[pos : pos + self.chunk_left]))
                pos += self.chunk_left + 2
                self.chunk_left = -1
            del buf[:pos]
        elif self.length is not None:
            if buf:
                self._mark()
            if len(buf) >= self.length:
                self.body.append(bytes(buf[: self.length]))
                del buf[: self.length]
                self.done = True
        # (no length, not chunked: body ends at close; handled in connection_lost)


class ClientConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.waiter: asyncio.Future[None] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if self.parser.done and self.waiter and not self.waiter.done():
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter and not self.waiter.done():
            if self.parser.head_done and self.parser.length is None and not self.parser.chunked:
                self.parser.body.append(bytes(self.parser.buffer))
                self.parser.done = True
                self.waiter.set_result(None)
            else:
                self.waiter.set_exception(ConnectionError("connection closed mid-response"))

    async def send(self, raw: bytes, check: Check, timeout: float) -> Result:
        assert self.transport is not None
        self.parser.reset()
        self.waiter = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        self.transport.write(raw)
        await asyncio.wait_for(self.waiter, timeout)
        end = time.perf_counter()
        body = b"".join(self.parser.body)
        first = self.parser.first_body or end
        return Result(start, first - start, end - start, self.parser.status, check(self.parser.status, body), len(body))


async def connect(host: str, port: int) -> ClientConnection:
    _, protocol = await asyncio.get_running_loop().create_connection(ClientConnection, host, port)
    return protocol


@dataclass
class Run:
    results: list[Result] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    window: tuple[float, float] = (0.0, 0.0)

    def measured(self) -> list[Result]:
        lo, hi = self.window
        return [r for r in self.results if r.start >= lo and r.start + r.total <= hi]


async def closed_loop(
    host: str,
    port: int,
    request: bytes,
    check: Check,
    *,
    concurrency: int,
    duration: float | None = None,
    per_client: int | None = None,
    warmup: float = 0.0,
    stagger: float = 0.0,
    timeout: float = 60.0,
    open_together: bool = False,
    count_connect: bool = False,
) -> Run:
    """`concurrency` clients, each on its own keep-alive connection, sending `request` back to back.

    Either for `duration` seconds after `warmup` (results counted in that window), or
    `per_client` requests each (all counted). Client i starts after i × `stagger` seconds.
    `open_together`: every connection is opened before any request is sent, as wrk does (a burst
    of connections in the accept queue at once). `count_connect`: a request that had to open its
    connection counts the connect in its TTFB and total, as a client opening connections as it
    goes (aiohttp's pool, say) sees it.
    """
    run = Run()
    opened: list[ClientConnection | BaseException | None] = [None] * concurrency
    if open_together:
        opened = list(await asyncio.gather(*(connect(host, port) for _ in range(concurrency)), return_exceptions=True))
    t0 = time.perf_counter()
    stop = t0 + warmup + duration if duration is not None else float("inf")
    run.window = (t0 + warmup, stop)

    async def client(i: int) -> None:
        if stagger:
            await asyncio.sleep(i * stagger)
        first = opened[i]
        conn: ClientConnection | None = first if isinstance(first, ClientConnection) else None
        done = 0
        while time.perf_counter() < stop and (per_client is None or done < per_client):
            done += 1
            try:
                began = time.perf_counter()
                fresh = conn is None or conn.lost
                if conn is None or conn.lost:
                    conn = await connect(host, port)
                result = await conn.send(request, check, timeout)
                if fresh and count_connect:
                    waited = result.start - began
                    result = Result(
                        began, result.ttfb + waited, result.total + waited, result.status, result.ok, result.size
                    )
                run.results.append(result)
                if not result.ok:
                    run.errors += 1
                    key = f"status {result.status}" if result.status != 200 else "bad body"
                    run.error_kinds[key] = run.error_kinds.get(key, 0) + 1
                if conn.parser.close:
                    conn.transport.close()  # type: ignore[union-attr]
                    conn = None
            except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
                run.errors += 1
                key = type(exc).__name__
                run.error_kinds[key] = run.error_kinds.get(key, 0) + 1
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    if duration is None:
        run.window = (t0, time.perf_counter())
    return run


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
