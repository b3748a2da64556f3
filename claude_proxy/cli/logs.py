"""`claude-proxy logs`: read the JSONL request log — one line per request, a summary, or follow it.

    claude-proxy logs                      every request, one readable line each
    claude-proxy logs --since 1h -n 20     the last 20 of the past hour
    claude-proxy logs --follow             like tail -f (survives the file being rotated)
    claude-proxy logs --summary --since 1d requests, error rate, latency percentiles, tokens per model

Times are the log's own (UTC). A line that is not a JSON object (a crash mid-write, an editor)
is skipped and counted, never fatal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any

from claude_proxy.cli.main import PROG, default_log_file
from claude_proxy.config.prices import format_usd, micro_usd
from claude_proxy.pipeline.outcome import CLIENT_DISCONNECTED, Outcome

NAME = f"{PROG} logs"
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
CANCELLED = CLIENT_DISCONNECTED


class UsageError(Exception):
    """A bad option value: one line, exit 2."""


def parse_since(text: str, now: datetime) -> datetime:
    """`90s`, `30m`, `1h`, `2d`, `1w` before `now`, or an ISO date/time (UTC unless it says otherwise)."""
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since: expected a duration like 30m, 1h, 2d or an ISO time, got {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def record_time(record: Outcome) -> datetime | None:
    value = record.time
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass
class Records:
    """The log's records (oldest first) and how many lines could not be read."""

    items: list[Outcome] = field(default_factory=list)
    skipped: int = 0


def parse_line(line: str) -> Outcome | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return Outcome.from_record(record) if isinstance(record, dict) else None


def read_records(lines: Iterable[str], since: datetime | None = None) -> Records:
    out = Records()
    for line in lines:
        if not line.strip():
            continue
        record = parse_line(line)
        if record is None:
            out.skipped += 1
            continue
        if since is not None:
            when = record_time(record)
            if when is None or when < since:
                continue
        out.items.append(record)
    return out


# -- one line per request ------------------------------------------------------------------------------------------


def _number(value: Any) -> int | float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ms(value: Any) -> str:
    number = _number(value)
    return f"{number:.0f} ms" if number is not None else ""


def is_error(record: Outcome) -> bool:
    """A failed request: an error status, or a stream that ended in an error (a client hanging up is not one)."""
    status = _number(record.status)
    if status is not None and status >= 400:
        return True
    return bool(record.error_type) and record.error_type != CANCELLED


def format_record(record: Outcome) -> str:
    """One request as one readable line."""
    when = record.time
    stamp = when[:19].replace("T", " ") if isinstance(when, str) else "?"
    model = str(record.client_model or "-")
    if record.upstream_model:
        provider = f"{record.provider}/" if record.provider else ""
        model += f" → {provider}{record.upstream_model}"
    parts = [stamp, str(record.status if record.status is not None else "?").rjust(3)]
    if record.endpoint not in ("", "messages"):
        parts.append(str(record.endpoint))
    parts.append(model)
    if record.stream:
        parts.append("stream")
    parts.append(_ms(record.latency_ms) or "-")
    if record.ttfb_ms is not None:
        parts.append(f"first token {_ms(record.ttfb_ms)}")
    tokens = [
        f"{label} {getattr(record, key)}"
        for label, key in (("in", "input_tokens"), ("out", "output_tokens"), ("cache", "cache_read_tokens"))
        if _number(getattr(record, key)) is not None
    ]
    if tokens:
        parts.append(" ".join(tokens))
    if record.error_type:
        message = str(record.error or "")
        message = message if len(message) <= 160 else message[:157] + "..."
        parts.append(f"{record.error_type}: {message}" if message else str(record.error_type))
    elif record.stop_reason:
        parts.append(str(record.stop_reason))
    if record.request_id:
        parts.append(str(record.request_id))
    return "  ".join(parts)


# -- the summary ---------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (a value that actually occurred)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class ModelRow:
    requests: int = 0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    errors: int = 0
    cost: int = 0  # micro-USD, summed as integers (the journal's cost_usd has six decimals)
    unpriced: int = 0


def summarize(records: Records, since: datetime | None = None) -> str:
    items = records.items
    lines: list[str] = []
    times = [t for t in (record_time(r) for r in items) if t is not None]
    span = ""
    if times:
        first, last = min(times), max(times)
        span = f"  ({first:%Y-%m-%d %H:%M:%S} → {last:%Y-%m-%d %H:%M:%S} UTC)"
    if since is not None:
        span += f"  since {since.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    errors = sum(1 for r in items if is_error(r))
    cancelled = sum(1 for r in items if r.error_type == CANCELLED and not is_error(r))
    rate = f"{100.0 * errors / len(items):.1f}%" if items else "-"
    latencies = [float(v) for r in items if (v := _number(r.latency_ms)) is not None]
    ttfbs = [float(v) for r in items if (v := _number(r.ttfb_ms)) is not None]

    def pair(values: list[float]) -> str:
        p50, p95 = percentile(values, 0.50), percentile(values, 0.95)
        return "-" if p50 is None or p95 is None else f"p50 {p50:.0f} ms  p95 {p95:.0f} ms"

    lines.append(f"requests     {len(items)}{span}")
    lines.append(f"errors       {errors} ({rate})")
    if cancelled:
        lines.append(f"cancelled    {cancelled} (the client hung up mid-stream)")
    lines.append(f"latency      {pair(latencies)}")
    if ttfbs:
        lines.append(f"first token  {pair(ttfbs)} (streams)")
    rows: dict[str, ModelRow] = {}
    costed = any("cost_usd" in r.extra or "cost_unpriced" in r.extra for r in items)
    for r in items:
        upstream = str(r.upstream_model or "-")
        if r.upstream_model and r.provider:
            upstream = f"{r.provider}/{upstream}"
        key = f"{r.client_model or '-'} → {upstream}"
        row = rows.setdefault(key, ModelRow())
        row.requests += 1
        row.errors += is_error(r)
        if (r.endpoint or "messages") == "messages":  # count_tokens' figures are estimates, nothing was spent
            row.input += int(_number(r.input_tokens) or 0)
            row.output += int(_number(r.output_tokens) or 0)
            row.cache_read += int(_number(r.cache_read_tokens) or 0)
            cost = micro_usd(r.extra.get("cost_usd"))
            if cost is not None:
                row.cost += cost
            elif r.extra.get("cost_unpriced") is True:
                row.unpriced += 1
    if rows:
        totals = ModelRow(
            sum(x.requests for x in rows.values()),
            sum(x.input for x in rows.values()),
            sum(x.output for x in rows.values()),
            sum(x.cache_read for x in rows.values()),
            sum(x.errors for x in rows.values()),
            sum(x.cost for x in rows.values()),
            sum(x.unpriced for x in rows.values()),
        )
        ordered = sorted(rows.items(), key=lambda kv: (-kv[1].requests, kv[0]))
        width = max(len("client → provider/upstream model"), *(len(k) for k in rows))
        header: tuple[str, ...] = ("requests", "input", "output", "cache_read", "errors")
        if costed:  # a column only once requests are priced ([prices] in the config)
            header += ("cost_usd", "unpriced")
        lines.append("")
        cells = "".join(f"  {h:>12}" if h == "cost_usd" else f"  {h:>10}" for h in header)
        lines.append("client → provider/upstream model".ljust(width) + cells)
        for name, row in [*ordered, ("total", totals)]:
            values: tuple[Any, ...] = (row.requests, row.input, row.output, row.cache_read, row.errors)
            line = name.ljust(width) + "".join(f"  {v:>10}" for v in values)
            if costed:
                line += f"  {format_usd(row.cost):>12}  {row.unpriced:>10}"
            lines.append(line)
        if costed and totals.unpriced:
            lines.append(
                f"({totals.unpriced} request{'s' if totals.unpriced != 1 else ''} on models without a price "
                "are not in cost_usd: add them to [prices])"
            )
    if records.skipped:
        lines.append("")
        lines.append(f"skipped {records.skipped} unreadable line{'s' if records.skipped != 1 else ''}")
    return "\n".join(lines)


# -- following ------------------------------------------------------------------------------------------------------


def follow(
    path: str,
    out: IO[str],
    stop: threading.Event | None = None,
    poll: float = 0.25,
    offset: int = 0,
    inode: int | None = None,
) -> None:
    """Print each record appended to `path` (from byte `offset` of the file `inode`) until `stop` is set.

    When the file is replaced (logrotate) or truncated, the new content is read from its start;
    a file that does not exist yet is waited for.
    """
    stop = stop or threading.Event()
    handle: IO[bytes] | None = None
    buffer = b""
    while not stop.is_set():
        if handle is None:
            try:
                handle = open(path, "rb")  # kept open while following
            except OSError:
                stop.wait(poll)
                continue
            current = os.fstat(handle.fileno()).st_ino
            if current == inode and offset <= os.fstat(handle.fileno()).st_size:
                handle.seek(offset)
            inode, buffer = current, b""
        chunk = handle.read()
        if chunk:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                record = parse_line(line.decode("utf-8", "replace")) if line.strip() else None
                if record is not None:
                    print(format_record(record), file=out, flush=True)
            continue
        try:
            status = os.stat(path)
            rotated = status.st_ino != inode or status.st_size < handle.tell()
        except OSError:
            rotated = True
        if rotated:  # moved away or truncated: read the new file from its start
            handle.close()
            handle, offset = None, 0
            continue
        stop.wait(poll)
    if handle is not None:
        handle.close()


def read_file(path: str) -> tuple[list[str], int, int]:
    """The file's complete lines, the byte offset just after the last one, and the file's inode."""
    with open(path, "rb") as handle:
        data = handle.read()
        inode = os.fstat(handle.fileno()).st_ino
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode("utf-8", "replace").splitlines()
    if data[end:].strip():  # a last line still being written (or cut off) is not a record yet
        lines.append(data[end:].decode("utf-8", "replace"))
    return lines, end, inode


# -- the command ----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=NAME,
        description="Show, follow or summarise claude-proxy's JSONL request log.",
    )
    parser.add_argument("--file", metavar="PATH", help=f"the log (default: {default_log_file()})")
    parser.add_argument("--summary", action="store_true", help="requests, error rate, latency and tokens per model")
    parser.add_argument("--since", metavar="WHEN", help="only requests since: 30m, 1h, 2d, 1w or an ISO time (UTC)")
    parser.add_argument("-n", "--lines", type=int, metavar="N", help="only the last N requests (--follow: default 10)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing requests as they are logged")
    return parser


def run(
    argv: Sequence[str],
    out: IO[str],
    err: IO[str],
    now: datetime | None = None,
    stop: threading.Event | None = None,
    poll: float = 0.25,
) -> int:
    """The command; `now`, `stop` and `poll` let tests drive the clock and end --follow."""
    args = build_parser().parse_args(list(argv))
    path = args.file or default_log_file()
    now = now or datetime.now(timezone.utc)
    try:
        if args.follow and args.summary:
            raise UsageError("--follow and --summary do not go together")
        if args.lines is not None and args.lines < 0:
            raise UsageError(f"-n/--lines must be 0 or more, got {args.lines}")
        since = parse_since(args.since, now) if args.since else None
    except UsageError as exc:
        print(f"{NAME}: error: {exc}", file=err)
        return 2
    exists = os.path.isfile(path)
    if not exists and not args.follow:
        print(f"{NAME}: no request log at {path} (start the proxy with --log-file, or pass --file PATH)", file=err)
        return 1
    lines: list[str] = []
    offset, inode = 0, None
    try:
        if exists:
            lines, offset, inode = read_file(path)
    except OSError as exc:
        print(f"{NAME}: cannot read {path}: {exc.strerror}", file=err)
        return 1
    records = read_records(lines, since)
    if args.summary:
        print(summarize(records, since), file=out)
        return 0
    limit = args.lines if args.lines is not None else (10 if args.follow else None)
    shown = records.items
    if limit is not None:
        shown = shown[-limit:] if limit else []
    for record in shown:
        print(format_record(record), file=out)
    if records.skipped:
        print(f"({records.skipped} unreadable line{'s' if records.skipped != 1 else ''} skipped)", file=err)
    out.flush()
    if args.follow:
        if not exists:
            print(f"{NAME}: waiting for {path} to appear…", file=err, flush=True)
        try:
            follow(path, out, stop, poll, offset=offset, inode=inode)
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
