"""The benchmark suite's one command: `python -m benchmarks.run [--quick]`.

Starts the asyncio upstream (benchmarks/upstream.py) and the real proxy (`python -m
claude_proxy` under gunicorn with its CLI defaults and a generated config), runs every
scenario against the upstream directly and through the proxy in the same run, prints a
markdown table and writes it to BENCHMARKS.md (between the results markers; the rest of
the file — the profiling notes — is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .loadgen import Result, Run, closed_loop, percentile
from .payloads import claude_code_request, long_conversation
from .procfs import children, client_connections
from .upstream import install_fast_loop

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STREAM_CHUNKS = 200
PACED_CHUNKS, PACED_DELAY_MS = 100, 20


# -- processes ---------------------------------------------------------------------------


def status_kb(pid: int, key: str, name: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def rss_mb(self) -> float:
        return sum(status_kb(p, "VmRSS") for p in self.pids) / 1024

    def pss_mb(self) -> float:
        return sum(status_kb(p, "Pss", "smaps_rollup") for p in self.pids) / 1024

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server did not answer {url} within {seconds:g}s:\n{log.read_text()[-3000:]}")


def start_upstream(workdir: Path) -> Server:
    log = workdir / "upstream.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.upstream", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("ready "):
        raise SystemExit(f"upstream did not start: {line!r} {log.read_text()}")
    return Server(proc, int(line.split()[1]), log)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_proxy(
    workdir: Path, upstream_port: int, extra: list[str], env: dict[str, str] | None = None, config_extra: str = "",
    root: Path = ROOT,
) -> tuple[Server, Path, list[str]]:
    """`python -m claude_proxy` run from `root` (its package first on sys.path: another checkout runs its own code)."""
    port = free_port()
    config = workdir / "claude-proxy.toml"
    config.write_text(
        f'host = "127.0.0.1"\nport = {port}\n\n[provider]\nname = "custom"\n'
        f'base_url = "http://127.0.0.1:{upstream_port}/v1"\napi_key = "sk-bench-upstream-key"\n' + config_extra
    )
    log = workdir / "proxy.log"
    args = [
        sys.executable,
        "-m",
        "claude_proxy",
        "-c",
        str(config),
        "--log-file",
        str(workdir / "requests.jsonl"),
        *extra,
    ]
    proc = subprocess.Popen(
        args, cwd=root, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    server = Server(proc, port, log)
    wait_http(f"http://127.0.0.1:{port}/health", proc, log)
    return server, config, args


# -- requests and checks -------------------------------------------------------------------


def http_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-client", "anthropic-version": "2023-06-01", "User-Agent": "bench/1.0"}
OPENAI_HEADERS = {"Authorization": "Bearer sk-bench-upstream-key", "User-Agent": "bench/1.0"}


def ok_message(status: int, body: bytes) -> bool:
    return status == 200 and b'"type":"message"' in body and b'"stop_reason":"end_turn"' in body


def ok_completion(status: int, body: bytes) -> bool:
    return status == 200 and b'"chat.completion"' in body


def ok_anthropic_stream(chunks: int):  # type: ignore[no-untyped-def]
    def check(status: int, body: bytes) -> bool:
        return (
            status == 200
            and body.count(b"event: content_block_delta") == chunks
            and body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
        )

    return check


def ok_openai_stream(chunks: int):  # type: ignore[no-untyped-def]
    def check(status: int, body: bytes) -> bool:
        return status == 200 and body.count(b'"content":"word') == chunks and body.endswith(b"data: [DONE]\n\n")

    return check


@dataclass
class Pair:
    """A scenario's request to the proxy and the equivalent one straight to the upstream."""

    proxy: bytes
    direct: bytes
    proxy_check: Any
    direct_check: Any


def make_pair(env: Env, *, stream: bool, model: str, chunks: int = 0) -> Pair:
    from claude_proxy.translate import translate_request

    body = claude_code_request(stream=stream, model=model)
    upstream_body = translate_request(body, model=model, dialect=env.dialect).body
    return Pair(
        http_request(env.proxy.port, "/v1/messages", orjson.dumps(body), ANTHROPIC_HEADERS),
        http_request(env.upstream.port, "/v1/chat/completions", orjson.dumps(upstream_body), OPENAI_HEADERS),
        ok_anthropic_stream(chunks) if stream else ok_message,
        ok_openai_stream(chunks) if stream else ok_completion,
    )


# -- measurement ---------------------------------------------------------------------------


@dataclass
class Env:
    upstream: Server
    proxy: Server
    dialect: Any
    args: argparse.Namespace
    workdir: Path
    peak_rss: float = 0.0
    sampling: bool = False
    profiles: list[Path] = field(default_factory=list)


@dataclass
class Measured:
    run: Run
    elapsed: float
    cpu: dict[str, float]  # share of one core over the run, per process group
    connections: float = 0.0  # new upstream connections per upstream request
    split: list[int] = field(default_factory=list)  # client connections per proxy worker, mid-run
    span: float = 0.0  # seconds the results were counted over, when not one window (`combine`)

    @property
    def results(self) -> list[Result]:
        return self.run.measured()

    @property
    def rate(self) -> float:
        lo, hi = self.run.window
        return len(self.results) / max(self.span or hi - lo, 1e-9)

    def pct(self, attr: str, p: float) -> float:
        return percentile([getattr(r, attr) for r in self.results], p) * 1000.0


async def measure(env: Env, target: str, request: bytes, check: Any, label: str, **kw: Any) -> Measured:
    port = env.proxy.port if target == "proxy" else env.upstream.port
    profilers = start_profilers(env, label) if target == "proxy" and env.args.profile else []
    before = {"loadgen": time.process_time(), "upstream": env.upstream.cpu(), "proxy": env.proxy.cpu()}
    stats0 = upstream_stats(env)
    t0 = time.perf_counter()
    task = asyncio.create_task(closed_loop("127.0.0.1", port, request, check, **kw))
    split: list[int] = []
    if target == "proxy":  # how the load generator's connections landed on the workers
        await asyncio.wait({task}, timeout=kw.get("warmup", 0.0) + 0.5)
        if not task.done():
            split = client_connections(children(env.proxy.proc.pid), port)
    run = await task
    elapsed = time.perf_counter() - t0
    after = {"loadgen": time.process_time(), "upstream": env.upstream.cpu(), "proxy": env.proxy.cpu()}
    stop_profilers(profilers)
    stats1 = upstream_stats(env)
    cpu = {k: (after[k] - before[k]) / elapsed for k in before}
    served = stats1["requests"] - stats0["requests"]
    m = Measured(run, elapsed, cpu, (stats1["connections"] - stats0["connections"]) / max(served, 1), split)
    print(
        f"  {label:<28} {target:<6} n={len(m.results):<6} rate={m.rate:9.1f}/s p50={m.pct('total', 50):8.2f}ms "
        f"p99={m.pct('total', 99):8.2f}ms ttfb99={m.pct('ttfb', 99):7.2f}ms errors={run.errors} {run.error_kinds or ''} "
        f"cpu loadgen={cpu['loadgen']:.0%} upstream={cpu['upstream']:.0%} proxy={cpu['proxy']:.0%} "
        f"upstream connections/request={m.connections:.2f}" + (f" per worker={'/'.join(map(str, split))}" if split else ""),
        flush=True,
    )
    return m


def py_spy() -> str:
    """py-spy from the venv beside this Python (pip puts it there), else from PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else (shutil.which("py-spy") or "py-spy")


def upstream_stats(env: Env) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{env.upstream.port}/stats", timeout=5) as response:
        return orjson.loads(response.read())


def start_profilers(env: Env, label: str) -> list[subprocess.Popen[bytes]]:
    procs = []
    for pid in children(env.proxy.proc.pid):
        out = Path(env.args.profile) / f"{re.sub(r'[^a-z0-9]+', '-', label.lower())}-{pid}.txt"
        env.profiles.append(out)
        procs.append(
            subprocess.Popen(
                [
                    py_spy(),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "250",
                    "--gil",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(0.5)
    return procs


def stop_profilers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def sample_rss(env: Env) -> None:
    while env.sampling:
        env.peak_rss = max(env.peak_rss, env.proxy.rss_mb())
        await asyncio.sleep(0.1)


@dataclass
class Row:
    scenario: str
    metric: str
    direct: float | None
    proxy: float
    unit: str
    target: str = ""
    met: bool | None = None
    ratio: bool = True


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("ms", "MB"):
        return f"{value:,.2f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    if unit == "":
        return f"{value:,.0f}"
    if unit == "×":
        return f"{value:.2f}×"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


# -- scenarios -----------------------------------------------------------------------------


async def measure_both(
    env: Env, pair: Pair, label: str, *, sample: bool = True, **load: Any
) -> tuple[Measured, Measured]:
    """The same load against the upstream directly, then through the proxy (RSS sampled during the
    proxy run when `sample`): the two results a row's ratio is made of."""
    got = {}
    for target in ("direct", "proxy"):
        request = pair.direct if target == "direct" else pair.proxy
        check = pair.direct_check if target == "direct" else pair.proxy_check
        env.sampling = sample and target == "proxy"
        sampler = asyncio.create_task(sample_rss(env)) if sample else None
        got[target] = await measure(env, target, request, check, label, **load)
        env.sampling = False
        if sampler is not None:
            await sampler
    return got["direct"], got["proxy"]


async def scenario_nonstream(env: Env, rows: list[Row], notes: list[str]) -> None:
    quick = env.args.quick
    pair = make_pair(env, stream=False, model="bench")
    print(f"1. non-streaming, {len(pair.proxy) // 1024} KB request", flush=True)
    for concurrency in (1, 8, 32):
        d, p = await measure_both(
            env,
            pair,
            f"non-streaming c={concurrency}",
            sample=False,
            concurrency=concurrency,
            duration=3.0 if quick else 10.0,
            warmup=0.5 if quick else 1.0,
        )
        name = f"1. non-streaming, c={concurrency}"
        rows.append(
            Row(
                name,
                "req/s",
                d.rate,
                p.rate,
                "/s",
                "≥ 1,500 req/s" if concurrency == 8 else "",
                p.rate >= 1500 if concurrency == 8 else None,
            )
        )
        added = p.pct("total", 50) - d.pct("total", 50)
        rows.append(
            Row(
                name,
                "latency p50",
                d.pct("total", 50),
                p.pct("total", 50),
                "ms",
                f"+≤ 1.5 ms (+{added:.2f})" if concurrency == 1 else "",
                added <= 1.5 if concurrency == 1 else None,
            )
        )
        rows.append(Row(name, "latency p99", d.pct("total", 99), p.pct("total", 99), "ms"))
        rows.append(Row(name, "errors", d.run.errors, p.run.errors, "", "0", p.run.errors == 0, ratio=False))
        notes.append(cpu_note(name, d, p))


async def scenario_stream(env: Env, rows: list[Row], notes: list[str]) -> None:
    quick = env.args.quick
    model = f"bench-c{STREAM_CHUNKS}-d0"
    pair = make_pair(env, stream=True, model=model, chunks=STREAM_CHUNKS)
    print(f"2. streaming, {STREAM_CHUNKS} chunks, no delay", flush=True)
    for concurrency in (1, 16):
        d, p = await measure_both(
            env,
            pair,
            f"streaming c={concurrency}",
            concurrency=concurrency,
            duration=3.0 if quick else 10.0,
            warmup=0.5 if quick else 1.0,
        )
        name = f"2. streaming {STREAM_CHUNKS} chunks, c={concurrency}"
        rows.append(Row(name, "streams/s", d.rate, p.rate, "/s"))
        rows.append(
            Row(
                name,
                "translated chunks/s",
                d.rate * STREAM_CHUNKS,
                p.rate * STREAM_CHUNKS,
                "/s",
                "≥ 50,000/s" if concurrency == 16 else "",
                p.rate * STREAM_CHUNKS >= 50_000 if concurrency == 16 else None,
            )
        )
        rows.append(Row(name, "stream time p50", d.pct("total", 50), p.pct("total", 50), "ms"))
        rows.append(Row(name, "errors", d.run.errors, p.run.errors, "", "0", p.run.errors == 0, ratio=False))
        notes.append(cpu_note(name, d, p))


async def scenario_paced(env: Env, rows: list[Row], notes: list[str]) -> None:
    quick = env.args.quick
    model = f"bench-c{PACED_CHUNKS}-d{PACED_DELAY_MS}"
    pair = make_pair(env, stream=True, model=model, chunks=PACED_CHUNKS)
    stream_seconds = PACED_CHUNKS * PACED_DELAY_MS / 1000.0
    print(f"3. paced streaming, {PACED_CHUNKS} chunks x {PACED_DELAY_MS} ms", flush=True)
    for concurrency in (64, 256):
        d, p = await measure_both(
            env,
            pair,
            f"paced c={concurrency}",
            concurrency=concurrency,
            per_client=2 if quick else 5,
            stagger=stream_seconds / concurrency,
            timeout=60.0,
        )
        name = f"3. paced {PACED_CHUNKS}×{PACED_DELAY_MS} ms, c={concurrency}"
        ttfb_target = 30.0 if concurrency == 64 else 100.0
        rows.append(Row(name, "TTFB p50", d.pct("ttfb", 50), p.pct("ttfb", 50), "ms"))
        rows.append(
            Row(
                name,
                "TTFB p99",
                d.pct("ttfb", 99),
                p.pct("ttfb", 99),
                "ms",
                f"≤ {ttfb_target:.0f} ms",
                p.pct("ttfb", 99) <= ttfb_target,
            )
        )
        for q in (50, 99):
            within = p.pct("total", q) <= 1.05 * d.pct("total", q)
            rows.append(
                Row(
                    name,
                    f"total time p{q}",
                    d.pct("total", q),
                    p.pct("total", q),
                    "ms",
                    "≤ 1.05 × direct" if concurrency == 256 else "",
                    within if concurrency == 256 else None,
                )
            )
        rows.append(Row(name, "errors", d.run.errors, p.run.errors, "", "0", p.run.errors == 0, ratio=False))
        notes.append(cpu_note(name, d, p))


def cpu_note(name: str, d: Measured, p: Measured, split: str = "") -> str:
    def one(m: Measured) -> str:
        return f"load generator {m.cpu['loadgen']:.0%}, upstream {m.cpu['upstream']:.0%}, proxy {m.cpu['proxy']:.0%}"

    per = p.cpu["proxy"] * p.elapsed / max(len(p.run.results), 1) * 1000
    split = split or "/".join(map(str, p.split)) or "—"
    return f"| {name} | {one(d)} | {one(p)} | {per:.2f} ms | {p.connections:.2f} | {split} |"


def combine(parts: list[Measured]) -> Measured:
    """Several rounds of one load as one measurement: their counted results, rate over their windows."""
    results = [r for m in parts for r in m.results]
    run = Run(results, sum(m.run.errors for m in parts), {}, (float("-inf"), float("inf")))
    for m in parts:
        for kind, n in m.run.error_kinds.items():
            run.error_kinds[kind] = run.error_kinds.get(kind, 0) + n
    elapsed = sum(m.elapsed for m in parts)
    cpu = {k: sum(m.cpu[k] * m.elapsed for m in parts) / max(elapsed, 1e-9) for k in parts[0].cpu}
    served = sum(len(m.run.results) for m in parts)
    connections = sum(m.connections * len(m.run.results) for m in parts) / max(served, 1)
    span = sum(m.run.window[1] - m.run.window[0] for m in parts)
    return Measured(run, elapsed, cpu, connections, span=span)


async def scenario_burst(env: Env, rows: list[Row], notes: list[str]) -> None:
    """Eight kept-alive connections opened at once, then requests on all of them (wrk's way).

    Each round opens a new set, so each is a new chance for the burst to land unevenly on the
    workers; a c=1 run in the same scenario is the reference the burst should beat.
    """
    quick = env.args.quick
    pair = make_pair(env, stream=False, model="bench")
    rounds, seconds = (3, 2.0) if quick else (6, 3.0)
    print(f"6. burst: 8 connections opened at once, {rounds} rounds of {seconds:g} s; c=1 for reference", flush=True)
    d1, p1 = await measure_both(
        env, pair, "burst reference c=1", sample=False, concurrency=1, duration=seconds, warmup=0.3
    )
    got: dict[str, list[Measured]] = {"direct": [], "proxy": []}
    for i in range(rounds):
        d, p = await measure_both(
            env,
            pair,
            f"burst c=8 round {i + 1}",
            sample=False,
            concurrency=8,
            duration=seconds,
            warmup=0.3,
            open_together=True,
        )
        got["direct"].append(d)
        got["proxy"].append(p)
    d8, p8 = combine(got["direct"]), combine(got["proxy"])
    splits = ", ".join("/".join(map(str, m.split)) or "?" for m in got["proxy"])
    name = "6. burst: 8 connections at once"
    rows.append(Row(name, "req/s, c=1 (reference)", d1.rate, p1.rate, "/s"))
    rows.append(Row(name, f"req/s, c=8 opened at once ({rounds} rounds)", d8.rate, p8.rate, "/s"))
    rows.append(
        Row(
            name,
            "c=8 burst over c=1 (× throughput)",
            d8.rate / max(d1.rate, 1e-9),
            p8.rate / max(p1.rate, 1e-9),
            "×",
            "proxy > 1×",
            p8.rate > p1.rate,
            ratio=False,
        )
    )
    rows.append(Row(name, "latency p50", d8.pct("total", 50), p8.pct("total", 50), "ms"))
    rows.append(Row(name, "latency p99", d8.pct("total", 99), p8.pct("total", 99), "ms"))
    rows.append(Row(name, "errors", d8.run.errors, p8.run.errors, "", "0", p8.run.errors == 0, ratio=False))
    notes.append(cpu_note(name, d8, p8, splits))


async def scenario_paced_open(env: Env, rows: list[Row], notes: list[str]) -> None:
    """64 paced streams started together, each opening its connection when it starts.

    A client with a connection pool (aiohttp, httpx) that fires 64 requests at once opens 64
    connections in the same instant and sends each request as soon as its connection is up;
    TTFB here counts from before the connect, as that client sees it. Later rounds reuse the
    connections, but their streams still start together (they all end together).
    """
    quick = env.args.quick
    model = f"bench-c{PACED_CHUNKS}-d{PACED_DELAY_MS}"
    pair = make_pair(env, stream=True, model=model, chunks=PACED_CHUNKS)
    concurrency, rounds = 64, (2 if quick else 4)
    print(f"7. paced-open: {concurrency} streams at once, {rounds} rounds, connections opened as it goes", flush=True)
    d, p = await measure_both(
        env,
        pair,
        f"paced-open c={concurrency}",
        concurrency=concurrency,
        per_client=rounds,
        timeout=60.0,
        count_connect=True,
    )
    name = f"7. paced-open {PACED_CHUNKS}×{PACED_DELAY_MS} ms, c={concurrency} at once"

    def first_round(m: Measured) -> list[float]:
        return [r.ttfb for r in sorted(m.results, key=lambda r: r.start)[:concurrency]]

    rows.append(Row(name, "TTFB p50", d.pct("ttfb", 50), p.pct("ttfb", 50), "ms"))
    rows.append(Row(name, "TTFB p99", d.pct("ttfb", 99), p.pct("ttfb", 99), "ms", "≤ 30 ms", p.pct("ttfb", 99) <= 30))
    rows.append(
        Row(
            name,
            "TTFB p99, first round (connect included)",
            percentile(first_round(d), 99) * 1000,
            percentile(first_round(p), 99) * 1000,
            "ms",
        )
    )
    for q in (50, 99):
        rows.append(Row(name, f"total time p{q}", d.pct("total", q), p.pct("total", q), "ms"))
    rows.append(Row(name, "errors", d.run.errors, p.run.errors, "", "0", p.run.errors == 0, ratio=False))
    notes.append(cpu_note(name, d, p))


async def warm_up(env: Env) -> None:
    pair = make_pair(env, stream=False, model="bench")
    await closed_loop("127.0.0.1", env.proxy.port, pair.proxy, pair.proxy_check, concurrency=4, per_client=100)
    spair = make_pair(env, stream=True, model="bench-c20-d0", chunks=20)
    await closed_loop("127.0.0.1", env.proxy.port, spair.proxy, spair.proxy_check, concurrency=4, per_client=25)


async def soak(env: Env, seconds: float) -> list[tuple[float, float]]:
    """Mixed load for `seconds`; the idle RSS after each slice, to show whether memory grows."""
    pair = make_pair(env, stream=False, model="bench")
    spair = make_pair(env, stream=True, model=f"bench-c{STREAM_CHUNKS}-d0", chunks=STREAM_CHUNKS)
    ppair = make_pair(env, stream=True, model="bench-c50-d10", chunks=50)
    series = [(0.0, env.proxy.rss_mb())]
    t0 = time.perf_counter()
    slice_seconds = max(seconds / 6, 5.0)
    while time.perf_counter() - t0 < seconds:
        runs = await asyncio.gather(
            closed_loop(
                "127.0.0.1", env.proxy.port, pair.proxy, pair.proxy_check, concurrency=4, duration=slice_seconds
            ),
            closed_loop(
                "127.0.0.1", env.proxy.port, spair.proxy, spair.proxy_check, concurrency=4, duration=slice_seconds
            ),
            closed_loop(
                "127.0.0.1",
                env.proxy.port,
                ppair.proxy,
                ppair.proxy_check,
                concurrency=64,
                duration=slice_seconds,
                stagger=0.5 / 64,
            ),
        )
        await asyncio.sleep(1.0)
        series.append((time.perf_counter() - t0, env.proxy.rss_mb()))
        errors = sum(r.errors for r in runs)
        workers = children(env.proxy.proc.pid)
        detail = ", ".join(
            f"worker {w}: {status_kb(w, 'RssAnon') / 1024:.1f}+{status_kb(w, 'RssFile') / 1024:.1f} MB "
            f"anon+file, {status_kb(w, 'Threads')} threads"
            for w in workers
        )
        print(
            f"  soak t={series[-1][0]:6.0f}s requests={sum(len(r.results) for r in runs)} errors={errors} "
            f"rss={series[-1][1]:.1f} MB ({detail})",
            flush=True,
        )
    return series


def translation_bench(env: Env, rows: list[Row]) -> None:
    from claude_proxy.pipeline.proxy import decode_json
    from claude_proxy.pipeline.validate import validate_messages_request
    from claude_proxy.translate import SSEParser, StreamTranslator, format_events, tokens, translate_request

    print("5. translation alone", flush=True)
    repeat = 3 if env.args.quick else 7
    dialect = env.dialect

    def best(fn: Any, number: int) -> float:
        """Best of `repeat` runs, in CPU time (ms per call): steadier than wall time on a shared machine."""
        timer = timeit.Timer(fn, timer=time.process_time)
        return min(timer.repeat(number=number, repeat=repeat)) / number * 1000.0

    big = long_conversation()
    raw = orjson.dumps(big)
    body = orjson.loads(raw)
    translated = translate_request(body, model="bench", dialect=dialect)

    def whole() -> None:
        tokens._CACHE.clear()  # first sight: no token count remembered from an earlier turn
        b = decode_json(raw)
        assert not validate_messages_request(b)
        orjson.dumps(translate_request(b, model="bench", dialect=dialect).body)

    def streamed_first_sight() -> None:  # what a stream needs before its first byte: + the token estimate
        tokens._CACHE.clear()
        b = decode_json(raw)
        assert not validate_messages_request(b)
        t = translate_request(b, model="bench", dialect=dialect)
        orjson.dumps(t.body)
        t.context.prompt_tokens()

    def next_turn() -> None:  # the same history again, as Claude Code re-sends it every turn
        b = decode_json(raw)
        assert not validate_messages_request(b)
        t = translate_request(b, model="bench", dialect=dialect)
        orjson.dumps(t.body)
        t.context.prompt_tokens()

    parts = {
        "decode (orjson)": (lambda: decode_json(raw), 20),
        "validate (plain fast path; marshmallow when unusual)": (lambda: validate_messages_request(body), 5),
        "translate_request (first sight)": (
            lambda: (tokens._CACHE.clear(), translate_request(body, model="bench", dialect=dialect)),
            10,
        ),
        "token estimate for a stream's message_start (first sight)": (
            lambda: (tokens._CACHE.clear(), tokens.estimate_input_tokens(body)),
            10,
        ),
        "encode upstream body": (lambda: orjson.dumps(translated.body), 50),
    }
    name = f"5. {len(raw) / 1e6:.2f} MB, {len(big['messages'])}-message request"
    total = best(whole, 5)
    rows.append(
        Row(name, "decode + validate + translate + encode, first sight", None, total, "ms", "≤ 15 ms", total <= 15.0)
    )
    rows.append(
        Row(
            name, "the same + the token estimate a stream needs, first sight", None, best(streamed_first_sight, 5), "ms"
        )
    )
    whole()
    again = best(next_turn, 5)
    rows.append(Row(name, "the same + token estimate, history seen before (counts cached)", None, again, "ms"))
    for label, (fn, number) in parts.items():
        rows.append(Row(name, label, None, best(fn, number), "ms"))
        print(f"  {label}: {rows[-1].proxy:.2f} ms", flush=True)

    small = claude_code_request(stream=True, model="bench")
    small_raw = orjson.dumps(small)

    def request_path() -> None:
        b = decode_json(small_raw)
        assert not validate_messages_request(b)
        orjson.dumps(translate_request(b, model="bench", dialect=dialect).body)

    rows.append(
        Row(
            f"5. {len(small_raw) // 1000} KB Claude Code request",
            "decode + validate + translate + encode",
            None,
            best(request_path, 200),
            "ms",
        )
    )

    chunk = (
        b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench",'
        b'"choices":[{"index":0,"delta":{"content":"word1 "},"finish_reason":null}]}\n\n'
    )
    data = chunk[6:-2].decode()
    translator = StreamTranslator(translated.context)
    translator.feed_data(data)
    parser = SSEParser()

    def one_chunk() -> None:
        format_events(translator.feed_data(data))

    def one_chunk_sse() -> None:
        for event in parser.feed(chunk):
            format_events(translator.feed_data(event.data))

    rows.append(
        Row("5. one streamed chunk", "translator.feed_data + format_events", None, best(one_chunk, 20000) * 1000, "µs")
    )
    rows.append(
        Row("5. one streamed chunk", "SSE parse + translate + format", None, best(one_chunk_sse, 20000) * 1000, "µs")
    )


# -- report --------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = ["| scenario | metric | direct | proxy | proxy / direct | target | |", "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        ratio = f"{r.proxy / r.direct:.2f}×" if r.ratio and r.direct else "—"
        met = "" if r.met is None else ("✅" if r.met else "❌")
        lines.append(
            f"| {r.scenario} | {r.metric} | {fmt(r.direct, r.unit)} | {fmt(r.proxy, r.unit)} | {ratio} | "
            f"{r.target} | {met} |"
        )
    return "\n".join(lines)


AWAKE_NOTE = ("- CPUs kept awake (`--awake`): one busy loop per core at nice 19 for the whole run, so no vCPU halts "
              "between the hops of a request (it takes ~1.5 % of a core from the measured processes)")


@contextlib.contextmanager
def cpus_awake(enabled: bool) -> Iterator[None]:
    """One lowest-priority busy loop per core while the block runs. On a VM an idle vCPU halts, and waking it
    for the next hop of a request (load generator → proxy → Redis → upstream …) costs the hypervisor's wake-up
    latency, up to ~1 ms a hop here: a path with more hops pays it more often. This measures without it."""
    if not enabled:
        yield
        return
    code = "import os\nos.nice(19)\nwhile True:\n    pass\n"
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "uname": " ".join(platform.uname()),
        "cpu": f"{cpu}, {os.cpu_count()} cores, {mem:,} MB RAM",
        "python": platform.python_version(),
        "commit": commit,
    }


def write_report(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = "# Benchmarks\n\n" + block + "\n" + (("\n" + text) if text else "")
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 2 minutes)")
    parser.add_argument(
        "--only",
        default="nonstream,stream,paced,burst,paced-open,translate",
        help="comma-separated scenarios: nonstream,stream,paced,burst,paced-open,translate,soak; "
        "teams (not in the default: [teams] on vs off, written to its own block)",
    )
    parser.add_argument(
        "--teams-sides",
        default="off,sqlite,postgres",
        help="with --only teams: which proxies to compare, a subset of off,sqlite,postgres (postgres starts "
        "private PostgreSQL + Redis servers; a quick look: --teams-sides off,postgres)",
    )
    parser.add_argument(
        "--soak", type=float, default=None, help="seconds of mixed load for the RSS trend (default 180, 0 with --quick)"
    )
    parser.add_argument("--workers", type=int, help="proxy --workers (default: the CLI's)")
    parser.add_argument("--threads", type=int, help="proxy --threads (default: the CLI's)")
    parser.add_argument(
        "--proxy-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the proxy (experiments, e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy record each worker during the proxy runs (raw stacks)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="report file ('-' to only print)")
    parser.add_argument("--note", default="", help="a line added to the report (e.g. 'machine shared with tests')")
    parser.add_argument("--awake", action="store_true",
                        help="keep every CPU busy at nice 19 during the run (no vCPU halts between hops; see the report)")
    args = parser.parse_args(argv)
    with cpus_awake(args.awake):
        return run(args, argv)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    only = set(args.only.split(","))
    teams = "teams" in only
    only.discard("teams")
    soak_seconds = args.soak if args.soak is not None else (0.0 if args.quick else 180.0)
    loop_kind = install_fast_loop()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    given = list(sys.argv[1:] if argv is None else argv)
    command = ".venv/bin/python -m benchmarks.run" + (" " + shlex.join(given) if given else "")
    info = machine()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    if teams:
        if not teams_report(args, command, info, loop_kind):
            return 1
        if not only:
            return 0
        load_before = os.getloadavg()
    extra = [
        *(["--workers", str(args.workers)] if args.workers else []),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]

    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="claude-proxy-bench-") as tmp:
        workdir = Path(tmp)
        upstream = start_upstream(workdir)
        proxy: Server | None = None
        try:
            proxy, config_path, _ = start_proxy(
                workdir, upstream.port, extra, dict(item.split("=", 1) for item in args.proxy_env)
            )
            from claude_proxy.config.loader import load_config

            config = load_config(str(config_path), env={})
            banner = re.search(r"\((\d+) workers x (\d+) threads\)", proxy.log.read_text())
            shape = f"{banner.group(1)} workers × {banner.group(2)} threads" if banner else "?"
            env = Env(upstream, proxy, config.provider.dialect, args, workdir)
            time.sleep(1.0)
            rss_start = proxy.rss_mb()

            async def everything() -> dict[str, Any]:
                await warm_up(env)
                await asyncio.sleep(1.0)
                out: dict[str, Any] = {"rss_warm": proxy.rss_mb(), "pss_warm": proxy.pss_mb()}
                if "nonstream" in only:
                    await scenario_nonstream(env, rows, notes)
                if "stream" in only:
                    env.peak_rss = 0.0
                    await scenario_stream(env, rows, notes)
                    out["peak_stream"] = env.peak_rss
                if "paced" in only:
                    env.peak_rss = 0.0
                    await scenario_paced(env, rows, notes)
                    out["peak_paced"] = env.peak_rss
                if "burst" in only:
                    await scenario_burst(env, rows, notes)
                if "paced-open" in only:
                    await scenario_paced_open(env, rows, notes)
                if soak_seconds > 0 and ("soak" in only or not args.quick):
                    print(f"4. soak, {soak_seconds:g} s of mixed load", flush=True)
                    out["soak"] = await soak(env, soak_seconds)
                await asyncio.sleep(1.0)
                out["rss_end"] = proxy.rss_mb()
                return out

            mem = asyncio.run(everything())
        finally:
            if proxy is not None:
                proxy.stop()
            upstream.stop()
        if "translate" in only:
            translation_bench(env, rows)

    mem_rows = [
        Row("4. memory (master + workers)", "RSS idle, just started", None, rss_start, "MB"),
        Row(
            "4. memory (master + workers)",
            "RSS idle, after warm-up",
            None,
            mem["rss_warm"],
            "MB",
            "≤ 100 MB",
            mem["rss_warm"] <= 100,
        ),
        Row(
            "4. memory (master + workers)",
            "PSS idle, after warm-up (shared pages counted once)",
            None,
            mem["pss_warm"],
            "MB",
        ),
    ]
    for key, label in (("peak_stream", "RSS peak during 2 (streaming)"), ("peak_paced", "RSS peak during 3 (paced)")):
        if key in mem:
            mem_rows.append(
                Row("4. memory (master + workers)", label, None, mem[key], "MB", "≤ 130 MB", mem[key] <= 130)
            )
    if "soak" in mem:
        series = mem["soak"]
        growth = series[-1][1] - series[1][1] if len(series) > 2 else 0.0
        mem_rows.append(
            Row(
                "4. memory (master + workers)",
                f"RSS growth over the soak ({series[1][0]:.0f} s → {series[-1][0]:.0f} s)",
                None,
                growth,
                "MB",
                "flat",
                abs(growth) <= 3.0,
            )
        )
    mem_rows.append(Row("4. memory (master + workers)", "RSS idle, end of run", None, mem["rss_end"], "MB"))
    ordered = (
        [r for r in rows if r.scenario[:2] in ("1.", "2.", "3.")]
        + mem_rows
        + [r for r in rows if r.scenario[:2] not in ("1.", "2.", "3.")]
    )

    finished = datetime.datetime.now(datetime.timezone.utc)
    load_after = os.getloadavg()
    header = [
        f"Latest run: {started:%Y-%m-%d %H:%M} UTC ({(finished - started).total_seconds():.0f} s), "
        f"{'quick' if args.quick else 'full'} mode.",
        "",
        f"- Command: `{command.strip()}`",
        f"- Commit: `{info['commit']}`",
        f"- Machine: {info['cpu']}; `{info['uname']}`; Python {info['python']}",
        f"- Proxy: `python -m claude_proxy` (gunicorn gthread, {shape}, request log on); "
        f"upstream and load generator: {loop_kind}, one process each, on the same machine",
        f"- Load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {' / '.join(f'{x:.2f}' for x in load_after)}",
    ]
    if args.note:
        header.append(f"- Note: {args.note}")
    if args.awake:
        header.append(AWAKE_NOTE)
    report = "\n".join(header) + "\n\n" + table(ordered)
    if notes:
        report += (
            "\n\nCPU used during each measurement (share of one core; 2 cores = 200%), and proxy CPU per "
            "request, new upstream connections the proxy opened per request (0 = all reused), and how the "
            "load generator's connections were spread over the proxy's workers half a second in:\n\n"
            "| scenario | direct run | proxy run | proxy CPU / request | upstream connections / request "
            "| client connections per worker |\n"
            "|---|---|---|---:|---:|---|\n" + "\n".join(notes)
        )
    if "soak" in mem:
        report += "\n\nRSS (master + workers) over the soak: " + ", ".join(
            f"{t:.0f} s: {v:.1f} MB" for t, v in mem["soak"]
        )
    print()
    print(report)
    if args.output != "-":
        write_report(Path(args.output), report)
        print(f"\nwritten to {args.output}")
    if env.profiles:
        print("profiles:", *env.profiles, sep="\n  ")
    return 0


def teams_report(args: argparse.Namespace, command: str, info: dict[str, str], loop_kind: str) -> bool:
    """The `teams` scenario: its own upstream, proxies and stores, its own block in the report. False when a
    teams-on store did not record one usage row per answered request (the run is then not a result)."""
    from claude_proxy.config.loader import load_config

    from .teams import run_teams, write_block

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="claude-proxy-bench-teams-") as tmp:
        workdir = Path(tmp)
        upstream = start_upstream(workdir)
        try:
            probe = workdir / "probe.toml"
            probe.write_text(f'[provider]\nname = "custom"\nbase_url = "http://127.0.0.1:{upstream.port}/v1"\n')
            dialect = load_config(str(probe), env={}).provider.dialect
            result = run_teams(args, upstream, workdir, dialect, ROOT)
        finally:
            upstream.stop()
    finished = datetime.datetime.now(datetime.timezone.utc)
    load_after = os.getloadavg()
    header = [
        f"Latest run: {started:%Y-%m-%d %H:%M} UTC ({(finished - started).total_seconds():.0f} s), "
        f"{'quick' if args.quick else 'full'} mode.",
        "",
        f"- Command: `{command.strip()}`",
        f"- Commit: `{info['commit']}`",
        f"- Machine: {info['cpu']}; Python {info['python']}; upstream and load generator: {loop_kind}",
        "- Proxies: `python -m claude_proxy --workers 2` (gunicorn gthread, request log on), started side by side; "
        "SQLite = `[teams]` (embedded store), PG+Redis = `[teams] store = \"postgres\"`; both with `[prices]` and "
        "a stored key (rpm limit; its team: budget and concurrency cap)",
        *result.details,
        f"- Load average (1/5/15 min) before: {' / '.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {' / '.join(f'{x:.2f}' for x in load_after)}",
    ]
    if args.note:
        header.append(f"- Note: {args.note}")
    if args.awake:
        header.append(AWAKE_NOTE)
    report = "\n".join(header) + "\n\n" + result.body
    print()
    print(report)
    if not result.passed:
        print("\nteams: a store's usage rows do not match the requests it answered; the report is not written",
              file=sys.stderr)
        return False
    if args.output != "-":
        write_block(Path(args.output), report)
        print(f"\nwritten to {args.output}")
    return True


if __name__ == "__main__":
    sys.exit(main())
