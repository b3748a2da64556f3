"""The real Claude Code CLI outgrowing its provider's context window, through claude-proxy (issue 15, item 5).

What 2.1.332 does on an overflow (read from its bundle and seen here): an API error whose message is Anthropic's
`prompt is too long: N tokens > M maximum` (or one of the provider wordings it lists) becomes the assistant error
"Prompt is too long"; its main loop then compacts reactively, also in `-p` mode: one summarisation request (the
history before the newest API round, then a user message starting "CRITICAL: Respond with TEXT ONLY"), then the
same turn again on "This session is being continued from a previous conversation that ran out of context. …
Summary: …" plus the newest round verbatim. The N and M it reads from the message size how much it cuts when the
summarisation request is itself too long. With nothing older than the newest round to summarise it gives up and
shows the user "Prompt is too long" (exit 1, `terminal_reason: prompt_too_long`).

The scenario (tests/support/cc_overflow_scenario.py) runs inside a loopback-only network namespace, like
tests/e2e/test_claude_code.py, whose fixtures it shares.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_claude_code as cc_e2e
from tests.support.cc_overflow_scenario import (
    COMPACTION_MODEL,
    FINAL_PREFIX,
    SUMMARY_INSTRUCTION,
)
from tests.support.cc_scenario import UPSTREAM_MODEL

pytestmark = [pytest.mark.claude_code, pytest.mark.e2e]

# The loopback-only namespace check and the installed CLI, shared with test_claude_code.py (fixtures, by name).
netns = cc_e2e.netns
claude = cc_e2e.claude
_in_namespace_command = cc_e2e._in_namespace_command
assert_upstream_requests = cc_e2e.assert_upstream_requests

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "support" / "cc_overflow_scenario.py"
WINDOW = 20_000  # the upstream's window: two rounds of `seq` output fit, the request after them does not
CONTINUED = "This session is being continued from a previous conversation that ran out of context."


def run_overflow(claude: Path, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "result.json"
    command = _in_namespace_command(sys.executable, str(SCENARIO), "--claude", str(claude), "--out", str(out), *extra)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and out.exists(), f"scenario failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _describe(result: dict[str, Any]) -> str:
    kinds = [(v["kind"], v["tokens"], v["model"]) for v in result["verdicts"]]
    journal = [(e["status"], e.get("route"), e.get("error")) for e in result["journal"]]
    return (
        f"exit={result.get('returncode')}\nupstream verdicts={kinds}\njournal={journal}\n"
        f"stdout={result.get('stdout', '')[:2000]}\nstderr={result.get('stderr', '')[:2000]}\n"
        f"proxy output={result.get('proxy_output', '')[-2000:]}"
    )


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _last_user(body: dict[str, Any]) -> str:
    return next(_text(m.get("content")) for m in reversed(body["messages"]) if m["role"] == "user")


def _finished(result: dict[str, Any]) -> dict[str, Any]:
    """The CLI ended the task normally with the model's answer, written on the summary and the kept round."""
    why = _describe(result)
    output = result["cli_json"]
    assert result["returncode"] == 0 and output is not None, why
    assert output["is_error"] is False and output["terminal_reason"] == "completed", why
    assert output["result"].startswith(f"{FINAL_PREFIX} {result['summary']};"), why
    assert "Traceback" not in result["proxy_output"], result["proxy_output"]
    assert result["upstream_errors"] == []
    return output


def _check_compaction(summary_request: dict[str, Any], final_request: dict[str, Any], summary: str) -> None:
    """The summarisation request is Claude Code's (its instruction last, no new tool round); the retried turn
    starts from the summary the upstream wrote."""
    assert _last_user(summary_request).startswith(SUMMARY_INSTRUCTION), _last_user(summary_request)[:200]
    first_user = next(_text(m.get("content")) for m in final_request["messages"] if m["role"] == "user")
    assert first_user.startswith(CONTINUED) and summary in first_user, first_user[:500]
    assert not any(SUMMARY_INSTRUCTION in _text(m.get("content")) for m in final_request["messages"])


def test_provider_overflow_makes_claude_code_compact_and_finish(claude: Path, tmp_path: Path) -> None:
    """OpenAI's `context_length_exceeded` 400 reaches the CLI as Anthropic's `prompt is too long: N tokens > M
    maximum` with the provider's numbers; the CLI summarises, re-sends the turn on the summary and finishes.
    One upstream call per client request: an overflow is never retried with a smaller max_tokens."""
    result = run_overflow(claude, tmp_path, "--window", str(WINDOW))
    why = _describe(result)
    output = _finished(result)
    verdicts = result["verdicts"]
    assert [v["kind"] for v in verdicts] == ["tool", "tool", "overflow", "summary", "final"], why
    assert output["result"].endswith("the last number printed was 6000."), why  # the newest round kept verbatim

    journal = result["journal"]
    overflowed = verdicts[2]["tokens"]
    assert [(e["status"], e.get("error")) for e in journal] == [
        (200, None),
        (200, None),
        (400, f"prompt is too long: {overflowed} tokens > {WINDOW} maximum"),  # the provider's numbers
        (200, None),
        (200, None),
    ], why
    assert journal[2]["error_type"] == "invalid_request_error"
    requests_seen = [r["json"] for r in result["upstream_requests"]]
    assert len(requests_seen) == len(journal) == 5, why  # upstream calls == client requests
    assert len({body["max_tokens"] for body in requests_seen}) == 1, why  # nothing clamped, nothing learned
    assert_upstream_requests(result)
    _check_compaction(requests_seen[3], requests_seen[4], result["summary"])
    # the summary request leaves out the newest round, which the retried turn carries verbatim after the summary
    assert "seq 3001 6000" not in json.dumps(requests_seen[3]["messages"])
    assert "seq 3001 6000" in json.dumps(requests_seen[4]["messages"])
    assert verdicts[4]["tokens"] < WINDOW < verdicts[2]["tokens"]


def test_configured_window_answers_before_the_upstream(claude: Path, tmp_path: Path) -> None:
    """`[context_windows]`: the proxy refuses what its estimate puts over the window without an upstream call,
    in the same words; Claude Code compacts, shrinking its summarisation request by the numbers it was given
    until the proxy lets it through, and finishes. The upstream never sees an overflowing request."""
    window = 22_500  # the proxy's estimate runs higher than the upstream's count: leave the second round room
    result = run_overflow(claude, tmp_path, "--window", str(WINDOW), "--context-window", str(window))
    why = _describe(result)
    _finished(result)
    kinds = [v["kind"] for v in result["verdicts"]]
    assert kinds[:2] == ["tool", "tool"] and "summary" in kinds and kinds[-1] == "final", why
    assert "overflow" not in kinds, why
    journal = result["journal"]
    refused = [e for e in journal if e["status"] == 400]
    assert refused and all(e["error"].endswith(f" tokens > {window} maximum") for e in refused), why
    assert all(int(e["error"].split()[4]) > window for e in refused), why
    assert len(result["upstream_requests"]) == len(journal) - len(refused), why  # refusals cost no upstream call
    assert_upstream_requests(result)
    requests_seen = [r["json"] for r in result["upstream_requests"]]
    summary_request = next(b for b, v in zip(requests_seen, result["verdicts"], strict=True) if v["kind"] == "summary")
    _check_compaction(summary_request, requests_seen[-1], result["summary"])


def test_compaction_route_sends_the_summary_to_a_larger_model(claude: Path, tmp_path: Path) -> None:
    """With hint headers on, the reactive summarisation request says `x-claude-code-request-class: compaction`:
    `[routes] compaction` sends it to another model (here one without the small window)."""
    result = run_overflow(claude, tmp_path, "--window", str(WINDOW), "--compaction-route")
    why = _describe(result)
    _finished(result)
    verdicts = result["verdicts"]
    assert [(v["kind"], v["model"]) for v in verdicts] == [
        ("tool", UPSTREAM_MODEL),
        ("tool", UPSTREAM_MODEL),
        ("overflow", UPSTREAM_MODEL),
        ("summary", COMPACTION_MODEL),
        ("final", UPSTREAM_MODEL),
    ], why
    routes = [(e["route"], e["upstream_model"], e["status"]) for e in result["journal"]]
    assert routes[3] == ("compaction", COMPACTION_MODEL, 200), why
    assert all(route == "models" for route, _, _ in routes[:3] + routes[4:]), why
    requests_seen = [r["json"] for r in result["upstream_requests"]]
    _check_compaction(requests_seen[3], requests_seen[4], result["summary"])


def test_nothing_to_summarise_is_prompt_is_too_long_for_the_user(claude: Path, tmp_path: Path) -> None:
    """One huge round and nothing older: the CLI's summarisation requests overflow as well, and it shows the user
    "Prompt is too long" — what it shows against Anthropic. Every request is answered with the provider's numbers
    in Anthropic's words and costs exactly one upstream call."""
    window = 16_000
    result = run_overflow(claude, tmp_path, "--window", str(window), "--rounds", "1", "--per-round", "6000")
    why = _describe(result)
    output = result["cli_json"]
    assert result["returncode"] == 1 and output is not None, why
    assert output["is_error"] is True and output["result"] == "Prompt is too long", why
    assert output["terminal_reason"] == "prompt_too_long" and output["api_error_status"] == 400, why
    verdicts = result["verdicts"]
    assert verdicts[0]["kind"] == "tool" and {v["kind"] for v in verdicts[1:]} == {"overflow"}, why
    journal = result["journal"]
    assert len(result["upstream_requests"]) == len(journal) == len(verdicts), why
    for entry, verdict in zip(journal[1:], verdicts[1:], strict=True):
        assert entry["status"] == 400, why
        assert entry["error"] == f"prompt is too long: {verdict['tokens']} tokens > {window} maximum", why
    summaries = [r["json"] for r in result["upstream_requests"][2:]]
    assert summaries and all(_last_user(body).startswith(SUMMARY_INSTRUCTION) for body in summaries), why
