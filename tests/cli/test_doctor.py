"""`claude-proxy doctor` against a real local upstream: what passes, what fails, and the fix it prints."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.cli import doctor
from tests.support.proxy_server import ROOT, write_config
from tests.support.upstream import FakeUpstream, Json, closed_port

KEY = "sk-doctor-test-0123456789abcdef"
LINE = re.compile(r"^(PASS|WARN|FAIL)  (.+?)\s{2,}(.*)$")


def run_doctor(tmp_path: Path, config: dict[str, Any], *extra: str) -> tuple[int, str, list[tuple[str, str, str]]]:
    path = write_config(tmp_path / "claude-proxy.toml", config)
    out = io.StringIO()
    code = doctor.run(["-c", str(path), "--timeout", "5", *extra], out)
    text = out.getvalue()
    return code, text, [m.groups() for line in text.splitlines() if (m := LINE.match(line))]


def fix_after(text: str, detail_start: str) -> str:
    """The fix line printed under the check whose detail starts with `detail_start`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = LINE.match(line)
        if m and m.group(3).startswith(detail_start):
            following = lines[i + 1].strip()
            assert following.startswith("fix: "), following
            return following[5:]
    raise AssertionError(f"no check starting {detail_start!r} in:\n{text}")


def custom(upstream_url: str, **models: str) -> dict[str, Any]:
    return {
        "provider": {"name": "custom", "base_url": upstream_url, "api_key_env": "DOCTOR_TEST_KEY"},
        "models": models or {"*": "fake-model-1"},
    }


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DOCTOR_TEST_KEY", KEY)
    return KEY


def test_all_pass(tmp_path: Path, upstream: FakeUpstream, key: str) -> None:
    before = len(upstream.requests)
    code, text, checks = run_doctor(tmp_path, custom(upstream.url, **{"*": "fake-model-1"}))
    assert code == 0, text
    assert [(s, n) for s, n, _ in checks] == [
        ("PASS", "config"),
        ("PASS", "api key"),
        ("PASS", "upstream"),
        ("PASS", "models"),
        ("PASS", "completion"),
        ("WARN", "web search"),  # Claude Code's WebSearch would get a 400: said, but not a failure
    ]
    details = {n: d for _, n, d in checks}
    assert details["config"] == f"{tmp_path / 'claude-proxy.toml'}: provider custom (openai), 1 model mapping"
    assert details["api key"] == "set (from $DOCTOR_TEST_KEY)"
    assert details["upstream"] == f"{upstream.url} answered GET /models: 2 models"
    assert details["models"] == "all 1 mapped model listed by custom"
    assert re.fullmatch(
        r"claude-sonnet-5 → custom fake-model-1: answered in \d+ ms \(streamed: \d+ ms\)", details["completion"]
    )
    assert text.rstrip().endswith("5 passed, 1 warning, 0 failed")
    assert key not in text
    sent = upstream.requests[before:]
    assert [(r.method, r.path) for r in sent] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    assert all(r.headers["authorization"] == f"Bearer {key}" for r in sent)
    assert [(r.json["model"], r.json["max_tokens"], r.json.get("stream", False)) for r in sent[1:]] == [
        ("fake-model-1", 1, False),
        ("fake-model-1", 1, True),
    ]


def test_missing_key(tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    before = len(upstream.requests)
    config = {"provider": {"name": "deepseek", "base_url": upstream.url}, "models": {"*": "fake-model-2"}}
    code, text, checks = run_doctor(tmp_path, config)
    assert code == 1
    assert ("FAIL", "api key", "missing: $DEEPSEEK_API_KEY is not set") in checks
    assert fix_after(text, "missing:") == "export DEEPSEEK_API_KEY=... (then restart the proxy)"
    assert ("WARN", "completion", "skipped: no usable API key") in checks
    assert not [r for r in upstream.requests[before:] if r.method == "POST"]  # nothing sent without a key


def test_unreachable_upstream(tmp_path: Path, key: str) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/v1"
    code, text, checks = run_doctor(tmp_path, custom(url))
    assert code == 1
    statuses = {n: s for s, n, _ in checks}
    assert statuses == {"config": "PASS", "api key": "PASS", "upstream": "FAIL", "completion": "FAIL", "web search": "WARN"}
    details = {n: d for _, n, d in checks}
    assert details["upstream"] == f"custom: cannot reach 127.0.0.1:{port}: connection refused"
    assert fix_after(text, "custom: cannot reach").startswith(f"check base_url ({url}) and that 127.0.0.1:{port}")
    assert details["completion"].startswith("one-token request to custom fake-model-1 failed (HTTP 502)")
    assert text.rstrip().endswith("2 passed, 1 warning, 2 failed")


def test_mapped_model_not_listed_is_a_warning(tmp_path: Path, upstream: FakeUpstream, key: str) -> None:
    code, text, checks = run_doctor(
        tmp_path, custom(upstream.url, **{"claude-haiku-*": "fake-modle-2", "*": "fake-model-1"})
    )
    assert code == 0, text  # warnings do not fail the run
    assert ("WARN", "models", "'fake-modle-2' (for 'claude-haiku-*') is not in custom's list of 2") in checks
    assert fix_after(text, "'fake-modle-2'") == (
        "check the name in [models]; did you mean 'fake-model-2', 'fake-model-1'? (some providers serve unlisted models)"
    )
    assert ("PASS", "completion") in [(s, n) for s, n, _ in checks]
    assert text.rstrip().endswith("4 passed, 2 warnings, 0 failed")


def test_no_mapping_suggests_a_listed_model(tmp_path: Path, upstream: FakeUpstream, key: str) -> None:
    config = {"provider": {"name": "custom", "base_url": upstream.url, "api_key_env": "DOCTOR_TEST_KEY"}}
    upstream.enqueue(
        Json({"error": {"message": "The model `claude-sonnet-5` does not exist"}}, status=404), path="/chat/completions"
    )
    code, text, checks = run_doctor(tmp_path, config)
    assert code == 1
    assert (
        fix_after(text, "no [models] mapping")
        == 'map them to the provider\'s models, e.g. [models] "claude-*" = "fake-model-1"'
    )
    assert (
        "FAIL",
        "completion",
        "one-token request to custom claude-sonnet-5 failed (HTTP 404): "
        "custom: The model `claude-sonnet-5` does not exist",
    ) in checks
    assert fix_after(text, "one-token request") == (
        "the provider does not know 'claude-sonnet-5': map the model in [models] to one it lists"
    )


def test_upstream_rejects_the_key_on_completion(tmp_path: Path, upstream: FakeUpstream, key: str) -> None:
    upstream.enqueue(
        Json({"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid_api_key"}}, status=401),
        path="/chat/completions",
    )
    code, text, checks = run_doctor(tmp_path, custom(upstream.url))
    assert code == 1
    assert (
        "FAIL",
        "completion",
        "one-token request to custom fake-model-1 failed (HTTP 401): custom: Incorrect API key provided: [REDACTED]",
    ) in checks
    assert fix_after(text, "one-token request") == (
        "the provider rejected the key: check that $DOCTOR_TEST_KEY holds a valid key"
    )
    assert key not in text


def test_models_list_refused(tmp_path: Path, upstream: FakeUpstream, key: str) -> None:
    upstream.enqueue(Json({"error": {"message": "invalid key"}}, status=401), path="/models")
    code, text, checks = run_doctor(tmp_path, custom(upstream.url))
    assert code == 1
    assert ("FAIL", "upstream", "GET /models was refused (HTTP 401): custom: invalid key") in checks
    assert fix_after(text, "GET /models was refused") == (
        "the provider rejected the key: check that $DOCTOR_TEST_KEY holds a valid custom key"
    )


def test_bad_config(tmp_path: Path) -> None:
    (tmp_path / "claude-proxy.toml").write_text('[provider]\nname = "custom"\n')
    out = io.StringIO()
    code = doctor.run(["-c", str(tmp_path / "claude-proxy.toml")], out)
    assert code == 1
    lines = out.getvalue().splitlines()
    assert (
        lines[2] == f"FAIL  config      {tmp_path / 'claude-proxy.toml'}: provider 'custom' needs 'provider.base_url'"
    )
    assert lines[3].strip() == "fix: correct the key named above (config.example.toml documents every key)"
    assert lines[-1] == "0 passed, 0 warnings, 1 failed"


def test_the_command_dispatches_to_the_doctor(tmp_path: Path, upstream: FakeUpstream) -> None:
    path = write_config(tmp_path / "c.toml", custom(upstream.url))
    result = subprocess.run(
        [sys.executable, "-m", "claude_proxy", "doctor", "-c", str(path)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCTOR_TEST_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("claude-proxy doctor\n")
    assert "5 passed, 1 warning, 0 failed" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_web_search_backend_is_checked_for_real(tmp_path: Path, upstream: FakeUpstream, key: str) -> None:
    from tests.support.search_backends import Doc, SearchService

    with SearchService([Doc("https://example.test/a", "A", "alpha")]) as service:
        config = {**custom(upstream.url), "web_search": {"backend": "searxng", "url": service.url}}
        code, text, checks = run_doctor(tmp_path, config)
        assert code == 0, text
        [(status, detail)] = [(s, d) for s, n, d in checks if n == "web search"]
        assert status == "PASS" and detail.startswith("searxng at 127.0.0.1") and "answered" in detail
        assert service.recorded, "the doctor searched the backend"
    code, text, checks = run_doctor(tmp_path, config)  # the service is gone now
    [(status, detail)] = [(s, d) for s, n, d in checks if n == "web search"]
    assert status == "WARN" and "failed" in detail
