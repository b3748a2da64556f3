"""Claude Code with a key from the teams store — meant to run inside `unshare -n` like cc_scenario.py
(tests/e2e/test_claude_code_teams.py runs it).

The proxy runs with `[teams]` on a SQLite file and `[prices]` for the scripted model; the key comes from
`claude-proxy keys create --json`, and the CLI is given it as ANTHROPIC_API_KEY (sent as `x-api-key`) or
ANTHROPIC_AUTH_TOKEN (sent as `Authorization: Bearer`). The upstream is cc_scenario's: a streamed Bash
tool call, then an answer, each reporting the usage in cc_scenario.USAGE.

  usage   one tool round trip; then the store's usage for the key (`claude-proxy usage --json`)
  budget  a monthly budget smaller than what the first turn costs: the CLI's first turn is admitted and
          spends it, its second is refused (429 budget_exhausted); then a second CLI session, refused at once
  rpm     one request per RPM_PERIOD: the second turn, sent right after the first, is refused (429 with
          retry-after); the CLI waits, retries and finishes

Writes everything the test asserts on to RESULT.json; never asserts itself.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.support` importable
    sys.path.insert(0, str(ROOT))

from tests.support.cc_scenario import (  # noqa: E402
    UPSTREAM_KEY,
    UPSTREAM_MODEL,
    cli_env,
    make_handler,
    proxy_record,
    run_cli,
)
from tests.support.proxy_server import ProxyServer, write_config  # noqa: E402
from tests.support.upstream import FakeUpstream  # noqa: E402

# USD per million tokens for the scripted model; cache reads at a tenth of the input price.
PRICE = {"input": 10, "output": 50, "cache_read": 1}
BUDGET_USD = "0.01"  # turn 1 (1234 input + 56 output tokens) costs $0.01514: admitted, then over budget
PROMPT = "Run `echo` with the marker using the Bash tool, then tell me what it printed."
OWNER = "cc-user@example.com"
RPM = "1/5s"  # the second turn follows the first within a second or so (the Bash tool is one `echo`)


def claude_proxy(config: Path, *args: str) -> Any:
    """The `claude-proxy` command on the store (it acts on the store directly, no server needed)."""
    done = subprocess.run(
        [sys.executable, "-m", "claude_proxy", *args, "--json", "-c", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"claude-proxy {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)

def refusals(proxy: ProxyServer, key: str) -> dict[str, float]:
    """`claude_proxy_limit_refusals_total` from /metrics by `limit,scope`: the 429s the proxy answered."""
    text = requests.get(proxy.url + "/metrics", headers={"x-api-key": key}, timeout=10).text
    found: dict[str, float] = {}
    for match in re.finditer(r'^claude_proxy_limit_refusals_total\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
        found[f"{labels.get('limit')},{labels.get('scope')}"] = float(match[2])
    return found


def settled(config: Path, key_id: str, requests: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The store's usage rows for the key once `requests` requests have settled (after their last byte)."""
    deadline, rows = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        rows = claude_proxy(config, "usage", "--key", key_id, "--by", "key", "owner", "model", "provider")
        if sum(r["requests"] for r in rows) >= requests:
            break
        time.sleep(0.1)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    marker = f"cc-marker-{secrets.token_hex(6)}"
    work = Path(tempfile.mkdtemp(prefix="cc-teams-scenario-"))
    result: dict[str, Any] = {"marker": marker, "scenario": args.scenario, "auth": args.auth, "runs": []}
    with FakeUpstream() as upstream:
        upstream.handler = make_handler(marker, "tool")
        config = _config_of(upstream.url, work)
        config_path = write_config(work / "store.toml", config)  # for the CLI verbs; the proxy writes its own
        limits = {"budget": ["--budget", BUDGET_USD], "rpm": ["--rpm", RPM]}.get(args.scenario, [])
        made = claude_proxy(config_path, "keys", "create", "--owner", OWNER, "--name", "cc laptop", *limits)
        result["key_id"], key = made["id"], made["key"]
        proxy = ProxyServer(config).start()
        try:
            sessions = 2 if args.scenario == "budget" else 1
            for i in range(sessions):
                home, project = work / f"home{i}", work / f"project{i}"
                home.mkdir()
                project.mkdir()
                env = cli_env(home, proxy.url)
                del env["ANTHROPIC_API_KEY"]
                env["ANTHROPIC_API_KEY" if args.auth == "api-key" else "ANTHROPIC_AUTH_TOKEN"] = key
                before = len(upstream.requests)
                command = [args.claude, "-p", PROMPT, "--output-format", "json", "--allowedTools", "Bash"]
                run_out = run_cli(command, project, env, args.timeout)
                run_out["upstream_requests"] = len(upstream.requests) - before
                run_out["refusals_after"] = refusals(proxy, key)
                result["runs"].append(run_out)
            result["usage"] = settled(config_path, made["id"], 1 if args.scenario == "budget" else 2)
            result["key"] = claude_proxy(config_path, "keys", "show", made["id"])
        finally:
            result.update(proxy_record(proxy, upstream))
            result["raw_key_in_journal_or_output"] = key in json.dumps(result["journal"]) + result["proxy_output"]
    return result


def _config_of(upstream_url: str, work: Path) -> dict[str, Any]:
    return {
        "provider": {"name": "custom", "base_url": upstream_url, "api_key": UPSTREAM_KEY},
        "models": {"*": UPSTREAM_MODEL},
        "upstream": {"read_timeout": 30.0},
        "teams": {"path": str(work / "teams.db")},
        "prices": {UPSTREAM_MODEL: PRICE},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claude", required=True, help="the claude executable")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--scenario", choices=["usage", "budget", "rpm"], default="usage")
    parser.add_argument("--auth", choices=["api-key", "token"], default="api-key",
                        help="give the key as ANTHROPIC_API_KEY (x-api-key) or ANTHROPIC_AUTH_TOKEN (Bearer)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds each CLI session may take")
    args = parser.parse_args(argv)
    Path(args.out).write_text(json.dumps(run(args), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
