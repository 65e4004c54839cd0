"""The FastAPI application: ``create_app(settings)``. Settings, mailer and clock are passed in (no
globals), so tests and several apps in one process do not interfere.

Core errors become HTTP status here and only here: an invalid link (tampered, expired, another
purpose, unknown subscriber) is 404 with one neutral page; a mail server or database that does not
answer is 503; any other product error is 500. HTTP hygiene (security headers on every response, HEAD,
neutral pages for unknown routes and refused requests, trusted host, same-origin sign-ups, the body
cap) is :mod:`imk_outreach.web.hygiene`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from imk_outreach.config import Settings
from imk_outreach.errors import DatabaseError, ImkError
from imk_outreach.services.redact import without_addresses
from imk_outreach.services.subscriptions import InputError, InvalidTokenError, Mailer, MailError
from imk_outreach.web import admin, hygiene, media, ops, public
from imk_outreach.web.hygiene import SECURITY_HEADERS

__all__ = ["SECURITY_HEADERS", "create_app"]

log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings, mailer: Mailer | None = None, clock: Callable[[], datetime] = _utc_now
) -> FastAPI:
    """The web app for ``settings``.

    :param mailer: sends the confirmation mails; None uses the SMTP server of ``settings.smtp``.
    :param clock: the current time (tests pass a fixed one to try expired links).
    """
    app = FastAPI(
        title="imk-outreach", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )
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
    admin.install(app, settings)
    hygiene.install(app, settings)
    return app


def _home(request: Request) -> RedirectResponse:
    """To the sign-up form, built from ``public_url`` (never from the request's ``Host``)."""
    settings = public.state_of(request).settings
    language = request.query_params.get("lang")
    query = f"?{urlencode({'lang': language})}" if language else ""
    return RedirectResponse(f"{settings.public_url.rstrip('/')}/subscribe{query}")


def _message(request: Request, kind: str, status: int) -> Response:
    return hygiene.neutral_page(request, kind, status)


async def _invalid_link(request: Request, exc: Exception) -> Response:
    return _message(request, "invalid_link", 404)


async def _bad_input(request: Request, exc: Exception) -> Response:
    return _message(request, "error", 400)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("%s /%s: %s", request.method, _page(request), without_addresses(exc))  # a reply echoes it
    return _message(request, "unavailable", 503)


async def _failed(request: Request, exc: Exception) -> Response:
    log.error("%s /%s: %s", request.method, _page(request), without_addresses(exc))
    return _message(request, "error", 500)


def _page(request: Request) -> str:
    """The first path segment: logs name the page, never the token in the rest of the path."""
    return request.url.path.strip("/").split("/", 1)[0]
