"""One Claude Code session against claude-proxy and a scripted upstream — meant to run inside `unshare -n`.

Run by tests/test_claude_code.py as::

    unshare -n sh -c 'ip link set lo up && exec python tests/support/cc_scenario.py --claude BIN --out RESULT.json'

so the upstream, the proxy (gunicorn) and the CLI share a network namespace whose only interface is loopback:
whatever the CLI tries to reach besides 127.0.0.1 fails. The upstream answers the first chat completion with a
streamed Bash tool call (``echo <marker>``) and the second with text quoting the tool message it received. The
script writes everything the test asserts on to RESULT.json: the CLI's exit code and JSON output, the upstream's
recorded requests, the proxy's journal and output. It never asserts itself, so a failure shows all the evidence.

``--via-launcher`` runs the CLI through ``claude-proxy run`` instead of starting the proxy itself.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.support` importable
    sys.path.insert(0, str(ROOT))

from tests.support.proxy_server import ProxyServer, write_config  # noqa: E402
from tests.support.upstream import (  # noqa: E402
    FakeUpstream,
    Json,
    RecordedRequest,
    Reset,
    Response,
    Stream,
    chunk,
    completion,
    tool_call_delta,
    usage_chunk,
)

UPSTREAM_MODEL = "scripted-model"
SUBAGENT_MODEL = "scripted-subagent-model"  # what `[routes] subagent` sends subagent requests to
SUBAGENT_REPORT = "hi from the subagent"
UPSTREAM_KEY = "sk-scenario-upstream-key-0123456789"
TOOL_CALL_ID = "call_cc_scenario_1"
# (prompt_tokens, completion_tokens, cached_tokens) the upstream reports for turn 1 and turn 2.
USAGE = [(1234, 56, 0), (2345, 78, 1000)]


def _tool_turn(stream: bool, marker: str, agent: bool = False) -> Response:
    """Turn 1: Bash `echo <marker> | tr a-z A-Z` (output ≠ command text), arguments split over several deltas;
    with `agent`, the Agent tool instead (a subagent that reports back)."""
    prompt, completion_tokens, cached = USAGE[0]
    arguments = json.dumps({"command": f"echo {marker} | tr a-z A-Z", "description": "Print the marker"})
    name = "Agent" if agent else "Bash"
    if agent:
        arguments = json.dumps(
            {"description": "Say hi", "prompt": "Say hi.", "subagent_type": "Explore", "run_in_background": False}
        )
    if not stream:
        call = {"id": TOOL_CALL_ID, "type": "function", "function": {"name": name, "arguments": arguments}}
        body = completion(
            "Running it.", tool_calls=[call], finish_reason="tool_calls", model=UPSTREAM_MODEL,
            prompt_tokens=prompt, completion_tokens=completion_tokens,
        )  # fmt: skip
        return Json(body)
    cut = [0, 5, 17, len(arguments) // 2, len(arguments)]
    items: list[Any] = [chunk(role="assistant", content="", model=UPSTREAM_MODEL)]
    items.append(chunk("Running it.", model=UPSTREAM_MODEL))
    items.append(
        chunk(tool_calls=[tool_call_delta(0, id=TOOL_CALL_ID, name=name, arguments="")], model=UPSTREAM_MODEL)
    )
    for start, end in itertools.pairwise(cut):
        items.append(chunk(tool_calls=[tool_call_delta(0, arguments=arguments[start:end])], model=UPSTREAM_MODEL))
    items.append(chunk(finish_reason="tool_calls", model=UPSTREAM_MODEL))
    items.append(usage_chunk(prompt, completion_tokens, cached, model=UPSTREAM_MODEL))
    return Stream(items)


def _answer_turn(stream: bool, tool_output: str) -> Response:
    """Turn 2: text that quotes what the tool message carried (so the test sees the tool really ran)."""
    prompt, completion_tokens, cached = USAGE[1]
    text = f"The command printed: {tool_output.strip()}"
    if not stream:
        body = completion(text, model=UPSTREAM_MODEL, prompt_tokens=prompt, completion_tokens=completion_tokens)
        body["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
        return Json(body)
    pieces = [text[:10], text[10:25], text[25:]]
    items: list[Any] = [chunk(role="assistant", content="", model=UPSTREAM_MODEL)]
    items += [chunk(piece, model=UPSTREAM_MODEL) for piece in pieces if piece]
    items.append(chunk(finish_reason="stop", model=UPSTREAM_MODEL))
    items.append(usage_chunk(prompt, completion_tokens, cached, model=UPSTREAM_MODEL))
    return Stream(items)


def _subagent_turn(stream: bool) -> Response:
    """The subagent's one turn: a plain report, no tool call."""
    if not stream:
        return Json(completion(SUBAGENT_REPORT, model=SUBAGENT_MODEL, prompt_tokens=300, completion_tokens=5))
    items: list[Any] = [chunk(role="assistant", content="", model=SUBAGENT_MODEL), chunk(SUBAGENT_REPORT)]
    items += [chunk(finish_reason="stop", model=SUBAGENT_MODEL), usage_chunk(300, 5, model=SUBAGENT_MODEL)]
    return Stream(items)


def _broken_stream() -> Response:
    """A stream that opens, then the connection is reset before any content: the proxy ends it with an SSE error."""
    return Stream([chunk(role="assistant", content="", model=UPSTREAM_MODEL), Reset()])


def make_handler(marker: str, scenario: str) -> Any:
    """The scripted upstream: a tool call while no tool message is in the conversation, then the answer."""
    broken: list[int] = []

    def handler(req: RecordedRequest) -> Response:
        if req.method != "POST" or not req.path.rstrip("/").endswith("/chat/completions"):
            return Json({"error": {"message": f"no route for {req.method} {req.path}", "type": "not_found"}}, 404)
        messages = req.json.get("messages", []) if isinstance(req.json, dict) else []
        tools = [m for m in messages if isinstance(m, dict) and m.get("role") == "tool"]
        stream = req.stream and scenario != "json"  # "json": a provider that ignores `stream: true`
        if req.json.get("model") == SUBAGENT_MODEL:
            return _subagent_turn(stream)
        if not tools:
            if scenario == "fallback" and req.stream and not broken:
                broken.append(req.index)
                return _broken_stream()
            return _tool_turn(stream, marker, agent=scenario == "subagent")
        content = tools[-1].get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return _answer_turn(stream, str(content))

    return handler


def request_record(req: RecordedRequest) -> dict[str, Any]:
    return {
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "headers": dict(req.headers.items()),
        "json": req.json,
        "body_bytes": len(req.body),
    }


def cli_env(home: Path, base_url: str | None) -> dict[str, str]:
    """A clean environment for the CLI: no inherited ANTHROPIC_* settings, a throwaway HOME, side traffic off."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "ANTHROPIC_API_KEY": "dummy-client-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    if base_url:
        env["ANTHROPIC_BASE_URL"] = base_url
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def _text(out: str | bytes | None) -> str:
    return out.decode() if isinstance(out, bytes) else out or ""


def run_cli(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run the CLI (or the launcher) to its end or `timeout`: its return code (None when it timed out), output,
    seconds taken and the JSON it printed (`--output-format json`), if any."""
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        out: dict[str, Any] = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    except subprocess.TimeoutExpired as exc:
        out = {"returncode": None, "timeout": timeout, "stdout": _text(exc.stdout), "stderr": _text(exc.stderr)}
    out["cli_seconds"] = round(time.monotonic() - started, 2)
    try:
        out["cli_json"] = json.loads(out["stdout"])
    except (TypeError, ValueError):
        out["cli_json"] = None
    return out


def proxy_record(proxy: ProxyServer, upstream: FakeUpstream) -> dict[str, Any]:
    """After the CLI: the proxy stopped, its journal and output, and every request the upstream saw."""
    proxy.stop()
    return {"journal": proxy.journal(), "proxy_output": proxy.output(),
            "upstream_requests": [request_record(r) for r in upstream.requests], "upstream_errors": upstream.errors}


def run(args: argparse.Namespace) -> dict[str, Any]:
    marker = args.marker or f"cc-marker-{secrets.token_hex(6)}"
    work = Path(tempfile.mkdtemp(prefix="cc-scenario-"))
    home, project = work / "home", work / "project"
    home.mkdir()
    project.mkdir()
    prompt = "Run `echo` with the marker using the Bash tool, then tell me what it printed."
    claude_args = ["-p", prompt, "--output-format", "json", "--allowedTools", "Bash"]
    if args.scenario == "subagent":
        prompt = "Ask a subagent to say hi, then tell me what it reported."
        claude_args = ["-p", prompt, "--output-format", "json", "--allowedTools", "Agent"]
    result: dict[str, Any] = {"marker": marker, "scenario": args.scenario, "usage_scripted": USAGE}
    with FakeUpstream() as upstream:
        upstream.handler = make_handler(marker, args.scenario)
        config: dict[str, Any] = {
            "provider": {"name": "custom", "base_url": upstream.url, "api_key": UPSTREAM_KEY},
            "models": {"*": UPSTREAM_MODEL},
            "upstream": {"read_timeout": 30.0},
        }
        if args.scenario == "subagent":  # routed by Claude Code's own headers
            config["routes"] = {"subagent": SUBAGENT_MODEL, "auxiliary": SUBAGENT_MODEL}
        proxy: ProxyServer | None = None
        try:
            if args.via_launcher:
                config_path = write_config(work / "claude-proxy.toml", config)
                journal_path = work / "requests.jsonl"
                env = cli_env(home, None)
                env["CLAUDE_BIN"] = args.claude
                env["PYTHONPATH"] = str(ROOT)
                command = [sys.executable, "-m", "claude_proxy", "run", "-c", str(config_path)]
                command += ["--log-file", str(journal_path), "--", *claude_args]
            else:
                proxy = ProxyServer(config).start()
                env = cli_env(home, proxy.url)
                if args.scenario == "subagent":
                    env["CLAUDE_CODE_GATEWAY_HINT_HEADERS"] = "1"
                command = [args.claude, *claude_args]
            result.update(run_cli(command, project, env, args.timeout))
        finally:
            if proxy is not None:
                result.update(proxy_record(proxy, upstream))
            else:
                if args.via_launcher:
                    journal_file = work / "requests.jsonl"
                    lines = journal_file.read_text().splitlines() if journal_file.exists() else []
                    result["journal"] = [json.loads(line) for line in lines if line.strip()]
                result["upstream_requests"] = [request_record(r) for r in upstream.requests]
                result["upstream_errors"] = upstream.errors
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claude", required=True, help="the claude executable")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--marker", help="what the tool call echoes (random by default)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds the CLI may take")
    parser.add_argument(
        "--scenario",
        choices=["tool", "fallback", "json", "subagent"],
        default="tool",
        help="fallback: the first stream breaks mid-way, so the CLI must retry without streaming; "
        "json: the upstream answers streaming requests with plain JSON completions; "
        "subagent: the model calls the Agent tool, with hint headers on and a [routes] subagent",
    )
    parser.add_argument("--via-launcher", action="store_true", help="run the CLI through `claude-proxy run`")
    args = parser.parse_args(argv)
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
