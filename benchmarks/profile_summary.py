"""Summarise py-spy raw (collapsed) stacks: where the samples are, by function.

`python -m benchmarks.profile_summary PROFILE.txt [...] [--top 30] [--under FUNC]`
prints the functions with the most samples on-CPU (self) and anywhere on the stack
(inclusive), as a share of all samples. `--under` keeps only stacks through FUNC.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

LINE = re.compile(r" \((.*?):\d+\)$")


def frames(stack: str) -> list[str]:
    return [LINE.sub(r" (\1)", frame) for frame in stack.split(";")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--under", default="", help="only stacks with a frame containing this text")
    args = parser.parse_args(argv)
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for name in args.files:
        with open(name) as fh:
            for line in fh:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack or (args.under and args.under not in stack):
                    continue
                n = int(count)
                fs = frames(stack)
                total += n
                own[fs[-1]] += n
                for f in set(fs):
                    incl[f] += n
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples\n\nself:")
    for f, n in own.most_common(args.top):
        print(f"  {n / total:6.1%}  {f}")
    print("\ninclusive:")
    for f, n in incl.most_common(args.top):
        print(f"  {n / total:6.1%}  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
