"""The teams verbs as a user runs them: the real `claude-proxy` command on a real store — a SQLite file,
and PostgreSQL + Redis (private servers, DSNs from the environment as `[teams] store = "postgres"` wants)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_proxy.config.loader import ConfigError, load_config
from tests.support.proxy_server import toml_value
from tests.support.teams_backend import BACKENDS, backend_for

CONFIG = """
[provider]
name = "deepseek"
api_key = "sk-test-0000000000"

[teams]
{teams}

[teams.defaults]
rpm = "100/hour"
max_concurrent = 4
monthly_budget_usd = 25
"""


@pytest.fixture(params=BACKENDS)
def config(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config on a fresh store of each backend; the CLI runs inherit the DSNs through the environment."""
    if request.param == "sqlite":
        teams = {"store": "sqlite", "path": str(tmp_path / "state" / "teams.db")}
    else:
        backend = backend_for(request, request.param, "cli")
        for name, value in backend.env.items():
            monkeypatch.setenv(name, value)
        teams = backend.table("cli")
    path = tmp_path / "claude-proxy.toml"
    path.write_text(CONFIG.format(teams="\n".join(f"{k} = {toml_value(v)}" for k, v in teams.items())))
    return path


def run(config: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "claude_proxy", *args, "-c", str(config)], capture_output=True,
                         text=True, timeout=30)
    assert (out.returncode == 0) == ok, out.stderr
    return out


def js(config: Path, *args: str) -> Any:
    return json.loads(run(config, *args, "--json").stdout)


def test_keys_lifecycle_with_json(config: Path) -> None:
    team = js(config, "teams", "create", "platform", "--budget", "100", "--rpm", "600/hour")
    assert team["limits"] == {"rpm": "600/hour", "tpm": None, "max_concurrent": None, "monthly_budget_usd": 100.0}
    made = js(config, "keys", "create", "--owner", "alice@example.com", "--team", "platform", "--name", "laptop",
              "--max-concurrent", "2", "--expires", "90d")
    assert made["key"].startswith(f"cpk_{made['id']}_") and made["team"] == "platform" and made["expires_at"]
    admin = js(config, "keys", "create", "--owner", "ops@example.com", "--admin", "--gateway")
    assert (admin["role"], admin["gateway"]) == ("admin", True)
    listed = js(config, "keys", "list", "--team", "platform")
    assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
    updated = js(config, "keys", "update", made["id"], "--rpm", "30", "--team", "none")
    assert updated["team"] is None and updated["limits"]["rpm"] == "30/minute"
    shown = js(config, "keys", "show", made["id"])
    assert shown["month_spend_usd"] == 0 and shown["in_flight"] == 0
    revoked = js(config, "keys", "revoke", made["id"], "--reason", "lost")
    assert revoked["status"] == "revoked" and revoked["revoke_reason"] == "lost"
    assert js(config, "keys", "list") == [k for k in js(config, "keys", "list", "--all") if k["status"] == "active"]
    assert [k["id"] for k in js(config, "keys", "list", "--revoked")] == [made["id"]]
    trail = js(config, "audit")
    assert [e["action"] for e in trail] == ["key.revoke", "key.update", "key.create", "key.create", "team.create"]
    assert all(e["actor"].startswith("cli:") and e["remote_addr"] == "local" for e in trail)
    assert js(config, "usage", "--by", "team", "model") == []
    assert js(config, "teams", "list")[0]["name"] == "platform"
    assert js(config, "teams", "archive", "platform")["archived_at"]


def test_the_key_is_printed_once_in_text_mode_too(config: Path) -> None:
    out = run(config, "keys", "create", "--owner", "bob").stdout
    key = out.splitlines()[0]
    assert key.startswith("cpk_") and "shown once" in out
    assert key not in run(config, "keys", "list").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "show", "nope1234"), "no key with id 'nope1234'"),
        (("keys", "create", "--owner", "x", "--team", "ghost"), "no team named 'ghost'"),
        (("keys", "create", "--owner", "x", "--rpm", "5/fortnight"), "unknown period"),
        (("usage", "--month", "2026-13"), "--month must look like"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(config: Path, args: tuple[str, ...], message: str) -> None:
    out = run(config, *args, ok=False)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_without_a_teams_table_the_verbs_say_what_to_add(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[provider]\nname = "deepseek"\napi_key = "sk-test-0000000000"\n')
    out = run(config, "keys", "list", ok=False)
    assert "no [teams] table" in out.stderr


def test_config_validation_names_the_key(tmp_path: Path) -> None:
    base = {"provider": {"name": "deepseek", "api_key": "k"}}
    with pytest.raises(ConfigError, match=r"'teams\.store' must be"):
        load_config(data={**base, "teams": {"store": "mongo"}}, env={})
    with pytest.raises(ConfigError, match=r"teams\.defaults\.rpm"):
        load_config(data={**base, "teams": {"defaults": {"rpm": "lots"}}}, env={})
    with pytest.raises(ConfigError, match=r"unknown key 'teams\.colour'"):
        load_config(data={**base, "teams": {"colour": 1}}, env={})
    settings = load_config(data={**base, "teams": {"path": str(tmp_path / "t.db")}}, env={}).teams
    assert settings is not None and settings.path == str(tmp_path / "t.db") and settings.on_store_error == "open"
    assert load_config(data=base, env={}).teams is None
    default = load_config(data={**base, "teams": {}}, env={"HOME": str(tmp_path)}).teams
    assert default is not None and default.path == str(tmp_path / ".local/state/claude-proxy/teams.db")


VERB_RUNS = [
    ("teams", ["create", "ops"], 0),
    ("keys", ["create", "--owner", "a@example.com", "--team", "ops"], 0),
    ("keys", ["list"], 0),
    ("keys", ["show", "k_none"], 2),  # the verb fails: its store is stopped all the same
    ("teams", ["show", "ops"], 0),
    ("usage", ["--by", "key"], 0),
    ("audit", [], 0),
    ("store", ["status"], 0),
]


def test_every_verb_stops_its_store_when_it_is_done(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each verb, in this process: the store it opened is stopped once before the verb returns, whether the
    verb succeeded or failed, and no thread it started outlives it (a PostgreSQL pool's), so nothing is
    left for the interpreter's exit to tear down."""
    import importlib
    import threading

    from claude_proxy.teams import gate

    opened: list[Any] = []
    build = gate.open_store

    def recording(*args: Any, **kwargs: Any) -> Any:
        store = build(*args, **kwargs)
        stop, stops = store.stop, []

        def counted() -> None:
            stops.append(1)
            stop()

        monkeypatch.setattr(store, "stop", counted)
        opened.append((store, stops))
        return store

    monkeypatch.setattr(gate, "open_store", recording)
    for command, argv, code in VERB_RUNS:
        before = set(threading.enumerate())
        main = importlib.import_module(f"claude_proxy.cli.{command}").main
        assert main([*argv, "-c", str(config)]) == code, (command, argv)
        assert len(opened) == 1 and opened[0][1] == [1], (command, argv, opened)
        left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
        assert not left, (command, argv, left)
        opened.clear()
