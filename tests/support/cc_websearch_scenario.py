"""Claude Code's WebSearch through claude-proxy, a local search service and a scripted model — meant to run
inside `unshare -n` like cc_scenario.py (tests/e2e/test_web_search.py runs it).

The main loop's model loads WebSearch with ToolSearch, then calls it; Claude Code sends its side request with
Anthropic's `web_search_20250305` server tool; the proxy offers the model a `web_search` function, runs the
query against the SearXNG-shaped service on 127.0.0.1, and the side model summarises what it read (the fact
only the service knows). Claude Code hands that to the main loop as WebSearch's result, and the final answer
quotes it. Writes everything the test asserts on to RESULT.json; never asserts itself.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: make `tests.support` importable
    sys.path.insert(0, str(ROOT))

from tests.support.cc_scenario import UPSTREAM_KEY, UPSTREAM_MODEL, cli_env, proxy_record, run_cli  # noqa: E402
from tests.support.proxy_server import ProxyServer  # noqa: E402
from tests.support.search_backends import SearchService  # noqa: E402
from tests.support.search_model import DOCS, FACT, answer_response, call_response  # noqa: E402
from tests.support.upstream import FakeUpstream, Json, RecordedRequest, Response  # noqa: E402

SIDE_REQUEST = "You run a web search"  # Claude Code's system prompt for the WebSearch side request
QUERY = "pelican pouch facts"


def _texts(messages: list[dict[str, Any]], role: str) -> list[str]:
    out = []
    for m in messages:
        if isinstance(m, dict) and m.get("role") == role:
            content = m.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            out.append(str(content or ""))
    return out


def handler(req: RecordedRequest) -> Response:
    if req.method != "POST" or not req.path.rstrip("/").endswith("/chat/completions"):
        return Json({"error": {"message": f"no route for {req.method} {req.path}", "type": "not_found"}}, 404)
    body = req.json if isinstance(req.json, dict) else {}
    stream = bool(body.get("stream"))
    messages = body.get("messages") or []
    offered = {t["function"]["name"] for t in body.get("tools") or [] if isinstance(t, dict) and "function" in t}
    tool_texts = _texts(messages, "tool")
    fact_lines = [line for text in tool_texts for line in text.splitlines() if "litres" in line]
    if any(SIDE_REQUEST in text for text in _texts(messages, "system")):
        if "web_search" in offered and not tool_texts:
            return call_response(stream, [("call_side_1", "web_search", {"query": QUERY})], (50, 5))
        found = fact_lines[0].strip() if fact_lines else "nothing found."
        return answer_response(stream, f"Search summary: {found}", (80, 9))
    if any("Web search results" in text for text in tool_texts):  # WebSearch came back: answer, found or not
        sentence = re.search(r"The brown pelican.*?litres\.", " ".join(fact_lines))
        found = sentence.group(0) if sentence else "the search found nothing precise."
        return answer_response(stream, f"Final answer: {found}", (300, 12))
    if "WebSearch" in offered:
        return call_response(stream, [("call_main_2", "WebSearch", {"query": QUERY})], (200, 8))
    if "ToolSearch" in offered:
        return call_response(stream, [("call_main_1", "ToolSearch", {"query": "select:WebSearch"})], (100, 6))
    return answer_response(stream, "No WebSearch tool was offered.", (10, 3))


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cc-websearch-"))
    home, project = work / "home", work / "project"
    home.mkdir()
    project.mkdir()
    prompt = "Search the web for pelican pouch facts and tell me the most precise figure you find."
    claude_args = ["-p", prompt, "--output-format", "json", "--allowedTools", "WebSearch,ToolSearch"]
    result: dict[str, Any] = {"fact": FACT}
    with SearchService(DOCS) as service, FakeUpstream() as upstream:
        upstream.handler = handler
        config: dict[str, Any] = {
            "provider": {"name": "custom", "base_url": upstream.url, "api_key": UPSTREAM_KEY},
            "models": {"*": UPSTREAM_MODEL},
            "upstream": {"read_timeout": 30.0},
            "web_search": {"backend": "searxng", "url": service.url},
        }
        proxy = ProxyServer(config).start()
        try:
            result.update(run_cli([args.claude, *claude_args], project, cli_env(home, proxy.url), args.timeout))
        finally:
            result.update(proxy_record(proxy, upstream))
            result["search_queries"] = service.queries
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claude", required=True, help="the claude executable")
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the CLI may take")
    args = parser.parse_args(argv)
    Path(args.out).write_text(json.dumps(run(args), indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
