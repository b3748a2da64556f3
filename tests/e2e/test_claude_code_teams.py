"""The real Claude Code CLI with a key from the teams store (issue 18): usage is what the upstream reported,
and a spent budget stops the CLI after exactly one 429 — no retry, no further upstream request — while a
rate-limited turn is retried after its retry-after and succeeds.

Runs tests/support/cc_teams_scenario.py the way test_claude_code.py runs its scenario: inside a
loopback-only network namespace, with the CLI from npm (the same fixtures and `run_scenario`).
"""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_claude_code as cc
from tests.support.cc_scenario import UPSTREAM_MODEL, USAGE
from tests.support.cc_teams_scenario import BUDGET_USD, OWNER, PRICE

pytestmark = [pytest.mark.claude_code, pytest.mark.e2e]
SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "support" / "cc_teams_scenario.py"
# test_claude_code's fixtures: root, a loopback-only namespace and the CLI, or a skip that says which is missing
netns, claude = cc.netns, cc.claude


def cost_micros(prompt: int, completion: int, cached: int) -> int:
    """What [prices] makes of one upstream-reported usage (USD per million tokens → µUSD; exact here)."""
    return (prompt - cached) * PRICE["input"] + completion * PRICE["output"] + cached * PRICE["cache_read"]


def next_month_start() -> str:
    now = time.gmtime()
    year, month = (now.tm_year + 1, 1) if now.tm_mon == 12 else (now.tm_year, now.tm_mon + 1)
    return time.strftime("%Y-%m-%d 00:00 UTC", time.gmtime(calendar.timegm((year, month, 1, 0, 0, 0))))


def describe(result: dict[str, Any]) -> str:
    runs = [{k: v for k, v in run.items() if k not in ("cli_json", "stdout")} | {"result": (run.get("cli_json") or {}).get("result")}
            for run in result["runs"]]
    return f"runs={runs}\njournal={result.get('journal')}\nproxy output={result.get('proxy_output', '')[-3000:]}"


@pytest.mark.parametrize("auth", ["api-key", "token"])
def test_usage_recorded_for_the_stored_key_is_what_the_upstream_reported(
    claude: Path, tmp_path: Path, auth: str
) -> None:
    """ANTHROPIC_API_KEY (x-api-key) or ANTHROPIC_AUTH_TOKEN (Authorization: Bearer, and no x-api-key:
    shared/spec/anthropic-wire.md §1.1) = a `cpk_…` key: the proxy accepts either."""
    result = cc.run_scenario(claude, tmp_path, "--scenario", "usage", "--auth", auth, script=SCRIPT)
    why = describe(result)
    [run] = result["runs"]
    output = run["cli_json"]
    assert run["returncode"] == 0 and output is not None and output["is_error"] is False, why
    assert output["result"] == f"The command printed: {result['marker'].upper()}", why
    assert run["upstream_requests"] == 2 and result["upstream_errors"] == [], why

    # per request: the request log names the key (never the key itself) and carries the upstream's tokens
    journal = [e for e in result["journal"] if e["endpoint"] == "messages"]
    assert [(e["key_id"], e["status"]) for e in journal] == [(result["key_id"], 200)] * 2, why
    assert [(e["input_tokens"], e["output_tokens"], e["cache_read_tokens"]) for e in journal] == [
        (prompt - cached, completion, cached) for prompt, completion, cached in USAGE
    ]
    assert result["raw_key_in_journal_or_output"] is False

    # in the store (`claude-proxy usage --json`): one row for the key, equal to the upstream's totals
    [row] = result["usage"]
    assert (row["key"], row["owner"], row["model"], row["provider"]) == (
        result["key_id"], OWNER, UPSTREAM_MODEL, "custom"
    )
    assert (row["requests"], row["errors"], row["estimated"], row["unpriced"]) == (2, 0, 0, 0)
    assert row["input_tokens"] == sum(prompt - cached for prompt, _, cached in USAGE)
    assert row["output_tokens"] == sum(completion for _, completion, _ in USAGE)
    assert row["cache_read_tokens"] == sum(cached for _, _, cached in USAGE) and row["cache_write_tokens"] == 0
    assert row["cost_micros"] == sum(cost_micros(*u) for u in USAGE)
    # and what Claude Code itself totalled from the proxy's answers agrees
    usage = output["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["cache_read_input_tokens"]) == (
        row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]
    )
    assert result["key"]["last_used_at"] is not None


def test_a_spent_budget_gets_exactly_one_429_and_the_cli_stops(claude: Path, tmp_path: Path) -> None:
    """Budget $0.01; the first turn costs $0.01514: admitted (nothing was spent yet), it spends the budget.
    The CLI's second turn is refused — 429 budget_exhausted, x-should-retry: false — and it stops, showing
    the reset time. A second session is refused on its first request and never reaches the upstream."""
    assert cost_micros(*USAGE[0]) > float(BUDGET_USD) * 1e6
    result = cc.run_scenario(claude, tmp_path, "--scenario", "budget", "--auth", "token", script=SCRIPT)
    why = describe(result)
    first, second = result["runs"]
    message = f"key cc laptop's monthly budget of ${float(BUDGET_USD):.2f} is spent; resets {next_month_start()}"
    for run, refusals in ((first, 1.0), (second, 2.0)):
        output = run["cli_json"]
        assert run["returncode"] == 1 and output is not None and output["is_error"] is True, why
        assert (output["api_error_status"], output["api_error_type"], output["api_error_code"]) == (
            429, "rate_limit_error", "budget_exhausted"
        ), why
        assert message in output["result"], why
        # exactly one refusal per session: the CLI did not retry (a retried 429 would count again)
        assert run["refusals_after"] == {"budget,key": refusals}, why
    assert first["upstream_requests"] == 1, why  # the admitted first turn; the refused second never went up
    assert second["upstream_requests"] == 0, why
    # the tool turn, then the refused one; the second session: only the refused one
    assert (first["cli_json"]["num_turns"], second["cli_json"]["num_turns"]) == (2, 1), why
    assert len(result["upstream_requests"]) == 1, why
    [row] = result["usage"]
    assert (row["requests"], row["cost_micros"]) == (1, cost_micros(*USAGE[0])), why
    # the request log has every request, the refused ones too (status, error type and the key's id)
    assert [(e["status"], e.get("error_type"), e["key_id"]) for e in result["journal"]
            if e["endpoint"] == "messages"] == [
        (200, None, result["key_id"]), (429, "rate_limit_error", result["key_id"]),
        (429, "rate_limit_error", result["key_id"]),
    ], why
    assert result["raw_key_in_journal_or_output"] is False


def test_a_rate_limited_turn_is_retried_after_retry_after_and_the_session_finishes(
    claude: Path, tmp_path: Path
) -> None:
    """rpm 1/5s: the second turn comes right after the first and is refused (429 rate_limit_error with
    retry-after). Claude Code waits as told and retries once — a retry before the window reopened would
    be refused again and counted — and the session finishes. Refused requests never reach the upstream."""
    result = cc.run_scenario(claude, tmp_path, "--scenario", "rpm", script=SCRIPT)
    why = describe(result)
    [run] = result["runs"]
    output = run["cli_json"]
    assert run["returncode"] == 0 and output is not None and output["is_error"] is False, why
    assert output["result"] == f"The command printed: {result['marker'].upper()}", why
    assert run["refusals_after"] == {"rpm,key": 1.0}, why
    assert run["upstream_requests"] == 2, why
    [row] = result["usage"]
    assert (row["requests"], row["errors"]) == (2, 0), why  # a refusal is not a usage record
    assert [(e["status"], e.get("error_type")) for e in result["journal"] if e["endpoint"] == "messages"] == [
        (200, None), (429, "rate_limit_error"), (200, None)
    ], why
