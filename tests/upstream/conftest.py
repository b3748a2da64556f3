"""Local upstreams for the upstream layer's tests: `up` over plain HTTP and over TLS (a private CA, `ca`),
`plain` over HTTP only. A module may define its own `up` (plain only) instead."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme

from tests.support.upstream import FakeUpstream


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(params=["http", "https"])
def up(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[FakeUpstream]:
    context = None
    if request.param == "https":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
    with FakeUpstream(tls=context) as server:
        yield server


@pytest.fixture
def plain() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server
