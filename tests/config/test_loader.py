"""Configuration: where the file is looked for, what a valid one gives, and one-line errors for bad ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from claude_proxy.config.loader import CONFIG_ENV, ConfigError, find_config_file, load_config, search_paths

PRESET_NAMES = (
    "openai, openrouter, fireworks, grok, together, groq, deepseek, mistral, moonshot, gemini, anthropic, "
    "ollama, vllm, custom"
)


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fake HOME and cwd with no config anywhere; the process environment cleared of what the code reads."""
    home = tmp_path / "home"
    cwd = tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    for var in (CONFIG_ENV, "XDG_CONFIG_HOME", "OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "CLAUDE_PROXY_AUTH_KEYS"):
        monkeypatch.delenv(var, raising=False)
    return {"home": home, "cwd": cwd, "tmp": tmp_path}


def _config(path: Path, model: str) -> Path:
    """A valid config whose only distinguishing mark is the model `*` maps to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[provider]\nname = "ollama"\n\n[models]\n"*" = "{model}"\n')
    return path


def _which(config_path: str | None = None, env: dict[str, str] | None = None) -> str:
    return load_config(config_path, env=env if env is not None else {}).models.resolve("anything")


# -- search order ----------------------------------------------------------------------------------


def test_search_order_each_level_wins_over_the_ones_after_it(sandbox: dict[str, Path]) -> None:
    home, cwd, tmp = sandbox["home"], sandbox["cwd"], sandbox["tmp"]
    xdg = tmp / "xdg"
    explicit = _config(tmp / "explicit.toml", "explicit")
    from_env = _config(tmp / "from-env.toml", "env")
    local = _config(cwd / "claude-proxy.toml", "cwd")
    xdg_file = _config(xdg / "claude-proxy" / "config.toml", "xdg")
    dotfile = _config(home / ".claude-proxy.toml", "dotfile")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(xdg), CONFIG_ENV: str(from_env)}

    assert _which(str(explicit), env) == "explicit"
    assert _which(None, env) == "env"
    del env[CONFIG_ENV]
    assert _which(None, env) == "cwd"
    local.unlink()
    assert _which(None, env) == "xdg"
    xdg_file.unlink()
    assert _which(None, env) == "dotfile"
    dotfile.unlink()
    assert find_config_file(None, env) is None


def test_search_paths_list_every_candidate_in_order(sandbox: dict[str, Path]) -> None:
    home, cwd, tmp = sandbox["home"], sandbox["cwd"], sandbox["tmp"]
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(tmp / "xdg"), CONFIG_ENV: str(tmp / "env.toml")}
    assert search_paths(str(tmp / "x.toml"), env) == [
        tmp / "x.toml",
        cwd / "claude-proxy.toml",
        tmp / "xdg" / "claude-proxy" / "config.toml",
        home / ".claude-proxy.toml",
    ]
    assert search_paths(None, env)[0] == tmp / "env.toml"
    assert search_paths(None, {"HOME": str(home)}) == [
        cwd / "claude-proxy.toml",
        home / ".config" / "claude-proxy" / "config.toml",
        home / ".claude-proxy.toml",
    ]


def test_dot_config_is_used_when_xdg_is_unset(sandbox: dict[str, Path]) -> None:
    home = sandbox["home"]
    _config(home / ".config" / "claude-proxy" / "config.toml", "dot-config")
    _config(home / ".claude-proxy.toml", "dotfile")
    assert _which(None, {"HOME": str(home)}) == "dot-config"
    # with XDG_CONFIG_HOME set elsewhere, ~/.config is not the config dir any more
    assert _which(None, {"HOME": str(home), "XDG_CONFIG_HOME": str(sandbox["tmp"] / "empty-xdg")}) == "dotfile"


def test_search_uses_the_real_process_environment_and_cwd(sandbox: dict[str, Path]) -> None:
    _config(sandbox["home"] / ".claude-proxy.toml", "dotfile")
    config = load_config()  # os.environ: HOME points at the sandbox
    assert config.models.resolve("x") == "dotfile"
    assert config.source == str(sandbox["home"] / ".claude-proxy.toml")


@pytest.mark.parametrize("via_env", [False, True])
def test_a_named_file_that_does_not_exist_is_an_error(sandbox: dict[str, Path], via_env: bool) -> None:
    _config(sandbox["cwd"] / "claude-proxy.toml", "cwd")  # must not be used as a fallback
    missing = sandbox["tmp"] / "missing.toml"
    with pytest.raises(ConfigError) as info:
        if via_env:
            load_config(env={CONFIG_ENV: str(missing), "HOME": str(sandbox["home"])})
        else:
            load_config(str(missing), env={"HOME": str(sandbox["home"])})
    assert str(info.value) == f"{missing}: config file not found"


# -- no file, presets, keys --------------------------------------------------------------------------


def test_no_config_file_with_a_preset(sandbox: dict[str, Path]) -> None:
    config = load_config(provider="openrouter", env={"HOME": str(sandbox["home"]), "OPENROUTER_API_KEY": "sk-or-x"})
    assert config.source is None
    assert config.provider.name == "openrouter"
    assert config.provider.base_url == "https://openrouter.ai/api/v1"
    assert config.provider.format == "openai"
    assert config.provider.api_key == "sk-or-x"
    assert config.provider.api_key_env == "OPENROUTER_API_KEY"
    assert (config.host, config.port, len(config.models)) == ("127.0.0.1", 4222, 0)


def test_no_config_file_and_no_provider_says_what_to_do(sandbox: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HOME": str(sandbox["home"])})
    assert str(info.value) == (
        "<no config file>: no provider configured: add a [provider] table or pass --provider NAME "
        f"(one of: {PRESET_NAMES})"
    )


def test_api_key_from_the_file_wins_over_the_environment() -> None:
    data = {"provider": {"name": "deepseek", "api_key": "sk-from-file"}}
    config = load_config(data=data, env={"DEEPSEEK_API_KEY": "sk-from-env"})
    assert config.provider.api_key == "sk-from-file"
    assert not config.provider.key_missing


def test_api_key_from_the_presets_variable_and_from_a_named_variable() -> None:
    config = load_config(data={"provider": {"name": "deepseek"}}, env={"DEEPSEEK_API_KEY": "sk-ds"})
    assert config.provider.api_key == "sk-ds"
    named = {"provider": {"name": "deepseek", "api_key_env": "MY_DS_KEY"}}
    config = load_config(data=named, env={"DEEPSEEK_API_KEY": "sk-ds", "MY_DS_KEY": "sk-mine"})
    assert (config.provider.api_key, config.provider.api_key_env) == ("sk-mine", "MY_DS_KEY")


def test_missing_key_is_not_a_config_error() -> None:
    config = load_config(data={"provider": {"name": "deepseek"}}, env={"DEEPSEEK_API_KEY": ""})
    assert config.provider.api_key is None
    assert config.provider.key_missing
    local = load_config(data={"provider": {"name": "ollama"}}, env={})
    assert not local.provider.key_missing  # a local server needs no key


def test_key_never_in_repr() -> None:
    config = load_config(
        data={"provider": {"name": "deepseek", "api_key": "sk-secret-value"}, "server": {"auth_keys": ["pk-1"]}},
        env={},
    )
    assert "sk-secret-value" not in repr(config)
    assert "pk-1" not in repr(config)


def test_provider_flag_overrides_the_files_provider(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[provider]\nname = "deepseek"\nbase_url = "https://deepseek.example/v1"\napi_key_env = "DS"\n'
        '[provider.quirks]\ntop_k = true\n[models]\n"*" = "m"\n'
    )
    env = {"DS": "sk-ds", "OPENROUTER_API_KEY": "sk-or"}
    config = load_config(str(path), provider="openrouter", env=env)
    assert config.provider.name == "openrouter"
    assert config.provider.base_url == "https://openrouter.ai/api/v1"  # the file's deepseek URL is not kept
    assert config.provider.api_key == "sk-or"
    assert config.provider.api_key_env == "OPENROUTER_API_KEY"
    assert config.provider.dialect.name == "openrouter"
    assert config.provider.dialect.top_k is True  # quirks are kept
    assert config.models.resolve("x") == "m"  # the rest of the file still applies
    # the same name as the file's keeps the whole table
    same = load_config(str(path), provider="deepseek", env=env)
    assert (same.provider.base_url, same.provider.api_key) == ("https://deepseek.example/v1", "sk-ds")


def test_custom_provider_and_preset_url_override() -> None:
    config = load_config(data={"provider": {"base_url": "http://127.0.0.1:9/v1/"}}, env={})
    assert (config.provider.name, config.provider.base_url, config.provider.key_missing) == (
        "custom",
        "http://127.0.0.1:9/v1",
        False,
    )
    config = load_config(data={"provider": {"name": "DeepSeek", "base_url": "https://eu.deepseek/v1"}}, env={})
    assert (config.provider.name, config.provider.base_url) == ("deepseek", "https://eu.deepseek/v1")


def test_full_file_values(tmp_path: Path) -> None:
    path = tmp_path / "full.toml"
    path.write_text(
        """
port = 5000
host = "127.0.0.2"
timeout = 90

[provider]
name = "openai"
api_key = "sk-x"
headers = { "X-Org" = "acme" }

[provider.quirks]
parallel_tool_calls = false
reasoning_models = ["my-o*"]

[models]
"claude-*" = "gpt-5"

[params]
drop = ["betas"]
forward_unknown = true

[params.extra]
service_tier = "flex"

[server]
auth_keys = ["pk-1", "pk-2"]
max_body_size = "2MB"
log_bodies = true
workers = 3
threads = 8
ping_interval = 5

[upstream]
connect_timeout = 3
read_timeout = 30
max_retries = 0
retry_base_delay = 0.1
retry_max_delay = 2
"""
    )
    config = load_config(str(path), env={"CLAUDE_PROXY_AUTH_KEYS": "pk-3, pk-4"})
    assert (config.host, config.port, config.source) == ("127.0.0.2", 5000, str(path))
    assert config.provider.headers == {"X-Org": "acme"}
    assert config.provider.dialect.parallel_tool_calls is False
    assert config.provider.dialect.reasoning_models == ("my-o*",)
    assert config.provider.dialect.extra_body == {"service_tier": "flex"}
    assert config.drop == frozenset({"betas"})
    assert config.forward_unknown is True
    assert config.auth_keys == ("pk-1", "pk-2", "pk-3", "pk-4")
    assert config.max_body_bytes == 2 * 1024 * 1024
    assert (config.log_bodies, config.workers, config.threads) == (True, 3, 8)
    assert (config.timeouts.connect, config.timeouts.read, config.timeouts.total) == (3.0, 30.0, 90.0)
    assert config.timeouts.ping_interval == 5.0
    assert (config.retry.max_retries, config.retry.base_delay, config.retry.max_delay) == (0, 0.1, 2.0)


# -- errors: one line naming file, key and what was expected ------------------------------------------


ERRORS = [
    (
        "unknown_provider",
        '[provider]\nname = "nosuch"\n',
        "{f}: unknown provider 'nosuch' and no 'provider.base_url' (presets: " + PRESET_NAMES + ")",
    ),
    ("custom_without_url", '[provider]\nname = "custom"\n', "{f}: provider 'custom' needs 'provider.base_url'"),
    (
        "port_as_string",
        'port = "4222"\n[provider]\nname = "ollama"\n',
        "{f}: 'port' must be an integer from 0 to 65535, got str '4222'",
    ),
    (
        "port_out_of_range",
        'port = 70000\n[provider]\nname = "ollama"\n',
        "{f}: 'port' must be an integer from 0 to 65535, got int 70000",
    ),
    (
        "model_not_a_string",
        '[provider]\nname = "ollama"\n[models]\n"claude-*" = 5\n',
        "{f}: 'models.\"claude-*\"': expected a target string or a list of targets, got int",
    ),
    (
        "auth_keys_not_a_list",
        '[provider]\nname = "ollama"\n[server]\nauth_keys = "pk-1"\n',
        "{f}: 'server.auth_keys' must be a list of strings, got str 'pk-1'",
    ),
    (
        "auth_keys_not_strings",
        '[provider]\nname = "ollama"\n[server]\nauth_keys = ["a", 2]\n',
        "{f}: 'server.auth_keys' must be a list of strings, got list ['a', 2]",
    ),
    (
        "bool_as_string",
        '[provider]\nname = "ollama"\n[server]\nallow_unauthenticated = "yes"\n',
        "{f}: 'server.allow_unauthenticated' must be true or false, got str 'yes'",
    ),
    (
        "unknown_top_level_key",
        'colour = "blue"\n[provider]\nname = "ollama"\n',
        "{f}: unknown key 'colour' (expected one of: ...host, ...models, ...port, ...provider, ...server, ...upstream...)",
    ),
    (
        "unknown_provider_key",
        '[provider]\nname = "ollama"\nurl = "http://x"\n',
        "{f}: unknown key 'provider.url' (expected one of: ...api_key, ...base_url, ...format, ...name, ...quirks...)",
    ),
    (
        "unknown_server_key",
        '[provider]\nname = "ollama"\n[server]\nport = 1\n',
        "{f}: unknown key 'server.port' (expected one of: ...auth_keys, ...max_body_size, ...threads, ...workers...)",
    ),
    (
        "unknown_quirk",
        '[provider]\nname = "ollama"\n[provider.quirks]\nfrobnicate = true\n',
        "{f}: unknown key 'provider.quirks.frobnicate' (expected one of: ...max_tokens_field, ...top_k, "
        "...user_max_len...)",
    ),
    (
        "quirk_wrong_type",
        '[provider]\nname = "ollama"\n[provider.quirks]\ntop_k = "yes"\n',
        "{f}: 'provider.quirks.top_k' must be true or false, got 'yes'",
    ),
    (
        "bad_format",
        '[provider]\nname = "custom"\nbase_url = "http://x/v1"\nformat = "gemini"\n',
        "{f}: 'provider.format' must be \"openai\" or \"anthropic\", got 'gemini'",
    ),
    (
        "bad_base_url",
        '[provider]\nname = "custom"\nbase_url = "localhost:8000/v1"\n',
        "{f}: 'provider.base_url' must start with http:// or https://, got 'localhost:8000/v1'",
    ),
    (
        "provider_not_a_table",
        'provider = "ollama"\n',
        "{f}: 'provider' must be a table, got str 'ollama'",
    ),
    (
        "timeout_zero",
        'timeout = 0\n[provider]\nname = "ollama"\n',
        "{f}: 'timeout' must be a number above 0.0, got int 0",
    ),
    (
        "bad_size",
        '[provider]\nname = "ollama"\n[server]\nmax_body_size = "lots"\n',
        "{f}: 'server.max_body_size' must be a size like \"32MB\", got 'lots'",
    ),
    (
        "toml_syntax",
        '[provider]\nname = "ollama"\nport = = 3\n',
        "{f}: not valid TOML: Invalid value (at line 3, column 8)",
    ),
    (
        "toml_duplicate_key",
        '[provider]\nname = "ollama"\nname = "vllm"\n',
        "{f}: not valid TOML: Cannot overwrite a value (at line 3, column 14)",
    ),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_config_errors_are_one_precise_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "claude-proxy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), env={})
    assert "\n" not in str(info.value)
    assert_matches(str(info.value), message.format(f=path))


def assert_matches(actual: str, expected: str) -> None:
    """Exact, except that "..." in `expected` stands for any text: key lists grow with new features."""
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    assert re.fullmatch(pattern, actual), f"{actual!r} does not match {expected!r}"


def test_a_found_file_is_named_by_its_full_path(sandbox: dict[str, Path]) -> None:
    (sandbox["cwd"] / "claude-proxy.toml").write_text('[provider]\nname = "ollama"\nport = 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(env={"HOME": str(sandbox["home"])})
    assert str(info.value).startswith(f"{sandbox['cwd'] / 'claude-proxy.toml'}: unknown key 'provider.port'")


def test_size_strings() -> None:
    for text, size in (("512", 512), ("64KB", 65536), ("1 mb", 1 << 20), ("2GB", 2 << 30), ("100B", 100)):
        config = load_config(data={"provider": {"name": "ollama"}, "server": {"max_body_size": text}}, env={})
        assert config.max_body_bytes == size


@pytest.mark.parametrize("spelling", ["OpenRouter", "openrouter", "OPENROUTER"])
def test_provider_names_do_not_depend_on_case(spelling: str) -> None:
    """`--provider OpenRouter` and `openrouter` are the same preset; targets and default_provider likewise."""
    env = {"OPENROUTER_API_KEY": "sk-or-0123456789abcdef", "GROQ_API_KEY": "gsk_0123456789abcdef"}
    table = {"name": "openrouter", "base_url": "http://127.0.0.1:9/v1"}
    config = load_config(provider=spelling, env=env, data={"provider": table})
    assert (config.provider.name, config.provider.base_url) == ("openrouter", "http://127.0.0.1:9/v1")  # table kept
    data = {
        "provider": {"name": "groq"},
        "providers": {"OpenRouter": {}},
        "models": {"m": f"{spelling},some/model"},
        "routing": {"default_provider": spelling},
    }
    config = load_config(env=env, data=data)
    assert config.default_provider == "OpenRouter"
    assert [(t.provider, t.model) for t in config.models.entries["m"]] == [("OpenRouter", "some/model")]


def test_context_windows_exact_then_most_specific_glob() -> None:


    config = load_config(
        data={
            "provider": {"name": "deepseek", "api_key": "k"},
            "context_windows": {"deepseek-chat": 65536, "qwen*": 32768, "qwen3-coder*": 262144},
        },
        env={},
    )
    assert config.context_window("deepseek-chat") == 65536
    assert config.context_window("qwen3-coder-30b") == 262144
    assert config.context_window("qwen2.5-7b") == 32768
    assert config.context_window("gpt-4o") is None


@pytest.mark.parametrize("value", [0, 100, True, "128k", 10**9])
def test_context_windows_must_be_sensible_token_counts(value: object) -> None:


    with pytest.raises(ConfigError, match=r"context_windows\.\"m\"' must be a number of tokens"):
        load_config(data={"provider": {"name": "deepseek", "api_key": "k"}, "context_windows": {"m": value}}, env={})
