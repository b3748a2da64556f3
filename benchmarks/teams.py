"""`--only teams`: what `[teams]` costs. Two proxies side by side on the same upstream, two workers
each: one as the other scenarios run it (no [teams], no [prices]), one with the embedded SQLite
store, [prices] and a stored key with real limits (its own rpm, a team with a monthly budget and a
concurrency cap, so every request runs the whole admission and settlement: GCRA state, a lease,
a usage row and spend). The same loads alternate between the two in rounds, so drift on a shared
machine falls on both alike; rounds are pooled per side. Written to BENCHMARKS.md between the
teams markers (the main results block is left alone).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from .loadgen import closed_loop
from .payloads import claude_code_request
from .run import (
    ANTHROPIC_HEADERS,
    STREAM_CHUNKS,
    Env,
    Measured,
    Row,
    Server,
    combine,
    fmt,
    http_request,
    measure,
    ok_anthropic_stream,
    ok_message,
    start_proxy,
)

BEGIN, END = "<!-- teams:begin -->", "<!-- teams:end -->"
PRICES = '\n[prices]\n"bench*" = {input = 3.0, output = 15.0}\n'
ADDED_P50_TARGET_MS = 0.5
RSS_TARGET_MB = 105.0


def cli(config: Path, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "claude_proxy", *args, "--json", "-c", str(config)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return orjson.loads(out.stdout)


def request(port: int, key: str, *, stream: bool, model: str) -> bytes:
    body = orjson.dumps(claude_code_request(stream=stream, model=model))
    return http_request(port, "/v1/messages", body, {**ANTHROPIC_HEADERS, "x-api-key": key})


async def warm(env: Env, key: str) -> None:
    port = env.proxy.port
    await closed_loop("127.0.0.1", port, request(port, key, stream=False, model="bench"), ok_message,
                      concurrency=4, per_client=100)
    await closed_loop("127.0.0.1", port, request(port, key, stream=True, model="bench-c20-d0"),
                      ok_anthropic_stream(20), concurrency=4, per_client=25)


LOADS = (  # label, stream, concurrency
    ("non-streaming, c=1", False, 1),
    ("non-streaming, c=8", False, 8),
    (f"streaming {STREAM_CHUNKS} chunks, c=1", True, 1),
    (f"streaming {STREAM_CHUNKS} chunks, c=16", True, 16),
)


async def compare(envs: dict[str, Env], keys: dict[str, str], quick: bool) -> dict[str, dict[str, Measured]]:
    rounds = 1 if quick else 3
    out: dict[str, dict[str, Measured]] = {}
    for label, stream, concurrency in LOADS:
        print(f"teams: {label}", flush=True)
        model = f"bench-c{STREAM_CHUNKS}-d0" if stream else "bench"
        check = ok_anthropic_stream(STREAM_CHUNKS) if stream else ok_message
        parts: dict[str, list[Measured]] = {"off": [], "on": []}
        for n in range(rounds):
            for side in ("off", "on") if n % 2 == 0 else ("on", "off"):
                env = envs[side]
                req = request(env.proxy.port, keys[side], stream=stream, model=model)
                parts[side].append(await measure(env, "proxy", req, check, f"teams {side} {label}",
                                                 concurrency=concurrency, duration=3.0 if quick else 6.0,
                                                 warmup=0.5 if quick else 1.0))
        out[label] = {side: combine(ms) for side, ms in parts.items()}
    return out


def rows_of(got: dict[str, dict[str, Measured]], memory: dict[str, dict[str, float]]) -> list[Row]:
    rows: list[Row] = []
    for label, stream, concurrency in LOADS:
        off, on = got[label]["off"], got[label]["on"]
        name = f"{'2' if stream else '1'}. {label}"
        if stream:
            rows.append(Row(name, "streams/s", off.rate, on.rate, "/s"))
            rows.append(Row(name, "translated chunks/s", off.rate * STREAM_CHUNKS, on.rate * STREAM_CHUNKS, "/s",
                            "held" if concurrency == 16 else ""))
            rows.append(Row(name, "stream time p50", off.pct("total", 50), on.pct("total", 50), "ms"))
        else:
            added = on.pct("total", 50) - off.pct("total", 50)
            rows.append(Row(name, "req/s", off.rate, on.rate, "/s"))
            target = f"+≤ {ADDED_P50_TARGET_MS} ms (+{added:.2f})" if concurrency == 1 else ""
            rows.append(Row(name, "latency p50", off.pct("total", 50), on.pct("total", 50), "ms", target,
                            added <= ADDED_P50_TARGET_MS if concurrency == 1 else None))
            rows.append(Row(name, "latency p99", off.pct("total", 99), on.pct("total", 99), "ms"))
        rows.append(Row(name, "errors", off.run.errors, on.run.errors, "", "0", on.run.errors + off.run.errors == 0,
                        ratio=False))
    for metric, unit in (("RSS idle, after warm-up", "MB"), ("PSS idle, after warm-up", "MB")):
        rss = metric.startswith("RSS")
        rows.append(Row("3. memory (master + 2 workers)", metric, memory["off"][metric], memory["on"][metric], unit,
                        f"≤ {RSS_TARGET_MB:.0f} MB" if rss else "",
                        memory["on"][metric] <= RSS_TARGET_MB if rss else None))
    return rows


def _signed(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:+,.2f} ms"
    if unit == "MB":
        return f"{value:+,.1f} MB"
    return f"{value:+,.0f}{' ' + unit if unit else ''}"


def table(rows: list[Row]) -> str:
    lines = ["| scenario | metric | teams off | teams on | on − off | target | |", "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        delta = "—" if r.direct is None or not r.ratio else _signed(r.proxy - r.direct, r.unit)
        met = "" if r.met is None else ("✅" if r.met else "❌")
        lines.append(f"| {r.scenario} | {r.metric} | {fmt(r.direct, r.unit)} | {fmt(r.proxy, r.unit)} | {delta} | "
                     f"{r.target} | {met} |")
    return "\n".join(lines)


def run_teams(args: Any, upstream: Server, workdir: Path, dialect: Any) -> tuple[str, int]:
    """Both proxies, the comparison, the usage rows the store took: (markdown, rows recorded)."""
    servers: dict[str, Server] = {}
    configs: dict[str, Path] = {}
    try:
        for side in ("off", "on"):
            extra = f'\n[teams]\npath = "{workdir / "teams" / "teams.db"}"\n{PRICES}' if side == "on" else ""
            (workdir / side).mkdir()
            servers[side], configs[side], _ = start_proxy(workdir / side, upstream.port, ["--workers", "2"],
                                                          config_extra=extra)
        cli(configs["on"], "teams", "create", "bench", "--budget", "1000000", "--max-concurrent", "1000")
        made = cli(configs["on"], "keys", "create", "--owner", "bench@example.com", "--team", "bench",
                   "--rpm", "10000000/minute")
        keys = {"off": ANTHROPIC_HEADERS["x-api-key"], "on": str(made["key"])}
        envs = {side: Env(upstream, servers[side], dialect, args, workdir / side) for side in servers}

        async def everything() -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Measured]]]:
            for side, env in envs.items():
                await warm(env, keys[side])
            await asyncio.sleep(1.0)
            memory = {side: {"RSS idle, after warm-up": s.rss_mb(), "PSS idle, after warm-up": s.pss_mb()}
                      for side, s in servers.items()}
            return memory, await compare(envs, keys, args.quick)

        memory, got = asyncio.run(everything())
        time.sleep(0.5)  # the last settlements run after the last byte
        recorded = sum(int(r["requests"]) for r in cli(configs["on"], "usage", "--since", "1h", "--by", "key"))
    finally:
        for server in servers.values():
            server.stop()
    return table(rows_of(got, memory)), recorded


def write_block(path: Path, body: str) -> None:
    """Replace the teams block of BENCHMARKS.md (appended under its heading if missing)."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Teams on\n\n" + block + "\n"
    path.write_text(text)
