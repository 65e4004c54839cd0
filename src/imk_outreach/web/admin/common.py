"""What every staff page shares: the signed-in session (``staff`` dependency), CSRF checks, rendering
an admin page with the admin CSP, the language of a page, and redirects after a POST.

* No session (no cookie, an unknown or expired one) raises :class:`LoginRequired`, which
  :func:`imk_outreach.web.admin.install` answers with 303 to ``/admin/login?next=<this page>``.
* Every POST goes through :func:`form_with_csrf`: a missing or wrong ``csrf_token`` raises
  :class:`CsrfRefused` (answered 403 with a page) before anything is changed. Signed in, the token is the
  session's; before sign-in (the login form) it is a signed double-submit cookie: a random value in
  the ``imk_admin_csrf`` cookie and its HMAC (with the product's secret key) in the form.
* The language of a page: the signed-in user's stored choice when it is a configured language, else the
  browser's ``Accept-Language``, else the first configured language.
* Templates are ``templates/admin/*.html.j2`` of the product's one Jinja environment (autoescape on);
  every text comes from :mod:`imk_outreach.web.admin.i18n` through ``t``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from babel.dates import format_datetime
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse

from imk_outreach.config import Settings
from imk_outreach.services import pages, rendering, tokens
from imk_outreach.services import staff as staff_service
from imk_outreach.services.staff import StaffSession
from imk_outreach.web import public
from imk_outreach.web.admin.i18n import STRINGS, translate

__all__ = [
    "ADMIN_CSP",
    "COOKIE",
    "CSRF_COOKIE",
    "NAV",
    "CsrfRefused",
    "LoginRequired",
    "StaffSession",
    "clock_of",
    "form_with_csrf",
    "language_for",
    "redirect_done",
    "render",
    "safe_next",
    "settings_of",
    "staff",
    "t",
]

COOKIE = "imk_admin"
CSRF_COOKIE = "imk_admin_csrf"
COOKIE_PATH = "/admin"
_LOGIN_COOKIE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
ADMIN_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# (path, i18n key): the pages in the navigation bar, in order
NAV: tuple[tuple[str, str], ...] = (
    ("/admin", "nav.dashboard"),
    ("/admin/campaigns", "nav.campaigns"),
    ("/admin/items", "nav.items"),
    ("/admin/subscribers", "nav.subscribers"),
)


class LoginRequired(Exception):
    """No valid session: answered with 303 to the sign-in page, back to ``next_path`` afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A POST without the right CSRF token: answered 403, nothing changed."""


@dataclass(frozen=True)
class Admin:
    """What the staff pages need, set by ``install``."""

    settings: Settings
    clock: Callable[[], datetime]


def admin_of(request: Request) -> Admin:
    return cast(Admin, request.app.state.admin)


def settings_of(request: Request) -> Settings:
    return admin_of(request).settings


def clock_of(request: Request) -> datetime:
    """The app's current time (tests pass a fixed clock to ``create_app``)."""
    return admin_of(request).clock()


def t(language: str, key: str, /, **values: Any) -> str:
    """The text ``key`` of :mod:`~imk_outreach.web.admin.i18n` in ``language`` (English when the
    language has none), with ``{name}`` placeholders filled from ``values``."""
    return translate(language, key, **values)


# -- session -----------------------------------------------------------------------------------------


async def staff(request: Request) -> StaffSession:
    """The signed-in staff session (a FastAPI dependency).

    :raises LoginRequired: no cookie, or its session is unknown or expired.
    """
    token = request.cookies.get(COOKIE)
    session = None
    if token:
        settings, now = settings_of(request), clock_of(request)
        session = await run_in_threadpool(staff_service.session_for, settings, token, now)
    if session is None:  # back to this page after sign-in; a form sent is not sent again
        raise LoginRequired(_this_page(request) if request.method == "GET" else "/admin")
    return session


def _this_page(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def safe_next(value: str | None) -> str:
    """``value`` when it is a path under ``/admin`` of this site, else ``/admin`` (no open redirect:
    no scheme, no host, no ``//`` or backslash tricks, no control characters)."""
    if not value or any(c in value for c in "\\\r\n\t") or not value.isprintable():
        return "/admin"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return "/admin"
    if parts.path != "/admin" and not parts.path.startswith("/admin/"):
        return "/admin"
    if ".." in parts.path.split("/"):
        return "/admin"
    return value


# -- CSRF --------------------------------------------------------------------------------------------


def login_csrf_token(request: Request, cookie_value: str) -> str:
    """The form token that goes with the pre-sign-in cookie ``cookie_value`` (its keyed HMAC)."""
    secret = tokens.secret_key(settings_of(request)).encode()
    return hmac.new(secret, b"admin-login-csrf\0" + cookie_value.encode(), hashlib.sha256).hexdigest()


def login_cookie(request: Request) -> str:
    """The pre-sign-in CSRF cookie's value: the one the browser has (so forms open in other tabs stay
    valid), else a new random one."""
    current = request.cookies.get(CSRF_COOKIE, "")
    return current if _LOGIN_COOKIE.fullmatch(current) else secrets.token_urlsafe(32)


async def form_with_csrf(request: Request, session: StaffSession | None) -> dict[str, str]:
    """The submitted form (first value of each field), after checking its ``csrf_token``.

    :param session: the signed-in session; None for the sign-in form (checked against the
        pre-sign-in double-submit cookie).
    :raises CsrfRefused: the token is missing or wrong (nothing has been changed).
    """
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    sent = fields.get("csrf_token", "")
    if session is not None:
        expected = session.csrf
    else:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        expected = await run_in_threadpool(login_csrf_token, request, cookie) if cookie else ""
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused
    return fields


# -- language ----------------------------------------------------------------------------------------


def language_for(request: Request, session: StaffSession | None) -> str:
    """The user's stored choice, else the browser's ``Accept-Language``, else the first configured
    language (when the staff app speaks it, else English). The staff app speaks
    :data:`~imk_outreach.services.staff.LANGUAGES`, whatever languages the newsletters have."""
    choice = session.user.language if session is not None else None
    browser = public.accepted_languages(request.headers.get("accept-language", ""))
    for candidate in (choice, *browser):
        if candidate and candidate.lower() in staff_service.LANGUAGES:
            return candidate.lower()
    default = settings_of(request).default_language
    return default if default in staff_service.LANGUAGES else "en"


# -- rendering ---------------------------------------------------------------------------------------


def render(
    request: Request,
    session: StaffSession | None,
    template: str,
    context: Mapping[str, Any],
    status: int = 200,
) -> HTMLResponse:
    """The page ``templates/admin/<template>`` with the admin CSP.

    Adds to ``context``: ``t`` (translate into the page's language), ``lang``, ``csrf_token``, ``user``
    (the signed-in :class:`~imk_outreach.services.staff.StaffUser` or None), ``nav`` (path, label,
    current), ``languages`` (code, own name), ``done`` (the translated ``?done=`` message or None),
    ``path`` (this page), ``state`` (a state's
    name translated), ``when`` (a datetime in the configured zone and the page's language) and
    ``language`` (for the date filters).
    """
    settings = settings_of(request)
    lang = language_for(request, session)
    name = template if template.startswith("admin/") else f"admin/{template}"
    full = {**_page_context(request, session, settings, lang), **context}
    html = rendering.template_env(settings).get_template(name).render(full)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = ADMIN_CSP
    return response


def _page_context(
    request: Request, session: StaffSession | None, settings: Settings, lang: str
) -> dict[str, Any]:
    path = request.url.path

    def translate_here(key: str, /, **values: Any) -> str:
        return translate(lang, key, **values)

    def when(value: datetime | None) -> str:
        """A time in the configured zone, in the page's language ("24.11.2026, 11:00")."""
        if value is None:
            return "–"
        local = value.astimezone(settings.tz)
        return format_datetime(local, "short", tzinfo=settings.tz, locale=lang)

    def state(value: str | None) -> str:
        """A state (``draft``, ``failed``, ``never gathered`` ...) in the page's language, else as is."""
        key = f"state.{value}"
        return translate(lang, key) if key in STRINGS else (value or "–")

    done_key = request.query_params.get("done", "")
    done = translate(lang, f"done.{done_key}") if f"done.{done_key}" in STRINGS else None
    return {
        "t": translate_here,
        "when": when,
        "state": state,
        "language_name": pages.native_name,
        "lang": lang,
        "language": lang,
        "csrf_token": session.csrf if session is not None else "",
        "user": session.user if session is not None else None,
        "nav": [(href, translate(lang, key), _current(href, path)) for href, key in NAV],
        "languages": [(code, pages.native_name(code)) for code in staff_service.LANGUAGES],
        "done": done,
        "path": _this_page(request),
        "brand_name": settings.name.get(lang) or next(iter(settings.name.values()), ""),
    }


def _current(href: str, path: str) -> bool:
    if href == "/admin":
        return path in ("/admin", "/admin/") or path.startswith("/admin/editions")
    return path == href or path.startswith(href + "/")


def redirect_done(path: str, done: str) -> RedirectResponse:
    """303 to ``path`` (an /admin path) with ``?done=<done>``: the page shows the message
    ``done.<done>`` of :mod:`~imk_outreach.web.admin.i18n`."""
    parts = urlsplit(safe_next(path))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "done"]
    query.append(("done", done))
    return RedirectResponse(f"{parts.path}?{urlencode(query)}", status_code=303)
