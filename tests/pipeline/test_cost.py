"""Cost where people read it: the journal line (cost_usd / cost_unpriced), /metrics
(claude_proxy_cost_usd_total), `claude-proxy logs --summary` and `doctor`."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from claude_proxy.cli import doctor
from claude_proxy.cli import logs as logsummary
from claude_proxy.config.loader import load_config
from claude_proxy.config.prices import Prices
from claude_proxy.pipeline.journal import Journal
from claude_proxy.pipeline.metrics import Metrics
from claude_proxy.pipeline.outcome import Outcome, Recorder
from tests.support.proxy_server import write_config
from tests.support.upstream import FakeUpstream

PRICES = {
    "sonnet": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
    "fake-*": {"input": 0.5, "output": 1.5},
}


def prices() -> Prices:
    return load_config(data={"provider": {"name": "openai", "api_key": "k"}, "prices": PRICES}, env={}).prices


def answered(model: str, usage: dict[str, int], provider: str = "default", endpoint: str = "messages") -> Outcome:
    outcome = Outcome(request_id="r", endpoint=endpoint, provider=provider, upstream_model=model, client_model="claude")
    outcome.answer(usage, "end_turn")
    return outcome


USAGE = {"input_tokens": 1000, "output_tokens": 500, "cache_read_input_tokens": 100_000, "cache_creation_input_tokens": 20_000}
USAGE_MICRO = 3000 + 7500 + 30_000 + 75_000


def test_recorder_puts_cost_on_the_journal_line(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    recorder = Recorder(Journal(str(path)), (), "default", prices())
    recorder.finish(answered("sonnet", USAGE), 200)
    recorder.finish(answered("gpt-4o", USAGE), 200)  # no price
    failed = Outcome(request_id="r3", endpoint="messages", upstream_model="sonnet")
    recorder.finish(failed, 502)  # nothing answered: neither field
    counted = Outcome(request_id="r4", endpoint="count_tokens", upstream_model="sonnet", input_tokens=10)
    recorder.finish(counted, 200)  # a local estimate, nothing spent
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["cost_usd"] == 0.1155 and lines[0]["cost_unpriced"] is False
    assert lines[0]["cache_write_tokens"] == 20_000
    assert "cost_usd" not in lines[1] and lines[1]["cost_unpriced"] is True
    assert "cost_usd" not in lines[2] and "cost_unpriced" not in lines[2]
    assert "cost_usd" not in lines[3] and "cost_unpriced" not in lines[3]


def test_without_a_prices_table_nothing_is_added(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    Recorder(Journal(str(path)), (), "default").finish(answered("sonnet", USAGE), 200)
    line = json.loads(path.read_text())
    assert "cost_usd" not in line and "cost_unpriced" not in line


def test_metrics_count_cost_and_unpriced_requests() -> None:
    m = Metrics()
    table = prices()
    for _ in range(3):
        outcome = answered("sonnet", USAGE)
        outcome.price(table)
        m.observe(outcome)
    unpriced = answered("gpt-4o", USAGE)
    unpriced.price(table)
    m.observe(unpriced)
    labels = {"provider": "default", "upstream_model": "sonnet"}
    cost = m.registry.get_sample_value("claude_proxy_cost_usd_total", labels)
    assert cost is not None and abs(cost - 3 * USAGE_MICRO / 1e6) < 1e-9
    assert m.registry.get_sample_value("claude_proxy_unpriced_requests_total", {**labels, "upstream_model": "gpt-4o"}) == 1
    assert m.registry.get_sample_value("claude_proxy_cost_usd_total", {**labels, "upstream_model": "gpt-4o"}) is None
    writes = {"kind": "cache_write", "client_model": "claude", "upstream_model": "sonnet", "provider": "default"}
    assert m.registry.get_sample_value("claude_proxy_tokens_total", writes) == 60_000


def test_logs_summary_shows_a_cost_column_and_total(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    recorder = Recorder(Journal(str(path)), (), "default", prices())
    small = {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    for _ in range(1000):  # 7 × 0.5 + 3 × 1.5 = 8 micro-USD each, summed without float drift
        recorder.finish(answered("fake-model-1", small), 200)
    recorder.finish(answered("sonnet", USAGE), 200)
    recorder.finish(answered("gpt-4o", small), 200)
    out, err = io.StringIO(), io.StringIO()
    assert logsummary.run(["--file", str(path), "--summary"], out, err, now=datetime.now(timezone.utc)) == 0
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if line.startswith("client → provider/upstream model"))
    assert header.split()[-2:] == ["cost_usd", "unpriced"]
    rows = {line.split()[2]: line.split() for line in lines if " → default/" in line}
    assert rows["default/fake-model-1"][-2:] == ["$0.008000", "0"]
    assert rows["default/sonnet"][-2:] == ["$0.115500", "0"]
    assert rows["default/gpt-4o"][-2:] == ["$0.000000", "1"]
    total = next(line.split() for line in lines if line.startswith("total"))
    assert total[-2:] == ["$0.123500", "1"]
    assert "(1 request on models without a price are not in cost_usd: add them to [prices])" in lines


def test_doctor_lists_configured_models_without_a_price(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: Any
) -> None:
    monkeypatch.setenv("DOCTOR_TEST_KEY", "sk-doctor-test-0123456789abcdef")
    config = {
        "provider": {"name": "custom", "base_url": upstream.url, "api_key_env": "DOCTOR_TEST_KEY"},
        "models": {"claude-sonnet-5": "fake-model-1", "*haiku*": "fake-model-2", "claude-opus-5": "unpriced-model"},
        "prices": {"fake-model-1": {"input": 1, "output": 2}},
    }
    path = write_config(tmp_path / "claude-proxy.toml", config)
    out = io.StringIO()
    doctor.run(["-c", str(path), "--timeout", "5"], out)
    text = out.getvalue()
    line = next(line for line in text.splitlines() if line.startswith("WARN  prices"))
    assert "2 configured models without a price: default,fake-model-2, default,unpriced-model" in line
    config["prices"] = {"unpriced-model": {"input": 1, "output": 1}}
    path = write_config(tmp_path / "claude-proxy.toml", config)
    with path.open("a") as fh:  # a glob key needs quoting, as a user writes it
        fh.write('\n[prices."fake-*"]\ninput = 1\noutput = 2\n')
    out = io.StringIO()
    doctor.run(["-c", str(path), "--timeout", "5"], out)
    assert any(line.startswith("PASS  prices") for line in out.getvalue().splitlines()), out.getvalue()
