"""The usage page at /ui/: server-rendered (Jinja2), no JavaScript, sign-in with a proxy key.

The session is a signed cookie (itsdangerous, secret shared by every worker through the store's meta
table) holding only the key id; every page view re-checks that key, so revoking it ends the session.
HttpOnly, SameSite=Strict, Path = the page's own URL (so it works under any prefix), Secure under https.
Forms carry a signed CSRF token; a strict Content-Security-Policy allows only the page's own nonce'd style.
"""

from __future__ import annotations

import calendar
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import DictLoader, Environment, select_autoescape

from claude_proxy.teams.base import STORE_ERRORS, Store
from claude_proxy.teams.keys import hash_key
from claude_proxy.teams.limits import month_of
from claude_proxy.teams.records import KeyRecord, iso
from claude_proxy.teams.rows import StoreError

log = logging.getLogger("claude_proxy.teams")
COOKIE = "cp_session"
UNAVAILABLE = "The usage store is unavailable; try again shortly."
SESSION_SECONDS = 12 * 3600
_TEMPLATES = Path(__file__).with_name("templates")


def _env() -> Environment:
    loader = DictLoader({
        "page": (_TEMPLATES / "teams_ui.html").read_text(),
        "rows": (_TEMPLATES / "teams_rows.html").read_text(),
    })
    return Environment(loader=loader, autoescape=select_autoescape(default=True))


class UsagePage:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.env = _env()
        self._signer: URLSafeTimedSerializer | None = None

    def signer(self) -> URLSafeTimedSerializer:
        if self._signer is None:
            secret = self.store.meta("ui_secret", lambda: secrets.token_urlsafe(32))
            self._signer = URLSafeTimedSerializer(secret, salt="claude-proxy-ui")
        return self._signer

    def install(self, bp: Blueprint, cookie_secure: str) -> None:
        def secure() -> bool:
            if cookie_secure in ("true", "false"):
                return cookie_secure == "true"
            return request.is_secure or request.headers.get("x-forwarded-proto", "").lower() == "https"

        def headers(response: Response, nonce: str) -> Response:
            response.headers["Content-Security-Policy"] = (
                f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"
            )
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            return response

        def current() -> KeyRecord | None:
            """The signed-in key, None when signed out. A store that cannot answer raises (a 503 page,
            the session kept): an outage of the ledger must not sign everyone out."""
            token = request.cookies.get(COOKIE)
            if not token:
                return None
            try:
                key_id = self.signer().loads(token, max_age=SESSION_SECONDS)["k"]
            except (BadSignature, KeyError, TypeError):
                return None
            try:
                record = self.store.key(key_id)
            except StoreError:  # no such key (any more)
                return None
            return record if record.status(time.time()) == "active" else None

        def unavailable() -> Response:
            """The store did not answer: say so in the page, 503, and leave the cookie alone."""
            nonce = secrets.token_urlsafe(16)
            html = self.env.get_template("page").render(
                nonce=nonce, error=UNAVAILABLE, login_url=url_for(".ui_login"), logout_url=url_for(".ui_logout"),
                csrf="", me=None)
            response = headers(Response(html, status=503, mimetype="text/html"), nonce)
            response.headers["Retry-After"] = "5"
            return response

        def guarded(view: Callable[[], Response]) -> Callable[[], Response]:
            def run() -> Response:
                try:
                    return view()
                except STORE_ERRORS as exc:
                    log.warning("teams: usage page: the store is unavailable: %s", exc)
                    return unavailable()

            run.__name__ = view.__name__
            return run

        def page(record: KeyRecord | None, error: str | None = None, status: int = 200) -> Response:
            nonce = secrets.token_urlsafe(16)
            context: dict[str, Any] = {
                "nonce": nonce,
                "error": error,
                "login_url": url_for(".ui_login"),
                "logout_url": url_for(".ui_logout"),
                "csrf": self.signer().dumps({"csrf": record.id if record else "login"}),
                "me": record.public() if record else None,
            }
            if record is not None:
                context.update(self._user_view(record))
                if record.admin:
                    context["admin"] = self._admin_view()
            html = self.env.get_template("page").render(**context)
            response = headers(Response(html, status=status, mimetype="text/html"), nonce)
            if record is None and request.cookies.get(COOKIE):
                response.delete_cookie(COOKIE, path=url_for(".ui_home"))
            return response

        def csrf_ok(expected: str) -> bool:
            try:
                return self.signer().loads(request.form.get("csrf", ""), max_age=3600).get("csrf") == expected
            except (BadSignature, AttributeError):
                return False

        def home() -> Response:
            return page(current())

        def login() -> Response:
            if not csrf_ok("login"):
                return page(None, "The form expired; please sign in again.", 400)
            key = request.form.get("key", "").strip()
            record = self.store.find_key(hash_key(key)) if key else None
            if record is None or record.status(time.time()) != "active":
                return page(None, "That key is not valid.", 401)
            response = headers(redirect(url_for(".ui_home"), 303), "-")
            response.set_cookie(
                COOKIE, self.signer().dumps({"k": record.id}), max_age=SESSION_SECONDS, path=url_for(".ui_home"),
                httponly=True, samesite="Strict", secure=secure(),
            )
            return response

        def logout() -> Response:
            record = current()
            if record is not None and not csrf_ok(record.id):
                return page(record, "The form expired; please try again.", 400)
            response = headers(redirect(url_for(".ui_home"), 303), "-")
            response.delete_cookie(COOKIE, path=url_for(".ui_home"), httponly=True, samesite="Strict")
            return response

        bp.add_url_rule("/ui/", endpoint="ui_home", view_func=guarded(home), methods=["GET"])
        bp.add_url_rule("/ui/login", endpoint="ui_login", view_func=guarded(login), methods=["POST"])
        bp.add_url_rule("/ui/logout", endpoint="ui_logout", view_func=guarded(logout), methods=["POST"])

    def _user_view(self, record: KeyRecord) -> dict[str, Any]:
        store, now = self.store, time.time()
        month = month_of(now)
        scopes = [(f"k:{record.id}", f"key {record.name}", record.limits)]
        if record.team is not None:
            scopes.append((f"t:{record.team.id}", f"team {record.team.name}", record.team.limits))
        rows = []
        for scope, label, limits in scopes:
            spend = store.month_spend(scope, month) / 1e6
            budget = None if limits.monthly_budget_micros is None else limits.monthly_budget_micros / 1e6
            pct = min(10, int(spend / budget * 10)) if budget else 0
            rows.append({"label": label, "spend": spend, "budget": budget, "pct": pct,
                         "in_flight": _in_flight(store, scope), "max_concurrent": limits.max_concurrent})
        failures = store.recent(key_id=record.id, failed=True, limit=20)
        for f in failures:
            f["time"] = iso(f["ts"])
        return {
            "month": month,
            "scopes": rows,
            "keys": [k.public() for k in store.keys(owner=record.owner, status="all")],
            "usage": _money(store.usage(group_by=["day", "model"], since=now - 30 * 86400, filters={"key": record.id})),
            "failures": failures,
        }

    def _admin_view(self) -> dict[str, Any]:
        store, now = self.store, time.time()
        month = month_of(now)
        start = float(calendar.timegm(time.strptime(month + "-01", "%Y-%m-%d")))
        teams = [
            {"name": t.name, "spend": store.month_spend(f"t:{t.id}", month) / 1e6,
             "budget": "-" if t.limits.monthly_budget_micros is None else f"${t.limits.monthly_budget_micros / 1e6:.2f}"}
            for t in store.teams()
        ]
        top = sorted(store.usage(group_by=["key", "owner"], since=start), key=lambda r: -r["cost_micros"])[:20]
        audit = store.audit(limit=50)
        for e in audit:
            e["time"] = iso(e["ts"])
        return {
            "teams": teams,
            "top_keys": _money(top),
            "by_model": _money(store.usage(group_by=["provider", "model"], since=start)),
            "status": _flat(store.status()),
            "audit": audit,
        }


def _in_flight(store: Store, scope: str) -> int | None:
    """Live requests in a scope; None ("-" on the page) when the limiter (Redis) cannot say, while the
    ledger still can: the rest of the page is worth showing."""
    try:
        return store.in_flight(scope)
    except STORE_ERRORS:
        return None


def _flat(status: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The store's status one figure a row: nested parts (PostgreSQL + Redis: each store's breaker, the
    usage spool) under dotted names, rather than a Python dict printed into a cell."""
    out: dict[str, Any] = {}
    for name, value in status.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


def _money(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["cost_usd"] = f"{row.pop('cost_micros') / 1e6:.4f}"
    return rows


__all__ = ["UsagePage"]
