"""The shipped deployment files stay true to the code: the systemd unit and the README's references.

(docs/nginx.conf is run for real by tests/test_nginx.py.)
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from claude_proxy.cli.main import build_parser
from claude_proxy.config.loader import load_config
from claude_proxy.server.serve import gunicorn_options
from tests.support.proxy_server import ROOT

UNIT = ROOT / "docs" / "claude-proxy.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#",))
    setattr(parser, "optionxform", str)  # noqa: B010  systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_stops_gracefully_and_restarts() -> None:
    service = unit()["Service"]
    graceful = gunicorn_options(load_config(data={"provider": {"name": "ollama"}}, env={}))["graceful_timeout"]
    assert service["KillSignal"] == "SIGTERM"  # gunicorn's graceful shutdown
    assert service["KillMode"] == "mixed"  # the master stops its workers; stragglers get SIGKILL
    assert int(service["TimeoutStopSec"]) > graceful, "systemd would kill streams gunicorn is still finishing"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "claude-proxy" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict" and service["PrivateTmp"] == "yes"


def test_unit_turns_glibcs_per_thread_cache_off_for_operators() -> None:
    """The command no longer re-executes itself for it: the tunable is the unit's to set."""
    environment = [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith("Environment=")]
    assert "GLIBC_TUNABLES=glibc.malloc.tcache_count=0" in environment


def test_unit_command_is_a_valid_invocation() -> None:
    command = shlex.split(unit()["Service"]["ExecStart"].replace("\\\n", " "))
    assert command[0].endswith("/claude-proxy")
    args = build_parser().parse_args(command[1:])
    assert args.config == "/etc/claude-proxy/config.toml"
    assert args.log_file == "/var/log/claude-proxy/requests.jsonl"
    assert args.log_file.startswith("/var/log/" + unit()["Service"]["LogsDirectory"] + "/")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    copy = tmp_path / "claude-proxy.service"
    copy.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "is not executable" not in line and "No such file or directory" not in line
    ]
    assert not [p for p in problems if "claude-proxy.service" in p], problems


def test_readme_points_at_the_shipped_files() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("docs/nginx.conf", "docs/claude-proxy.service", "tests/support/embedded_app.py"):
        assert f"]({name})" in readme, name
        assert (ROOT / name).is_file(), name


def test_the_readmes_teams_example_loads_as_documented(tmp_path: Path) -> None:
    """The `[teams]` example of the README's Teams section is a config the loader takes, with the meaning
    its comments give (defaults per period, the budget in micro-USD, a price per million tokens)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Teams: a key per person"):]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    path = tmp_path / "config.toml"
    path.write_text('[provider]\nname = "openai"\napi_key = "sk-test"\n\n' + block.group(1))
    config = load_config(str(path), env={})
    assert config.teams is not None and config.teams.store == "sqlite"
    assert config.teams.path == "/var/lib/claude-proxy/teams.db" and config.teams.on_store_error == "open"
    assert config.teams.unpriced == "deny"
    defaults = config.teams.defaults
    assert defaults.rpm is not None and (defaults.rpm.amount, defaults.rpm.period_s) == (60, 60)
    assert defaults.tpm is not None and (defaults.tpm.amount, defaults.tpm.period_s) == (2_000_000, 3600)
    assert (defaults.max_concurrent, defaults.monthly_budget_micros) == (8, 200_000_000)
    cost = config.prices.cost("openai", "gpt-5.1", {"input_tokens": 1_000_000, "output_tokens": 1_000_000,
                                                     "cache_read_input_tokens": 1_000_000})
    assert cost == 1_250_000 + 10_000_000 + 125_000
