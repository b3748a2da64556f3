"""`claude-proxy logs`: a crafted request log → exact lines, exact summary numbers, and --follow."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.cli import logs as logsummary
from claude_proxy.cli.logs import parse_since, percentile
from tests.support.proxy_server import ROOT

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=timezone.utc)


def rec(time: str, n: int, status: int = 200, **fields: Any) -> dict[str, Any]:
    return {
        "time": f"2026-01-10T{time}:00.000Z",
        "request_id": f"req_{n}",
        "endpoint": "messages",
        "provider": "deepseek",
        "status": status,
        **fields,
    }


SONNET = {"client_model": "claude-sonnet-5", "upstream_model": "big-model"}
HAIKU = {"client_model": "claude-haiku-4-5", "upstream_model": "fast-model"}
RECORDS = [
    rec(
        "09:00",
        1,
        latency_ms=1000.0,
        **SONNET,
        stream=False,
        input_tokens=100,
        output_tokens=20,
        cache_read_tokens=10,
        stop_reason="end_turn",
    ),
    rec(
        "11:00",
        2,
        latency_ms=2000.0,
        ttfb_ms=300.0,
        **SONNET,
        stream=True,
        input_tokens=200,
        output_tokens=50,
        cache_read_tokens=0,
        stop_reason="tool_use",
    ),
    rec(
        "11:10",
        3,
        latency_ms=100.0,
        **HAIKU,
        stream=False,
        input_tokens=10,
        output_tokens=5,
        cache_read_tokens=0,
        stop_reason="end_turn",
    ),
    rec(
        "11:20",
        4,
        429,
        latency_ms=50.0,
        **HAIKU,
        stream=False,
        error_type="rate_limit_error",
        error="deepseek: slow down",
    ),
    rec(
        "11:30",
        5,
        latency_ms=3000.0,
        ttfb_ms=400.0,
        **SONNET,
        stream=True,
        input_tokens=50,
        output_tokens=5,
        cache_read_tokens=None,
        stop_reason=None,
        error_type="api_error",
        error="deepseek: the stream was cut off",
    ),
    rec(
        "11:40",
        6,
        latency_ms=500.0,
        ttfb_ms=200.0,
        **SONNET,
        stream=True,
        input_tokens=None,
        output_tokens=None,
        stop_reason=None,
        error_type="client_disconnected",
        error="client closed the connection mid-stream",
    ),
    {**rec("11:45", 7, latency_ms=2.0, client_model="claude-sonnet-5", input_tokens=999), "endpoint": "count_tokens"},
    rec("11:50", 8, 400, latency_ms=1.0, error_type="invalid_request_error", error="body: not valid JSON"),
]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    lines = [json.dumps(r) for r in RECORDS]
    lines.insert(3, "{not json")  # a corrupt line
    lines.insert(6, "[1, 2]")  # JSON, but not a record
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n" + '{"time": "2026-01-10T11:5')  # the last line cut off mid-write
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = logsummary.run(list(argv), out, err, now=NOW)
    return code, out.getvalue(), err.getvalue()


def test_summary(log: Path) -> None:
    code, out, err = run("--file", str(log), "--summary")
    assert code == 0 and err == ""
    assert out == (
        "requests     8  (2026-01-10 09:00:00 → 2026-01-10 11:50:00 UTC)\n"
        "errors       3 (37.5%)\n"
        "cancelled    1 (the client hung up mid-stream)\n"
        "latency      p50 100 ms  p95 3000 ms\n"
        "first token  p50 300 ms  p95 400 ms (streams)\n"
        "\n"
        "client → provider/upstream model          requests       input      output  cache_read      errors\n"
        "claude-sonnet-5 → deepseek/big-model             4         350          75          10           1\n"
        "claude-haiku-4-5 → deepseek/fast-model           2          10           5           0           1\n"
        "- → -                                            1           0           0           0           1\n"
        "claude-sonnet-5 → -                              1           0           0           0           0\n"
        "total                                            8         360          80          10           3\n"
        "\n"
        "skipped 3 unreadable lines\n"
    )


def test_summary_since_a_duration(log: Path) -> None:
    code, out, _ = run("--file", str(log), "--summary", "--since", "2h")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "requests     7  (2026-01-10 11:00:00 → 2026-01-10 11:50:00 UTC)  since 2026-01-10 10:00:00 UTC"
    assert lines[1] == "errors       3 (42.9%)"
    assert lines[3] == "latency      p50 100 ms  p95 3000 ms"
    assert lines[7].split() == ["claude-sonnet-5", "→", "deepseek/big-model", "3", "250", "55", "0", "1"]
    assert lines[11].split() == ["total", "7", "260", "60", "0", "3"]


def test_summary_since_an_iso_time(log: Path) -> None:
    code, out, _ = run("--file", str(log), "--summary", "--since", "2026-01-10T11:25:00")
    assert code == 0
    lines = out.splitlines()
    assert lines[:4] == [
        "requests     4  (2026-01-10 11:30:00 → 2026-01-10 11:50:00 UTC)  since 2026-01-10 11:25:00 UTC",
        "errors       2 (50.0%)",
        "cancelled    1 (the client hung up mid-stream)",
        "latency      p50 2 ms  p95 3000 ms",  # 1, 2, 500, 3000
    ]


def test_summary_of_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, out, _ = run("--file", str(empty), "--summary")
    assert code == 0
    assert out == "requests     0\nerrors       0 (-)\nlatency      -\n"


def test_lines(log: Path) -> None:
    code, out, err = run("--file", str(log))
    assert code == 0
    assert out.splitlines() == [
        "2026-01-10 09:00:00  200  claude-sonnet-5 → deepseek/big-model  1000 ms  in 100 out 20 cache 10  end_turn  req_1",
        "2026-01-10 11:00:00  200  claude-sonnet-5 → deepseek/big-model  stream  2000 ms  first token 300 ms  "
        "in 200 out 50 cache 0  tool_use  req_2",
        "2026-01-10 11:10:00  200  claude-haiku-4-5 → deepseek/fast-model  100 ms  in 10 out 5 cache 0  end_turn  req_3",
        "2026-01-10 11:20:00  429  claude-haiku-4-5 → deepseek/fast-model  50 ms  rate_limit_error: deepseek: slow down  "
        "req_4",
        "2026-01-10 11:30:00  200  claude-sonnet-5 → deepseek/big-model  stream  3000 ms  first token 400 ms  "
        "in 50 out 5  api_error: deepseek: the stream was cut off  req_5",
        "2026-01-10 11:40:00  200  claude-sonnet-5 → deepseek/big-model  stream  500 ms  first token 200 ms  "
        "client_disconnected: client closed the connection mid-stream  req_6",
        "2026-01-10 11:45:00  200  count_tokens  claude-sonnet-5  2 ms  in 999  req_7",
        "2026-01-10 11:50:00  400  -  1 ms  invalid_request_error: body: not valid JSON  req_8",
    ]
    assert err == "(3 unreadable lines skipped)\n"


def test_last_n_since(log: Path) -> None:
    code, out, _ = run("--file", str(log), "-n", "2", "--since", "30m")
    assert code == 0
    assert [line.rsplit("  ", 1)[1] for line in out.splitlines()] == ["req_7", "req_8"]
    code, out, _ = run("--file", str(log), "-n", "0")
    assert (code, out) == (0, "")


def test_missing_file_and_bad_options(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    code, out, err = run("--file", str(missing), "--summary")
    assert (code, out) == (1, "")
    assert err == (
        f"claude-proxy logs: no request log at {missing} (start the proxy with --log-file, or pass --file PATH)\n"
    )
    code, _, err = run("--file", str(missing), "--since", "yesterday")
    assert code == 2
    assert err == (
        "claude-proxy logs: error: --since: expected a duration like 30m, 1h, 2d or an ISO time, got 'yesterday'\n"
    )
    code, _, err = run("--file", str(missing), "--summary", "--follow")
    assert (code, err) == (2, "claude-proxy logs: error: --follow and --summary do not go together\n")


def test_default_file_is_the_commands_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    path = tmp_path / "claude-proxy" / "requests.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(RECORDS[2]) + "\n")
    code, out, _ = run()
    assert code == 0 and out.split("  ")[-1] == "req_3\n"


def test_parse_since_and_percentile() -> None:
    assert parse_since("90s", NOW) == datetime(2026, 1, 10, 11, 58, 30, tzinfo=timezone.utc)
    assert parse_since("1.5h", NOW) == datetime(2026, 1, 10, 10, 30, tzinfo=timezone.utc)
    assert parse_since("2d", NOW) == datetime(2026, 1, 8, 12, 0, tzinfo=timezone.utc)
    assert parse_since("1w", NOW) == datetime(2026, 1, 3, 12, 0, tzinfo=timezone.utc)
    assert parse_since("2026-01-09", NOW) == datetime(2026, 1, 9, tzinfo=timezone.utc)
    assert parse_since("2026-01-09T10:00:00+02:00", NOW) == datetime(2026, 1, 9, 8, tzinfo=timezone.utc)
    assert parse_since("2026-01-09T10:00:00Z", NOW) == datetime(2026, 1, 9, 10, tzinfo=timezone.utc)
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([float(v) for v in range(1, 101)], 0.95) == 95.0
    assert percentile([float(v) for v in range(1, 101)], 0.50) == 50.0


def wait_for(buffer: io.StringIO, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in buffer.getvalue():
            return buffer.getvalue()
        time.sleep(0.01)
    raise AssertionError(f"{text!r} never appeared in:\n{buffer.getvalue()}")


def test_follow_prints_new_requests_and_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps(RECORDS[1]) + "\n")
    out, err, stop = io.StringIO(), io.StringIO(), threading.Event()
    thread = threading.Thread(
        target=logsummary.run, args=(["--file", str(path), "--follow", "-n", "1"], out, err, NOW, stop, 0.02)
    )
    thread.start()
    try:
        wait_for(out, "req_2")
        assert "req_1" not in out.getvalue()  # -n 1: only the last existing one
        with path.open("a") as handle:
            handle.write(json.dumps(RECORDS[2]) + "\n")
            handle.flush()
            wait_for(out, "req_3")
            handle.write(json.dumps(RECORDS[3])[:30])  # half a line: nothing yet
            handle.flush()
            time.sleep(0.1)
            assert "req_4" not in out.getvalue()
            handle.write(json.dumps(RECORDS[3])[30:] + "\nnot json\n")
        wait_for(out, "req_4")
        os.rename(path, tmp_path / "requests.jsonl.1")  # logrotate
        path.write_text(json.dumps(RECORDS[4]) + "\n")
        wait_for(out, "req_5")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert [line.rsplit("  ", 1)[1] for line in out.getvalue().splitlines()] == ["req_2", "req_3", "req_4", "req_5"]


def test_the_command_dispatches_to_logs(log: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "claude_proxy", "logs", "--file", str(log), "--summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("requests     8  (2026-01-10 09:00:00")
