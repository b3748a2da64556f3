"""Which of the worker's departures from gunicorn the installed versions can carry.

Each item of docs/internals-ledger.md ("server/") names the gunicorn (or stdlib) attributes,
signatures and assignments it relies on. A worker checks them once at start: an item whose
ground is missing is off, with one log line for all of them, instead of a crash-loop or a
silent misbehaviour. Speed items also obey the switch (`switch.fast_paths_enabled`); behaviour
items (what a client sees) stay on whenever the installed gunicorn carries them.
"""

from __future__ import annotations

import inspect
import select
import selectors
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gunicorn
from gunicorn import util
from gunicorn.http import unreader, wsgi
from gunicorn.workers import base, gthread


def lacks_attributes(owner: Any, *names: str) -> list[str]:
    """The names `owner` does not have."""
    label = getattr(owner, "__qualname__", getattr(owner, "__name__", repr(owner)))
    return [f"{label}.{name}" for name in names if not hasattr(owner, name)]


def lacks_names(function: Any, *names: str) -> list[str]:
    """The attribute names `function`'s code never mentions (an assignment `self.x = ...` or a
    call `module.x(...)` puts `x` there): how an instance attribute or a call by global name is
    checked without an instance."""
    code = getattr(function, "__code__", None)
    label = getattr(function, "__qualname__", repr(function))
    if code is None:
        return [f"{label} (no code object)"]
    return [f"{label} uses {name}" for name in names if name not in code.co_names]


def lacks_signature(function: Any, *params: str) -> list[str]:
    """[] if `function` takes exactly `params` (after `self`)."""
    try:
        found = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return [f"{function!r} has no signature"]
    if found != ["self", *params]:
        return [f"{function.__qualname__}({', '.join(found)}), not (self, {', '.join(params)})"]
    return []


@dataclass(frozen=True)
class Item:
    name: str
    speed: bool  # obeys the fast-paths switch
    missing: Callable[[], list[str]]  # what the installed versions lack; [] when the item can run


def _envelope_errors() -> list[str]:
    return (
        _plain_signature(util.write_error, "sock", "status_int", "reason", "mesg")
        + lacks_attributes(util, "write_nonblock")
        + lacks_names(base.Worker.handle_error, "util", "write_error")
    )


def _plain_signature(function: Any, *params: str) -> list[str]:
    try:
        found = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return [f"{function!r} has no signature"]
    return [] if found == list(params) else [f"{function.__qualname__}({', '.join(found)})"]


def _gthread_accept_shape() -> list[str]:
    """gunicorn ≥ 24's gthread: `accept(listener)`, `set_accept_enabled`, `_accepting`, `nr_conns`."""
    worker = gthread.ThreadWorker
    return (
        lacks_signature(worker.accept, "listener")
        + lacks_attributes(worker, "set_accept_enabled")
        + lacks_names(worker.__init__, "_accepting", "nr_conns")
    )


def _turn_taking() -> list[str]:
    epoll = getattr(selectors, "EpollSelector", None)
    return (
        _gthread_accept_shape()
        + ([] if getattr(select, "EPOLLEXCLUSIVE", 0) else ["select.EPOLLEXCLUSIVE"])
        + (["selectors.EpollSelector"] if epoll is None else lacks_names(epoll.__init__, "_selector"))
    )


def _firm_stop() -> list[str]:
    return _gthread_accept_shape()


def _stop_pending() -> list[str]:
    """gthread ≥ 27: parked connections in `pending_conns`, closed by `murder_pending` once `timeout` passed."""
    worker = gthread.ThreadWorker
    return (
        _gthread_accept_shape()
        + lacks_attributes(worker, "murder_pending")
        + lacks_names(worker.__init__, "pending_conns")
        + lacks_names(worker.murder_pending, "pending_conns", "timeout", "close")
        + lacks_names(worker.run, "murder_pending", "set_accept_enabled")
    )


def _keepalive_linger() -> list[str]:
    return (
        _gthread_accept_shape()
        + lacks_names(gthread.TConn.init, "parser")
        + lacks_names(unreader.Unreader.__init__, "buf")
    )


def _coalescing_response() -> list[str]:
    return lacks_attributes(wsgi.Response, "_emit_body", "send_headers", "sendfile", "close") + lacks_names(
        wsgi.Response.__init__, "sock", "headers_sent"
    )


ITEMS: tuple[Item, ...] = (
    Item("envelope_errors", speed=False, missing=_envelope_errors),
    Item("firm_stop", speed=False, missing=_firm_stop),
    Item("stop_pending", speed=False, missing=_stop_pending),
    Item("turn_taking", speed=True, missing=_turn_taking),
    Item("keepalive_linger", speed=True, missing=_keepalive_linger),
    Item("coalescing_response", speed=True, missing=_coalescing_response),
)

ITEMS_BY_NAME = {item.name: item for item in ITEMS}


def active(fast_paths: bool, items: tuple[Item, ...] = ITEMS) -> tuple[frozenset[str], str]:
    """The names of the items to run, and one log line about those the installed versions cannot
    carry ("" when there are none). Items the switch turns off are not checked at all."""
    on: set[str] = set()
    off: list[str] = []
    for item in items:
        if item.speed and not fast_paths:
            continue
        try:
            missing = item.missing()
        except Exception as exc:  # a check must never stop a worker: the item is simply off
            missing = [f"check failed: {type(exc).__name__}"]
        if missing:
            off.append(f"{item.name} ({'; '.join(missing)})")
        else:
            on.add(item.name)
    note = ""
    if off:
        note = f"claude-proxy: gunicorn {gunicorn.__version__} lacks what these need, so they are off: " + ", ".join(
            off
        )
    return frozenset(on), note
