"""The worker's settings read once and its `Date` header made once a second, against gunicorn's own."""

from __future__ import annotations

import email.utils
import time

import pytest
import requests
from gunicorn import util
from gunicorn.config import Config

from claude_proxy.server.worker import SecondDate, SettledConfig
from tests.conftest import proxy_config
from tests.support.proxy_server import ProxyServer
from tests.support.upstream import FakeUpstream


def configured() -> Config:
    cfg = Config()
    cfg.set("threads", 7)
    cfg.set("keepalive", 9)
    cfg.set("forwarded_allow_ips", "10.0.0.1, 127.0.0.1")
    cfg.set("worker_class", "claude_proxy.server.worker.GracefulThreadWorker")
    return cfg


def test_every_setting_reads_as_gunicorn_reads_it() -> None:
    cfg = configured()
    settled = SettledConfig(cfg)
    for name in cfg.settings:
        assert getattr(settled, name) == getattr(cfg, name), name
    assert settled.threads == 7 and settled.keepalive == 9


def test_properties_and_methods_still_come_from_gunicorn() -> None:
    cfg = configured()
    settled = SettledConfig(cfg)
    assert settled.worker_class is cfg.worker_class  # the class, not the setting's dotted name
    assert settled.worker_class.__name__ == "GracefulThreadWorker"
    assert not settled.is_ssl and settled.is_ssl == cfg.is_ssl and settled.address == cfg.address
    assert settled.settings is cfg.settings
    assert settled.pre_request is cfg.pre_request  # hooks are settings too: the same callables
    with pytest.raises(AttributeError):
        settled.no_such_setting  # noqa: B018


def test_the_date_is_gunicorns_formatted_once_a_second() -> None:
    formatted: list[float] = []
    now = [1_700_000_000.25]

    def format_date(timestamp: float | None = None) -> str:
        formatted.append(timestamp)  # type: ignore[arg-type]
        return util.http_date(timestamp)

    date = SecondDate(format_date, clock=lambda: now[0])
    first = date()
    assert first == util.http_date(1_700_000_000) == "Tue, 14 Nov 2023 22:13:20 GMT"
    now[0] = 1_700_000_000.99
    assert date() == first and len(formatted) == 1  # same second: not formatted again
    now[0] = 1_700_000_001.01
    assert date() == "Tue, 14 Nov 2023 22:13:21 GMT" and len(formatted) == 2
    assert date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"  # an explicit time is formatted as asked


def test_the_real_server_sends_a_current_date(upstream: FakeUpstream) -> None:
    with ProxyServer(proxy_config(upstream)) as server:
        sent = []
        for _ in range(2):
            response = requests.get(server.url + "/health", timeout=5)
            assert response.status_code == 200
            sent.append(email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp())
            assert abs(sent[-1] - time.time()) < 5
            time.sleep(1.1)
        assert sent[1] > sent[0]  # a later second's date is made afresh
