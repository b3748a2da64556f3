"""A Claude Code session that outgrows its provider's context window — meant to run inside `unshare -n`.

Run by tests/e2e/test_claude_code_overflow.py as::

    unshare -n sh -c 'ip link set lo up && exec python tests/support/cc_overflow_scenario.py --claude BIN --out R.json'

The scripted OpenAI-compatible upstream has a small context window and counts a request's prompt the way a
tokenizer roughly does (UTF-8 bytes of its messages and tools / 4). The session: the model runs a Bash command
whose output is large; the next main-loop request no longer fits and the upstream answers it with OpenAI's own
overflow error (400 `context_length_exceeded`). What happens next is Claude Code's: it reads the proxy's
answer, compacts (a summarisation request, recognised by the instruction Claude Code puts in its last user
message) and re-sends the turn on the summary, which the upstream answers with the final text.

The script writes what the test asserts on to RESULT.json (the CLI's exit code and JSON output, every upstream
request with the upstream's verdict on it, the proxy's journal and output) and never asserts itself.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.support` importable
    sys.path.insert(0, str(ROOT))

from tests.support.cc_scenario import UPSTREAM_KEY, UPSTREAM_MODEL, cli_env, proxy_record, run_cli  # noqa: E402
from tests.support.proxy_server import ProxyServer  # noqa: E402
from tests.support.upstream import (  # noqa: E402
    FakeUpstream,
    Json,
    RecordedRequest,
    Response,
    Stream,
    chunk,
    tool_call_delta,
    usage_chunk,
)

TOOL_CALL_ID = "call_cc_overflow_1"
# Claude Code 2.1.332's summarisation instruction starts with this (the last user message of a compaction).
SUMMARY_INSTRUCTION = "CRITICAL: Respond with TEXT ONLY"
FINAL_PREFIX = "Done: the summary says"
COMPACTION_MODEL = "scripted-large-window-model"  # `[routes] compaction`: no window limit upstream


def prompt_tokens(body: dict[str, Any]) -> int:
    """The upstream's own count: UTF-8 bytes of messages and tools / 4 (the usual rough tokenizer ratio)."""
    counted = {"messages": body.get("messages"), "tools": body.get("tools")}
    return len(json.dumps(counted, ensure_ascii=False).encode()) // 4


def overflow_error(tokens: int, window: int) -> Json:
    """OpenAI's 400 for a prompt over the window, verbatim in shape (error.message/type/param/code)."""
    message = (
        f"This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} "
        "tokens. Please reduce the length of the messages."
    )
    error = {
        "message": message,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return Json({"error": error}, 400)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _stream(text: str, tokens: int) -> Stream:
    items: list[Any] = [chunk(role="assistant", content="", model=UPSTREAM_MODEL)]
    items += [chunk(text[i : i + 40], model=UPSTREAM_MODEL) for i in range(0, len(text), 40)]
    items += [chunk(finish_reason="stop", model=UPSTREAM_MODEL), usage_chunk(tokens, 20, model=UPSTREAM_MODEL)]
    return Stream(items)


def _tool_turn(round_: int, per_round: int, tokens: int) -> Stream:
    """Round n prints the next `per_round` numbers: every round adds about the same to the conversation."""
    command = f"seq {round_ * per_round + 1} {(round_ + 1) * per_round}"
    arguments = json.dumps({"command": command, "description": f"Print numbers, part {round_ + 1}"})
    call = tool_call_delta(0, id=f"{TOOL_CALL_ID}_{round_}", name="Bash", arguments=arguments)
    items: list[Any] = [chunk(role="assistant", content="", model=UPSTREAM_MODEL), chunk(tool_calls=[call])]
    items += [chunk(finish_reason="tool_calls", model=UPSTREAM_MODEL), usage_chunk(tokens, 30, model=UPSTREAM_MODEL)]
    return Stream(items)


def make_handler(window: int, rounds: int, per_round: int, summary: str, verdicts: list[dict[str, Any]]) -> Any:
    """The scripted provider: overflow → its 400; summarisation request → the summary; a conversation with no
    tool result yet → the Bash call; a conversation that carries the summary → the final answer."""

    def handler(req: RecordedRequest) -> Response:
        if req.method != "POST" or not req.path.rstrip("/").endswith("/chat/completions"):
            return Json({"error": {"message": f"no route for {req.method} {req.path}", "type": "not_found"}}, 404)
        body = req.json if isinstance(req.json, dict) else {}
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        tokens = prompt_tokens(body)
        last_user = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        everything = "\n".join(_text(m.get("content")) for m in messages)
        if tokens > window and body.get("model") == UPSTREAM_MODEL:
            kind, answer = "overflow", overflow_error(tokens, window)
        elif SUMMARY_INSTRUCTION in last_user:
            kind, answer = "summary", _stream(f"<analysis>Reviewed.</analysis>\n<summary>{summary}</summary>", tokens)
        elif summary in everything:
            tool_output = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "tool"), "")
            last = tool_output.split()[-1] if tool_output.split() else "nothing"
            kind, answer = "final", _stream(f"{FINAL_PREFIX} {summary}; the last number printed was {last}.", tokens)
        elif (done := sum(m.get("role") == "tool" for m in messages)) < rounds:
            kind, answer = "tool", _tool_turn(done, per_round, tokens)
        else:
            kind, answer = "unexpected", _stream("The conversation went on without compacting.", tokens)
        verdicts.append({"index": req.index, "kind": kind, "tokens": tokens, "model": body.get("model")})
        return answer

    return handler


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cc-overflow-"))
    home, project = work / "home", work / "project"
    home.mkdir()
    project.mkdir()
    summary = f"summary-marker-{secrets.token_hex(6)}"
    prompt = f"Print the numbers 1 to {args.rounds * args.per_round} with the Bash tool (`seq`), {args.per_round} at a time, then tell me what you saw."
    claude_args = ["-p", prompt, "--output-format", "json", "--allowedTools", "Bash", *args.cli_arg]
    verdicts: list[dict[str, Any]] = []
    result: dict[str, Any] = {"summary": summary, "window": args.window, "verdicts": verdicts}
    with FakeUpstream() as upstream:
        upstream.handler = make_handler(args.window, args.rounds, args.per_round, summary, verdicts)
        config: dict[str, Any] = {
            "provider": {"name": "custom", "base_url": upstream.url, "api_key": UPSTREAM_KEY},
            "models": {"*": UPSTREAM_MODEL},
            "upstream": {"read_timeout": 30.0},
        }
        if args.compaction_route:  # Claude Code's summarisation requests to a model with a larger window
            config["routes"] = {"compaction": COMPACTION_MODEL}
        if args.context_window:
            config["context_windows"] = {UPSTREAM_MODEL: args.context_window}
        proxy = ProxyServer(config).start()
        try:
            env = cli_env(home, proxy.url)
            env["CLAUDE_CODE_GATEWAY_HINT_HEADERS"] = "1"
            result.update(run_cli([args.claude, *claude_args], project, env, args.timeout))
        finally:
            result.update(proxy_record(proxy, upstream))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claude", required=True, help="the claude executable")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--window", type=int, default=12000, help="the upstream's context window (its tokens)")
    parser.add_argument("--context-window", type=int, default=0, help="[context_windows] for the model, if any")
    parser.add_argument("--rounds", type=int, default=2, help="Bash calls before the model answers")
    parser.add_argument("--per-round", type=int, default=3000, help="numbers each Bash call prints")
    parser.add_argument("--compaction-route", action="store_true", help="[routes] compaction = a large model")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds the CLI may take")
    parser.add_argument("--cli-arg", action="append", default=[], help="one more argument for claude")
    args = parser.parse_args(argv)
    Path(args.out).write_text(json.dumps(run(args), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
