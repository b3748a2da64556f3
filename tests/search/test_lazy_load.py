"""A worker without a search to run never loads the search loop, its backends or its upstream caller
(~0.15 MB of code per worker); the package's names still all import, and load what they need."""

from __future__ import annotations

import subprocess
import sys

LOADED = "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('claude_proxy.search.')))"


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_an_app_without_a_search_backend_loads_only_the_planner() -> None:
    code = (
        "from claude_proxy import load_config\n"
        "from claude_proxy.web.app import create_app\n"
        "app = create_app(load_config(data={'provider': {'name': 'ollama'}}, env={}))\n"
        "body = {'model': 'm', 'max_tokens': 5, 'messages': [{'role': 'user', 'content': 'hi'}]}\n"
        "app.test_client().post('/v1/messages/count_tokens', json=body)\n" + LOADED
    )
    assert run(code) == "['plan']"


def test_a_configured_backend_and_the_packages_names_load_what_they_need() -> None:
    code = (
        "from claude_proxy.config.websearch import build_web_search\n"
        "from claude_proxy.search import WebSearch\n"
        "WebSearch(build_web_search({'backend': 'searxng', 'url': 'http://127.0.0.1:9'}, env={}))\n"
        + LOADED
        + "\nimport claude_proxy.search as s\n"
        "assert s.SearchTurn.__module__ == 'claude_proxy.search.loop' and s.UpstreamCaller and s.Result\n"
        + LOADED
    )
    first, second = run(code).splitlines()
    assert first == "['backends', 'plan']"
    assert second == "['backends', 'loop', 'plan', 'upstream_call']"
