"""The fast-paths switch and the worker's start-up self-check (docs/internals-ledger.md, "server/").

Unit cases pin how the switch is read and how a missing piece of gunicorn turns one item off;
the real-server cases start `claude-proxy` both ways and look at the worker process itself.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gunicorn
import pytest
import requests

from claude_proxy.server import selfcheck
from claude_proxy.server.switch import ENV, fast_paths_enabled
from tests.conftest import proxy_config
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream

LEDGER = Path(__file__).resolve().parents[2] / "docs" / "internals-ledger.md"


@pytest.mark.parametrize(
    ("value", "config", "expected"),
    [
        (None, None, True),
        ("0", None, False),
        ("false", SimpleNamespace(fast_paths=True), False),
        (" OFF ", None, False),
        ("1", SimpleNamespace(fast_paths=False), True),  # the variable wins over the file
        (None, SimpleNamespace(fast_paths=False), False),
        (None, SimpleNamespace(), True),  # a Config without the key: on
        ("maybe", SimpleNamespace(fast_paths=False), False),  # unrecognised: the config decides
        ("", SimpleNamespace(fast_paths=True), True),
    ],
)
def test_the_switch_reads_the_variable_then_the_config(value: str | None, config: object, expected: bool) -> None:
    environ = {} if value is None else {ENV: value}
    assert fast_paths_enabled(config, environ) is expected


def _gunicorn() -> tuple[int, ...]:
    return tuple(int(part) for part in gunicorn.__version__.split(".")[:2])


def test_every_item_holds_on_the_gunicorn_versions_it_needs() -> None:
    """All from 27; from 24 all but the head/body coalescing (no `_emit_body` before 27) and the stop of
    parked connections (no `pending_conns` before 27)."""
    on, note = selfcheck.active(True)
    wanted = {item.name for item in selfcheck.ITEMS}
    if _gunicorn() < (27, 0):
        wanted -= {"coalescing_response", "stop_pending"}
    assert on == wanted
    assert (note == "") is (_gunicorn() >= (27, 0))


def test_switched_off_only_behaviour_items_remain() -> None:
    on, note = selfcheck.active(False)
    assert note == ""
    assert on == {item.name for item in selfcheck.ITEMS if not item.speed}
    assert on == {"envelope_errors", "firm_stop", "stop_pending"}


def test_a_missing_piece_turns_only_its_item_off_with_one_line() -> None:
    def broken() -> list[str]:
        raise AttributeError("gone")

    items = (
        selfcheck.Item("fine", speed=True, missing=list),
        selfcheck.Item("renamed", speed=True, missing=lambda: ["Response._emit_body"]),
        selfcheck.Item("raises", speed=False, missing=broken),
    )
    on, note = selfcheck.active(True, items)
    assert on == {"fine"}
    assert "\n" not in note
    assert "renamed (Response._emit_body)" in note and "raises (check failed: AttributeError)" in note


def test_the_checks_see_a_different_shape() -> None:
    class Old:
        def accept(self, server: object, listener: object) -> None:
            self.nr_conns = 1

    assert selfcheck.lacks_signature(Old.accept, "listener")
    assert not selfcheck.lacks_signature(Old.accept, "server", "listener")
    assert selfcheck.lacks_names(Old.accept, "_accepting") == [
        "test_the_checks_see_a_different_shape.<locals>.Old.accept uses _accepting"
    ]
    assert not selfcheck.lacks_names(Old.accept, "nr_conns")
    assert selfcheck.lacks_attributes(Old, "set_accept_enabled", "accept") == [f"{Old.__qualname__}.set_accept_enabled"]


def test_the_ledger_lists_every_item() -> None:
    text = LEDGER.read_text()
    section = text[text.index("## server/") :]
    for item in selfcheck.ITEMS:
        assert f"`{item.name}`" in section, item.name


def _worker_pid(server: ProxyServer) -> int:
    return server.worker_pids()[0]


def _serves(server: ProxyServer) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    with requests.post(server.url + "/v1/messages", json=body, headers=headers, stream=True, timeout=10) as reply:
        assert reply.status_code == 200
        text = reply.content.decode()
    assert "event: message_start" in text and "event: message_stop" in text


@pytest.mark.e2e
@pytest.mark.parametrize("value", ["1", "0"])
def test_a_real_worker_follows_the_switch(upstream: FakeUpstream, value: str) -> None:
    """Fast paths on: requests' encoding detector (a compiled module) is never mapped into the
    worker; off: the worker loads it like any requests user. Both ways the proxy serves."""
    with ProxyServer(proxy_config(upstream), env={ENV: value}) as server:
        _serves(server)
        maps = Path(f"/proc/{_worker_pid(server)}/maps").read_text()
        assert ("charset_normalizer" in maps) is (value == "0")
        assert ("lacks what these need" in server.output()) is (value == "1" and _gunicorn() < (27, 0))
