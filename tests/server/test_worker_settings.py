"""The worker's `Date` header is gunicorn's own: current, and made afresh each second.

(The worker once cached it and its settings, `SecondDate` and `SettledConfig`; re-measured at
under 2% of a request's CPU they were deleted: docs/internals-ledger.md.)
"""

from __future__ import annotations

import email.utils
import time

import requests

from tests.conftest import proxy_config
from tests.support.proxy_server import CLOSE, ProxyServer
from tests.support.upstream import FakeUpstream


def test_the_real_server_sends_a_current_date(upstream: FakeUpstream) -> None:
    with ProxyServer(proxy_config(upstream)) as server:
        sent = []
        for _ in range(2):
            response = requests.get(server.url + "/health", headers=CLOSE, timeout=5)
            assert response.status_code == 200
            sent.append(email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp())
            assert abs(sent[-1] - time.time()) < 5
            time.sleep(1.1)
        assert sent[1] > sent[0]  # a later second's date is made afresh
