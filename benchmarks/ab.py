"""`python -m benchmarks.ab`: two proxies side by side under the same load, in alternating rounds — for a change
too small for `--only teams` to show (its three-sided runs move ±5 % from run to run).

Side A runs from `--ref` (any git revision, checked out in a temporary worktree; default: this checkout), side B
from this checkout. `--sides A,B` picks each side's set-up from `--only teams` (`off`, `sqlite` or `postgres`; the
same [prices], team, key and limits there; each postgres side gets its own database and Redis database on one
private PostgreSQL + Redis started for the run). One load (`--load`) alternates between them for `--rounds` rounds, the order
flipping every round, so drift on the machine falls on both alike; each side's rounds are pooled. Prints each
round's rate, the pooled rate and p50 per side, and B/A. Examples:

    python -m benchmarks.ab --ref HEAD~1 --load stream16        # this commit's SQLite store against the last one
    python -m benchmarks.ab --sides off,sqlite --load nonstream1  # what the store costs, in this checkout
    python -m benchmarks.ab --ref HEAD~1 --sides postgres,postgres --load nonstream1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .loadgen import closed_loop
from .run import ROOT, STREAM_CHUNKS, cpus_awake, ok_anthropic_stream, ok_message, start_upstream
from .teams import STAGGER, Side, Stores, private_stores, request, start_side

LOADS = {  # name: (streamed, concurrency)
    "stream16": (True, 16),
    "stream1": (True, 1),
    "nonstream8": (False, 8),
    "nonstream1": (False, 1),
}
AB_SIDES = ("off", "sqlite", "postgres")


@contextlib.contextmanager
def checkout(ref: str | None) -> Iterator[Path]:
    """This checkout (no ref), or `ref` in a temporary git worktree removed afterwards."""
    if ref is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="claude-proxy-ab-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), ref], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


@contextlib.contextmanager
def stores_for(names: list[str]) -> Iterator[list[Stores | None]]:
    """For each postgres side a database and a Redis database of its own, on one private PostgreSQL + Redis (two
    postgres sides share no keys, epoch or limits); None for the other sides. Both databases get this checkout's
    migrations: a `--ref` that expects another schema may not start against them."""
    if "postgres" not in names:
        yield [None for _ in names]
        return
    import psycopg

    from tests.support.stores import migrate  # importable: private_stores put the checkout on sys.path

    with private_stores(ROOT) as shared:
        base, redis_base = shared.postgres_url.rpartition("/")[0], shared.redis_url.rpartition("/")[0]
        out: list[Stores | None] = []
        for i, name in enumerate(names):
            if name != "postgres":
                out.append(None)
                continue
            with psycopg.connect(shared.postgres_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "claude_proxy_ab{i}"')
            migrate(f"{base}/claude_proxy_ab{i}")
            out.append(Stores(f"{base}/claude_proxy_ab{i}", f"{redis_base}/{i + 1}", shared.versions))
        yield out


def order(n: int) -> tuple[int, int]:
    """Round n's order: A first in even rounds, B first in odd ones."""
    return (0, 1) if n % 2 == 0 else (1, 0)


async def one_round(side: Side, stream: bool, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """(answers per second, their total times in ms) for one round against `side`."""
    port = side.server.port
    model = f"bench-c{STREAM_CHUNKS}-d0" if stream else "bench"
    check = ok_anthropic_stream(STREAM_CHUNKS) if stream else ok_message
    run = await closed_loop("127.0.0.1", port, request(port, side.key, stream=stream, model=model), check,
                            concurrency=concurrency, duration=seconds, warmup=1.0, stagger=STAGGER)
    ok = [r.total * 1000 for r in run.results if r.ok]
    if run.errors:
        raise SystemExit(f"{side.name}: {run.errors} failed requests ({run.error_kinds}); no comparison")
    return len(ok) / seconds, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--ref", help="git revision for side A (default: this checkout)")
    parser.add_argument("--sides", default="sqlite,sqlite", help="A,B: each off, sqlite or postgres (default sqlite,sqlite)")
    parser.add_argument("--load", choices=sorted(LOADS), default="stream16")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per round (after 1 s of warm-up)")
    parser.add_argument("--awake", action="store_true", help="keep every CPU busy at nice 19 (as benchmarks.run --awake)")
    args = parser.parse_args(argv)
    names = args.sides.split(",")
    if len(names) != 2 or any(n not in AB_SIDES for n in names):
        parser.error(f"--sides: two of {', '.join(AB_SIDES)}, comma-separated")
    stream, concurrency = LOADS[args.load]
    with (tempfile.TemporaryDirectory(prefix="claude-proxy-ab-run-") as tmp, checkout(args.ref) as tree_a,
          stores_for(names) as stores, cpus_awake(args.awake)):
        workdir = Path(tmp)
        upstream = start_upstream(workdir)
        sides: list[Side] = []
        try:
            for i, (name, root) in enumerate(zip(names, (tree_a, ROOT), strict=True)):
                sides.append(start_side(name, workdir / f"side{i}", upstream.port, stores[i], root=root))
            rates: list[list[float]] = [[], []]
            times: list[list[float]] = [[], []]

            async def rounds() -> None:
                for side in sides:  # connections, caches and the store's first pages warm before anything counts
                    await one_round(side, stream, concurrency, 2.0)
                for n in range(args.rounds):
                    for i in order(n):
                        rate, got = await one_round(sides[i], stream, concurrency, args.seconds)
                        rates[i].append(rate)
                        times[i].extend(got)

            asyncio.run(rounds())
        finally:
            for side in sides:
                side.server.stop()
            upstream.stop()
    labels = (f"A {args.ref or 'this checkout'} {names[0]}", f"B this checkout {names[1]}")
    print(f"{args.load}, {args.rounds} rounds of {args.seconds:g} s, alternating" + (", CPUs kept awake" if args.awake else ""))
    for i, label in enumerate(labels):
        ordered = sorted(times[i])
        print(f"  {label}: {sum(rates[i]) / len(rates[i]):,.1f}/s (rounds {', '.join(f'{r:,.0f}' for r in rates[i])}),"
              f" p50 {ordered[len(ordered) // 2]:.2f} ms")
    print(f"  B/A rate: {sum(rates[1]) / sum(rates[0]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
