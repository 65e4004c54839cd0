"""The FastAPI application: ``create_app(settings)``. Settings, mailer and clock are passed in (no
globals), so tests and several apps in one process do not interfere.

Core errors become HTTP status here and only here: an invalid link (tampered, expired, another
purpose, unknown subscriber) is 404 with one neutral page; a mail server or database that does not
answer is 503; any other product error is 500. Every response carries headers that keep the pages
self-contained (no third-party resource, no framing, no referrer: the URLs hold tokens) and uncached.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse

from imk_outreach.config import Settings
from imk_outreach.errors import DatabaseError, ImkError
from imk_outreach.services import pages
from imk_outreach.services.subscriptions import InputError, InvalidTokenError, Mailer, MailError
from imk_outreach.web import media, ops, public

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings, mailer: Mailer | None = None, clock: Callable[[], datetime] = _utc_now
) -> FastAPI:
    """The web app for ``settings``.

    :param mailer: sends the confirmation mails; None uses the SMTP server of ``settings.smtp``.
    :param clock: the current time (tests pass a fixed one to try expired links).
    """
    app = FastAPI(title="imk-outreach", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.public = public.Public(settings, mailer, clock)
    app.include_router(public.router)
    app.include_router(ops.router)
    app.include_router(media.router)
    app.add_api_route("/", _home, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(InvalidTokenError, _invalid_link)
    app.add_exception_handler(InputError, _bad_input)
    app.add_exception_handler(MailError, _unavailable)
    app.add_exception_handler(DatabaseError, _unavailable)
    app.add_exception_handler(ImkError, _failed)
    app.middleware("http")(_security_headers)
    return app


def _home(request: Request) -> RedirectResponse:
    return RedirectResponse(request.url_for("subscribe_form").include_query_params(**request.query_params))


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _message(request: Request, kind: str, status: int) -> Response:
    """A message page in the language the request asks for (never the subscriber's: the same
    request gets the same body whatever the cause)."""
    state = public.state_of(request)
    language = public.language_for(request, state.settings)
    try:
        html = pages.render_page(state.settings, "message", language, {"kind": kind})
    except Exception:  # noqa: BLE001 - the page itself may be what is broken; answer anyway
        log.exception("message page %s cannot be rendered", kind)
        return PlainTextResponse(f"{status}\n", status_code=status)
    return HTMLResponse(html, status_code=status)


async def _invalid_link(request: Request, exc: Exception) -> Response:
    return _message(request, "invalid_link", 404)


async def _bad_input(request: Request, exc: Exception) -> Response:
    return _message(request, "error", 400)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("%s /%s: %s", request.method, _page(request), exc)
    return _message(request, "unavailable", 503)


async def _failed(request: Request, exc: Exception) -> Response:
    log.error("%s /%s: %s", request.method, _page(request), exc)
    return _message(request, "error", 500)


def _page(request: Request) -> str:
    """The first path segment: logs name the page, never the token in the rest of the path."""
    return request.url.path.strip("/").split("/", 1)[0]
